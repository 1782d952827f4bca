//! The clerical review queue over real HTTP: scoped to the caller's area, open to verifiers and
//! approvers only, a `same` decision merges (audited, once).

mod support;

use dancu_core::auth::Role;
use dancu_core::{Person, PersonalId, Sex};
use dancu_store::{ChangeMeta, ImportBatch, ImportedRow, ReviewPair, ReviewState};
use serde_json::json;
use support::{add_officer, client, start};
use uuid::Uuid;

#[tokio::test]
async fn review_pairs_are_listed_compared_and_decided_in_area() {
    let s = start().await;
    let batch = ImportBatch {
        id: "batch-review".into(),
        unit: "commune:26506".into(),
        officer: "collector".into(),
        file_sha256: "0".repeat(64),
        started_at: time::OffsetDateTime::now_utc(),
        finished_at: None,
        summary: None,
    };
    let entry = dancu_core::audit::AuditEntry {
        at: "2026-01-01T00:00:00Z".into(),
        officer: "collector".into(),
        role: "collector".into(),
        unit: "commune:26506".into(),
        action: "import.start".into(),
        target: None,
        purpose: None,
        request_id: Some("batch-review".into()),
        client: Some("cli".into()),
        outcome: "started".into(),
    };
    s.store.import_begin(&batch, &entry).await.unwrap();
    // sample(0) lives in 2025 commune 26506; the second record holds a personal ID.
    let mut with_id = Person::new_pending(dancu_store::conformance::sample(0));
    with_id.personal_id = Some(PersonalId::from_parts("079", Sex::Male, 1950, 42).unwrap());
    with_id.status = dancu_core::PersonStatus::Active;
    let rows = vec![
        ImportedRow { line: 2, key: Uuid::now_v7(), person: Person::new_pending(dancu_store::conformance::sample(0)) },
        ImportedRow { line: 3, key: Uuid::now_v7(), person: with_id },
    ];
    s.store.import_chunk("batch-review", &rows, &ChangeMeta::new("collector", "nhập", None)).await.unwrap();
    let pair = ReviewPair {
        id: Uuid::now_v7(),
        batch_id: "batch-review".into(),
        a: rows[0].key,
        b: rows[1].key,
        weight: 2.0,
        probability: 0.8,
        explanation: json!({"fields": [{"field": "name", "level": "exact", "weight": 5.1}], "weight": 2.0}),
        state: ReviewState::Pending,
        created_at: time::OffsetDateTime::now_utc(),
        decided_by: None,
        decided_at: None,
        note: None,
        survivor: None,
    };
    s.store.review_pairs_insert(std::slice::from_ref(&pair)).await.unwrap();

    let collector = add_officer(&s, "collector-1", "commune:26506", &[Role::Collector], &[], false).await;
    let collector = client(s.addr, &collector).await;
    collector.get("/api/v1/review-pairs").await.problem(403, "forbidden");

    let far = add_officer(&s, "verifier-far", "commune:00004", &[Role::Verifier], &[], false).await;
    let far = client(s.addr, &far).await;
    let r = far.get("/api/v1/review-pairs").await;
    assert_eq!((r.status, r.json()), (200, json!([])));
    far.get(&format!("/api/v1/review-pairs/{}", pair.id)).await.problem(404, "not-found");

    let near = add_officer(&s, "verifier-near", "commune:26506", &[Role::Verifier], &[], false).await;
    let near = client(s.addr, &near).await;
    let r = near.get("/api/v1/review-pairs").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = near.get(&format!("/api/v1/review-pairs/{}", pair.id)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!(v["explanation"]["fields"][0]["level"], "exact");
    assert_eq!(v["records"]["a"]["key"], rows[0].key.to_string());
    assert_eq!(v["records"]["b"]["person"]["personal_id"], "079050000042");
    near.get("/api/v1/review-pairs/not-a-uuid").await.problem(400, "validation");

    let path = format!("/api/v1/review-pairs/{}/decision", pair.id);
    let r = near.send("POST", &path, &json!({"decision": "maybe"})).await;
    assert!(r.status == 400 || r.status == 422, "{}", r.body);
    let r = near.send("POST", &path, &json!({"decision": "same", "note": "cùng một người"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    assert_eq!((v["state"].as_str(), v["survivor"].as_str()), (Some("same"), Some(rows[1].key.to_string().as_str())));
    near.send("POST", &path, &json!({"decision": "different"})).await.problem(409, "state");
    // The duplicate names its survivor, and no longer shows in search.
    let merged = s.store.get_person(&dancu_store::PersonRef::Key(rows[0].key)).await.unwrap().unwrap();
    assert_eq!(merged.person.merged_into, Some(rows[1].key.to_string()));
    let found = near.get("/api/v1/persons?name=nguyen").await.json();
    assert_eq!(found["items"].as_array().unwrap().len(), 1, "{found}");
    let log = s.store.audit_read(0, 1000).await.unwrap();
    assert_eq!(log.iter().filter(|e| e.entry.action == "review_pair.decide" && e.entry.outcome == "200").count(), 1);
}
