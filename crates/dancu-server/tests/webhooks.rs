//! Webhooks end to end over real HTTP, on SQLite and on PostgreSQL: a partner registers a URL,
//! change events (a name change, a death, a move) are delivered by the background worker to a
//! real HTTP receiver that is down at first, then answers 503, then 200: every event arrives, in
//! feed order, each signed (HMAC under the partner's secret and JWS under the registry's key),
//! retries are observed and counted, the worker is restarted midway without loss, and no event is
//! marked delivered twice. A revoked partner gets nothing and its token is refused. Births sent
//! by the civil registration system reach only the subscribers whose scope holds the birth date.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use dancu_core::auth::Role;
use dancu_core::person::PersonStatus;
use dancu_core::sharing::{b64url, b64url_decode, webhook_signature};
use dancu_keys::{PublicKey, Signer, SoftwareKey};
use dancu_server::jose;
use dancu_server::webhooks::{self, WebhookConfig};
use dancu_store::registry::Registry;
use dancu_store::{Attempt, ChangeKind, ChangeMeta, Store};
use serde_json::{Value, json};
use support::{Server, add_officer, call, client, openssl, openssl_issue, start_state};

const ISSUER: &str = "http://127.0.0.1:8080";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn partner_body(id: &str, services: &[&str], fields: &[&str], key: &SoftwareKey) -> Value {
    let pem = PublicKey::from_spki_der(key.public_key_der()).unwrap().to_pem();
    json!({"id": id, "name": format!("Đối tác {id}"), "kind": "ministry", "legal_basis": "Luật Căn cước 2023",
           "services": services, "fields": fields, "rate_limit_per_second": 1000,
           "valid_until": "2099-01-01T00:00:00Z", "public_key_pem": pem})
}

async fn token_call(s: &Server, key: &SoftwareKey, partner: &str) -> support::Resp {
    let claims = json!({"iss": partner, "sub": partner, "aud": format!("{ISSUER}/api/v1/oauth/token"),
                        "iat": now(), "exp": now() + 60, "jti": uuid::Uuid::new_v4().to_string()});
    let a = jose::sign(key, &[("typ", json!("JWT"))], claims.to_string().as_bytes()).unwrap();
    let form = format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={a}"
    );
    let h = [("Content-Type", "application/x-www-form-urlencoded")];
    call(s.addr, "POST", "/api/v1/oauth/token", &h, Some(form.as_bytes())).await
}

async fn token(s: &Server, key: &SoftwareKey, partner: &str) -> String {
    let r = token_call(s, key, partner).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

async fn partner_call(s: &Server, tok: &str, method: &str, path: &str, body: Option<&Value>) -> support::Resp {
    let auth = format!("Bearer {tok}");
    let mut h = vec![("Authorization", auth.as_str()), ("X-Dancu-Purpose", "chi trả bảo hiểm xã hội")];
    let bytes = body.map(|b| b.to_string());
    if bytes.is_some() {
        h.push(("Content-Type", "application/json"));
    }
    let r = call(s.addr, method, path, &h, bytes.as_deref().map(str::as_bytes)).await;
    assert!(r.header("x-dancu-signature").is_some(), "partner answers are signed: {}", r.body);
    r
}

async fn jwks_key(s: &Server) -> (PublicKey, String) {
    let jwks = call(s.addr, "GET", "/.well-known/jwks.json", &[] as &[(&str, &str)], None).await.json();
    let k = &jwks["keys"][0];
    let x = b64url_decode(k["x"].as_str().unwrap()).unwrap();
    let y = b64url_decode(k["y"].as_str().unwrap()).unwrap();
    (PublicKey::from_coordinates(&x, &y).unwrap(), k["kid"].as_str().unwrap().to_string())
}

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    event_id: String,
    attempt: u32,
    timestamp: i64,
    hmac: String,
    jws: String,
    body: Bytes,
    answered: u16,
}

