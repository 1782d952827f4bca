//! The clerical review queue of record linkage: pairs of records an import could neither link
//! nor tell apart (see `dancu import`). A verifier or approver compares them field by field and
//! decides: `same` merges them (the duplicate keeps its history and names the survivor),
//! `different` keeps both. Listing and reading are scoped to the caller's area.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dancu_store::{PersonRecord, PersonRef, ReviewPair, ReviewQuery, ReviewState};
use serde::Deserialize;
use uuid::Uuid;

use crate::AppState;
use crate::audit::{self, AuditRecorded, AuditTarget, RequestContext};
use crate::auth::Caller;
use crate::extract::{ApiJson, QueryPairs, bad_param, optional_note};
use crate::problem::{ApiError, ApiResult, Problem};

fn parse_id(s: &str) -> ApiResult<Uuid> {
    Uuid::parse_str(s).map_err(|_| bad_param("id", "invalid_reference", "the id (UUID) of a review pair", s))
}

/// Review pairs with a record in the caller's area, newest first.
#[utoipa::path(get, path = "/api/v1/review-pairs", tag = "review",
    params(("state" = Option<String>, Query, description = "pending (default), same or different"),
           ("page" = Option<u32>, Query, description = "page number from 1"),
           ("per_page" = Option<u32>, Query, description = "1-200, default 50")),
    responses(
        (status = 200, description = "pairs, newest first", body = Vec<ReviewPair>),
        (status = 400, description = "invalid parameter", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(st): State<AppState>, caller: Caller, q: QueryPairs) -> ApiResult<Response> {
    q.check(&["state", "page", "per_page"])?;
    let (offset, limit) = q.paging(200, 50)?;
    let state = match q.get("state") {
        None => ReviewState::Pending,
        Some(s) => ReviewState::from_code(s)
            .ok_or_else(|| bad_param("state", "unknown_state", "pending, same or different", s))?,
    };
    let query = ReviewQuery { state: Some(state), area: caller.area(), offset, limit };
    let items = st.registry.store().review_pairs(&query).await?;
    Ok(Json(items).into_response())
}

/// A pair and its two records, if one of them lies in the caller's area (else: not found).
async fn visible(st: &AppState, caller: &Caller, id: Uuid) -> ApiResult<(ReviewPair, PersonRecord, PersonRecord)> {
    let pair = st.registry.store().review_pair_get(id).await?.ok_or_else(ApiError::not_found)?;
    let a = st.registry.get(&PersonRef::Key(pair.a)).await?;
    let b = st.registry.get(&PersonRef::Key(pair.b)).await?;
    if caller.see(&a.person.areas()).is_err() {
        caller.see(&b.person.areas())?;
    }
    Ok((pair, a, b))
}

fn record_json(r: &PersonRecord) -> ApiResult<serde_json::Value> {
    let mut v = serde_json::to_value(r).map_err(|_| ApiError::internal())?;
    crate::persons::redact(&mut v["person"]);
    Ok(v)
}

/// A review pair: the field-by-field comparison (level and weight of each field, the total
/// weight and band) and both records (without their sensitive fields).
#[utoipa::path(get, path = "/api/v1/review-pairs/{id}", tag = "review",
    params(("id" = String, Path, description = "the pair's id")),
    responses(
        (status = 200, description = "the pair with `records.a` and `records.b`", body = ReviewPair),
        (status = 404, description = "no such pair (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(State(st): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let (pair, a, b) = visible(&st, &caller, parse_id(&id)?).await?;
    let mut v = serde_json::to_value(&pair).map_err(|_| ApiError::internal())?;
    v["records"] = serde_json::json!({ "a": record_json(&a)?, "b": record_json(&b)? });
    let mut res = Json(v).into_response();
    res.extensions_mut().insert(AuditTarget(pair.a.to_string()));
    Ok(res)
}

/// The clerk's decision.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewVerdict {
    /// One person: the records are merged.
    Same,
    /// Two people: both kept.
    Different,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewBody {
    pub decision: ReviewVerdict,
    #[serde(default)]
    pub note: Option<String>,
}

/// Decide a pending pair. `same` merges in one transaction with the decision and its audit
/// entry: the record holding a personal ID (else the one recorded first) survives; the other
/// gets a new version naming it (`merged_into`), keeps its history and any personal ID it held
/// (reserved forever), and is no longer found by search.
#[utoipa::path(post, path = "/api/v1/review-pairs/{id}/decision", tag = "review",
    params(("id" = String, Path, description = "the pair's id")),
    request_body = ReviewBody,
    responses(
        (status = 200, description = "decided", body = ReviewPair),
        (status = 404, description = "no such pair (in your area)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already decided, or a record changed meanwhile", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn decide(
    State(st): State<AppState>,
    caller: Caller,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReviewBody>,
) -> ApiResult<Response> {
    let id = parse_id(&id)?;
    let (pair, _, _) = visible(&st, &caller, id).await?;
    let note = optional_note("note", body.note.as_deref())?;
    let same = matches!(body.decision, ReviewVerdict::Same);
    let target = Some(pair.a.to_string());
    let audit = audit::for_change(&st, &caller, "review_pair.decide", &headers, &ctx, target, StatusCode::OK);
    let decided = st.registry.decide_review(id, same, caller.username(), note, audit).await?;
    let mut res = (StatusCode::OK, Json(decided)).into_response();
    res.extensions_mut().insert(AuditTarget(pair.a.to_string()));
    res.extensions_mut().insert(AuditRecorded);
    Ok(res)
}
