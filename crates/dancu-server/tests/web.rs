//! The officers' web application over real HTTP, as a browser uses it: login with the session
//! cookie and the second factor, every page rendered (and under 200 KB), CSRF and cross-site
//! forms refused, an unauthenticated browser sent to the login page, the language switch, a
//! temporary residence filed from the form with Vietnamese validation messages, a review pair
//! decided, the audit chain verified.

mod support;

use dancu_core::auth::Role;
use dancu_store::registry::Registry;
use dancu_store::{ChangeMeta, Store};
use support::{Creds, Resp, Server, add_officer, call, start};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

/// A browser: one session cookie.
struct Browser {
    addr: std::net::SocketAddr,
    cookie: String,
}

fn session_cookie(r: &Resp) -> Option<String> {
    let v = r.header("set-cookie")?;
    let token = v.strip_prefix("dancu_session=")?.split(';').next()?;
    Some(token.to_string())
}

/// The CSRF token a page carries in its forms.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page[at..at + 32].to_string()
}

impl Browser {
    async fn get(&self, path: &str) -> Resp {
        let c = format!("dancu_session={}", self.cookie);
        call(self.addr, "GET", path, &[("Cookie", c.as_str())], None).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)], extra: &[(&str, &str)]) -> Resp {
        let c = format!("dancu_session={}", self.cookie);
        let mut h = vec![FORM, ("Cookie", c.as_str())];
        h.extend_from_slice(extra);
        let body = serde_urlencoded::to_string(fields).unwrap();
        call(self.addr, "POST", path, &h, Some(body.as_bytes())).await
    }

    /// Posts a form of `page` (its CSRF token added).
    async fn submit(&self, page: &str, path: &str, fields: &[(&str, &str)]) -> Resp {
        let csrf = csrf_of(page);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all, &[]).await
    }
}

/// Logs in through the pages: password, then the code when enrolled.
async fn browser_login(s: &Server, c: &Creds) -> Browser {
    let body =
        serde_urlencoded::to_string([("username", c.username.as_str()), ("password", c.password.as_str())]).unwrap();
    let r = call(s.addr, "POST", "/ui/login", &[FORM], Some(body.as_bytes())).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui")), "{}", r.body);
    let cookie = session_cookie(&r).expect("a session cookie");
    assert!(
        r.header("set-cookie").unwrap().contains("HttpOnly")
            && r.header("set-cookie").unwrap().contains("SameSite=Strict")
    );
    let mut b = Browser { addr: s.addr, cookie };
    let r = b.get("/ui").await;
    if c.secret.is_some() {
        assert_eq!((r.status, r.header("location")), (303, Some("/ui/mfa")));
        let page = b.get("/ui/mfa").await;
        assert_eq!(page.status, 200);
        let wrong = b.submit(&page.body, "/ui/mfa", &[("code", "12345x")]).await;
        assert_eq!(wrong.status, 401, "a wrong code shows the form again");
        assert!(wrong.body.contains("mã xác thực không đúng"), "{}", wrong.body);
        let r = b.submit(&page.body, "/ui/mfa", &[("code", &c.next_code())]).await;
        assert_eq!((r.status, r.header("location")), (303, Some("/ui")), "{}", r.body);
        b.cookie = session_cookie(&r).expect("a new session cookie after the second factor");
    } else {
        assert_eq!(r.status, 200);
    }
    b
}

struct Fixture {
    person_key: String,
    personal_id: String,
    review_id: String,
    /// A person of commune 26506.
    other_id: String,
}

