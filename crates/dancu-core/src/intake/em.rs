//! Fellegi–Sunter scoring: m and u probabilities per field level, estimated by
//! expectation–maximization over the comparison vectors of the candidate pairs.
//!
//! Fields are taken as conditionally independent given the pair's class (match or not). A
//! missing field weighs nothing. The E step gives each distinct comparison vector its match
//! probability; the M step re-estimates the match share λ and each field's m (level shares among
//! matches) and u (among non-matches). Starting values and a small pseudo-count prior keep unseen
//! levels finite and hold the first class on the side of matches; probabilities are clamped to
//! [`MIN_PROBABILITY`], 1.
//!
//! Candidate pairs agree on their blocking keys by construction, so their non-matches are a
//! poor sample of non-matches in general (and break conditional independence: a pair found by
//! name agrees on name, one found by commune and date on those). When a background sample of
//! random pairs is given (almost all non-matches), u is taken from it and held fixed, and EM
//! estimates λ and m only; without one, EM estimates u as well.
//!
//! A pair's match weight is `log2(λ/(1-λ)) + Σ log2(m/u)` (bits); its match probability is
//! `1 / (1 + 2^-weight)`.

use foldhash::{HashMap, HashMapExt};

use super::linkage::{Comparison, Field};

/// The smallest m or u probability a level may take (caps one field's weight at about ±13 bits).
pub const MIN_PROBABILITY: f64 = 1e-4;

/// Per-field adjustments of a pair's weight in bits, beyond its comparison levels (term
/// frequencies: [`super::linkage::TermFrequencies`]).
pub type Adjustments = [f64; Field::COUNT];

/// Estimated matches a training session needs to decide the m of its fields alone.
pub const MIN_SESSION_MATCHES: f64 = 100.0;

/// EM settings.
#[derive(Debug, Clone)]
pub struct EmConfig {
    /// Iteration limit (default 100).
    pub max_iterations: usize,
    /// Stop when no parameter moves by more than this (default 1e-6).
    pub tolerance: f64,
    /// Weight of the starting values as pseudo-counts, in pairs per field (default 10).
    pub prior_strength: f64,
    /// Random pairs compared to estimate u (default 20,000; 0: estimate u by EM on the candidates).
    pub background_pairs: usize,
}

impl Default for EmConfig {
    fn default() -> Self {
        EmConfig { max_iterations: 100, tolerance: 1e-6, prior_strength: 10.0, background_pairs: 20_000 }
    }
}

/// Review and link thresholds on the match weight, which includes the prior odds of the
/// candidates: it is the log2 of the posterior odds that the pair is one person (10 bits are
/// odds of about 1000:1, 5 bits 32:1).
///
/// Set from the estimated weights on labelled synthetic data (a tenth of the records duplicated
/// with intake errors, 0.1 and 1.1 million rows; see BENCHMARKS.md): a link needs odds of 1000:1,
/// which keeps the pairwise precision of the links above 0.995 with a recall above 0.98; the
/// pairs between 32:1 and 1000:1 are the uncertain ones an officer decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// At or above: the same person, linked automatically (default 10 bits).
    pub link: f64,
    /// At or above (and below `link`): an officer decides (default 5 bits).
    pub review: f64,
    /// Below: two records contradict each other (default 0 bits: more likely two people than
    /// one); clustering joins two groups with such a pair across only when the other pairs
    /// across weigh at least `review` on average (see [`super::cluster::Guard`]).
    pub contradiction: f64,
    /// Below: two records are so clearly two people (default −10 bits, odds of 1000:1 against)
    /// that clustering never puts them in one person through other records.
    pub veto: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds { link: 10.0, review: 5.0, contradiction: 0.0, veto: -10.0 }
    }
}

impl Thresholds {
    /// The band of a match weight.
    pub fn band(&self, weight: f64) -> Band {
        if weight >= self.link {
            Band::Link
        } else if weight >= self.review {
            Band::Review
        } else {
            Band::Distinct
        }
    }
}

/// The decision for a pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Band {
    /// The same person: linked without review.
    Link,
    /// Possibly the same person: the clerical review queue.
    Review,
    /// Different people.
    Distinct,
}

