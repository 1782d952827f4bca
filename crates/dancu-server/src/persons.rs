//! Person endpoints: thin handlers (parse → call the registry → render).

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dancu_core::reference::Scheme;
use dancu_core::{FieldError, LegacyIdNumber, PartialDate, PersonInput, PersonStatus, PersonalId};
use dancu_store::registry::ChangeOutcome;
use dancu_store::{
    ChangeMeta, ChangeRequest, PersonRecord, PersonRef, PersonVersion, ProposedChange, SearchPage, SearchQuery,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, AuditRecorded, AuditTarget, RequestContext};
use crate::auth::Caller;
use crate::extract::{ApiJson, QueryPairs};
use crate::problem::{ApiError, ApiResult, Problem};

/// Body of a new person.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePerson {
    pub person: PersonInput,
    /// Why the record is made (e.g. "thu thập dữ liệu dân cư").
    pub reason: String,
    #[serde(default)]
    pub legal_basis: Option<String>,
}

/// Body of an activation.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActivatePerson {
    /// The version the caller read; omitted, the current one.
    #[serde(default)]
    pub version: Option<i64>,
    pub reason: String,
    #[serde(default)]
    pub legal_basis: Option<String>,
}

/// Body of an update: the whole record as it should be, against the version read.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePerson {
    /// The version the caller read; a stale version gets 409.
    pub version: i64,
    pub person: PersonInput,
    /// New status (active, dead, missing); omitted, unchanged.
    #[serde(default)]
    pub status: Option<PersonStatus>,
    /// Date of death or of being missing.
    #[serde(default)]
    pub status_date: Option<PartialDate>,
    /// Ask for a new personal ID (the corrected record contradicts the current number).
    #[serde(default)]
    pub reestablish_id: bool,
    pub reason: String,
    #[serde(default)]
    pub legal_basis: Option<String>,
}

/// Registry validation names fields of the person record relative to it; in request bodies
/// the record sits under `person`, so prefix those names to point at the body's field.
fn in_body(e: dancu_store::registry::RegistryError) -> ApiError {
    match e {
        dancu_store::registry::RegistryError::Invalid(mut v) => {
            for f in v.0.iter_mut() {
                if !matches!(
                    f.field.as_str(),
                    "actor" | "reason" | "legal_basis" | "status" | "status_date" | "version" | "reestablish_id"
                ) {
                    f.field = format!("person.{}", f.field);
                }
            }
            ApiError::validation(v)
        }
        other => other.into(),
    }
}

fn bad_ref(value: &str, reason: String) -> ApiError {
    ApiError::field(
        StatusCode::BAD_REQUEST,
        "validation",
        "Invalid person reference",
        FieldError::new("ref", "invalid_reference", reason).with_value(value),
    )
}

/// A path reference: a 12-digit personal ID or a record key (UUID).
pub(crate) fn parse_ref(s: &str) -> ApiResult<PersonRef> {
    if s.len() == 36 && s.contains('-') {
        return Uuid::parse_str(s).map(PersonRef::Key).map_err(|e| bad_ref(s, format!("not a record key: {e}")));
    }
    PersonalId::parse(s).map(PersonRef::PersonalId).map_err(|e| bad_ref(s, format!("{e} (or give the record key)")))
}

fn with_etag(status: StatusCode, rec: &PersonRecord) -> Response {
    let mut v = serde_json::to_value(rec).unwrap_or_default();
    redact(&mut v["person"]);
    versioned(status, &v, rec.version, rec.key)
}

/// Removes the sensitive fields from a serialized person (they are read only on request, see
/// [`get`]).
pub fn redact(person: &mut serde_json::Value) {
    if let Some(o) = person.as_object_mut() {
        for f in dancu_core::access::SENSITIVE_FIELDS {
            o.remove(f);
        }
    }
}

