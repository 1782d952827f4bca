//! The conformance suite against the PostgreSQL adapter.
//!
//! Needs `DANCU_TEST_POSTGRES_URL` (e.g. `postgres://dancu@127.0.0.1:55432/dancu`); `.ci/run`
//! starts a throwaway server and sets it. Without it the tests are skipped, except when
//! `CI=true`: then they fail, so that CI can never pass without exercising PostgreSQL.

use std::sync::Arc;

use dancu_store::Store;
use dancu_store::postgres::PgStore;

async fn fresh() -> Option<Arc<dyn Store>> {
    let url = match std::env::var("DANCU_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("DANCU_TEST_POSTGRES_URL is not set: in CI the PostgreSQL suite is mandatory");
            }
            eprintln!("skipped: DANCU_TEST_POSTGRES_URL is not set");
            return None;
        }
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let store = PgStore::connect(&url, Some(&schema)).await.expect("connect to PostgreSQL");
    assert_eq!(store.migrate().await.unwrap(), 1);
    Some(Arc::new(store))
}

dancu_store::conformance_tests!(fresh);