impl Band {
    pub fn code(self) -> &'static str {
        match self {
            Band::Link => "link",
            Band::Review => "review",
            Band::Distinct => "distinct",
        }
    }
}

/// A Fellegi–Sunter model: the match share and per-field level probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Share of matches among the candidate pairs.
    pub lambda: f64,
    /// `m[field][level]`: probability of the level among matches (fields in [`Field::ALL`] order).
    pub m: Vec<Vec<f64>>,
    /// `u[field][level]`: probability of the level among non-matches.
    pub u: Vec<Vec<f64>>,
    /// EM iterations run.
    pub iterations: usize,
    pub converged: bool,
}

fn starting(field: Field) -> (&'static [f64], &'static [f64]) {
    match field {
        Field::Family => (&[0.85, 0.05, 0.07, 0.03], &[0.15, 0.01, 0.02, 0.82]),
        Field::Middle => (&[0.80, 0.04, 0.12, 0.04], &[0.15, 0.02, 0.10, 0.73]),
        Field::Given => (&[0.85, 0.05, 0.07, 0.03], &[0.02, 0.005, 0.01, 0.965]),
        Field::Address => (&[0.80, 0.10, 0.05, 0.05], &[0.01, 0.01, 0.05, 0.93]),
        Field::BirthDate => {
            (&[0.75, 0.04, 0.05, 0.04, 0.06, 0.03, 0.02, 0.01], &[0.02, 0.002, 0.05, 0.02, 0.02, 0.04, 0.05, 0.798])
        }
        Field::Sex => (&[0.97, 0.03], &[0.5, 0.5]),
        Field::Commune => (&[0.70, 0.15, 0.10, 0.05], &[0.10, 0.02, 0.10, 0.78]),
        Field::LegacyId | Field::Phone => (&[0.88, 0.07, 0.05], &[0.01, 0.005, 0.985]),
        Field::Parents => (&[0.90, 0.06, 0.04], &[0.30, 0.10, 0.60]),
    }
}

fn clamp_normalize(p: &mut [f64]) {
    for x in p.iter_mut() {
        *x = x.max(MIN_PROBABILITY);
    }
    let total: f64 = p.iter().sum();
    for x in p.iter_mut() {
        *x /= total;
    }
}

/// Distinct comparison patterns with their summed counts, in a fixed order (by pattern), which
/// keeps the floating-point sums of estimation, and so its result, reproducible.
pub fn patterns(items: impl IntoIterator<Item = (Comparison, f64)>) -> Vec<(Comparison, f64)> {
    let mut counts: HashMap<Comparison, f64> = HashMap::new();
    for (c, n) in items {
        *counts.entry(c).or_default() += n;
    }
    let mut out: Vec<(Comparison, f64)> = counts.into_iter().collect();
    out.sort_by_key(|a| a.0.0);
    out
}

impl Model {
    /// The starting values of estimation (also a usable model when there is too little data).
    pub fn starting() -> Model {
        let (m, u) = Field::ALL.iter().map(|&f| starting(f)).map(|(m, u)| (m.to_vec(), u.to_vec())).unzip();
        Model { lambda: 0.05, m, u, iterations: 0, converged: false }
    }

    /// Estimates the model by EM from the comparison vectors of candidate pairs, with u fixed
    /// from `background` (comparisons of random pairs) unless that is empty.
    pub fn estimate(comparisons: &[Comparison], background: &[Comparison], config: &EmConfig) -> Model {
        Model::estimate_patterns(&patterns(comparisons.iter().map(|c| (*c, 1.0))), background, config)
    }

