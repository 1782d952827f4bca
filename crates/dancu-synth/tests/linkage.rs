//! Record linkage measured on labelled synthetic data: generated people (every other one already
//! in the registry), about a tenth re-recorded in the import batch with intake errors.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use dancu_core::intake::em::Band;
use dancu_core::intake::linkage::{LinkConfig, LinkRecord, Origin, link};
use dancu_synth::duplicates::with_duplicates;
use dancu_synth::{Config, Generator};
use time::macros::date;

#[test]
fn precision_and_recall_on_synthetic_duplicates() {
    let started = Instant::now();
    let config = Config { seed: 20_250_701, provinces: vec![], today: date!(2026 - 11 - 29), legacy_share: 0.0 };
    let people: Vec<_> = Generator::new(&config).unwrap().take(18_000).map(|p| p.person).collect();
    let labelled = with_duplicates(people, 0.10, 42);
    let records: Vec<LinkRecord> = labelled
        .iter()
        .map(|l| {
            let origin = if !l.duplicate && l.entity % 2 == 0 { Origin::Registry } else { Origin::Batch };
            LinkRecord::from_input(&l.person, origin)
        })
        .collect();
    let generated = started.elapsed();

    let out = link(&records, &LinkConfig::default());
    let linked = started.elapsed() - generated;

    // True pairs: records of one person, except two registry records (never compared).
    let mut by_entity: HashMap<usize, Vec<usize>> = HashMap::new();
    for (i, l) in labelled.iter().enumerate() {
        by_entity.entry(l.entity).or_default().push(i);
    }
    let mut truth: HashSet<(usize, usize)> = HashSet::new();
    for members in by_entity.values() {
        for (k, &a) in members.iter().enumerate() {
            for &b in &members[k + 1..] {
                truth.insert((a.min(b), a.max(b)));
            }
        }
    }
    let same = |a: usize, b: usize| labelled[a].entity == labelled[b].entity;
    let count = |band: Band| {
        let in_band: Vec<_> = out.pairs.iter().filter(|p| p.band == band).collect();
        let tp = in_band.iter().filter(|p| same(p.a, p.b)).count();
        (in_band.len(), tp)
    };
    let (link_n, link_tp) = count(Band::Link);
    let (review_n, review_tp) = count(Band::Review);
    let candidates_tp = out.pairs.iter().filter(|p| same(p.a, p.b)).count();
    let precision = (link_tp + review_tp) as f64 / (link_n + review_n).max(1) as f64;
    let recall = (link_tp + review_tp) as f64 / truth.len() as f64;
    let cluster_pairs: Vec<(usize, usize)> = out
        .clusters
        .iter()
        .flat_map(|c| c.iter().enumerate().flat_map(move |(k, &a)| c[k + 1..].iter().map(move |&b| (a, b))))
        .collect();
    let cluster_tp = cluster_pairs.iter().filter(|&&(a, b)| same(a, b)).count();
    let refused = out.pairs.iter().filter(|p| p.refused.is_some()).count();

    println!(
        "records {} (duplicates {}), true pairs {}",
        records.len(),
        labelled.iter().filter(|l| l.duplicate).count(),
        truth.len()
    );
    for r in &out.blocking.rules {
        println!(
            "  rule {:<26} blocks {:>6} oversized {:>3} pairs {:>7} new {:>7}",
            r.rule, r.blocks, r.oversized_blocks, r.pairs, r.new_pairs
        );
    }
    println!(
        "candidate pairs {} (blocking recall {:.4}); EM {} iterations, converged {}, lambda {:.5}",
        out.blocking.pairs,
        candidates_tp as f64 / truth.len() as f64,
        out.model.iterations,
        out.model.converged,
        out.model.lambda
    );
    println!(
        "link: {link_n} pairs, precision {:.4}; review: {review_n} pairs, precision {:.4}; refused unions {refused}",
        link_tp as f64 / link_n.max(1) as f64,
        review_tp as f64 / review_n.max(1) as f64
    );
    println!(
        "link+review: precision {precision:.4}, recall {recall:.4}; link alone recall {:.4}",
        link_tp as f64 / truth.len() as f64
    );
    println!(
        "clusters {}: pair precision {:.4}, pair recall {:.4}",
        out.clusters.len(),
        cluster_tp as f64 / cluster_pairs.len().max(1) as f64,
        cluster_tp as f64 / truth.len() as f64
    );
    println!("time: generation {generated:?}, linkage {linked:?}");
    for field in dancu_core::intake::linkage::Field::ALL.iter() {
        let w: Vec<String> = field
            .levels()
            .iter()
            .enumerate()
            .map(|(l, name)| format!("{name} {:+.1}", out.model.level_weight(*field, l as u8)))
            .collect();
        println!("  {:<10} {}", field.code(), w.join(", "));
    }
    // Precision and recall of "weight at or above" cuts, for choosing thresholds.
    for cut in [6.0, 8.0, 10.0, 11.0, 12.0, 13.0, 14.0, 16.0] {
        let sel: Vec<_> = out.pairs.iter().filter(|p| p.weight >= cut).collect();
        let tp = sel.iter().filter(|p| same(p.a, p.b)).count();
        println!(
            "  cut {cut}: precision {:.4} recall {:.4}",
            tp as f64 / sel.len().max(1) as f64,
            tp as f64 / truth.len() as f64
        );
    }
    // The people found (clusters of linked records) against the truth, pairwise; the review band
    // holds the uncertain pairs only (a few per hundred true pairs), not a household's look-alikes.
    let cluster_precision = cluster_tp as f64 / cluster_pairs.len().max(1) as f64;
    let cluster_recall = cluster_tp as f64 / truth.len() as f64;
    assert!(cluster_precision >= 0.99, "cluster precision {cluster_precision}");
    assert!(cluster_recall >= 0.98, "cluster recall {cluster_recall}");
    assert!(recall >= 0.98, "link + review recall {recall}");
    assert!(review_n * 20 <= truth.len(), "{review_n} review pairs for {} true pairs", truth.len());
}
