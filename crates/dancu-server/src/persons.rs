//! Person endpoints: thin handlers (parse → call the registry → render).

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dancu_core::reference::Scheme;
use dancu_core::{FieldError, LegacyIdNumber, PartialDate, PersonInput, PersonStatus, PersonalId};
use dancu_store::{ChangeMeta, PersonRecord, PersonRef, PersonVersion, SearchPage, SearchQuery};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, AuditRecorded, AuditTarget, RequestContext};
use crate::extract::{Actor, ApiJson, QueryPairs};
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
                    "actor" | "reason" | "legal_basis" | "status" | "status_date" | "version"
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
    versioned(status, rec, rec.version, rec.key)
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
    params(("X-Dancu-Actor" = String, Header, description = "acting officer")),
    responses(
        (status = 201, description = "created", body = PersonRecord),
        (status = 400, description = "malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Actor(actor): Actor,
    ApiJson(body): ApiJson<CreatePerson>,
) -> ApiResult<Response> {
    let mut meta = ChangeMeta::new(actor, body.reason, body.legal_basis);
    meta.audit = audit::for_change(&st, "person.create", &headers, &ctx, None, StatusCode::CREATED);
    let rec = st.registry.create(body.person, &meta).await.map_err(in_body)?;
    let mut res = with_etag(StatusCode::CREATED, &rec);
    res.extensions_mut().insert(AuditRecorded);
    if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/persons/{}", rec.key)) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// Read a person by personal ID or record key.
#[utoipa::path(get, path = "/api/v1/persons/{ref}", tag = "persons",
    params(("ref" = String, Path, description = "12-digit personal ID, or the record key")),
    responses(
        (status = 200, description = "the current record", body = PersonRecord),
        (status = 400, description = "malformed reference", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(st): State<AppState>, Path(r): Path<String>) -> ApiResult<Response> {
    let rec = st.registry.get_raw(&parse_ref(&r)?).await?;
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
pub async fn get_by_legacy(State(st): State<AppState>, Path(n): Path<String>) -> ApiResult<Response> {
    let l = LegacyIdNumber::parse(&n).map_err(|e| {
        ApiError::field(
            StatusCode::BAD_REQUEST,
            "validation",
            "Invalid legacy ID number",
            FieldError::new("number", e.code(), e.to_string()).with_value(&n),
        )
    })?;
    let rec = st.registry.get(&PersonRef::LegacyId(l)).await?;
    Ok(with_etag(StatusCode::OK, &rec))
}

async fn key_of(st: &AppState, r: &str) -> ApiResult<Uuid> {
    match parse_ref(r)? {
        PersonRef::Key(k) => Ok(k),
        other => Ok(st.registry.get(&other).await?.key),
    }
}

/// Assign the personal ID to a pending person.
#[utoipa::path(post, path = "/api/v1/persons/{ref}/activate", tag = "persons",
    request_body = ActivatePerson,
    params(("ref" = String, Path, description = "record key"), ("X-Dancu-Actor" = String, Header, description = "acting officer")),
    responses(
        (status = 200, description = "activated, with its personal ID", body = PersonRecord),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already active, or changed meanwhile", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "cannot be given an ID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn activate(
    State(st): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(r): Path<String>,
    Actor(actor): Actor,
    ApiJson(body): ApiJson<ActivatePerson>,
) -> ApiResult<Response> {
    let key = key_of(&st, &r).await?;
    let mut meta = ChangeMeta::new(actor, body.reason, body.legal_basis);
    meta.audit = audit::for_change(&st, "person.activate", &headers, &ctx, Some(key.to_string()), StatusCode::OK);
    let rec = st.registry.activate(key, body.version, &meta).await?;
    let mut res = with_etag(StatusCode::OK, &rec);
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}

/// Replace a person's recorded items (a new version); the version read must be current.
#[utoipa::path(put, path = "/api/v1/persons/{ref}", tag = "persons",
    request_body = UpdatePerson,
    params(("ref" = String, Path, description = "personal ID or record key"), ("X-Dancu-Actor" = String, Header, description = "acting officer")),
    responses(
        (status = 200, description = "the new version", body = PersonRecord),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "stale version", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(st): State<AppState>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(r): Path<String>,
    Actor(actor): Actor,
    ApiJson(body): ApiJson<UpdatePerson>,
) -> ApiResult<Response> {
    let key = key_of(&st, &r).await?;
    let mut meta = ChangeMeta::new(actor, body.reason, body.legal_basis);
    meta.audit = audit::for_change(&st, "person.update", &headers, &ctx, Some(key.to_string()), StatusCode::OK);
    let status = match (body.status, body.status_date) {
        (Some(s), d) => Some((s, d)),
        (None, Some(_)) => {
            return Err(ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "The request has invalid fields",
                FieldError::new("status_date", "not_allowed", "a status date goes with a status"),
            ));
        }
        (None, None) => None,
    };
    let rec = st.registry.update(key, body.version, body.person, status, &meta).await.map_err(in_body)?;
    let mut res = with_etag(StatusCode::OK, &rec);
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}

/// Every version of a person's record, oldest first, with who, when, why and legal basis.
#[utoipa::path(get, path = "/api/v1/persons/{ref}/history", tag = "persons",
    params(("ref" = String, Path, description = "personal ID or record key")),
    responses(
        (status = 200, description = "versions, oldest first", body = Vec<PersonVersion>),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn history(State(st): State<AppState>, Path(r): Path<String>) -> ApiResult<Response> {
    let key = key_of(&st, &r).await?;
    let mut res = Json(st.registry.history(key).await?).into_response();
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
pub async fn search(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Response> {
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
        offset: (page - 1) * per_page,
        limit: per_page,
    };
    let result = st.registry.search(&query).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok((headers, Json(result)).into_response())
}