/// A real HTTP receiver: answers 503 to its first `fail_first` requests, then 200.
async fn receiver(listener: tokio::net::TcpListener, fail_first: usize, log: Arc<Mutex<Vec<Received>>>) {
    let app = axum::Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
        let log = log.clone();
        async move {
            let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
            let mut log = log.lock().unwrap();
            let answered = if log.len() < fail_first { 503 } else { 200 };
            log.push(Received {
                path: uri.path().to_string(),
                event_id: h("x-dancu-event-id"),
                attempt: h("x-dancu-delivery-attempt").parse().unwrap_or(0),
                timestamp: h("x-dancu-webhook-timestamp").parse().unwrap_or(0),
                hmac: h("x-dancu-webhook-signature"),
                jws: h("x-dancu-signature"),
                body,
                answered,
            });
            StatusCode::from_u16(answered).unwrap()
        }
    });
    axum::serve(listener, app).await.unwrap();
}

/// A worker on a test's time scale: rounds every 50 ms, back-off from 100 ms up to 400 ms.
fn fast() -> WebhookConfig {
    WebhookConfig {
        poll: Duration::from_millis(50),
        backoff_base: Duration::from_millis(100),
        backoff_max: Duration::from_millis(400),
        timeout: Duration::from_secs(2),
        ..Default::default()
    }
}

async fn wait_for<F: Fn(&Value) -> bool>(admin: &support::Client, path: &str, what: &str, ok: F) -> Value {
    for _ in 0..300 {
        let v = admin.get(path).await.json();
        if ok(&v) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}: {}", admin.get(path).await.body);
}

