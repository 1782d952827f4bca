//! The API over real HTTP: a real server on a loopback port, a real SQLite file, officers
//! logged in with real tokens, and a minimal HTTP/1.1 client (tests/support).

mod support;

use dancu_core::auth::Role;
use serde_json::{Value, json};
use support::{Client, JSON, Server, add_officer, call, client, start};

/// A ministry officer who collects and verifies (no second factor needed).
async fn officer(s: &Server) -> Client {
    let c = add_officer(s, "officer-001", "ministry", &[Role::Collector, Role::Verifier], &[], false).await;
    client(s.addr, &c).await
}

fn person() -> Value {
    json!({
        "name": {"surname": "Trần", "middle": "Thị", "given": "Hoà"},
        "birth_date": "12/03/1985",
        "sex": "female",
        "birth_registration_place": {"scheme": "legacy", "province_code": "02"},
        "ethnicity": "01",
        "religion": "01",
        "nationalities": ["VNM"],
        "legacy_id": "073123456",
        "permanent_residence": {"scheme": "2025", "commune_code": "00004", "detail": "Số 5 Phố Đội Cấn"}
    })
}

fn create_body(p: Value) -> Value {
    json!({"person": p, "reason": "Thu thập dữ liệu dân cư", "legal_basis": "Luật Cư trú 2020"})
}

