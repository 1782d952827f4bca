//! Residence endpoints: applications (submit → receive → approve / reject), overdue list,
//! households, residence history ("where on D", "who at this address on D"), and the residence
//! confirmation (HTML print view with a signed QR code) and its public verification.
//! Thin handlers: the rules live in `dancu_store::residence` and `dancu_core::residence`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use dancu_core::FieldError;
use dancu_core::date::iso_date;
use dancu_core::person::Address;
use dancu_core::reference::Scheme;
use dancu_core::residence::{ConfirmationStatement, Procedure};
use dancu_store::residence::{ResidenceOn, Verdict};
use dancu_store::{Application, ApplicationQuery, ApplicationState, Household, ResidenceRow};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, AuditRecorded, AuditTarget, RequestContext};
use crate::auth::Caller;
use crate::extract::{ApiJson, QueryPairs, bad_param};
use crate::problem::{ApiError, ApiResult, Problem};

fn parse_uuid(field: &str, s: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| bad_param(field, "invalid_reference", "a key (UUID)", s))
}

fn parse_day(field: &str, s: &str) -> ApiResult<time::Date> {
    iso_date::parse(s).ok_or_else(|| bad_param(field, "invalid_date", "a date YYYY-MM-DD", s))
}

fn targeted(status: StatusCode, body: &impl Serialize, person: Uuid) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.extensions_mut().insert(AuditTarget(person.to_string()));
    res
}

/// Body of a new application.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitApplication {
    pub procedure: Procedure,
}

