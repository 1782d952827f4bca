//! The citizen API and the OpenID Connect provider end to end over real HTTP, on SQLite and on
//! PostgreSQL: login by personal ID and a one-time code read from the development channel (the
//! file the server writes), the citizen's own data, applications, consents and access log; the
//! authorization code flow with PKCE for a portal (client_secret_basic and private_key_jwt), the
//! ID token checked against the JWKS — and the abuse list: unknown IDs, wrong codes, too many
//! codes, redirect URI mismatch, code replay, wrong PKCE verifier, expired code, missing or
//! revoked consent, scopes beyond the registration, sessions of the wrong kind; refresh tokens
//! (rotation, reuse revoking the session) and RP-initiated logout.

mod support;

use std::sync::Arc;

use dancu_core::auth::Role;
use dancu_core::sharing::{b64url, b64url_decode};
use dancu_keys::{PublicKey, Signer, SoftwareKey};
use dancu_server::AppState;
use dancu_server::citizen::FileChannel;
use dancu_server::jose;
use dancu_store::Store;
use dancu_store::registry::Registry;
use dancu_store::{ChangeMeta, OidcGrant};
use serde_json::{Value, json};
use support::{Client, JSON, Resp, Server, add_officer, call, client};

const ISSUER: &str = "http://127.0.0.1:8080";
const REDIRECT: &str = "http://127.0.0.1:9999/callback";
const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

async fn start(store: Arc<dyn Store>, codes_per_window: u32) -> (Server, Arc<FileChannel>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let key = Arc::new(SoftwareKey::generate().unwrap());
    let auditor = dancu_store::audit::Auditor::new(store.clone(), key.clone());
    let writer = dancu_store::audit::AuditWriter::spawn(auditor, 5, dancu_store::audit::CommitSpacing::NONE);
    let secrets = Arc::new(dancu_keys::SecretBox::generate().unwrap());
    let dir = dancu_store::conformance::scratch_dir("citizen");
    std::fs::create_dir_all(&dir).unwrap();
    let channel = Arc::new(FileChannel::new(dir.join("citizen-codes.log")));
    let state = AppState::with_auth(Registry::new(store.clone()), Some(writer), Default::default(), secrets.clone())
        .with_code_channel(channel.clone())
        .with_codes_per_window(codes_per_window);
    tokio::spawn(dancu_server::serve(listener, state, std::future::pending()));
    // This server personalizes no cards; the fields name a card PKI all the same.
    let (_, csca, crl) = dancu_store::conformance::test_card_pki(time::OffsetDateTime::now_utc());
    (Server { addr, store, key, secrets, csca, crl, intake_dir: dir }, channel)
}

async fn post_json(s: &Server, path: &str, body: &Value) -> Resp {
    call(s.addr, "POST", path, &[JSON], Some(body.to_string().as_bytes())).await
}

async fn post_form(s: &Server, path: &str, pairs: &[(&str, &str)], extra: &[(&str, &str)]) -> Resp {
    let body = serde_urlencoded::to_string(pairs).unwrap();
    let mut h = vec![FORM];
    h.extend_from_slice(extra);
    call(s.addr, "POST", path, &h, Some(body.as_bytes())).await
}

/// Logs a citizen in through the API; the code is read from the development channel.
async fn citizen_login(s: &Server, ch: &FileChannel, pid: &str) -> Client {
    let r = post_json(s, "/api/v1/citizen/login", &json!({"personal_id": pid})).await;
    assert_eq!(r.status, 202, "{}", r.body);
    let challenge = r.json()["challenge"].as_str().unwrap().to_string();
    let code = ch.code_for(&challenge).expect("the code was delivered");
    let r = post_json(s, "/api/v1/citizen/login/verify", &json!({"challenge": challenge, "code": code})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    Client { addr: s.addr, token: r.json()["token"].as_str().unwrap().to_string() }
}

async fn person(store: &Arc<dyn Store>, n: u32) -> (String, String) {
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(n), &meta).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    (rec.person.personal_id.unwrap().to_string(), rec.key.to_string())
}

