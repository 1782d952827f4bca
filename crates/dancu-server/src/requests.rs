//! Maker-checker: changes held for a second officer's approval (see
//! `dancu_store::registry::Registry::change`). Listing and deciding are scoped to the caller's
//! area like every access to a person.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dancu_core::FieldError;
use dancu_core::access::{DecideRefusal, may_decide};
use dancu_core::auth::Unit;
use dancu_store::{ChangeRequest, Decision, PersonRef, RequestQuery, RequestState};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, AuditRecorded, AuditTarget, RequestContext};
use crate::auth::Caller;
use crate::extract::{ApiJson, QueryPairs, bad_param, optional_note};
use crate::problem::{ApiError, ApiResult, Problem};

/// A change request as the API shows it (the proposed record without its sensitive fields).
pub fn render(status: StatusCode, r: &ChangeRequest) -> Response {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    crate::persons::redact(&mut v["proposed"]["person"]);
    let mut res = (status, Json(v)).into_response();
    res.extensions_mut().insert(AuditTarget(r.person_key.to_string()));
    res
}

fn parse_id(s: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| bad_param("id", "invalid_reference", "the id (UUID) of a change request", s))
}

/// Change requests about people of the caller's area, newest first.
#[utoipa::path(get, path = "/api/v1/change-requests", tag = "maker-checker",
    params(("state" = Option<String>, Query, description = "pending, approved, rejected or withdrawn"),
           ("person" = Option<String>, Query, description = "record key of the person"),
           ("page" = Option<u32>, Query, description = "page number from 1"),
           ("per_page" = Option<u32>, Query, description = "1-200, default 50")),
    responses(
        (status = 200, description = "requests, newest first", body = Vec<ChangeRequest>),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(st): State<AppState>, caller: Caller, q: QueryPairs) -> ApiResult<Response> {
    q.check(&["state", "person", "page", "per_page"])?;
    let (offset, limit) = q.paging(200, 50)?;
    let state = match q.get("state") {
        None => None,
        Some(s) => Some(
            RequestState::from_code(s)
                .ok_or_else(|| bad_param("state", "unknown_state", "pending, approved, rejected or withdrawn", s))?,
        ),
    };
    let person_key = match q.get("person") {
        None => None,
        Some(p) => {
            Some(Uuid::parse_str(p).map_err(|_| bad_param("person", "invalid_reference", "a record key (UUID)", p))?)
        }
    };
    let query = RequestQuery { state, person_key, area: caller.area(), offset, limit };
    let items = st.registry.store().change_requests(&query).await?;
    let mut out = Vec::with_capacity(items.len());
    for r in &items {
        let mut v = serde_json::to_value(r).map_err(|_| ApiError::internal())?;
        crate::persons::redact(&mut v["proposed"]["person"]);
        out.push(v);
    }
    Ok(Json(out).into_response())
}

/// A request, if its person lies in the caller's area (else: not found).
async fn visible(st: &AppState, caller: &Caller, id: Uuid) -> ApiResult<ChangeRequest> {
    let r = st.registry.store().change_request_get(id).await?.ok_or_else(ApiError::not_found)?;
    let person = st.registry.get(&PersonRef::Key(r.person_key)).await?;
    caller.see(&person.person.areas())?;
    Ok(r)
}

/// One change request.
#[utoipa::path(get, path = "/api/v1/change-requests/{id}", tag = "maker-checker",
    params(("id" = String, Path, description = "the request's id")),
    responses(
        (status = 200, body = ChangeRequest),
        (status = 404, description = "no such request (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let r = visible(&st, &caller, parse_id(&id)?).await?;
    Ok(render(StatusCode::OK, &r))
}

/// What to do with a pending request.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// Apply the change (an approver of the requester's unit or above; not the requester).
    Approve,
    Reject,
    /// Take back one's own request.
    Withdraw,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    pub decision: DecisionKind,
    /// Why (required to reject).
    #[serde(default)]
    pub note: Option<String>,
}

/// Approve, reject or withdraw a pending change request. Approval applies the change in the
/// same transaction; the new version names both officers.
#[utoipa::path(post, path = "/api/v1/change-requests/{id}/decision", tag = "maker-checker",
    params(("id" = String, Path, description = "the request's id")),
    request_body = DecisionBody,
    responses(
        (status = 200, description = "decided", body = ChangeRequest),
        (status = 403, description = "not yours to decide", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such request (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already decided, or the record changed since", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DecisionBody>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let r = visible(&st, &caller, id).await?;
    let forbidden = |detail: &str| ApiError::new(StatusCode::FORBIDDEN, "forbidden", "Not permitted", detail);
    let note = optional_note("note", body.note.as_deref())?;
    let state = match body.decision {
        DecisionKind::Withdraw => {
            if r.requested_by != caller.username() {
                return Err(forbidden("only the officer who made a request may withdraw it"));
            }
            RequestState::Withdrawn
        }
        kind => {
            let unit = Unit::parse(&r.requested_unit).map_err(|_| ApiError::internal())?;
            match may_decide(&caller.officer, &r.requested_by, &unit) {
                Ok(()) => {}
                Err(DecideRefusal::NotAnApprover) => return Err(forbidden("deciding needs the approver role")),
                Err(DecideRefusal::OwnRequest) => {
                    return Err(forbidden("a change needs a second officer: you made this request"));
                }
                Err(DecideRefusal::LowerUnit) => {
                    return Err(forbidden(
                        "the approver must belong to the requesting officer's unit or to a unit above it",
                    ));
                }
            }
            if matches!(kind, DecisionKind::Reject) && note.is_none() {
                return Err(ApiError::field(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation",
                    "The request has invalid fields",
                    FieldError::new("note", "required", "say why the change is rejected"),
                ));
            }
            if matches!(kind, DecisionKind::Approve) { RequestState::Approved } else { RequestState::Rejected }
        }
    };
    let target = Some(r.person_key.to_string());
    let audit = audit::for_change(&st, &caller, "change_request.decide", &headers, &ctx, target, StatusCode::OK);
    let decision = Decision { state, by: caller.username().to_string(), note, audit };
    let decided = st.registry.decide(id, decision).await?;
    let mut res = render(StatusCode::OK, &decided);
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}