/// File a residence application (hồ sơ). Its deadline is counted in working days (weekends,
/// public holidays and Tết skipped). A stay notification (lưu trú) is recorded at once and
/// flagged `late` when notified after 23:00 of the arrival day (08:00 next day for arrivals
/// after 23:00).
#[utoipa::path(post, path = "/api/v1/residence/applications", tag = "residence",
    request_body = SubmitApplication,
    responses(
        (status = 201, description = "filed", body = Application),
        (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "the application lies outside your area", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "refused by a rule, naming the field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn submit(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<SubmitApplication>,
) -> ApiResult<Response> {
    let entry = audit::for_change(&st, &caller, "residence.submit", &headers, &ctx, None, StatusCode::CREATED);
    let app = st.registry.submit(body.procedure, caller.username(), |areas| caller.governs(areas), entry).await?;
    let mut res = targeted(StatusCode::CREATED, &app, app.person_key);
    res.extensions_mut().insert(AuditRecorded);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/residence/applications/{}", app.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Applications of the caller's area, earliest deadline first; `overdue=true`: open ones past
/// their deadline today.
#[utoipa::path(get, path = "/api/v1/residence/applications", tag = "residence",
    params(("state" = Option<String>, Query, description = "submitted, received, approved or rejected"),
           ("overdue" = Option<bool>, Query, description = "only open applications past their deadline"),
           ("person" = Option<String>, Query, description = "record key of the person"),
           ("page" = Option<u32>, Query, description = "page number from 1"),
           ("per_page" = Option<u32>, Query, description = "1-200, default 50")),
    responses(
        (status = 200, description = "applications", body = Vec<Application>),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(st): State<AppState>, caller: Caller, q: QueryPairs) -> ApiResult<Response> {
    q.check(&["state", "overdue", "person", "page", "per_page"])?;
    let (offset, limit) = q.paging(200, 50)?;
    let state = match q.get("state") {
        None => None,
        Some(s) => Some(
            ApplicationState::from_code(s)
                .ok_or_else(|| bad_param("state", "unknown_state", "submitted, received, approved or rejected", s))?,
        ),
    };
    let overdue_on = match q.get("overdue") {
        None | Some("false") => None,
        Some("true") => Some(dancu_store::registry::today()),
        Some(o) => return Err(bad_param("overdue", "invalid_boolean", "true or false", o)),
    };
    let person_key = q.get("person").map(|p| parse_uuid("person", p)).transpose()?;
    let query = ApplicationQuery { state, overdue_on, person_key, area: caller.area(), offset, limit };
    Ok(Json(st.registry.applications(&query).await?).into_response())
}

async fn visible(st: &AppState, caller: &Caller, id: &str) -> ApiResult<Application> {
    let app = st.registry.application(parse_uuid("id", id)?).await?;
    caller.see(&app.areas)?;
    Ok(app)
}

/// One application.
#[utoipa::path(get, path = "/api/v1/residence/applications/{id}", tag = "residence",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = Application),
        (status = 404, description = "no such application (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let app = visible(&st, &caller, &id).await?;
    Ok(targeted(StatusCode::OK, &app, app.person_key))
}

/// Accept a submitted application as complete (tiếp nhận hồ sơ).
#[utoipa::path(post, path = "/api/v1/residence/applications/{id}/receive", tag = "residence",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = Application),
        (status = 404, description = "no such application (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not in the submitted state", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn receive(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let app = visible(&st, &caller, &id).await?;
    let target = Some(app.person_key.to_string());
    let entry = audit::for_change(&st, &caller, "residence.receive", &headers, &ctx, target, StatusCode::OK);
    let app = st.registry.receive(app.id, caller.username(), entry).await?;
    let mut res = targeted(StatusCode::OK, &app, app.person_key);
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}

/// The decision on a received application.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecideApplication {
    pub decision: Verdict,
    /// Required to reject (lý do từ chối).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Approve (the change is applied in the same transaction: person record, residence history,
/// household) or reject with a reason.
#[utoipa::path(post, path = "/api/v1/residence/applications/{id}/decision", tag = "residence",
    request_body = DecideApplication,
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = Application),
        (status = 404, description = "no such application (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not received, decided already, or the register changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "refused by a rule against the register now, or no reason", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecideApplication>,
) -> ApiResult<Response> {
    let app = visible(&st, &caller, &id).await?;
    let target = Some(app.person_key.to_string());
    let entry = audit::for_change(&st, &caller, "residence.decide", &headers, &ctx, target, StatusCode::OK);
    let app = st.registry.decide_application(app.id, body.decision, body.reason, caller.username(), entry).await?;
    let mut res = targeted(StatusCode::OK, &app, app.person_key);
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}

/// A household: number, address, head, members and their history.
#[utoipa::path(get, path = "/api/v1/households/{id}", tag = "residence",
    params(("id" = String, Path, description = "the household's key")),
    responses(
        (status = 200, body = Household),
        (status = 404, description = "no such household (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn household(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let h = st.registry.household(parse_uuid("id", &id)?).await?;
    caller.see(&dancu_core::access::residence_areas([&h.address]))?;
    let mut res = Json(&h).into_response();
    if let Some(head) = h.head {
        res.extensions_mut().insert(AuditTarget(head.to_string()));
    }
    Ok(res)
}

/// A person's residence history.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ResidenceHistory {
    /// Where the person lived on `on` (when asked).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on: Option<ResidenceOn>,
    /// Every residence, as recorded now (or at `as_of`).
    pub residences: Vec<ResidenceRow>,
}

/// Residence history of a person; `on=D`: where they lived on D; `as_of=T`: as the register
/// said at time T (bitemporal).
#[utoipa::path(get, path = "/api/v1/persons/{ref}/residences", tag = "residence",
    params(("ref" = String, Path, description = "12-digit personal ID, or the record key"),
           ("on" = Option<String>, Query, description = "a day, YYYY-MM-DD"),
           ("as_of" = Option<String>, Query, description = "RFC 3339 time: the register as recorded then")),
    responses(
        (status = 200, body = ResidenceHistory),
        (status = 404, description = "no such person (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn residences(
    State(st): State<AppState>,
    caller: Caller,
    Path(r): Path<String>,
    q: QueryPairs,
) -> ApiResult<Response> {
    q.check(&["on", "as_of"])?;
    let on = q.get("on").map(|d| parse_day("on", d)).transpose()?;
    let as_of = q
        .get("as_of")
        .map(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad_param("as_of", "invalid_time", "an RFC 3339 time", t))
        })
        .transpose()?;
    let rec = st.registry.get(&crate::persons::parse_ref(&r)?).await?;
    caller.see(&rec.person.areas())?;
    let rows = st.registry.residence_history(rec.key, as_of).await?;
    let on = on.map(|d| ResidenceOn { on: d, residences: rows.iter().filter(|x| x.holds_on(d)).cloned().collect() });
    Ok(targeted(StatusCode::OK, &ResidenceHistory { on, residences: rows }, rec.key))
}

/// Who lived at an address on a day.
#[utoipa::path(get, path = "/api/v1/residence/at-address", tag = "residence",
    params(("scheme" = Option<String>, Query, description = "2025 (default) or legacy"),
           ("commune_code" = String, Query, description = "five-digit commune code"),
           ("detail" = Option<String>, Query, description = "house number, street (exact); omitted: the whole commune"),
           ("on" = String, Query, description = "a day, YYYY-MM-DD")),
    responses(
        (status = 200, description = "residences holding on that day", body = Vec<ResidenceRow>),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "the address lies outside your area", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn at_address(State(st): State<AppState>, caller: Caller, q: QueryPairs) -> ApiResult<Response> {
    q.check(&["scheme", "commune_code", "detail", "on"])?;
    let scheme = match q.get("scheme") {
        None => Scheme::Y2025,
        Some(s) => Scheme::from_code(s).ok_or_else(|| bad_param("scheme", "unknown_scheme", "2025 or legacy", s))?,
    };
    let code = q.get("commune_code").ok_or_else(|| bad_param("commune_code", "required", "the commune code", ""))?;
    let on = parse_day("on", q.get("on").unwrap_or_default())?;
    let address =
        Address { scheme, commune_code: code.to_string(), detail: q.get("detail").map(dancu_core::text::clean) };
    if address.commune().is_none() {
        return Err(bad_param("commune_code", "unknown_code", "not a commune code of the list", code));
    }
    caller.see(&dancu_core::access::residence_areas([&address]))?;
    let rows = st.registry.residents_at(&address, on).await?;
    Ok(Json(rows).into_response())
}

// ---------------------------------------------------------------------------------------------
// Residence confirmation.

fn unit_name(a: &Address) -> String {
    let Some(c) = a.commune() else { return a.commune_code.clone() };
    let province = dancu_core::reference::province(a.scheme, &c.province_code).map(|p| p.name.as_str()).unwrap_or("");
    format!("{}, {province}", c.name)
}

pub(crate) fn address_text(a: &Address) -> String {
    match &a.detail {
        Some(d) => format!("{d}, {}", unit_name(a)),
        None => unit_name(a),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn relationship_vi(r: dancu_core::person::HeadRelationship) -> &'static str {
    use dancu_core::person::HeadRelationship::*;
    match r {
        Head => "Chủ hộ",
        Spouse => "Vợ/chồng",
        Child => "Con",
        Parent => "Cha/mẹ",
        Grandchild => "Cháu",
        Grandparent => "Ông/bà",
        Sibling => "Anh/chị/em",
        ChildInLaw => "Con dâu/con rể",
        OtherRelative => "Họ hàng khác",
        NotRelated => "Không có quan hệ họ hàng",
    }
}

/// A residence confirmation, signed: what the HTML and the PDF views print.
struct Confirmation {
    person_key: Uuid,
    statement: ConfirmationStatement,
    code: String,
    short: String,
    key_id: String,
    /// (label, value) in print order.
    rows: Vec<(&'static str, String)>,
}

impl Confirmation {
    fn issued(&self) -> String {
        self.statement.issued_on.format(time::macros::format_description!("[day]/[month]/[year]")).unwrap_or_default()
    }
    fn qr(&self) -> ApiResult<qrcode::QrCode> {
        qrcode::QrCode::with_error_correction_level(self.code.as_bytes(), qrcode::EcLevel::L)
            .map_err(|_| ApiError::internal())
    }
}

async fn confirm(st: &AppState, caller: &Caller, r: &str) -> ApiResult<Confirmation> {
    let rec = st.registry.get(&crate::persons::parse_ref(r)?).await?;
    caller.see(&rec.person.areas())?;
    let Some(key) = st.confirmation_key.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-signing-key",
            "Chưa cấu hình khóa ký / No signing key",
            "the server has no residence confirmation key",
        ));
    };
    let Some(personal_id) = rec.person.personal_id else {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "No personal ID",
            FieldError::new("ref", "no_personal_id", "a confirmation is issued for a person with a personal ID"),
        ));
    };
    let p = &rec.person.record;
    let statement = ConfirmationStatement {
        v: 1,
        personal_id,
        name: p.name.full(),
        permanent_residence: p.permanent_residence.clone(),
        temporary_residence: p.temporary_residence.clone(),
        household_number: p.residence_file_number.clone(),
        household_head: p.household.as_ref().map(|h| h.head_name.clone()),
        relationship_to_head: p.household.as_ref().map(|h| h.relationship_to_head),
        issued_on: dancu_store::registry::today(),
        issued_by: caller.officer.unit.code_str(),
    };
    let sig = key.sign(&statement.to_message()).map_err(|_| ApiError::internal())?;
    let none = || "Không có (none)".to_string();
    let mut rows = vec![
        ("Họ, chữ đệm và tên (Full name)", statement.name.clone()),
        ("Số định danh cá nhân (Personal ID)", personal_id.as_str().to_string()),
        ("Ngày sinh (Date of birth)", p.birth_date.to_vietnamese()),
        ("Nơi thường trú (Permanent residence)", p.permanent_residence.as_ref().map(address_text).unwrap_or_else(none)),
        ("Nơi tạm trú (Temporary residence)", p.temporary_residence.as_ref().map(address_text).unwrap_or_else(none)),
    ];
    if let Some(h) = &p.household {
        rows.push(("Họ tên chủ hộ (Household head)", h.head_name.clone()));
        rows.push(("Quan hệ với chủ hộ (Relationship to head)", relationship_vi(h.relationship_to_head).to_string()));
    }
    if let Some(n) = &p.residence_file_number {
        rows.push(("Số hồ sơ cư trú (Residence file number)", n.clone()));
    }
    Ok(Confirmation {
        person_key: rec.key,
        code: statement.code(&sig),
        short: dancu_core::residence::short_code(&sig),
        key_id: key.key_id().to_string(),
        statement,
        rows,
    })
}