/// [`redact`] on a person as stored, without building a document tree.
fn redact_raw(raw: &serde_json::value::RawValue) -> ApiResult<Box<serde_json::value::RawValue>> {
    let fields: std::collections::BTreeMap<String, &serde_json::value::RawValue> =
        serde_json::from_str(raw.get()).map_err(|_| ApiError::internal())?;
    let kept: std::collections::BTreeMap<&str, &serde_json::value::RawValue> = fields
        .iter()
        .filter(|(k, _)| !dancu_core::access::SENSITIVE_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    serde_json::value::to_raw_value(&kept).map_err(|_| ApiError::internal())
}

/// The residences of a stored person: all that is read of the record to place it in areas.
#[derive(Deserialize)]
struct Residences {
    permanent_residence: Option<dancu_core::person::Address>,
    temporary_residence: Option<dancu_core::person::Address>,
    current_residence: Option<dancu_core::person::Address>,
}

fn raw_areas(raw: &serde_json::value::RawValue) -> ApiResult<Vec<String>> {
    let r: Residences = serde_json::from_str(raw.get()).map_err(|_| ApiError::internal())?;
    Ok(dancu_core::access::residence_areas(
        [&r.permanent_residence, &r.temporary_residence, &r.current_residence].into_iter().flatten(),
    ))
}

/// A new or changed record must lie in the officer's area (a commune officer records people of
/// their commune); the field named is the first residence given.
fn check_placed(caller: &Caller, input: &PersonInput) -> ApiResult<()> {
    if caller.governs(&dancu_core::access::residence_areas(input.residences())) {
        return Ok(());
    }
    let field = ["permanent_residence", "temporary_residence", "current_residence"]
        .into_iter()
        .zip([&input.permanent_residence, &input.temporary_residence, &input.current_residence])
        .find(|(_, a)| a.is_some())
        .map(|(f, _)| f)
        .unwrap_or("permanent_residence");
    Err(ApiError::field(
        StatusCode::FORBIDDEN,
        "outside-area",
        "Ngoài địa bàn quản lý / Outside your area",
        FieldError::new(
            format!("person.{field}"),
            "outside_area",
            format!(
                "no residence of this person lies in the area of your unit ({}); the police of the person's \
                 residence record it",
                caller.officer.unit.code_str()
            ),
        ),
    ))
}

fn meta_of(caller: &Caller, reason: String, legal_basis: Option<String>) -> ChangeMeta {
    ChangeMeta::new(caller.username(), reason, legal_basis)
}

/// A person's record (parsed or as stored) with its version as ETag, naming the person for the audit.
fn versioned(status: StatusCode, body: &impl serde::Serialize, version: i64, key: Uuid) -> Response {
    let mut res = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("\"{version}\"")) {
        res.headers_mut().insert(header::ETAG, v);
    }
    res.extensions_mut().insert(AuditTarget(key.to_string()));
    res
}

/// Record a newly collected person (pending, no personal ID yet).
#[utoipa::path(post, path = "/api/v1/persons", tag = "persons",
    request_body = CreatePerson,
    responses(
        (status = 201, description = "created", body = PersonRecord),
        (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "the person lies outside your area", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CreatePerson>,
) -> ApiResult<Response> {
    check_placed(&caller, &body.person)?;
    let mut meta = meta_of(&caller, body.reason, body.legal_basis);
    meta.audit = audit::for_change(&st, &caller, "person.create", &headers, &ctx, None, StatusCode::CREATED);
    let rec = st.registry.create(body.person, &meta).await.map_err(in_body)?;
    let mut res = with_etag(StatusCode::CREATED, &rec);
    res.extensions_mut().insert(AuditRecorded);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/persons/{}", rec.key)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Read a person by personal ID or record key. Religion, blood type and identifying features
/// are left out unless asked for with `include=sensitive`, which needs the `sensitive_data`
/// permission and a stated purpose (`X-Dancu-Purpose`).
#[utoipa::path(get, path = "/api/v1/persons/{ref}", tag = "persons",
    params(("ref" = String, Path, description = "12-digit personal ID, or the record key"),
           ("include" = Option<String>, Query, description = "'sensitive' to include religion, blood type, identifying features"),
           ("X-Dancu-Purpose" = Option<String>, Header, description = "purpose or legal basis of the access (required for sensitive fields)")),
    responses(
        (status = 200, description = "the current record", body = PersonRecord),
        (status = 400, description = "malformed reference, or a sensitive read without a purpose", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "sensitive fields without the permission", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such person (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(st): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    Path(r): Path<String>,
    q: QueryPairs,
) -> ApiResult<Response> {
    q.check(&["include"])?;
    let sensitive = match q.get("include") {
        None => false,
        Some("sensitive") => true,
        Some(other) => {
            return Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "validation",
                "Invalid query parameter",
                FieldError::new("include", "unknown_value", "the only value is 'sensitive'").with_value(other),
            ));
        }
    };
    let mut rec = st.registry.get_raw(&parse_ref(&r)?).await?;
    if caller.area().is_some() {
        caller.see(&raw_areas(&rec.person)?)?;
    }
    if sensitive {
        if !caller.officer.has_permission(dancu_core::access::Permission::SensitiveData) {
            let mut res = ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Not permitted",
                "reading religion, blood type and identifying features needs the sensitive_data permission",
            )
            .into_response();
            res.extensions_mut().insert(AuditTarget(rec.key.to_string()));
            return Ok(res);
        }
        if audit::purpose(&headers).is_none() {
            let mut res = ApiError::field(
                StatusCode::BAD_REQUEST,
                "purpose-required",
                "Cần nêu mục đích / A purpose is required",
                FieldError::new(
                    "X-Dancu-Purpose",
                    "required",
                    "state the purpose or legal basis of reading sensitive fields (e.g. the case number)",
                ),
            )
            .into_response();
            res.extensions_mut().insert(AuditTarget(rec.key.to_string()));
            return Ok(res);
        }
    } else {
        rec.person = redact_raw(&rec.person)?;
    }
    Ok(versioned(StatusCode::OK, &rec, rec.version, rec.key))
}

/// Read a person by legacy ID-card (CMND) number.
#[utoipa::path(get, path = "/api/v1/persons/by-legacy-id/{number}", tag = "persons",
    params(("number" = String, Path, description = "9- or 12-digit CMND number")),
    responses(
        (status = 200, description = "the current record", body = PersonRecord),
        (status = 400, description = "malformed number", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get_by_legacy(State(st): State<AppState>, caller: Caller, Path(n): Path<String>) -> ApiResult<Response> {
    let l = LegacyIdNumber::parse(&n).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "validation",
            "Invalid legacy ID number",
            FieldError::new("number", e.code(), e.to_string()).with_value(&n),
        )
    })?;
    let rec = st.registry.get(&PersonRef::LegacyId(l)).await?;
    caller.see(&rec.person.areas())?;
    Ok(with_etag(StatusCode::OK, &rec))
}

