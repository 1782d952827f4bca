//! Shared by the HTTP test suites: a real server on a loopback port over a real store (SQLite
//! file, or PostgreSQL in a schema of its own), officer accounts, login (with the second factor
//! computed as an authenticator app would), and a minimal HTTP/1.1 client written here so the
//! tests see exactly the bytes on the wire.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use dancu_core::access::Permission;
use dancu_core::auth::{self, Officer, Role, Unit};
use dancu_server::AppState;
use dancu_server::auth::AuthConfig;
use dancu_store::Store;
use dancu_store::registry::Registry;
use dancu_store::sqlite::SqliteStore;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Server {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    pub key: Arc<dancu_keys::SoftwareKey>,
    pub secrets: Arc<dancu_keys::SecretBox>,
    /// The card PKI the server personalizes chips with: its CSCA certificate and CRL.
    pub csca: dancu_card::Certificate,
    pub crl: dancu_card::CertificateList,
    /// Where the server keeps intake uploads and their error reports.
    pub intake_dir: std::path::PathBuf,
}

/// The intake upload limit of the test servers (small: the tests send files over it).
pub const INTAKE_MAX_BYTES: usize = 256 * 1024;

pub async fn sqlite_store() -> Arc<dyn Store> {
    let path = dancu_store::conformance::scratch_dir("http").join("dancu.sqlite");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(path).unwrap());
    store.migrate().await.unwrap();
    store
}

/// A PostgreSQL store in a fresh schema; `None` (skip) without `DANCU_TEST_POSTGRES_URL`,
/// except in CI, where the PostgreSQL suites are mandatory.
pub async fn pg_store() -> Option<Arc<dyn Store>> {
    let url = match std::env::var("DANCU_TEST_POSTGRES_URL") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("DANCU_TEST_POSTGRES_URL is not set: in CI the PostgreSQL suite is mandatory");
            }
            eprintln!("skipped: DANCU_TEST_POSTGRES_URL is not set");
            return None;
        }
    };
    let schema = format!("t_{}", uuid::Uuid::new_v4().simple());
    let store = dancu_store::postgres::PgStore::connect(&url, Some(&schema)).await.expect("connect to PostgreSQL");
    store.migrate().await.unwrap();
    Some(Arc::new(store))
}

pub async fn start() -> Server {
    start_on(sqlite_store().await, AuthConfig::default()).await
}

pub async fn start_on(store: Arc<dyn Store>, config: AuthConfig) -> Server {
    start_state(store, config).await.0
}

/// A server, and its state (to run background workers on it).
pub async fn start_state(store: Arc<dyn Store>, config: AuthConfig) -> (Server, AppState) {
    start_with_pki_state(store, config, time::OffsetDateTime::now_utc() - time::Duration::days(1)).await
}

/// A server whose card PKI was made at `pki_made` (more than a year ago: its Document Signer is
/// past its key usage period).
pub async fn start_with_pki(store: Arc<dyn Store>, config: AuthConfig, pki_made: time::OffsetDateTime) -> Server {
    start_with_pki_state(store, config, pki_made).await.0
}

async fn start_with_pki_state(
    store: Arc<dyn Store>,
    config: AuthConfig,
    pki_made: time::OffsetDateTime,
) -> (Server, AppState) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let key = Arc::new(dancu_keys::SoftwareKey::generate().unwrap());
    let auditor = dancu_store::audit::Auditor::new(store.clone(), key.clone());
    let writer = dancu_store::audit::AuditWriter::spawn(auditor, 5, dancu_store::audit::CommitSpacing::NONE);
    let secrets = Arc::new(dancu_keys::SecretBox::generate().unwrap());
    let (ds, csca, crl) = dancu_store::conformance::test_card_pki(pki_made);
    let state = AppState::with_auth(Registry::new(store.clone()), Some(writer), config, secrets.clone())
        .with_confirmation_key(key.clone() as Arc<dyn dancu_keys::Signer>)
        .with_card_signer(Arc::new(ds))
        .with_card_trust(vec![csca.clone()], vec![crl.clone()])
        .with_audit_key(dancu_keys::Signer::public_key_der(key.as_ref()).to_vec());
    let intake_dir = dancu_store::conformance::scratch_dir("intake");
    let state = state.with_intake(intake_dir.clone(), INTAKE_MAX_BYTES);
    tokio::spawn(dancu_server::serve(listener, state.clone(), std::future::pending()));
    (Server { addr, store, key, secrets, csca, crl, intake_dir }, state)
}

