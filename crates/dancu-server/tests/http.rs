//! The API over real HTTP: a real server on a loopback port, a real SQLite file, and a
//! minimal HTTP/1.1 client written here (so the tests see exactly the bytes on the wire).

use std::net::SocketAddr;
use std::sync::Arc;

use dancu_server::AppState;
use dancu_store::Store;
use dancu_store::registry::Registry;
use dancu_store::sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Server {
    addr: SocketAddr,
    store: Arc<dyn Store>,
    key: Arc<dancu_keys::SoftwareKey>,
}

async fn start() -> Server {
    let path = std::env::temp_dir().join(format!("dancu-http-{}", uuid::Uuid::new_v4())).join("dancu.sqlite");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).unwrap());
    store.migrate().await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let key = Arc::new(dancu_keys::SoftwareKey::generate().unwrap());
    let auditor = dancu_store::audit::Auditor::new(store.clone(), key.clone());
    let writer = dancu_store::audit::AuditWriter::spawn(auditor, 5);
    let state = AppState::new(Registry::new(store.clone()), Some(writer));
    tokio::spawn(dancu_server::serve(listener, state, std::future::pending()));
    Server { addr, store, key }
}

struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// Asserts a problem+json of the given status and type; returns it.
    fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.body);
        let v = self.json();
        assert_eq!(v["type"], format!("urn:dancu:problem:{kind}"), "{v}");
        assert_eq!(v["status"], status);
        v
    }
    fn error_fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e["field"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req += &format!("{k}: {v}\r\n");
    }
    if let Some(b) = body {
        req += &format!("Content-Length: {}\r\n", b.len());
    }
    req += "\r\n";
    s.write_all(req.as_bytes()).await.unwrap();
    if let Some(b) = body {
        s.write_all(b).await.unwrap();
    }
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut body = raw[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    if headers.iter().any(|(k, v)| k == "transfer-encoding" && v.contains("chunked")) {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let nl = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&rest[..nl]).unwrap().trim(), 16).unwrap();
            if size == 0 {
                break;
            }
            out.extend_from_slice(&rest[nl + 2..nl + 2 + size]);
            rest = &rest[nl + 4 + size..];
        }
        body = out;
    }
    Resp { status, headers, body: String::from_utf8(body).unwrap() }
}

const ACTOR: (&str, &str) = ("X-Dancu-Actor", "officer-001");
const JSON: (&str, &str) = ("Content-Type", "application/json");

