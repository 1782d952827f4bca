//! The conformance suite against the SQLite adapter (a real database file per test).

use std::sync::Arc;

use dancu_store::sqlite::SqliteStore;
use dancu_store::{PersonRef, Store};

fn temp_path() -> std::path::PathBuf {
    dancu_store::conformance::scratch_dir("test").join("dancu.sqlite")
}

async fn fresh() -> Option<Arc<dyn Store>> {
    let store = SqliteStore::open(temp_path()).unwrap();
    // every migration of the main file (1-12, 15, 16, 18, 19) and of the audit trail's own file
    assert_eq!(store.migrate().await.unwrap(), 16 + 2);
    Some(Arc::new(store))
}

dancu_store::conformance_tests!(fresh);

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let path = temp_path();
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    let reg = dancu_store::registry::Registry::new(Arc::new(store));
    let meta = dancu_store::ChangeMeta::new("o", "r", None);
    let rec = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    drop(reg);
    let again = SqliteStore::open(&path).unwrap();
    assert_eq!(again.migrate().await.unwrap(), 0);
    let back = again.get_person(&PersonRef::PersonalId(rec.person.personal_id.unwrap())).await.unwrap().unwrap();
    assert_eq!(back, rec);
    let mode: String =
        rusqlite::Connection::open(&path).unwrap().query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

async fn fresh_raw() -> Option<(Arc<dyn Store>, dancu_store::conformance::RawSql, dancu_store::conformance::Dialect)> {
    let path = temp_path();
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    let raw: dancu_store::conformance::RawSql = Arc::new(move |sql: String| {
        let path = path.clone();
        Box::pin(async move {
            // The main file with the audit trail's own file attached: an intruder can reach both.
            let conn = rusqlite::Connection::open(&path).map_err(|e| e.to_string())?;
            let audit = dancu_store::sqlite::audit_path(&path);
            conn.execute("ATTACH DATABASE ?1 AS audit", [audit.to_string_lossy()]).map_err(|e| e.to_string())?;
            conn.execute_batch(&sql).map_err(|e| e.to_string())
        })
    });
    Some((Arc::new(store), raw, dancu_store::conformance::Dialect::Sqlite))
}

dancu_store::audit_tamper_tests!(fresh_raw);
dancu_store::raw_schema_tests!(fresh_raw);

async fn reopenable() -> Option<(Arc<dyn Store>, dancu_store::conformance::Reopen)> {
    let path = temp_path();
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    let reopen: dancu_store::conformance::Reopen = Arc::new(move || {
        let path = path.clone();
        Box::pin(async move {
            let store = SqliteStore::open(&path).unwrap();
            assert_eq!(store.migrate().await.unwrap(), 0);
            Arc::new(store) as Arc<dyn Store>
        })
    });
    Some((Arc::new(store), reopen))
}

dancu_store::audit_index_tests!(reopenable);

/// The seqs of the entries about `target`, newest first, through the query API.
async fn seqs_about(store: &dyn Store, target: &str) -> Vec<i64> {
    let q = dancu_store::AuditQuery { target: Some(target.into()), limit: 1_000, ..Default::default() };
    store.audit_query(&q).await.unwrap().iter().map(|e| e.seq).collect()
}

fn remove_with_log(path: &std::path::Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
}