/// An officer's login: password, and the authenticator secret for those enrolled.
pub struct Creds {
    pub username: String,
    pub password: String,
    pub secret: Option<Vec<u8>>,
    /// The last TOTP step used (an app shows a new code every 30 s; replays are refused).
    step: Mutex<i64>,
}

/// Stores an officer account (as `dancu officer add` does). `mfa`: enrolled with a TOTP secret.
pub async fn add_officer(
    s: &Server,
    username: &str,
    unit: &str,
    roles: &[Role],
    permissions: &[Permission],
    mfa: bool,
) -> Creds {
    let password = format!("mật khẩu của {username} đủ dài");
    let secret = mfa.then(|| username.bytes().cycle().take(20).collect::<Vec<u8>>());
    let officer = Officer {
        username: username.into(),
        display_name: format!("Cán bộ {username}"),
        unit: Unit::parse(unit).unwrap(),
        roles: roles.to_vec(),
        permissions: permissions.to_vec(),
        // Cheap salt: tests only; the hash itself is the real Argon2id.
        password_hash: auth::hash_password(&password, &[7u8; 16]),
        totp_secret: secret.as_deref().map(|b| s.secrets.seal(&auth::base32_encode(b), username).unwrap()),
        totp_last_step: None,
        totp_pending: None,
        failed_logins: 0,
        locked_until: None,
        active: true,
    };
    s.store.officer_insert(&officer).await.unwrap();
    Creds { username: username.into(), password, secret, step: Mutex::new(i64::MIN) }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

impl Creds {
    /// The next code the authenticator app would show (a later step if the current one was used).
    pub fn next_code(&self) -> String {
        let mut last = self.step.lock().unwrap();
        let now = unix_now() / auth::TOTP_STEP;
        let step = if *last < now { now } else { *last + 1 };
        assert!(step <= now + 1, "more than two logins of one officer within 30 s");
        *last = step;
        format!("{:06}", auth::totp_code(self.secret.as_ref().expect("enrolled"), step))
    }
}

/// Logs in (password, then the code when enrolled); returns the bearer token.
pub async fn login(addr: SocketAddr, c: &Creds) -> String {
    let body = serde_json::json!({"username": c.username, "password": c.password});
    let r = call(addr, "POST", "/api/v1/auth/login", &[JSON], Some(body.to_string().as_bytes())).await;
    assert_eq!(r.status, 200, "login of {}: {}", c.username, r.body);
    let v = r.json();
    let token = v["token"].as_str().unwrap().to_string();
    match v["stage"].as_str().unwrap() {
        "complete" => token,
        "mfa_required" => {
            let body = serde_json::json!({"code": c.next_code()});
            let auth = format!("Bearer {token}");
            let h = [JSON, ("Authorization", auth.as_str())];
            let r = call(addr, "POST", "/api/v1/auth/mfa", &h, Some(body.to_string().as_bytes())).await;
            assert_eq!(r.status, 200, "second factor of {}: {}", c.username, r.body);
            r.json()["token"].as_str().unwrap().to_string()
        }
        other => panic!("{}: unexpected stage {other}", c.username),
    }
}

pub const JSON: (&str, &str) = ("Content-Type", "application/json");

pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as text (invalid UTF-8 replaced: see `bytes` for binary bodies).
    pub body: String,
    pub bytes: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
    /// Asserts a problem+json of the given status and type; returns it.
    pub fn problem(&self, status: u16, kind: &str) -> Value {
        assert_eq!(self.status, status, "{}", self.body);
        assert_eq!(self.header("content-type"), Some("application/problem+json"), "{}", self.body);
        let v = self.json();
        assert_eq!(v["type"], format!("urn:dancu:problem:{kind}"), "{v}");
        assert_eq!(v["status"], status);
        v
    }
    pub fn error_fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e["field"].as_str().unwrap().to_string()).collect())
            .unwrap_or_default()
    }
}

