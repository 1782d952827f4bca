//! The conformance suite against the SQLite adapter (a real database file per test).

use std::sync::Arc;

use dancu_store::sqlite::SqliteStore;
use dancu_store::{PersonRef, Store};

fn temp_path() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("dancu-test-{}", uuid::Uuid::new_v4())).join("dancu.sqlite")
}

async fn fresh() -> Option<Arc<dyn Store>> {
    let store = SqliteStore::open(temp_path()).unwrap();
    // every migration of the main file (1-12, 15, 16) and of the audit trail's own file
    assert_eq!(store.migrate().await.unwrap(), 14 + 1);
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
