//! Identity cards end to end over real HTTP, on SQLite and on PostgreSQL: an application taken
//! with its photo and fingerprints, each workflow step by its role, the citizen's status lookup,
//! production that stops when the blank cards run out and resumes on restock, the chip files
//! (passive authentication against the CSCA), the card faces, the card's states and the partner
//! check — and the bad input: a photo that is not a JPEG or too large, a child under 14 without
//! request, a second open application, an approval by the verifier, a run with no stock.

mod support;

use std::sync::Arc;

use dancu_core::PartialDate;
use dancu_core::auth::Role;
use dancu_core::sharing::{b64url, b64url_decode};
use dancu_keys::{PublicKey, Signer, SoftwareKey};
use dancu_store::conformance::FACE_JPEG;
use dancu_store::registry::Registry;
use dancu_store::{ChangeMeta, Store};
use serde_json::{Value, json};
use support::{Resp, add_officer, call, client, start_on};

fn std_b64(bytes: &[u8]) -> String {
    let mut s: String = b64url(bytes)
        .chars()
        .map(|c| {
            if c == '-' {
                '+'
            } else if c == '_' {
                '/'
            } else {
                c
            }
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

fn apply_body(person: &str, photo: &[u8]) -> Value {
    json!({"person": person, "kind": {"kind": "first_issue"}, "photo": std_b64(photo),
           "fingerprints": [std_b64(FACE_JPEG)]})
}

async fn partner_token(s: &support::Server, key: &SoftwareKey, partner: &str) -> String {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = json!({"iss": partner, "sub": partner, "aud": "http://127.0.0.1:8080/api/v1/oauth/token",
                        "iat": now, "exp": now + 60, "jti": uuid::Uuid::new_v4().to_string()});
    let a = dancu_server::jose::sign(key, &[("typ", json!("JWT"))], claims.to_string().as_bytes()).unwrap();
    let form = format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}"
    );
    let h = [("Content-Type", "application/x-www-form-urlencoded")];
    let r = call(s.addr, "POST", "/api/v1/oauth/token", &h, Some(form.as_bytes())).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

async fn validity(s: &support::Server, tok: &str, pid: &str, serial: &str) -> Resp {
    let auth = format!("Bearer {tok}");
    let h = [("Authorization", auth.as_str()), ("X-Dancu-Purpose", "kiểm tra thẻ khi mở tài khoản"), support::JSON];
    let body = json!({"personal_id": pid, "card_serial": serial}).to_string();
    let r = call(s.addr, "POST", "/api/v1/sharing/card-validity", &h, Some(body.as_bytes())).await;
    assert!(r.header("x-dancu-signature").is_some(), "partner answers are signed: {}", r.body);
    r
}

async fn cards(store: Arc<dyn Store>) {
    let s = start_on(store.clone(), Default::default()).await;
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap(); // commune 00004
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    let pid = rec.person.personal_id.unwrap().to_string();
    let mut child = dancu_store::conformance::sample(4);
    child.birth_date = PartialDate::Year(dancu_store::registry::today().year() - 10);
    let child = reg.create(child, &meta).await.unwrap();
    let child = reg.activate(child.key, None, &meta).await.unwrap();
    let child_pid = child.person.personal_id.unwrap().to_string();

    let commune = "commune:00004";
    let op = client(s.addr, &add_officer(&s, "tn.op", commune, &[Role::CardOperator], &[], false).await).await;
    let both = &[Role::Verifier, Role::Approver];
    let lan = client(s.addr, &add_officer(&s, "lan", commune, both, &[], true).await).await;
    let minh = client(s.addr, &add_officer(&s, "minh", "province:01", &[Role::Approver], &[], true).await).await;
    let sx = client(s.addr, &add_officer(&s, "sx", "ministry", &[Role::ProductionOperator], &[], false).await).await;
    let far = client(s.addr, &add_officer(&s, "far", "commune:26506", &[Role::CardOperator], &[], false).await).await;

    // Bad input, each named.
    let r = op.send("POST", "/api/v1/card-applications", &apply_body(&pid, b"GIF89a not a JPEG at all")).await;
    r.problem(422, "validation");
    assert_eq!(r.error_fields(), ["photo"]);
    assert!(r.body.contains("not a JPEG"), "{}", r.body);
    let mut big = FACE_JPEG[..FACE_JPEG.len() - 2].to_vec();
    big.resize(80 * 1024, 0);
    big.extend_from_slice(&[0xFF, 0xD9]);
    let r = op.send("POST", "/api/v1/card-applications", &apply_body(&pid, &big)).await;
    r.problem(422, "validation");
    assert!(r.body.contains("too large"), "{}", r.body);
    let mut b = apply_body(&pid, FACE_JPEG);
    b["photo"] = json!("***");
    assert_eq!(op.send("POST", "/api/v1/card-applications", &b).await.error_fields(), ["photo"]);
    let r = op.send("POST", "/api/v1/card-applications", &apply_body(&child_pid, FACE_JPEG)).await;
    r.problem(422, "under-minimum-age");
    assert_eq!(r.error_fields(), ["requested_under_14"]);
    // Outside the officer's commune: as missing.
    far.send("POST", "/api/v1/card-applications", &apply_body(&pid, FACE_JPEG)).await.problem(404, "not-found");

    // Intake.
    let r = op.send("POST", "/api/v1/card-applications", &apply_body(&pid, FACE_JPEG)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let app = r.json();
    let (id, number) = (app["id"].as_str().unwrap().to_string(), app["number"].as_str().unwrap().to_string());
    assert_eq!((app["stage"].as_str(), app["fingerprints"].as_u64()), (Some("received"), Some(1)));
    let r = op.send("POST", "/api/v1/card-applications", &apply_body(&pid, FACE_JPEG)).await;
    r.problem(409, "open-application");
    assert!(r.body.contains(&number), "{}", r.body);
    // The citizen's lookup: status and dates, nothing personal.
    let r = call(s.addr, "GET", &format!("/api/v1/card-status/{number}"), &[] as &[(&str, &str)], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["trang_thai"], "Đã tiếp nhận");
    assert!(!r.body.contains(&pid) && !r.body.contains("Nguyễn") && !r.body.contains(&rec.key.to_string()));
    let r = call(s.addr, "GET", "/api/v1/card-status/12ab", &[] as &[(&str, &str)], None).await;
    r.problem(400, "validation");

    // Workflow: each step by its role; the verifier may not approve.
    let steps = format!("/api/v1/card-applications/{id}/steps");
    op.send("POST", &steps, &json!({"to": "verified"})).await.problem(403, "forbidden");
    assert_eq!(lan.send("POST", &steps, &json!({"to": "verified"})).await.status, 200);
    lan.send("POST", &steps, &json!({"to": "approved"})).await.problem(403, "same-officer");
    let r = minh.send("POST", &steps, &json!({"to": "approved", "note": "đủ điều kiện"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    op.send("POST", &steps, &json!({"to": "queued"})).await.problem(422, "validation");
    // A centre with no blank cards yet.
    let r = sx
        .send("POST", "/api/v1/production/centres", &json!({"id": "TT-HN", "name": "Trung tâm Hà Nội", "stock": 0}))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = op.send("POST", &steps, &json!({"to": "queued", "centre": "TT-HN"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    op.send("POST", &steps, &json!({"to": "personalized"})).await.problem(422, "validation");

    // No stock: the run stops, the application stays queued, an alert is raised.
    let r = sx.send("POST", "/api/v1/production/centres/TT-HN/run", &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["personalized"].as_array().unwrap().len(), 0);
    assert_eq!(r.json()["stopped_out_of_stock"], true);
    let c = sx.get("/api/v1/production/centres").await.json();
    assert_eq!((c[0]["stock"].as_i64(), c[0]["backlog"].as_u64()), (Some(0), Some(1)));
    assert!(c[0]["alert"]["message"].as_str().unwrap().contains("TT-HN"), "{c}");
    assert_eq!(op.get(&format!("/api/v1/card-applications/{id}")).await.json()["stage"], "queued");
    // Restock: the queue runs again.
    sx.send("POST", "/api/v1/production/centres/TT-HN/restock", &json!({"cards": -3})).await.problem(422, "validation");
    assert_eq!(sx.send("POST", "/api/v1/production/centres/TT-HN/restock", &json!({"cards": 3})).await.status, 204);
    assert!(sx.get("/api/v1/production/centres").await.json()[0]["alert"].is_null());
    let r = sx.send("POST", "/api/v1/production/centres/TT-HN/run", &json!({"max": 10})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let card = r.json()["personalized"][0].clone();
    let serial = card["serial"].as_str().unwrap().to_string();
    assert_eq!(card["personal_id"].as_str(), Some(pid.as_str()));
    assert!(card["mrz"][0].as_str().unwrap().starts_with("IDVNM"), "{card}");
    let c = sx.get("/api/v1/production/centres").await.json();
    assert_eq!(
        (c[0]["stock"].as_i64(), c[0]["backlog"].as_u64(), c[0]["personalized_last_hour"].as_u64()),
        (Some(2), Some(0), Some(1))
    );

    // The chip's files pass passive authentication against the CSCA and its CRL.
    let chip = sx.get(&format!("/api/v1/cards/{serial}/chip")).await.json();
    let file = |k: &str| b64url_decode(chip[k].as_str().unwrap()).unwrap();
    let (dg1, dg2, dg13) = (file("dg1"), file("dg2"), file("dg13"));
    let groups: Vec<(u8, &[u8])> = vec![(1, &dg1), (2, &dg2), (13, &dg13)];
    let report = dancu_card::verify::passive_authentication(
        &file("ef_sod"),
        &groups,
        std::slice::from_ref(&s.csca),
        std::slice::from_ref(&s.crl),
        time::OffsetDateTime::now_utc(),
    );
    assert!(report.passed(), "{report:?}");
    assert_eq!(report.dg13.unwrap().personal_id, pid);

    // The faces for the printer.
    let r = op.get(&format!("/api/v1/cards/{serial}/faces/front")).await;
    assert_eq!((r.status, r.header("content-type")), (200, Some("image/svg+xml; charset=utf-8")), "{}", r.body);
    assert!(r.body.contains("CĂN CƯỚC") && r.body.contains(&pid) && r.body.contains("data:image/jpeg;base64,"));
    assert!(r.body.contains("<path d=\"M"), "the QR code");
    let r = op.get(&format!("/api/v1/cards/{serial}/faces/back")).await;
    assert!(r.body.contains(&card["mrz"][2].as_str().unwrap().replace('<', "&lt;")), "{}", r.body);
    op.get(&format!("/api/v1/cards/{serial}/faces/side")).await.problem(400, "validation");
    far.get(&format!("/api/v1/cards/{serial}/faces/front")).await.problem(404, "not-found");

    // Delivery, the card's states and the partner check.
    for (who, to) in [(&sx, "quality_checked"), (&sx, "dispatched"), (&op, "delivered")] {
        let r = who.send("POST", &steps, &json!({"to": to})).await;
        assert_eq!(r.status, 200, "{to}: {}", r.body);
    }
    let bank_key = SoftwareKey::generate().unwrap();
    let admin = add_officer(&s, "pa", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let body = json!({"id": "bank-c", "name": "Ngân hàng C", "kind": "business", "legal_basis": "Nghị định 59/2022/NĐ-CP",
        "services": ["card_validity"], "fields": [], "rate_limit_per_second": 100, "valid_until": "2099-01-01T00:00:00Z",
        "public_key_pem": PublicKey::from_spki_der(bank_key.public_key_der()).unwrap().to_pem()});
    let r = admin.send("POST", "/api/v1/partners", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let tok = partner_token(&s, &bank_key, "bank-c").await;
    let r = validity(&s, &tok, &pid, &serial).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!((r.json()["valid"].as_bool(), r.json()["state"].as_str()), (Some(true), Some("active")));
    assert!(!r.body.contains("Nguyễn"));
    validity(&s, &tok, &child_pid, &serial).await.problem(404, "not-found");
    validity(&s, &tok, "123", &serial).await.problem(422, "validation");
    let state = format!("/api/v1/cards/{serial}/state");
    op.send("POST", &state, &json!({"state": "lost"})).await.problem(422, "validation");
    let r = op.send("POST", &state, &json!({"state": "lost", "note": "công dân báo mất"})).await;
    assert_eq!((r.status, r.json()["state_today"].as_str()), (200, Some("lost")), "{}", r.body);
    op.send("POST", &state, &json!({"state": "active", "note": "tìm thấy"})).await.problem(409, "state");
    let r = validity(&s, &tok, &pid, &serial).await;
    assert_eq!((r.json()["valid"].as_bool(), r.json()["state"].as_str()), (Some(false), Some("lost")));
    let listed = op.get(&format!("/api/v1/persons/{pid}/cards")).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    // The card reads and changes are in the person's access log.
    let log = lan.get(&format!("/api/v1/persons/{pid}/access-log")).await.json();
    let actions: Vec<&str> = log.as_array().unwrap().iter().filter_map(|e| e["action"].as_str()).collect();
    for a in ["card.apply", "card.step", "card.personalize", "card.state", "partner.card_validity"] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    // Lists: stage filter, bad parameters named.
    let l = op.get("/api/v1/card-applications?stage=delivered").await.json();
    assert_eq!(l.as_array().unwrap().len(), 1);
    op.get("/api/v1/card-applications?stage=lost").await.problem(400, "validation");
    assert!(far.get("/api/v1/card-applications").await.json().as_array().unwrap().is_empty());
    assert!(op.get("/api/v1/card-applications?overdue=true").await.json().as_array().unwrap().is_empty());
}

/// A Document Signer past its key usage period signs nothing: the run is refused, naming it,
/// and the application stays queued with the stock untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_document_signer_is_refused() {
    let store = support::sqlite_store().await;
    let old = time::OffsetDateTime::now_utc() - time::Duration::days(400);
    let s = support::start_with_pki(store.clone(), Default::default(), old).await;
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    let centre = dancu_store::cards::Centre { id: "TT-HN".into(), name: "Trung tâm Hà Nội".into(), stock: 5 };
    reg.centre_add(&centre, None).await.unwrap();
    let new = dancu_store::cards::NewCardApplication {
        person: dancu_store::PersonRef::Key(rec.key),
        kind: dancu_card::application::ApplicationKind::FirstIssue,
        requested_under_14: false,
        photo: FACE_JPEG.to_vec(),
        fingerprints: Vec::new(),
    };
    let app = reg.card_apply(new, "op", |_| true, None).await.unwrap();
    use dancu_card::application::Stage;
    reg.card_step(app.id, Stage::Verified, "v", &[Role::Verifier], None, None, None).await.unwrap();
    reg.card_step(app.id, Stage::Approved, "a", &[Role::Approver], None, None, None).await.unwrap();
    reg.card_step(app.id, Stage::Queued, "c", &[Role::CardOperator], None, Some("TT-HN".into()), None).await.unwrap();
    let sx = client(s.addr, &add_officer(&s, "sx", "ministry", &[Role::ProductionOperator], &[], false).await).await;
    let r = sx.send("POST", "/api/v1/production/centres/TT-HN/run", &json!({})).await;
    r.problem(409, "signer-unusable");
    assert!(r.body.contains("usage period"), "{}", r.body);
    assert_eq!(reg.card_application(app.id).await.unwrap().stage, Stage::Queued);
    assert_eq!(sx.get("/api/v1/production/centres").await.json()[0]["stock"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_on_sqlite() {
    cards(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_on_postgres() {
    if let Some(store) = support::pg_store().await {
        cards(store).await;
    }
}