#[tokio::test]
async fn person_lifecycle_over_http() {
    let s = start().await;
    let o = officer(&s).await;
    let r = o.send("POST", "/api/v1/persons", &create_body(person())).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("/api/v1/persons/{key}").as_str()));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(created["person"]["status"], "pending");
    assert_eq!(created["person"]["birth_date"], "1985-03-12");

    let r = o.get(&format!("/api/v1/persons/{key}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let r = o
        .send("POST", &format!("/api/v1/persons/{key}/activate"), &json!({"version": 1, "reason": "Cấp số định danh"}))
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["person"]["personal_id"].as_str().unwrap().to_string();
    // born 1985, female, birth registered in Hà Giang (002)
    assert!(id.starts_with("002185"), "{id}");

    let r = o.get(&format!("/api/v1/persons/{id}")).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["key"], key);
    let r = o.get("/api/v1/persons/by-legacy-id/073123456").await;
    assert_eq!(r.json()["person"]["personal_id"], id.as_str());

    // activation twice: 409
    let r = o.send("POST", &format!("/api/v1/persons/{key}/activate"), &json!({"reason": "again"})).await;
    r.problem(409, "already-active");

    // update against the version read, then a stale one
    let mut p = person();
    p["occupation"] = json!("Kỹ sư");
    let r = o
        .send(
            "PUT",
            &format!("/api/v1/persons/{id}"),
            &json!({"version": 2, "person": p, "reason": "Cập nhật nghề nghiệp"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 3);
    let r = o.send("PUT", &format!("/api/v1/persons/{id}"), &json!({"version": 2, "person": p, "reason": "x"})).await;
    r.problem(409, "version-conflict");

    // a birth year the personal ID contradicts
    let mut wrong_year = p.clone();
    wrong_year["birth_date"] = json!("1986-03-12");
    let r = o
        .send("PUT", &format!("/api/v1/persons/{id}"), &json!({"version": 3, "person": wrong_year, "reason": "x"}))
        .await;
    r.problem(422, "validation");
    assert_eq!(r.error_fields(), vec!["person.birth_date"]);

    let r = o.get(&format!("/api/v1/persons/{id}/history")).await;
    let h = r.json();
    assert_eq!(h.as_array().unwrap().len(), 3);
    assert_eq!(h[0]["change"], "create");
    assert_eq!(h[1]["change"], "activate");
    assert_eq!(h[2]["meta"]["reason"], "Cập nhật nghề nghiệp");
    assert_eq!(h[2]["meta"]["actor"], "officer-001", "the logged-in officer, not a claimed name");

    // search: unaccented, by year and commune
    let r = o.get("/api/v1/persons?name=tran%20thi%20hoa&birth_year=1985&commune=00004").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    let r = o.get("/api/v1/persons?name=Tr%E1%BA%A7n%20Th%E1%BB%8B%20H%C3%B2a").await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1, "Hòa finds Hoà");
    let r = o.get("/api/v1/persons?name=tran&birth_year=1984").await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_input_is_named_and_nothing_is_written() {
    let s = start().await;
    let o = officer(&s).await;
    let auth = format!("Bearer {}", o.token);
    let bearer = ("Authorization", auth.as_str());
    let post = |b: Value| {
        let o = o.clone();
        async move { o.send("POST", "/api/v1/persons", &create_body(b)).await }
    };

    let r = call(s.addr, "POST", "/api/v1/persons", &[bearer, JSON], Some(b"{\"person\": {")).await;
    r.problem(400, "malformed-json");

    let cases: Vec<(&str, Value, &str)> = vec![
        ("birth_date", json!("1990-02-30"), "person.birth_date"),
        ("birth_date", json!("2999-01-01"), "person.birth_date"),
        ("ethnicity", json!("99"), "person.ethnicity"),
        ("religion", json!("42"), "person.religion"),
        ("nationalities", json!(["VNM", "QQQ"]), "person.nationalities[1]"),
        (
            "permanent_residence",
            json!({"scheme": "2025", "commune_code": "99999"}),
            "person.permanent_residence.commune_code",
        ),
        ("sex", json!("x"), "person.sex"),
        ("legacy_id", json!("12345"), "person.legacy_id"),
        ("phone", json!("not a phone"), "person.phone"),
        ("nickname", json!("unknown field"), "person.nickname"),
    ];
    for (field, value, expected) in cases {
        let mut p = person();
        p[field] = value.clone();
        let r = post(p).await;
        r.problem(422, "validation");
        let fields = r.error_fields();
        assert!(fields.iter().any(|f| f == expected), "{field}={value}: {fields:?} / {}", r.body);
    }
    let mut p = person();
    p["name"]["surname"] = json!("N".repeat(51));
    let r = post(p).await;
    assert_eq!(r.error_fields(), vec!["person.name.surname"]);
    assert!(r.json()["errors"][0]["reason"].as_str().unwrap().contains("at most 50"));

    // oversize body
    let big = vec![b' '; 2 * 1024 * 1024];
    let r = call(s.addr, "POST", "/api/v1/persons", &[bearer, JSON], Some(&big)).await;
    assert_eq!(r.status, 413);
    // not logged in, wrong media type
    let r = call(s.addr, "POST", "/api/v1/persons", &[JSON], Some(create_body(person()).to_string().as_bytes())).await;
    r.problem(401, "unauthenticated");
    let r = call(s.addr, "POST", "/api/v1/persons", &[bearer, ("Content-Type", "text/plain")], Some(b"{}")).await;
    r.problem(415, "unsupported-media-type");
    // missing reason
    let r = o.send("POST", "/api/v1/persons", &json!({"person": person(), "reason": ""})).await;
    assert_eq!(r.error_fields(), vec!["reason"]);

    // references
    let r = o.get("/api/v1/persons/003090123456").await;
    let v = r.problem(400, "validation");
    assert!(v["errors"][0]["reason"].as_str().unwrap().contains("digits 1-3"), "{v}");
    let r = o.get("/api/v1/persons/12345").await;
    r.problem(400, "validation");
    let r = o.get("/api/v1/persons/001090123456").await;
    r.problem(404, "not-found");
    let r = o.get("/api/v1/persons?birth_year=abc").await;
    assert_eq!(r.problem(400, "validation")["errors"][0]["field"], "birth_year");
    let r = o.get("/api/v1/persons?color=red").await;
    assert_eq!(r.problem(400, "validation")["errors"][0]["field"], "color");
    let r = o.get("/api/v1/persons?commune=legacy:99999").await;
    r.problem(400, "validation");
    let r = o.req("DELETE", "/api/v1/persons", None, &[]).await;
    r.problem(405, "method-not-allowed");
    let r = o.get("/nowhere").await;
    r.problem(404, "not-found");

    // activation of a person whose birth was registered abroad: named, nothing written
    let mut abroad = person();
    abroad["birth_registration_place"] = json!({"country": "FRA", "detail": "Paris"});
    let r = post(abroad).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json()["key"].as_str().unwrap().to_string();
    let r = o.send("POST", &format!("/api/v1/persons/{key}/activate"), &json!({"reason": "cấp số"})).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "birth_registration_place");

    assert_eq!(s.store.count_persons().await.unwrap(), 1, "only the valid abroad record was stored");
    assert_eq!(s.store.history(key.parse().unwrap()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn reference_docs_health_and_metrics() {
    let s = start().await;
    let o = officer(&s).await;
    let r = o.get("/api/v1/reference/provinces").await;
    assert_eq!(r.json().as_array().unwrap().len(), 34);
    let r = o.get("/api/v1/reference/provinces?scheme=legacy").await;
    assert_eq!(r.json().as_array().unwrap().len(), 63);
    let r = o.get("/api/v1/reference/communes?province=01").await;
    assert!(r.json().as_array().unwrap().len() > 100);
    let r = o.get("/api/v1/reference/communes/legacy/00004").await;
    let v = r.json();
    assert_eq!(v["commune"]["name"], "Phường Trúc Bạch");
    assert_eq!(v["became"][0]["new_commune_code"], "00004");
    for (path, n) in [("ethnicities", 54), ("religions", 17), ("id-provinces", 63)] {
        let r = o.get(&format!("/api/v1/reference/{path}")).await;
        assert_eq!(r.json().as_array().unwrap().len(), n, "{path}");
    }
    let r = o.get("/api/v1/reference/provinces?scheme=1999").await;
    r.problem(400, "validation");

    let r = o.get("/api/openapi.json").await;
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in
        ["/api/v1/persons", "/api/v1/persons/{ref}", "/api/v1/persons/{ref}/activate", "/api/v1/persons/{ref}/history"]
    {
        assert!(doc["paths"][p].is_object(), "{p} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"]["PersonInput"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let r = o.get("/api/docs").await;
    assert!(r.body.contains("swagger-ui-bundle.js"));
    let r = o.get("/api/docs/swagger-ui-bundle.js").await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 500_000);

    let r = o.get("/healthz").await;
    assert_eq!(r.json(), json!({"status": "ok", "backend": "sqlite"}));

    // metrics label routes, never the personal IDs in paths
    o.get("/api/v1/persons/001090123456").await;
    let r = o.get("/metrics").await;
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(
        r.body.contains("dancu_http_requests_total{method=\"GET\",route=\"/api/v1/persons/{ref}\",status=\"404\"} 1"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("001090123456"));
}

/// What the server logs during a test (this test's thread: the runtime of `#[tokio::test]`).
#[derive(Clone, Default)]
struct Logs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn readiness_waits_for_the_store_files_read_ahead() {
    use std::sync::atomic::Ordering;
    let logs = Logs::default();
    let writer = logs.clone();
    let _logging = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::WARN)
            .with_writer(move || writer.clone())
            .finish(),
    );
    let (s, state) =
        support::start_state(support::sqlite_store().await, dancu_server::auth::AuthConfig::default()).await;
    let none: &[(&str, &str)] = &[];
    state.warming.store(true, Ordering::Release);
    let r = call(s.addr, "GET", "/readyz", none, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json(), json!({"status": "warming", "backend": "sqlite"}));
    // Warming is the server's expected state at start, not a failure: a load balancer polls
    // this many times, and each answer must not log a warning.
    let r = call(s.addr, "GET", "/readyz", none, None).await;
    assert_eq!(r.status, 503);
    assert_eq!(logs.text(), "", "no warning while warming");
    // alive meanwhile, and serving
    let r = call(s.addr, "GET", "/healthz", none, None).await;
    assert_eq!(r.status, 200);
    state.warming.store(false, Ordering::Release);
    let r = call(s.addr, "GET", "/readyz", none, None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"status": "ready", "backend": "sqlite"}));
}

#[test]
fn every_route_is_documented() {
    // The routes of the table (the router is built from it) and the OpenAPI document agree.
    let doc: Value = serde_json::from_str(dancu_server::openapi_json()).unwrap();
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let table: std::collections::BTreeSet<(String, String)> = dancu_server::policy::routes()
        .iter()
        .filter(|r| r.path.starts_with("/api/v1") || r.path == "/healthz" || r.path == "/readyz")
        .map(|r| (r.method.to_string(), r.path.to_string()))
        .collect();
    assert_eq!(table, documented, "API routes and the OpenAPI document differ");
}

#[tokio::test]
async fn every_access_to_personal_data_is_audited() {
    use dancu_keys::Signer;
    let s = start().await;
    let o = officer(&s).await;
    let r = o.send("POST", "/api/v1/persons", &create_body(person())).await;
    let key = r.json()["key"].as_str().unwrap().to_string();
    let reader = add_officer(&s, "officer-007", "commune:00004", &[Role::CardOperator], &[], false).await;
    let reader = client(s.addr, &reader).await;
    let purpose = ("X-Dancu-Purpose", "Xác minh hồ sơ cư trú");
    let r = reader.req("GET", &format!("/api/v1/persons/{key}"), None, &[purpose]).await;
    assert_eq!(r.status, 200);
    let request_id = r.header("x-request-id").unwrap().to_string();
    // a miss is recorded too (enumeration attempts leave a trace)
    let r = reader.get("/api/v1/persons/001090123456").await;
    assert_eq!(r.status, 404);
    o.get("/api/v1/persons?name=tran").await;
    // reference data is not personal data: not audited
    o.get("/api/v1/reference/religions").await;

    let auditor = add_officer(&s, "auditor-1", "ministry", &[Role::Auditor], &[], true).await;
    let a = client(s.addr, &auditor).await;
    let r = a.get(&format!("/api/v1/persons/{key}/access-log")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let log = r.json();
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["person.read", "person.create"], "newest first, only this person");
    let read = &log[0];
    assert_eq!(read["officer"], "officer-007");
    assert_eq!(read["role"], "card_operator");
    assert_eq!(read["unit"], "commune:00004");
    assert_eq!(read["purpose"], "Xác minh hồ sơ cư trú");
    assert_eq!(read["request_id"], request_id.as_str());
    assert_eq!(read["client"], "127.0.0.1");
    assert_eq!(read["outcome"], "200");

    let r = a.get("/api/v1/audit?officer=officer-007").await;
    let by_officer = r.json();
    let actions: Vec<&str> = by_officer.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, ["person.read", "person.read", "auth.login"], "the login is on record too");
    assert_eq!(by_officer[0]["outcome"], "404");
    assert!(by_officer[0]["target"].is_null());
    let r = a.get("/api/v1/audit?from=yesterday").await;
    assert_eq!(r.problem(400, "validation")["errors"][0]["field"], "from");

    // the trail verifies, with a checkpoint signed along the way (every 5 entries here)
    let report = dancu_store::audit::verify(s.store.as_ref(), s.key.public_key_der()).await.unwrap().unwrap();
    assert!(report.entries >= 6, "{report:?}");
    assert!(report.checkpoints >= 1, "{report:?}");
}