/// The print view of a residence confirmation (HTML; the same document as a PDF file at
/// `residence-confirmation.pdf`). The QR code holds the signed statement; anyone can check it
/// at `/api/v1/residence-confirmations/verify`.
#[utoipa::path(get, path = "/api/v1/persons/{ref}/residence-confirmation", tag = "residence",
    params(("ref" = String, Path, description = "12-digit personal ID, or the record key")),
    responses(
        (status = 200, description = "the confirmation, HTML print view", content_type = "text/html"),
        (status = 404, description = "no such person (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the person has no personal ID", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "no signing key configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn confirmation(State(st): State<AppState>, caller: Caller, Path(r): Path<String>) -> ApiResult<Response> {
    let c = confirm(&st, &caller, &r).await?;
    let svg = c.qr()?.render::<qrcode::render::svg::Color>().min_dimensions(220, 220).build();
    let rows: String =
        c.rows.iter().map(|(label, value)| format!("<tr><th>{label}</th><td>{}</td></tr>", esc(value))).collect();
    let html = format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\"><title>Xác nhận thông tin về cư trú</title><link rel=\"icon\" href=\"data:,\">\
<style>body{{font-family:'Times New Roman',serif;max-width:190mm;margin:12mm auto;color:#000}}\
h1{{text-align:center;font-size:16pt}}.c{{text-align:center}}table{{border-collapse:collapse;width:100%}}\
th,td{{border:1px solid #000;padding:4px 6px;text-align:left;vertical-align:top}}th{{width:45%;font-weight:normal}}\
.v{{display:flex;gap:12px;align-items:center;margin-top:12px}}code{{word-break:break-all;font-size:7pt}}\
@media print{{@page{{size:A4;margin:12mm}}}}</style></head><body>\
<p class=\"c\"><b>CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM</b><br>Độc lập - Tự do - Hạnh phúc</p>\
<h1>XÁC NHẬN THÔNG TIN VỀ CƯ TRÚ<br><small>Confirmation of residence information</small></h1>\
<table>{rows}</table>\
<p>Ngày cấp (Issued on): {issued} · Đơn vị cấp (Issued by): {unit}</p>\
<div class=\"v\">{svg}<div><p>Mã xác minh (Verification reference): <b>{short}</b></p>\
<p>Quét mã QR hoặc nhập mã đầy đủ dưới đây tại /api/v1/residence-confirmations/verify để kiểm tra \
(scan the QR code, or enter the full code below, to verify). Khóa ký (signing key): {kid}</p>\
<p><code>{code}</code></p></div></div></body></html>",
        issued = c.issued(),
        unit = esc(&c.statement.issued_by),
        short = c.short,
        kid = esc(&c.key_id),
        code = esc(&c.code),
    );
    let mut res = Html(html).into_response();
    res.extensions_mut().insert(AuditTarget(c.person_key.to_string()));
    Ok(res)
}

