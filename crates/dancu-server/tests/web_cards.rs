//! The identity-card screens of the web application over real HTTP, as a browser sends them:
//! the intake form (multipart, with its Vietnamese errors: no kind, no photo, not a JPEG, a
//! child without request, an open application), the workflow steps by role (the verifier may
//! not approve), the production run and the out-of-stock alert, the chip files downloaded and
//! verified on the verification page — and a tampered DG1 named as the check that failed.

mod support;

use dancu_core::PartialDate;
use dancu_core::auth::Role;
use dancu_store::cards::CardApplicationQuery;
use dancu_store::conformance::FACE_JPEG;
use dancu_store::registry::Registry;
use dancu_store::{ChangeMeta, PersonRef};
use support::{Creds, Resp, Server, add_officer, call, start};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const BOUNDARY: &str = "----dancuTestBoundary7MA4YWxk";

struct Browser {
    addr: std::net::SocketAddr,
    cookie: String,
}

fn session_cookie(r: &Resp) -> Option<String> {
    let v = r.header("set-cookie")?;
    Some(v.strip_prefix("dancu_session=")?.split(';').next()?.to_string())
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page[at..at + 32].to_string()
}

/// A `multipart/form-data` body: text fields (no file name) and files.
fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> Vec<u8> {
    let mut b = Vec::new();
    for (name, file, data) in fields {
        b.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        match file {
            Some(f) => b.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: \
                     application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => b.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
        }
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    b
}

impl Browser {
    async fn get(&self, path: &str) -> Resp {
        let c = format!("dancu_session={}", self.cookie);
        call(self.addr, "GET", path, &[("Cookie", c.as_str())], None).await
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let c = format!("dancu_session={}", self.cookie);
        let body = serde_urlencoded::to_string(fields).unwrap();
        call(self.addr, "POST", path, &[FORM, ("Cookie", c.as_str())], Some(body.as_bytes())).await
    }

    /// Posts a multipart form of `page` (its CSRF token added first).
    async fn upload(&self, page: &str, path: &str, fields: &[(&str, Option<&str>, &[u8])]) -> Resp {
        let csrf = csrf_of(page);
        let mut all: Vec<(&str, Option<&str>, &[u8])> = vec![("csrf", None, csrf.as_bytes())];
        all.extend_from_slice(fields);
        let c = format!("dancu_session={}", self.cookie);
        let ct = format!("multipart/form-data; boundary={BOUNDARY}");
        let h = [("Content-Type", ct.as_str()), ("Cookie", c.as_str())];
        call(self.addr, "POST", path, &h, Some(&multipart(&all))).await
    }

    /// Posts a URL-encoded form of `page` (its CSRF token added).
    async fn submit(&self, page: &str, path: &str, fields: &[(&str, &str)]) -> Resp {
        let csrf = csrf_of(page);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }
}

async fn browser_login(s: &Server, c: &Creds) -> Browser {
    let body =
        serde_urlencoded::to_string([("username", c.username.as_str()), ("password", c.password.as_str())]).unwrap();
    let r = call(s.addr, "POST", "/ui/login", &[FORM], Some(body.as_bytes())).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let mut b = Browser { addr: s.addr, cookie: session_cookie(&r).unwrap() };
    if c.secret.is_some() {
        let page = b.get("/ui/mfa").await;
        let r = b.submit(&page.body, "/ui/mfa", &[("code", &c.next_code())]).await;
        assert_eq!(r.status, 303, "{}", r.body);
        b.cookie = session_cookie(&r).unwrap();
    }
    b
}

/// The text of a page with its markup removed (for messages that span elements).
fn text(html: &str) -> String {
    let mut out = String::new();
    let mut tag = false;
    for c in html.chars() {
        match c {
            '<' => tag = true,
            '>' => tag = false,
            c if !tag => out.push(c),
            _ => {}
        }
    }
    out
}

/// The test portrait grown to the largest photo the chip takes (a comment segment of padding
/// after the start marker): the pages must stay under 200 KB with it.
fn largest_photo() -> Vec<u8> {
    let pad = dancu_card::photo::MAX_PHOTO_BYTES - FACE_JPEG.len() - 4;
    let mut jpeg = FACE_JPEG[..2].to_vec();
    jpeg.extend_from_slice(&[0xFF, 0xFE]);
    jpeg.extend_from_slice(&((pad + 2) as u16).to_be_bytes());
    jpeg.resize(jpeg.len() + pad, b' ');
    jpeg.extend_from_slice(&FACE_JPEG[2..]);
    assert_eq!(jpeg.len(), dancu_card::photo::MAX_PHOTO_BYTES);
    jpeg
}

fn check_row<'a>(page: &'a str, check: &str) -> &'a str {
    let at = page.find(&format!("data-check=\"{check}\"")).unwrap_or_else(|| panic!("no row {check}: {page}"));
    let start = page[..at].rfind("<tr").unwrap();
    let end = at + page[at..].find("</tr>").unwrap();
    &page[start..end]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_card_from_intake_to_verified_chip_data() {
    let s = start().await;
    let reg = Registry::new(s.store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(dancu_store::conformance::sample(1), &meta).await.unwrap(); // commune 00004
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    let mut child = dancu_store::conformance::sample(4);
    child.birth_date = PartialDate::Year(dancu_store::registry::today().year() - 10);
    let child = reg.create(child, &meta).await.unwrap();
    let child = reg.activate(child.key, None, &meta).await.unwrap();
    let centre = dancu_store::cards::Centre { id: "tt-1".into(), name: "Trung tâm thử".into(), stock: 1 };
    reg.centre_add(&centre, None).await.unwrap();

    let commune = "commune:00004";
    let op = browser_login(&s, &add_officer(&s, "tn.op", commune, &[Role::CardOperator], &[], false).await).await;
    let both = &[Role::Verifier, Role::Approver];
    let lan = browser_login(&s, &add_officer(&s, "lan", commune, both, &[], true).await).await;
    let minh = browser_login(&s, &add_officer(&s, "minh", "province:01", &[Role::Approver], &[], true).await).await;
    let sx = browser_login(&s, &add_officer(&s, "sx", "ministry", &[Role::ProductionOperator], &[], false).await).await;

    // The person's page leads to the intake form, which may run its photo preview script.
    let person = op.get(&format!("/ui/persons/{}", rec.key)).await;
    assert!(person.body.contains("Làm thủ tục cấp CCCD"), "{}", person.body);
    let intake_path = format!("/ui/persons/{}/card-application", rec.key);
    let form = op.get(&intake_path).await;
    assert_eq!(form.status, 200);
    assert!(form.header("content-security-policy").unwrap().contains("script-src 'self'"));
    assert!(form.body.contains("id=\"photo-preview\"") && form.body.contains("/ui/assets/cards.js"));
    let js = call(s.addr, "GET", "/ui/assets/cards.js", &[] as &[(&str, &str)], None).await;
    assert_eq!(js.status, 200);
    assert!(js.body.contains("readAsDataURL"));

    // Form errors, in Vietnamese, next to their fields; nothing taken.
    let r = op.upload(&form.body, &intake_path, &[("kind", None, b"")]).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("id=\"kind-error\"") && r.body.contains("Loại thủ tục: bắt buộc chọn."), "{}", r.body);
    assert!(r.body.contains("id=\"photo-error\"") && r.body.contains("Ảnh chân dung: bắt buộc tải lên."));
    let r = op
        .upload(&form.body, &intake_path, &[("kind", None, b"replacement"), ("photo", Some("a.jpg"), FACE_JPEG)])
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Lý do cấp đổi: chọn một lý do."), "{}", r.body);
    let gif: &[u8] = b"GIF89a not a JPEG at all";
    let r = op.upload(&form.body, &intake_path, &[("kind", None, b"first_issue"), ("photo", Some("a.gif"), gif)]).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Ảnh chân dung: không phải tệp ảnh JPEG"), "{}", r.body);
    let cut = &FACE_JPEG[..FACE_JPEG.len() - 100];
    let fields = [
        ("kind", None, &b"first_issue"[..]),
        ("photo", Some("a.jpg"), FACE_JPEG),
        ("fingerprints", Some("f.jpg"), cut),
    ];
    let r = op.upload(&form.body, &intake_path, &fields).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Ảnh vân tay: tệp JPEG bị hỏng hoặc không đầy đủ"), "{}", r.body);
    let child_path = format!("/ui/persons/{}/card-application", child.key);
    let r = op
        .upload(&form.body, &child_path, &[("kind", None, b"first_issue"), ("photo", Some("a.jpg"), FACE_JPEG)])
        .await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("chưa đủ 14 tuổi"), "{}", r.body);
    let none = s.store.card_applications(&CardApplicationQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert!(none.is_empty(), "nothing was taken: {none:?}");
    // Without the session's token: refused.
    let c = format!("dancu_session={}", op.cookie);
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let body = multipart(&[("kind", None, b"first_issue"), ("photo", Some("a.jpg"), FACE_JPEG)]);
    let r =
        call(s.addr, "POST", &intake_path, &[("Content-Type", ct.as_str()), ("Cookie", c.as_str())], Some(&body)).await;
    assert_eq!(r.status, 403);

    // Taken; a second application while it is open is refused.
    let photo = largest_photo();
    let fields = [
        ("kind", None, &b"first_issue"[..]),
        ("photo", Some("face.jpg"), photo.as_slice()),
        ("fingerprints", Some("f.jpg"), FACE_JPEG),
    ];
    let r = op.upload(&form.body, &intake_path, &fields).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let to = r.header("location").unwrap().to_string();
    assert!(to.starts_with("/ui/cards/applications/") && to.ends_with("?notice=created"), "{to}");
    let app_path = to.split('?').next().unwrap().to_string();
    let again = op.upload(&form.body, &intake_path, &fields).await;
    assert_eq!(again.status, 409);
    assert!(again.body.contains("đã có hồ sơ cấp thẻ đang xử lý"), "{}", again.body);

    // The board shows it as received; the card operator may only cancel it there.
    let board = op.get("/ui/cards").await;
    assert_eq!(board.status, 200);
    let page = op.get(&app_path).await;
    assert!(page.body.contains("Đã tiếp nhận") && page.body.contains("Hủy hồ sơ"), "it may cancel");
    assert!(!page.body.contains("Xác minh hồ sơ"), "verifying is for verifiers");

    // Verified by lan, who then may not approve it (the page says so; the API refuses it).
    let page = lan.get(&app_path).await;
    let r = lan.submit(&page.body, &format!("{app_path}/steps"), &[("to", "verified")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = lan.get(&app_path).await;
    assert!(page.body.contains("id=\"same-officer\""), "{}", page.body);
    let r = lan.submit(&page.body, &format!("{app_path}/steps"), &[("to", "approved")]).await;
    assert_eq!(r.status, 403);
    assert!(r.body.contains("Người đã xác minh hồ sơ không được phê duyệt"), "{}", r.body);
    let page = minh.get(&app_path).await;
    let r = minh.submit(&page.body, &format!("{app_path}/steps"), &[("to", "approved")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    // Queued by the card operator, at a centre (none chosen: refused).
    let page = op.get(&app_path).await;
    assert!(page.body.contains("Chuyển sản xuất"), "{}", page.body);
    let r = op.submit(&page.body, &format!("{app_path}/steps"), &[("to", "queued")]).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Trung tâm sản xuất: bắt buộc chọn."), "{}", r.body);
    let r = op.submit(&page.body, &format!("{app_path}/steps"), &[("to", "queued"), ("centre", "tt-1")]).await;
    assert_eq!(r.status, 303, "{}", r.body);

    // The production centre: the queue, the run, then the stock is out and the alert shows.
    let prod = sx.get("/ui/production").await;
    assert_eq!(prod.status, 200);
    let number = s.store.card_applications(&CardApplicationQuery { limit: 10, ..Default::default() }).await.unwrap()[0]
        .number
        .clone();
    assert!(prod.body.contains(&number), "the queue lists the application");
    assert!(!prod.body.contains("HẾT PHÔI THẺ"));
    let r = sx.submit(&prod.body, "/ui/production/tt-1/run", &[("max", "10")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(r.header("location").unwrap().starts_with("/ui/production?made=1&stopped=false"));
    let prod = sx.get("/ui/production").await;
    assert!(prod.body.contains("HẾT PHÔI THẺ"), "stock 0: the alert shows");
    let r = sx.submit(&prod.body, "/ui/production/tt-1/restock", &[("cards", "0")]).await;
    assert_eq!(r.status, 422);
    let dash = sx.get("/ui").await;
    assert!(dash.body.contains("id=\"card-dashboard\"") && dash.body.contains("Hết phôi thẻ!"), "{}", dash.body);

    // The card: its faces for the card operator, its chip files for production.
    let serial = s.store.cards_of(rec.key).await.unwrap()[0].serial.clone();
    let page = op.get(&format!("/ui/cards/{serial}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("CĂN CƯỚC") && page.body.contains("Mặt sau"), "both faces are shown");
    assert!(page.body.len() < 200 * 1024, "{} bytes", page.body.len());
    assert!(!page.body.contains("/chip/dg1.bin"), "chip files are for production operators");
    assert_eq!(op.get(&format!("/ui/cards/{serial}/chip/dg1.bin")).await.status, 403);
    let page = sx.get(&format!("/ui/cards/{serial}")).await;
    assert!(page.body.contains(&format!("/ui/cards/{serial}/chip/ef_sod.bin")));
    let mut files = Vec::new();
    for name in ["ef_com.bin", "dg1.bin", "dg2.bin", "dg13.bin", "ef_sod.bin"] {
        let r = sx.get(&format!("/ui/cards/{serial}/chip/{name}")).await;
        assert_eq!(r.status, 200);
        assert!(r.header("content-disposition").unwrap().contains(name));
        files.push((format!("card-{serial}/{name}"), r.bytes));
    }
    assert_eq!(sx.get(&format!("/ui/cards/{serial}/chip/dg99.bin")).await.status, 404);

    // Verified: every check passes.
    let vpage = sx.get("/ui/cards/verify").await;
    assert!(vpage.body.contains("webkitdirectory"));
    let upload: Vec<(&str, Option<&str>, &[u8])> =
        files.iter().map(|(n, b)| ("files", Some(n.as_str()), b.as_slice())).collect();
    let r = sx.upload(&vpage.body, "/ui/cards/verify", &upload).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Thẻ hợp lệ"), "{}", r.body);
    assert!(!r.body.contains("check-fail"), "{}", r.body);
    for check in [
        "SignerInfo signature",
        "DS certificate chains to the CSCA and is valid",
        "DS certificate not revoked (the CSCA's current CRL)",
        "DG1 hash",
        "DG2 hash",
        "DG13 hash",
        "MRZ check digits",
    ] {
        assert!(check_row(&r.body, check).contains("check-ok"), "{check}");
    }
    // A tampered DG1 (one letter of the MRZ changed): its hash check names the change; the
    // signature over EF.SOD still verifies.
    let mut tampered = files.clone();
    let dg1 = &mut tampered[1].1;
    let at = dg1.len() - 5;
    dg1[at] = if dg1[at] == b'A' { b'B' } else { b'A' };
    let upload: Vec<(&str, Option<&str>, &[u8])> =
        tampered.iter().map(|(n, b)| ("files", Some(n.as_str()), b.as_slice())).collect();
    let r = sx.upload(&vpage.body, "/ui/cards/verify", &upload).await;
    assert_eq!(r.status, 200);
    assert!(r.body.contains("Thẻ KHÔNG hợp lệ"), "{}", r.body);
    let row = check_row(&r.body, "DG1 hash");
    assert!(row.contains("check-fail") && text(row).contains("tệp đã bị thay đổi"), "{row}");
    assert!(check_row(&r.body, "SignerInfo signature").contains("check-ok"));
    assert!(check_row(&r.body, "DG2 hash").contains("check-ok"));
    // No EF.SOD: the form again, with the reason.
    let upload: Vec<(&str, Option<&str>, &[u8])> =
        files[..4].iter().map(|(n, b)| ("files", Some(n.as_str()), b.as_slice())).collect();
    let r = sx.upload(&vpage.body, "/ui/cards/verify", &upload).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Thiếu tệp ef_sod.bin"), "{}", r.body);

    // Every card page under 200 KB, with the largest photo the chip takes.
    let pages = [
        (&op, intake_path.clone()),
        (&op, "/ui/cards".to_string()),
        (&op, app_path.clone()),
        (&op, format!("/ui/cards/{serial}")),
        (&sx, format!("/ui/cards/{serial}")),
        (&sx, "/ui/production".to_string()),
        (&sx, "/ui/cards/verify".to_string()),
        (&sx, "/ui".to_string()),
    ];
    for (b, path) in pages {
        let r = b.get(&path).await;
        assert_eq!(r.status, 200, "{path}");
        eprintln!("page size {path}: {} bytes", r.body.len());
        assert!(r.body.len() < 200 * 1024, "{path} is {} bytes", r.body.len());
    }

    // The application reads personalized, with its card.
    let page = op.get(&app_path).await;
    assert!(page.body.contains("Đã in thẻ") && page.body.contains(&serial), "{}", page.body);
    let card = s.store.card_get(&serial).await.unwrap().unwrap();
    assert_eq!(card.person_key, rec.key);
    assert!(s.store.get_person(&PersonRef::Key(rec.key)).await.unwrap().is_some());
}
