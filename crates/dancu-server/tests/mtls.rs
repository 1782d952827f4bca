//! Mutual TLS as partner authentication, over a real TLS port with certificates made in the test
//! by the OpenSSL command line (a partner CA, the server's certificate, partners' client
//! certificates) and a real TLS client (rustls): a partner registered with its certificate's
//! fingerprint calls a service without a bearer token; an unregistered certificate of the same
//! CA, a self-signed one and none at all are refused; scope and suspension still apply.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::body::Bytes;
use dancu_core::auth::Role;
use dancu_core::sharing::sha256_hex;
use dancu_keys::{PublicKey, Signer, SoftwareKey};
use dancu_store::registry::Registry;
use dancu_store::{ChangeMeta, Store};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use support::{add_officer, client, openssl, openssl_issue, start_state};

fn make_pki(dir: &Path) {
    openssl(dir, &["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key"]);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Partner CA",
            "-extensions",
            "v3",
            "-config",
            "ca.cnf",
        ],
    );
    let leaf = |eku: &str, san: &str| {
        format!("basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage={eku}\n{san}")
    };
    openssl_issue(dir, "server", "127.0.0.1", &leaf("serverAuth", "subjectAltName=IP:127.0.0.1\n"), true);
    openssl_issue(dir, "bhxh", "bhxh", &leaf("clientAuth", ""), true);
    openssl_issue(dir, "stranger", "stranger", &leaf("clientAuth", ""), true);
    openssl_issue(dir, "rogue", "bhxh", &leaf("clientAuth", ""), false);
}

