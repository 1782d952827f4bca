//! The authorization matrix, generated from the route table: every route × every role × four
//! areas (ministry, the person's province, the person's commune, another province's commune),
//! plus no login at all — over real HTTP, on SQLite and on PostgreSQL.
//!
//! The expected answer of each cell comes from an oracle written here from the policy's rules
//! (roles, area, what each route does when permitted), not from the server's own table lookups;
//! a route the matrix does not know fails the test, so a new route cannot skip it.

mod support;

use std::sync::Arc;

use dancu_core::auth::{Role, Unit};
use dancu_core::sharing::Service;
use dancu_server::policy::{Area, RouteSpec, Who};
use dancu_store::registry::Registry;
use dancu_store::{ChangeMeta, PersonRef, ProposedChange, Store};
use serde_json::{Value, json};
use support::{Client, add_officer, call, login, start_on};

const COMMUNE: &str = "commune:00004";
const PROVINCE: &str = "province:01";
const ELSEWHERE: &str = "commune:26506";
const UNITS: [&str; 4] = ["ministry", PROVINCE, COMMUNE, ELSEWHERE];

struct Fixture {
    person_key: String,
    personal_id: String,
    legacy_id: String,
    name: String,
    request_id: String,
    review_id: String,
    /// A stay notification (recorded, so approved) about the person, in commune 00004.
    application_id: String,
    /// A household in commune 00004.
    household_id: String,
    /// The person's card application (personalized) and its number, and the card.
    card_application_id: String,
    card_number: String,
    card_serial: String,
    /// A finished import batch of commune 00004.
    batch_id: String,
}

