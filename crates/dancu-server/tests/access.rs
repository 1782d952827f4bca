//! Login, sessions, area scoping, sensitive fields and maker-checker over real HTTP, and the
//! attacks of the access-control issue: each test fails if its protection is removed.

mod support;

use std::time::Duration;

use dancu_core::access::Permission;
use dancu_core::auth::{self, Role};
use dancu_server::auth::AuthConfig;
use serde_json::{Value, json};
use support::{Client, JSON, add_officer, call, client, login, start, start_on};

fn person_in(commune: &str, given: &str) -> Value {
    json!({
        "name": {"surname": "Lê", "middle": "Văn", "given": given},
        "birth_date": "1990-05-17",
        "sex": "male",
        "birth_registration_place": {"province_code": "01"},
        "ethnicity": "01",
        "religion": "01",
        "blood_type": {"group": "O", "rhesus": "positive", "lab_result": "XN-2026-118"},
        "nationalities": ["VNM"],
        "permanent_residence": {"scheme": "2025", "commune_code": commune, "detail": "Số 1"}
    })
}

/// Creates and activates a person through the API; returns (record key, personal ID).
async fn active_person(o: &Client, commune: &str, given: &str) -> (String, String) {
    let r =
        o.send("POST", "/api/v1/persons", &json!({"person": person_in(commune, given), "reason": "thu thập"})).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json()["key"].as_str().unwrap().to_string();
    let r = o.send("POST", &format!("/api/v1/persons/{key}/activate"), &json!({"reason": "cấp số"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    (key, r.json()["person"]["personal_id"].as_str().unwrap().to_string())
}

async fn post_json(addr: std::net::SocketAddr, path: &str, body: &Value, extra: &[(&str, &str)]) -> support::Resp {
    let mut h = vec![JSON];
    h.extend_from_slice(extra);
    call(addr, "POST", path, &h, Some(body.to_string().as_bytes())).await
}

#[tokio::test]
async fn login_mfa_action_and_audit_end_to_end() {
    let s = start().await;
    let clerk = add_officer(&s, "clerk", "ministry", &[Role::Collector, Role::Verifier], &[], false).await;
    let clerk = client(s.addr, &clerk).await;
    let (key, id) = active_person(&clerk, "00004", "Tâm").await;

    let boss = add_officer(&s, "lanh.dao", "province:01", &[Role::Approver, Role::Auditor], &[], true).await;
    // 1. password: the session exists but may do nothing yet
    let r =
        post_json(s.addr, "/api/v1/auth/login", &json!({"username": "lanh.dao", "password": boss.password}), &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["stage"], "mfa_required");
    let half = r.json()["token"].as_str().unwrap().to_string();
    let half_client = Client { addr: s.addr, token: half.clone() };
    half_client.get(&format!("/api/v1/persons/{id}/access-log")).await.problem(401, "login-unfinished");
    // nor replace the second factor with the password alone
    half_client.req("POST", "/api/v1/auth/totp", None, &[]).await.problem(401, "login-unfinished");
    // 2. a wrong code, then the right one: a new token replaces the old (rotation)
    half_client.send("POST", "/api/v1/auth/mfa", &json!({"code": "123456"})).await.problem(401, "invalid-code");
    let r = half_client.send("POST", "/api/v1/auth/mfa", &json!({"code": boss.next_code()})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["stage"], "complete");
    let full = Client { addr: s.addr, token: r.json()["token"].as_str().unwrap().to_string() };
    assert_ne!(full.token, half);
    half_client.get("/api/v1/auth/session").await.problem(401, "session-ended");
    // 3. the action
    let r =
        full.req("GET", &format!("/api/v1/persons/{id}/access-log"), None, &[("X-Dancu-Purpose", "thanh tra")]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // 4. the trail names the officer, the roles acted in, the unit, the purpose
    full.get("/api/v1/officers").await.problem(403, "forbidden"); // not an administrator
    let r = clerk.get(&format!("/api/v1/persons/{key}")).await;
    assert_eq!(r.status, 200);
    let auditor = add_officer(&s, "kiem.toan", "ministry", &[Role::Auditor], &[], true).await;
    let auditor = client(s.addr, &auditor).await;
    let trail = auditor.get("/api/v1/audit?officer=lanh.dao").await.json();
    let actions: Vec<&str> = trail.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        [
            "officer.list",
            "person.access_log",
            "auth.mfa",
            "auth.mfa",
            "auth.totp_enrol",
            "person.access_log",
            "auth.login"
        ],
        "newest first, refusals included: {trail}"
    );
    let outcomes: Vec<&str> = trail.as_array().unwrap().iter().map(|e| e["outcome"].as_str().unwrap()).collect();
    assert_eq!(outcomes, ["403", "200", "200", "401", "401", "401", "200"]);
    let read =
        trail.as_array().unwrap().iter().find(|e| e["action"] == "person.access_log" && e["outcome"] == "200").unwrap();
    assert_eq!(read["role"], "approver,auditor");
    assert_eq!(read["unit"], "province:01");
    assert_eq!(read["purpose"], "thanh tra");
    assert_eq!(read["target"], key.as_str());
    // 5. logout revokes at once
    assert_eq!(full.req("POST", "/api/v1/auth/logout", None, &[]).await.status, 204);
    full.get(&format!("/api/v1/persons/{id}/access-log")).await.problem(401, "session-ended");
    // the chain holds
    let report = dancu_store::audit::verify(s.store.as_ref(), dancu_keys::Signer::public_key_der(s.key.as_ref()))
        .await
        .unwrap()
        .unwrap();
    assert!(report.entries > 10);
}

#[tokio::test]
async fn enrolment_shows_a_qr_code_and_completes_the_login() {
    let s = start().await;
    // an approver created without a second factor must enrol one before acting
    let c = add_officer(&s, "new.approver", "commune:00004", &[Role::Approver], &[], false).await;
    let r =
        post_json(s.addr, "/api/v1/auth/login", &json!({"username": c.username, "password": c.password}), &[]).await;
    assert_eq!(r.json()["stage"], "mfa_enrolment_required");
    let half = Client { addr: s.addr, token: r.json()["token"].as_str().unwrap().to_string() };
    half.get("/api/v1/change-requests").await.problem(401, "login-unfinished");
    let r = half.req("POST", "/api/v1/auth/totp", None, &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let e = r.json();
    assert!(e["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/dancu:new.approver?secret="));
    assert!(e["qr_svg"].as_str().unwrap().contains("<svg"));
    let secret = auth::base32_decode(e["secret"].as_str().unwrap()).unwrap();
    half.send("POST", "/api/v1/auth/totp/confirm", &json!({"code": "000000"})).await.problem(401, "invalid-code");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let code = format!("{:06}", auth::totp_code(&secret, now / auth::TOTP_STEP));
    let r = half.send("POST", "/api/v1/auth/totp/confirm", &json!({"code": code})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["stage"], "complete");
    assert_eq!(r.json()["officer"]["mfa_enrolled"], true);
    let full = Client { addr: s.addr, token: r.json()["token"].as_str().unwrap().to_string() };
    assert_eq!(full.get("/api/v1/change-requests").await.status, 200);
    // from now on, login asks for the code — and the code just used cannot be replayed
    let r =
        post_json(s.addr, "/api/v1/auth/login", &json!({"username": c.username, "password": c.password}), &[]).await;
    assert_eq!(r.json()["stage"], "mfa_required");
    let again = Client { addr: s.addr, token: r.json()["token"].as_str().unwrap().to_string() };
    again.send("POST", "/api/v1/auth/mfa", &json!({"code": code})).await.problem(401, "invalid-code");
}

#[tokio::test]
async fn cookie_sessions_are_httponly_secure_strict_and_channel_bound() {
    let s = start().await;
    let c = add_officer(&s, "web.user", "ministry", &[Role::Collector], &[], false).await;
    let r = post_json(
        s.addr,
        "/api/v1/auth/login",
        &json!({"username": c.username, "password": c.password, "mode": "cookie"}),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.json()["token"].is_null(), "a cookie session does not show its token to scripts");
    let set = r.header("set-cookie").unwrap().to_string();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{set}");
    }
    let cookie = set.split(';').next().unwrap().to_string();
    let token = cookie.split_once('=').unwrap().1.to_string();
    let r = call(s.addr, "GET", "/api/v1/auth/session", &[("Cookie", cookie.as_str())], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // the same token presented as a bearer token is refused (and a bearer token as a cookie)
    Client { addr: s.addr, token: token.clone() }.get("/api/v1/auth/session").await.problem(401, "unauthenticated");
    let bearer = login(s.addr, &c).await;
    let as_cookie = format!("dancu_session={bearer}");
    call(s.addr, "GET", "/api/v1/auth/session", &[("Cookie", as_cookie.as_str())], None)
        .await
        .problem(401, "unauthenticated");
    // logout clears the cookie and ends the session
    let r = call(s.addr, "POST", "/api/v1/auth/logout", &[("Cookie", cookie.as_str())], None).await;
    assert_eq!(r.status, 204);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    call(s.addr, "GET", "/api/v1/auth/session", &[("Cookie", cookie.as_str())], None)
        .await
        .problem(401, "session-ended");
}

#[tokio::test]
async fn wrong_passwords_lock_out_with_back_off_and_do_not_reveal_accounts() {
    let s = start().await;
    let c = add_officer(&s, "target", "ministry", &[Role::Collector], &[], false).await;
    let attempt = |user: &'static str, pw: &'static str| async move {
        post_json(s.addr, "/api/v1/auth/login", &json!({"username": user, "password": pw}), &[]).await
    };
    let wrong_known = attempt("target", "not the password").await;
    let wrong_unknown = attempt("nobody.here", "not the password").await;
    wrong_known.problem(401, "invalid-credentials");
    assert_eq!(wrong_known.body, wrong_unknown.body, "an unknown name answers like a wrong password");
    for _ in 0..3 {
        attempt("target", "still wrong").await.problem(401, "invalid-credentials");
        attempt("nobody.here", "still wrong").await.problem(401, "invalid-credentials");
    }
    attempt("target", "fifth failure").await.problem(401, "invalid-credentials");
    attempt("nobody.here", "fifth failure").await.problem(401, "invalid-credentials");
    // locked now: even the right password is refused until the back-off has passed
    let body = json!({"username": "target", "password": c.password});
    let r = post_json(s.addr, "/api/v1/auth/login", &body, &[]).await;
    r.problem(429, "locked");
    let wait: i64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    attempt("nobody.here", "x").await.problem(429, "locked");
    let o = s.store.officer_get("target").await.unwrap().unwrap();
    assert_eq!(o.failed_logins, 5);
    assert!(o.locked_until.is_some());
}

#[tokio::test]
async fn forged_malformed_and_expired_tokens_are_refused() {
    let config = AuthConfig { idle: Duration::from_secs(2), absolute: Duration::from_secs(5) };
    let s = start_on(support::sqlite_store().await, config).await;
    let c = add_officer(&s, "short", "ministry", &[Role::Collector], &[], false).await;
    let forged = Client { addr: s.addr, token: "ab".repeat(32) };
    forged.get("/api/v1/persons").await.problem(401, "unauthenticated");
    let malformed = Client { addr: s.addr, token: "' OR 1=1 --".into() };
    malformed.get("/api/v1/persons").await.problem(401, "unauthenticated");
    call(s.addr, "GET", "/api/v1/persons", &[("Authorization", "Basic c2hvcnQ6eA==")], None)
        .await
        .problem(401, "unauthenticated");
    // the stored hash is not a token either (a stolen database yields no sessions)
    let token = login(s.addr, &c).await;
    let stolen = Client { addr: s.addr, token: auth::token_hash(&token) };
    stolen.get("/api/v1/persons").await.problem(401, "unauthenticated");

    // idle timeout: used within the limit it lives on; left alone it ends
    let o = Client { addr: s.addr, token };
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(o.get("/api/v1/persons").await.status, 200);
    }
    // absolute timeout: 5 s after login, however busy
    tokio::time::sleep(Duration::from_millis(1500)).await;
    o.get("/api/v1/persons").await.problem(401, "session-ended");
    let idle = Client { addr: s.addr, token: login(s.addr, &c).await };
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let r = idle.get("/api/v1/persons").await;
    r.problem(401, "session-ended");
    assert!(r.json()["detail"].as_str().unwrap().contains("unused"), "{}", r.body);
}

#[tokio::test]
async fn a_commune_officer_sees_and_changes_only_their_commune() {
    let s = start().await;
    let hq = add_officer(&s, "hq", "ministry", &[Role::Collector, Role::Verifier], &[], false).await;
    let hq = client(s.addr, &hq).await;
    let (_, inside) = active_person(&hq, "00004", "Trong").await;
    let (outside_key, outside) = active_person(&hq, "26506", "Ngoai").await;
    let c = add_officer(&s, "xa.00004", "commune:00004", &[Role::Collector, Role::Verifier], &[], false).await;
    let xa = client(s.addr, &c).await;

    assert_eq!(xa.get(&format!("/api/v1/persons/{inside}")).await.status, 200);
    // reading, history, updating, activating someone elsewhere: as if they did not exist
    for (m, path, body) in [
        ("GET", format!("/api/v1/persons/{outside}"), None),
        ("GET", format!("/api/v1/persons/{outside_key}"), None),
        ("GET", format!("/api/v1/persons/{outside}/history"), None),
        (
            "PUT",
            format!("/api/v1/persons/{outside}"),
            Some(json!({"version": 2, "person": person_in("26506", "Ngoai"), "reason": "sửa"})),
        ),
        ("POST", format!("/api/v1/persons/{outside_key}/activate"), Some(json!({"reason": "x"}))),
    ] {
        xa.req(m, &path, body.as_ref(), &[]).await.problem(404, "not-found");
    }
    // searching: the other commune's people are not in the results, even by exact name
    let r = xa.get("/api/v1/persons?name=le%20van%20ngoai").await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0, "{}", r.body);
    let r = xa.get("/api/v1/persons?name=le%20van").await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    assert_eq!(hq.get("/api/v1/persons?name=le%20van").await.json()["items"].as_array().unwrap().len(), 2);
    // recording someone of another commune, or moving one's own person out of reach: refused
    let r = xa.send("POST", "/api/v1/persons", &json!({"person": person_in("26506", "Khac"), "reason": "x"})).await;
    assert_eq!(r.problem(403, "outside-area")["errors"][0]["field"], "person.permanent_residence");
    let r = xa
        .send(
            "PUT",
            &format!("/api/v1/persons/{inside}"),
            &json!({"version": 2, "person": person_in("26506", "Trong"), "reason": "chuyển"}),
        )
        .await;
    r.problem(403, "outside-area");
    // a temporary residence in the commune brings the person into its area
    let mut p = person_in("26506", "Ngoai");
    p["temporary_residence"] = json!({"scheme": "2025", "commune_code": "00004"});
    let r = hq
        .send("PUT", &format!("/api/v1/persons/{outside}"), &json!({"version": 2, "person": p, "reason": "tạm trú"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(xa.get(&format!("/api/v1/persons/{outside}")).await.status, 200);
}

#[tokio::test]
async fn probing_numbers_outside_the_area_reveals_nothing() {
    let s = start().await;
    let hq = add_officer(&s, "hq", "ministry", &[Role::Collector, Role::Verifier], &[], false).await;
    let hq = client(s.addr, &hq).await;
    let (_, elsewhere) = active_person(&hq, "26506", "An").await;
    let c = add_officer(&s, "xa", "commune:00004", &[Role::CardOperator], &[], false).await;
    let xa = client(s.addr, &c).await;
    // a number that exists elsewhere and one never issued (same prefix, sex and year)
    let mut missing = elsewhere.clone();
    let last = missing.pop().unwrap();
    missing.push(if last == '0' { '1' } else { '0' });
    let a = xa.get(&format!("/api/v1/persons/{elsewhere}")).await;
    let b = xa.get(&format!("/api/v1/persons/{missing}")).await;
    assert_eq!((a.status, &a.body), (b.status, &b.body), "existence must not leak");
    assert_eq!(a.status, 404);
    for h in ["content-type", "cache-control", "etag"] {
        assert_eq!(a.header(h), b.header(h), "{h}");
    }
    // and every probe is on record
    let auditor = add_officer(&s, "kt", "ministry", &[Role::Auditor], &[], true).await;
    let t = client(s.addr, &auditor).await.get("/api/v1/audit?officer=xa").await.json();
    assert_eq!(t.as_array().unwrap().iter().filter(|e| e["outcome"] == "404").count(), 2);
}

#[tokio::test]
async fn no_one_raises_their_own_privileges() {
    let s = start().await;
    let clerk = add_officer(&s, "clerk", "commune:00004", &[Role::Collector], &[], false).await;
    let clerk = client(s.addr, &clerk).await;
    let r = clerk.send("PUT", "/api/v1/officers/clerk", &json!({"roles": ["system_administrator"]})).await;
    r.problem(403, "forbidden");
    let admin = add_officer(&s, "admin", "province:01", &[Role::SystemAdministrator], &[], true).await;
    let admin = client(s.addr, &admin).await;
    // not even an administrator changes their own account
    admin.send("PUT", "/api/v1/officers/admin", &json!({"unit": "ministry"})).await.problem(403, "own-account");
    // nor gives anyone a unit above their own
    let r = admin.send("PUT", "/api/v1/officers/clerk", &json!({"unit": "ministry"})).await;
    assert_eq!(r.problem(403, "outside-area")["errors"][0]["field"], "unit");
    let r = admin
        .send(
            "POST",
            "/api/v1/officers",
            &json!({"username": "boss", "display_name": "X", "unit": "ministry", "roles": ["approver"]}),
        )
        .await;
    r.problem(403, "outside-area");
    // a province administrator does not see accounts of another province
    add_officer(&s, "far", "commune:26506", &[Role::Collector], &[], false).await;
    admin.get("/api/v1/officers/far").await.problem(404, "not-found");
    // changing someone's roles ends their sessions at once
    let r = admin.send("PUT", "/api/v1/officers/clerk", &json!({"roles": ["collector", "verifier"]})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    clerk.get("/api/v1/persons").await.problem(401, "session-ended");
    // the stored roles are what the administrator set, nothing the clerk asked for
    let o = s.store.officer_get("clerk").await.unwrap().unwrap();
    assert_eq!(o.roles, vec![Role::Collector, Role::Verifier]);
    // a new officer: the generated password is shown once and works
    let r = admin
        .send(
            "POST",
            "/api/v1/officers",
            &json!({"username": "moi", "display_name": "Cán bộ mới", "unit": "commune:00004", "roles": ["collector"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    let pw = r.json()["password"].as_str().unwrap().to_string();
    let r = post_json(s.addr, "/api/v1/auth/login", &json!({"username": "moi", "password": pw}), &[]).await;
    assert_eq!(r.json()["stage"], "complete");
}

#[tokio::test]
async fn sensitive_fields_need_the_permission_and_a_purpose() {
    let s = start().await;
    let hq = add_officer(&s, "hq", "ministry", &[Role::Collector, Role::Verifier], &[], false).await;
    let hq = client(s.addr, &hq).await;
    let (_, id) = active_person(&hq, "00004", "Nhay").await;
    let plain = hq.get(&format!("/api/v1/persons/{id}")).await.json();
    assert!(plain["person"]["religion"].is_null() && plain["person"]["blood_type"].is_null(), "{plain}");
    assert_eq!(plain["person"]["name"]["given"], "Nhay");
    hq.get(&format!("/api/v1/persons/{id}?include=sensitive")).await.problem(403, "forbidden");
    let search = hq.get("/api/v1/persons?name=le").await.json();
    assert!(search["items"][0]["person"]["religion"].is_null());
    let history = hq.get(&format!("/api/v1/persons/{id}/history")).await.json();
    assert!(history[0]["person"]["blood_type"].is_null());

    let c = add_officer(&s, "an.ninh", "ministry", &[Role::Verifier], &[Permission::SensitiveData], false).await;
    let sec = client(s.addr, &c).await;
    let r = sec.get(&format!("/api/v1/persons/{id}?include=sensitive")).await;
    assert_eq!(r.problem(400, "purpose-required")["errors"][0]["field"], "X-Dancu-Purpose");
    let r = sec
        .req(
            "GET",
            &format!("/api/v1/persons/{id}?include=sensitive"),
            None,
            &[("X-Dancu-Purpose", "Vụ án số 12/2026")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["person"]["religion"], "01");
    assert_eq!(r.json()["person"]["blood_type"]["group"], "O");
    let auditor = add_officer(&s, "kt", "ministry", &[Role::Auditor], &[], true).await;
    let trail = client(s.addr, &auditor).await.get("/api/v1/audit?officer=an.ninh").await.json();
    let reads: Vec<(&str, &str)> = trail
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "person.read")
        .map(|e| (e["outcome"].as_str().unwrap(), e["purpose"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(reads, [("200", "Vụ án số 12/2026"), ("400", "")]);
}

#[tokio::test]
async fn guarded_changes_wait_for_a_second_officer() {
    let s = start().await;
    let clerk = add_officer(&s, "clerk", "commune:00004", &[Role::Collector, Role::Verifier], &[], false).await;
    let clerk = client(s.addr, &clerk).await;
    let (key, id) = active_person(&clerk, "00004", "Cu").await;
    let read = clerk.get(&format!("/api/v1/persons/{id}")).await.json();
    let version = read["version"].as_i64().unwrap();
    // an occupation changes at once; a name does not
    let mut p = person_in("00004", "Cu");
    p["occupation"] = json!("Giáo viên");
    let r = clerk
        .send("PUT", &format!("/api/v1/persons/{id}"), &json!({"version": version, "person": p, "reason": "nghề"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let mut renamed = p.clone();
    renamed["name"]["given"] = json!("Mới");
    let r = clerk
        .send(
            "PUT",
            &format!("/api/v1/persons/{id}"),
            &json!({"version": version + 1, "person": renamed, "reason": "cải chính tên"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    let req = r.json();
    assert_eq!(req["guarded"], json!(["name"]));
    assert_eq!(req["state"], "pending");
    let rid = req["id"].as_str().unwrap().to_string();
    assert_eq!(clerk.get(&format!("/api/v1/persons/{id}")).await.json()["person"]["name"]["given"], "Cu", "not yet");
    // the maker cannot approve; an approver who made the request cannot either
    let decide = |c: Client, d: Value| {
        let rid = rid.clone();
        async move { c.send("POST", &format!("/api/v1/change-requests/{rid}/decision"), &d).await }
    };
    decide(clerk.clone(), json!({"decision": "approve"})).await.problem(403, "forbidden");
    // an approver of another province does not even see it
    let far = add_officer(&s, "far.boss", "province:79", &[Role::Approver], &[], true).await;
    decide(client(s.addr, &far).await, json!({"decision": "approve"})).await.problem(404, "not-found");
    // an approver of another commune of the same province: outside the area too
    let side = add_officer(&s, "side.boss", "commune:00008", &[Role::Approver], &[], true).await;
    decide(client(s.addr, &side).await, json!({"decision": "approve"})).await.problem(404, "not-found");
    // the province's approver approves: the change lands, naming both officers
    let boss = add_officer(&s, "boss", "province:01", &[Role::Approver], &[], true).await;
    let boss = client(s.addr, &boss).await;
    decide(boss.clone(), json!({"decision": "reject"})).await.problem(422, "validation");
    let r = decide(boss.clone(), json!({"decision": "approve", "note": "đúng trích lục"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["state"], "approved");
    decide(boss.clone(), json!({"decision": "approve"})).await.problem(409, "state");
    let now = clerk.get(&format!("/api/v1/persons/{id}")).await.json();
    assert_eq!(now["person"]["name"]["given"], "Mới");
    let h = clerk.get(&format!("/api/v1/persons/{id}/history")).await.json();
    let last = h.as_array().unwrap().last().unwrap();
    assert_eq!((last["meta"]["actor"].as_str(), last["meta"]["approved_by"].as_str()), (Some("clerk"), Some("boss")));

    // death is guarded too; rejection leaves the person alive
    let v = now["version"].as_i64().unwrap();
    let mut same = person_in("00004", "Mới");
    same["occupation"] = json!("Giáo viên");
    let r = clerk
        .send(
            "PUT",
            &format!("/api/v1/persons/{id}"),
            &json!({"version": v, "person": same, "status": "dead", "status_date": "2026-11-01", "reason": "khai tử"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["guarded"], json!(["death"]));
    let rid2 = r.json()["id"].as_str().unwrap().to_string();
    let r = boss
        .send(
            "POST",
            &format!("/api/v1/change-requests/{rid2}/decision"),
            &json!({"decision": "reject", "note": "chưa có trích lục khai tử"}),
        )
        .await;
    assert_eq!(r.json()["state"], "rejected");
    assert_eq!(clerk.get(&format!("/api/v1/persons/{id}")).await.json()["person"]["status"], "active");

    // a corrected birth year contradicts the number: only re-establishment, approved, gives a new one
    let mut older = same.clone();
    older["birth_date"] = json!("1989-05-17");
    let r = clerk
        .send(
            "PUT",
            &format!("/api/v1/persons/{id}"),
            &json!({"version": v, "person": older, "reason": "cải chính năm sinh"}),
        )
        .await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "person.birth_date");
    let r = clerk
        .send(
            "PUT",
            &format!("/api/v1/persons/{id}"),
            &json!({"version": v, "person": older, "reestablish_id": true, "reason": "cải chính năm sinh"}),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["guarded"], json!(["birth_date", "id_reestablishment"]));
    let rid3 = r.json()["id"].as_str().unwrap().to_string();
    let r =
        boss.send("POST", &format!("/api/v1/change-requests/{rid3}/decision"), &json!({"decision": "approve"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let rec = clerk.get(&format!("/api/v1/persons/{key}")).await.json();
    let new_id = rec["person"]["personal_id"].as_str().unwrap();
    assert_ne!(new_id, id);
    assert_eq!(&new_id[4..6], "89", "the new number carries the corrected year");
    clerk.get(&format!("/api/v1/persons/{id}")).await.problem(404, "not-found");
    let h = clerk.get(&format!("/api/v1/persons/{key}/history")).await.json();
    assert_eq!(h.as_array().unwrap().last().unwrap()["change"], "reestablish");
}

#[tokio::test]
async fn second_factor_secrets_are_sealed_at_rest() {
    let s = start().await;
    let a = add_officer(&s, "officer.a", "ministry", &[Role::Auditor], &[], true).await;
    let b = add_officer(&s, "officer.b", "ministry", &[Role::Auditor], &[], true).await;
    let stored = s.store.officer_get("officer.a").await.unwrap().unwrap().totp_secret.unwrap();
    let plain = auth::base32_encode(a.secret.as_ref().unwrap());
    assert!(stored.starts_with("v1:") && !stored.contains(&plain), "{stored}");
    // it works for its own account…
    login(s.addr, &a).await;
    // …and a sealed secret copied onto another account's row does not open there
    let mut ob = s.store.officer_get("officer.b").await.unwrap().unwrap();
    ob.totp_secret = Some(stored);
    s.store.officer_update(&ob).await.unwrap();
    let r =
        post_json(s.addr, "/api/v1/auth/login", &json!({"username": "officer.b", "password": b.password}), &[]).await;
    let half = Client { addr: s.addr, token: r.json()["token"].as_str().unwrap().to_string() };
    let code = a.next_code();
    let r = half.send("POST", "/api/v1/auth/mfa", &json!({"code": code})).await;
    assert_eq!(r.status, 500, "{}", r.body);
    assert_eq!(half.get("/api/v1/change-requests").await.status, 401, "still not logged in");
}
