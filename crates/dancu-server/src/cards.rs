//! Identity-card endpoints: applications and their workflow (with the overdue list and the
//! citizen's status lookup), production centres (stock, backlog, throughput, alerts, running
//! the queue), cards and their states, the card faces for the printer (SVG), the chip files,
//! and the partner check "is this card valid now?".
//! Thin handlers: the rules live in `dancu_store::cards` and `dancu_card::application`.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dancu_card::application::{ApplicationKind, CardState, Stage, WorkflowError};
use dancu_core::FieldError;
use dancu_core::sharing::{b64url, b64url_decode};
use dancu_store::cards::{
    Card, CardApplication, CardApplicationQuery, CardServiceError, Centre, CentreStatus, ChipRecord, NewCardApplication,
};
use dancu_store::registry::today;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, AuditRecorded, AuditTarget, RequestContext};
use crate::auth::Caller;
use crate::extract::{ApiJson, QueryPairs, bad_param, optional_note};
use crate::problem::{ApiError, ApiResult, Problem};

/// What chips are verified against: the Country Signing CA certificates and their CRLs.
pub struct CardTrust {
    pub cscas: Vec<dancu_card::Certificate>,
    pub crls: Vec<dancu_card::CertificateList>,
}

impl From<CardServiceError> for ApiError {
    fn from(e: CardServiceError) -> Self {
        let detail = e.to_string();
        match e {
            CardServiceError::NotFound => ApiError::not_found(),
            CardServiceError::Invalid(f) => {
                ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "validation", "The request has invalid fields", f)
            }
            CardServiceError::Workflow(w) => match w {
                WorkflowError::Transition { .. } => {
                    ApiError::new(StatusCode::CONFLICT, "state", "Not possible in the current state", detail)
                }
                WorkflowError::Role { .. } => {
                    ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Not permitted", detail)
                }
                WorkflowError::SameOfficer(_) => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "same-officer",
                    "Người xác minh không được phê duyệt / The verifier cannot approve",
                    detail,
                ),
                WorkflowError::UnderMinimumAge { age } => ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "under-minimum-age",
                    "Chưa đủ 14 tuổi / Under 14: a card only on request",
                    FieldError::new("requested_under_14", "under_minimum_age", detail).with_value(age.to_string()),
                ),
                WorkflowError::OpenApplication(_) => ApiError::new(
                    StatusCode::CONFLICT,
                    "open-application",
                    "Đã có hồ sơ đang xử lý / An application is already open",
                    detail,
                ),
                WorkflowError::RenewalNotDue { .. } => ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "renewal-not-due",
                    "Chưa đến hạn đổi thẻ / No renewal is due",
                    FieldError::new("kind", "renewal_not_due", detail),
                ),
                WorkflowError::OutOfStock { .. } => {
                    ApiError::new(StatusCode::CONFLICT, "out-of-stock", "Hết phôi thẻ / No blank cards left", detail)
                }
                WorkflowError::Invalid(_) => ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "The request has invalid fields",
                    FieldError::new("kind", "not_allowed", detail),
                ),
            },
            CardServiceError::Signer(_) => ApiError::new(
                StatusCode::CONFLICT,
                "signer-unusable",
                "Khóa ký DS không dùng được / The Document Signer cannot sign",
                detail,
            ),
            CardServiceError::Card(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "card-data",
                "The record cannot be put on a card",
                detail,
            ),
            CardServiceError::Store(s) => s.into(),
        }
    }
}

fn parse_uuid(field: &str, s: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| bad_param(field, "invalid_reference", "a key (UUID)", s))
}

fn targeted(status: StatusCode, body: &impl Serialize, person: Uuid) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.extensions_mut().insert(AuditTarget(person.to_string()));
    res
}

fn recorded(status: StatusCode, body: &impl Serialize, person: Uuid) -> Response {
    let mut res = targeted(status, body, person);
    res.extensions_mut().insert(AuditRecorded);
    res
}

/// Standard or URL-safe base64, padded or not.
fn base64_field(field: &str, s: &str) -> ApiResult<Vec<u8>> {
    let url: String = s
        .trim_end_matches('=')
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            c => c,
        })
        .collect();
    b64url_decode(&url).ok_or_else(|| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request has invalid fields",
            FieldError::new(field, "invalid_base64", "not base64").with_value(format!("{} characters", s.len())),
        )
    })
}