async fn citizen_api(store: Arc<dyn Store>) {
    let (s, ch) = start(store.clone(), dancu_core::citizen::CHALLENGES_PER_WINDOW).await;
    let (pid, key) = person(&store, 1).await;
    let (other_pid, other_key) = person(&store, 2).await;

    // An unknown ID gets the same answer as a known one; no code is delivered for it.
    let unknown = "001099012345";
    let a = post_json(&s, "/api/v1/citizen/login", &json!({"personal_id": unknown})).await;
    let b = post_json(&s, "/api/v1/citizen/login", &json!({"personal_id": pid})).await;
    assert_eq!((a.status, b.status), (202, 202));
    let (av, bv) = (a.json(), b.json());
    assert_eq!(av.as_object().unwrap().keys().collect::<Vec<_>>(), bv.as_object().unwrap().keys().collect::<Vec<_>>());
    assert_eq!(av["message"], bv["message"]);
    let unknown_ch = av["challenge"].as_str().unwrap();
    assert!(ch.code_for(unknown_ch).is_none(), "no code goes out for an unknown ID");
    let r = post_json(&s, "/api/v1/citizen/login/verify", &json!({"challenge": unknown_ch, "code": "000000"})).await;
    r.problem(401, "invalid-code");
    // The channel holds the challenge and the code only: no ID, no name.
    let log = std::fs::read_to_string(ch.path()).unwrap();
    assert!(!log.contains(&pid) && !log.contains("Nguyễn"), "{log}");
    // A bad ID is named.
    let r = post_json(&s, "/api/v1/citizen/login", &json!({"personal_id": "12345"})).await;
    assert_eq!(r.error_fields(), ["personal_id"]);

    // Wrong codes: counted, then the challenge is spent even for the right code.
    let challenge = bv["challenge"].as_str().unwrap().to_string();
    let right = ch.code_for(&challenge).unwrap();
    let wrong = if right == "000000" { "111111" } else { "000000" };
    for left in (0..5).rev() {
        let r = post_json(&s, "/api/v1/citizen/login/verify", &json!({"challenge": challenge, "code": wrong})).await;
        assert!(r.problem(401, "invalid-code")["detail"].as_str().unwrap().contains(&format!("{left} tries left")));
    }
    let r = post_json(&s, "/api/v1/citizen/login/verify", &json!({"challenge": challenge, "code": right})).await;
    assert!(r.problem(401, "invalid-code")["detail"].as_str().unwrap().contains("ask for a new code"));

    // A right code logs in once.
    let me = citizen_login(&s, &ch, &pid).await;
    let r = me.get("/api/v1/citizen/me").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["person"]["personal_id"], pid.as_str());
    assert_eq!(r.json()["person"]["name"]["given"], "Bình");

    // Sessions of the other kind do not pass, either way.
    let officer = add_officer(&s, "reader", "ministry", &[Role::Collector], &[], false).await;
    let officer = client(s.addr, &officer).await;
    officer.get("/api/v1/citizen/me").await.problem(401, "unauthenticated");
    let r = call(
        s.addr,
        "GET",
        &format!("/api/v1/persons/{pid}"),
        &[("Authorization".to_string(), format!("Bearer {}", me.token))],
        None,
    )
    .await;
    r.problem(401, "unauthenticated");
    call(s.addr, "GET", "/api/v1/citizen/me", &[] as &[(&str, &str)], None).await.problem(401, "unauthenticated");

    // An officer reads the record: the citizen sees the unit and role, not the officer's name.
    let r = officer.req("GET", &format!("/api/v1/persons/{pid}"), None, &[("X-Dancu-Purpose", "kiểm tra hồ sơ")]).await;
    assert_eq!(r.status, 200);
    let log = me.get("/api/v1/citizen/me/access-log").await;
    assert_eq!(log.status, 200, "{}", log.body);
    assert!(!log.body.contains("reader"), "officers' usernames are not shown: {}", log.body);
    let entries = log.json();
    let read = entries.as_array().unwrap().iter().find(|e| e["action"] == "person.read").expect("the read is listed");
    assert_eq!(read["by"], "officer");
    assert_eq!(read["who"], "Bộ Công an (C06) — Cán bộ thu thập");
    assert_eq!(read["purpose"], "kiểm tra hồ sơ");
    assert_eq!(read["what"], "Xem thông tin");
    assert!(entries.as_array().unwrap().iter().any(|e| e["action"] == "citizen.read" && e["by"] == "citizen"));

    // Consents: granted, listed, revoked once; another person's consent is not found.
    store.partner_insert(&dancu_store::conformance::partner("bank-b")).await.unwrap();
    let r = me
        .send(
            "POST",
            "/api/v1/citizen/me/consents",
            &json!({"partner_id": "bank-b", "purpose": "mở tài khoản",
        "expires_at": "2099-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(r.status, 422, "too far ahead: {}", r.body);
    assert_eq!(r.error_fields(), ["expires_at"]);
    let until = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let r = me
        .send(
            "POST",
            "/api/v1/citizen/me/consents",
            &json!({"partner_id": "no-such", "purpose": "x",
        "expires_at": until}),
        )
        .await;
    assert_eq!(r.error_fields(), ["partner_id"]);
    let r = me
        .send(
            "POST",
            "/api/v1/citizen/me/consents",
            &json!({"partner_id": "bank-b", "purpose": "mở tài khoản",
        "expires_at": until}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let id = r.json()["id"].as_str().unwrap().to_string();
    assert_eq!(r.json()["recorded_by"], "citizen");
    assert!(store.consent_in_force(&key, "bank-b", now()).await.unwrap());
    let list = me.get("/api/v1/citizen/me/consents").await.json();
    assert_eq!(list[0]["id"], id.as_str());
    let other = citizen_login(&s, &ch, &other_pid).await;
    other.req("POST", &format!("/api/v1/citizen/me/consents/{id}/revoke"), None, &[]).await.problem(404, "not-found");
    let r = me.req("POST", &format!("/api/v1/citizen/me/consents/{id}/revoke"), None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["in_force"], false);
    me.req("POST", &format!("/api/v1/citizen/me/consents/{id}/revoke"), None, &[]).await.problem(409, "state");
    assert!(!store.consent_in_force(&key, "bank-b", now()).await.unwrap());

    // Applications: a residence procedure about the citizen, with its state.
    let reg = Registry::new(store.clone());
    let now7 = time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap());
    let p: dancu_core::residence::Procedure = serde_json::from_value(json!({"kind": "stay_notification",
        "person": pid, "address": {"scheme": "2025", "commune_code": "00004", "detail": "Khách sạn Ba Đình"},
        "arrived_at": now7.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "until": dancu_core::date::iso_date::format(now7.date() + time::Duration::days(2))}))
    .unwrap();
    let app = reg.submit(p, "maker", |_| true, None).await.unwrap();
    let r = me.get("/api/v1/citizen/me/applications").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let apps = r.json();
    assert_eq!(apps[0]["id"], app.id.to_string());
    assert_eq!(apps[0]["state"], app.state.code());
    assert!(apps[0]["deadline"].is_string());
    assert!(other.get("/api/v1/citizen/me/applications").await.json().as_array().unwrap().is_empty());
    assert_eq!(apps[0]["category"], "residence");
    assert_eq!(
        (apps[0]["procedure"].as_str(), apps[0]["procedure_en"].as_str()),
        (Some("Thông báo lưu trú"), Some("Stay notification"))
    );

    // Identity-card applications too: state, dates and reason in Vietnamese and English — not the
    // officers' names or notes, nor the photo — and only the citizen's own.
    use dancu_card::application::{ApplicationKind, ReissueReason, Stage};
    let card_app = |key: &str, kind| dancu_store::cards::NewCardApplication {
        person: dancu_store::PersonRef::Key(key.parse().unwrap()),
        kind,
        requested_under_14: false,
        photo: dancu_store::conformance::FACE_JPEG.to_vec(),
        fingerprints: vec![],
    };
    let first = reg.card_apply(card_app(&key, ApplicationKind::FirstIssue), "tn.op", |_| true, None).await.unwrap();
    let why = "công dân rút hồ sơ";
    reg.card_step(first.id, Stage::Cancelled, "tn.op", &[Role::CardOperator], Some(why.into()), None, None)
        .await
        .unwrap();
    let lost = ApplicationKind::Reissue(ReissueReason::Lost);
    let second = reg.card_apply(card_app(&key, lost), "tn.op", |_| true, None).await.unwrap();
    let note = "ghi chú nội bộ của cán bộ";
    reg.card_step(second.id, Stage::Verified, "xac.minh", &[Role::Verifier], Some(note.into()), None, None)
        .await
        .unwrap();
    let theirs =
        reg.card_apply(card_app(&other_key, ApplicationKind::FirstIssue), "tn.op", |_| true, None).await.unwrap();
    let r = me.get("/api/v1/citizen/me/applications").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let apps = r.json();
    let cards: Vec<&Value> = apps.as_array().unwrap().iter().filter(|a| a["category"] == "card").collect();
    assert_eq!(cards.len(), 2, "both card applications are listed: {}", r.body);
    let c1 = cards.iter().find(|a| a["id"] == first.id.to_string()).expect("the cancelled application");
    assert_eq!((c1["number"].as_str(), c1["kind"].as_str()), (Some(first.number.as_str()), Some("first_issue")));
    assert_eq!((c1["state"].as_str(), c1["state_label"].as_str()), (Some("cancelled"), Some("Đã hủy")));
    assert_eq!((c1["decision_reason"].as_str(), c1["decided_at"].is_string()), (Some(why), true));
    assert_eq!(c1["deadline"], dancu_core::date::iso_date::format(first.due_on));
    let c2 = cards.iter().find(|a| a["id"] == second.id.to_string()).expect("the open application");
    assert_eq!((c2["kind"].as_str(), c2["reason"].as_str()), (Some("reissue"), Some("lost")));
    assert_eq!(
        (c2["procedure"].as_str(), c2["procedure_en"].as_str()),
        (Some("Cấp thẻ căn cước: Cấp lại — bị mất thẻ"), Some("Identity card: Re-issue — lost"))
    );
    assert_eq!(
        (c2["state"].as_str(), c2["state_label"].as_str(), c2["state_label_en"].as_str()),
        (Some("verified"), Some("Đã xác minh"), Some("verified"))
    );
    let steps: Vec<&str> = c2["steps"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(steps, ["received", "verified"]);
    assert!(c2["decided_at"].is_null() && c2["decision_reason"].is_null());
    for hidden in [note, "xac.minh", "tn.op", theirs.number.as_str(), &theirs.id.to_string(), "photo", "fingerprint"] {
        assert!(!r.body.contains(hidden), "{hidden} is not for the citizen: {}", r.body);
    }
    let doc = call(s.addr, "GET", "/api/openapi.json", &[] as &[(&str, &str)], None).await.json();
    let schema = &doc["components"]["schemas"];
    assert!(schema["MyApplication"]["properties"]["steps"].is_object() && schema["MyStep"].is_object());
    let r = other.get("/api/v1/citizen/me/applications").await;
    let list = r.json();
    assert_eq!(list.as_array().unwrap().len(), 1, "{}", r.body);
    assert_eq!(
        (list[0]["category"].as_str(), list[0]["number"].as_str()),
        (Some("card"), Some(theirs.number.as_str()))
    );

    // Logout ends the session.
    assert_eq!(me.req("POST", "/api/v1/citizen/logout", None, &[]).await.status, 204);
    me.get("/api/v1/citizen/me").await.problem(401, "unauthenticated");

    // Too many codes for one ID (known or not): 429 with Retry-After, alike.
    for id in [other_pid.as_str(), "001099054321"] {
        let mut last = None;
        for _ in 0..=dancu_core::citizen::CHALLENGES_PER_WINDOW {
            last = Some(post_json(&s, "/api/v1/citizen/login", &json!({"personal_id": id})).await);
        }
        let r = last.unwrap();
        r.problem(429, "too-many-logins");
        assert_eq!(r.header("retry-after"), Some("900"));
    }
}

// ---- OpenID Connect -------------------------------------------------------------------------------

fn verifier_and_challenge(seed: &str) -> (String, String) {
    let verifier = format!("{seed}-{}", "v".repeat(50));
    let challenge = dancu_core::citizen::pkce_challenge(&verifier);
    (verifier, challenge)
}

fn authorize_params<'a>(client_id: &'a str, scope: &'a str, challenge: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("client_id", client_id),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", scope),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]
}

fn location_params(r: &Resp) -> std::collections::HashMap<String, String> {
    assert_eq!(r.status, 303, "{}", r.body);
    let loc = r.header("location").expect("a redirect");
    let (base, q) = loc.split_once('?').unwrap();
    assert_eq!(base, REDIRECT);
    serde_urlencoded::from_str(q).unwrap()
}

/// The login page's two steps; the redirect back to the portal.
async fn browser_login(s: &Server, ch: &FileChannel, params: &[(&str, &str)], pid: &str, consent: bool) -> Resp {
    let q = serde_urlencoded::to_string(params).unwrap();
    let page = call(s.addr, "GET", &format!("/oidc/authorize?{q}"), &[] as &[(&str, &str)], None).await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("Số định danh cá nhân"));
    let mut form = params.to_vec();
    form.extend([("step", "id"), ("personal_id", pid)]);
    let r = post_form(s, "/oidc/authorize", &form, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let challenge = r
        .body
        .split("name=\"challenge\" value=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("{}", r.body))
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let code = ch.code_for(&challenge).unwrap();
    let mut form = params.to_vec();
    form.extend([("step", "code"), ("challenge", challenge.as_str()), ("code", code.as_str())]);
    if consent {
        form.push(("consent", "yes"));
    }
    post_form(s, "/oidc/authorize", &form, &[]).await
}

fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{id}:{secret}");
    // Standard base64 with padding, as HTTP clients send it.
    let url = b64url(raw.as_bytes()).replace('-', "+").replace('_', "/");
    let pad = (4 - url.len() % 4) % 4;
    format!("Basic {url}{}", "=".repeat(pad))
}

async fn token_basic(s: &Server, id: &str, secret: &str, code: &str, verifier: &str) -> Resp {
    let auth = basic(id, secret);
    let form =
        [("grant_type", "authorization_code"), ("code", code), ("redirect_uri", REDIRECT), ("code_verifier", verifier)];
    post_form(s, "/oidc/token", &form, &[("Authorization", auth.as_str())]).await
}

async fn jwks_key(s: &Server) -> (PublicKey, String) {
    let jwks = call(s.addr, "GET", "/.well-known/jwks.json", &[] as &[(&str, &str)], None).await.json();
    let k = &jwks["keys"][0];
    let x = b64url_decode(k["x"].as_str().unwrap()).unwrap();
    let y = b64url_decode(k["y"].as_str().unwrap()).unwrap();
    (PublicKey::from_coordinates(&x, &y).unwrap(), k["kid"].as_str().unwrap().to_string())
}

async fn userinfo(s: &Server, token: &str) -> Resp {
    call(s.addr, "GET", "/oidc/userinfo", &[("Authorization".to_string(), format!("Bearer {token}"))], None).await
}

fn portal_body(id: &str, kind: &str, method: &str, subject: &str, fields: &[&str], key: &SoftwareKey) -> Value {
    let pem = PublicKey::from_spki_der(key.public_key_der()).unwrap().to_pem();
    json!({"id": id, "name": format!("Cổng {id}"), "kind": kind, "legal_basis": "Nghị định 42/2022/NĐ-CP",
           "services": [], "fields": fields, "rate_limit_per_second": 50, "valid_until": "2099-01-01T00:00:00Z",
           "public_key_pem": pem, "oidc": {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": method,
           "subject_type": subject}})
}

async fn oidc(store: Arc<dyn Store>) {
    // Many logins of one person here: the limit of codes per window is not what is tested.
    let (s, ch) = start(store.clone(), 100).await;
    let (pid, key) = person(&store, 1).await;

    // Discovery.
    let d = call(s.addr, "GET", "/.well-known/openid-configuration", &[] as &[(&str, &str)], None).await.json();
    assert_eq!(d["issuer"], ISSUER);
    assert_eq!(d["code_challenge_methods_supported"], json!(["S256"]));
    assert_eq!(d["token_endpoint"], format!("{ISSUER}/oidc/token"));

    // Portals registered by a partner administrator: one with a secret (needs consent, pairwise
    // subject, profile only), one with private_key_jwt (the personal ID as subject, address).
    let admin = add_officer(&s, "partner.admin", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let key_a = SoftwareKey::generate().unwrap();
    let body = portal_body("portal-a", "business", "client_secret_basic", "personal_id", &["full_name"], &key_a);
    let r = admin.send("POST", "/api/v1/partners", &body).await;
    assert_eq!(r.error_fields(), ["oidc.subject"], "the personal ID as subject needs the field");
    let mut body =
        portal_body("portal-a", "business", "client_secret_basic", "pairwise", &["full_name", "birth_date"], &key_a);
    body["oidc"]["redirect_uris"] = json!(["http://evil.example/cb"]);
    assert_eq!(admin.send("POST", "/api/v1/partners", &body).await.error_fields(), ["oidc.redirect_uris[0]"]);
    let body =
        portal_body("portal-a", "business", "client_secret_basic", "pairwise", &["full_name", "birth_date"], &key_a);
    let r = admin.send("POST", "/api/v1/partners", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let secret = r.json()["client_secret"].as_str().expect("the secret is shown once").to_string();
    assert!(admin.get("/api/v1/partners/portal-a").await.json().get("client_secret").is_none());
    let key_b = SoftwareKey::generate().unwrap();
    let body = portal_body(
        "portal-b",
        "ministry",
        "private_key_jwt",
        "personal_id",
        &["personal_id", "full_name", "birth_date", "sex", "permanent_residence"],
        &key_b,
    );
    let r = admin.send("POST", "/api/v1/partners", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json().get("client_secret").is_none());

    // The flow: login page, code, consent, token, ID token verified against the JWKS, userinfo.
    let (verifier, challenge) = verifier_and_challenge("a");
    let params = authorize_params("portal-a", "openid profile", &challenge);
    let back = location_params(&browser_login(&s, &ch, &params, &pid, true).await);
    assert_eq!(back["state"], "st-123");
    assert_eq!(back["iss"], ISSUER);
    let code = back["code"].clone();
    let r = token_basic(&s, "portal-a", &secret, &code, &verifier).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t = r.json();
    let id_token = t["id_token"].as_str().unwrap();
    let (public, kid) = jwks_key(&s).await;
    let parsed = jose::parse(id_token).unwrap();
    parsed.verify(id_token, &public).expect("the ID token verifies against the JWKS");
    assert_eq!(parsed.kid(), Some(kid.as_str()));
    let c = parsed.claims().unwrap();
    assert_eq!(
        (c["iss"].as_str(), c["aud"].as_str(), c["nonce"].as_str()),
        (Some(ISSUER), Some("portal-a"), Some("n-456"))
    );
    assert_eq!(c["name"], "Nguyễn Thị Bình");
    assert!(c["birthdate"].is_string());
    assert!(c.get("gender").is_none(), "sex is not in the portal's fields");
    assert!(c.get("personal_id").is_none());
    let sub = c["sub"].as_str().unwrap().to_string();
    assert_ne!(sub, pid, "a pairwise subject is not the ID");
    assert!(c["exp"].as_i64().unwrap() > now());
    let access = t["access_token"].as_str().unwrap().to_string();
    let u = userinfo(&s, &access).await;
    assert_eq!(u.status, 200, "{}", u.body);
    assert_eq!(u.json()["sub"], sub.as_str());
    assert_eq!(u.json()["family_name"], "Nguyễn");
    // The consent given on the page is the citizen's, listed with their consents.
    assert!(store.consent_in_force(&key, "portal-a", now()).await.unwrap());

    // The same person logs in again: the same pairwise subject.
    let (verifier2, challenge2) = verifier_and_challenge("b");
    let params2 = authorize_params("portal-a", "openid profile", &challenge2);
    let back2 = location_params(&browser_login(&s, &ch, &params2, &pid, false).await);
    let code2 = back2["code"].clone();

    // Abuse: a wrong verifier spends the code.
    let r = token_basic(&s, "portal-a", &secret, &code2, &verifier).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("invalid_grant")), "{}", r.body);
    assert!(r.body.contains("PKCE"));
    let r = token_basic(&s, "portal-a", &secret, &code2, &verifier2).await;
    assert_eq!(r.json()["error"], "invalid_grant");

    // Code replay: refused, and the token issued for the code stops working.
    let r = token_basic(&s, "portal-a", &secret, &code, &verifier).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(r.body.contains("used before"));
    assert_eq!(userinfo(&s, &access).await.status, 401);

    // Refresh tokens (RFC 6749 §6): rotated on use; a spent one presented again revokes the
    // session, the current one with it.
    let (verifier7, challenge7) = verifier_and_challenge("r");
    let params7 = authorize_params("portal-a", "openid profile", &challenge7);
    let code7 = location_params(&browser_login(&s, &ch, &params7, &pid, false).await)["code"].clone();
    let t7 = token_basic(&s, "portal-a", &secret, &code7, &verifier7).await.json();
    let claims7 = jose::parse(t7["id_token"].as_str().unwrap()).unwrap().claims().unwrap();
    let sid = claims7["sid"].as_str().expect("the ID token names its session").to_string();
    let refresh1 = t7["refresh_token"].as_str().expect("a refresh token").to_string();
    let auth = basic("portal-a", &secret);
    let refresh = |tok: String, scope: Option<&'static str>, auth: String| {
        let s = &s;
        async move {
            let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", tok.as_str())];
            form.extend(scope.map(|v| ("scope", v)));
            post_form(s, "/oidc/token", &form, &[("Authorization", auth.as_str())]).await
        }
    };
    let r = refresh(refresh1.clone(), None, basic("portal-a", "not-the-secret")).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")));
    let r = refresh(refresh1.clone(), None, auth.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("cache-control"), Some("no-store"));
    let t = r.json();
    let refresh2 = t["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(refresh2, refresh1, "rotated");
    let id2 = t["id_token"].as_str().unwrap();
    jose::parse(id2).unwrap().verify(id2, &public).expect("the new ID token verifies");
    let c2 = jose::parse(id2).unwrap().claims().unwrap();
    assert_eq!((c2["sub"].as_str(), c2["sid"].as_str()), (Some(sub.as_str()), Some(sid.as_str())));
    assert_eq!((c2["auth_time"].as_i64(), c2.get("nonce")), (claims7["auth_time"].as_i64(), None));
    let access2 = t["access_token"].as_str().unwrap().to_string();
    assert_eq!(userinfo(&s, &access2).await.status, 200);
    assert_eq!(userinfo(&s, t7["access_token"].as_str().unwrap()).await.status, 401, "replaced");
    // A narrower scope may be asked (the grant's is issued); a wider one never.
    let r = refresh(refresh2.clone(), Some("openid"), auth.clone()).await;
    assert_eq!((r.status, r.json()["scope"].as_str()), (200, Some("openid profile")), "{}", r.body);
    let refresh3 = r.json()["refresh_token"].as_str().unwrap().to_string();
    let access3 = r.json()["access_token"].as_str().unwrap().to_string();
    // The spent first token again: refused, and the session is revoked.
    let r = refresh(refresh1.clone(), None, auth.clone()).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("invalid_grant")));
    assert!(r.body.contains("used before"), "{}", r.body);
    let r = refresh(refresh3.clone(), None, auth.clone()).await;
    assert_eq!(r.json()["error"], "invalid_grant", "the current token went with the session");
    assert_eq!(userinfo(&s, &access3).await.status, 401);
    let r = refresh("or_nonsense".into(), None, auth.clone()).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    // A wider scope ends the session too.
    let (verifier9, challenge9) = verifier_and_challenge("w");
    let params9 = authorize_params("portal-a", "openid profile", &challenge9);
    let code9 = location_params(&browser_login(&s, &ch, &params9, &pid, false).await)["code"].clone();
    let t9 = token_basic(&s, "portal-a", &secret, &code9, &verifier9).await.json();
    let r = refresh(t9["refresh_token"].as_str().unwrap().into(), Some("openid profile address"), auth.clone()).await;
    assert_eq!(r.json()["error"], "invalid_scope", "{}", r.body);
    assert_eq!(userinfo(&s, t9["access_token"].as_str().unwrap()).await.status, 401);

    // RP-initiated logout: the session named by the ID token ends; back to a registered URI.
    let (verifier8, challenge8) = verifier_and_challenge("l");
    let params8 = authorize_params("portal-a", "openid profile", &challenge8);
    let code8 = location_params(&browser_login(&s, &ch, &params8, &pid, false).await)["code"].clone();
    let t8 = token_basic(&s, "portal-a", &secret, &code8, &verifier8).await.json();
    let hint = t8["id_token"].as_str().unwrap();
    let get = |q: Vec<(&'static str, String)>| {
        let s = &s;
        async move {
            let q = serde_urlencoded::to_string(&q).unwrap();
            call(s.addr, "GET", &format!("/oidc/logout?{q}"), &[] as &[(&str, &str)], None).await
        }
    };
    let r =
        get(vec![("id_token_hint", hint.into()), ("post_logout_redirect_uri", "http://evil.example/".into())]).await;
    assert_eq!((r.status, r.header("location")), (400, None), "an unregistered URI is never redirected to");
    let mut forged = hint.to_string();
    forged.truncate(forged.len() - 4);
    forged.push_str("AAAA");
    let r = get(vec![("id_token_hint", forged), ("post_logout_redirect_uri", REDIRECT.into())]).await;
    assert_eq!((r.status, r.header("location")), (400, None), "a hint this server did not sign");
    let r = get(vec![("id_token_hint", hint.into()), ("client_id", "portal-b".into())]).await;
    assert_eq!(r.status, 400, "client_id must be the hint's audience");
    assert_eq!(userinfo(&s, t8["access_token"].as_str().unwrap()).await.status, 200, "refusals end nothing");
    let r = get(vec![
        ("id_token_hint", hint.into()),
        ("post_logout_redirect_uri", REDIRECT.into()),
        ("state", "bye".into()),
    ])
    .await;
    assert_eq!(location_params(&r)["state"], "bye");
    assert_eq!(userinfo(&s, t8["access_token"].as_str().unwrap()).await.status, 401);
    let r = refresh(t8["refresh_token"].as_str().unwrap().into(), None, auth.clone()).await;
    assert_eq!(r.json()["error"], "invalid_grant", "the session's refresh token ended with it");
    // Without a hint: a page, nothing else; by POST the same.
    let r = get(vec![]).await;
    assert!(r.status == 200 && r.body.contains("Đã đăng xuất"), "{}", r.body);
    let r = post_form(&s, "/oidc/logout", &[("id_token_hint", hint)], &[]).await;
    assert_eq!(r.status, 200, "a session already ended: the page");
    assert_eq!(d["end_session_endpoint"], format!("{ISSUER}/oidc/logout"));
    assert!(d["grant_types_supported"].as_array().unwrap().contains(&json!("refresh_token")));

    // Wrong secret; another client's code.
    let (verifier3, challenge3) = verifier_and_challenge("c");
    let params3 = authorize_params("portal-a", "openid profile", &challenge3);
    let code3 = location_params(&browser_login(&s, &ch, &params3, &pid, false).await)["code"].clone();
    let r = token_basic(&s, "portal-a", "not-the-secret", &code3, &verifier3).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")));
    let r = token_basic(&s, "portal-b", &secret, &code3, &verifier3).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")), "portal-b uses private_key_jwt");

    // An expired code.
    let expired = "expired-code-for-the-test";
    store
        .oidc_grant_insert(&OidcGrant {
            code_hash: dancu_core::citizen::token_hash(expired),
            client_id: "portal-a".into(),
            person_key: key.clone(),
            redirect_uri: REDIRECT.into(),
            code_challenge: challenge3.clone(),
            scope: "openid profile".into(),
            nonce: None,
            auth_time: now() - 120,
            expires_at: now() - 60,
            used_at: None,
            access_expires_at: None,
            session_id: None,
            refresh_expires_at: None,
            revoked_at: None,
        })
        .await
        .unwrap();
    let r = token_basic(&s, "portal-a", &secret, expired, &verifier3).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(r.body.contains("expired"));

    // Redirect URI mismatch: an error page, never a redirect.
    for uri in ["http://127.0.0.1:9999/callback/", "http://evil.example/callback", ""] {
        let mut p = authorize_params("portal-a", "openid profile", &challenge);
        p[1].1 = uri;
        let q = serde_urlencoded::to_string(&p).unwrap();
        let r = call(s.addr, "GET", &format!("/oidc/authorize?{q}"), &[] as &[(&str, &str)], None).await;
        assert_eq!(r.status, 400);
        assert!(r.header("location").is_none());
        assert!(r.body.contains("redirect_uri"));
        let mut form = p.clone();
        form.extend([("step", "id"), ("personal_id", pid.as_str())]);
        let r = post_form(&s, "/oidc/authorize", &form, &[]).await;
        assert_eq!(r.status, 400);
        assert!(r.header("location").is_none());
    }
    // An unknown client: a page too.
    let q = serde_urlencoded::to_string(authorize_params("nobody", "openid", &challenge)).unwrap();
    let r = call(s.addr, "GET", &format!("/oidc/authorize?{q}"), &[] as &[(&str, &str)], None).await;
    assert_eq!((r.status, r.header("location")), (400, None));

    // Errors after the redirect URI is trusted go back to the portal.
    let q = serde_urlencoded::to_string(authorize_params("portal-a", "openid address", &challenge)).unwrap();
    let r = call(s.addr, "GET", &format!("/oidc/authorize?{q}"), &[] as &[(&str, &str)], None).await;
    assert_eq!(location_params(&r)["error"], "invalid_scope", "address is not in the portal's fields");
    let mut p = authorize_params("portal-a", "openid profile", &challenge);
    p[7].1 = "plain";
    let q = serde_urlencoded::to_string(&p).unwrap();
    let r = call(s.addr, "GET", &format!("/oidc/authorize?{q}"), &[] as &[(&str, &str)], None).await;
    let e = location_params(&r);
    assert_eq!((e["error"].as_str(), e["state"].as_str()), ("invalid_request", "st-123"));

    // Missing consent: the citizen revokes it, logs in without consenting — no code.
    let me = citizen_login(&s, &ch, &pid).await;
    let consents = me.get("/api/v1/citizen/me/consents").await.json();
    let cid = consents.as_array().unwrap().iter().find(|c| c["partner_id"] == "portal-a").unwrap()["id"].clone();
    let r = me.req("POST", &format!("/api/v1/citizen/me/consents/{}/revoke", cid.as_str().unwrap()), None, &[]).await;
    assert_eq!(r.status, 200);
    let (verifier4, challenge4) = verifier_and_challenge("d");
    let params4 = authorize_params("portal-a", "openid profile", &challenge4);
    let e = location_params(&browser_login(&s, &ch, &params4, &pid, false).await);
    assert_eq!(e["error"], "access_denied");
    assert!(!e.contains_key("code"));
    // A code issued while the consent held is refused once it is revoked.
    let code5 = location_params(&browser_login(&s, &ch, &params4, &pid, true).await)["code"].clone();
    let consents = me.get("/api/v1/citizen/me/consents").await.json();
    let live = consents.as_array().unwrap().iter().find(|c| c["in_force"] == true).unwrap()["id"].clone();
    me.req("POST", &format!("/api/v1/citizen/me/consents/{}/revoke", live.as_str().unwrap()), None, &[]).await;
    let r = token_basic(&s, "portal-a", &secret, &code5, &verifier4).await;
    assert_eq!(r.json()["error"], "invalid_grant");
    assert!(r.body.contains("consent"));

    // private_key_jwt, the personal ID as subject, address and personal_id claims.
    let (verifier6, challenge6) = verifier_and_challenge("e");
    let params6 = authorize_params("portal-b", "openid profile address personal_id", &challenge6);
    let code6 = location_params(&browser_login(&s, &ch, &params6, &pid, false).await)["code"].clone();
    let assertion = |jti: &str| {
        let claims = json!({"iss": "portal-b", "sub": "portal-b", "aud": format!("{ISSUER}/oidc/token"),
                            "iat": now(), "exp": now() + 60, "jti": jti});
        jose::sign(&key_b, &[("typ", json!("JWT"))], claims.to_string().as_bytes()).unwrap()
    };
    let a1 = assertion("j-1");
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code6.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier6.as_str()),
        ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
        ("client_assertion", a1.as_str()),
    ];
    let r = post_form(&s, "/oidc/token", &form, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let c = jose::parse(r.json()["id_token"].as_str().unwrap()).unwrap().claims().unwrap();
    assert_eq!(c["sub"], pid.as_str());
    assert_eq!(c["personal_id"], pid.as_str());
    assert_eq!(c["gender"], "female");
    assert_eq!(c["address"]["country"], "VN");
    // The same assertion again is refused.
    let r = post_form(&s, "/oidc/token", &form, &[]).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")));

    // The citizen sees each portal's access, with its purpose.
    let log = me.get("/api/v1/citizen/me/access-log").await.json();
    let tok = log.as_array().unwrap().iter().find(|e| e["action"] == "oidc.token" && e["who"] == "Cổng portal-b");
    let tok = tok.expect("the ID token release is in the citizen's access log");
    assert_eq!(tok["by"], "partner");
    assert!(tok["purpose"].as_str().unwrap().contains("personal_id"));
    assert!(log.as_array().unwrap().iter().any(|e| e["action"] == "oidc.userinfo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_delivery_answers_like_an_unknown_id() {
    // The default channel delivers nothing (no channel configured): a known ID still gets the
    // answer an unknown one gets, so a delivery failure tells nothing about who is registered.
    let store = support::sqlite_store().await;
    let s = support::start_on(store.clone(), Default::default()).await;
    let (pid, _) = person(&store, 1).await;
    let known = post_json(&s, "/api/v1/citizen/login", &json!({"personal_id": pid})).await;
    let unknown = post_json(&s, "/api/v1/citizen/login", &json!({"personal_id": "001099012345"})).await;
    assert_eq!((known.status, unknown.status), (202, 202), "{} {}", known.body, unknown.body);
    assert_eq!(known.json()["message"], unknown.json()["message"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_api_on_sqlite() {
    citizen_api(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn citizen_api_on_postgres() {
    if let Some(store) = support::pg_store().await {
        citizen_api(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_on_sqlite() {
    oidc(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_on_postgres() {
    if let Some(store) = support::pg_store().await {
        oidc(store).await;
    }
}