async fn webhooks(store: Arc<dyn Store>) {
    let (s, state) = start_state(store.clone(), Default::default()).await;
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let mut people = Vec::new();
    for i in 0..3 {
        let rec = reg.create(dancu_store::conformance::sample(i), &meta).await.unwrap();
        people.push(reg.activate(rec.key, None, &meta).await.unwrap());
    }

    let admin = add_officer(&s, "partner.admin", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let bhxh_key = SoftwareKey::generate().unwrap();
    let old_key = SoftwareKey::generate().unwrap();
    let fields = ["personal_id", "full_name", "status", "current_residence"];
    let r = admin.send("POST", "/api/v1/partners", &partner_body("bhxh", &["events"], &fields, &bhxh_key)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.send("POST", "/api/v1/partners", &partner_body("old-tax", &["events"], &fields, &old_key)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r = admin.send("POST", "/api/v1/partners", &partner_body("kyc", &["verify"], &fields, &old_key)).await;
    assert_eq!(r.status, 201, "{}", r.body);

    // The receiver's port, closed for now: the receiver is down.
    let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let url = format!("http://127.0.0.1:{port}/dancu/events");

    // Registration: bad input named by field, then a generated secret shown once.
    let bhxh = token(&s, &bhxh_key, "bhxh").await;
    let bad = [
        (json!({"url": "ftp://x/y"}), "url"),
        (json!({"url": "https://"}), "url"),
        (json!({"url": "http://user:pw@bhxh.example.vn/hook"}), "url"),
        (json!({"url": "not a url"}), "url"),
        (json!({"url": url, "secret": "short"}), "secret"),
        (json!({"url": url, "secret": "a secret with spaces in it, thirty-two+"}), "secret"),
    ];
    for (body, field) in bad {
        let r = partner_call(&s, &bhxh, "PUT", "/api/v1/sharing/webhook", Some(&body)).await;
        r.problem(422, "validation");
        assert_eq!(r.error_fields(), [field], "{body}");
    }
    let r = partner_call(&s, &bhxh, "PUT", "/api/v1/sharing/webhook", Some(&json!({"url": url, "extra": 1}))).await;
    r.problem(422, "validation");
    let r = partner_call(&s, &bhxh, "GET", "/api/v1/sharing/webhook", None).await;
    r.problem(404, "not-found");
    let r = partner_call(&s, &bhxh, "PUT", "/api/v1/sharing/webhook", Some(&json!({"url": url}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = r.json()["secret"].as_str().expect("a generated secret, shown once").to_string();
    assert!(secret.len() >= 43);
    // Replacing the URL keeps the secret (and it is not shown again).
    let r = partner_call(&s, &bhxh, "PUT", "/api/v1/sharing/webhook", Some(&json!({"url": url}))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json().get("secret").is_none());
    // A partner without the events service cannot register.
    let kyc = token(&s, &old_key, "kyc").await;
    let r = partner_call(&s, &kyc, "PUT", "/api/v1/sharing/webhook", Some(&json!({"url": url}))).await;
    r.problem(403, "insufficient-scope");

    // A partner that will be revoked registers too, with its own secret; then it is revoked.
    let old = token(&s, &old_key, "old-tax").await;
    let old_secret = "0123456789abcdef0123456789abcdef-old";
    let body = json!({"url": format!("http://127.0.0.1:{port}/old"), "secret": old_secret});
    let r = partner_call(&s, &old, "PUT", "/api/v1/sharing/webhook", Some(&body)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json().get("secret").is_none(), "a secret the partner chose is not echoed");
    let r = admin
        .send("POST", "/api/v1/partners/old-tax/status", &json!({"status": "revoked", "reason": "hết thỏa thuận"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let r = token_call(&s, &old_key, "old-tax").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")), "{}", r.body);
    let r = call(
        s.addr,
        "GET",
        "/api/v1/sharing/webhook",
        &[("Authorization", format!("Bearer {old}").as_str()), ("X-Dancu-Purpose", "x")],
        None,
    )
    .await;
    assert!(r.status == 401 || r.status == 403, "a revoked partner's token is refused: {}", r.body);

    // Changes: A renamed, B dies, A renamed again, C moves (feed order; A's two events in order).
    let (a, b, c) = (&people[0], &people[1], &people[2]);
    let mut a1 = a.person.clone();
    a1.record.name.given = "Bảo".into();
    store.update_person(a.key, a.version, &a1, ChangeKind::Update, &meta).await.unwrap();
    let mut b1 = b.person.clone();
    b1.status = PersonStatus::Dead;
    b1.status_date = Some(dancu_core::PartialDate::parse("2026-11-01").unwrap());
    store.update_person(b.key, b.version, &b1, ChangeKind::Update, &meta).await.unwrap();
    let mut a2 = a1.clone();
    a2.record.name.given = "Châu".into();
    store.update_person(a.key, a.version + 1, &a2, ChangeKind::Update, &meta).await.unwrap();
    let mut c1 = c.person.clone();
    c1.record.current_residence =
        Some(serde_json::from_value(json!({"scheme": "2025", "commune_code": "26506"})).unwrap());
    store.update_person(c.key, c.version, &c1, ChangeKind::Update, &meta).await.unwrap();
    let expected: Vec<String> = [
        (a.key, a.version + 1, "name_change"),
        (b.key, b.version + 1, "death"),
        (a.key, a.version + 2, "name_change"),
        (c.key, c.version + 1, "move"),
    ]
    .iter()
    .map(|(k, v, kind)| format!("{k}:{v}:{kind}"))
    .collect();

    // The worker runs while the receiver is down: every event is queued, the first is retried.
    let config = fast();
    let worker = webhooks::spawn(state.clone(), config.clone());
    let status = "/api/v1/partners/bhxh/webhook";
    let v = wait_for(&admin, status, "queued events retried", |v| {
        v["pending"] == 4 && v["deliveries"][0]["attempts"].as_i64().unwrap_or(0) >= 3
    })
    .await;
    assert_eq!(v["delivered"], 0);
    let d0 = &v["deliveries"][0];
    assert_eq!(d0["event_id"], expected[0].as_str());
    assert!(d0["last_error"].as_str().unwrap().contains("no connection"), "{d0}");
    assert!(d0["last_status"].is_null());
    assert_eq!(v["deliveries"][1]["attempts"], 0, "the line waits behind its head: order is kept");
    assert!(!v.to_string().contains("Bảo"), "the administrators' view holds no event bodies");

    // The server restarts (the worker stops; the queue is in the store), the receiver comes up
    // answering 503 twice, then 200.
    worker.abort();
    let _ = worker.await;
    let log = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await.unwrap();
    let rx = tokio::spawn(receiver(listener, 2, log.clone()));
    let worker = webhooks::spawn(state.clone(), config.clone());
    let v = wait_for(&admin, status, "every event delivered", |v| v["delivered"] == 4).await;
    assert_eq!(v["pending"], 0);
    worker.abort();
    let _ = worker.await;

    let got = log.lock().unwrap().clone();
    let ok: Vec<&Received> = got.iter().filter(|r| r.answered == 200).collect();
    let ok_ids: Vec<&str> = ok.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ok_ids, expected.iter().map(String::as_str).collect::<Vec<_>>(), "every event, in order, once");
    assert_eq!(got.iter().filter(|r| r.answered == 503).count(), 2);
    assert!(got[..2].iter().all(|r| r.event_id == expected[0]), "503 answers retried the same event");
    assert!(got[2].attempt >= 5, "attempts counted across the restart: {}", got[2].attempt);
    assert!(got.iter().all(|r| r.path == "/dancu/events"), "the revoked partner got nothing");
    let (public, kid) = jwks_key(&s).await;
    for r in &got {
        assert_eq!(r.hmac, webhook_signature(secret.as_bytes(), r.timestamp, &r.event_id, &r.body));
        assert!((r.timestamp - now()).abs() < 60);
        let (h, sg) = r.jws.split_once("..").expect("a detached JWS");
        let whole = format!("{h}.{}.{sg}", b64url(&r.body));
        let parsed = jose::parse(&whole).unwrap();
        assert_eq!(parsed.kid(), Some(kid.as_str()));
        parsed.verify(&whole, &public).expect("the delivery's JWS verifies against the JWKS");
        let ev: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(ev["id"], r.event_id.as_str());
    }
    let bodies: Vec<Value> = ok.iter().map(|r| serde_json::from_slice(&r.body).unwrap()).collect();
    assert_eq!(bodies[0]["name"]["given"], "Bảo");
    assert_eq!(bodies[0]["personal_id"], a.person.personal_id.unwrap().to_string());
    assert_eq!(bodies[1]["kind"], "death");
    assert_eq!(bodies[1]["status"], "dead");
    assert_eq!(bodies[2]["name"]["given"], "Châu");
    assert_eq!(bodies[3]["current_residence"]["commune_code"], "26506");

    // Delivery status as the partner reads it: all delivered, the first after its retries.
    let r = partner_call(&s, &bhxh, "GET", "/api/v1/sharing/webhook?state=delivered", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let list = v["deliveries"].as_array().unwrap();
    assert_eq!(list.len(), 4);
    assert!(list[0]["attempts"].as_i64().unwrap() >= 5);
    assert_eq!(list[0]["last_status"], 200);
    assert!(list[1..].iter().all(|d| d["attempts"] == 1));
    assert!(list.iter().all(|d| d["delivered_at"].is_string() && d["next_attempt_at"].is_null()));
    let r = partner_call(&s, &bhxh, "GET", "/api/v1/sharing/webhook?state=lost", None).await;
    r.problem(400, "validation");
    assert_eq!(r.error_fields(), ["state"]);
    let r = partner_call(&s, &bhxh, "GET", "/api/v1/sharing/webhook?limit=0", None).await;
    assert_eq!(r.error_fields(), ["limit"]);
    let next = list[1]["seq"].as_i64().unwrap();
    let r = partner_call(&s, &bhxh, "GET", &format!("/api/v1/sharing/webhook?after={next}&limit=1"), None).await;
    assert_eq!(r.json()["deliveries"][0]["event_id"], expected[2].as_str());

    // Nothing is sent again: another round delivers nothing, a replayed mark is refused.
    let before = log.lock().unwrap().len();
    webhooks::run_once(&state, &config).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), before);
    let again = Attempt::Delivered { at: now(), status: 200 };
    assert!(!store.webhook_attempt("bhxh", &expected[0], &again).await.unwrap(), "never marked delivered twice");
    assert_eq!(store.webhook_counts("bhxh").await.unwrap(), (0, 4));
    assert_eq!(store.webhook_counts("old-tax").await.unwrap(), (0, 0), "nothing queued for a revoked partner");

    // Each delivery is in the citizen's access log, naming the partner.
    let auditor = add_officer(&s, "kiem.toan", "ministry", &[Role::Auditor], &[], true).await;
    let auditor = client(s.addr, &auditor).await;
    let pid = a.person.personal_id.unwrap();
    let log_a = auditor.get(&format!("/api/v1/persons/{pid}/access-log?per_page=500")).await;
    assert_eq!(log_a.status, 200, "{}", log_a.body);
    let hooks = log_a
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "partner.webhook" && e["officer"] == "partner:bhxh")
        .count();
    assert_eq!(hooks, 2, "A's two events: {}", log_a.body);
    rx.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_sqlite() {
    webhooks(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_postgres() {
    if let Some(store) = support::pg_store().await {
        webhooks(store).await;
    }
}

/// Births registered by the civil registration system reach the subscribers whose field scopes
/// hold the birth date — by webhook and in the feed — once the child has its personal ID; a
/// subscriber without it gets none, and an officer's activation of their own record is no birth.
async fn births(store: Arc<dyn Store>) {
    let (s, state) = start_state(store.clone(), Default::default()).await;
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let adult = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap();

    let admin = add_officer(&s, "partner.admin", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let (civil_key, bhxh_key, tax_key) =
        (SoftwareKey::generate().unwrap(), SoftwareKey::generate().unwrap(), SoftwareKey::generate().unwrap());
    let with_birth = ["personal_id", "full_name", "birth_date", "sex", "permanent_residence"];
    let without = ["personal_id", "full_name", "status", "permanent_residence"];
    for (id, services, fields, key) in [
        ("ho-tich", &["civil_events"][..], &["personal_id"][..], &civil_key),
        ("bhxh", &["events"], &with_birth, &bhxh_key),
        ("thue", &["events"], &without, &tax_key),
    ] {
        let r = admin.send("POST", "/api/v1/partners", &partner_body(id, services, fields, key)).await;
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let log = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let rx = tokio::spawn(receiver(listener, 0, log.clone()));
    let (bhxh, tax) = (token(&s, &bhxh_key, "bhxh").await, token(&s, &tax_key, "thue").await);
    let mut secrets = Vec::new();
    for (tok, path) in [(&bhxh, "/bhxh"), (&tax, "/thue")] {
        let body = json!({"url": format!("http://127.0.0.1:{port}{path}")});
        let r = partner_call(&s, tok, "PUT", "/api/v1/sharing/webhook", Some(&body)).await;
        assert_eq!(r.status, 201, "{}", r.body);
        secrets.push(r.json()["secret"].as_str().unwrap().to_string());
    }

    // The registrar sends a birth: a pending record, no event yet.
    let registrar = token(&s, &civil_key, "ho-tich").await;
    let child = serde_json::to_value(dancu_store::conformance::sample(7)).unwrap();
    let birth = json!({"source_id": "KS-2026-0100", "kind": "birth", "registered_on": "2026-11-20", "person": child});
    let r = partner_call(&s, &registrar, "POST", "/api/v1/sharing/civil-events", Some(&birth)).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let child_key = r.json()["record_key"].as_str().unwrap().to_string();
    // An officer activates the child's record (and, apart, a record of their own).
    let verifier = add_officer(&s, "xac.minh", "ministry", &[Role::Verifier], &[], true).await;
    let verifier = client(s.addr, &verifier).await;
    let r =
        verifier.send("POST", &format!("/api/v1/persons/{child_key}/activate"), &json!({"reason": "khai sinh"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let assigned = r.json()["person"]["personal_id"].as_str().unwrap().to_string();
    reg.activate(adult.key, None, &meta).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_200)).await; // the PostgreSQL feed's settling time
    let birth_id = format!("{child_key}:2:birth");

    // The feed: the subscriber with the birth date in scope reads the birth, within its fields.
    let r = partner_call(&s, &bhxh, "GET", "/api/v1/sharing/events", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let events = r.json()["events"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "the birth, not the officer's activation: {}", r.body);
    let ev = &events[0];
    assert_eq!((ev["id"].as_str(), ev["kind"].as_str()), (Some(birth_id.as_str()), Some("birth")));
    assert_eq!((ev["personal_id"].as_str(), ev["status"].as_str()), (Some(assigned.as_str()), Some("active")));
    assert_eq!((ev["birth_date"].as_str(), ev["sex"].as_str()), (Some("1957-08-17"), Some("female")));
    assert_eq!(ev["name"]["given"], "Bình");
    assert_eq!(ev["permanent_residence"]["commune_code"], "00004");
    assert!(ev.get("ethnicity").is_none() && ev.get("birth_registration_place").is_none(), "outside its fields");
    // The subscriber without the birth date in scope: nothing.
    let r = partner_call(&s, &tax, "GET", "/api/v1/sharing/events", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["events"], json!([]), "{}", r.body);

    // Webhooks: the same event to the subscriber with the scope, signed; none to the other.
    webhooks::run_once(&state, &fast()).await.unwrap();
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 1, "{got:?}");
    let d = &got[0];
    assert_eq!((d.path.as_str(), d.event_id.as_str(), d.answered), ("/bhxh", birth_id.as_str(), 200));
    assert_eq!(d.hmac, webhook_signature(secrets[0].as_bytes(), d.timestamp, &d.event_id, &d.body));
    let body: Value = serde_json::from_slice(&d.body).unwrap();
    assert_eq!(&body, ev, "the webhook carries what the feed gives");
    assert_eq!(store.webhook_counts("bhxh").await.unwrap(), (0, 1));
    assert_eq!(store.webhook_counts("thue").await.unwrap(), (0, 0), "nothing queued outside the scope");
    webhooks::run_once(&state, &fast()).await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 1, "told once");
    rx.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_on_sqlite() {
    births(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn births_on_postgres() {
    if let Some(store) = support::pg_store().await {
        births(store).await;
    }
}

/// A CA and a server certificate for 127.0.0.1 signed by it, made by the OpenSSL command line.
fn receiver_pki(dir: &std::path::Path) {
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    openssl(
        dir,
        &["req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Receiver CA"]
            .iter()
            .chain(&["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"])
            .copied()
            .collect::<Vec<_>>(),
    );
    openssl_issue(
        dir,
        "srv",
        "127.0.0.1",
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
        true,
    );
}

/// What the HTTPS receiver logs of each request: event id, HMAC, timestamp, body.
type TlsLog = Arc<Mutex<Vec<(String, String, i64, Bytes)>>>;

/// A real HTTPS receiver (rustls): logs each request ([`TlsLog`]) and answers 200.
async fn tls_receiver(listener: tokio::net::TcpListener, tls: Arc<rustls::ServerConfig>, log: TlsLog) {
    use http_body_util::BodyExt;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        let (acceptor, log) = (acceptor.clone(), log.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(stream).await else { return };
            let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let log = log.clone();
                async move {
                    let h = |k: &str| req.headers().get(k).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                    let (event, hmac, ts) =
                        (h("x-dancu-event-id"), h("x-dancu-webhook-signature"), h("x-dancu-webhook-timestamp"));
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    log.lock().unwrap().push((event, hmac, ts.parse().unwrap_or(0), body));
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(Bytes::new())))
                }
            });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
        });
    }
}

/// An `https://` receiver: a worker trusting only the system's certificate authorities refuses
/// its certificate (a failed try, named, retried; nothing reaches the receiver), and one given
/// the receiver's CA (`--webhook-ca`) delivers the event over TLS, signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_over_https() {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let store = support::sqlite_store().await;
    let (s, state) = start_state(store.clone(), Default::default()).await;
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(0), &meta).await.unwrap();
    let person = reg.activate(rec.key, None, &meta).await.unwrap();
    let admin = add_officer(&s, "partner.admin", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let key = SoftwareKey::generate().unwrap();
    let fields = ["personal_id", "full_name", "status"];
    let r = admin.send("POST", "/api/v1/partners", &partner_body("thue", &["events"], &fields, &key)).await;
    assert_eq!(r.status, 201, "{}", r.body);

    let dir = std::env::temp_dir().join(format!("dancu-webhook-tls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    receiver_pki(&dir);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let chain = CertificateDer::pem_slice_iter(&read("srv.pem")).collect::<Result<Vec<_>, _>>().unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, PrivateKeyDer::from_pem_slice(&read("srv.key")).unwrap())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://127.0.0.1:{}/thue/su-kien", listener.local_addr().unwrap().port());
    let log = Arc::new(Mutex::new(Vec::new()));
    let rx = tokio::spawn(tls_receiver(listener, Arc::new(server), log.clone()));

    let tok = token(&s, &key, "thue").await;
    let secret = "0123456789abcdef0123456789abcdef-thue";
    let r =
        partner_call(&s, &tok, "PUT", "/api/v1/sharing/webhook", Some(&json!({"url": url, "secret": secret}))).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let mut renamed = person.person.clone();
    renamed.record.name.given = "Bảo".into();
    store.update_person(person.key, person.version, &renamed, ChangeKind::Update, &meta).await.unwrap();

    let status = "/api/v1/partners/thue/webhook";
    let config = fast();
    let worker = webhooks::spawn(state.clone(), config.clone());
    let v = wait_for(&admin, status, "the untrusted receiver retried", |v| {
        v["pending"] == 1 && v["deliveries"][0]["attempts"].as_i64().unwrap_or(0) >= 2
    })
    .await;
    worker.abort();
    let _ = worker.await;
    let error = v["deliveries"][0]["last_error"].as_str().unwrap();
    assert!(error.contains("TLS") && error.to_lowercase().contains("certificate"), "{error}");
    assert!(log.lock().unwrap().is_empty(), "no request over a refused handshake");

    let trusted = WebhookConfig { tls: webhooks::client_tls(Some(&read("ca.pem"))).unwrap(), ..config };
    let worker = webhooks::spawn(state.clone(), trusted);
    wait_for(&admin, status, "the event delivered over TLS", |v| v["delivered"] == 1).await;
    worker.abort();
    let got = log.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (event, hmac, ts, body) = &got[0];
    assert_eq!(event, &format!("{}:{}:name_change", person.key, person.version + 1));
    assert_eq!(hmac, &webhook_signature(secret.as_bytes(), *ts, event, body));
    assert_eq!(serde_json::from_slice::<Value>(body).unwrap()["name"]["given"], "Bảo");
    rx.abort();

    let bad = webhooks::client_tls(Some(b"not a certificate")).unwrap_err();
    assert!(bad.contains("no CERTIFICATE"), "{bad}");
    let _ = std::fs::remove_dir_all(&dir);
}