/// Standard base64 with padding (data URIs).
fn base64_std(bytes: &[u8]) -> String {
    let mut s: String = b64url(bytes)
        .chars()
        .map(|c| {
            if c == '-' {
                '+'
            } else if c == '_' {
                '/'
            } else {
                c
            }
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

// ---------------------------------------------------------------------------------------------
// Applications

/// A new card application, as taken at the counter.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyBody {
    /// The person: 12-digit personal ID or record key.
    pub person: String,
    /// `{"kind": "first_issue"}`, `{"kind": "renewal"}`, `{"kind": "replacement", "reason":
    /// "identity_change" | "gender_transition" | "wrong_information" | "administrative_rearrangement" |
    /// "id_reestablished" | "holder_request"}`, `{"kind": "reissue", "reason": "lost" | "damaged"}`.
    #[schema(value_type = Object)]
    pub kind: ApplicationKind,
    /// A card for a child under 14, requested by the parent or guardian.
    #[serde(default)]
    pub requested_under_14: bool,
    /// The face photo: a JPEG (at most 64 KiB, at least 240 × 320), base64.
    pub photo: String,
    /// Fingerprint images: JPEG (at most 512 KiB each, up to 10), base64.
    #[serde(default)]
    pub fingerprints: Vec<String>,
}

/// Take a card application (tiếp nhận hồ sơ cấp thẻ). The deadline is 7 working days.
#[utoipa::path(post, path = "/api/v1/card-applications", tag = "cards",
    request_body = ApplyBody,
    responses(
        (status = 201, description = "received", body = CardApplication),
        (status = 404, description = "no such person (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "the person has an open application", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a bad photo or fingerprint, under 14 without request, no renewal due", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn apply(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<ApplyBody>,
) -> ApiResult<Response> {
    let person = crate::persons::parse_ref(&body.person).map_err(|mut e| {
        for f in &mut e.errors {
            f.field = "person".into();
        }
        e
    })?;
    let photo = base64_field("photo", &body.photo)?;
    let fingerprints = body
        .fingerprints
        .iter()
        .enumerate()
        .map(|(i, f)| base64_field(&format!("fingerprints[{i}]"), f))
        .collect::<ApiResult<Vec<_>>>()?;
    let new = NewCardApplication {
        person,
        kind: body.kind,
        requested_under_14: body.requested_under_14,
        photo,
        fingerprints,
    };
    let entry = audit::for_change(&st, &caller, "card.apply", &headers, &ctx, None, StatusCode::CREATED);
    let app = st.registry.card_apply(new, caller.username(), |areas| caller.governs(areas), entry).await?;
    let mut res = recorded(StatusCode::CREATED, &app, app.person_key);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/card-applications/{}", app.id)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Card applications of the caller's area, earliest deadline first; `overdue=true`: those
/// still being worked on after their deadline.
#[utoipa::path(get, path = "/api/v1/card-applications", tag = "cards",
    params(("stage" = Option<String>, Query, description = "received, verified, approved, queued, personalized, quality_checked, dispatched, delivered, returned or cancelled"),
           ("overdue" = Option<bool>, Query, description = "only applications past their deadline"),
           ("centre" = Option<String>, Query, description = "production centre"),
           ("person" = Option<String>, Query, description = "record key of the person"),
           ("page" = Option<u32>, Query, description = "page number from 1"),
           ("per_page" = Option<u32>, Query, description = "1-200, default 50")),
    responses(
        (status = 200, description = "applications", body = Vec<CardApplication>),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(st): State<AppState>, caller: Caller, q: QueryPairs) -> ApiResult<Response> {
    q.check(&["stage", "overdue", "centre", "person", "page", "per_page"])?;
    let (offset, limit) = q.paging(200, 50)?;
    let stage = q
        .get("stage")
        .map(|s| Stage::from_code(s).ok_or_else(|| bad_param("stage", "unknown_stage", "a workflow stage", s)))
        .transpose()?;
    let overdue_on = match q.get("overdue") {
        None | Some("false") => None,
        Some("true") => Some(today()),
        Some(o) => return Err(bad_param("overdue", "invalid_boolean", "true or false", o)),
    };
    let person_key = q.get("person").map(|p| parse_uuid("person", p)).transpose()?;
    let query = CardApplicationQuery {
        stage,
        overdue_on,
        centre: q.get("centre").map(str::to_string),
        person_key,
        area: caller.area(),
        offset,
        limit,
    };
    Ok(Json(st.registry.store().card_applications(&query).await?).into_response())
}

async fn person_areas(st: &AppState, key: Uuid) -> ApiResult<Vec<String>> {
    let rec = st.registry.get(&dancu_store::PersonRef::Key(key)).await?;
    Ok(rec.person.areas())
}

pub(crate) async fn visible(st: &AppState, caller: &Caller, id: &str) -> ApiResult<CardApplication> {
    let app = st.registry.card_application(parse_uuid("id", id)?).await?;
    caller.see(&person_areas(st, app.person_key).await?)?;
    Ok(app)
}

/// One card application with its steps.
#[utoipa::path(get, path = "/api/v1/card-applications/{id}", tag = "cards",
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = CardApplication),
        (status = 404, description = "no such application (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let app = visible(&st, &caller, &id).await?;
    Ok(targeted(StatusCode::OK, &app, app.person_key))
}

/// The next step of an application.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepBody {
    /// verified (verifier), approved (approver — not the verifier), queued (card operator, with
    /// `centre`), quality_checked / dispatched (production operator), delivered / returned /
    /// cancelled (card operator; returned and cancelled with a `note`).
    #[schema(value_type = String)]
    pub to: Stage,
    #[serde(default)]
    pub note: Option<String>,
    #[serde(default)]
    pub centre: Option<String>,
}

/// Move an application to its next stage (personalization is done by the production run).
#[utoipa::path(post, path = "/api/v1/card-applications/{id}/steps", tag = "cards",
    request_body = StepBody,
    params(("id" = String, Path, description = "the application's id")),
    responses(
        (status = 200, body = CardApplication),
        (status = 403, description = "the step needs another role, or the approver verified it", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such application (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not a step from the current stage", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "a missing note or centre", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn step(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StepBody>,
) -> ApiResult<Response> {
    let app = visible(&st, &caller, &id).await?;
    let note = optional_note("note", body.note.as_deref())?;
    let target = Some(app.person_key.to_string());
    let entry = audit::for_change(&st, &caller, "card.step", &headers, &ctx, target, StatusCode::OK);
    let app =
        st.registry.card_step(app.id, body.to, caller.username(), &caller.acting, note, body.centre, entry).await?;
    Ok(recorded(StatusCode::OK, &app, app.person_key))
}

/// What a citizen sees of an application: its stage and dates, no personal data.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CardStatus {
    pub number: String,
    /// The stage code (`received`, … `delivered`).
    pub stage: String,
    /// The stage in Vietnamese.
    pub trang_thai: String,
    #[schema(format = Date)]
    pub received_on: String,
    #[schema(format = Date)]
    pub due_on: String,
    #[schema(format = DateTime)]
    pub updated_at: String,
}

/// The status of a card application by its number (the citizen's receipt): stage and dates only.
#[utoipa::path(get, path = "/api/v1/card-status/{number}", tag = "cards", security(()),
    params(("number" = String, Path, description = "the application number (12 digits)")),
    responses(
        (status = 200, body = CardStatus),
        (status = 400, description = "not an application number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such application", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn status(State(st): State<AppState>, Path(number): Path<String>) -> ApiResult<Response> {
    if number.len() != 12 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad_param("number", "invalid_number", "12 digits", &number));
    }
    let app = st.registry.store().card_application_by_number(&number).await?.ok_or_else(ApiError::not_found)?;
    let rfc = |t: time::OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let body = CardStatus {
        number: app.number.clone(),
        stage: app.stage.code().into(),
        trang_thai: app.stage.vietnamese().into(),
        received_on: dancu_core::date::iso_date::format(
            app.received_at.to_offset(dancu_store::registry::VIETNAM_OFFSET).date(),
        ),
        due_on: dancu_core::date::iso_date::format(app.due_on),
        updated_at: rfc(app.updated_at()),
    };
    Ok(targeted(StatusCode::OK, &body, app.person_key))
}

// ---------------------------------------------------------------------------------------------
// Production

/// Production centres: stock, backlog, throughput and open alerts (the dashboard).
#[utoipa::path(get, path = "/api/v1/production/centres", tag = "cards",
    responses((status = 200, body = Vec<CentreStatus>)))]
pub async fn centres(State(st): State<AppState>) -> ApiResult<Response> {
    Ok(Json(st.registry.store().centres(time::OffsetDateTime::now_utc()).await?).into_response())
}

/// Register a production centre with its stock of blank cards.
#[utoipa::path(post, path = "/api/v1/production/centres", tag = "cards",
    request_body = Centre,
    responses(
        (status = 201, body = Centre),
        (status = 409, description = "the id is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "an invalid field", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn add_centre(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Centre>,
) -> ApiResult<Response> {
    let entry = audit::for_change(&st, &caller, "production.centre_add", &headers, &ctx, None, StatusCode::CREATED);
    st.registry.centre_add(&body, entry).await?;
    let mut res = (StatusCode::CREATED, Json(&body)).into_response();
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}

/// Blank cards delivered to a centre.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestockBody {
    pub cards: i64,
}

/// Add blank cards to a centre's stock; its alert is resolved and its queue runs again.
#[utoipa::path(post, path = "/api/v1/production/centres/{id}/restock", tag = "cards",
    request_body = RestockBody,
    params(("id" = String, Path, description = "the centre")),
    responses(
        (status = 204, description = "restocked"),
        (status = 404, description = "no such centre", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not 1 to 10,000,000 cards", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn restock(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RestockBody>,
) -> ApiResult<Response> {
    let entry = audit::for_change(&st, &caller, "production.restock", &headers, &ctx, None, StatusCode::NO_CONTENT);
    st.registry.centre_restock(&id, body.cards, entry).await?;
    let mut res = StatusCode::NO_CONTENT.into_response();
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}

/// How much of the queue to run.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunBody {
    /// At most this many cards (1-1000, default 100).
    #[serde(default)]
    pub max: Option<u32>,
}

/// What a production run did.
#[derive(Serialize, utoipa::ToSchema)]
pub struct RunResult {
    pub personalized: Vec<Card>,
    /// The centre ran out of blank cards: the rest of the queue waits for a restock.
    pub stopped_out_of_stock: bool,
}

/// Run a centre's queue: personalize queued applications (MRZ, EF.COM, DG1, DG2, DG13, EF.SOD
/// signed by the Document Signer), each taking one blank card in its own transaction; stops
/// when the stock runs out (raising the centre's alert).
#[utoipa::path(post, path = "/api/v1/production/centres/{id}/run", tag = "cards",
    request_body = RunBody,
    params(("id" = String, Path, description = "the centre")),
    responses(
        (status = 200, body = RunResult),
        (status = 404, description = "no such centre", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "no usable Document Signer (none configured, or past its key usage period)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn run(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RunBody>,
) -> ApiResult<Response> {
    let max = body.max.unwrap_or(100);
    if !(1..=1000).contains(&max) {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request has invalid fields",
            FieldError::new("max", "out_of_range", "1 to 1000").with_value(max.to_string()),
        ));
    }
    if !st.registry.store().centres(time::OffsetDateTime::now_utc()).await?.iter().any(|c| c.id == id) {
        return Err(ApiError::not_found());
    }
    let Some(signer) = st.card_signer.clone() else {
        return Err(CardServiceError::Signer("the server has no Document Signer (serve --pki DIR)".into()).into());
    };
    let entry = audit::for_change(&st, &caller, "card.personalize", &headers, &ctx, None, StatusCode::OK);
    let (made, stopped) = st.registry.card_produce(&id, max, &signer, caller.username(), entry).await?;
    let mut res = Json(RunResult { personalized: made.clone(), stopped_out_of_stock: stopped }).into_response();
    if !made.is_empty() {
        res.extensions_mut().insert(AuditRecorded);
    }
    Ok(res)
}

// ---------------------------------------------------------------------------------------------
// Cards

/// A card as an officer reads it: `state` is the state today (an active card past its expiry
/// reads `expired`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct CardView {
    #[serde(flatten)]
    pub card: Card,
    #[schema(value_type = String)]
    pub state_today: CardState,
    pub trang_thai: String,
}

