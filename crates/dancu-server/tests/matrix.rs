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
    let batch = dancu_store::ImportBatch {
        id: "matrix".into(),
        unit: COMMUNE.into(),
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
        unit: COMMUNE.into(),
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
        batch_id: "matrix".into(),
        a: rec.key,
        b: twin.key,
        weight: 12.0,
        probability: 0.7,
        explanation: json!({"fields": []}),
        state: dancu_store::ReviewState::Pending,
        created_at: time::OffsetDateTime::now_utc(),
        decided_by: None,
        decided_at: None,
        note: None,
        survivor: None,
    };
    store.review_pairs_insert(std::slice::from_ref(&review)).await.unwrap();
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
    Fixture {
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
        _ => (Who::Public, Area::None),
    }
}

/// The request a route gets in the matrix, and what an officer permitted by role and area gets.
fn cell(route: &RouteSpec, f: &Fixture, tag: &str, w: &Who2) -> (String, Option<Value>, Expect) {
    let role = w.role;
    let person_ok = governs(w.unit);
    let by_area = |ok: Expect| if person_ok { ok } else { Expect::Problem(404, "not-found") };
    let officers_ok = contains_commune(w.unit);
    let (path, body, permitted) = match (route.method.as_str(), route.path) {
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
    let expected = match (who, &w.client) {
        (Who::Public, _) => permitted,
        // Officer sessions are no partner tokens.
        (Who::Partner(_), _) => Expect::Problem(401, "invalid-token"),
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

fn matches(e: &Expect, status: u16, kind: Option<&str>) -> bool {
    match e {
        Expect::Ok(s) => *s == status,
        Expect::Problem(s, k) => *s == status && kind == Some(&format!("urn:dancu:problem:{k}")[..]),
        Expect::OneOf(v) => v.iter().any(|e| matches(e, status, kind)),
    }
}

async fn matrix(store: Arc<dyn Store>) {
    let s = start_on(store.clone(), Default::default()).await;
    let f = fixture(&store).await;
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
    routes.sort_by_key(|r| r.path == "/api/v1/auth/logout");
    let mut cells = 0;
    let mut failures = Vec::new();
    for route in &routes {
        for (n, w) in cast.iter().enumerate() {
            let tag = format!("{n}-{}", route.path.len());
            let (path, body, expected) = cell(route, &f, &tag, w);
            let r = match &w.client {
                Some(c) => c.req(route.method.as_str(), &path, body.as_ref(), &[]).await,
                None => {
                    let b = body.as_ref().map(|b| b.to_string());
                    let h: &[(&str, &str)] = if b.is_some() { &[support::JSON] } else { &[] };
                    call(s.addr, route.method.as_str(), &path, h, b.as_deref().map(str::as_bytes)).await
                }
            };
            let kind = serde_json::from_str::<Value>(&r.body).ok().and_then(|v| v["type"].as_str().map(str::to_string));
            cells += 1;
            if !matches(&expected, r.status, kind.as_deref()) {
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
                    "/api/v1/persons" => Some(r.body.contains(&f.person_key)),
                    "/api/v1/change-requests" => Some(r.body.contains(&f.request_id)),
                    "/api/v1/review-pairs" => Some(r.body.contains(&f.review_id)),
                    "/api/v1/residence/applications" => Some(r.body.contains(&f.application_id)),
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
