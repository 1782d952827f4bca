//! Inbound civil-status events over real HTTP, on SQLite and on PostgreSQL: the civil
//! registration system (a partner holding `civil_events`) sends a birth — a pending person whose
//! personal ID, once an officer activates the record, the registrar reads back — and deaths,
//! marriages and divorces, which become change requests applied only when an approver agrees.
//! Every event is idempotent by its source id (a replay gets the same answer and changes nothing;
//! another body under the same id is refused), and malformed events name each bad field.

mod support;

use std::sync::Arc;

use dancu_core::auth::Role;
use dancu_keys::{PublicKey, Signer, SoftwareKey};
use dancu_server::jose;
use dancu_store::registry::Registry;
use dancu_store::{ChangeMeta, RequestQuery, Store};
use serde_json::{Value, json};
use support::{Server, add_officer, call, client, start_on};

const ISSUER: &str = "http://127.0.0.1:8080";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn partner_body(id: &str, services: &[&str], key: &SoftwareKey) -> Value {
    let pem = PublicKey::from_spki_der(key.public_key_der()).unwrap().to_pem();
    json!({"id": id, "name": format!("Hệ thống {id}"), "kind": "ministry", "legal_basis": "Luật Hộ tịch 2014",
           "services": services, "fields": ["personal_id"], "rate_limit_per_second": 1000,
           "valid_until": "2099-01-01T00:00:00Z", "public_key_pem": pem})
}