    /// [`Model::estimate`] over distinct comparison patterns with their counts (see [`patterns`]).
    pub fn estimate_patterns(patterns: &[(Comparison, f64)], background: &[Comparison], config: &EmConfig) -> Model {
        let prior = Model::starting();
        let mut model = Model::starting();
        let fixed_u = (!background.is_empty()).then(|| {
            let mut counts: Vec<Vec<f64>> = prior.u.iter().map(|l| vec![0.0; l.len()]).collect();
            for c in background {
                for (f, level) in c.0.iter().enumerate() {
                    if let Some(l) = level {
                        counts[f][*l as usize] += 1.0;
                    }
                }
            }
            counts
                .iter()
                .zip(&prior.u)
                .map(|(c, s)| {
                    let mut p: Vec<f64> = c.iter().zip(s).map(|(c, s)| c + config.prior_strength * s).collect();
                    clamp_normalize(&mut p);
                    p
                })
                .collect::<Vec<_>>()
        });
        if let Some(u) = &fixed_u {
            model.u = u.clone();
        }
        if patterns.is_empty() {
            return model;
        }
        let total: f64 = patterns.iter().map(|p| p.1).sum();
        for iteration in 1..=config.max_iterations {
            let mut m_counts: Vec<Vec<f64>> = prior.m.iter().map(|l| vec![0.0; l.len()]).collect();
            let mut u_counts = m_counts.clone();
            let mut matches = 0.0;
            for (c, count) in patterns {
                let g = Model::probability_of(model.match_weight(c));
                matches += g * count;
                for (f, level) in c.0.iter().enumerate() {
                    if let Some(l) = level {
                        m_counts[f][*l as usize] += g * count;
                        u_counts[f][*l as usize] += (1.0 - g) * count;
                    }
                }
            }
            let mut next = Model {
                lambda: (matches / total).clamp(MIN_PROBABILITY, 0.5),
                m: Vec::with_capacity(Field::COUNT),
                u: Vec::with_capacity(Field::COUNT),
                iterations: iteration,
                converged: false,
            };
            for f in 0..Field::COUNT {
                for (counts, start, out) in
                    [(&m_counts[f], &prior.m[f], &mut next.m), (&u_counts[f], &prior.u[f], &mut next.u)]
                {
                    let mut p: Vec<f64> =
                        counts.iter().zip(start.iter()).map(|(c, s)| c + config.prior_strength * s).collect();
                    clamp_normalize(&mut p);
                    out.push(p);
                }
            }
            if let Some(u) = &fixed_u {
                next.u = u.clone();
            }
            let moved = next.max_difference(&model);
            model = next;
            if moved < config.tolerance {
                model.converged = true;
                break;
            }
        }
        model
    }

