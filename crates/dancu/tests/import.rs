//! `dancu import` end to end with the real binary: generate → import works with no mapping,
//! duplicates are linked, a re-run changes nothing, and killing the process (SIGKILL) at random
//! moments never loses, duplicates or double-issues anything: the rerun finishes to exactly the
//! state of a clean run.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dancu");

fn temp_dir(tag: &str) -> PathBuf {
    let d = dancu_store::conformance::scratch_dir(&format!("import-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn dancu(args: &[&str]) -> std::process::Output {
    let out = Command::new(BIN).args(args).env("DANCU_LOG", "warn").output().unwrap();
    assert!(out.status.success(), "dancu {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn officer(data: &Path) {
    let d = data.to_str().unwrap();
    dancu(&[
        "officer",
        "add",
        "--data",
        d,
        "--username",
        "nhap.lieu",
        "--name",
        "Cán bộ nhập liệu",
        "--unit",
        "province:01",
        "--roles",
        "collector",
    ]);
}

fn import_args<'a>(data: &'a str, file: &'a str) -> Vec<&'a str> {
    vec!["import", "--data", data, file, "--unit", "province:01", "--officer", "nhap.lieu", "--chunk", "200"]
}

/// What the database holds after an import: people, merged duplicates, personal IDs (distinct),
/// imported lines (distinct), review pairs, IDs issued, indexes of people and their areas.
#[derive(Debug, PartialEq, Eq)]
struct State {
    persons: i64,
    merged: i64,
    ids: i64,
    distinct_ids: i64,
    lines: i64,
    distinct_keys: i64,
    review_pairs: i64,
    issued: i64,
    indexes: String,
}

fn state(data: &Path) -> State {
    let c = rusqlite::Connection::open(data.join("dancu.sqlite")).unwrap();
    let n = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    State {
        persons: n("SELECT count(*) FROM persons"),
        merged: n("SELECT count(*) FROM persons WHERE merged_into IS NOT NULL"),
        ids: n("SELECT count(personal_id) FROM persons"),
        distinct_ids: n("SELECT count(DISTINCT personal_id) FROM persons"),
        lines: n("SELECT count(DISTINCT line) FROM import_rows"),
        distinct_keys: n("SELECT count(DISTINCT person_key) FROM import_rows"),
        review_pairs: n("SELECT count(*) FROM review_pairs"),
        issued: n("SELECT count(*) FROM issued_ids"),
        indexes: c
            .query_row(
                "SELECT group_concat(name, ' ') FROM (SELECT name FROM sqlite_master WHERE type = 'index'
                   AND tbl_name IN ('persons', 'person_areas') ORDER BY name)",
                [],
                |r| r.get(0),
            )
            .unwrap(),
    }
}

/// `generate --duplicates` with the seed of a plain `generate`: the rows the truth marks as
/// originals are the plain file's rows of the entities it names, each once; the duplicates keep
/// their original's household and most differ from it (a corruption can leave a row unchanged:
/// a day and month that are equal, a name without accents to lose).
#[test]
fn generated_duplicates_line_up_with_their_truth() {
    let dir = temp_dir("truth");
    let (plain, dup) = (dir.join("plain.csv"), dir.join("dup.csv"));
    let common = ["generate", "--people", "2000", "--seed", "3", "--provinces", "01", "--out"];
    dancu(&[&common[..], &[plain.to_str().unwrap()]].concat());
    dancu(&[&common[..], &[dup.to_str().unwrap(), "--duplicates", "0.2"]].concat());
    let plain = std::fs::read_to_string(&plain).unwrap();
    let data = std::fs::read_to_string(&dup).unwrap();
    let (plain, data): (Vec<&str>, Vec<&str>) = (plain.lines().collect(), data.lines().collect());
    assert_eq!(plain[0], data[0], "the same header");
    let truth = std::fs::read_to_string(dir.join("dup.truth.csv")).unwrap();
    let mut seen = vec![false; plain.len() - 1];
    let (mut duplicates, mut changed) = (0, 0);
    for (i, t) in truth.lines().skip(1).enumerate() {
        let t: Vec<&str> = t.split(',').collect();
        let (line, entity): (usize, usize) = (t[0].parse().unwrap(), t[1].parse().unwrap());
        assert_eq!(line, i + 2, "the truth follows the file's lines");
        let (row, original) = (data[line - 1], plain[entity + 1]);
        if t[2] == "false" {
            assert_eq!(row, original, "line {line}: the original of entity {entity}");
            assert!(!std::mem::replace(&mut seen[entity], true), "entity {entity} has two originals");
        } else {
            duplicates += 1;
            changed += usize::from(row != original);
            assert_eq!(row.split(',').next(), original.split(',').next(), "line {line}: the household");
        }
    }
    assert_eq!(truth.lines().count(), data.len(), "a truth line per data row");
    assert!(seen.iter().all(|s| *s), "every person has its original row");
    assert!((300..=550).contains(&duplicates), "{duplicates} duplicates of 2,000 people at 0.2");
    assert!(changed * 100 >= duplicates * 85, "{changed} of {duplicates} duplicates differ from their original");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_import_and_killed_imports_finish_like_a_clean_run() {
    let dir = temp_dir("crash");
    let file = dir.join("people.csv");
    let f = file.to_str().unwrap();
    dancu(&["generate", "--people", "2500", "--seed", "7", "--provinces", "01", "--duplicates", "0.1", "--out", f]);
    let truth = std::fs::read_to_string(dir.join("people.truth.csv")).unwrap();
    let rows = truth.lines().count() as i64 - 1;
    assert!(rows > 2600, "{rows} rows");

    // A clean run.
    let clean = dir.join("clean");
    officer(&clean);
    let c = clean.to_str().unwrap();
    let started = Instant::now();
    let out = dancu(&import_args(c, f));
    let took = started.elapsed();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("people.summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rows_read"], rows, "{summary}");
    // A duplicate's typo may put a birth year in the future: that row is rejected, and reported.
    let rejected = summary["rows_rejected"].as_i64().unwrap();
    assert!(rejected < 10, "{summary}");
    let report = std::fs::read_to_string(dir.join("people.report.csv")).unwrap();
    assert_eq!(report.lines().filter(|l| l.contains(",rejected,")).count() as i64, rejected);
    let stored = rows - rejected;
    let linked = summary["linked_within_batch"].as_i64().unwrap();
    assert!(linked > 100, "duplicates are linked: {summary}");
    let want = state(&clean);
    assert_eq!(want.persons, stored);
    assert_eq!(want.lines, stored);
    assert_eq!(want.distinct_keys, stored);
    assert_eq!(want.merged, linked);
    assert_eq!(want.ids, want.distinct_ids);
    assert_eq!(want.ids, stored - linked, "every person kept gets one ID");
    assert_eq!(want.issued, want.ids);
    assert!(String::from_utf8_lossy(&out.stdout).contains("IDs assigned"));
    // A re-run of the finished batch changes nothing.
    dancu(&import_args(c, f));
    assert_eq!(state(&clean), want);

    // Killed at moments spread over a run (and a little random), then run to the end; these runs
    // set the search indexes aside while storing (the clean run is too small to), so some die
    // without them: the next run builds them when it opens the store.
    let killed = dir.join("killed");
    officer(&killed);
    let k = killed.to_str().unwrap();
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64;
    let mut kills = 0;
    let mut took = took;
    for i in 0..7u64 {
        let jitter = (seed.wrapping_mul(6364136223846793005).wrapping_add(i * 1442695040888963407) >> 40) % 100;
        let at =
            took.mul_f64((0.15 + 0.12 * i as f64 + jitter as f64 / 1000.0).min(0.95)).max(Duration::from_millis(30));
        let started = Instant::now();
        let mut child = Command::new(BIN)
            .args(import_args(k, f))
            .args(["--indexes", "defer"])
            .env("DANCU_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let finished = loop {
            if child.try_wait().unwrap().is_some() {
                break Some(started.elapsed());
            }
            if started.elapsed() >= at {
                break None;
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        match finished {
            None => {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
            }
            // The run ended before its moment (the clean run was timed while the other tests
            // of this file loaded the machine): the next moments come from this run's length.
            Some(ran) => took = took.min(ran),
        }
        child.wait().unwrap();
        let s = state(&killed);
        assert_eq!(s.ids, s.distinct_ids, "no ID twice after kill {i}");
        assert_eq!(s.lines, s.distinct_keys);
        assert_eq!(s.lines, s.persons, "every stored person is an imported line, once");
    }
    assert!(kills >= 3, "only {kills} runs were killed");
    let mut last = import_args(k, f);
    last.extend(["--indexes", "defer"]);
    dancu(&last);
    let got = state(&killed);
    assert_eq!(got, want, "a killed and resumed import ends like a clean one");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Pairwise precision and recall of `line,cluster` predictions against a `line,entity` truth.
fn pairwise(truth: &Path, clusters: &Path) -> (f64, f64) {
    use std::collections::HashMap;
    let read = |p: &Path| -> HashMap<String, String> {
        let mut r = csv::Reader::from_path(p).unwrap();
        r.records().map(|x| x.unwrap()).map(|x| (x[0].to_string(), x[1].to_string())).collect()
    };
    let (truth, predicted) = (read(truth), read(clusters));
    let pairs = |labels: Vec<String>| -> usize {
        let mut n: HashMap<String, usize> = HashMap::new();
        for l in labels {
            *n.entry(l).or_default() += 1;
        }
        n.values().map(|k| k * (k - 1) / 2).sum()
    };
    let pred_of = |line: &String| predicted.get(line).cloned().unwrap_or_else(|| format!("alone:{line}"));
    let true_pairs = pairs(truth.values().cloned().collect());
    let predicted_pairs = pairs(truth.keys().map(pred_of).collect());
    let correct = pairs(truth.iter().map(|(line, e)| format!("{e}|{}", pred_of(line))).collect());
    (correct as f64 / predicted_pairs.max(1) as f64, correct as f64 / true_pairs.max(1) as f64)
}

#[test]
fn dedupe_links_a_file_without_storing_anything() {
    let dir = temp_dir("dedupe");
    let file = dir.join("people.csv");
    let f = file.to_str().unwrap();
    dancu(&["generate", "--people", "10000", "--provinces", "01", "--duplicates", "0.1", "--seed", "11", "--out", f]);
    let clusters = dir.join("clusters.csv");
    let pairs = dir.join("pairs.csv");
    let summary = dir.join("dedupe.json");
    dancu(&[
        "dedupe",
        f,
        "--unit",
        "province:01",
        "--out",
        clusters.to_str().unwrap(),
        "--pairs",
        pairs.to_str().unwrap(),
        "--summary",
        summary.to_str().unwrap(),
    ]);
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    let rows = std::fs::read_to_string(&file).unwrap().lines().count() as u64 - 1;
    assert_eq!(s["rows_read"], rows, "{s}");
    assert!(s["clusters"].as_u64().unwrap() > 100, "{s}");
    let (precision, recall) = pairwise(&dir.join("people.truth.csv"), &clusters);
    assert!(precision >= 0.99 && recall >= 0.97, "precision {precision}, recall {recall}");
    // The pairs file explains each linked pair field by field.
    let mut r = csv::Reader::from_path(&pairs).unwrap();
    let head: Vec<String> = r.headers().unwrap().iter().take(5).map(str::to_string).collect();
    assert_eq!(head, ["line_a", "line_b", "band", "weight", "probability"]);
    assert_eq!(r.records().count() as u64, s["link_pairs"].as_u64().unwrap() + s["review_pairs"].as_u64().unwrap());
    // Nothing stored: no database beside the file.
    let names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.contains("sqlite")), "{names:?}");

    // A file from another system: no sex, no birth registration province, no commune, dates as
    // yyyymmdd, through a mapping. The import would refuse every row; dedupe links with what the
    // rows have, the missing fields weighing nothing.
    let other = dir.join("other.csv");
    let mut text = String::from("id,first,last,dob,ssn,addr\n");
    let (firsts, lasts) = (
        ["mitchell", "harley", "madeline", "isabelle", "taylor", "toby", "lydia", "dylan"],
        ["green", "mccarthy", "mason", "hathaway", "webb", "stubs", "zilm", "brown", "white", "jones"],
    );
    for i in 0..80usize {
        text += &format!(
            "{i},{},{},{}{:02}{:02},{},{} {} street suburb{} {}\n",
            firsts[i % firsts.len()],
            lasts[i % lasts.len()],
            1930 + i,
            i % 12 + 1,
            i % 28 + 1,
            1_804_974 + i * 7919,
            i + 1,
            lasts[(i * 3) % lasts.len()],
            i % 9,
            2000 + i * 13
        );
    }
    // Line 82: line 2's person again (a typo in the given name, an abbreviated street).
    text += "80,mitchel,green,19300102,1804974,1 green st suburb0 2000\n";
    // Line 83: no name and nothing else identifying but an address: unusable.
    text += "81,,,,,1 nowhere road\n";
    // Line 84: no name, but line 3's date, number and address: linked through those.
    text += "82,,,19310202,1812893,2 hathaway street suburb1 2013\n";
    std::fs::write(&other, text).unwrap();
    let mapping = dir.join("mapping.csv");
    std::fs::write(
        &mapping,
        "field,column\ngiven_name,first\nsurname,last\nbirth_date,dob\nlegacy_id,ssn\nresidence_detail,addr\n",
    )
    .unwrap();
    let (clusters, report) = (dir.join("other.clusters.csv"), dir.join("other.report.csv"));
    dancu(&[
        "dedupe",
        other.to_str().unwrap(),
        "--unit",
        "province:01",
        "--mapping",
        mapping.to_str().unwrap(),
        "--out",
        clusters.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    // The summary goes beside the input by default.
    let s: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("other.dedupe.json")).unwrap()).unwrap();
    assert_eq!((s["rows_read"].as_u64(), s["rows_unusable"].as_u64()), (Some(83), Some(1)), "{s}");
    assert_eq!(s["rows_import_would_reject"], 82, "{s}");
    let mut r = csv::Reader::from_path(&clusters).unwrap();
    let written: Vec<(u64, u64)> = r.deserialize().map(|x| x.unwrap()).collect();
    assert_eq!(written.len(), 82);
    for (line, cluster) in written {
        let want = match line {
            82 => 2,
            84 => 3,
            _ => line,
        };
        assert_eq!(cluster, want, "line {line}: {s}");
    }
    let report = std::fs::read_to_string(&report).unwrap();
    assert!(report.lines().any(|l| l.starts_with("83,rejected,surname")), "{report}");
    assert!(report.lines().any(|l| l.starts_with("2,rejected,sex")), "{report}");
    // The usual errors for a file the command cannot read.
    let bad = Command::new(BIN).args(["dedupe", other.to_str().unwrap(), "--unit", "province:99"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--unit"), "{}", String::from_utf8_lossy(&bad.stderr));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A row whose personal ID another row of the file already carries is refused (reported as
/// `id_taken`, not stored) and takes no part in linkage (no candidate pair); the batch goes on,
/// and a row without an ID that repeats the first is still paired with it.
#[test]
fn a_personal_id_given_twice_is_refused_and_the_batch_goes_on() {
    let dir = temp_dir("id-taken");
    let file = dir.join("ids.csv");
    std::fs::write(
        &file,
        "surname,middle_name,given_name,sex,birth_date,birth_registration_province,ethnicity,religion,nationality,\
         residence_scheme,residence_commune,personal_id\n\
         Trần,Văn,Hùng,male,1975-06-20,01,01,00,VNM,2025,00004,001075000123\n\
         Trần,Văn,Hùng,male,1975-06-20,01,01,00,VNM,2025,00004,001075000123\n\
         Tran,Van,Hung,male,1975-06-20,01,01,00,VNM,2025,00004,\n\
         Lê,Thị,Lan,female,1988-02-11,01,01,00,VNM,2025,00008,\n",
    )
    .unwrap();
    let data = dir.join("data");
    officer(&data);
    let (d, f) = (data.to_str().unwrap(), file.to_str().unwrap());
    dancu(&import_args(d, f));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("ids.summary.json")).unwrap()).unwrap();
    assert_eq!(summary["rows_read"], 4, "{summary}");
    assert_eq!(summary["rows_rejected"], 1, "{summary}");
    assert_eq!(summary["rejected_by_reason"]["id_taken"], 1, "{summary}");
    // Only the first and third rows are compared: the refused copy of the first pairs with nothing.
    assert_eq!(summary["candidate_pairs"], 1, "{summary}");
    assert_eq!(summary["uncompared_pairs"], 0, "no block too large: {summary}");
    let linked = summary["linked_within_batch"].as_i64().unwrap();
    assert_eq!(linked + summary["review_pairs"].as_i64().unwrap(), 1, "linked or sent to review: {summary}");
    let report = std::fs::read_to_string(dir.join("ids.report.csv")).unwrap();
    let refused: Vec<&str> = report.lines().filter(|l| l.contains("id_taken")).collect();
    assert_eq!(refused.len(), 1, "{report}");
    assert!(refused[0].starts_with("3,"), "the second row (line 3) is refused: {report}");
    let s = state(&data);
    assert_eq!((s.persons, s.merged, s.ids, s.distinct_ids), (3, linked, 3 - linked, 3 - linked), "{s:?}");
    let c = rusqlite::Connection::open(data.join("dancu.sqlite")).unwrap();
    let lines: Vec<i64> = c
        .prepare("SELECT line FROM import_rows ORDER BY line")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(lines, [2, 4, 5]);
}