async fn send(addr: SocketAddr, method: &str, path: &str, body: &Value) -> Resp {
    call(addr, method, path, &[ACTOR, JSON], Some(body.to_string().as_bytes())).await
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
    let r = send(s.addr, "POST", "/api/v1/persons", &create_body(person())).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let created = r.json();
    let key = created["key"].as_str().unwrap().to_string();
    assert_eq!(r.header("location"), Some(format!("/api/v1/persons/{key}").as_str()));
    assert_eq!(r.header("etag"), Some("\"1\""));
    assert_eq!(created["person"]["status"], "pending");
    assert_eq!(created["person"]["birth_date"], "1985-03-12");

    let r = call(s.addr, "GET", &format!("/api/v1/persons/{key}"), &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("cache-control"), Some("no-store"));

    let r = send(
        s.addr,
        "POST",
        &format!("/api/v1/persons/{key}/activate"),
        &json!({"version": 1, "reason": "Cấp số định danh"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let id = r.json()["person"]["personal_id"].as_str().unwrap().to_string();
    // born 1985, female, birth registered in Hà Giang (002)
    assert!(id.starts_with("002185"), "{id}");

    let r = call(s.addr, "GET", &format!("/api/v1/persons/{id}"), &[], None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["key"], key);
    let r = call(s.addr, "GET", "/api/v1/persons/by-legacy-id/073123456", &[], None).await;
    assert_eq!(r.json()["person"]["personal_id"], id.as_str());

    // activation twice: 409
    let r = send(s.addr, "POST", &format!("/api/v1/persons/{key}/activate"), &json!({"reason": "again"})).await;
    r.problem(409, "already-active");

    // update against the version read, then a stale one
    let mut p = person();
    p["occupation"] = json!("Kỹ sư");
    let r = send(
        s.addr,
        "PUT",
        &format!("/api/v1/persons/{id}"),
        &json!({"version": 2, "person": p, "reason": "Cập nhật nghề nghiệp"}),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["version"], 3);
    let r =
        send(s.addr, "PUT", &format!("/api/v1/persons/{id}"), &json!({"version": 2, "person": p, "reason": "x"})).await;
    r.problem(409, "version-conflict");

    // a birth year the personal ID contradicts
    let mut wrong_year = p.clone();
    wrong_year["birth_date"] = json!("1986-03-12");
    let r = send(
        s.addr,
        "PUT",
        &format!("/api/v1/persons/{id}"),
        &json!({"version": 3, "person": wrong_year, "reason": "x"}),
    )
    .await;
    r.problem(422, "validation");
    assert_eq!(r.error_fields(), vec!["person.birth_date"]);

    let r = call(s.addr, "GET", &format!("/api/v1/persons/{id}/history"), &[], None).await;
    let h = r.json();
    assert_eq!(h.as_array().unwrap().len(), 3);
    assert_eq!(h[0]["change"], "create");
    assert_eq!(h[1]["change"], "activate");
    assert_eq!(h[2]["meta"]["reason"], "Cập nhật nghề nghiệp");
    assert_eq!(h[2]["meta"]["actor"], "officer-001");

    // search: unaccented, by year and commune
    let r = call(s.addr, "GET", "/api/v1/persons?name=tran%20thi%20hoa&birth_year=1985&commune=00004", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1);
    let r = call(s.addr, "GET", "/api/v1/persons?name=Tr%E1%BA%A7n%20Th%E1%BB%8B%20H%C3%B2a", &[], None).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 1, "Hòa finds Hoà");
    let r = call(s.addr, "GET", "/api/v1/persons?name=tran&birth_year=1984", &[], None).await;
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn bad_input_is_named_and_nothing_is_written() {
    let s = start().await;
    let addr = s.addr;
    let post = |b: Value| async move { send(addr, "POST", "/api/v1/persons", &create_body(b)).await };

    let r = call(s.addr, "POST", "/api/v1/persons", &[ACTOR, JSON], Some(b"{\"person\": {")).await;
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
    let r = call(s.addr, "POST", "/api/v1/persons", &[ACTOR, JSON], Some(&big)).await;
    assert_eq!(r.status, 413);
    // no actor, wrong media type
    let r = call(s.addr, "POST", "/api/v1/persons", &[JSON], Some(create_body(person()).to_string().as_bytes())).await;
    r.problem(400, "validation");
    let r = call(s.addr, "POST", "/api/v1/persons", &[ACTOR, ("Content-Type", "text/plain")], Some(b"{}")).await;
    r.problem(415, "unsupported-media-type");
    // missing reason
    let r = send(s.addr, "POST", "/api/v1/persons", &json!({"person": person(), "reason": ""})).await;
    assert_eq!(r.error_fields(), vec!["reason"]);

    // references
    let r = call(s.addr, "GET", "/api/v1/persons/003090123456", &[], None).await;
    let v = r.problem(400, "validation");
    assert!(v["errors"][0]["reason"].as_str().unwrap().contains("digits 1-3"), "{v}");
    let r = call(s.addr, "GET", "/api/v1/persons/12345", &[], None).await;
    r.problem(400, "validation");
    let r = call(s.addr, "GET", "/api/v1/persons/001090123456", &[], None).await;
    r.problem(404, "not-found");
    let r = call(s.addr, "GET", "/api/v1/persons?birth_year=abc", &[], None).await;
    assert_eq!(r.problem(400, "validation")["errors"][0]["field"], "birth_year");
    let r = call(s.addr, "GET", "/api/v1/persons?color=red", &[], None).await;
    assert_eq!(r.problem(400, "validation")["errors"][0]["field"], "color");
    let r = call(s.addr, "GET", "/api/v1/persons?commune=legacy:99999", &[], None).await;
    r.problem(400, "validation");
    let r = call(s.addr, "DELETE", "/api/v1/persons", &[], None).await;
    r.problem(405, "method-not-allowed");
    let r = call(s.addr, "GET", "/nowhere", &[], None).await;
    r.problem(404, "not-found");

    // activation of a person whose birth was registered abroad: named, nothing written
    let mut abroad = person();
    abroad["birth_registration_place"] = json!({"country": "FRA", "detail": "Paris"});
    let r = post(abroad).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let key = r.json()["key"].as_str().unwrap().to_string();
    let r = send(s.addr, "POST", &format!("/api/v1/persons/{key}/activate"), &json!({"reason": "cấp số"})).await;
    assert_eq!(r.problem(422, "validation")["errors"][0]["field"], "birth_registration_place");

    assert_eq!(s.store.count_persons().await.unwrap(), 1, "only the valid abroad record was stored");
    assert_eq!(s.store.history(key.parse().unwrap()).await.unwrap().len(), 1);
}

#[tokio::test]
async fn reference_docs_health_and_metrics() {
    let s = start().await;
    let r = call(s.addr, "GET", "/api/v1/reference/provinces", &[], None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 34);
    let r = call(s.addr, "GET", "/api/v1/reference/provinces?scheme=legacy", &[], None).await;
    assert_eq!(r.json().as_array().unwrap().len(), 63);
    let r = call(s.addr, "GET", "/api/v1/reference/communes?province=01", &[], None).await;
    assert!(r.json().as_array().unwrap().len() > 100);
    let r = call(s.addr, "GET", "/api/v1/reference/communes/legacy/00004", &[], None).await;
    let v = r.json();
    assert_eq!(v["commune"]["name"], "Phường Trúc Bạch");
    assert_eq!(v["became"][0]["new_commune_code"], "00004");
    for (path, n) in [("ethnicities", 54), ("religions", 17), ("id-provinces", 63)] {
        let r = call(s.addr, "GET", &format!("/api/v1/reference/{path}"), &[], None).await;
        assert_eq!(r.json().as_array().unwrap().len(), n, "{path}");
    }
    let r = call(s.addr, "GET", "/api/v1/reference/provinces?scheme=1999", &[], None).await;
    r.problem(400, "validation");

    let r = call(s.addr, "GET", "/api/openapi.json", &[], None).await;
    let doc = r.json();
    assert_eq!(doc["openapi"], "3.1.0");
    for p in
        ["/api/v1/persons", "/api/v1/persons/{ref}", "/api/v1/persons/{ref}/activate", "/api/v1/persons/{ref}/history"]
    {
        assert!(doc["paths"][p].is_object(), "{p} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"]["PersonInput"].is_object());
    assert!(doc["components"]["schemas"]["Problem"].is_object());
    let r = call(s.addr, "GET", "/api/docs", &[], None).await;
    assert!(r.body.contains("swagger-ui-bundle.js"));
    let r = call(s.addr, "GET", "/api/docs/swagger-ui-bundle.js", &[], None).await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() > 500_000);

    let r = call(s.addr, "GET", "/healthz", &[], None).await;
    assert_eq!(r.json(), json!({"status": "ok", "backend": "sqlite"}));

    // metrics label routes, never the personal IDs in paths
    call(s.addr, "GET", "/api/v1/persons/001090123456", &[], None).await;
    let r = call(s.addr, "GET", "/metrics", &[], None).await;
    assert!(r.header("content-type").unwrap().starts_with("text/plain; version=0.0.4"));
    assert!(
        r.body.contains("dancu_http_requests_total{method=\"GET\",route=\"/api/v1/persons/{ref}\",status=\"404\"} 1"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("001090123456"));
}

#[test]
fn every_route_is_documented() {
    // Routes registered in the router and paths in the OpenAPI document must agree.
    let doc: Value = serde_json::from_str(dancu_server::openapi_json()).unwrap();
    let documented: std::collections::BTreeSet<String> = doc["paths"].as_object().unwrap().keys().cloned().collect();
    let source = include_str!("../src/lib.rs");
    for line in source.lines().filter(|l| l.trim_start().starts_with(".route(\"/api/v1")) {
        let path = line.split('"').nth(1).unwrap();
        assert!(documented.contains(path), "route {path} is not in the OpenAPI document");
    }
}

#[tokio::test]
async fn every_access_to_personal_data_is_audited() {
    use dancu_keys::Signer;
    let s = start().await;
    let r = send(s.addr, "POST", "/api/v1/persons", &create_body(person())).await;
    let key = r.json()["key"].as_str().unwrap().to_string();
    let purpose = ("X-Dancu-Purpose", "Xác minh hồ sơ cư trú");
    let r = call(s.addr, "GET", &format!("/api/v1/persons/{key}"), &[("X-Dancu-Actor", "officer-007"), purpose], None)
        .await;
    assert_eq!(r.status, 200);
    let request_id = r.header("x-request-id").unwrap().to_string();
    // a miss is recorded too (enumeration attempts leave a trace)
    let r = call(s.addr, "GET", "/api/v1/persons/001090123456", &[("X-Dancu-Actor", "officer-007")], None).await;
    assert_eq!(r.status, 404);
    call(s.addr, "GET", "/api/v1/persons?name=tran", &[], None).await;
    // reference data is not personal data: not audited
    call(s.addr, "GET", "/api/v1/reference/religions", &[], None).await;

    let r = call(s.addr, "GET", &format!("/api/v1/persons/{key}/access-log"), &[], None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let log = r.json();
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(actions, vec!["person.read", "person.create"], "newest first, only this person");
    let read = &log[0];
    assert_eq!(read["officer"], "officer-007");
    assert_eq!(read["purpose"], "Xác minh hồ sơ cư trú");
    assert_eq!(read["request_id"], request_id.as_str());
    assert_eq!(read["client"], "127.0.0.1");
    assert_eq!(read["outcome"], "200");

    let r = call(s.addr, "GET", "/api/v1/audit?officer=officer-007", &[], None).await;
    let by_officer = r.json();
    assert_eq!(by_officer.as_array().unwrap().len(), 2);
    assert_eq!(by_officer[0]["outcome"], "404");
    assert!(by_officer[0]["target"].is_null());
    let r = call(s.addr, "GET", "/api/v1/audit?from=yesterday", &[], None).await;
    assert_eq!(r.problem(400, "validation")["errors"][0]["field"], "from");

    // the trail verifies, with a checkpoint signed along the way (every 5 entries here)
    let report = dancu_store::audit::verify(s.store.as_ref(), s.key.public_key_der()).await.unwrap().unwrap();
    assert!(report.entries >= 6, "{report:?}");
    assert!(report.checkpoints >= 1, "{report:?}");
}
