//! Data sharing end to end over real HTTP, on SQLite and on PostgreSQL: partners registered by a
//! partner administrator, OAuth 2.0 client credentials with private_key_jwt, every service, the
//! signature of every response, the audit entries citizens see — and the abuse list: expired and
//! replayed assertions, a token beyond its scope, the rate limit, suspension and revocation,
//! consent missing or revoked, malformed batch rows.

mod support;

use std::sync::Arc;

use dancu_core::auth::Role;
use dancu_core::sharing::{b64url, b64url_decode};
use dancu_keys::{PublicKey, Signer, SoftwareKey};
use dancu_server::jose;
use dancu_store::registry::Registry;
use dancu_store::{ChangeKind, ChangeMeta, Store};
use serde_json::{Value, json};
use support::{Resp, Server, add_officer, call, client, start_on};

const ISSUER: &str = "http://127.0.0.1:8080";

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn in_a_year() -> String {
    (time::OffsetDateTime::now_utc() + time::Duration::days(365))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn assertion(key: &SoftwareKey, partner: &str, exp_in: i64, jti: &str) -> String {
    let claims = json!({"iss": partner, "sub": partner, "aud": format!("{ISSUER}/api/v1/oauth/token"),
                        "iat": now(), "exp": now() + exp_in, "jti": jti});
    jose::sign(key, &[("typ", json!("JWT"))], claims.to_string().as_bytes()).unwrap()
}

async fn token_call(s: &Server, assertion: &str, scope: Option<&str>) -> Resp {
    let mut form = format!(
        "grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}"
    );
    if let Some(sc) = scope {
        form += &format!("&scope={}", sc.replace(' ', "+"));
    }
    let h = [("Content-Type", "application/x-www-form-urlencoded")];
    call(s.addr, "POST", "/api/v1/oauth/token", &h, Some(form.as_bytes())).await
}

async fn token(s: &Server, key: &SoftwareKey, partner: &str, scope: Option<&str>) -> String {
    let jti = uuid::Uuid::new_v4().to_string();
    let r = token_call(s, &assertion(key, partner, 60, &jti), scope).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["access_token"].as_str().unwrap().to_string()
}

/// Checks the detached JWS of a response against the published JWKS.
async fn assert_signed(s: &Server, r: &Resp) {
    let jwks = call(s.addr, "GET", "/.well-known/jwks.json", &[] as &[(&str, &str)], None).await.json();
    let k = &jwks["keys"][0];
    let x = b64url_decode(k["x"].as_str().unwrap()).unwrap();
    let y = b64url_decode(k["y"].as_str().unwrap()).unwrap();
    let public = PublicKey::from_coordinates(&x, &y).unwrap();
    let sig = r.header("x-dancu-signature").unwrap_or_else(|| panic!("unsigned response: {}", r.body));
    let (h, sg) = sig.split_once("..").expect("a detached JWS");
    let whole = format!("{h}.{}.{sg}", b64url(r.body.as_bytes()));
    let parsed = jose::parse(&whole).unwrap();
    assert_eq!(parsed.kid(), k["kid"].as_str());
    parsed.verify(&whole, &public).expect("the response signature verifies against the JWKS");
}

async fn partner_call(s: &Server, tok: &str, method: &str, path: &str, body: Option<(&str, &str)>) -> Resp {
    let auth = format!("Bearer {tok}");
    let mut h = vec![("Authorization", auth.as_str()), ("X-Dancu-Purpose", "mở tài khoản HĐ-2026-001")];
    if let Some((ct, _)) = body {
        h.push(("Content-Type", ct));
    }
    let r = call(s.addr, method, path, &h, body.map(|b| b.1.as_bytes())).await;
    assert_signed(s, &r).await;
    r
}

fn partner_body(id: &str, kind: &str, services: &[&str], fields: &[&str], rate: u32, key: &SoftwareKey) -> Value {
    let pem = PublicKey::from_spki_der(key.public_key_der()).unwrap().to_pem();
    json!({"id": id, "name": format!("Đối tác {id}"), "kind": kind, "legal_basis": "Nghị định 59/2022/NĐ-CP",
           "services": services, "fields": fields, "rate_limit_per_second": rate,
           "valid_until": "2099-01-01T00:00:00Z", "public_key_pem": pem})
}

async fn sharing(store: Arc<dyn Store>) {
    let s = start_on(store.clone(), Default::default()).await;
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    let pid = rec.person.personal_id.unwrap().to_string();
    let name = rec.person.record.name.full(); // Nguyễn Thị Bình
    let birth = rec.person.record.birth_date.to_string();

    // Partner administration.
    let admin = add_officer(&s, "partner.admin", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let bank_key = SoftwareKey::generate().unwrap();
    let tax_key = SoftwareKey::generate().unwrap();
    let all = ["verify", "batch_verify", "retrieve", "pseudonym", "events"];
    let bank_fields = ["personal_id", "full_name", "birth_date", "status", "current_residence"];
    let mut b = partner_body("bank-a", "business", &all, &bank_fields, 1000, &bank_key);
    b["consent_required"] = json!(false);
    let r = admin.send("POST", "/api/v1/partners", &b).await;
    r.problem(422, "validation");
    assert_eq!(r.error_fields(), ["consent_required"], "a business needs consent");
    let mut b = partner_body("bank-a", "business", &all, &bank_fields, 1000, &bank_key);
    b["public_key_pem"] = json!("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----");
    assert_eq!(admin.send("POST", "/api/v1/partners", &b).await.error_fields(), ["public_key_pem"]);
    let r = admin
        .send("POST", "/api/v1/partners", &partner_body("bank-a", "business", &all, &bank_fields, 1000, &bank_key))
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert!(r.json()["consent_required"].as_bool().unwrap());
    assert!(!r.body.contains("pseudonym_key"), "the pseudonym key is never shown");
    let r = admin
        .send(
            "POST",
            "/api/v1/partners",
            &partner_body("tax-b", "ministry", &["retrieve", "events"], &["full_name"], 2, &tax_key),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let r =
        admin.send("POST", "/api/v1/partners", &partner_body("tax-b", "ministry", &["verify"], &[], 2, &tax_key)).await;
    r.problem(409, "duplicate");
    assert_eq!(admin.get("/api/v1/partners").await.json().as_array().unwrap().len(), 2);

    // Client authentication: good, replayed, expired, wrongly signed, beyond the services.
    let jti = "assertion-1";
    let a = assertion(&bank_key, "bank-a", 60, jti);
    let r = token_call(&s, &a, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_signed(&s, &r).await;
    let v = r.json();
    assert_eq!((v["token_type"].as_str(), v["expires_in"].as_i64()), (Some("Bearer"), Some(300)));
    assert_eq!(v["scope"], "verify batch_verify retrieve pseudonym events");
    let bank = v["access_token"].as_str().unwrap().to_string();
    let r = token_call(&s, &a, None).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")), "replay refused");
    assert!(r.json()["error_description"].as_str().unwrap().contains("jti"));
    let r = token_call(&s, &assertion(&bank_key, "bank-a", -5, "assertion-2"), None).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error_description"].as_str().unwrap().contains("expired"), "{}", r.body);
    let r = token_call(&s, &assertion(&tax_key, "bank-a", 60, "assertion-3"), None).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error_description"].as_str().unwrap().contains("signature"), "{}", r.body);
    let r = token_call(&s, &assertion(&tax_key, "tax-b", 60, "assertion-4"), Some("retrieve verify")).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("invalid_scope")));
    let r = token_call(&s, &assertion(&bank_key, "nobody-x", 60, "assertion-5"), None).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")));

    // Identity verification.
    let verify = |tok: String, body: Value| {
        let s = &s;
        async move {
            partner_call(s, &tok, "POST", "/api/v1/sharing/verify", Some(("application/json", &body.to_string()))).await
        }
    };
    let r = verify(bank.clone(), json!({"personal_id": pid, "name": name, "birth_date": birth})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.json(),
        json!({"match": true, "personal_id": "match", "name": "match", "birth_date": "match", "sex": "not_checked",
               "person_status": "active"})
    );
    let r = verify(
        bank.clone(),
        json!({"personal_id": pid, "name": "Nguyen Thi Binh", "birth_date": birth, "sex": "male"}),
    )
    .await;
    let v = r.json();
    assert_eq!(
        (v["match"].as_bool(), v["name"].as_str(), v["sex"].as_str()),
        (Some(false), Some("partial"), Some("no_match"))
    );
    let r = verify(bank.clone(), json!({"personal_id": "001090999999", "name": name, "birth_date": birth})).await;
    assert_eq!(r.json()["personal_id"], "no_match");
    let r = verify(bank.clone(), json!({"personal_id": "12345", "name": name, "birth_date": birth})).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "personal_id");
    let r = verify(bank.clone(), json!({"personal_id": pid, "name": name, "birth_date": "1990-13-01"})).await;
    assert_eq!(r.error_fields(), ["birth_date"]);
    let auth = format!("Bearer {bank}");
    let body = json!({"personal_id": pid, "name": name, "birth_date": birth}).to_string();
    let h = [("Authorization", auth.as_str()), support::JSON];
    let r = call(s.addr, "POST", "/api/v1/sharing/verify", &h, Some(body.as_bytes())).await;
    assert_eq!(r.problem(400, "purpose-required")["errors"][0]["field"], "X-Dancu-Purpose");
    assert_signed(&s, &r).await;

    // A token beyond its scope; officer sessions are no partner tokens; garbage tokens.
    let verify_only = token(&s, &bank_key, "bank-a", Some("verify")).await;
    let r = partner_call(&s, &verify_only, "GET", &format!("/api/v1/sharing/persons/{pid}"), None).await;
    r.problem(403, "insufficient-scope");
    let r = partner_call(&s, &admin.token, "GET", &format!("/api/v1/sharing/persons/{pid}"), None).await;
    r.problem(401, "invalid-token");
    let forged = bank.replace('.', ".x");
    partner_call(&s, &forged, "GET", &format!("/api/v1/sharing/persons/{pid}"), None)
        .await
        .problem(401, "invalid-token");

    // Data retrieval: consent required, recorded, then revoked.
    let path = format!("/api/v1/sharing/persons/{pid}");
    partner_call(&s, &bank, "GET", &path, None).await.problem(403, "consent-required");
    let counter = add_officer(&s, "counter", "ministry", &[Role::Collector], &[], false).await;
    let counter = client(s.addr, &counter).await;
    let far = json!({"partner_id": "bank-a", "purpose": "mở tài khoản", "expires_at": "2099-01-01T00:00:00Z"});
    let r = counter.send("POST", &format!("/api/v1/persons/{pid}/consents"), &far).await;
    assert_eq!(r.error_fields(), ["expires_at"], "at most 5 years");
    let r = counter
        .send(
            "POST",
            &format!("/api/v1/persons/{pid}/consents"),
            &json!({"partner_id": "bank-a", "purpose": "mở tài khoản", "expires_at": in_a_year()}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let consent = r.json()["id"].as_str().unwrap().to_string();
    let r = partner_call(&s, &bank, "GET", &path, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let person = &r.json()["person"];
    assert_eq!(person["personal_id"], pid.as_str());
    assert_eq!(person["name"]["given"], "Bình");
    assert!(
        person.get("religion").is_none() && person.get("permanent_residence").is_none(),
        "outside the scope: {person}"
    );
    assert!(person.get("ethnicity").is_none() && person.get("sex").is_none());
    let r = counter.send("POST", &format!("/api/v1/persons/{pid}/consents/{consent}/revoke"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["in_force"], false);
    partner_call(&s, &bank, "GET", &path, None).await.problem(403, "consent-required");
    assert_eq!(counter.get(&format!("/api/v1/persons/{pid}/consents")).await.json().as_array().unwrap().len(), 1);

    // An agency with a legal basis needs no consent; its rate limit (2/s) holds.
    let tax = token(&s, &tax_key, "tax-b", None).await;
    let r = partner_call(&s, &tax, "GET", &path, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["person"].as_object().unwrap().keys().collect::<Vec<_>>(), ["name"]);
    partner_call(&s, &tax, "GET", &path, None).await;
    let r = partner_call(&s, &tax, "GET", &path, None).await;
    r.problem(429, "rate-limited");
    assert_eq!(r.header("retry-after"), Some("1"));

    // Pseudonymous identifiers: stable, not the ID.
    let p1 = partner_call(&s, &bank, "GET", &format!("/api/v1/sharing/pseudonyms/{pid}"), None).await.json();
    let p2 = partner_call(&s, &bank, "GET", &format!("/api/v1/sharing/pseudonyms/{pid}"), None).await.json();
    assert_eq!(p1, p2);
    assert_eq!(p1["pseudonym"].as_str().unwrap().len(), 43);

    // Batch verification with malformed rows: each gets its own result.
    let csv = format!(
        "personal_id,name,birth_date,sex\n{pid},{name},{birth},female\n{pid},Nguyen Thi Binh,{birth}\n12345,{name},{birth}\n\
         {pid},{name},1990-02-30\n{pid},{name}\n\"{pid},{name},{birth}\n{pid},{name},{birth},other\n001090999999,{name},{birth}\n"
    );
    let r = partner_call(&s, &bank, "POST", "/api/v1/sharing/verify/batch", Some(("text/csv", &csv))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("text/csv; charset=utf-8"));
    let lines: Vec<&str> = r.body.lines().collect();
    assert_eq!(lines.len(), 9, "{}", r.body);
    assert!(lines[1].starts_with(&format!("1,{pid},true,match,match,match,match,active")), "{}", lines[1]);
    assert!(lines[2].starts_with(&format!("2,{pid},false,match,partial,match")), "{}", lines[2]);
    assert!(lines[3].starts_with("3,,false,") && lines[3].contains("personal_id"), "{}", lines[3]);
    assert!(lines[4].contains("birth_date"), "{}", lines[4]);
    assert!(lines[5].contains("2 columns"), "{}", lines[5]);
    assert!(lines[6].contains("not closed"), "{}", lines[6]);
    assert!(lines[7].contains("sex"), "{}", lines[7]);
    assert!(lines[8].starts_with("8,001090999999,false,no_match"), "{}", lines[8]);

    // Change events: a move and a name change, in the bank's scope; each once.
    let mut changed = rec.person.clone();
    changed.record.current_residence =
        Some(serde_json::from_value(json!({"scheme": "2025", "commune_code": "26506"})).unwrap());
    changed.record.name.given = "Bích".into();
    store.update_person(rec.key, rec.version, &changed, ChangeKind::Update, &meta).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2_200)).await;
    let r = partner_call(&s, &bank, "GET", "/api/v1/sharing/events?after=0", None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let kinds: Vec<&str> = v["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["name_change", "move"], "{v}");
    assert_eq!(v["events"][1]["current_residence"]["commune_code"], "26506");
    assert_eq!(v["events"][0]["personal_id"], pid.as_str());
    assert_eq!(v["events"][0]["pseudonym"], p1["pseudonym"]);
    let next = v["next"].as_i64().unwrap();
    let r = partner_call(&s, &bank, "GET", &format!("/api/v1/sharing/events?after={next}"), None).await;
    assert_eq!(r.json()["events"], json!([]));
    let r = partner_call(&s, &tax, "GET", "/api/v1/sharing/events?after=0", None).await;
    if r.status == 200 {
        let kinds: Vec<Value> = r.json()["events"].as_array().unwrap().iter().map(|e| e["kind"].clone()).collect();
        assert_eq!(kinds, [json!("name_change")], "the tax partner sees only its scope");
        assert!(r.json()["events"][0].get("personal_id").is_none());
    } else {
        r.problem(429, "rate-limited");
    }

    // Who looked: the citizen's access log names the partner, the service and the purpose.
    let auditor = add_officer(&s, "auditor", "ministry", &[Role::Auditor], &[], true).await;
    let auditor = client(s.addr, &auditor).await;
    let log = auditor.get(&format!("/api/v1/persons/{pid}/access-log?per_page=500")).await.json();
    let by = |officer: &str, action: &str| {
        log.as_array().unwrap().iter().any(|e| e["officer"] == officer && e["action"] == action)
    };
    assert!(by("partner:bank-a", "partner.verify"));
    assert!(by("partner:bank-a", "partner.retrieve"));
    assert!(by("partner:bank-a", "partner.batch_verify"));
    assert!(by("partner:bank-a", "partner.events"));
    assert!(by("partner:tax-b", "partner.retrieve"));
    let e = log.as_array().unwrap().iter().find(|e| e["action"] == "partner.verify").unwrap();
    assert_eq!((e["role"].as_str(), e["unit"].as_str()), (Some("verify"), Some("business")));
    assert_eq!(e["purpose"], "mở tài khoản HĐ-2026-001");

    // Suspension works at once; tokens from before a reactivation stay dead; revocation is final.
    let r = admin
        .send("POST", "/api/v1/partners/bank-a/status", &json!({"status": "suspended", "reason": "kiểm tra"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = json!({"personal_id": pid, "name": name, "birth_date": birth}).to_string();
    let r = partner_call(&s, &bank, "POST", "/api/v1/sharing/verify", Some(("application/json", &body))).await;
    r.problem(403, "partner-inactive");
    let r = token_call(&s, &assertion(&bank_key, "bank-a", 60, "assertion-6"), None).await;
    assert_eq!(r.status, 401);
    assert!(r.json()["error_description"].as_str().unwrap().contains("suspended"));
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    admin.send("POST", "/api/v1/partners/bank-a/status", &json!({"status": "active", "reason": "xong"})).await;
    let r = partner_call(&s, &bank, "POST", "/api/v1/sharing/verify", Some(("application/json", &body))).await;
    r.problem(401, "invalid-token");
    let fresh = token(&s, &bank_key, "bank-a", None).await;
    let r = partner_call(&s, &fresh, "POST", "/api/v1/sharing/verify", Some(("application/json", &body))).await;
    assert_eq!(r.status, 200);
    admin.send("POST", "/api/v1/partners/bank-a/status", &json!({"status": "revoked", "reason": "hết hợp đồng"})).await;
    let r = partner_call(&s, &fresh, "POST", "/api/v1/sharing/verify", Some(("application/json", &body))).await;
    r.problem(403, "partner-inactive");
    let r =
        admin.send("POST", "/api/v1/partners/bank-a/status", &json!({"status": "active", "reason": "mở lại"})).await;
    r.problem(409, "state");
    // Partner administration is itself audited.
    let log = auditor.get("/api/v1/audit?officer=partner.admin&per_page=500").await.json();
    assert!(log.as_array().unwrap().iter().any(|e| e["action"] == "partner.status"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_on_sqlite() {
    sharing(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharing_on_postgres() {
    if let Some(store) = support::pg_store().await {
        sharing(store).await;
    }
}