/// One HTTP/1.1 request on a fresh connection.
pub async fn call<H: HeaderPair>(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[H],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for h in headers {
        let (k, v) = h.pair();
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
    Resp { status, headers, body: String::from_utf8_lossy(&body).into_owned(), bytes: body }
}

/// A header name and value.
pub trait HeaderPair {
    fn pair(&self) -> (&str, &str);
}

impl HeaderPair for (&str, &str) {
    fn pair(&self) -> (&str, &str) {
        (self.0, self.1)
    }
}

impl HeaderPair for (String, String) {
    fn pair(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

impl HeaderPair for &(String, String) {
    fn pair(&self) -> (&str, &str) {
        (&self.0, &self.1)
    }
}

/// A client acting as one officer (its bearer token on every request).
#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

impl Client {
    pub async fn get(&self, path: &str) -> Resp {
        self.req("GET", path, None, &[]).await
    }
    pub async fn send(&self, method: &str, path: &str, body: &Value) -> Resp {
        self.req(method, path, Some(body), &[]).await
    }
    pub async fn req(&self, method: &str, path: &str, body: Option<&Value>, extra: &[(&str, &str)]) -> Resp {
        let auth = format!("Bearer {}", self.token);
        let mut h: Vec<(&str, &str)> = vec![("Authorization", auth.as_str())];
        if body.is_some() {
            h.push(JSON);
        }
        h.extend_from_slice(extra);
        let b = body.map(|b| b.to_string());
        call(self.addr, method, path, &h, b.as_deref().map(str::as_bytes)).await
    }
}

pub async fn client(addr: SocketAddr, c: &Creds) -> Client {
    Client { addr, token: login(addr, c).await }
}

/// A pending review pair of `a` and `b` in an import batch `batch_id` of `unit` (its start audited),
/// as an import would queue it.
pub async fn plant_review_pair(
    store: &Arc<dyn Store>,
    batch_id: &str,
    unit: &str,
    a: uuid::Uuid,
    b: uuid::Uuid,
) -> dancu_store::ReviewPair {
    let batch = dancu_store::ImportBatch {
        id: batch_id.into(),
        unit: unit.into(),
        officer: "maker".into(),
        file_sha256: "00".repeat(32),
        started_at: time::OffsetDateTime::now_utc(),
        finished_at: None,
        summary: None,
    };
    let entry = dancu_core::audit::AuditEntry {
        at: "2026-11-29T00:00:00Z".into(),
        officer: "maker".into(),
        role: "collector".into(),
        unit: unit.into(),
        action: "import.start".into(),
        target: None,
        purpose: None,
        request_id: None,
        client: None,
        outcome: "started".into(),
    };
    store.import_begin(&batch, &entry).await.unwrap();
    let review = dancu_store::ReviewPair {
        id: uuid::Uuid::now_v7(),
        batch_id: batch_id.into(),
        a,
        b,
        weight: 12.0,
        probability: 0.7,
        explanation: serde_json::json!({"fields": []}),
        state: dancu_store::ReviewState::Pending,
        created_at: time::OffsetDateTime::now_utc(),
        decided_by: None,
        decided_at: None,
        note: None,
        survivor: None,
    };
    store.review_pairs_insert(std::slice::from_ref(&review)).await.unwrap();
    review
}

/// Runs the OpenSSL command line in `dir` (test certificates, keys, revocation lists).
pub fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("the openssl command");
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A key and a certificate signed by the CA in `dir` (or self-signed when `ca` is false).
pub fn openssl_issue(dir: &std::path::Path, name: &str, cn: &str, ext: &str, ca: bool) {
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    let (key, csr, pem, extf) =
        (format!("{name}.key"), format!("{name}.csr"), format!("{name}.pem"), format!("{name}.ext"));
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", &key]);
    openssl(dir, &["req", "-new", "-key", &key, "-out", &csr, "-subj", &format!("/CN={cn}")]);
    if ca {
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &pem,
                "-days",
                "2",
                "-extfile",
                &extf,
            ],
        );
    } else {
        openssl(dir, &["x509", "-req", "-in", &csr, "-signkey", &key, "-out", &pem, "-days", "2", "-extfile", &extf]);
    }
}