    /// Estimates the model in training sessions, as when candidates agree on their blocking keys
    /// the fields of those keys say nothing about matching: each session is the candidates of one
    /// blocking rule with that rule's fields left out, u is fixed from `background`, and EM
    /// estimates m for the other fields. Sessions are in order of trust: the first session that
    /// found at least [`MIN_SESSION_MATCHES`] matches decides the m of every field it estimated
    /// (pairs sharing an identity number are nearly all one person, whereas pairs sharing a
    /// name and a commune include a household's namesakes, who agree on everything a household
    /// shares and would pass for matches); a field no such session estimated takes the mean
    /// over the sessions that did (the starting values if none did). λ is then estimated over all `candidates` with m and
    /// u held, the `uncompared` pairs counted as non-matches: the pairs of blocks too large to
    /// compare all-to-all that no window reached (blocking keeps a record's likely matches within
    /// its window). So λ is the share of matches among the pairs the blocks hold, the same
    /// whatever window makes the comparisons affordable; were it the share among the compared
    /// pairs only, a narrower window would raise the prior of every pair.
    ///
    /// Sessions and candidates come as distinct comparison patterns with their counts (see
    /// [`patterns`]): a few thousand, however many millions of pairs.
    pub fn estimate_in_sessions(
        sessions: impl IntoIterator<Item = (Vec<(Comparison, f64)>, Vec<Field>)>,
        candidates: &[(Comparison, f64)],
        uncompared: f64,
        background: &[Comparison],
        config: &EmConfig,
    ) -> Model {
        let mut model = Model::estimate(&[], background, config);
        let mut sums: Vec<Option<(Vec<f64>, usize)>> = vec![None; Field::COUNT];
        let mut decided = [false; Field::COUNT];
        let mut iterations = 0;
        let mut converged = true;
        for (session, ignored) in sessions {
            let masked = patterns(session.into_iter().map(|(mut c, n)| {
                for f in &ignored {
                    c.0[f.index()] = None;
                }
                (c, n)
            }));
            let pairs: f64 = masked.iter().map(|p| p.1).sum();
            if masked.is_empty() {
                continue;
            }
            let session = Model::estimate_patterns(&masked, background, config);
            iterations += session.iterations;
            converged &= session.converged;
            let decisive = session.lambda * pairs >= MIN_SESSION_MATCHES;
            for f in Field::ALL.iter().filter(|f| !ignored.contains(f)) {
                if decided[f.index()] {
                    continue;
                }
                if decisive {
                    decided[f.index()] = true;
                    sums[f.index()] = Some((session.m[f.index()].clone(), 1));
                    continue;
                }
                let entry = sums[f.index()].get_or_insert_with(|| (vec![0.0; f.levels().len()], 0));
                for (acc, m) in entry.0.iter_mut().zip(&session.m[f.index()]) {
                    *acc += m;
                }
                entry.1 += 1;
            }
        }
        for (f, sum) in sums.into_iter().enumerate() {
            if let Some((total, n)) = sum {
                model.m[f] = total.iter().map(|x| x / n as f64).collect();
            }
        }
        // λ with m and u held, over the distinct comparison patterns, each weighted by its count.
        let pairs: f64 = candidates.iter().map(|p| p.1).sum::<f64>() + uncompared;
        for _ in 0..config.max_iterations {
            let mean = candidates.iter().map(|(c, n)| n * Model::probability_of(model.match_weight(c))).sum::<f64>()
                / pairs.max(1.0);
            let lambda = mean.clamp(MIN_PROBABILITY, 0.5);
            let moved = (lambda - model.lambda).abs();
            model.lambda = lambda;
            if moved < config.tolerance {
                break;
            }
        }
        model.iterations = iterations;
        model.converged = converged;
        model
    }

    fn max_difference(&self, other: &Model) -> f64 {
        let mut d = (self.lambda - other.lambda).abs();
        for (a, b) in self.m.iter().flatten().zip(other.m.iter().flatten()) {
            d = d.max((a - b).abs());
        }
        for (a, b) in self.u.iter().flatten().zip(other.u.iter().flatten()) {
            d = d.max((a - b).abs());
        }
        d
    }

    /// The weight of one field level: `log2(m/u)` bits. Parents' names weigh only against a
    /// match (never above 0): siblings agree on them too.
    pub fn level_weight(&self, field: Field, level: u8) -> f64 {
        let f = Field::ALL.iter().position(|x| *x == field).expect("field");
        let w = (self.m[f][level as usize] / self.u[f][level as usize]).log2();
        if field == Field::Parents { w.min(0.0) } else { w }
    }

    /// The prior odds in bits: `log2(λ/(1-λ))`.
    pub fn prior_weight(&self) -> f64 {
        (self.lambda / (1.0 - self.lambda)).log2()
    }

    /// The match weight of a comparison: prior plus every present field's level weight.
    pub fn match_weight(&self, c: &Comparison) -> f64 {
        let mut w = self.prior_weight();
        for (field, level) in Field::ALL.iter().zip(c.0) {
            if let Some(l) = level {
                w += self.level_weight(*field, l);
            }
        }
        w
    }

    /// The match weight with per-field adjustments (only fields present count).
    pub fn match_weight_adjusted(&self, c: &Comparison, adjustments: &Adjustments) -> f64 {
        let extra: f64 = c.0.iter().zip(adjustments).filter(|(l, _)| l.is_some()).map(|(_, a)| a).sum();
        self.match_weight(c) + extra
    }

    /// The match probability of a match weight.
    pub fn probability_of(weight: f64) -> f64 {
        1.0 / (1.0 + (-weight).exp2())
    }