/// The query indexes are derived data in a file of their own: a missing index file, one of
/// another layout, or one that is not a prefix of the chain (the chain file was replaced) is
/// rebuilt from the chain, and queries answer exactly throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_index_file_is_rebuilt_from_the_chain() {
    use dancu_store::conformance::audit_entry;
    let path = temp_path();
    let index = dancu_store::sqlite::audit_index_path(&path);
    assert_eq!(index.file_name().unwrap(), "dancu.audit-index.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    store.audit_append((1..=100).map(audit_entry).collect()).await.unwrap();
    assert_eq!(store.audit_index(1_000).await.unwrap(), 100);
    let expected: Vec<i64> = (1..=100).rev().filter(|i| i % 5 == 2).collect();
    assert_eq!(seqs_about(&store, "person-2").await, expected);
    drop(store);

    // Deleted: recreated empty, queries read the chain, the indexer fills it again.
    remove_with_log(&index);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.migrate().await.unwrap(), 0);
    assert_eq!(store.audit_indexed_seq().await.unwrap(), 0);
    assert_eq!(seqs_about(&store, "person-2").await, expected);
    assert_eq!(store.audit_index(1_000).await.unwrap(), 100);
    assert_eq!(seqs_about(&store, "person-2").await, expected);
    drop(store);

    // Another layout.
    rusqlite::Connection::open(&index).unwrap().pragma_update(None, "user_version", 99).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.audit_indexed_seq().await.unwrap(), 0);
    assert_eq!(store.audit_index(1_000).await.unwrap(), 100);
    drop(store);

    // The chain file replaced by another store's (60 other entries): the index at mark 100
    // is not a prefix of it.
    let other = temp_path();
    let b = SqliteStore::open(&other).unwrap();
    b.migrate().await.unwrap();
    b.audit_append((1..=60).map(|i| audit_entry(i + 1_000)).collect()).await.unwrap();
    drop(b);
    let chain = dancu_store::sqlite::audit_path(&path);
    remove_with_log(&chain);
    std::fs::copy(dancu_store::sqlite::audit_path(&other), &chain).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.audit_indexed_seq().await.unwrap(), 0, "a foreign index is emptied");
    let foreign: Vec<i64> = (1..=60).rev().filter(|i| (i + 1_000) % 5 == 2).collect();
    assert_eq!(seqs_about(&store, "person-2").await, foreign);
    assert_eq!(store.audit_index(1_000).await.unwrap(), 60);
    assert_eq!(seqs_about(&store, "person-2").await, foreign);
}

/// Appends leave their pages in the audit file's write-ahead log (no copy inside a group
/// commit that requests wait for); the indexing round copies them into the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexing_round_copies_the_audit_log_into_its_file() {
    let path = temp_path();
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    let chain = dancu_store::sqlite::audit_path(&path);
    let size = || std::fs::metadata(&chain).unwrap().len();
    let before = size();
    for chunk in (1..=20_000).map(dancu_store::conformance::audit_entry).collect::<Vec<_>>().chunks(100) {
        store.audit_append(chunk.to_vec()).await.unwrap();
    }
    assert_eq!(size(), before, "appends stay in the log");
    store.audit_index(100).await.unwrap();
    assert!(size() > before + 2_000_000, "the log was copied into the file: {} → {} bytes", before, size());
}