async fn token(s: &Server, key: &SoftwareKey, partner: &str) -> String {
    let claims = json!({"iss": partner, "sub": partner, "aud": format!("{ISSUER}/api/v1/oauth/token"),
                        "iat": now(), "exp": now() + 60, "jti": uuid::Uuid::new_v4().to_string()});
    let a = jose::sign(key, &[("typ", json!("JWT"))], claims.to_string().as_bytes()).unwrap();
    let form = format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}"
    );
    let h = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = call(s.addr, "POST", "/api/v1/oauth/token", &h, Some(form.as_bytes())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

async fn send(s: &Server, tok: &str, method: &str, path: &str, body: Option<&Value>) -> support::Resp {
    let auth = format!("Bearer {tok}");
    let mut h = vec![("Authorization", auth.as_str()), ("X-Dancu-Purpose", "sổ hộ tịch 2026")];
    let bytes = body.map(|b| b.to_string());
    if bytes.is_some() {
        h.push(("Content-Type", "application/json"));
    }
    let r = call(s.addr, method, path, &h, bytes.as_deref().map(str::as_bytes)).await;
    assert!(r.header("x-dancu-signature").is_some(), "partner answers are signed: {}", r.body);
    r
}

const EVENTS: &str = "/api/v1/sharing/civil-events";

async fn civil(store: Arc<dyn Store>) {
    let s = start_on(store.clone(), Default::default()).await;
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let mut people = Vec::new();
    for i in 0..3 {
        let rec = reg.create(dancu_store::conformance::sample(i), &meta).await.unwrap();
        people.push(reg.activate(rec.key, None, &meta).await.unwrap());
    }
    let pid = |i: usize| people[i].person.personal_id.unwrap().to_string();

    let admin = add_officer(&s, "partner.admin", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let key = SoftwareKey::generate().unwrap();
    let other_key = SoftwareKey::generate().unwrap();
    let r = admin.send("POST", "/api/v1/partners", &partner_body("ho-tich", &["civil_events"], &key)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.send("POST", "/api/v1/partners", &partner_body("ho-tich-2", &["civil_events"], &other_key)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.send("POST", "/api/v1/partners", &partner_body("thue", &["events"], &other_key)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let tok = token(&s, &key, "ho-tich").await;
    let other = token(&s, &other_key, "ho-tich-2").await;
    let tax = token(&s, &other_key, "thue").await;
    let approver = add_officer(&s, "duyet", "ministry", &[Role::Approver], &[], true).await;
    let approver = client(s.addr, &approver).await;

    // A partner without the service is refused.
    let death = json!({"source_id": "KT-2026-0001", "kind": "death", "personal_id": pid(0), "date": "2026-11-01"});
    send(&s, &tax, "POST", EVENTS, Some(&death)).await.problem(403, "insufficient-scope");

    // Malformed events: every bad field named.
    let cases = [
        (json!({"kind": "death", "personal_id": pid(0), "date": "2026-11-01"}), vec!["source_id"]),
        (json!({"source_id": "x y", "kind": "death", "personal_id": pid(0), "date": "2026-11-01"}), vec!["source_id"]),
        (json!({"source_id": "A1", "kind": "adoption"}), vec!["kind"]),
        (json!({"source_id": "A1"}), vec!["kind"]),
        (
            json!({"source_id": "A1", "kind": "death", "personal_id": "123", "date": "2026-13-45"}),
            vec!["date", "personal_id"],
        ),
        (
            json!({"source_id": "A1", "kind": "death", "personal_id": pid(0), "date": "2026-11-01", "cause": "x"}),
            vec!["cause"],
        ),
        (json!({"source_id": "A1", "kind": "marriage", "date": "2026-11-01"}), vec!["personal_id"]),
        (json!({"source_id": "A1", "kind": "birth"}), vec!["person"]),
        (json!({"source_id": "A1", "kind": "birth", "person": {"name": 5}}), vec!["person.name"]),
        (
            json!({"source_id": "A1", "kind": "death", "personal_id": "001099000001", "date": "2026-11-01"}),
            vec!["personal_id"],
        ),
        (json!(["not", "an", "object"]), vec![""]),
    ];
    for (body, fields) in cases {
        let r = send(&s, &tok, "POST", EVENTS, Some(&body)).await;
        r.problem(422, "validation");
        let mut got = r.error_fields();
        got.sort();
        assert_eq!(got, fields, "{body}: {}", r.body);
    }
    let r = send(&s, &tok, "POST", EVENTS, Some(&json!({"source_id": "A1", "kind": "birth", "person": {}}))).await;
    r.problem(422, "validation");
    assert!(r.error_fields().iter().all(|f| f.starts_with("person.")), "{}", r.body);
    assert!(store.civil_event_get("ho-tich", "A1").await.unwrap().is_none(), "refused events leave nothing");

    // A birth: a pending person; the same event again: the same answer, nothing more.
    let child = serde_json::to_value(dancu_store::conformance::sample(7)).unwrap();
    let birth = json!({"source_id": "KS-2026-0001", "kind": "birth", "registered_on": "2026-11-20", "person": child});
    let r = send(&s, &tok, "POST", EVENTS, Some(&birth)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let first = r.json();
    assert_eq!((first["person_status"].as_str(), first["personal_id"].is_null()), (Some("pending"), true));
    let key_of_child = first["record_key"].as_str().unwrap().to_string();
    let r = send(&s, &tok, "POST", EVENTS, Some(&birth)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json(), first, "a replay gets the same answer");
    let mut changed = birth.clone();
    changed["registered_on"] = json!("2026-11-21");
    let r = send(&s, &tok, "POST", EVENTS, Some(&changed)).await;
    r.problem(409, "civil-event-conflict");
    assert_eq!(store.count_persons().await.unwrap(), 4, "one person for the birth, however often it was sent");
    // Only the sender reads it.
    send(&s, &other, "GET", &format!("{EVENTS}/KS-2026-0001"), None).await.problem(404, "not-found");
    // An officer activates the record; the registrar reads the personal ID.
    let verifier = add_officer(&s, "xac.minh", "ministry", &[Role::Verifier], &[], true).await;
    let verifier = client(s.addr, &verifier).await;
    let r = verifier
        .send("POST", &format!("/api/v1/persons/{key_of_child}/activate"), &json!({"reason": "khai sinh"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let assigned = r.json()["person"]["personal_id"].as_str().unwrap().to_string();
    let r = send(&s, &tok, "GET", &format!("{EVENTS}/KS-2026-0001"), None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (r.json()["personal_id"].as_str(), r.json()["person_status"].as_str()),
        (Some(assigned.as_str()), Some("active"))
    );
    let r = send(&s, &tok, "POST", EVENTS, Some(&birth)).await;
    assert_eq!((r.status, r.json()["personal_id"].as_str()), (200, Some(assigned.as_str())));

    // A death: a change request; the person stays alive until an approver agrees.
    let r = send(&s, &tok, "POST", EVENTS, Some(&death)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let v = r.json();
    assert_eq!(v["request_state"], "pending");
    let rid = v["change_request"].as_str().unwrap().to_string();
    let p0 = store.get_person(&dancu_store::PersonRef::Key(people[0].key)).await.unwrap().unwrap();
    assert_eq!(p0.person.status, dancu_core::PersonStatus::Active);
    let r = approver
        .send("POST", &format!("/api/v1/change-requests/{rid}/decision"), &json!({"decision": "approve"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p0 = store.get_person(&dancu_store::PersonRef::Key(people[0].key)).await.unwrap().unwrap();
    assert_eq!(p0.person.status, dancu_core::PersonStatus::Dead);
    let r = send(&s, &tok, "POST", EVENTS, Some(&death)).await;
    assert_eq!((r.status, r.json()["request_state"].as_str()), (200, Some("approved")), "{}", r.body);
    let q = RequestQuery { person_key: Some(people[0].key), limit: 100, ..Default::default() };
    assert_eq!(store.change_requests(&q).await.unwrap().len(), 1, "a replay makes no second request");
    // Another death event for the dead person is refused with the reason.
    let again = json!({"source_id": "KT-2026-0002", "kind": "death", "personal_id": pid(0), "date": "2026-11-02"});
    let r = send(&s, &tok, "POST", EVENTS, Some(&again)).await;
    r.problem(422, "validation");

    // Marriage, then divorce, each approved; a divorce of an unmarried person is refused.
    let marriage =
        json!({"source_id": "KH-2026-0001", "kind": "marriage", "personal_id": pid(1), "date": "2026-10-10"});
    let r = send(&s, &tok, "POST", EVENTS, Some(&marriage)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.json()["change_request"].as_str().unwrap().to_string();
    let req = approver.get(&format!("/api/v1/change-requests/{rid}")).await.json();
    assert_eq!(req["guarded"], json!(["marital_status"]));
    assert_eq!(req["requested_by"], "partner:ho-tich");
    let r = approver
        .send("POST", &format!("/api/v1/change-requests/{rid}/decision"), &json!({"decision": "approve"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let p1 = store.get_person(&dancu_store::PersonRef::Key(people[1].key)).await.unwrap().unwrap();
    assert_eq!(p1.person.record.marital_status, Some(dancu_core::person::MaritalStatus::Married));
    let r = send(
        &s,
        &tok,
        "POST",
        EVENTS,
        Some(&json!({"source_id": "KH-2026-0002", "kind": "marriage",
        "personal_id": pid(1), "date": "2026-10-11"})),
    )
    .await;
    r.problem(422, "validation");
    assert_eq!(r.error_fields(), ["personal_id"]);
    let divorce = json!({"source_id": "LH-2026-0001", "kind": "divorce", "personal_id": pid(1), "date": "2026-11-15"});
    let r = send(&s, &tok, "POST", EVENTS, Some(&divorce)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let rid = r.json()["change_request"].as_str().unwrap().to_string();
    let r = approver
        .send(
            "POST",
            &format!("/api/v1/change-requests/{rid}/decision"),
            &json!({"decision": "reject", "note": "chờ bản án có hiệu lực"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = send(&s, &tok, "GET", &format!("{EVENTS}/LH-2026-0001"), None).await;
    assert_eq!(
        (r.json()["request_state"].as_str(), r.json()["decision_note"].as_str()),
        (Some("rejected"), Some("chờ bản án có hiệu lực"))
    );
    let p1 = store.get_person(&dancu_store::PersonRef::Key(people[1].key)).await.unwrap().unwrap();
    assert_eq!(
        p1.person.record.marital_status,
        Some(dancu_core::person::MaritalStatus::Married),
        "rejected: unchanged"
    );
    let r = send(
        &s,
        &tok,
        "POST",
        EVENTS,
        Some(&json!({"source_id": "LH-2026-0002", "kind": "divorce",
        "personal_id": pid(2), "date": "2026-11-15"})),
    )
    .await;
    r.problem(422, "validation");
    assert_eq!(r.error_fields(), ["personal_id"]);
    send(&s, &tok, "GET", &format!("{EVENTS}/NO-SUCH"), None).await.problem(404, "not-found");

    // The registrar's calls are audited, naming the partner.
    let auditor = add_officer(&s, "kiem.toan", "ministry", &[Role::Auditor], &[], true).await;
    let auditor = client(s.addr, &auditor).await;
    let log = auditor.get(&format!("/api/v1/persons/{}/access-log?per_page=500", pid(1))).await;
    assert_eq!(log.status, 200, "{}", log.body);
    let n = log.json().as_array().unwrap().iter().filter(|e| e["action"] == "partner.civil_event").count();
    assert!(n >= 2, "{}", log.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn civil_events_on_sqlite() {
    civil(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn civil_events_on_postgres() {
    if let Some(store) = support::pg_store().await {
        civil(store).await;
    }
}