    /// Field-by-field account of a pair's score, for the review screen.
    pub fn explain(&self, c: &Comparison, adjustments: &Adjustments, thresholds: &Thresholds) -> Explanation {
        let fields = Field::ALL
            .iter()
            .map(|&field| {
                let level = c.level(field);
                FieldExplanation {
                    field,
                    level: level.map(|l| field.levels()[l as usize]),
                    weight: level.map_or(0.0, |l| self.level_weight(field, l) + adjustments[field.index()]),
                }
            })
            .collect();
        let weight = self.match_weight_adjusted(c, adjustments);
        let probability = Model::probability_of(weight);
        Explanation { fields, prior_weight: self.prior_weight(), weight, probability, band: thresholds.band(weight) }
    }
}

/// One field of an [`Explanation`].
#[derive(Debug, Clone, PartialEq)]
pub struct FieldExplanation {
    pub field: Field,
    /// The level code (see [`Field::levels`]); `None` when missing on either side.
    pub level: Option<&'static str>,
    /// Its weight in bits (0 when missing): positive speaks for the same person.
    pub weight: f64,
}

/// Why a pair scored what it did.
#[derive(Debug, Clone, PartialEq)]
pub struct Explanation {
    pub fields: Vec<FieldExplanation>,
    /// The prior odds in bits.
    pub prior_weight: f64,
    /// Total match weight in bits (prior plus fields).
    pub weight: f64,
    pub probability: f64,
    pub band: Band,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector(levels: [Option<u8>; Field::COUNT]) -> Comparison {
        Comparison(levels)
    }

    #[test]
    fn em_separates_matches_from_non_matches() {
        // 100 near-perfect agreements among 2,000 pairs that mostly disagree.
        let mut data = Vec::new();
        for i in 0..100u8 {
            data.push(vector([
                Some(0),
                None,
                Some(0),
                Some(i % 3 / 2),
                Some(0),
                Some(0),
                None,
                None,
                Some(i % 5 / 4 * 2),
                None,
            ]));
        }
        for i in 0..1900u32 {
            let name = if i % 10 == 0 { 0 } else { 3 };
            data.push(vector([
                Some(name),
                None,
                Some(name),
                Some(7),
                Some((i % 2) as u8),
                Some(3),
                None,
                None,
                Some(2),
                None,
            ]));
        }
        let model = Model::estimate(&data, &[], &EmConfig::default());
        assert!(model.converged, "{model:?}");
        assert!((model.lambda - 0.05).abs() < 0.01, "lambda {}", model.lambda);
        assert!(model.level_weight(Field::Given, 0) > 2.0);
        assert!(model.level_weight(Field::BirthDate, 0) > 8.0);
        assert!(model.level_weight(Field::Commune, 3) < -5.0);
        let t = Thresholds::default();
        let none = [0.0; Field::COUNT];
        assert_eq!(model.explain(&data[0], &none, &t).band, Band::Link);
        assert_eq!(model.explain(&data[150], &none, &t).band, Band::Distinct);
        let e = model.explain(&data[0], &none, &t);
        assert_eq!(e.fields.len(), Field::COUNT);
        assert_eq!(e.fields[3].level, Some("exact"));
        assert_eq!(e.fields[7].level, None);
        assert_eq!(e.fields[7].weight, 0.0);
        // An adjustment moves its field's weight and the total alike.
        let mut adj = none;
        adj[Field::Given.index()] = -1.5;
        let moved = model.explain(&data[0], &adj, &t);
        assert!((moved.weight - (e.weight - 1.5)).abs() < 1e-9);
        assert!((moved.fields[2].weight - (e.fields[2].weight - 1.5)).abs() < 1e-9);
        let sum: f64 = e.prior_weight + e.fields.iter().map(|f| f.weight).sum::<f64>();
        assert!((sum - e.weight).abs() < 1e-9);
    }

    #[test]
    fn no_data_gives_the_starting_model() {
        assert_eq!(Model::estimate(&[], &[], &EmConfig::default()), Model::starting());
    }

    #[test]
    fn bands() {
        let t = Thresholds::default();
        assert_eq!(t.band(20.0), Band::Link);
        assert_eq!(t.band(10.0), Band::Link);
        assert_eq!(t.band(7.0), Band::Review);
        assert_eq!(t.band(2.0), Band::Distinct);
    }
}
