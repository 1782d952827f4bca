//! Officer accounts, managed by system administrators within their own unit's area. No one
//! changes their own account's roles, unit, permissions or status: another administrator must.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dancu_core::FieldError;
use dancu_core::access::Permission;
use dancu_core::auth::{self as core_auth, Officer, Role, Unit};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::audit::AuditTarget;
use crate::auth::{Caller, OfficerView};
use crate::extract::ApiJson;
use crate::problem::{ApiError, ApiResult, Problem};

fn invalid(field: &str, code: &'static str, reason: impl Into<String>) -> ApiError {
    ApiError::field(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "The request has invalid fields",
        FieldError::new(field, code, reason),
    )
}

fn target(username: &str) -> AuditTarget {
    AuditTarget(format!("officer:{username}"))
}

/// An account the caller administers (its unit lies within the caller's), else not found.
async fn administered(st: &AppState, caller: &Caller, username: &str) -> ApiResult<Officer> {
    let o = st.registry.store().officer_get(username).await?.ok_or_else(ApiError::not_found)?;
    if caller.officer.unit.contains(&o.unit) { Ok(o) } else { Err(ApiError::not_found()) }
}

fn parse_unit(caller: &Caller, s: &str) -> ApiResult<Unit> {
    let unit = Unit::parse(s).map_err(|e| invalid("unit", "unknown_unit", e))?;
    if !caller.officer.unit.contains(&unit) {
        return Err(ApiError::field(
            StatusCode::FORBIDDEN,
            "outside-area",
            "Ngoài địa bàn quản lý / Outside your area",
            FieldError::new("unit", "outside_area", "the unit must be yours or lie within it").with_value(s),
        ));
    }
    Ok(unit)
}

/// Officer accounts of the caller's unit and the units within it.
#[utoipa::path(get, path = "/api/v1/officers", tag = "officers",
    responses((status = 200, body = Vec<OfficerView>)))]