/// The record a path names, if it lies in the caller's area (else: not found).
async fn visible(st: &AppState, caller: &Caller, r: &str) -> ApiResult<PersonRecord> {
    let rec = st.registry.get(&parse_ref(r)?).await?;
    caller.see(&rec.person.areas())?;
    Ok(rec)
}

/// Assign the personal ID to a pending person.
#[utoipa::path(post, path = "/api/v1/persons/{ref}/activate", tag = "persons",
    request_body = ActivatePerson,
    params(("ref" = String, Path, description = "record key")),
    responses(
        (status = 200, description = "activated, with its personal ID", body = PersonRecord),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already active, or changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "cannot be given an ID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn activate(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(r): Path<String>,
    ApiJson(body): ApiJson<ActivatePerson>,
) -> ApiResult<Response> {
    let key = visible(&st, &caller, &r).await?.key;
    let mut meta = meta_of(&caller, body.reason, body.legal_basis);
    meta.audit =
        audit::for_change(&st, &caller, "person.activate", &headers, &ctx, Some(key.to_string()), StatusCode::OK);
    let rec = st.registry.activate(key, body.version, &meta).await?;
    let mut res = with_etag(StatusCode::OK, &rec);
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}

/// Replace a person's recorded items (a new version); the version read must be current.
/// A change of name, birth date, sex, nationality, a death or a new personal ID of an active
/// person is not made at once: it becomes a change request (202) that a second officer
/// (an approver of the same or a higher unit) approves or rejects.
#[utoipa::path(put, path = "/api/v1/persons/{ref}", tag = "persons",
    request_body = UpdatePerson,
    params(("ref" = String, Path, description = "personal ID or record key")),
    responses(
        (status = 200, description = "the new version", body = PersonRecord),
        (status = 202, description = "held for approval", body = ChangeRequest),
        (status = 403, description = "the change would place the person outside your area", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "stale version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(r): Path<String>,
    ApiJson(body): ApiJson<UpdatePerson>,
) -> ApiResult<Response> {
    let key = visible(&st, &caller, &r).await?.key;
    check_placed(&caller, &body.person)?;
    let mut meta = meta_of(&caller, body.reason, body.legal_basis);
    if body.status.is_none() && body.status_date.is_some() {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request has invalid fields",
            FieldError::new("status_date", "not_allowed", "a status date goes with a status"),
        ));
    }
    let proposed = ProposedChange {
        person: body.person,
        status: body.status,
        status_date: body.status_date,
        reestablish_id: body.reestablish_id,
    };
    // The entry goes with whichever is stored: the new version (200) or the request (202).
    let guarded = {
        let current = st.registry.get(&PersonRef::Key(key)).await?;
        !dancu_core::access::guarded_changes(
            &current.person,
            &proposed.person,
            proposed.status,
            proposed.reestablish_id,
        )
        .is_empty()
    };
    let status = if guarded { StatusCode::ACCEPTED } else { StatusCode::OK };
    meta.audit = audit::for_change(&st, &caller, "person.update", &headers, &ctx, Some(key.to_string()), status);
    let unit = caller.officer.unit.code_str();
    let mut res = match st.registry.change(key, body.version, proposed, &meta, &unit).await.map_err(in_body)? {
        ChangeOutcome::Applied(rec) => with_etag(StatusCode::OK, &rec),
        ChangeOutcome::Pending(req) => {
            let mut res = crate::requests::render(StatusCode::ACCEPTED, &req);
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/change-requests/{}", req.id)) {
                res.headers_mut().insert(header::LOCATION, v);
            }
            res
        }
    };
    res.extensions_mut().insert(AuditRecorded);
    res.extensions_mut().insert(AuditTarget(key.to_string()));
    Ok(res)
}

