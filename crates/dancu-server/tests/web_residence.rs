//! The residence screens over real HTTP, as a browser uses them: every procedure's form refuses
//! bad input with a Vietnamese message next to the field (422) — its own reading of the form and
//! the registry's rules alike; a permanent registration filed from its form, received, refused
//! without a reason, approved, and its confirmation printed (HTML and PDF); an address review
//! resolved by picking one of the candidate 2025 communes.

mod support;

use dancu_core::auth::Role;
use dancu_store::registry::Registry;
use dancu_store::{ChangeMeta, Store};
use support::{Creds, Resp, Server, add_officer, call};

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");

struct Browser {
    addr: std::net::SocketAddr,
    cookie: String,
}

fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form with a CSRF token") + 19;
    page[at..at + 32].to_string()
}

impl Browser {
    async fn login(s: &Server, c: &Creds) -> Browser {
        let body = serde_urlencoded::to_string([("username", c.username.as_str()), ("password", c.password.as_str())])
            .unwrap();
        let r = call(s.addr, "POST", "/ui/login", &[FORM], Some(body.as_bytes())).await;
        assert_eq!(r.status, 303, "{}", r.body);
        let v = r.header("set-cookie").unwrap();
        let cookie = v.strip_prefix("dancu_session=").unwrap().split(';').next().unwrap().to_string();
        let b = Browser { addr: s.addr, cookie };
        assert_eq!(b.get("/ui").await.status, 200);
        b
    }

    async fn get(&self, path: &str) -> Resp {
        let c = format!("dancu_session={}", self.cookie);
        call(self.addr, "GET", path, &[("Cookie", c.as_str())], None).await
    }

    /// Posts `fields` with the CSRF token of the form on `page`.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Resp {
        let page = self.get("/ui").await;
        let csrf = csrf_of(&page.body);
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        let c = format!("dancu_session={}", self.cookie);
        let body = serde_urlencoded::to_string(&all).unwrap();
        call(self.addr, "POST", path, &[FORM, ("Cookie", c.as_str())], Some(body.as_bytes())).await
    }
}

fn day(days: i64) -> String {
    dancu_core::date::iso_date::format(dancu_store::registry::today() + time::Duration::days(days))
}