pub async fn list(State(st): State<AppState>, caller: Caller) -> ApiResult<Json<Vec<OfficerView>>> {
    let all = st.registry.store().officer_list().await?;
    Ok(Json(all.iter().filter(|o| caller.officer.unit.contains(&o.unit)).map(OfficerView::from).collect()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOfficer {
    pub username: String,
    pub display_name: String,
    /// `ministry`, `province:CODE`, `district:CODE` (legacy), `commune:CODE` (`commune:legacy:CODE`)
    pub unit: String,
    pub roles: Vec<Role>,
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Initial password; omitted, a strong one is generated and returned once.
    #[serde(default)]
    pub password: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CreatedOfficer {
    pub officer: OfficerView,
    /// The generated password (shown once), when none was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

/// Create an officer account in the caller's unit or a unit within it. Officers whose roles
/// need a second factor enrol one at their first login.
#[utoipa::path(post, path = "/api/v1/officers", tag = "officers",
    request_body = NewOfficer,
    responses(
        (status = 201, body = CreatedOfficer),
        (status = 403, description = "unit outside yours", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "username taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewOfficer>,
) -> ApiResult<Response> {
    let username = body.username.trim().to_string();
    if let Some(p) = core_auth::username_problem(&username) {
        return Err(invalid("username", "invalid_username", p));
    }
    let name = dancu_core::text::clean(&body.display_name);
    if name.is_empty() || name.chars().count() > 100 {
        return Err(invalid("display_name", "required", "1 to 100 characters"));
    }
    if body.roles.is_empty() {
        return Err(invalid("roles", "required", "at least one role"));
    }
    let unit = parse_unit(&caller, &body.unit)?;
    let (password, generated) = match body.password {
        Some(p) => {
            if let Some(problem) = core_auth::password_problem(&p) {
                return Err(invalid("password", "weak_password", format!("the password must have {problem}")));
            }
            (p, false)
        }
        None => {
            let mut b = [0u8; 15];
            getrandom::fill(&mut b).map_err(|_| ApiError::internal())?;
            (core_auth::base32_encode(&b), true)
        }
    };
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| ApiError::internal())?;
    let shown = generated.then(|| password.clone());
    let hash = tokio::task::spawn_blocking(move || core_auth::hash_password(&password, &salt))
        .await
        .map_err(|_| ApiError::internal())?;
    let mut roles = body.roles;
    roles.sort();
    roles.dedup();
    let officer = Officer {
        username: username.clone(),
        display_name: name,
        unit,
        roles,
        permissions: body.permissions,
        password_hash: hash,
        totp_secret: None,
        totp_last_step: None,
        totp_pending: None,
        failed_logins: 0,
        locked_until: None,
        active: true,
    };
    st.registry.store().officer_insert(&officer).await?;
    // The generated password is known only here: it is handed back once.
    let mut res = (StatusCode::CREATED, Json(CreatedOfficer { officer: OfficerView::from(&officer), password: shown }))
        .into_response();
    res.extensions_mut().insert(target(&username));
    Ok(res)
}

/// One officer account.
#[utoipa::path(get, path = "/api/v1/officers/{username}", tag = "officers",
    params(("username" = String, Path, description = "login name")),
    responses((status = 200, body = OfficerView),
              (status = 404, description = "no such account (in your area)", body = Problem, content_type = "application/problem+json")))]
pub async fn get(State(st): State<AppState>, caller: Caller, Path(username): Path<String>) -> ApiResult<Response> {
    let o = administered(&st, &caller, &username).await?;
    let mut res = Json(OfficerView::from(&o)).into_response();
    res.extensions_mut().insert(target(&username));
    Ok(res)
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OfficerChange {
    #[serde(default)]
    pub display_name: Option<String>,
    #[serde(default)]
    pub unit: Option<String>,
    #[serde(default)]
    pub roles: Option<Vec<Role>>,
    #[serde(default)]
    pub permissions: Option<Vec<Permission>>,
    /// false: the account can no longer log in and its sessions end.
    #[serde(default)]
    pub active: Option<bool>,
    /// Lift a lockout after failed logins.
    #[serde(default)]
    pub unlock: bool,
    /// Remove the enrolled second factor (lost phone): a new one is enrolled at next login.
    #[serde(default)]
    pub reset_mfa: bool,
}

/// Change an officer's account. Changing roles, unit, permissions or status ends the officer's
/// sessions. One's own account cannot be changed this way.
#[utoipa::path(put, path = "/api/v1/officers/{username}", tag = "officers",
    params(("username" = String, Path, description = "login name")),
    request_body = OfficerChange,
    responses(
        (status = 200, body = OfficerView),
        (status = 403, description = "your own account, or a unit outside yours", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such account (in your area)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn update(
    State(st): State<AppState>,
    caller: Caller,
    Path(username): Path<String>,
    ApiJson(body): ApiJson<OfficerChange>,
) -> ApiResult<Response> {
    if username == caller.username() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "own-account",
            "Không tự thay đổi tài khoản của mình / Not your own account",
            "no officer changes their own roles, unit, permissions or status: another administrator must",
        ));
    }
    let before = administered(&st, &caller, &username).await?;
    let mut o = before.clone();
    if let Some(n) = body.display_name {
        let n = dancu_core::text::clean(&n);
        if n.is_empty() || n.chars().count() > 100 {
            return Err(invalid("display_name", "required", "1 to 100 characters"));
        }
        o.display_name = n;
    }
    if let Some(u) = body.unit {
        o.unit = parse_unit(&caller, &u)?;
    }
    if let Some(mut r) = body.roles {
        if r.is_empty() {
            return Err(invalid("roles", "required", "at least one role"));
        }
        r.sort();
        r.dedup();
        o.roles = r;
    }
    if let Some(p) = body.permissions {
        o.permissions = p;
    }
    if let Some(a) = body.active {
        o.active = a;
    }
    if body.unlock {
        o.failed_logins = 0;
        o.locked_until = None;
    }
    if body.reset_mfa {
        o.totp_secret = None;
        o.totp_pending = None;
        o.totp_last_step = None;
    }
    st.registry.store().officer_update(&o).await?;
    let privileges_changed = o.roles != before.roles
        || o.unit != before.unit
        || o.permissions != before.permissions
        || o.active != before.active
        || body.reset_mfa;
    if privileges_changed {
        st.registry.store().session_revoke_all(&o.username).await?;
    }
    st.auth.forget_officer(&o.username);
    let mut res = Json(OfficerView::from(&o)).into_response();
    res.extensions_mut().insert(target(&username));
    Ok(res)
}