fn view(card: Card) -> CardView {
    let s = card.state_on(today());
    CardView { card, state_today: s, trang_thai: s.vietnamese().into() }
}

pub(crate) async fn visible_card(st: &AppState, caller: &Caller, serial: &str) -> ApiResult<Card> {
    let card = st.registry.store().card_get(serial).await?.ok_or_else(ApiError::not_found)?;
    caller.see(&person_areas(st, card.person_key).await?)?;
    Ok(card)
}

/// A person's cards, newest first.
#[utoipa::path(get, path = "/api/v1/persons/{ref}/cards", tag = "cards",
    params(("ref" = String, Path, description = "personal ID or record key")),
    responses(
        (status = 200, body = Vec<CardView>),
        (status = 404, description = "no such person (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn person_cards(State(st): State<AppState>, caller: Caller, Path(r): Path<String>) -> ApiResult<Response> {
    let rec = st.registry.get(&crate::persons::parse_ref(&r)?).await?;
    caller.see(&rec.person.areas())?;
    let cards: Vec<CardView> = st.registry.store().cards_of(rec.key).await?.into_iter().map(view).collect();
    Ok(targeted(StatusCode::OK, &cards, rec.key))
}

/// One card.
#[utoipa::path(get, path = "/api/v1/cards/{serial}", tag = "cards",
    params(("serial" = String, Path, description = "the card's serial")),
    responses(
        (status = 200, body = CardView),
        (status = 404, description = "no such card (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn card(State(st): State<AppState>, caller: Caller, Path(serial): Path<String>) -> ApiResult<Response> {
    let card = visible_card(&st, &caller, &serial).await?;
    let key = card.person_key;
    Ok(targeted(StatusCode::OK, &view(card), key))
}

/// A change of a card's state.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateBody {
    /// retained, revoked, lost (from active); active or revoked (from retained).
    #[schema(value_type = String)]
    pub state: CardState,
    /// The reason or legal basis.
    pub note: Option<String>,
}

/// Retain, revoke, report lost, or give back a retained card.
#[utoipa::path(post, path = "/api/v1/cards/{serial}/state", tag = "cards",
    request_body = StateBody,
    params(("serial" = String, Path, description = "the card's serial")),
    responses(
        (status = 200, body = CardView),
        (status = 404, description = "no such card (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "not possible from the card's state", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "no reason given", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn set_state(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(serial): Path<String>,
    ApiJson(body): ApiJson<StateBody>,
) -> ApiResult<Response> {
    let card = visible_card(&st, &caller, &serial).await?;
    let note = optional_note("note", body.note.as_deref())?;
    let target = Some(card.person_key.to_string());
    let entry = audit::for_change(&st, &caller, "card.state", &headers, &ctx, target, StatusCode::OK);
    let card = st.registry.card_set_state(&card.serial, body.state, note, caller.username(), entry).await?;
    let key = card.person_key;
    Ok(recorded(StatusCode::OK, &view(card), key))
}

/// The chip's files (base64url), for the encoder.
#[utoipa::path(get, path = "/api/v1/cards/{serial}/chip", tag = "cards",
    params(("serial" = String, Path, description = "the card's serial")),
    responses(
        (status = 200, body = ChipRecord),
        (status = 404, description = "no such card (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn chip(State(st): State<AppState>, caller: Caller, Path(serial): Path<String>) -> ApiResult<Response> {
    let card = visible_card(&st, &caller, &serial).await?;
    let chip = st.registry.store().card_chip(&serial).await?.ok_or_else(ApiError::not_found)?;
    Ok(targeted(StatusCode::OK, &chip, card.person_key))
}

/// A face of the card for the printer: SVG, 85.6 × 54 mm.
#[utoipa::path(get, path = "/api/v1/cards/{serial}/faces/{side}", tag = "cards",
    params(("serial" = String, Path, description = "the card's serial"),
           ("side" = String, Path, description = "front or back")),
    responses(
        (status = 200, description = "the face, SVG", content_type = "image/svg+xml"),
        (status = 400, description = "not front or back", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such card (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn face(
    State(st): State<AppState>,
    caller: Caller,
    Path((serial, side)): Path<(String, String)>,
) -> ApiResult<Response> {
    let front = match side.as_str() {
        "front" => true,
        "back" => false,
        other => return Err(bad_param("side", "unknown_side", "front or back", other)),
    };
    let card = visible_card(&st, &caller, &serial).await?;
    let rec = st.registry.get(&dancu_store::PersonRef::Key(card.person_key)).await?;
    let photo = st.registry.store().card_images(card.application_id).await?.map(|i| i.photo).unwrap_or_default();
    let content = dancu_card::CardContent::from_person(
        &rec.person,
        card.issue_date,
        card.expiry,
        Some(card.serial.clone()),
        photo,
    )
    .map_err(CardServiceError::from)?;
    let svg = if front { front_svg(&content)? } else { back_svg(&content, &card) };
    let mut res = svg.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("image/svg+xml; charset=utf-8"));
    res.extensions_mut().insert(AuditTarget(card.person_key.to_string()));
    Ok(res)
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn dmy(d: time::Date) -> String {
    format!("{:02}/{:02}/{:04}", d.day(), d.month() as u8, d.year())
}

/// The QR code's text as on cards issued since 2021: ID|old ID|name|birth|sex|residence|issue.
fn qr_text(c: &dancu_card::CardContent) -> String {
    let compact = |d: time::Date| format!("{:02}{:02}{:04}", d.day(), d.month() as u8, d.year());
    let birth = match c.birth_date {
        dancu_core::PartialDate::Full(d) => compact(d),
        other => other.to_vietnamese(),
    };
    [
        c.personal_id.to_string(),
        c.legacy_id.clone().unwrap_or_default(),
        c.full_name(),
        birth,
        c.sex.vietnamese().to_string(),
        c.residence.clone().unwrap_or_default(),
        compact(c.issue_date),
    ]
    .join("|")
}

/// The QR code as one SVG path of unit squares, placed at (x, y) with `size` px.
fn qr_svg(text: &str, x: u32, y: u32, size: u32) -> ApiResult<String> {
    let qr = qrcode::QrCode::with_error_correction_level(text.as_bytes(), qrcode::EcLevel::M)
        .map_err(|_| ApiError::internal())?;
    let w = qr.width();
    let mut d = String::new();
    for (i, c) in qr.to_colors().iter().enumerate() {
        if *c == qrcode::Color::Dark {
            d += &format!("M{},{}h1v1h-1z", i % w, i / w);
        }
    }
    let quiet = 2;
    let total = w + 2 * quiet;
    Ok(format!(
        r##"<svg x="{x}" y="{y}" width="{size}" height="{size}" viewBox="-{quiet} -{quiet} {total} {total}" shape-rendering="crispEdges"><rect x="-{quiet}" y="-{quiet}" width="{total}" height="{total}" fill="#fff"/><path d="{d}" fill="#000"/></svg>"##
    ))
}

fn field(x: u32, y: u32, label: &str, value: &str, size: u32) -> String {
    format!(
        r##"<text x="{x}" y="{y}" font-size="13" fill="#333">{}</text><text x="{x}" y="{}" font-size="{size}" font-weight="bold" fill="#000">{}</text>"##,
        esc(label),
        y + size + 4,
        esc(value)
    )
}

const CARD_OPEN: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" width="85.6mm" height="53.98mm" viewBox="0 0 856 540" font-family="Arial, Helvetica, sans-serif"><rect width="856" height="540" rx="32" fill="#eef3f8" stroke="#9bb" stroke-width="2"/>"##;

/// The front (2024 layout): national header, title, portrait, QR code, identity fields.
fn front_svg(c: &dancu_card::CardContent) -> ApiResult<String> {
    let mut s = String::from(CARD_OPEN);
    s += r##"<text x="428" y="42" font-size="20" font-weight="bold" text-anchor="middle">CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM</text>"##;
    s += r##"<text x="428" y="66" font-size="16" text-anchor="middle">Độc lập - Tự do - Hạnh phúc</text>"##;
    s += r##"<text x="428" y="88" font-size="13" text-anchor="middle">SOCIALIST REPUBLIC OF VIET NAM</text>"##;
    s +=
        r##"<text x="428" y="124" font-size="30" font-weight="bold" fill="#b00" text-anchor="middle">CĂN CƯỚC</text>"##;
    s += r##"<text x="428" y="146" font-size="15" fill="#b00" text-anchor="middle">IDENTITY CARD</text>"##;
    if !c.photo_jpeg.is_empty() {
        s += &format!(
            r#"<image x="40" y="170" width="210" height="280" preserveAspectRatio="xMidYMid slice" href="data:image/jpeg;base64,{}"/>"#,
            base64_std(&c.photo_jpeg)
        );
    }
    s += &qr_svg(&qr_text(c), 706, 20, 130)?;
    s += &field(280, 180, "Số định danh cá nhân / Personal identification number", c.personal_id.as_str(), 26);
    s += &field(280, 240, "Họ, chữ đệm và tên / Full name", &c.full_name().to_uppercase(), 22);
    s += &field(280, 300, "Ngày, tháng, năm sinh / Date of birth", &c.birth_date.to_vietnamese(), 20);
    s += &field(600, 300, "Giới tính / Sex", c.sex.vietnamese(), 20);
    s += &field(280, 360, "Quốc tịch / Nationality", &c.nationality, 20);
    s += "</svg>";
    Ok(s)
}

/// The back: residence, birth registration place, dates, issuing authority, MRZ.
fn back_svg(c: &dancu_card::CardContent, card: &Card) -> String {
    let mut s = String::from(CARD_OPEN);
    s += &field(40, 40, "Nơi cư trú / Place of residence", c.residence.as_deref().unwrap_or(""), 18);
    s += &field(40, 100, "Nơi đăng ký khai sinh / Place of birth", c.hometown.as_deref().unwrap_or(""), 18);
    s += &field(40, 160, "Ngày, tháng, năm cấp / Date of issue", &dmy(c.issue_date), 18);
    s += &field(
        400,
        160,
        "Ngày, tháng, năm hết hạn / Date of expiry",
        &c.expiry.map(dmy).unwrap_or_else(|| "Không thời hạn".into()),
        18,
    );
    s += r##"<text x="40" y="250" font-size="16" font-weight="bold">BỘ CÔNG AN</text><text x="40" y="270" font-size="13">MINISTRY OF PUBLIC SECURITY</text>"##;
    s += &format!(r##"<text x="600" y="250" font-size="13">Số thẻ / Card No. {}</text>"##, esc(&card.serial));
    s += r##"<rect x="0" y="380" width="856" height="160" fill="#fff"/>"##;
    for (i, line) in card.mrz.iter().enumerate() {
        s += &format!(
            r#"<text x="40" y="{}" font-family="OCR-B, 'OCR B', monospace" font-size="34" xml:space="preserve">{}</text>"#,
            420 + i * 44,
            esc(line)
        );
    }
    s += "</svg>";
    s
}

// ---------------------------------------------------------------------------------------------
// Partners

/// The card a partner holds (read from the chip or the card).
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CardValidityRequest {
    pub personal_id: String,
    pub card_serial: String,
}

/// Whether a card is valid now; no personal data.
#[derive(Serialize, utoipa::ToSchema)]
pub struct CardValidity {
    pub valid: bool,
    /// active, retained, revoked, lost, expired or replaced.
    pub state: String,
    pub trang_thai: String,
    #[serde(with = "dancu_core::date::iso_date::option")]
    #[schema(value_type = Option<String>, format = Date)]
    pub expiry: Option<time::Date>,
}

/// Is this card valid now? (its state, and its expiry by the law). An unknown card, or one
/// not of this personal ID, answers 404.
#[utoipa::path(post, path = "/api/v1/sharing/card-validity", tag = "sharing",
    request_body = CardValidityRequest,
    params(("X-Dancu-Purpose" = String, Header, description = "why the partner checks")),
    responses(
        (status = 200, description = "the answer (signed: X-Dancu-Signature)", body = CardValidity),
        (status = 401, description = "no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such card", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "an invalid personal ID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn validity(State(st): State<AppState>, ApiJson(body): ApiJson<CardValidityRequest>) -> ApiResult<Response> {
    let id = dancu_core::PersonalId::parse(&body.personal_id).map_err(|e| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request has invalid fields",
            FieldError::new("personal_id", "invalid_personal_id", e.to_string()).with_value(body.personal_id.clone()),
        )
    })?;
    let card = st
        .registry
        .store()
        .card_get(&body.card_serial)
        .await?
        .filter(|c| c.personal_id == id.as_str())
        .ok_or_else(ApiError::not_found)?;
    let (valid, state) = dancu_card::application::validity_now(card.state, card.expiry, today());
    let answer =
        CardValidity { valid, state: state.code().into(), trang_thai: state.vietnamese().into(), expiry: card.expiry };
    Ok(targeted(StatusCode::OK, &answer, card.person_key))
}