/// The residence confirmation as a PDF file (A4, Vietnamese text in an embedded font), with the
/// same signed QR code, short reference and full code as the print view.
#[utoipa::path(get, path = "/api/v1/persons/{ref}/residence-confirmation.pdf", tag = "residence",
    params(("ref" = String, Path, description = "12-digit personal ID, or the record key")),
    responses(
        (status = 200, description = "the confirmation, PDF", content_type = "application/pdf"),
        (status = 404, description = "no such person (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "the person has no personal ID", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "no signing key configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn confirmation_pdf(
    State(st): State<AppState>,
    caller: Caller,
    Path(r): Path<String>,
) -> ApiResult<Response> {
    use crate::pdf::{A4, Page, wrap};
    let c = confirm(&st, &caller, &r).await?;
    let (left, right) = (56.0, A4.0 - 56.0);
    let mid = A4.0 / 2.0;
    let mut pg = Page::new();
    let mut y = A4.1 - 64.0;
    pg.centered(mid, y, 12.0, "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM");
    y -= 16.0;
    pg.centered(mid, y, 11.0, "Độc lập - Tự do - Hạnh phúc");
    y -= 40.0;
    pg.centered(mid, y, 15.0, "XÁC NHẬN THÔNG TIN VỀ CƯ TRÚ");
    y -= 16.0;
    pg.centered(mid, y, 10.0, "Confirmation of residence information");
    y -= 28.0;
    let label_w = 210.0;
    pg.line(left, y + 12.0, right, y + 12.0);
    for (label, value) in &c.rows {
        let labels = wrap(label, 9.5, label_w - 8.0);
        let values = wrap(value, 10.5, right - left - label_w - 8.0);
        let n = labels.len().max(values.len());
        for (i, l) in labels.iter().enumerate() {
            pg.text(left + 4.0, y - 14.0 * i as f32, 9.5, l);
        }
        for (i, v) in values.iter().enumerate() {
            pg.text(left + label_w + 4.0, y - 14.0 * i as f32, 10.5, v);
        }
        y -= 14.0 * n as f32 + 6.0;
        pg.line(left, y + 12.0, right, y + 12.0);
    }
    y -= 8.0;
    pg.text(
        left,
        y,
        10.0,
        &format!("Ngày cấp (Issued on): {} · Đơn vị cấp (Issued by): {}", c.issued(), c.statement.issued_by),
    );
    y -= 24.0;
    // The QR code, 4 modules of quiet zone included in the size.
    let qr = c.qr()?;
    let n = qr.width();
    let size = 170.0;
    let module = size / (n as f32 + 8.0);
    let (qx, qy) = (left, y - size);
    for (i, color) in qr.to_colors().iter().enumerate() {
        if *color == qrcode::Color::Dark {
            let (col, row) = ((i % n) as f32, (i / n) as f32);
            pg.rect(qx + module * (col + 4.0), qy + size - module * (row + 5.0), module, module);
        }
    }
    let tx = left + size + 16.0;
    let tw = right - tx;
    let mut ty = y - 12.0;
    pg.text(tx, ty, 10.0, "Mã xác minh (Verification reference):");
    ty -= 16.0;
    pg.text(tx, ty, 13.0, &c.short);
    ty -= 20.0;
    let note = "Quét mã QR hoặc nhập mã đầy đủ dưới đây tại /api/v1/residence-confirmations/verify để kiểm tra \
                (scan the QR code, or enter the full code below, to verify).";
    for l in wrap(note, 8.5, tw) {
        pg.text(tx, ty, 8.5, &l);
        ty -= 11.0;
    }
    pg.text(tx, ty, 8.5, &format!("Khóa ký (signing key): {}", c.key_id));
    y = ty.min(qy) - 18.0;
    pg.text(left, y, 8.0, "Mã đầy đủ (full code):");
    y -= 11.0;
    for l in wrap(&c.code, 6.5, right - left) {
        pg.text(left, y, 6.5, &l);
        y -= 8.5;
    }
    let pdf = pg.finish("Xác nhận thông tin về cư trú").ok_or_else(ApiError::internal)?;
    let mut res = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/pdf")),
            (header::CONTENT_DISPOSITION, HeaderValue::from_static("inline; filename=\"xac-nhan-cu-tru.pdf\"")),
        ],
        pdf,
    )
        .into_response();
    res.extensions_mut().insert(AuditTarget(c.person_key.to_string()));
    Ok(res)
}