struct Answer {
    status: u16,
    signed: bool,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// One request over a fresh TLS connection, presenting `client` (certificate and key files).
async fn tls_call(
    addr: SocketAddr,
    dir: &Path,
    client: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Answer, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(dir.join("ca.pem")).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client {
        Some(name) => {
            let chain = vec![CertificateDer::from_pem_file(dir.join(format!("{name}.pem"))).unwrap()];
            let key = PrivateKeyDer::from_pem_file(dir.join(format!("{name}.key"))).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let server = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
    let tls = connector.connect(server, tcp).await.map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
        .await
        .map_err(|e| format!("http: {e}"))?;
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
        .header("x-dancu-purpose", "đối soát người hưởng");
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(Full::new(Bytes::from(body.map(|b| b.to_string()).unwrap_or_default()))).unwrap();
    let res = sender.send_request(req).await.map_err(|e| format!("request: {e}"))?;
    let status = res.status().as_u16();
    let signed = res.headers().contains_key("x-dancu-signature");
    let bytes = res.into_body().collect().await.map_err(|e| format!("body: {e}"))?.to_bytes();
    Ok(Answer { status, signed, body: String::from_utf8(bytes.to_vec()).unwrap() })
}

fn fingerprint_with_colons(dir: &Path, name: &str) -> String {
    let der = CertificateDer::from_pem_file(dir.join(format!("{name}.pem"))).unwrap();
    let hex = sha256_hex(der.as_ref()).to_ascii_uppercase();
    hex.as_bytes().chunks(2).map(|c| std::str::from_utf8(c).unwrap()).collect::<Vec<_>>().join(":")
}

/// A directory with the partner CA (able to revoke: `openssl ca` with its database), the
/// server's certificate and the partners' ones ([`make_pki`]).
fn pki_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dancu-mtls-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name=dn\n[dn]\n[v3]\nbasicConstraints=critical,CA:TRUE\n\
         keyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n\
         [ca]\ndefault_ca=dflt\n[dflt]\ndatabase=index.txt\ncertificate=ca.pem\nprivate_key=ca.key\n\
         default_md=sha256\ndefault_crl_days=2\ncrl_extensions=crl_ext\n[crl_ext]\n\
         authorityKeyIdentifier=keyid:always\n",
    )
    .unwrap();
    std::fs::write(dir.join("index.txt"), "").unwrap();
    make_pki(&dir);
    dir
}

/// The partner "bhxh" (verify service) registered with its certificate's fingerprint.
async fn register_bhxh(s: &support::Server, dir: &Path) -> support::Client {
    let admin = add_officer(s, "partner.admin", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let key = SoftwareKey::generate().unwrap();
    let pem = PublicKey::from_spki_der(key.public_key_der()).unwrap().to_pem();
    let body = json!({"id": "bhxh", "name": "Bảo hiểm xã hội", "kind": "ministry",
        "legal_basis": "Nghị định 59/2022/NĐ-CP", "services": ["verify"], "fields": ["personal_id"],
        "rate_limit_per_second": 100, "valid_until": "2099-01-01T00:00:00Z", "public_key_pem": pem,
        "client_cert_sha256": fingerprint_with_colons(dir, "bhxh")});
    let r = admin.send("POST", "/api/v1/partners", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    admin
}

async fn mtls(store: Arc<dyn Store>) {
    let dir = pki_dir();
    let (s, state) = start_state(store.clone(), Default::default()).await;
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let tls = dancu_server::mtls_config(&read("server.pem"), &read("server.key"), &read("ca.pem"), None).unwrap();
    assert!(dancu_server::mtls_config(&read("server.pem"), &read("server.key"), b"", None).is_err());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = tokio::sync::watch::channel(tls).1;
    tokio::spawn(dancu_server::serve_mtls(listener, state, tls, std::future::pending()));

    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    let pid = rec.person.personal_id.unwrap().to_string();
    let verify = json!({"personal_id": pid, "name": rec.person.record.name.full(),
                        "birth_date": rec.person.record.birth_date.to_string()});

    let admin = add_officer(&s, "partner.admin", "ministry", &[Role::PartnerAdministrator], &[], false).await;
    let admin = client(s.addr, &admin).await;
    let key = SoftwareKey::generate().unwrap();
    let pem = PublicKey::from_spki_der(key.public_key_der()).unwrap().to_pem();
    let mut body = json!({"id": "bhxh", "name": "Bảo hiểm xã hội", "kind": "ministry",
        "legal_basis": "Nghị định 59/2022/NĐ-CP", "services": ["verify"], "fields": ["personal_id"],
        "rate_limit_per_second": 100, "valid_until": "2099-01-01T00:00:00Z", "public_key_pem": pem,
        "client_cert_sha256": "not-a-fingerprint"});
    let r = admin.send("POST", "/api/v1/partners", &body).await;
    r.problem(422, "validation");
    assert_eq!(r.error_fields(), ["client_cert_sha256"]);
    let fp = fingerprint_with_colons(&dir, "bhxh");
    body["client_cert_sha256"] = json!(fp);
    let r = admin.send("POST", "/api/v1/partners", &body).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["client_cert_sha256"], fp.replace(':', "").to_ascii_lowercase(), "stored normalized");

    // The registered certificate authenticates the partner: no bearer token.
    let a = tls_call(addr, &dir, Some("bhxh"), "POST", "/api/v1/sharing/verify", Some(&verify)).await.unwrap();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.signed, "the answer is signed as on the token path");
    assert_eq!(a.json()["match"], true, "{}", a.body);
    // Beyond the partner's services: refused.
    let a = tls_call(addr, &dir, Some("bhxh"), "GET", "/api/v1/sharing/events", None).await.unwrap();
    assert_eq!((a.status, a.json()["type"].as_str()), (403, Some("urn:dancu:problem:insufficient-scope")));
    // The plain port does not take certificates: no token, no entry.
    let r =
        support::call(s.addr, "POST", "/api/v1/sharing/verify", &[support::JSON], Some(verify.to_string().as_bytes()))
            .await;
    r.problem(401, "invalid-token");
    // A certificate of the same CA registered to nobody: refused.
    let a = tls_call(addr, &dir, Some("stranger"), "POST", "/api/v1/sharing/verify", Some(&verify)).await.unwrap();
    assert_eq!((a.status, a.json()["type"].as_str()), (401, Some("urn:dancu:problem:invalid-token")), "{}", a.body);
    // A self-signed certificate with the partner's name, or none at all: no TLS session.
    assert!(tls_call(addr, &dir, Some("rogue"), "POST", "/api/v1/sharing/verify", Some(&verify)).await.is_err());
    assert!(tls_call(addr, &dir, None, "POST", "/api/v1/sharing/verify", Some(&verify)).await.is_err());

    // Suspended: refused at once; the certificate moved to another partner: this one is out.
    let r =
        admin.send("POST", "/api/v1/partners/bhxh/status", &json!({"status": "suspended", "reason": "kiểm tra"})).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let a = tls_call(addr, &dir, Some("bhxh"), "POST", "/api/v1/sharing/verify", Some(&verify)).await.unwrap();
    assert_eq!((a.status, a.json()["type"].as_str()), (403, Some("urn:dancu:problem:partner-inactive")));

    // Each call is in the person's access log, naming the partner.
    let auditor = add_officer(&s, "kiem.toan", "ministry", &[Role::Auditor], &[], true).await;
    let auditor = client(s.addr, &auditor).await;
    let log = auditor.get(&format!("/api/v1/persons/{pid}/access-log?per_page=500")).await.json();
    assert!(
        log.as_array().unwrap().iter().any(|e| e["officer"] == "partner:bhxh" && e["action"] == "partner.verify"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_sqlite() {
    mtls(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_on_postgres() {
    if let Some(store) = support::pg_store().await {
        mtls(store).await;
    }
}

/// A partner CA's revocation list on the mutual-TLS port: a certificate it revokes gets no TLS
/// session, others still do; the list is read again when its file changes (no restart), and a
/// changed file that does not load leaves the running list in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_client_certificates_are_refused() {
    let dir = pki_dir();
    openssl(&dir, &["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.pem"]); // revokes nothing yet
    let read = |f: &str| std::fs::read(dir.join(f)).unwrap();
    let bad = dancu_server::mtls_config(&read("server.pem"), &read("server.key"), &read("ca.pem"), Some(b"junk"));
    assert!(bad.unwrap_err().contains("revocation list"));

    let store = support::sqlite_store().await;
    let (s, state) = start_state(store.clone(), Default::default()).await;
    register_bhxh(&s, &dir).await;
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    let verify = json!({"personal_id": rec.person.personal_id.unwrap().to_string(),
                        "name": rec.person.record.name.full(), "birth_date": rec.person.record.birth_date.to_string()});

    let files = dancu_server::MtlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        client_ca: dir.join("ca.pem"),
        crl: Some(dir.join("crl.pem")),
    };
    let tls = files.watch(std::time::Duration::from_millis(100)).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(dancu_server::serve_mtls(listener, state, tls, std::future::pending()));
    let call = |who: &'static str| {
        let (dir, verify) = (dir.clone(), verify.clone());
        async move { tls_call(addr, &dir, Some(who), "POST", "/api/v1/sharing/verify", Some(&verify)).await }
    };
    let a = call("bhxh").await.unwrap();
    assert_eq!((a.status, a.json()["match"].as_bool()), (200, Some(true)), "{}", a.body);

    // The CA revokes the partner's certificate and publishes a new list (replaced in one step).
    openssl(&dir, &["ca", "-config", "ca.cnf", "-revoke", "bhxh.pem"]);
    openssl(&dir, &["ca", "-config", "ca.cnf", "-gencrl", "-out", "crl.new.pem"]);
    std::fs::rename(dir.join("crl.new.pem"), dir.join("crl.pem")).unwrap();
    let started = std::time::Instant::now();
    while call("bhxh").await.is_ok() {
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the new list was taken up");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let a = call("stranger").await.expect("a certificate the list does not name still gets a session");
    assert_eq!(a.status, 401, "registered to nobody: {}", a.body);

    // A broken list file: the running configuration stays (the revoked certificate stays out).
    std::fs::write(dir.join("crl.pem"), "-----BEGIN X509 CRL-----\nnot base64\n-----END X509 CRL-----\n").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert!(call("bhxh").await.is_err());
    assert_eq!(call("stranger").await.unwrap().status, 401);
    let _ = std::fs::remove_dir_all(&dir);
}