async fn fixture(store: &Arc<dyn Store>) -> Fixture {
    let reg = Registry::new(store.clone());
    let mut input = dancu_store::conformance::sample(1); // lives in commune 00004 (Hà Nội)
    input.legacy_id = Some(dancu_core::LegacyIdNumber::parse("001234567").unwrap());
    let meta = ChangeMeta::new("maker", "thu thập", None);
    let rec = reg.create(input, &meta).await.unwrap();
    let rec = reg.activate(rec.key, None, &meta).await.unwrap();
    let mut renamed = rec.person.record.clone();
    renamed.name.given = "Minh".into();
    let proposed = ProposedChange { person: renamed, status: None, status_date: None, reestablish_id: false };
    let fix = ChangeMeta::new("maker", "cải chính", None);
    let request = match reg.change(rec.key, rec.version, proposed, &fix, COMMUNE).await.unwrap() {
        dancu_store::registry::ChangeOutcome::Pending(r) => r,
        other => panic!("a name change must wait for approval: {other:?}"),
    };
    // a possible duplicate of the person, for clerical review
    let mut twin = dancu_store::conformance::sample(1);
    twin.name.middle = String::new();
    let twin = reg.create(twin, &meta).await.unwrap();
    let review = support::plant_review_pair(store, "matrix", COMMUNE, rec.key, twin.key).await;
    // residence: a household in the commune, and a stay notification of the person there
    let mut head = dancu_store::conformance::sample(5);
    head.permanent_residence = None;
    head.current_residence = Some(dancu_core::person::Address {
        scheme: dancu_core::reference::Scheme::Y2025,
        commune_code: "00004".into(),
        detail: Some("Số 5".into()),
    });
    let head = reg.create(head, &meta).await.unwrap();
    let head = reg.activate(head.key, None, &meta).await.unwrap();
    let hid = head.person.personal_id.unwrap().to_string();
    let p: dancu_core::residence::Procedure = serde_json::from_value(json!({"kind": "permanent_registration",
        "person": hid, "address": {"scheme": "2025", "commune_code": "00004", "detail": "Số 5"},
        "household": {"mode": "new", "own_home": true}}))
    .unwrap();
    let app = reg.submit(p, "maker", |_| true, None).await.unwrap();
    reg.receive(app.id, "maker", None).await.unwrap();
    let app =
        reg.decide_application(app.id, dancu_store::residence::Verdict::Approve, None, "maker", None).await.unwrap();
    let stay = reg
        .submit(stay_notification(&rec.person.personal_id.unwrap().to_string()), "maker", |_| true, None)
        .await
        .unwrap();
    // cards: a centre, the person's application taken to personalization, the card
    let centre = dancu_store::cards::Centre { id: "matrix-centre".into(), name: "Trung tâm".into(), stock: 1 };
    reg.centre_add(&centre, None).await.unwrap();
    let new = dancu_store::cards::NewCardApplication {
        person: PersonRef::Key(rec.key),
        kind: dancu_card::application::ApplicationKind::FirstIssue,
        requested_under_14: false,
        photo: dancu_store::conformance::FACE_JPEG.to_vec(),
        fingerprints: Vec::new(),
    };
    let card_app = reg.card_apply(new, "maker", |_| true, None).await.unwrap();
    use dancu_card::application::Stage;
    reg.card_step(card_app.id, Stage::Verified, "v", &[Role::Verifier], None, None, None).await.unwrap();
    reg.card_step(card_app.id, Stage::Approved, "a", &[Role::Approver], None, None, None).await.unwrap();
    let queue = Some("matrix-centre".to_string());
    reg.card_step(card_app.id, Stage::Queued, "c", &[Role::CardOperator], None, queue, None).await.unwrap();
    let (ds, _, _) = dancu_store::conformance::test_card_pki(time::OffsetDateTime::now_utc() - time::Duration::days(1));
    let (made, _) = reg.card_produce("matrix-centre", 1, &ds, "p", None).await.unwrap();
    // an import batch of the commune, finished
    let batch = dancu_store::ImportBatch {
        id: "matrix-batch".into(),
        unit: COMMUNE.into(),
        officer: "maker".into(),
        file_sha256: "ab".repeat(32),
        started_at: time::OffsetDateTime::now_utc(),
        finished_at: None,
        summary: None,
    };
    let entry = |action: &str| dancu_core::audit::AuditEntry {
        at: dancu_server::audit::now_rfc3339(),
        officer: "maker".into(),
        role: "collector".into(),
        unit: COMMUNE.into(),
        action: action.into(),
        target: None,
        purpose: None,
        request_id: None,
        client: None,
        outcome: "ok".into(),
    };
    store.import_begin(&batch, &entry("import.start")).await.unwrap();
    store.import_finish("matrix-batch", r#"{"rows_read": 3}"#, &entry("import.finish")).await.unwrap();
    Fixture {
        batch_id: "matrix-batch".into(),
        card_application_id: card_app.id.to_string(),
        card_number: card_app.number.clone(),
        card_serial: made[0].serial.clone(),
        review_id: review.id.to_string(),
        application_id: stay.id.to_string(),
        household_id: app.created_household.unwrap().to_string(),
        person_key: rec.key.to_string(),
        personal_id: rec.person.personal_id.unwrap().to_string(),
        legacy_id: "001234567".into(),
        name: dancu_core::text::fold(&rec.person.record.name.full()),
        request_id: request.id.to_string(),
    }
}

fn stay_notification(pid: &str) -> dancu_core::residence::Procedure {
    let now = time::OffsetDateTime::now_utc().to_offset(time::UtcOffset::from_hms(7, 0, 0).unwrap());
    serde_json::from_value(json!({"kind": "stay_notification", "person": pid,
        "address": {"scheme": "2025", "commune_code": "00004", "detail": "Khách sạn Ba Đình"},
        "arrived_at": now.format(&time::format_description::well_known::Rfc3339).unwrap(),
        "until": dancu_core::date::iso_date::format(now.date() + time::Duration::days(2))}))
    .unwrap()
}

/// One officer of the matrix (or nobody: no token).
struct Who2 {
    role: Option<Role>,
    unit: &'static str,
    client: Option<Client>,
}

/// The answer a cell must get: a status and, for refusals, the problem type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    Ok(u16),
    Problem(u16, &'static str),
    /// 303 See Other to this location.
    Redirect(&'static str),
    OneOf(Vec<Expect>),
}

fn governs(unit: &str) -> bool {
    unit != ELSEWHERE
}

fn contains_commune(unit: &str) -> bool {
    Unit::parse(unit).is_ok_and(|u| u.contains(&Unit::parse(COMMUNE).unwrap()))
}

/// Who may call each route, stated here independently of the server's table (a change to the
/// table that is not also made here fails the matrix).
fn intended(method: &str, path: &str) -> (Who, Area) {
    use Role::*;
    const READERS: &[Role] = &[Collector, Verifier, Approver, CardOperator];
    const EDITORS: &[Role] = &[Collector, Verifier, Approver];
    match (method, path) {
        // the web application: the same rules as the API route behind each page
        ("GET", "/ui/assets/{asset}") | ("GET", "/ui/lang/{lang}") | (_, "/ui/login") => (Who::Public, Area::None),
        (_, "/ui/mfa") | (_, "/ui/totp") | ("POST", "/ui/totp/confirm") | ("POST", "/ui/logout") => {
            (Who::Login, Area::None)
        }
        ("GET", "/ui") => (Who::Officer(&Role::ALL), Area::None),
        ("GET", "/ui/persons") | ("GET", "/ui/persons/{ref}") | ("GET", "/ui/residence") => {
            (Who::Officer(READERS), Area::Person)
        }
        (_, "/ui/persons/{ref}/edit") | (_, "/ui/residence/temporary") => (Who::Officer(EDITORS), Area::Person),
        (_, p) if p.starts_with("/ui/reviews") => (Who::Officer(&[Verifier, Approver]), Area::Person),
        (_, p) if p.starts_with("/ui/audit") => (Who::Officer(&[Auditor]), Area::National),
        // identity cards: intake, board, application, production, card, chip verification
        (_, "/ui/persons/{ref}/card-application") => (Who::Officer(&[CardOperator]), Area::Person),
        ("GET", "/ui/cards") | ("GET", "/ui/cards/applications/{id}") | ("GET", "/ui/cards/{serial}") => {
            (Who::Officer(&[Collector, Verifier, Approver, CardOperator, ProductionOperator]), Area::Person)
        }
        ("POST", "/ui/cards/applications/{id}/steps") => {
            (Who::Officer(&[Verifier, Approver, CardOperator, ProductionOperator]), Area::Person)
        }
        (_, "/ui/cards/verify") => {
            (Who::Officer(&[Collector, Verifier, Approver, CardOperator, ProductionOperator]), Area::None)
        }
        ("GET", "/ui/cards/{serial}/chip/{file}") => (Who::Officer(&[ProductionOperator]), Area::Person),
        (_, p) if p.starts_with("/ui/production") => (Who::Officer(&[ProductionOperator]), Area::National),
        // web: intake, change requests, partners
        ("POST", "/ui/intake") => (Who::Officer(&[Collector]), Area::Person),
        (_, p) if p.starts_with("/ui/intake") => (Who::Officer(EDITORS), Area::Person),
        (_, p) if p.starts_with("/ui/requests") => (Who::Officer(EDITORS), Area::Person),
        (_, p) if p.starts_with("/ui/partners") => (Who::Officer(&[PartnerAdministrator]), Area::National),
        // residence forms, one application and its steps, the 2025 address reviews
        ("GET", "/ui/residence/new")
        | (_, "/ui/residence/new/{kind}")
        | ("POST", "/ui/residence/applications/{id}/receive") => (Who::Officer(EDITORS), Area::Person),
        ("GET", "/ui/residence/applications/{id}") | ("GET", "/ui/address-reviews") => {
            (Who::Officer(READERS), Area::Person)
        }
        ("POST", "/ui/residence/applications/{id}/decision") | ("POST", "/ui/address-reviews/{ref}/{field}") => {
            (Who::Officer(&[Verifier, Approver]), Area::Person)
        }
        (_, p) if p.starts_with("/ui") => panic!("the matrix has no rule for the page {method} {path}"),
        ("POST", "/api/v1/persons") | ("PUT", "/api/v1/persons/{ref}") => (Who::Officer(EDITORS), Area::Person),
        ("GET", "/api/v1/persons")
        | ("GET", "/api/v1/persons/{ref}")
        | ("GET", "/api/v1/persons/by-legacy-id/{number}") => (Who::Officer(READERS), Area::Person),
        ("POST", "/api/v1/persons/{ref}/activate") => (Who::Officer(&[Verifier, Approver]), Area::Person),
        ("GET", "/api/v1/persons/{ref}/history") => {
            (Who::Officer(&[Collector, Verifier, Approver, CardOperator, Auditor]), Area::Person)
        }
        ("GET", "/api/v1/persons/{ref}/access-log") => (Who::Officer(&[Approver, Auditor]), Area::Person),
        (_, p) if p.starts_with("/api/v1/change-requests") => (Who::Officer(EDITORS), Area::Person),
        (_, p) if p.starts_with("/api/v1/review-pairs") => (Who::Officer(&[Verifier, Approver]), Area::Person),
        ("POST", "/api/v1/residence/applications")
        | ("POST", "/api/v1/residence/applications/{id}/receive")
        | ("GET", "/api/v1/persons/{ref}/residence-confirmation")
        | ("GET", "/api/v1/persons/{ref}/residence-confirmation.pdf") => (Who::Officer(EDITORS), Area::Person),
        ("POST", "/api/v1/residence/applications/{id}/decision")
        | ("POST", "/api/v1/persons/{ref}/address-reviews/{field}") => {
            (Who::Officer(&[Verifier, Approver]), Area::Person)
        }
        ("GET", "/api/v1/address-reviews") => (Who::Officer(READERS), Area::Person),
        ("GET", "/api/v1/residence/applications")
        | ("GET", "/api/v1/residence/applications/{id}")
        | ("GET", "/api/v1/households/{id}")
        | ("GET", "/api/v1/persons/{ref}/residences")
        | ("GET", "/api/v1/residence/at-address") => (Who::Officer(READERS), Area::Person),
        ("GET", "/api/v1/audit") => (Who::Officer(&[Auditor]), Area::National),
        ("POST", "/api/v1/auth/login") => (Who::Public, Area::None),
        (_, p) if p.starts_with("/api/v1/auth/") => (Who::Login, Area::None),
        (_, p) if p.starts_with("/api/v1/officers") => (Who::Officer(&[SystemAdministrator]), Area::Officers),
        (_, p) if p.starts_with("/api/v1/partners") => (Who::Officer(&[PartnerAdministrator]), Area::National),
        (_, p) if p.starts_with("/api/v1/persons/{ref}/consents") => (Who::Officer(EDITORS), Area::Person),
        ("POST", "/api/v1/sharing/verify") => (Who::Partner(Service::Verify), Area::None),
        ("POST", "/api/v1/sharing/verify/batch") => (Who::Partner(Service::BatchVerify), Area::None),
        ("GET", "/api/v1/sharing/persons/{personal_id}") => (Who::Partner(Service::Retrieve), Area::None),
        ("GET", "/api/v1/sharing/pseudonyms/{personal_id}") => (Who::Partner(Service::Pseudonym), Area::None),
        ("GET", "/api/v1/sharing/events") => (Who::Partner(Service::Events), Area::None),
        ("POST", "/api/v1/citizen/login") | ("POST", "/api/v1/citizen/login/verify") => (Who::Public, Area::None),
        (_, "/oidc/logout") => (Who::Public, Area::None),
        (_, p) if p.starts_with("/api/v1/citizen/") => (Who::Citizen, Area::None),
        ("POST", "/api/v1/sharing/card-validity") => (Who::Partner(Service::CardValidity), Area::None),
        ("POST", "/api/v1/card-applications") | ("POST", "/api/v1/cards/{serial}/state") => {
            (Who::Officer(&[CardOperator]), Area::Person)
        }
        ("GET", "/api/v1/card-applications")
        | ("GET", "/api/v1/card-applications/{id}")
        | ("GET", "/api/v1/persons/{ref}/cards")
        | ("GET", "/api/v1/cards/{serial}") => {
            (Who::Officer(&[Collector, Verifier, Approver, CardOperator, ProductionOperator]), Area::Person)
        }
        ("POST", "/api/v1/card-applications/{id}/steps") => {
            (Who::Officer(&[Verifier, Approver, CardOperator, ProductionOperator]), Area::Person)
        }
        ("GET", "/api/v1/cards/{serial}/chip") => (Who::Officer(&[ProductionOperator]), Area::Person),
        ("GET", "/api/v1/cards/{serial}/faces/{side}") => {
            (Who::Officer(&[CardOperator, ProductionOperator]), Area::Person)
        }
        (_, p) if p.starts_with("/api/v1/production/") => (Who::Officer(&[ProductionOperator]), Area::National),
        ("PUT", "/api/v1/sharing/webhook") | ("GET", "/api/v1/sharing/webhook") => {
            (Who::Partner(Service::Events), Area::None)
        }
        ("POST", "/api/v1/sharing/civil-events") | ("GET", "/api/v1/sharing/civil-events/{source_id}") => {
            (Who::Partner(Service::CivilEvents), Area::None)
        }
        _ => (Who::Public, Area::None),
    }
}

/// A page's form as the browser sends it, with the session's CSRF token.
fn form(w: &Who2, fields: &[(&str, &str)]) -> Option<Value> {
    let csrf = w.client.as_ref().map(|c| dancu_server::web::csrf_token(&c.token)).unwrap_or_default();
    let mut all = vec![("csrf", csrf.as_str())];
    all.extend_from_slice(fields);
    Some(Value::String(serde_urlencoded::to_string(all).unwrap()))
}

/// The request a route gets in the matrix, and what an officer permitted by role and area gets.
fn cell(route: &RouteSpec, f: &Fixture, tag: &str, w: &Who2) -> (String, Option<Value>, Expect) {
    let role = w.role;
    let person_ok = governs(w.unit);
    let by_area = |ok: Expect| if person_ok { ok } else { Expect::Problem(404, "not-found") };
    let officers_ok = contains_commune(w.unit);
    let until = dancu_core::date::iso_date::format(dancu_store::registry::today() + time::Duration::days(300));
    let (path, body, permitted) = match (route.method.as_str(), route.path) {
        // Pages: refusals are HTML pages of the same status (see `html` below).
        ("GET", "/ui/assets/{asset}") => ("/ui/assets/app.css".to_string(), None, Expect::Ok(200)),
        ("GET", "/ui/lang/{lang}") => ("/ui/lang/en".to_string(), None, Expect::Redirect("/ui")),
        ("GET", "/ui/login") => ("/ui/login".to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/login") => (
            "/ui/login".to_string(),
            form(w, &[("username", &format!("nobody-{tag}")), ("password", "not the password")]),
            Expect::Ok(401),
        ),
        ("GET", "/ui/mfa") | ("GET", "/ui/totp") | ("GET", "/ui") => (route.path.to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/mfa") => ("/ui/mfa".to_string(), form(w, &[("code", "000000")]), Expect::Ok(409)),
        ("POST", "/ui/totp") => ("/ui/totp".to_string(), form(w, &[]), Expect::Ok(200)),
        ("POST", "/ui/totp/confirm") => (
            "/ui/totp/confirm".to_string(),
            form(w, &[("code", "000000")]),
            Expect::OneOf(vec![Expect::Ok(401), Expect::Ok(409)]),
        ),
        ("POST", "/ui/logout") => ("/ui/logout".to_string(), form(w, &[]), Expect::Redirect("/ui/login")),
        ("GET", "/ui/persons") => (format!("/ui/persons?name={}", f.name.replace(' ', "%20")), None, Expect::Ok(200)),
        ("GET", "/ui/persons/{ref}") => (format!("/ui/persons/{}", f.personal_id), None, by_area(Expect::Ok(200))),
        ("GET", "/ui/persons/{ref}/edit") => {
            (format!("/ui/persons/{}/edit", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/ui/persons/{ref}/edit") => (
            format!("/ui/persons/{}/edit", f.personal_id),
            form(w, &[("version", "999"), ("surname", "Nguyễn"), ("given", "Minh"), ("reason", "cải chính")]),
            by_area(Expect::Ok(409)),
        ),
        ("GET", "/ui/reviews") => ("/ui/reviews".to_string(), None, Expect::Ok(200)),
        ("GET", "/ui/reviews/{id}") => (format!("/ui/reviews/{}", f.review_id), None, by_area(Expect::Ok(200))),
        ("POST", "/ui/reviews/{id}") => {
            let note = "x".repeat(501);
            (
                format!("/ui/reviews/{}", f.review_id),
                form(w, &[("decision", "different"), ("note", &note)]),
                by_area(Expect::Ok(422)),
            )
        }
        ("GET", "/ui/residence") => ("/ui/residence".to_string(), None, Expect::Ok(200)),
        ("GET", "/ui/residence/temporary") => ("/ui/residence/temporary".to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/residence/temporary") => (
            // In the commune of the person's permanent residence: refused, nothing filed.
            "/ui/residence/temporary".to_string(),
            form(w, &[("person", &f.personal_id), ("commune", "00004"), ("detail", "Số 9"), ("until", &until)]),
            Expect::Ok(422),
        ),
        ("GET", "/ui/audit") => ("/ui/audit".to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/audit/verify") => ("/ui/audit/verify".to_string(), form(w, &[]), Expect::Ok(200)),
        // identity cards: each change refused after the checks (nothing taken, moved or restocked)
        ("GET", "/ui/persons/{ref}/card-application") => {
            (format!("/ui/persons/{}/card-application", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/ui/persons/{ref}/card-application") => (
            // No photo: the form comes back with its errors.
            format!("/ui/persons/{}/card-application", f.personal_id),
            form(w, &[("kind", "first_issue")]),
            by_area(Expect::Ok(422)),
        ),
        ("GET", "/ui/cards") => ("/ui/cards".to_string(), None, Expect::Ok(200)),
        ("GET", "/ui/cards/applications/{id}") => {
            (format!("/ui/cards/applications/{}", f.card_application_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/ui/cards/applications/{id}/steps") => (
            // The application is personalized: verifying it again is no step from there.
            format!("/ui/cards/applications/{}/steps", f.card_application_id),
            form(w, &[("to", "verified")]),
            by_area(Expect::Ok(409)),
        ),
        ("GET", "/ui/production") => ("/ui/production".to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/production/{id}/restock") => {
            ("/ui/production/matrix-centre/restock".to_string(), form(w, &[("cards", "0")]), Expect::Ok(422))
        }
        ("POST", "/ui/production/{id}/run") => {
            ("/ui/production/no-such-centre/run".to_string(), form(w, &[("max", "1")]), Expect::Ok(404))
        }
        ("GET", "/ui/cards/verify") => ("/ui/cards/verify".to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/cards/verify") => ("/ui/cards/verify".to_string(), form(w, &[]), Expect::Ok(422)),
        ("GET", "/ui/cards/{serial}") => (format!("/ui/cards/{}", f.card_serial), None, by_area(Expect::Ok(200))),
        ("GET", "/ui/cards/{serial}/chip/{file}") => {
            (format!("/ui/cards/{}/chip/dg1.bin", f.card_serial), None, by_area(Expect::Ok(200)))
        }
        // web: intake, change requests, partners
        ("GET", "/ui/intake") => ("/ui/intake".to_string(), None, Expect::Ok(200)),
        // Not a multipart upload: refused before anything is read or stored.
        ("POST", "/ui/intake") => ("/ui/intake".to_string(), form(w, &[("unit", COMMUNE)]), Expect::Ok(415)),
        ("GET", "/ui/intake/{id}") => (format!("/ui/intake/{}", f.batch_id), None, by_area(Expect::Ok(200))),
        ("GET", "/ui/intake/{id}/report.csv") => {
            (format!("/ui/intake/{}/report.csv", f.batch_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/ui/requests") => ("/ui/requests".to_string(), None, Expect::Ok(200)),
        ("GET", "/ui/requests/{id}") => (format!("/ui/requests/{}", f.request_id), None, by_area(Expect::Ok(200))),
        ("POST", "/ui/requests/{id}") => {
            // A rejection without a reason: approvers get to the reason check, other editors
            // are refused by the maker-checker rule. Nothing is decided either way.
            let e = if role == Some(Role::Approver) { Expect::Ok(422) } else { Expect::Ok(403) };
            (format!("/ui/requests/{}", f.request_id), form(w, &[("decision", "reject")]), by_area(e))
        }
        ("GET", "/ui/partners") => ("/ui/partners".to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/partners") => (
            // An invalid id: refused, nothing registered.
            "/ui/partners".to_string(),
            form(
                w,
                &[
                    ("id", "Not An Id"),
                    ("name", "Ngân hàng"),
                    ("kind", "business"),
                    ("legal_basis", "Nghị định 59"),
                    ("services", "verify"),
                    ("rate_limit_per_second", "5"),
                    ("valid_until", "2030-01-01"),
                    ("public_key_pem", "not a key"),
                ],
            ),
            Expect::Ok(422),
        ),
        ("GET", "/ui/partners/{id}") => ("/ui/partners/matrix-partner".to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/partners/{id}/status") => (
            // No reason: refused, the partner stays active.
            "/ui/partners/matrix-partner/status".to_string(),
            form(w, &[("status", "suspended"), ("reason", "")]),
            Expect::Ok(422),
        ),
        // residence forms, one application and its steps, the 2025 address reviews
        ("GET", "/ui/residence/new") => ("/ui/residence/new".to_string(), None, Expect::Ok(200)),
        ("GET", "/ui/residence/new/{kind}") => {
            ("/ui/residence/new/permanent_registration".to_string(), None, Expect::Ok(200))
        }
        ("POST", "/ui/residence/new/{kind}") => (
            // An end date that is no date: refused by the form, nothing filed.
            "/ui/residence/new/permanent_deletion".to_string(),
            form(w, &[("person", &f.personal_id), ("cause", "death"), ("effective", "hôm qua")]),
            Expect::Ok(422),
        ),
        ("GET", "/ui/residence/applications/{id}") => {
            (format!("/ui/residence/applications/{}", f.application_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/ui/residence/applications/{id}/receive") => (
            // Recorded at once (a stay notification): nothing to receive.
            format!("/ui/residence/applications/{}/receive", f.application_id),
            form(w, &[]),
            by_area(Expect::Ok(409)),
        ),
        ("POST", "/ui/residence/applications/{id}/decision") => (
            format!("/ui/residence/applications/{}/decision", f.application_id),
            form(w, &[("decision", "reject")]),
            by_area(Expect::Ok(422)),
        ),
        ("GET", "/ui/address-reviews") => ("/ui/address-reviews".to_string(), None, Expect::Ok(200)),
        ("POST", "/ui/address-reviews/{ref}/{field}") => (
            // A field the migration does not move: refused after the area check, nothing changed.
            format!("/ui/address-reviews/{}/birth_place", f.personal_id),
            form(w, &[("commune_code", "00004")]),
            by_area(Expect::Ok(422)),
        ),
        ("POST", "/api/v1/persons") => {
            let mut p = serde_json::to_value(dancu_store::conformance::sample(3)).unwrap();
            p["permanent_residence"] = json!({"scheme": "2025", "commune_code": "00004"});
            let body = json!({"person": p, "reason": "thu thập"});
            let e = if person_ok { Expect::Ok(201) } else { Expect::Problem(403, "outside-area") };
            ("/api/v1/persons".to_string(), Some(body), e)
        }
        ("GET", "/api/v1/persons") => {
            (format!("/api/v1/persons?name={}", f.name.replace(' ', "%20")), None, Expect::Ok(200))
        }
        ("GET", "/api/v1/persons/by-legacy-id/{number}") => {
            (format!("/api/v1/persons/by-legacy-id/{}", f.legacy_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/persons/{ref}") => {
            (format!("/api/v1/persons/{}", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("PUT", "/api/v1/persons/{ref}") => {
            let p = serde_json::to_value(dancu_store::conformance::sample(1)).unwrap();
            let body = json!({"version": 999, "person": p, "reason": "cập nhật"});
            (
                format!("/api/v1/persons/{}", f.personal_id),
                Some(body),
                by_area(Expect::Problem(409, "version-conflict")),
            )
        }
        ("POST", "/api/v1/persons/{ref}/activate") => (
            format!("/api/v1/persons/{}/activate", f.person_key),
            Some(json!({"reason": "cấp số"})),
            by_area(Expect::Problem(409, "already-active")),
        ),
        ("GET", "/api/v1/persons/{ref}/history") => {
            (format!("/api/v1/persons/{}/history", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/persons/{ref}/access-log") => {
            (format!("/api/v1/persons/{}/access-log", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/change-requests") => ("/api/v1/change-requests".to_string(), None, Expect::Ok(200)),
        ("GET", "/api/v1/change-requests/{id}") => {
            (format!("/api/v1/change-requests/{}", f.request_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/api/v1/change-requests/{id}/decision") => {
            // A rejection without a reason: approvers get to the reason check, other editors
            // are refused by the maker-checker rule. Nothing is decided either way.
            let e = if role == Some(Role::Approver) {
                Expect::Problem(422, "validation")
            } else {
                Expect::Problem(403, "forbidden")
            };
            (
                format!("/api/v1/change-requests/{}/decision", f.request_id),
                Some(json!({"decision": "reject"})),
                by_area(e),
            )
        }
        ("GET", "/api/v1/review-pairs") => ("/api/v1/review-pairs".to_string(), None, Expect::Ok(200)),
        ("GET", "/api/v1/review-pairs/{id}") => {
            (format!("/api/v1/review-pairs/{}", f.review_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/api/v1/review-pairs/{id}/decision") => {
            // An over-long note: refused after the area check, nothing decided.
            let body = json!({"decision": "different", "note": "x".repeat(501)});
            (
                format!("/api/v1/review-pairs/{}/decision", f.review_id),
                Some(body),
                by_area(Expect::Problem(422, "validation")),
            )
        }
        ("GET", "/api/v1/audit") => ("/api/v1/audit".to_string(), None, Expect::Ok(200)),
        ("POST", "/api/v1/residence/applications") => {
            let body = json!({"procedure": stay_notification(&f.personal_id)});
            ("/api/v1/residence/applications".to_string(), Some(body), by_area(Expect::Ok(201)))
        }
        ("GET", "/api/v1/residence/applications") => {
            ("/api/v1/residence/applications".to_string(), None, Expect::Ok(200))
        }
        ("GET", "/api/v1/residence/applications/{id}") => {
            (format!("/api/v1/residence/applications/{}", f.application_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/api/v1/residence/applications/{id}/receive") => (
            format!("/api/v1/residence/applications/{}/receive", f.application_id),
            None,
            by_area(Expect::Problem(409, "state")),
        ),
        ("POST", "/api/v1/residence/applications/{id}/decision") => (
            format!("/api/v1/residence/applications/{}/decision", f.application_id),
            Some(json!({"decision": "reject"})),
            by_area(Expect::Problem(422, "validation")),
        ),
        ("GET", "/api/v1/households/{id}") => {
            (format!("/api/v1/households/{}", f.household_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/persons/{ref}/residences") => {
            (format!("/api/v1/persons/{}/residences", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/residence/at-address") => (
            format!(
                "/api/v1/residence/at-address?commune_code=00004&on={}",
                dancu_core::date::iso_date::format(dancu_store::registry::today())
            ),
            None,
            by_area(Expect::Ok(200)),
        ),
        ("GET", "/api/v1/persons/{ref}/residence-confirmation") => {
            (format!("/api/v1/persons/{}/residence-confirmation", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/persons/{ref}/residence-confirmation.pdf") => {
            (format!("/api/v1/persons/{}/residence-confirmation.pdf", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/address-reviews") => ("/api/v1/address-reviews?state=all".to_string(), None, Expect::Ok(200)),
        ("POST", "/api/v1/persons/{ref}/address-reviews/{field}") => (
            // A field the migration does not move: refused after the area check, nothing changed.
            format!("/api/v1/persons/{}/address-reviews/birth_place", f.personal_id),
            Some(json!({"commune_code": "00004"})),
            by_area(Expect::Problem(422, "validation")),
        ),
        ("GET", "/api/v1/residence-confirmations/verify") => (
            "/api/v1/residence-confirmations/verify?code=AAAA.BBBB".to_string(),
            None,
            Expect::Problem(422, "invalid-confirmation"),
        ),
        ("POST", "/api/v1/auth/login") => (
            "/api/v1/auth/login".to_string(),
            Some(json!({"username": format!("nobody-{tag}"), "password": "not the password"})),
            Expect::Problem(401, "invalid-credentials"),
        ),
        ("POST", "/api/v1/auth/mfa") => {
            ("/api/v1/auth/mfa".to_string(), Some(json!({"code": "000000"})), Expect::Problem(409, "no-mfa-pending"))
        }
        ("POST", "/api/v1/auth/totp") => ("/api/v1/auth/totp".to_string(), None, Expect::Ok(200)),
        ("POST", "/api/v1/auth/totp/confirm") => (
            "/api/v1/auth/totp/confirm".to_string(),
            Some(json!({"code": "000000"})),
            Expect::OneOf(vec![Expect::Problem(401, "invalid-code"), Expect::Problem(409, "no-enrolment")]),
        ),
        ("POST", "/api/v1/auth/logout") => ("/api/v1/auth/logout".to_string(), None, Expect::Ok(204)),
        ("GET", "/api/v1/auth/session") => ("/api/v1/auth/session".to_string(), None, Expect::Ok(200)),
        ("GET", "/api/v1/officers") => ("/api/v1/officers".to_string(), None, Expect::Ok(200)),
        ("POST", "/api/v1/officers") => {
            let body = json!({"username": format!("new-{tag}"), "display_name": "Cán bộ mới", "unit": COMMUNE, "roles": ["collector"]});
            let e = if officers_ok { Expect::Ok(201) } else { Expect::Problem(403, "outside-area") };
            ("/api/v1/officers".to_string(), Some(body), e)
        }
        ("GET", "/api/v1/officers/{username}") => (
            "/api/v1/officers/target.officer".to_string(),
            None,
            if officers_ok { Expect::Ok(200) } else { Expect::Problem(404, "not-found") },
        ),
        ("PUT", "/api/v1/officers/{username}") => (
            "/api/v1/officers/target.officer".to_string(),
            Some(json!({"display_name": "Cán bộ đích"})),
            if officers_ok { Expect::Ok(200) } else { Expect::Problem(404, "not-found") },
        ),
        ("GET", "/api/v1/partners") => ("/api/v1/partners".to_string(), None, Expect::Ok(200)),
        ("POST", "/api/v1/partners") => {
            // Refused for its key: nothing is registered.
            let body = json!({"id": format!("m-{tag}"), "name": "Ngân hàng", "kind": "business",
                "legal_basis": "Nghị định 59/2022/NĐ-CP", "services": ["verify"], "rate_limit_per_second": 10,
                "valid_until": "2030-01-01T00:00:00Z", "public_key_pem": "not a key"});
            ("/api/v1/partners".to_string(), Some(body), Expect::Problem(422, "validation"))
        }
        ("GET", "/api/v1/partners/{id}") => ("/api/v1/partners/matrix-partner".to_string(), None, Expect::Ok(200)),
        ("PUT", "/api/v1/partners/{id}") => {
            let body = json!({"name": "Ngân hàng", "kind": "business", "legal_basis": "Nghị định 59/2022/NĐ-CP",
                "services": ["verify"], "rate_limit_per_second": 10, "valid_until": "2030-01-01T00:00:00Z",
                "public_key_pem": "not a key"});
            ("/api/v1/partners/matrix-partner".to_string(), Some(body), Expect::Problem(422, "validation"))
        }
        ("POST", "/api/v1/partners/{id}/status") => (
            "/api/v1/partners/matrix-partner/status".to_string(),
            Some(json!({"status": "suspended", "reason": " "})),
            Expect::Problem(422, "validation"),
        ),
        ("GET", "/api/v1/persons/{ref}/consents") => {
            (format!("/api/v1/persons/{}/consents", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/api/v1/persons/{ref}/consents") => (
            format!("/api/v1/persons/{}/consents", f.personal_id),
            Some(
                json!({"partner_id": "no-such-partner", "purpose": "mở tài khoản", "expires_at": "2030-01-01T00:00:00Z"}),
            ),
            by_area(Expect::Problem(422, "validation")),
        ),
        ("POST", "/api/v1/persons/{ref}/consents/{id}/revoke") => (
            format!("/api/v1/persons/{}/consents/no-such-consent/revoke", f.personal_id),
            None,
            Expect::Problem(404, "not-found"),
        ),
        ("POST", "/api/v1/oauth/token") => ("/api/v1/oauth/token".to_string(), Some(json!({})), Expect::Ok(400)),
        ("POST", "/api/v1/sharing/verify") | ("POST", "/api/v1/sharing/verify/batch") => (
            route.path.to_string(),
            Some(json!({"personal_id": f.personal_id, "name": "x", "birth_date": "1990"})),
            Expect::Problem(401, "invalid-token"),
        ),
        ("GET", "/api/v1/sharing/persons/{personal_id}") => {
            (format!("/api/v1/sharing/persons/{}", f.personal_id), None, Expect::Problem(401, "invalid-token"))
        }
        ("GET", "/api/v1/sharing/pseudonyms/{personal_id}") => {
            (format!("/api/v1/sharing/pseudonyms/{}", f.personal_id), None, Expect::Problem(401, "invalid-token"))
        }
        ("GET", "/api/v1/sharing/events") => {
            ("/api/v1/sharing/events".to_string(), None, Expect::Problem(401, "invalid-token"))
        }
        // Citizens: officers' sessions never pass (the oracle below); login is public.
        ("POST", "/api/v1/citizen/login") => (
            "/api/v1/citizen/login".to_string(),
            Some(json!({"personal_id": "12345"})),
            Expect::Problem(422, "validation"),
        ),
        ("POST", "/api/v1/citizen/login/verify") => (
            "/api/v1/citizen/login/verify".to_string(),
            Some(json!({"challenge": format!("ch_nothing-{tag}"), "code": "000000"})),
            Expect::Problem(401, "invalid-code"),
        ),
        ("POST", "/api/v1/citizen/me/consents/{id}/revoke") => (
            "/api/v1/citizen/me/consents/no-such-consent/revoke".to_string(),
            None,
            Expect::Problem(401, "unauthenticated"),
        ),
        ("POST", "/api/v1/citizen/me/consents") => (
            "/api/v1/citizen/me/consents".to_string(),
            Some(json!({"partner_id": "matrix-partner", "purpose": "x", "expires_at": "2030-01-01T00:00:00Z"})),
            Expect::Problem(401, "unauthenticated"),
        ),
        (_, p) if p.starts_with("/api/v1/citizen/") => (p.to_string(), None, Expect::Problem(401, "unauthenticated")),
        // OpenID Connect: without a registered client, an error page (never a redirect); the
        // token endpoint and userinfo authenticate the portal themselves.
        ("GET", "/oidc/authorize") => ("/oidc/authorize?client_id=nobody".to_string(), None, Expect::Ok(400)),
        ("POST", "/oidc/authorize") => ("/oidc/authorize".to_string(), Some(json!({})), Expect::Ok(400)),
        ("POST", "/oidc/token") => ("/oidc/token".to_string(), Some(json!({})), Expect::Ok(400)),
        ("GET", "/oidc/userinfo") => ("/oidc/userinfo".to_string(), None, Expect::Ok(401)),
        // RP-initiated logout: public; with no hint nothing ends (a page), a JSON body is refused.
        ("GET", "/oidc/logout") => ("/oidc/logout".to_string(), None, Expect::Ok(200)),
        ("POST", "/oidc/logout") => ("/oidc/logout".to_string(), Some(json!({})), Expect::Ok(400)),
        ("POST", "/api/v1/sharing/card-validity") => (
            route.path.to_string(),
            Some(json!({"personal_id": f.personal_id, "card_serial": f.card_serial})),
            Expect::Problem(401, "invalid-token"),
        ),
        ("POST", "/api/v1/card-applications") => {
            // A second application of the person (the first is still open): refused, nothing stored.
            let photo = dancu_core::sharing::b64url(dancu_store::conformance::FACE_JPEG);
            let body = json!({"person": f.personal_id, "kind": {"kind": "first_issue"}, "photo": photo});
            ("/api/v1/card-applications".to_string(), Some(body), by_area(Expect::Problem(409, "open-application")))
        }
        ("GET", "/api/v1/card-applications") => ("/api/v1/card-applications".to_string(), None, Expect::Ok(200)),
        ("GET", "/api/v1/card-applications/{id}") => {
            (format!("/api/v1/card-applications/{}", f.card_application_id), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/api/v1/card-applications/{id}/steps") => (
            // Personalized already: no way back to verified.
            format!("/api/v1/card-applications/{}/steps", f.card_application_id),
            Some(json!({"to": "verified"})),
            by_area(Expect::Problem(409, "state")),
        ),
        ("GET", "/api/v1/card-status/{number}") => {
            (format!("/api/v1/card-status/{}", f.card_number), None, Expect::Ok(200))
        }
        ("GET", "/api/v1/production/centres") => ("/api/v1/production/centres".to_string(), None, Expect::Ok(200)),
        ("POST", "/api/v1/production/centres") => (
            "/api/v1/production/centres".to_string(),
            Some(json!({"id": "not an id", "name": "Trung tâm", "stock": 5})),
            Expect::Problem(422, "validation"),
        ),
        ("POST", "/api/v1/production/centres/{id}/restock") => (
            "/api/v1/production/centres/matrix-centre/restock".to_string(),
            Some(json!({"cards": 0})),
            Expect::Problem(422, "validation"),
        ),
        ("POST", "/api/v1/production/centres/{id}/run") => (
            "/api/v1/production/centres/no-such-centre/run".to_string(),
            Some(json!({})),
            Expect::Problem(404, "not-found"),
        ),
        ("GET", "/api/v1/persons/{ref}/cards") => {
            (format!("/api/v1/persons/{}/cards", f.personal_id), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/cards/{serial}") => {
            (format!("/api/v1/cards/{}", f.card_serial), None, by_area(Expect::Ok(200)))
        }
        ("POST", "/api/v1/cards/{serial}/state") => (
            // No reason given: refused after the area check, nothing changed.
            format!("/api/v1/cards/{}/state", f.card_serial),
            Some(json!({"state": "lost"})),
            by_area(Expect::Problem(422, "validation")),
        ),
        ("GET", "/api/v1/cards/{serial}/chip") => {
            (format!("/api/v1/cards/{}/chip", f.card_serial), None, by_area(Expect::Ok(200)))
        }
        ("GET", "/api/v1/cards/{serial}/faces/{side}") => {
            (format!("/api/v1/cards/{}/faces/front", f.card_serial), None, by_area(Expect::Ok(200)))
        }
        ("PUT", "/api/v1/sharing/webhook") => (
            "/api/v1/sharing/webhook".to_string(),
            Some(json!({"url": "http://127.0.0.1:9/hook"})),
            Expect::Problem(401, "invalid-token"),
        ),
        ("GET", "/api/v1/sharing/webhook") => {
            ("/api/v1/sharing/webhook".to_string(), None, Expect::Problem(401, "invalid-token"))
        }
        ("POST", "/api/v1/sharing/civil-events") => (
            "/api/v1/sharing/civil-events".to_string(),
            Some(json!({"source_id": "KT-1", "kind": "death", "personal_id": f.personal_id, "date": "2026-11-01"})),
            Expect::Problem(401, "invalid-token"),
        ),
        ("GET", "/api/v1/sharing/civil-events/{source_id}") => {
            ("/api/v1/sharing/civil-events/KT-1".to_string(), None, Expect::Problem(401, "invalid-token"))
        }
        ("GET", "/api/v1/partners/{id}/webhook") => {
            // The partner has no webhook: the administrators get a clear 404.
            ("/api/v1/partners/matrix-partner/webhook".to_string(), None, Expect::Problem(404, "not-found"))
        }
        ("GET", "/api/v1/reference/communes/{scheme}/{code}") => {
            ("/api/v1/reference/communes/2025/00004".to_string(), None, Expect::Ok(200))
        }
        ("GET", "/api/docs/{asset}") => ("/api/docs/init.js".to_string(), None, Expect::Ok(200)),
        ("GET", p) if !p.contains('{') && (p.starts_with("/api/v1/reference/") || !p.starts_with("/api/v1/")) => {
            (p.to_string(), None, Expect::Ok(200))
        }
        (m, p) => panic!("the authorization matrix has no request for {m} {p}: add it (every route must be covered)"),
    };
    // What the policy says before the route does anything.
    let (who, area) = intended(route.method.as_str(), route.path);
    if route.path.starts_with("/ui") {
        // Pages: no login → the login page; refusals by role or area → an HTML page of that status.
        let expected = match (who, &w.client) {
            (Who::Public, _) => permitted,
            (_, None) => Expect::Redirect("/ui/login"),
            (Who::Officer(roles), Some(_))
                if !role.is_some_and(|r| roles.contains(&r)) || (area == Area::National && w.unit != "ministry") =>
            {
                Expect::Ok(403)
            }
            _ => html(permitted),
        };
        return (path, body, expected);
    }
    let expected = match (who, &w.client) {
        (Who::Public, _) => permitted,
        // Officer sessions are no partner tokens.
        (Who::Partner(_), _) => Expect::Problem(401, "invalid-token"),
        // Officer sessions are no citizen sessions.
        (Who::Citizen, _) => Expect::Problem(401, "unauthenticated"),
        (_, None) => Expect::Problem(401, "unauthenticated"),
        (Who::Login, Some(_)) => permitted,
        (Who::Officer(roles), Some(_)) => {
            let role_ok = role.is_some_and(|r| roles.contains(&r));
            if !role_ok || (area == Area::National && w.unit != "ministry") {
                Expect::Problem(403, "forbidden")
            } else {
                permitted
            }
        }
    };
    (path, body, expected)
}

/// A page answers a refusal with an HTML page of the same status (no problem document).
fn html(e: Expect) -> Expect {
    match e {
        Expect::Problem(s, _) => Expect::Ok(s),
        other => other,
    }
}

fn matches(e: &Expect, r: &support::Resp, kind: Option<&str>) -> bool {
    let status = r.status;
    match e {
        Expect::Ok(s) => *s == status,
        Expect::Problem(s, k) => *s == status && kind == Some(&format!("urn:dancu:problem:{k}")[..]),
        Expect::Redirect(to) => status == 303 && r.header("location") == Some(to),
        Expect::OneOf(v) => v.iter().any(|e| matches(e, r, kind)),
    }
}

async fn matrix(store: Arc<dyn Store>) {
    let s = start_on(store.clone(), Default::default()).await;
    let f = fixture(&store).await;
    std::fs::create_dir_all(&s.intake_dir).unwrap();
    std::fs::write(s.intake_dir.join("matrix-batch.report.csv"), "line,kind,field,value,code,reason,message\n")
        .unwrap();
    add_officer(&s, "target.officer", COMMUNE, &[Role::Collector], &[], false).await;
    store.partner_insert(&dancu_store::conformance::partner("matrix-partner")).await.unwrap();
    let mut cast = vec![Who2 { role: None, unit: "-", client: None }];
    for (i, role) in Role::ALL.into_iter().enumerate() {
        for (j, unit) in UNITS.into_iter().enumerate() {
            let c = add_officer(&s, &format!("m{i}-{j}"), unit, &[role], &[], role.requires_mfa()).await;
            let token = login(s.addr, &c).await;
            cast.push(Who2 { role: Some(role), unit, client: Some(Client { addr: s.addr, token }) });
        }
    }
    let mut routes = dancu_server::policy::routes();
    // Logging out ends the session the other cells use: last.
    routes.sort_by_key(|r| r.path.ends_with("/logout"));
    let mut cells = 0;
    let mut failures = Vec::new();
    for route in &routes {
        for (n, w) in cast.iter().enumerate() {
            let tag = format!("{n}-{}", route.path.len());
            let (path, body, expected) = cell(route, &f, &tag, w);
            let r = match (&w.client, &body) {
                (c, Some(Value::String(form))) => {
                    let auth = c.as_ref().map(|c| format!("Bearer {}", c.token));
                    let mut h = vec![("Content-Type", "application/x-www-form-urlencoded")];
                    if let Some(a) = &auth {
                        h.push(("Authorization", a.as_str()));
                    }
                    call(s.addr, route.method.as_str(), &path, &h, Some(form.as_bytes())).await
                }
                (Some(c), _) => c.req(route.method.as_str(), &path, body.as_ref(), &[]).await,
                (None, _) => {
                    let b = body.as_ref().map(|b| b.to_string());
                    let h: &[(&str, &str)] = if b.is_some() { &[support::JSON] } else { &[] };
                    call(s.addr, route.method.as_str(), &path, h, b.as_deref().map(str::as_bytes)).await
                }
            };
            let kind = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["type"].as_str().map(str::to_string));
            cells += 1;
            if !matches(&expected, &r, kind.as_deref()) {
                failures.push(format!(
                    "{} {} as {:?}@{}: expected {expected:?}, got {} {}",
                    route.method,
                    route.path,
                    w.role,
                    w.unit,
                    r.status,
                    r.body.chars().take(200).collect::<String>()
                ));
            }
            // Lists show the person (or the request about them) only inside the area.
            if r.status == 200 && route.method == "GET" {
                let listed = match route.path {
                    "/api/v1/persons" | "/ui/persons" => Some(r.body.contains(&f.person_key)),
                    "/ui/reviews" => Some(r.body.contains(&f.review_id)),
                    "/ui/intake" => Some(r.body.contains(&f.batch_id)),
                    "/ui/requests" => Some(r.body.contains(&f.request_id)),
                    "/ui/residence" => Some(r.body.contains(&f.application_id)),
                    "/ui/cards" => Some(r.body.contains(&f.card_application_id)),
                    "/api/v1/change-requests" => Some(r.body.contains(&f.request_id)),
                    "/api/v1/review-pairs" => Some(r.body.contains(&f.review_id)),
                    "/api/v1/residence/applications" => Some(r.body.contains(&f.application_id)),
                    "/api/v1/card-applications" => Some(r.body.contains(&f.card_application_id)),
                    "/api/v1/officers" => Some(r.body.contains("target.officer")),
                    _ => None,
                };
                let should = if route.path == "/api/v1/officers" { contains_commune(w.unit) } else { governs(w.unit) };
                if listed.is_some_and(|l| l != should) {
                    failures.push(format!(
                        "{} as {:?}@{}: listed={listed:?}, should be {should}",
                        route.path, w.role, w.unit
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {cells} cells wrong:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(cells, routes.len() * cast.len());
    // Nothing was approved or rejected along the way.
    let req = store.change_request_get(f.request_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(req.state, dancu_store::RequestState::Pending);
    let pair = store.review_pair_get(f.review_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(pair.state, dancu_store::ReviewState::Pending);
    let person = store.get_person(&PersonRef::Key(f.person_key.parse().unwrap())).await.unwrap().unwrap();
    assert_eq!(person.version, 2, "no cell changed the person");
    // Nor a card, an application or a centre.
    let card = store.card_get(&f.card_serial).await.unwrap().unwrap();
    assert_eq!(card.state, dancu_card::application::CardState::Active);
    let app = store.card_application_get(f.card_application_id.parse().unwrap()).await.unwrap().unwrap();
    assert_eq!(app.stage, dancu_card::application::Stage::Personalized);
    let centres = store.centres(time::OffsetDateTime::now_utc()).await.unwrap();
    assert_eq!(centres.len(), 1);
    assert_eq!(centres[0].stock, 0);
    // Nor a partner registered or suspended, nor an import started.
    let partners = store.partner_list().await.unwrap();
    assert_eq!(partners.len(), 1);
    assert_eq!(partners[0].status, dancu_core::sharing::PartnerStatus::Active);
    let mut batches: Vec<String> = store.import_batches(10).await.unwrap().into_iter().map(|b| b.id).collect();
    batches.sort();
    assert_eq!(batches, ["matrix", "matrix-batch"], "the fixture's batches only");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_on_sqlite() {
    matrix(support::sqlite_store().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_matrix_on_postgres() {
    if let Some(store) = support::pg_store().await {
        matrix(store).await;
    }
}
