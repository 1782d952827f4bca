//! Auditing of every request that touches a person's data, in one place: the middleware asks
//! [`action_of`] whether a route is audited, handlers name the person concerned by putting an
//! [`AuditTarget`] on their response, and the entry is stored (durably) before the response
//! leaves. When the trail cannot be written, the response is withheld (503): no unaudited read.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use dancu_core::FieldError;
use dancu_core::audit::{AuditEntry, StoredEntry, to_hex};
use dancu_store::AuditQuery;
use serde::Serialize;

use crate::AppState;
use crate::auth::Caller;
use crate::extract::QueryPairs;
use crate::problem::{ApiError, ApiResult, Problem};

/// The person a response concerned (record key), for the audit entry.
#[derive(Clone)]
pub struct AuditTarget(pub String);

/// The purpose of an access as the server states it (OpenID Connect releases), for the entry.
#[derive(Clone)]
pub struct AuditPurpose(pub String);

/// Marks a response whose audit entry was stored with the change itself (same transaction);
/// the middleware then records nothing more.
#[derive(Clone)]
pub struct AuditRecorded;

/// What the middleware knows of a request that handlers need for audit entries.
#[derive(Clone)]
pub struct RequestContext {
    pub request_id: String,
    pub client: Option<String>,
}

/// The audit entry of a change about to be made, to store with it (None when auditing is off).
pub fn for_change(
    st: &AppState,
    caller: &Caller,
    action: &str,
    headers: &axum::http::HeaderMap,
    ctx: &RequestContext,
    target: Option<String>,
    status: StatusCode,
) -> Option<AuditEntry> {
    st.audit.as_ref().map(|_| {
        let mut e = entry(action, headers, target, &ctx.request_id, ctx.client.clone(), status.as_u16());
        caller.audit_actor().fill(&mut e);
        e
    })
}

/// Header in which callers state the purpose or legal basis of an access.
pub const PURPOSE_HEADER: &str = "x-dancu-purpose";

/// Who acted, as the audit entry names them: set on the response by the authorization layer
/// (and by login for the account tried). Requests without it are recorded as `anonymous`.
#[derive(Clone, Debug)]
pub struct AuditActor {
    pub officer: String,
    /// The roles the officer acted in (comma-separated).
    pub role: String,
    pub unit: String,
}

impl AuditActor {
    pub fn fill(&self, e: &mut AuditEntry) {
        e.officer.clone_from(&self.officer);
        e.role.clone_from(&self.role);
        e.unit.clone_from(&self.unit);
    }
}

/// The audit entry of a request, before the officer is known (`anonymous` until then).
pub fn entry(
    action: &str,
    headers: &axum::http::HeaderMap,
    target: Option<String>,
    request_id: &str,
    client: Option<String>,
    status: u16,
) -> AuditEntry {
    AuditEntry {
        at: now_rfc3339(),
        officer: "anonymous".into(),
        role: String::new(),
        unit: String::new(),
        action: action.into(),
        target,
        purpose: purpose(headers),
        request_id: Some(request_id.into()),
        client,
        outcome: status.to_string(),
    }
}

/// The purpose a caller stated for an access, if any.
pub fn purpose(headers: &axum::http::HeaderMap) -> Option<String> {
    headers
        .get(PURPOSE_HEADER)
        .and_then(|v| std::str::from_utf8(v.as_bytes()).ok())
        .map(|v| v.trim().chars().filter(|c| !c.is_control()).take(500).collect::<String>())
        .filter(|v| !v.is_empty())
}

/// The current time as audit entries record it (RFC 3339, UTC).
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 formatting of a UTC time")
}

/// One audit entry as the API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct AuditRecord {
    pub seq: i64,
    #[serde(flatten)]
    pub entry: AuditEntry,
    /// SHA-256 of this entry chained to the one before (hex).
    pub hash: String,
}

impl From<StoredEntry> for AuditRecord {
    fn from(e: StoredEntry) -> Self {
        AuditRecord { seq: e.seq, hash: to_hex(&e.hash), entry: e.entry }
    }
}

/// Who accessed or changed this person's data, newest first ("who looked at my data").
#[utoipa::path(get, path = "/api/v1/persons/{ref}/access-log", tag = "audit",
    params(("ref" = String, Path, description = "personal ID or record key"),
           ("page" = Option<u32>, Query, description = "page number from 1"),
           ("per_page" = Option<u32>, Query, description = "1-500, default 50")),
    responses(
        (status = 200, description = "audit entries about this person, newest first", body = Vec<AuditRecord>),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn access_log(
    State(st): State<AppState>,
    caller: Caller,
    Path(r): Path<String>,
    q: QueryPairs,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    q.check(&["page", "per_page"])?;
    let (offset, limit) = q.paging(500, 50)?;
    let rec = st.registry.get(&crate::persons::parse_ref(&r)?).await?;
    caller.see(&rec.person.areas())?;
    let key = rec.key;
    let entries = st
        .registry
        .store()
        .audit_query(&AuditQuery { target: Some(key.to_string()), offset, limit, ..Default::default() })
        .await?;
    let mut res = Json(entries.into_iter().map(AuditRecord::from).collect::<Vec<_>>()).into_response();
    res.extensions_mut().insert(AuditTarget(key.to_string()));
    Ok(res)
}

/// The audit trail, filtered by officer, person and time; newest first.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit",
    params(("officer" = Option<String>, Query, description = "acting officer"),
           ("person" = Option<String>, Query, description = "record key of the person concerned"),
           ("from" = Option<String>, Query, description = "RFC 3339, inclusive"),
           ("to" = Option<String>, Query, description = "RFC 3339, exclusive"),
           ("page" = Option<u32>, Query, description = "page number from 1"),
           ("per_page" = Option<u32>, Query, description = "1-500, default 50")),
    responses(
        (status = 200, description = "matching entries, newest first", body = Vec<AuditRecord>),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn query(State(st): State<AppState>, q: QueryPairs) -> ApiResult<Json<Vec<AuditRecord>>> {
    q.check(&["officer", "person", "from", "to", "page", "per_page"])?;
    let (offset, limit) = q.paging(500, 50)?;
    let time = |name: &str| -> ApiResult<Option<String>> {
        match q.get(name) {
            None => Ok(None),
            Some(v) => time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
                .map(|t| {
                    Some(
                        t.to_offset(time::UtcOffset::UTC)
                            .format(&time::format_description::well_known::Rfc3339)
                            .expect("RFC 3339"),
                    )
                })
                .map_err(|_| {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        "validation",
                        "Invalid query parameter",
                        FieldError::new(name, "invalid_time", "an RFC 3339 time, e.g. 2026-11-29T08:00:00Z")
                            .with_value(v),
                    )
                }),
        }
    };
    let person = match q.get("person") {
        None => None,
        Some(p) => Some(
            uuid::Uuid::parse_str(p)
                .map_err(|_| {
                    ApiError::field(
                        StatusCode::BAD_REQUEST,
                        "validation",
                        "Invalid query parameter",
                        FieldError::new("person", "invalid_reference", "the record key (UUID) of a person")
                            .with_value(p),
                    )
                })?
                .to_string(),
        ),
    };
    let q = AuditQuery {
        officer: q.get("officer").map(str::to_string),
        target: person,
        from: time("from")?,
        to: time("to")?,
        offset,
        limit,
    };
    Ok(Json(st.registry.store().audit_query(&q).await?.into_iter().map(AuditRecord::from).collect()))
}