async fn fixture(store: &std::sync::Arc<dyn Store>) -> Fixture {
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap(); // Nguyễn Thị Bình, commune 00004
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    let mut twin = dancu_store::conformance::sample(1);
    twin.name.middle = String::new();
    let twin = reg.create(twin, &meta).await.unwrap();
    for i in 2..40 {
        reg.create(dancu_store::conformance::sample(i), &meta).await.unwrap();
    }
    // a person living in commune 26506 (Hồ Chí Minh City)
    let other = reg.create(dancu_store::conformance::sample(42), &meta).await.unwrap();
    let other = reg.activate(other.key, None, &meta).await.unwrap();
    let review = support::plant_review_pair(store, "web", "commune:00004", rec.key, twin.key).await;
    Fixture {
        person_key: rec.key.to_string(),
        personal_id: rec.person.personal_id.unwrap().to_string(),
        review_id: review.id.to_string(),
        other_id: other.person.personal_id.unwrap().to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_render_under_200_kb_behind_the_login() {
    let s = start().await;
    let f = fixture(&s.store).await;
    // anonymous: every page behind the login sends the browser to the login page
    for path in ["/ui", "/ui/persons", &format!("/ui/persons/{}", f.person_key), "/ui/audit", "/ui/mfa"] {
        let r = call(s.addr, "GET", path, &[] as &[(&str, &str)], None).await;
        assert_eq!((r.status, r.header("location")), (303, Some("/ui/login")), "{path}");
    }
    let login = call(s.addr, "GET", "/ui/login", &[] as &[(&str, &str)], None).await;
    assert_eq!(login.status, 200);
    assert!(login.body.contains("<html lang=\"vi\"") && login.body.contains("Đăng nhập"));
    assert!(login.header("content-security-policy").unwrap().contains("default-src 'none'"));
    let css = call(s.addr, "GET", "/ui/assets/app.css", &[] as &[(&str, &str)], None).await;
    assert_eq!(css.status, 200);
    // a wrong password: the form again, in Vietnamese, with 401
    let body = "username=nobody&password=wrong";
    let r = call(s.addr, "POST", "/ui/login", &[FORM], Some(body.as_bytes())).await;
    assert_eq!(r.status, 401);
    assert!(r.body.contains("Sai tên đăng nhập hoặc mật khẩu"), "{}", r.body);

    let creds = add_officer(&s, "lanhdao", "ministry", &Role::ALL, &[], true).await;
    let b = browser_login(&s, &creds).await;
    let paths = [
        "/ui".to_string(),
        "/ui/persons?name=nguyen%20thi%20binh".into(),
        format!("/ui/persons/{}", f.person_key),
        format!("/ui/persons/{}/edit", f.person_key),
        "/ui/reviews".into(),
        format!("/ui/reviews/{}", f.review_id),
        "/ui/residence".into(),
        "/ui/residence/temporary".into(),
        "/ui/audit".into(),
        "/ui/login".into(),
    ];
    for p in &paths {
        let r = b.get(p).await;
        assert_eq!(r.status, 200, "{p}: {}", r.body);
        assert!(r.body.len() < 200 * 1024, "{p} is {} bytes", r.body.len());
        assert!(r.header("content-type").unwrap().starts_with("text/html"), "{p}");
        assert!(r.body.contains("lanhdao") || p == "/ui/login", "{p} names the officer");
    }
    // the dashboard: the age pyramid and the population of the area
    let dash = b.get("/ui").await;
    assert!(dash.body.contains("<svg class=\"chart\""));
    assert!(dash.body.contains("id=\"population\">41<"), "41 people in the store");
    // accent-insensitive search finds the person
    let found = b.get("/ui/persons?name=nguyen%20thi%20binh").await;
    assert!(found.body.contains(&f.person_key));
    assert!(found.body.contains("Nguyễn Thị Bình"));
    // English on request
    let en = b.get("/ui/persons?lang=en").await;
    assert!(en.body.contains("<html lang=\"en\"") && en.body.contains("Find a person"));
    let sw = call(s.addr, "GET", "/ui/lang/en", &[] as &[(&str, &str)], None).await;
    assert!(sw.header("set-cookie").unwrap().starts_with("dancu_lang=en"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forms_need_the_session_token_and_this_site() {
    let s = start().await;
    let f = fixture(&s.store).await;
    let creds = add_officer(&s, "xa", "commune:00004", &[Role::Collector, Role::Verifier], &[], false).await;
    let b = browser_login(&s, &creds).await;
    let page = b.get("/ui/residence/temporary").await;
    let csrf = csrf_of(&page.body);
    assert_eq!(csrf, dancu_server::web::csrf_token(&b.cookie));
    let fields =
        [("person", f.personal_id.as_str()), ("commune", "26506"), ("detail", "Số 1"), ("until", "2099-01-01")];
    // no token, a wrong token, a foreign origin: refused, nothing filed
    let r = b.post("/ui/residence/temporary", &fields, &[]).await;
    assert_eq!(r.status, 403);
    let mut wrong = vec![("csrf", "0".repeat(32))];
    wrong.extend(fields.iter().map(|(k, v)| (*k, v.to_string())));
    let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(b.post("/ui/residence/temporary", &wrong, &[]).await.status, 403);
    let mut good = vec![("csrf", csrf.as_str())];
    good.extend_from_slice(&fields);
    let r = b.post("/ui/residence/temporary", &good, &[("Origin", "http://evil.example")]).await;
    assert_eq!(r.status, 403);
    let r = b.post("/ui/residence/temporary", &good, &[("Sec-Fetch-Site", "cross-site")]).await;
    assert_eq!(r.status, 403);
    let apps = s.store.applications(&dancu_store::ApplicationQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert!(apps.is_empty(), "nothing was filed");
    // Vietnamese validation messages naming the field
    let bad =
        [("csrf", csrf.as_str()), ("person", "12345"), ("commune", "99999"), ("detail", ""), ("until", "2020-01-01")];
    let r = b.post("/ui/residence/temporary", &bad, &[]).await;
    assert_eq!(r.status, 422);
    for m in [
        "Số định danh cá nhân phải gồm 12 chữ số",
        "Mã xã/phường không có trong danh mục",
        "Địa chỉ chi tiết: bắt buộc nhập",
        "Ngày hết hạn tạm trú phải sau hôm nay",
    ] {
        assert!(r.body.contains(m), "{m}: {}", r.body);
    }
    // the registry's own rule, in Vietnamese: not in the commune of permanent residence
    let until = dancu_core::date::iso_date::format(dancu_store::registry::today() + time::Duration::days(200));
    let same = [
        ("csrf", csrf.as_str()),
        ("person", &f.personal_id),
        ("commune", "00004"),
        ("detail", "Số 2"),
        ("until", &until),
    ];
    let r = b.post("/ui/residence/temporary", &same, &[]).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Không đăng ký tạm trú tại xã/phường nơi đang thường trú"), "{}", r.body);
    // a valid one is filed and listed: a person of another province staying in this commune
    let ok =
        [("csrf", csrf.as_str()), ("person", &f.other_id), ("commune", "00004"), ("detail", "Số 3"), ("until", &until)];
    let r = b.post("/ui/residence/temporary", &ok, &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let listed = b.get(r.header("location").unwrap()).await;
    assert!(listed.body.contains("id=\"created\""), "{}", listed.body);
    let apps = s.store.applications(&dancu_store::ApplicationQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(apps.len(), 1);
    assert!(listed.body.contains(&format!("app-{}", apps[0].id)));
    // logging out ends the session
    let page = b.get("/ui").await;
    let r = b.submit(&page.body, "/ui/logout", &[]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/login")));
    assert_eq!(b.get("/ui").await.header("location"), Some("/ui/login"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn review_decided_edit_held_for_approval_and_audit_verified() {
    let s = start().await;
    let f = fixture(&s.store).await;
    let creds = add_officer(&s, "kiemtra", "commune:00004", &[Role::Collector, Role::Verifier], &[], false).await;
    let b = browser_login(&s, &creds).await;
    // the pair side by side: the middle name differs, the surname is the same
    let page = b.get(&format!("/ui/reviews/{}", f.review_id)).await;
    assert!(page.body.contains("class=\"different\"") && page.body.contains("class=\"same\""));
    let r = b.submit(&page.body, &format!("/ui/reviews/{}", f.review_id), &[("decision", "different")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let pair = s.store.review_pair_get(f.review_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(pair.state, dancu_store::ReviewState::Different);
    // a change of name waits for an approver
    let page = b.get(&format!("/ui/persons/{}/edit", f.person_key)).await;
    let version =
        s.store.get_person(&dancu_store::PersonRef::Key(f.person_key.parse().unwrap())).await.unwrap().unwrap().version;
    let v = version.to_string();
    let fields =
        [("version", v.as_str()), ("surname", "Nguyễn"), ("middle", "Thị"), ("given", "Minh"), ("reason", "cải chính")];
    let r = b.submit(&page.body, &format!("/ui/persons/{}/edit", f.person_key), &fields).await;
    assert_eq!(
        r.header("location"),
        Some(format!("/ui/persons/{}?notice=pending", f.person_key).as_str()),
        "{}",
        r.body
    );
    let reqs = s.store.change_requests(&dancu_store::RequestQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(reqs.len(), 1);
    // the auditor verifies the chain, which recorded those page views
    let auditor = add_officer(&s, "kiemtoan", "ministry", &[Role::Auditor], &[], true).await;
    let a = browser_login(&s, &auditor).await;
    assert_eq!(a.get("/ui/persons").await.status, 403, "an auditor does not search people");
    let page = a.get("/ui/audit").await;
    assert!(page.body.contains("review_pair.decide") && page.body.contains("person.update"));
    let r = a.submit(&page.body, "/ui/audit/verify", &[]).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Chuỗi nhật ký toàn vẹn"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approver_enrols_an_authenticator_from_the_qr_page() {
    use dancu_core::auth;
    let s = start().await;
    // an approver needs a second factor but has none yet
    let creds = add_officer(&s, "pheduyet", "province:01", &[Role::Approver], &[], false).await;
    let body = serde_urlencoded::to_string([("username", "pheduyet"), ("password", creds.password.as_str())]).unwrap();
    let r = call(s.addr, "POST", "/ui/login", &[FORM], Some(body.as_bytes())).await;
    let b = Browser { addr: s.addr, cookie: session_cookie(&r).unwrap() };
    let r = b.get("/ui/persons").await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui/totp")), "no page before enrolment");
    let page = b.get("/ui/totp").await;
    assert_eq!(page.status, 200);
    let shown = b.submit(&page.body, "/ui/totp", &[]).await;
    assert_eq!(shown.status, 200, "{}", shown.body);
    assert!(shown.body.contains("<svg"), "the QR code is shown");
    let at = shown.body.find("id=\"totp-secret\">").unwrap() + 17;
    let secret = &shown.body[at..at + shown.body[at..].find('<').unwrap()];
    let key = auth::base32_decode(secret).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let code = format!("{:06}", auth::totp_code(&key, now / auth::TOTP_STEP));
    let r = b.submit(&shown.body, "/ui/totp/confirm", &[("code", &code)]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/ui")), "{}", r.body);
    let b = Browser { addr: s.addr, cookie: session_cookie(&r).expect("a new session once enrolled") };
    let dash = b.get("/ui").await;
    assert_eq!(dash.status, 200);
    assert!(
        dash.body.contains("Lãnh đạo phê duyệt") && dash.body.contains("Công an Thành phố Hà Nội"),
        "unit and roles shown"
    );
    let officer = s.store.officer_get("pheduyet").await.unwrap().unwrap();
    assert!(officer.totp_secret.is_some() && officer.totp_pending.is_none());
}

/// A `multipart/form-data` body as a browser sends the upload form.
fn multipart(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----dancuTestBoundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes(),
        );
    }
    if let Some((name, data)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

impl Browser {
    async fn upload(&self, fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> Resp {
        let c = format!("dancu_session={}", self.cookie);
        let (ct, body) = multipart(fields, file);
        call(self.addr, "POST", "/ui/intake", &[("Content-Type", ct.as_str()), ("Cookie", c.as_str())], Some(&body))
            .await
    }
}

const BATCH_CSV: &str = "full_name,sex,birth_date,birth_registration_province,ethnicity
Trần Thị Bình,nữ,1975,01,01
Trần Thị Bình,nữ,1975,01,01
Lê Văn An,nam,31/02/1990,01,01
Phạm Văn Cường,x,1980,01,01
Đỗ Minh Châu,nam,1988,01,01
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn intake_uploads_are_checked_then_imported_in_the_background() {
    let s = start().await;
    let creds = add_officer(&s, "nhaplieu", "commune:00004", &[Role::Collector, Role::Verifier], &[], false).await;
    let b = browser_login(&s, &creds).await;
    let page = b.get("/ui/intake").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("enctype=\"multipart/form-data\"") && page.body.contains("value=\"commune:00004\""));
    let csrf = csrf_of(&page.body);
    let ok = [("csrf", csrf.as_str()), ("unit", "commune:00004")];
    // refused uploads, each with its reason in Vietnamese; nothing is imported
    let r = b.upload(&ok, Some(("trong.csv", b""))).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("Tệp: tệp rỗng"), "{}", r.body);
    let r = b.upload(&ok, Some(("danh-sach.pdf", b"%PDF-1.7 ..."))).await;
    assert_eq!(r.status, 415);
    assert!(r.body.contains("chỉ nhận tệp CSV (.csv) hoặc Excel (.xlsx)"), "{}", r.body);
    let r = b.upload(&ok, Some(("gia.xlsx", BATCH_CSV.as_bytes()))).await;
    assert_eq!(r.status, 415, "a text file named .xlsx is refused");
    let big = "a".repeat(support::INTAKE_MAX_BYTES + 1024);
    let r = b.upload(&ok, Some(("lon.csv", big.as_bytes()))).await;
    assert_eq!(r.status, 413);
    assert!(
        r.body.contains("Tệp quá lớn") && r.body.contains("0 MB") || r.body.contains("vượt quá giới hạn"),
        "{}",
        r.body
    );
    let r =
        b.upload(&[("csrf", csrf.as_str()), ("unit", "commune:26506")], Some(("a.csv", BATCH_CSV.as_bytes()))).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Đơn vị: ngoài địa bàn quản lý"), "{}", r.body);
    let r =
        b.upload(&[("csrf", csrf.as_str()), ("unit", "commune:00004")], Some(("a.csv", b"cot_la,khac\n1,2\n"))).await;
    assert_eq!(r.status, 422, "a header without the needed columns is refused before importing: {}", r.body);
    let r = b.upload(&[("unit", "commune:00004")], Some(("a.csv", BATCH_CSV.as_bytes()))).await;
    assert_eq!(r.status, 403, "no CSRF token");
    let plain = b.post("/ui/intake", &[("csrf", csrf.as_str())], &[]).await;
    assert_eq!(plain.status, 415, "not multipart");
    assert!(s.store.import_batches(10).await.unwrap().is_empty(), "nothing was imported");
    assert_eq!(s.store.count_persons().await.unwrap(), 0);
    // a good upload: the batch page shows progress, then the summary and the report
    let r = b.upload(&ok, Some(("lo-1.csv", BATCH_CSV.as_bytes()))).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let at = r.header("location").unwrap().to_string();
    assert!(at.starts_with("/ui/intake/"), "{at}");
    let mut page = b.get(&at).await;
    for _ in 0..200 {
        if page.body.contains("Đã nhập xong") {
            break;
        }
        assert_eq!(page.status, 200, "{}", page.body);
        assert!(page.body.contains("http-equiv=\"refresh\""), "a running batch's page reloads itself");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = b.get(&at).await;
    }
    assert!(page.body.contains("Đã nhập xong"), "{}", page.body);
    assert!(!page.body.contains("http-equiv=\"refresh\""));
    assert!(page.body.contains("id=\"rows-read\">5<"), "{}", page.body);
    assert!(page.body.contains("id=\"rows-rejected\">2<"), "{}", page.body);
    assert!(page.body.contains("id=\"new-people\">3<"), "{}", page.body);
    assert!(page.body.contains("ngày không hợp lệ (ngày/tháng/năm) (invalid_date): 1"), "{}", page.body);
    let report = b.get(&format!("{at}/report.csv")).await;
    assert_eq!(report.status, 200);
    assert!(report.header("content-type").unwrap().starts_with("text/csv"));
    assert!(report.header("content-disposition").unwrap().starts_with("attachment"));
    let lines: Vec<&str> = report.body.lines().collect();
    assert_eq!(lines[0].trim_start_matches('\u{feff}'), "line,kind,field,value,code,reason,message");
    assert!(
        lines.iter().any(|l| l.starts_with("4,rejected,birth_date,31/02/1990,")
            && l.contains("Trường birth_date: ngày không hợp lệ")),
        "{}",
        report.body
    );
    assert!(
        lines.iter().any(|l| l.starts_with("5,rejected,sex,x,") && l.contains("giới tính không hợp lệ")),
        "{}",
        report.body
    );
    // the upload file is gone once imported; the same file again is not applied twice
    let upload_files: Vec<_> = std::fs::read_dir(&s.intake_dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "upload"))
        .collect();
    assert!(upload_files.is_empty());
    let people = s.store.count_persons().await.unwrap();
    assert_eq!(people, 3);
    let again = b.upload(&ok, Some(("lo-1-lan-2.csv", BATCH_CSV.as_bytes()))).await;
    assert_eq!(again.header("location"), Some(format!("{at}?notice=already").as_str()));
    assert_eq!(s.store.count_persons().await.unwrap(), people);
    // the list shows the batch; the dashboard counts it
    let list = b.get("/ui/intake").await;
    assert!(list.body.contains(&at), "{}", list.body);
    let dash = b.get("/ui").await;
    assert!(dash.body.contains("id=\"batches-finished\">1<"), "{}", dash.body);
    // a batch the store holds unfinished and nobody runs here shows as interrupted
    let entry = dancu_core::audit::AuditEntry {
        at: dancu_server::audit::now_rfc3339(),
        officer: "nhaplieu".into(),
        role: "collector".into(),
        unit: "commune:00004".into(),
        action: "import.start".into(),
        target: None,
        purpose: None,
        request_id: None,
        client: None,
        outcome: "started".into(),
    };
    let stale = dancu_store::ImportBatch {
        id: "cd".repeat(32),
        unit: "commune:00004".into(),
        officer: "nhaplieu".into(),
        file_sha256: "cd".repeat(32),
        started_at: time::OffsetDateTime::now_utc(),
        finished_at: None,
        summary: None,
    };
    s.store.import_begin(&stale, &entry).await.unwrap();
    let r = b.get(&format!("/ui/intake/{}", stale.id)).await;
    assert!(r.body.contains("Bị gián đoạn") && !r.body.contains("http-equiv=\"refresh\""), "{}", r.body);
    // an interrupted batch resumes when its file is uploaded again, and finishes
    let second = "full_name,sex,birth_date,birth_registration_province,ethnicity\nVũ Thị Hoa,nữ,1990,01,01\n";
    let sha: String = {
        use sha2::Digest;
        sha2::Sha256::digest(second.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
    };
    let begun = dancu_store::ImportBatch { id: sha.clone(), file_sha256: sha.clone(), ..stale.clone() };
    s.store.import_begin(&begun, &entry).await.unwrap();
    assert!(b.get(&format!("/ui/intake/{sha}")).await.body.contains("Bị gián đoạn"));
    let r = b.upload(&ok, Some(("lo-2.csv", second.as_bytes()))).await;
    assert_eq!(r.header("location"), Some(format!("/ui/intake/{sha}").as_str()), "{}", r.body);
    let mut page = b.get(&format!("/ui/intake/{sha}")).await;
    for _ in 0..200 {
        if page.body.contains("Đã nhập xong") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        page = b.get(&format!("/ui/intake/{sha}")).await;
    }
    assert!(page.body.contains("id=\"new-people\">1<"), "{}", page.body);
    assert_eq!(s.store.count_persons().await.unwrap(), people + 1);
    // another commune's officer sees neither the batch nor its report
    let other = add_officer(&s, "xakhac", "commune:26506", &[Role::Collector], &[], false).await;
    let o = browser_login(&s, &other).await;
    assert_eq!(o.get(&at).await.status, 404);
    assert_eq!(o.get(&format!("{at}/report.csv")).await.status, 404);
    assert!(!o.get("/ui/intake").await.body.contains(&at));
    // a card operator has no intake pages; a verifier sees batches but cannot upload
    let card = add_officer(&s, "the", "commune:00004", &[Role::CardOperator], &[], false).await;
    assert_eq!(browser_login(&s, &card).await.get("/ui/intake").await.status, 403);
    let verifier = add_officer(&s, "kiemtra", "commune:00004", &[Role::Verifier], &[], false).await;
    let v = browser_login(&s, &verifier).await;
    let vp = v.get("/ui/intake").await;
    assert_eq!(vp.status, 200);
    assert!(!vp.body.contains("enctype=\"multipart/form-data\""), "no upload form for a verifier");
    assert_eq!(v.upload(&[("csrf", &csrf_of(&b.get("/ui/intake").await.body))], None).await.status, 403);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_requests_and_partners_pages_follow_the_api_rules() {
    let s = start().await;
    let f = fixture(&s.store).await;
    // a collector's name edit waits for approval and shows on the person's page
    let maker = add_officer(&s, "thuthap", "commune:00004", &[Role::Collector], &[], false).await;
    let m = browser_login(&s, &maker).await;
    let edit = m.get(&format!("/ui/persons/{}/edit", f.person_key)).await;
    let version = s
        .store
        .get_person(&dancu_store::PersonRef::Key(f.person_key.parse().unwrap()))
        .await
        .unwrap()
        .unwrap()
        .version
        .to_string();
    let r = m
        .submit(
            &edit.body,
            &format!("/ui/persons/{}/edit", f.person_key),
            &[
                ("version", &version),
                ("surname", "Nguyễn"),
                ("middle", "Thị"),
                ("given", "Bích"),
                ("reason", "cải chính theo giấy khai sinh"),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let person = m.get(&format!("/ui/persons/{}", f.person_key)).await;
    assert!(person.body.contains("id=\"pending-requests\""), "{}", person.body);
    let list = m.get("/ui/requests").await;
    assert_eq!(list.status, 200);
    let at = list.body.find("href=\"/ui/requests/").expect("the request is listed") + 6;
    let path = list.body[at..].split('"').next().unwrap().to_string();
    let own = m.get(&path).await;
    assert!(own.body.contains("id=\"own-request\"") && own.body.contains("Bích"), "{}", own.body);
    // the maker cannot approve their own request
    let r = m.submit(&own.body, &path, &[("decision", "approve")]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("Bạn không được quyết định yêu cầu này"), "{}", r.body);
    // an approver of another province sees nothing of it
    let far = add_officer(&s, "lanhdao.xa", "province:79", &[Role::Approver], &[], true).await;
    assert_eq!(browser_login(&s, &far).await.get(&path).await.status, 404);
    // the approver: a rejection needs a note; an approval applies the change, naming both officers
    let checker = add_officer(&s, "lanhdao.tinh", "province:01", &[Role::Approver], &[], true).await;
    let c = browser_login(&s, &checker).await;
    let page = c.get(&path).await;
    assert!(page.body.contains("id=\"decide\"") && page.body.contains("thuthap"), "{}", page.body);
    let r = c.submit(&page.body, &path, &[("decision", "reject")]).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Ghi chú: bắt buộc nhập lý do khi từ chối"), "{}", r.body);
    let r = c.submit(&page.body, &path, &[("decision", "approve")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let done = c.get(&path).await;
    assert!(done.body.contains("đã phê duyệt") && done.body.contains("id=\"checker\">lanhdao.tinh<"), "{}", done.body);
    let rec = s.store.get_person(&dancu_store::PersonRef::Key(f.person_key.parse().unwrap())).await.unwrap().unwrap();
    assert_eq!(rec.person.record.name.given, "Bích");

    // partners: only partner administrators of the ministry
    assert_eq!(m.get("/ui/partners").await.status, 403);
    let padmin_far = add_officer(&s, "doitac.tinh", "province:01", &[Role::PartnerAdministrator], &[], true).await;
    assert_eq!(browser_login(&s, &padmin_far).await.get("/ui/partners").await.status, 403);
    let padmin = add_officer(&s, "doitac", "ministry", &[Role::PartnerAdministrator], &[], true).await;
    let p = browser_login(&s, &padmin).await;
    let page = p.get("/ui/partners").await;
    assert_eq!(page.status, 200);
    let key = dancu_keys::SoftwareKey::generate().unwrap();
    let pem = dancu_keys::PublicKey::from_spki_der(dancu_keys::Signer::public_key_der(&key)).unwrap().to_pem();
    let fields = |id: &'static str, pem: &str| -> Vec<(String, String)> {
        vec![
            ("id".into(), id.into()),
            ("name".into(), "Cổng dịch vụ công tỉnh".into()),
            ("kind".into(), "portal".into()),
            ("legal_basis".into(), "Nghị định 59/2022/NĐ-CP".into()),
            ("services".into(), "verify".into()),
            ("fields".into(), "full_name".into()),
            ("rate_limit_per_second".into(), "20".into()),
            ("valid_until".into(), "2030-12-31".into()),
            ("public_key_pem".into(), pem.into()),
            ("redirect_uris".into(), "https://dichvucong.example/callback".into()),
            ("auth_method".into(), "client_secret_basic".into()),
            ("subject_type".into(), "pairwise".into()),
        ]
    };
    let as_refs = |v: &Vec<(String, String)>| -> Vec<(String, String)> { v.clone() };
    let bad = as_refs(&fields("cong-dvc", "not a key"));
    let bad: Vec<(&str, &str)> = bad.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = p.submit(&page.body, "/ui/partners", &bad).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("khóa công khai phải là khóa P-256"), "{}", r.body);
    assert!(s.store.partner_list().await.unwrap().is_empty());
    let good = fields("cong-dvc", &pem);
    let good: Vec<(&str, &str)> = good.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let r = p.submit(&page.body, "/ui/partners", &good).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let at = r.body.find("id=\"client-secret\">").expect("the secret is shown once") + 18;
    let secret = r.body[at..].split('<').next().unwrap().to_string();
    assert!(secret.len() >= 32, "{secret}");
    let view = p.get("/ui/partners/cong-dvc").await;
    assert_eq!(view.status, 200);
    assert!(!view.body.contains(&secret), "never shown again");
    assert!(view.body.contains("Xác thực thông tin"));
    let r = p.submit(&view.body, "/ui/partners/cong-dvc/status", &[("status", "suspended"), ("reason", "")]).await;
    assert_eq!(r.status, 422);
    let r = p
        .submit(
            &view.body,
            "/ui/partners/cong-dvc/status",
            &[("status", "suspended"), ("reason", "vi phạm thỏa thuận")],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(p.get("/ui/partners/cong-dvc").await.body.contains("tạm dừng"));
    let again = p.submit(&page.body, "/ui/partners", &good).await;
    assert_eq!(again.status, 409, "the id is taken: {}", again.body);
    assert!(again.body.contains("mã đối tác đã được dùng"), "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_viewer_filters_by_officer_person_and_time() {
    let s = start().await;
    let f = fixture(&s.store).await;
    let auditor = add_officer(&s, "kiemtoan", "ministry", &[Role::Auditor, Role::Collector], &[], true).await;
    let a = browser_login(&s, &auditor).await;
    a.get(&format!("/ui/persons/{}", f.person_key)).await;
    let today = time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap()).date();
    let r = a.get(&format!("/ui/audit?officer=kiemtoan&person={}&from={today}&to={today}", f.person_key)).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("person.read"), "{}", r.body);
    let r = a.get(&format!("/ui/audit?person={}&from=2001-01-01&to=2001-01-02", f.person_key)).await;
    assert!(!r.body.contains("person.read"), "nothing then");
    let r = a.get("/ui/audit?from=31-12-2026").await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("from: ngày không hợp lệ"), "{}", r.body);
}
