//! Residence procedures over real HTTP, on SQLite and on PostgreSQL: an application filed,
//! received and approved by commune police; the person's record, household and history follow;
//! bad input is refused naming the field; a residence confirmation verifies and a tampered or
//! forged one does not.

mod support;

use std::sync::Arc;

use dancu_core::auth::Role;
use dancu_store::Store;
use serde_json::{Value, json};
use support::{Client, add_officer, call, client, start_on};

async fn officer(s: &support::Server, name: &str, unit: &str, roles: &[Role]) -> Client {
    let c = add_officer(s, name, unit, roles, &[], false).await;
    client(s.addr, &c).await
}

async fn active_person(o: &Client, permanent: bool) -> (String, String) {
    let mut p = json!({
        "name": {"surname": "Lê", "middle": "Văn", "given": "Tám"},
        "birth_date": "1988-08-08",
        "sex": "male",
        "birth_registration_place": {"province_code": "01"},
        "ethnicity": "01",
        "religion": "00",
        "nationalities": ["VNM"],
        "current_residence": {"scheme": "2025", "commune_code": "00004", "detail": "Nhà trọ số 3"}
    });
    if permanent {
        p["permanent_residence"] = json!({"scheme": "2025", "commune_code": "00004", "detail": "Số 8 Phố Đội Cấn"});
    }
    let r = o.send("POST", "/api/v1/persons", &json!({"person": p, "reason": "thu thập"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json()["key"].as_str().unwrap().to_string();
    let r = o.send("POST", &format!("/api/v1/persons/{key}/activate"), &json!({"reason": "cấp số"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (key, r.json()["person"]["personal_id"].as_str().unwrap().to_string())
}

fn addr(code: &str, detail: &str) -> Value {
    json!({"scheme": "2025", "commune_code": code, "detail": detail})
}

async fn file(o: &Client, procedure: Value) -> support::Resp {
    o.send("POST", "/api/v1/residence/applications", &json!({"procedure": procedure})).await
}

async fn procedures_over_http(store: Arc<dyn Store>) {
    let s = start_on(store, Default::default()).await;
    let commune = officer(&s, "cand.ba-dinh", "commune:00004", &[Role::Collector, Role::Verifier]).await;
    let elsewhere = officer(&s, "cand.khac", "commune:26506", &[Role::Collector, Role::Verifier]).await;
    let (key, pid) = active_person(&commune, false).await;
    let home = addr("00004", "15 Phố Đội Cấn");
    let reg = json!({"kind": "permanent_registration", "person": pid, "address": home,
                     "household": {"mode": "new", "own_home": true}});

    // outside the area: as if there were no such application
    let r = file(&elsewhere, reg.clone()).await;
    r.problem(404, "not-found");
    let r = file(&commune, reg.clone()).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = r.json();
    let id = app["id"].as_str().unwrap().to_string();
    assert_eq!(app["state"], "submitted");
    assert!(app["deadline"].as_str().unwrap() > app["submitted_at"].as_str().unwrap().split('T').next().unwrap());
    let r = elsewhere.get(&format!("/api/v1/residence/applications/{id}")).await;
    r.problem(404, "not-found");

    // deciding before receiving: refused
    let decide = |d: Value| {
        let id = id.clone();
        let c = &commune;
        async move { c.send("POST", &format!("/api/v1/residence/applications/{id}/decision"), &d).await }
    };
    decide(json!({"decision": "approve"})).await.problem(409, "state");
    let r = commune.send("POST", &format!("/api/v1/residence/applications/{id}/receive"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // open and not yet overdue
    let r = commune.get("/api/v1/residence/applications?overdue=true").await;
    assert_eq!(r.json().as_array().unwrap().len(), 0);
    let r = commune.get("/api/v1/residence/applications?state=received").await;
    assert_eq!(r.json().as_array().unwrap().len(), 1);
    let r = decide(json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let household = r.json()["created_household"].as_str().unwrap().to_string();
    decide(json!({"decision": "approve"})).await.problem(409, "state");

    // the record follows the procedure (and with it the area)
    let p = commune.get(&format!("/api/v1/persons/{pid}")).await.json();
    assert_eq!(p["person"]["permanent_residence"], home);
    assert_eq!(p["person"]["household"]["relationship_to_head"], "head");
    let h = commune.get(&format!("/api/v1/households/{household}")).await;
    assert_eq!(h.status, 200, "{}", h.body);
    assert_eq!(h.json()["head"], key.as_str());
    assert_eq!(p["person"]["residence_file_number"], h.json()["number"]);
    let today = dancu_core::date::iso_date::format(dancu_store::registry::today());
    let r = commune.get(&format!("/api/v1/persons/{pid}/residences?on={today}")).await;
    assert_eq!(r.json()["on"]["residences"][0]["address"], home);
    let r = commune
        .get(&format!("/api/v1/residence/at-address?commune_code=00004&detail=15%20Ph%E1%BB%91%20%C4%90%E1%BB%99i%20C%E1%BA%A5n&on={today}"))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()[0]["person_key"], key.as_str());
    elsewhere
        .get(&format!("/api/v1/residence/at-address?commune_code=00004&on={today}"))
        .await
        .problem(404, "not-found");

    // bad input: each named
    let r = file(&commune, reg.clone()).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["code"], "already_registered");
    let mut second = reg.clone();
    second["address"] = addr("00004", "99 Phố Kim Mã");
    let r = file(&commune, second).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "procedure.moving");
    let r = file(
        &commune,
        json!({"kind": "permanent_registration", "person": pid, "moving": true, "address": addr("00004", "99 Phố Kim Mã"),
               "household": {"mode": "join", "household": "00000000-0000-0000-0000-000000000000", "relationship_to_head": "child"},
               "consent": {"given_by": "X", "given_on": "2025-01-01", "document": "VB"}}),
    )
    .await;
    let errs = r.problem(422, "validation");
    assert_eq!(errs["errors"][0]["code"], "unknown_household");
    let r = file(&commune, json!({"kind": "temporary_registration", "person": pid, "address": addr("26506", "Nhà trọ"), "until": "2020-01-01"})).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "procedure.until");
    let r = file(
        &commune,
        json!({"kind": "household_separation", "household": household, "members": [pid], "new_head": pid}),
    )
    .await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["code"], "consent_required");
    let r = file(&commune, json!({"kind": "no_such_procedure", "person": pid})).await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = commune
        .send("POST", &format!("/api/v1/residence/applications/{id}/decision"), &json!({"decision": "maybe"}))
        .await;
    assert!(r.status == 400 || r.status == 422, "{}", r.body);

    // a stay, notified late
    let r = file(
        &commune,
        json!({"kind": "stay_notification", "person": pid, "address": addr("00004", "Khách sạn Ba Đình"),
               "arrived_at": "2020-01-01T23:30:00+07:00", "until": "2020-01-03"}),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!((r.json()["state"].clone(), r.json()["late"].clone()), (json!("approved"), json!(true)));
}

async fn confirmations_over_http(store: Arc<dyn Store>) {
    let s = start_on(store, Default::default()).await;
    let o = officer(&s, "cand.xac-nhan", "commune:00004", &[Role::Collector, Role::Verifier]).await;
    let (_, pid) = active_person(&o, true).await;
    let r = o.get(&format!("/api/v1/persons/{pid}/residence-confirmation")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.body.contains("XÁC NHẬN THÔNG TIN VỀ CƯ TRÚ") && r.body.contains("<svg"), "{}", r.body);
    assert!(r.body.contains(&pid));
    let code = r.body.split("<code>").nth(1).unwrap().split("</code>").next().unwrap().to_string();
    let a = s.addr;
    let verify = |c: String| async move {
        let none: &[(&str, &str)] = &[];
        call(a, "GET", &format!("/api/v1/residence-confirmations/verify?code={c}"), none, None).await
    };
    // anyone (no login) can check a genuine one
    let r = verify(code.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["valid"], true);
    assert_eq!(r.json()["statement"]["personal_id"], pid.as_str());
    assert_eq!(r.json()["statement"]["permanent_residence"]["commune_code"], "00004");
    // tampered: the statement re-encoded with another address keeps the old signature
    let (m, sig) = code.split_once('.').unwrap();
    let mut st: Value = serde_json::from_slice(&dancu_core::auth::base32_decode(m).unwrap()).unwrap();
    st["permanent_residence"]["commune_code"] = json!("26506");
    let st: dancu_core::residence::ConfirmationStatement = serde_json::from_value(st).unwrap();
    let altered = format!("{}.{sig}", dancu_core::auth::base32_encode(&st.to_message()));
    let r = verify(altered).await;
    assert_eq!(r.problem(422, "invalid-confirmation")["errors"][0]["field"], "code");
    // forged: signed with another key
    let other = dancu_keys::SoftwareKey::generate().unwrap();
    let forged = st.code(&dancu_keys::Signer::sign(&other, &st.to_message()).unwrap());
    verify(forged).await.problem(422, "invalid-confirmation");
    // garbage
    verify("NOT-A-CODE".into()).await.problem(422, "invalid-confirmation");
    // one flipped character of the signature
    let mut chars: Vec<char> = code.chars().collect();
    let last = chars.len() - 2;
    chars[last] = if chars[last] == 'A' { 'B' } else { 'A' };
    verify(chars.into_iter().collect()).await.problem(422, "invalid-confirmation");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residence_procedures_on_sqlite() {
    procedures_over_http(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residence_procedures_on_postgres() {
    if let Some(store) = support::pg_store().await {
        procedures_over_http(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn residence_confirmations_verify_and_forgeries_fail() {
    confirmations_over_http(support::sqlite_store().await).await;
}