/// Every version of a person's record, oldest first, with who, when, why and legal basis.
#[utoipa::path(get, path = "/api/v1/persons/{ref}/history", tag = "persons",
    params(("ref" = String, Path, description = "personal ID or record key")),
    responses(
        (status = 200, description = "versions, oldest first", body = Vec<PersonVersion>),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(State(st): State<AppState>, caller: Caller, Path(r): Path<String>) -> ApiResult<Response> {
    let key = visible(&st, &caller, &r).await?.key;
    let mut versions = serde_json::to_value(st.registry.history(key).await?).map_err(|_| ApiError::internal())?;
    for v in versions.as_array_mut().into_iter().flatten() {
        redact(&mut v["person"]);
    }
    let mut res = Json(versions).into_response();
    res.extensions_mut().insert(AuditTarget(key.to_string()));
    Ok(res)
}

const SEARCH_PARAMS: &[&str] = &["name", "birth_year", "commune", "province", "status", "page", "per_page"];

/// Search people: accent-insensitive name prefix, birth year, home commune or province.
#[utoipa::path(get, path = "/api/v1/persons", tag = "persons",
    params(
        ("name" = Option<String>, Query, description = "name or its beginning, accents optional: 'nguyen van an'"),
        ("birth_year" = Option<i32>, Query, description = "year of birth"),
        ("commune" = Option<String>, Query, description = "home commune: '00004' (2025 list) or 'legacy:00004'"),
        ("province" = Option<String>, Query, description = "2025 province code of the home commune, e.g. '01'"),
        ("status" = Option<String>, Query, description = "pending, active, dead or missing"),
        ("page" = Option<u32>, Query, description = "page number from 1"),
        ("per_page" = Option<u32>, Query, description = "1-100, default 20"),
    ),
    responses(
        (status = 200, description = "one page of matches, ordered by name", body = SearchPage),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn search(State(st): State<AppState>, caller: Caller, q: QueryPairs) -> ApiResult<Response> {
    q.check(SEARCH_PARAMS)?;
    let invalid = |field: &str, code: &'static str, reason: &str, value: &str| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "validation",
            "Invalid query parameter",
            FieldError::new(field, code, reason).with_value(value),
        )
    };
    let per_page = q.int("per_page", 1..=100)?.unwrap_or(20) as u32;
    let page = q.int("page", 1..=10_000)?.unwrap_or(1) as u32;
    if u64::from(page) * u64::from(per_page) > 10_000 {
        return Err(invalid(
            "page",
            "too_deep",
            "results beyond the 10,000th are not paged: narrow the search",
            &page.to_string(),
        ));
    }
    let name_prefix = q.get("name").map(dancu_core::text::fold).filter(|s| !s.is_empty());
    if let Some(n) = &name_prefix
        && n.chars().count() > 150
    {
        return Err(invalid("name", "too_long", "at most 150 characters", n));
    }
    let birth_year = q.int("birth_year", 1800..=2199)?.map(|y| y as i32);
    let commune_key = match q.get("commune") {
        None => None,
        Some(c) => {
            let (scheme, code) = match c.split_once(':') {
                Some((s, code)) => (Scheme::from_code(s), code),
                None => (Some(Scheme::Y2025), c),
            };
            let scheme =
                scheme.ok_or_else(|| invalid("commune", "unknown_scheme", "the list is '2025' or 'legacy'", c))?;
            if dancu_core::reference::commune(scheme, code).is_none() {
                return Err(invalid(
                    "commune",
                    "unknown_code",
                    &format!("not a commune code of the {} list", scheme.code()),
                    c,
                ));
            }
            Some(format!("{}:{code}", scheme.code()))
        }
    };
    let province_2025 = match q.get("province") {
        None => None,
        Some(p) if dancu_core::reference::province(Scheme::Y2025, p).is_some() => Some(p.to_string()),
        Some(p) => {
            return Err(invalid("province", "unknown_code", "not a province code of the 2025 list", p));
        }
    };
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(
            PersonStatus::from_code(s)
                .ok_or_else(|| invalid("status", "unknown_status", "pending, active, dead or missing", s))?,
        ),
    };
    let query = SearchQuery {
        name_prefix,
        birth_year,
        commune_key,
        province_2025,
        status,
        area: caller.area(),
        offset: (page - 1) * per_page,
        limit: per_page,
    };
    let result = st.registry.search(&query).await?;
    let mut page = serde_json::to_value(result).map_err(|_| ApiError::internal())?;
    for item in page["items"].as_array_mut().into_iter().flatten() {
        redact(&mut item["person"]);
    }
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((headers, Json(page)).into_response())
}
