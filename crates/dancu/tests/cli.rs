//! The real binary: `generate` is deterministic, `demo` seeds once and reuses its data, and the
//! server's logs carry no personal data even at debug level.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_dancu");

fn temp_dir(tag: &str) -> PathBuf {
    let d = dancu_store::conformance::scratch_dir(&format!("cli-{tag}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// One request; `auth` is a bearer token, `body` JSON.
fn request(addr: &str, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = auth {
        head += &format!("Authorization: Bearer {t}\r\n");
    }
    if let Some(b) = body {
        head += &format!("Content-Type: application/json\r\nContent-Length: {}\r\n", b.len());
    }
    write!(s, "{head}\r\n{}", body.unwrap_or("")).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.split(' ').nth(1).unwrap().parse().unwrap();
    let body = out.split_once("\r\n\r\n").map(|x| x.1.to_string()).unwrap_or_default();
    (status, body)
}

fn get(addr: &str, path: &str, token: &str) -> (u16, String) {
    request(addr, "GET", path, Some(token), None)
}

/// Logs in with the demo login the banner printed; returns the bearer token.
fn demo_token(addr: &str, banner: &str) -> String {
    let line = banner.lines().find(|l| l.trim_start().starts_with("demo ")).expect("the banner prints a demo login");
    let password = line.split_whitespace().nth(1).unwrap();
    let body = format!("{{\"username\":\"demo\",\"password\":\"{password}\"}}");
    let (status, out) = request(addr, "POST", "/api/v1/auth/login", None, Some(&body));
    assert_eq!(status, 200, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["stage"], "complete");
    v["token"].as_str().unwrap().to_string()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A server started by a test, stopped when the test ends, also when an assertion fails first.
struct Server(Child);

impl std::ops::Deref for Server {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Server {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `dancu demo`, waits for its banner; returns the server, the address and the banner.
fn demo(data: &PathBuf, people: u32, log: &str) -> (Server, String, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Server(
        Command::new(BIN)
            .args(["demo", "--people", &people.to_string(), "--listen", &addr])
            .arg("--data")
            .arg(data)
            .env("DANCU_LOG", log)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut banner = String::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let line = lines.next().expect("demo printed its banner").unwrap();
        banner += &line;
        banner.push('\n');
        if line.contains("Ctrl+C") {
            break;
        }
    }
    // Keep draining standard output, as a terminal would.
    std::thread::spawn(move || for _ in lines {});
    (child, addr, banner)
}

#[test]
fn generate_is_deterministic_and_well_formed() {
    let dir = temp_dir("gen");
    let run = |seed: &str, name: &str| {
        let out = dir.join(name);
        let st = Command::new(BIN)
            .args(["generate", "--people", "2000", "--seed", seed, "--out"])
            .arg(&out)
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::read_to_string(out).unwrap()
    };
    let a = run("9", "a.csv");
    let b = run("9", "b.csv");
    let c = run("10", "c.csv");
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert_eq!(a.lines().count(), 2001);
    assert!(a.lines().next().unwrap().starts_with("household,relationship_to_head,surname,middle_name,given_name"));
    // bad arguments are named
    let out =
        Command::new(BIN).args(["generate", "--people", "10", "--provinces", "02", "--out", "-"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("province \"02\" is not a code of the 2025 list"));
}

#[test]
fn demo_seeds_once_serves_and_logs_no_personal_data() {
    let data = temp_dir("demo");
    let (mut child, addr, banner) = demo(&data, 300, "debug");
    assert!(banner.contains(&format!("http://{addr}/")), "{banner}");
    let id = banner.split("/api/v1/persons/").nth(1).unwrap().split_whitespace().next().unwrap().to_string();
    let (status, _) = request(&addr, "GET", &format!("/api/v1/persons/{id}"), None, None);
    assert_eq!(status, 401, "personal data needs a login");
    let token = demo_token(&addr, &banner);
    let (status, body) = get(&addr, &format!("/api/v1/persons/{id}"), &token);
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let surname = v["person"]["name"]["surname"].as_str().unwrap().to_string();
    let given = v["person"]["name"]["given"].as_str().unwrap().to_string();
    let (status, _) = get(&addr, &format!("/api/v1/persons?name={}", dancu_core::text::fold(&surname)), &token);
    assert_eq!(status, 200);
    child.kill().unwrap();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    child.wait().unwrap();
    assert!(logs.contains("route=\"/api/v1/persons/{ref}\""), "request lines are logged: {logs}");
    assert!(!logs.contains(&id), "a personal ID reached the log");
    assert!(!logs.contains(&given) || given.len() < 3, "a name reached the log");
    assert!(logs.contains("seeded 300 people"));

    // A second run reuses the data and the demo logins (the banner shows the same password).
    let (mut child, addr, banner2) = demo(&data, 300, "info");
    let token = demo_token(&addr, &banner2);
    assert_eq!(
        banner.lines().find(|l| l.trim_start().starts_with("demo ")),
        banner2.lines().find(|l| l.trim_start().starts_with("demo "))
    );
    let (status, _) = get(&addr, &format!("/api/v1/persons/{id}"), &token);
    assert_eq!(status, 200);
    child.kill().unwrap();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    child.wait().unwrap();
    assert!(logs.contains("reusing 300 people"), "{logs}");
}

#[test]
fn officer_add_bootstraps_an_administrator() {
    let data = temp_dir("officer");
    let add = |args: &[&str], stdin: &str| {
        let mut child = Command::new(BIN)
            .args(["officer", "add", "--data"])
            .arg(&data)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let admin =
        ["--username", "admin", "--name", "Quản trị hệ thống", "--unit", "ministry", "--roles", "system_administrator"];
    let (ok, out, err) = add(&admin, "");
    assert!(ok, "{err}");
    assert!(out.contains("password (shown once): "), "{out}");
    assert!(out.contains("otpauth://totp/dancu:admin?secret="), "{out}");
    // the username is taken now
    let (ok, _, err) = add(&admin, "");
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");
    // a collector with a chosen password: no second factor required
    let collector = [
        "--username",
        "ca.hoankiem.01",
        "--name",
        "Trần Văn Bình",
        "--unit",
        "commune:00070",
        "--roles",
        "collector",
        "--password-stdin",
    ];
    let (ok, out, err) = add(&collector, "một mật khẩu đủ dài\n");
    assert!(ok, "{err}");
    assert!(!out.contains("otpauth") && !out.contains("shown once"), "{out}");
    // bad input is named
    let (ok, _, err) =
        add(&["--username", "x.y", "--name", "A", "--unit", "commune:99999", "--roles", "collector"], "");
    assert!(!ok && err.contains("--unit"), "{err}");
    let (ok, _, err) = add(&["--username", "x.y", "--name", "A", "--unit", "ministry", "--roles", "king"], "");
    assert!(!ok && err.contains("unknown role \"king\""), "{err}");
    let (ok, _, err) = add(
        &["--username", "x.z", "--name", "A", "--unit", "ministry", "--roles", "collector", "--password-stdin"],
        "short\n",
    );
    assert!(!ok && err.contains("at least 12 characters"), "{err}");
}

#[test]
fn a_child_gets_a_card_only_on_request() {
    let dir = temp_dir("card-age");
    let data = dir.join("data");
    let run = |args: &[&str]| Command::new(BIN).args(args).env("RUST_BACKTRACE", "0").output().unwrap();
    assert!(run(&["seed", "--data", data.to_str().unwrap(), "--people", "300", "--seed", "3"]).status.success());
    let pki = dir.join("pki");
    assert!(run(&["pki", "init", "--pki", pki.to_str().unwrap()]).status.success());
    let db = rusqlite::Connection::open(data.join("dancu.sqlite")).unwrap();
    let child: String = db
        .query_row(
            "SELECT personal_id FROM persons WHERE personal_id IS NOT NULL ORDER BY birth_year DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let photo = concat!(env!("CARGO_MANIFEST_DIR"), "/../dancu-card/testdata/face.jpg");
    let personalize = |extra: &[&str]| {
        let out = dir.join(format!("card{}", extra.len()));
        let mut args = vec!["card", "personalize", "--pki", pki.to_str().unwrap(), "--data", data.to_str().unwrap()];
        args.extend(["--id", child.as_str(), "--photo", photo, "--out", out.to_str().unwrap()]);
        args.extend(extra);
        run(&args)
    };
    let refused = personalize(&[]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("gets a card only on request"));
    assert!(personalize(&["--under-14-requested"]).status.success());
}

/// The server reads its store's files ahead at start (`--warm-cache`). SQLite's locks are POSIX
/// advisory locks, which a process loses on *every* descriptor of a file when it closes any one
/// of them: a read-ahead that opened and closed the files inside the server let another process
/// (an import) believe it was alone, remove the write-ahead log at its exit and corrupt the store.
#[test]
fn reading_the_store_ahead_keeps_other_processes_from_corrupting_it() {
    let data = temp_dir("warm");
    let (mut child, addr, banner) = demo(&data, 300, "info");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = request(&addr, "GET", "/readyz", None, None);
        if status == 200 {
            break;
        }
        assert_eq!((status, body.contains("warming")), (503, true), "{body}");
        assert!(Instant::now() < deadline, "the server never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = |args: &[&str]| {
        let out = Command::new(BIN).args(args).env("DANCU_LOG", "warn").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let d = data.to_str().unwrap();
    let (dup, legacy) = (data.join("dup.csv"), data.join("legacy.csv"));
    let (dup, legacy) = (dup.to_str().unwrap(), legacy.to_str().unwrap());
    // Other processes write the store and exit while the server uses it (as an officer's
    // imports and an address migration would).
    run(&["generate", "--people", "1000", "--seed", "7", "--provinces", "01", "--duplicates", "0.3", "--out", dup]);
    run(&["import", "--data", d, dup, "--unit", "province:01", "--officer", "demo"]);
    run(&["generate", "--people", "100", "--seed", "11", "--provinces", "01", "--legacy-share", "1", "--out", legacy]);
    run(&["import", "--data", d, legacy, "--unit", "province:01", "--officer", "demo"]);
    run(&["addresses", "migrate", "--data", d]);
    // The server goes on writing and reading the same files: a login (a session, an audit
    // entry), searches that see the import, a few rounds of its background work.
    let token = demo_token(&addr, &banner);
    let (status, body) = get(&addr, "/api/v1/persons?province=01&per_page=5", &token);
    assert_eq!(status, 200, "{body}");
    std::thread::sleep(Duration::from_secs(3));
    let (status, body) = get(&addr, "/api/v1/persons?province=01&per_page=5", &token);
    assert_eq!(status, 200, "{body}");
    child.kill().unwrap();
    let mut logs = String::new();
    child.stderr.take().unwrap().read_to_string(&mut logs).unwrap();
    child.wait().unwrap();
    assert!(logs.contains("store files read into the page cache"), "{logs}");
    assert!(!logs.contains("malformed"), "{logs}");
    for file in ["dancu.sqlite", "dancu.audit.sqlite", "dancu.audit-index.sqlite"] {
        let db = rusqlite::Connection::open(data.join(file)).unwrap();
        let check: String = db.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
        assert_eq!(check, "ok", "{file}");
    }
}
