//! The conformance suite against the PostgreSQL adapter.
//!
//! Needs `DANCU_TEST_POSTGRES_URL` (e.g. `postgres://dancu@127.0.0.1:55432/dancu`); `.ci/run`
//! starts a throwaway server and sets it. Without it the tests are skipped, except when
//! `CI=true`: then they fail, so that CI can never pass without exercising PostgreSQL.

use std::sync::Arc;

use dancu_store::Store;
use dancu_store::postgres::PgStore;

async fn fresh() -> Option<Arc<dyn Store>> {
    fresh_in_schema().await.map(|(store, _)| store)
}

/// A fresh store in a schema of its own; also returns the schema's name.
async fn fresh_in_schema() -> Option<(Arc<dyn Store>, String)> {
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
    assert_eq!(store.migrate().await.unwrap(), 15);
    Some((Arc::new(store), schema))
}

dancu_store::conformance_tests!(fresh);

async fn fresh_raw() -> Option<(Arc<dyn Store>, dancu_store::conformance::RawSql, dancu_store::conformance::Dialect)> {
    let (store, schema) = fresh_in_schema().await?;
    let url = std::env::var("DANCU_TEST_POSTGRES_URL").unwrap();
    let raw: dancu_store::conformance::RawSql = Arc::new(move |sql: String| {
        let url = url.clone();
        let schema = schema.clone();
        Box::pin(async move {
            let (client, conn) =
                tokio_postgres::connect(&url, tokio_postgres::NoTls).await.map_err(|e| e.to_string())?;
            let task = tokio::spawn(conn);
            let out =
                client.batch_execute(&format!("SET search_path TO {schema}; {sql}")).await.map_err(|e| e.to_string());
            drop(client);
            let _ = task.await;
            out
        })
    });
    Some((store, raw, dancu_store::conformance::Dialect::Postgres))
}

dancu_store::audit_tamper_tests!(fresh_raw);
dancu_store::raw_schema_tests!(fresh_raw);

async fn reopenable() -> Option<(Arc<dyn Store>, dancu_store::conformance::Reopen)> {
    let (store, schema) = fresh_in_schema().await?;
    let url = std::env::var("DANCU_TEST_POSTGRES_URL").unwrap();
    let reopen: dancu_store::conformance::Reopen = Arc::new(move || {
        let (url, schema) = (url.clone(), schema.clone());
        Box::pin(async move {
            let store = PgStore::connect(&url, Some(&schema)).await.expect("connect to PostgreSQL");
            assert_eq!(store.migrate().await.unwrap(), 0);
            Arc::new(store) as Arc<dyn Store>
        })
    });
    Some((store, reopen))
}

dancu_store::audit_index_tests!(reopenable);