/// The result of a verification.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Verification {
    pub valid: bool,
    /// What the signed confirmation states.
    pub statement: ConfirmationStatement,
    pub key_id: String,
    /// The short reference printed on the document.
    pub reference: String,
}

/// Check a residence confirmation code (public): the signature must verify with the server's
/// confirmation key. A forged or altered code is refused with the reason.
#[utoipa::path(get, path = "/api/v1/residence-confirmations/verify", tag = "residence",
    security(()),
    params(("code" = String, Query, description = "the full code (QR content)")),
    responses(
        (status = 200, description = "genuine", body = Verification),
        (status = 400, description = "no code", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not genuine: malformed, altered or forged", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "no signing key configured", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Response> {
    q.check(&["code"])?;
    let code = q.get("code").ok_or_else(|| bad_param("code", "required", "the confirmation code", ""))?;
    let Some(key) = st.confirmation_key.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no-signing-key",
            "Chưa cấu hình khóa ký / No signing key",
            "the server has no residence confirmation key",
        ));
    };
    let refuse = |reason: String| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid-confirmation",
            "Mã xác nhận không hợp lệ / Not a genuine confirmation",
            FieldError::new("code", "invalid_confirmation", reason),
        )
    };
    let (statement, message, sig) = ConfirmationStatement::parse_code(code).map_err(|e| refuse(e.to_string()))?;
    if !dancu_keys::verify(key.public_key_der(), &message, &sig) {
        return Err(refuse("the signature does not match the statement: the code was altered or forged".into()));
    }
    let body = Verification {
        valid: true,
        reference: dancu_core::residence::short_code(&sig),
        statement,
        key_id: key.key_id().to_string(),
    };
    Ok(Json(body).into_response())
}