/// An active person of commune 00004 (`permanent`: with a permanent residence there).
async fn person(store: &std::sync::Arc<dyn Store>, i: u32, permanent: bool) -> (String, String) {
    let reg = Registry::new(store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let mut input = dancu_store::conformance::sample(i);
    if !permanent {
        input.permanent_residence = None;
        input.current_residence = Some(dancu_core::person::Address {
            scheme: dancu_core::reference::Scheme::Y2025,
            commune_code: "00004".into(),
            detail: Some("Số 5".into()),
        });
    }
    let rec = reg.create(input, &meta).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    (rec.key.to_string(), rec.person.personal_id.unwrap().to_string())
}

/// Posts a form and checks the refusal: 422, the form again, each message in Vietnamese.
async fn refused(b: &Browser, path: &str, fields: &[(&str, &str)], messages: &[&str]) {
    let r = b.post(path, fields).await;
    assert_eq!(r.status, 422, "{path}: {}", r.body);
    assert!(r.body.contains("class=\"errors\""), "{path}");
    for m in messages {
        assert!(r.body.contains(m), "{path}: «{m}» missing from {}", r.body);
    }
    assert!(r.body.contains("class=\"error\" id="), "{path}: a message next to its field");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_procedure_form_refuses_in_vietnamese_next_to_the_field() {
    let s = support::start().await;
    let (_, pid) = person(&s.store, 1, true).await;
    let creds = add_officer(&s, "xa", "commune:00004", &[Role::Collector, Role::Verifier], &[], false).await;
    let b = Browser::login(&s, &creds).await;
    let index = b.get("/ui/residence/new").await;
    assert_eq!(index.status, 200);
    for k in dancu_core::residence::ProcedureKind::ALL {
        assert!(index.body.contains(k.vietnamese()), "{k:?} offered");
        let path = if k == dancu_core::residence::ProcedureKind::TemporaryRegistration {
            "/ui/residence/temporary".to_string()
        } else {
            format!("/ui/residence/new/{}", k.code())
        };
        let page = b.get(&path).await;
        assert_eq!(page.status, 200, "{path}");
        assert!(page.body.len() < 200 * 1024, "{path} is {} bytes", page.body.len());
        assert!(page.body.contains(&format!("action=\"{path}\"")), "{path}");
        // an empty form: the first required item, named
        let r = b.post(&path, &[]).await;
        assert_eq!(r.status, 422, "{path}");
        assert!(r.body.contains(": bắt buộc nhập."), "{path}: {}", r.body);
    }
    assert_eq!(b.get("/ui/residence/new/no_such_thing").await.status, 404);

    // what the form cannot read
    refused(
        &b,
        "/ui/residence/new/permanent_registration",
        &[("person", "12345"), ("commune", "99999"), ("detail", "Số 1"), ("household_mode", "new")],
        &["Số định danh cá nhân phải gồm 12 chữ số hợp lệ", "Mã xã/phường không có trong danh mục năm 2025"],
    )
    .await;
    refused(
        &b,
        "/ui/residence/new/stay_notification",
        &[
            ("person", &pid),
            ("commune", "00004"),
            ("detail", "Nhà nghỉ"),
            ("arrived_at", "hôm nay"),
            ("until", &day(2)),
        ],
        &["Thời điểm đến: thời điểm không hợp lệ"],
    )
    .await;
    refused(
        &b,
        "/ui/residence/new/household_separation",
        &[("household", "x"), ("members", "001\n"), ("new_head", &pid), ("relationships", &format!("{pid}, cháu rể"))],
        &["Người tách hộ phải gồm 12 chữ số hợp lệ (001)", "không hiểu quan hệ «cháu rể»"],
    )
    .await;
    // the registry's rules, worded in Vietnamese
    refused(
        &b,
        "/ui/residence/new/permanent_registration",
        &[("person", &pid), ("commune", "00004"), ("detail", "Số 1"), ("household_mode", "new")],
        &["Cần ý kiến đồng ý bằng văn bản của chủ hộ hoặc chủ sở hữu chỗ ở"],
    )
    .await;
    refused(
        &b,
        "/ui/residence/new/temporary_renewal",
        &[("person", &pid), ("until", &day(-1))],
        &["Ngày hết hạn tạm trú phải sau hôm nay."],
    )
    .await;
    let now = time::OffsetDateTime::now_utc().to_offset(dancu_core::residence::vietnam_offset());
    let arrived = format!("{}T{:02}:{:02}", dancu_core::date::iso_date::format(now.date()), now.hour(), now.minute());
    refused(
        &b,
        "/ui/residence/new/stay_notification",
        &[
            ("person", &pid),
            ("commune", "00004"),
            ("detail", "Nhà nghỉ"),
            ("arrived_at", &arrived),
            ("until", &day(40)),
        ],
        &["Lưu trú từ 30 ngày trở lên phải đăng ký tạm trú."],
    )
    .await;
    refused(
        &b,
        "/ui/residence/new/temporary_absence",
        &[("person", &pid), ("case", "bail_or_probation"), ("from", &day(0)), ("destination", "Đà Nẵng")],
        &["Quyết định/bản án: bắt buộc nhập."],
    )
    .await;
    let unknown = uuid::Uuid::new_v4().to_string();
    refused(
        &b,
        "/ui/residence/new/household_separation",
        &[("household", &unknown), ("members", &pid), ("new_head", &pid), ("divorced_spouse", "true")],
        &["Không tìm thấy hộ gia đình với mã này."],
    )
    .await;
    refused(
        &b,
        "/ui/residence/new/head_change",
        &[("household", &unknown), ("new_head", &pid)],
        &["Không tìm thấy hộ gia đình với mã này."],
    )
    .await;
    refused(
        &b,
        "/ui/residence/new/civil_status_update",
        &[("person", &pid), ("document", "TL-1"), ("registered_on", &day(-3))],
        &["Nội dung thay đổi: ghi ít nhất một thông tin"],
    )
    .await;
    refused(
        &b,
        "/ui/residence/new/permanent_deletion",
        &[("person", &pid), ("cause", "settled_abroad"), ("effective", &day(3))],
        &["Ngày chấm dứt không được sau hôm nay."],
    )
    .await;
    refused(
        &b,
        "/ui/residence/new/temporary_deletion",
        &[("person", &pid), ("cause", "absent_six_months"), ("effective", &day(1))],
        &["Ngày chấm dứt không được sau hôm nay."],
    )
    .await;
    let apps = s.store.applications(&dancu_store::ApplicationQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert!(apps.is_empty(), "nothing was filed");
    // English on request: the rule's own reason
    let r = b.post("/ui/residence/new/temporary_renewal?lang=en", &[("person", "1")]).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Personal ID must be 12 valid digits"), "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_registration_is_received_approved_and_printed() {
    let s = support::start().await;
    let (key, pid) = person(&s.store, 5, false).await;
    let creds = add_officer(&s, "xa", "commune:00004", &[Role::Collector, Role::Verifier], &[], false).await;
    let b = Browser::login(&s, &creds).await;
    let clerk = add_officer(&s, "doc", "commune:00004", &[Role::CardOperator], &[], false).await;
    let reader = Browser::login(&s, &clerk).await;
    let fields = [
        ("person", pid.as_str()),
        ("commune", "00004"),
        ("detail", "Số 5 phố Thử"),
        ("household_mode", "new"),
        ("own_home", "true"),
    ];
    let r = b.post("/ui/residence/new/permanent_registration", &fields).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let listed = b.get(r.header("location").unwrap()).await;
    assert!(listed.body.contains("id=\"created\""));
    let id = s.store.applications(&dancu_store::ApplicationQuery { limit: 10, ..Default::default() }).await.unwrap()[0]
        .id
        .to_string();
    let page = b.get(&format!("/ui/residence/applications/{id}")).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Đăng ký thường trú") && page.body.contains("chờ tiếp nhận"));
    assert!(page.body.contains("Tiếp nhận hồ sơ"), "a collector may receive it");
    // a card operator reads it, with no step to take
    let seen = reader.get(&format!("/ui/residence/applications/{id}")).await;
    assert_eq!(seen.status, 200);
    assert!(!seen.body.contains("Tiếp nhận hồ sơ"));
    let r = b.post(&format!("/ui/residence/applications/{id}/receive"), &[]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(r.header("location").unwrap()).await;
    assert!(page.body.contains("đã tiếp nhận") && page.body.contains("Phê duyệt"));
    // a rejection needs a reason, next to the reason field
    let r = b.post(&format!("/ui/residence/applications/{id}/decision"), &[("decision", "reject")]).await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.body.contains("Lý do: bắt buộc nhập khi từ chối hồ sơ."), "{}", r.body);
    let r = b.post(&format!("/ui/residence/applications/{id}/decision"), &[("decision", "approve")]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let page = b.get(r.header("location").unwrap()).await;
    assert!(page.body.contains("đã duyệt"));
    let pdf_link = format!("/api/v1/persons/{key}/residence-confirmation.pdf");
    assert!(page.body.contains(&pdf_link) && page.body.contains("id=\"print-confirmation\""));
    let pdf = b.get(&pdf_link).await;
    assert_eq!((pdf.status, pdf.header("content-type")), (200, Some("application/pdf")));
    let html = b.get(&format!("/api/v1/persons/{key}/residence-confirmation")).await;
    assert_eq!(html.status, 200);
    assert!(html.body.contains("XÁC NHẬN THÔNG TIN VỀ CƯ TRÚ"));
    // the person's page links the confirmation too
    let person = b.get(&format!("/ui/persons/{key}")).await;
    assert!(person.body.contains(&pdf_link));
    // the card operator may not print
    assert!(!reader.get(&format!("/ui/residence/applications/{id}")).await.body.contains(&pdf_link));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_review_is_resolved_by_picking_a_candidate_commune() {
    use dancu_core::reference;
    let s = support::start().await;
    let (old, candidates) = reference::conversions()
        .iter()
        .find_map(|c| {
            let mut t: Vec<String> =
                reference::conversions_from(&c.old_commune_code).iter().map(|r| r.new_commune_code.clone()).collect();
            t.sort();
            t.dedup();
            (t.len() >= 2).then(|| (c.old_commune_code.clone(), t))
        })
        .unwrap();
    let reg = Registry::new(s.store.clone());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let mut input = dancu_store::conformance::sample(2);
    input.permanent_residence = Some(dancu_core::person::Address {
        scheme: reference::Scheme::Legacy,
        commune_code: old.clone(),
        detail: Some("Thôn Đông".into()),
    });
    let rec = reg.create(input, &meta).await.unwrap();
    reg.migrate_addresses(500, "dancu addresses migrate", |_| {}).await.unwrap();
    let unit = format!("commune:{}", candidates[0]);
    let creds = add_officer(&s, "xa", &unit, &[Role::Collector, Role::Verifier], &[], false).await;
    let b = Browser::login(&s, &creds).await;
    let page = b.get("/ui/address-reviews").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains(&format!("review-{}-permanent_residence", rec.key)), "{}", page.body);
    for c in &candidates {
        assert!(page.body.contains(&format!("value=\"{c}\"")), "candidate {c} offered");
    }
    let path = format!("/ui/address-reviews/{}/permanent_residence", rec.key);
    let r = b.post(&path, &[]).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("Hãy chọn một xã/phường mới."), "{}", r.body);
    let r = b.post(&path, &[("commune_code", "26506")]).await;
    assert_eq!(r.status, 422);
    assert!(r.body.contains("không nằm trong các xã/phường được đề xuất"), "{}", r.body);
    let r = b.post(&path, &[("commune_code", &candidates[0])]).await;
    assert_eq!(r.status, 303, "{}", r.body);
    let after = b.get(r.header("location").unwrap()).await;
    assert!(after.body.contains("id=\"resolved\""));
    assert!(!after.body.contains(&format!("review-{}-", rec.key)), "no longer pending");
    let now = reg.get(&dancu_store::PersonRef::Key(rec.key)).await.unwrap();
    assert_eq!(now.person.record.permanent_residence.unwrap().commune_code, candidates[0]);
}