/// Between indexing rounds the indexer's upkeep still runs every second: a change's entry
/// waiting in the main file reaches the chain with no read of the trail, and the trail's log
/// is copied into its file, while the indexes wait for their period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_indexer_upkeep_runs_between_indexing_rounds() {
    use dancu_store::conformance::audit_entry;
    use std::time::{Duration, Instant};
    let path = temp_path();
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    store.migrate().await.unwrap();
    store.audit_append((1..=10).map(audit_entry).collect()).await.unwrap();
    let indexer = dancu_store::audit::AuditIndexer::spawn(store.clone(), Duration::from_secs(3_600));
    let started = Instant::now();
    while store.audit_indexed_seq().await.unwrap() < 10 {
        assert!(started.elapsed() < Duration::from_secs(30), "the first round indexes at start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Appends, then a change with its entry (it waits in the main file: a later append would
    // move it, but none comes, and nothing reads the trail through the store).
    let chain = dancu_store::sqlite::audit_path(&path);
    let size = std::fs::metadata(&chain).unwrap().len();
    for chunk in (12..=20_011).map(audit_entry).collect::<Vec<_>>().chunks(100) {
        store.audit_append(chunk.to_vec()).await.unwrap();
    }
    let reg = dancu_store::registry::Registry::new(store.clone());
    let mut meta = dancu_store::ChangeMeta::new("o", "r", None);
    meta.audit = Some(audit_entry(11));
    reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap();
    let raw = rusqlite::Connection::open(&chain).unwrap();
    let creates = || -> i64 {
        raw.query_row("SELECT count(*) FROM audit_log WHERE request_id = 'req-11'", [], |r| r.get(0)).unwrap()
    };
    let started = Instant::now();
    while creates() == 0 || std::fs::metadata(&chain).unwrap().len() < size + 2_000_000 {
        assert!(started.elapsed() < Duration::from_secs(10), "the upkeep moved the entry and copied the log");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(creates(), 1);
    assert_eq!(store.audit_indexed_seq().await.unwrap(), 10, "no indexing round before the period");
    indexer.abort();
}

/// Group commits start at least the configured spacing apart; one after a quiet spell starts at
/// once, and entries that arrive while a commit waits share it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commits_are_spaced_and_share_the_wait() {
    use std::time::{Duration, Instant};
    let store = fresh().await.unwrap();
    let key = Arc::new(dancu_keys::SoftwareKey::generate().unwrap());
    let spacing = Duration::from_secs(2);
    let writer = dancu_store::audit::AuditWriter::spawn(
        dancu_store::audit::Auditor::new(store.clone(), key),
        1_000_000,
        dancu_store::audit::CommitSpacing { min: spacing, when_busy: 0.0 },
    );
    let first = Instant::now();
    assert_eq!(writer.record(dancu_store::conformance::audit_entry(1)).await.unwrap(), 1);
    assert!(first.elapsed() < Duration::from_millis(1_500), "no wait after a quiet spell: {:?}", first.elapsed());
    let waits: Vec<_> = (2..=21)
        .map(|i| {
            let writer = writer.clone();
            tokio::spawn(async move {
                let seq = writer.record(dancu_store::conformance::audit_entry(i)).await.unwrap();
                (seq, first.elapsed())
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for w in waits {
        let (seq, after) = w.await.unwrap();
        assert!(after >= spacing, "committed {after:?} after the first commit started, before the spacing");
        // all in the one spaced commit: a second one could not start before twice the spacing
        assert!(after < 2 * spacing, "committed {after:?} after the first: not in the commit after it");
        seqs.push(seq);
    }
    seqs.sort_unstable();
    assert_eq!(seqs, (2..=21).collect::<Vec<i64>>());
}

/// While the machine has idle time, commits are not spaced: waiting would only slow callers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_commits_are_not_spaced_on_an_idle_machine() {
    use std::time::{Duration, Instant};
    let store = fresh().await.unwrap();
    let key = Arc::new(dancu_keys::SoftwareKey::generate().unwrap());
    // a threshold above any share: the machine never counts as busy
    let spacing = dancu_store::audit::CommitSpacing { min: Duration::from_secs(5), when_busy: 1.5 };
    let writer =
        dancu_store::audit::AuditWriter::spawn(dancu_store::audit::Auditor::new(store, key), 1_000_000, spacing);
    tokio::time::sleep(Duration::from_millis(300)).await; // the load sampler has run
    let started = Instant::now();
    for i in 1..=3 {
        assert_eq!(writer.record(dancu_store::conformance::audit_entry(i)).await.unwrap(), i);
    }
    assert!(started.elapsed() < Duration::from_secs(4), "three commits in a row waited: {:?}", started.elapsed());
}

#[tokio::test]
async fn local_files_name_the_database_the_trail_and_its_index() {
    let path = temp_path();
    let store = SqliteStore::open(&path).unwrap();
    store.migrate().await.unwrap();
    let files = store.local_files();
    let names: Vec<String> = files.iter().map(|f| f.file_name().unwrap().to_string_lossy().into_owned()).collect();
    for name in ["dancu.sqlite", "dancu.audit.sqlite", "dancu.audit-index.sqlite"] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
    // every one exists, and each write-ahead log named belongs to a database named before it
    assert!(files.iter().all(|f| f.is_file()), "{files:?}");
    for (i, n) in names.iter().enumerate() {
        if let Some(db) = n.strip_suffix("-wal") {
            assert!(names[..i].iter().any(|m| m == db), "{n} without {db}");
        }
    }
    assert!(files.iter().all(|f| f.parent() == path.parent()), "{files:?}");
}