// ---------------------------------------------------------------------------------------------
// The 2025 reform's address review queue.

/// Address reviews of the people in the caller's area: legacy addresses of partially merged
/// communes (`dancu addresses migrate`), oldest first.
#[utoipa::path(get, path = "/api/v1/address-reviews", tag = "residence",
    params(("state" = Option<String>, Query, description = "pending (default), resolved or all"),
           ("person" = Option<String>, Query, description = "record key of the person"),
           ("page" = Option<u32>, Query, description = "page number from 1"),
           ("per_page" = Option<u32>, Query, description = "1-200, default 50")),
    responses(
        (status = 200, description = "address reviews", body = Vec<dancu_store::AddressReview>),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn address_reviews(State(st): State<AppState>, caller: Caller, q: QueryPairs) -> ApiResult<Response> {
    q.check(&["state", "person", "page", "per_page"])?;
    let (offset, limit) = q.paging(200, 50)?;
    let pending = match q.get("state").unwrap_or("pending") {
        "pending" => Some(true),
        "resolved" => Some(false),
        "all" => None,
        s => return Err(bad_param("state", "unknown_state", "pending, resolved or all", s)),
    };
    let person_key = q.get("person").map(|p| parse_uuid("person", p)).transpose()?;
    let query = dancu_store::AddressReviewQuery { pending, area: caller.area(), person_key, offset, limit };
    Ok(Json(st.registry.address_reviews(&query).await?).into_response())
}

/// The decision on an address review.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveAddressReview {
    /// The 2025 commune chosen among the review's candidates.
    pub commune_code: String,
}

/// Resolve an address review: the person's address (`field`: permanent_residence,
/// temporary_residence or current_residence) moves to the chosen 2025 commune, a new version of
/// the record (its history keeps the legacy code); audited.
#[utoipa::path(post, path = "/api/v1/persons/{ref}/address-reviews/{field}", tag = "residence",
    request_body = ResolveAddressReview,
    params(("ref" = String, Path, description = "12-digit personal ID, or the record key"),
           ("field" = String, Path, description = "permanent_residence, temporary_residence or current_residence")),
    responses(
        (status = 200, description = "resolved", body = dancu_store::AddressReview),
        (status = 404, description = "no such person or review (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "resolved already, or the address changed since", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not a candidate commune, or outside your area", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn resolve_address_review(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path((r, field)): Path<(String, String)>,
    ApiJson(body): ApiJson<ResolveAddressReview>,
) -> ApiResult<Response> {
    let rec = st.registry.get(&crate::persons::parse_ref(&r)?).await?;
    caller.see(&rec.person.areas())?;
    let target = Some(rec.key.to_string());
    let entry = audit::for_change(&st, &caller, "address_review.resolve", &headers, &ctx, target, StatusCode::OK);
    let review = st
        .registry
        .resolve_address_review(
            rec.key,
            &field,
            body.commune_code.trim(),
            caller.username(),
            |a| caller.governs(a),
            entry,
        )
        .await?;
    let mut res = targeted(StatusCode::OK, &review, rec.key);
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}
