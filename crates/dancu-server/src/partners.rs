//! Partner administration (partner administrators at ministry level: register, change, suspend,
//! reactivate, revoke) and citizens' consents to partners, recorded by an officer at the
//! citizen's request (the citizen API is to record them itself).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dancu_core::FieldError;
use dancu_core::citizen::{ClientAuth, OidcClient, SubjectKind};
use dancu_core::sharing::{self as core, Consent, Field, Partner, PartnerKind, PartnerStatus, Service};
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::audit::AuditTarget;
use crate::auth::Caller;
use crate::extract::ApiJson;
use crate::problem::{ApiError, ApiResult, Problem};
use crate::sharing::{rfc3339, unix_now};

/// A partner's registration as an administrator gives it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartnerInput {
    /// The OAuth `client_id`: 3-64 lowercase letters, digits, hyphens (creation only).
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    pub kind: PartnerKind,
    /// Căn cứ pháp lý: the law, decree or agreement allowing the sharing.
    pub legal_basis: String,
    pub services: Vec<Service>,
    #[serde(default)]
    pub fields: Vec<Field>,
    /// Data retrieval needs the citizen's consent (default: for businesses).
    #[serde(default)]
    pub consent_required: Option<bool>,
    pub rate_limit_per_second: u32,
    /// RFC 3339 (default: now).
    #[serde(default)]
    pub valid_from: Option<String>,
    /// RFC 3339.
    pub valid_until: String,
    /// The partner's P-256 public key (PEM, "PUBLIC KEY") for `private_key_jwt`.
    pub public_key_pem: String,
    /// An e-government portal's OpenID Connect registration (citizens log in to it here).
    #[serde(default)]
    pub oidc: Option<OidcInput>,
    /// SHA-256 of the partner's client certificate (DER; hex, colons allowed) for mutual TLS
    /// on the server's TLS port, instead of access tokens.
    #[serde(default)]
    pub client_cert_sha256: Option<String>,
}

/// A portal's OpenID Connect registration.
#[derive(Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OidcInput {
    /// Exact redirect URIs (https; http only on the loopback host).
    pub redirect_uris: Vec<String>,
    /// `private_key_jwt` (with the registered key) or `client_secret_basic` (a secret issued
    /// once, in the answer that registers it).
    pub token_endpoint_auth_method: ClientAuth,
    /// `pairwise` (a per-portal pseudonym) or `personal_id` (needs the personal_id field).
    pub subject_type: SubjectKind,
}

/// A partner as administrators see it (the pseudonym key is never shown).
#[derive(Serialize, utoipa::ToSchema)]
pub struct PartnerView {
    pub id: String,
    pub name: String,
    pub kind: PartnerKind,
    pub legal_basis: String,
    pub services: Vec<Service>,
    pub fields: Vec<Field>,
    pub consent_required: bool,
    pub rate_limit_per_second: u32,
    pub valid_from: String,
    pub valid_until: String,
    pub status: PartnerStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    pub public_key_pem: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcInput>,
    /// The client secret, shown only in the answer that issued it (stored as a hash).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    pub client_cert_sha256: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Partner> for PartnerView {
    fn from(p: &Partner) -> Self {
        PartnerView {
            id: p.id.clone(),
            name: p.name.clone(),
            kind: p.kind,
            legal_basis: p.legal_basis.clone(),
            services: p.services.clone(),
            fields: p.fields.clone(),
            consent_required: p.consent_required,
            rate_limit_per_second: p.rate_limit_per_second,
            valid_from: rfc3339(p.valid_from),
            valid_until: rfc3339(p.valid_until),
            status: p.status,
            status_reason: p.status_reason.clone(),
            public_key_pem: p.public_key_pem.clone(),
            oidc: p.oidc.as_ref().map(|c| OidcInput {
                redirect_uris: c.redirect_uris.clone(),
                token_endpoint_auth_method: c.auth_method,
                subject_type: c.subject,
            }),
            client_secret: None,
            client_cert_sha256: p.client_cert_sha256.clone(),
            created_at: rfc3339(p.created_at),
            updated_at: rfc3339(p.updated_at),
        }
    }
}

fn time_field(name: &str, v: &str) -> Result<i64, FieldError> {
    time::OffsetDateTime::parse(v, &time::format_description::well_known::Rfc3339)
        .map(|t| t.unix_timestamp())
        .map_err(|_| FieldError::new(name, "invalid_time", "an RFC 3339 time, e.g. 2027-01-01T00:00:00Z").with_value(v))
}

fn unprocessable(e: FieldError) -> ApiError {
    ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "validation", "The request has invalid fields", e)
}

/// Applies an administrator's input to a partner (new or existing) and validates the result.
fn apply(p: &mut Partner, input: PartnerInput, now: i64) -> ApiResult<()> {
    let mut errs = dancu_core::ValidationErrors::default();
    let from = match input.valid_from.as_deref().map(|v| time_field("valid_from", v)).transpose() {
        Ok(v) => v.unwrap_or(if p.created_at == 0 { now } else { p.valid_from }),
        Err(e) => {
            errs.push(e);
            0
        }
    };
    let until = time_field("valid_until", &input.valid_until).unwrap_or_else(|e| {
        errs.push(e);
        0
    });
    if let Err(e) = crate::sharing::check_public_key(&input.public_key_pem) {
        errs.push(e);
    }
    p.client_cert_sha256 = match input.client_cert_sha256.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(f) => match core::normalize_fingerprint(f) {
            Some(f) => Some(f),
            None => {
                errs.push(
                    FieldError::new(
                        "client_cert_sha256",
                        "invalid_fingerprint",
                        "the SHA-256 of the certificate's DER: 64 hex digits (colons allowed)",
                    )
                    .with_value(f),
                );
                None
            }
        },
    };
    let mut services = input.services;
    services.sort();
    services.dedup();
    let mut fields = input.fields;
    fields.sort();
    fields.dedup();
    p.name = dancu_core::text::clean(&input.name);
    p.kind = input.kind;
    p.legal_basis = dancu_core::text::clean(&input.legal_basis);
    p.services = services;
    p.fields = fields;
    p.consent_required = input.consent_required.unwrap_or(input.kind == PartnerKind::Business);
    p.rate_limit_per_second = input.rate_limit_per_second;
    p.valid_from = from;
    p.valid_until = until;
    p.public_key_pem = input.public_key_pem.trim().to_string() + "\n";
    let kept_secret = p.oidc.as_ref().and_then(|c| c.secret_sha256.clone());
    p.oidc = input.oidc.map(|o| OidcClient {
        redirect_uris: o.redirect_uris,
        auth_method: o.token_endpoint_auth_method,
        subject: o.subject_type,
        secret_sha256: if o.token_endpoint_auth_method == ClientAuth::ClientSecretBasic { kept_secret } else { None },
    });
    if let Err(v) = core::validate_partner(p) {
        for e in v.0 {
            if !errs.0.iter().any(|x| x.field == e.field) {
                errs.push(e);
            }
        }
    }
    errs.into_result().map_err(ApiError::validation)
}

/// Every registered partner.
#[utoipa::path(get, path = "/api/v1/partners", tag = "partners",
    responses((status = 200, body = Vec<PartnerView>)))]
pub async fn list(State(st): State<AppState>) -> ApiResult<Json<Vec<PartnerView>>> {
    Ok(Json(st.registry.store().partner_list().await?.iter().map(PartnerView::from).collect()))
}

/// Register a partner: legal basis, services, field scopes, rate limit, validity, its key.
#[utoipa::path(post, path = "/api/v1/partners", tag = "partners",
    request_body = PartnerInput,
    responses(
        (status = 201, body = PartnerView),
        (status = 409, description = "the id is taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "an invalid field, named", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(State(st): State<AppState>, ApiJson(input): ApiJson<PartnerInput>) -> ApiResult<Response> {
    let now = unix_now();
    let id = input.id.clone().unwrap_or_default();
    if let Some(why) = core::partner_id_problem(&id) {
        return Err(unprocessable(FieldError::new("id", "invalid_id", why).with_value(&id)));
    }
    let mut p = Partner {
        id: id.clone(),
        name: String::new(),
        kind: input.kind,
        legal_basis: String::new(),
        services: Vec::new(),
        fields: Vec::new(),
        consent_required: true,
        rate_limit_per_second: 1,
        valid_from: now,
        valid_until: now,
        status: PartnerStatus::Active,
        public_key_pem: String::new(),
        pseudonym_key_sealed: crate::sharing::new_pseudonym_key(&st, &id)?,
        client_cert_sha256: None,
        status_reason: None,
        created_at: 0,
        updated_at: now,
        oidc: None,
    };
    apply(&mut p, input, now)?;
    p.created_at = now;
    let secret = issue_secret(&mut p)?;
    st.registry.store().partner_insert(&p).await?;
    let mut view = PartnerView::from(&p);
    view.client_secret = secret;
    Ok((StatusCode::CREATED, Json(view)).into_response())
}

async fn load(st: &AppState, id: &str) -> ApiResult<Partner> {
    st.registry.store().partner_get(id).await?.ok_or_else(ApiError::not_found)
}

/// One partner.
#[utoipa::path(get, path = "/api/v1/partners/{id}", tag = "partners",
    params(("id" = String, Path, description = "partner id")),
    responses((status = 200, body = PartnerView),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(State(st): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<PartnerView>> {
    Ok(Json(PartnerView::from(&load(&st, &id).await?)))
}

/// Change a partner's registration (scopes, rate, validity, key). Tokens issued before stop
/// working.
#[utoipa::path(put, path = "/api/v1/partners/{id}", tag = "partners",
    params(("id" = String, Path, description = "partner id")),
    request_body = PartnerInput,
    responses((status = 200, body = PartnerView),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "revoked partners do not change", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn update(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<PartnerInput>,
) -> ApiResult<Json<PartnerView>> {
    let mut p = load(&st, &id).await?;
    if input.id.as_deref().is_some_and(|i| i != id) {
        return Err(unprocessable(FieldError::new("id", "immutable", "a partner's id does not change")));
    }
    if p.status == PartnerStatus::Revoked {
        return Err(revoked());
    }
    let now = unix_now();
    apply(&mut p, input, now)?;
    p.updated_at = now;
    let secret = issue_secret(&mut p)?;
    st.registry.store().partner_update(&p).await?;
    st.sharing.forget_partner(&id);
    let mut view = PartnerView::from(&p);
    view.client_secret = secret;
    Ok(Json(view))
}

/// Issues a client secret to a portal registered for `client_secret_basic` that has none yet.
fn issue_secret(p: &mut Partner) -> ApiResult<Option<String>> {
    let Some(c) = p.oidc.as_mut() else { return Ok(None) };
    if c.auth_method != ClientAuth::ClientSecretBasic || c.secret_sha256.is_some() {
        return Ok(None);
    }
    let secret = crate::citizen::random_token("")?;
    c.secret_sha256 = Some(dancu_core::citizen::token_hash(&secret));
    Ok(Some(secret))
}

fn revoked() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        "state",
        "Not possible in the current state",
        "the partner was revoked; revocation is final",
    )
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// `active` (reactivate), `suspended` or `revoked` (final).
    pub status: PartnerStatus,
    pub reason: String,
}

/// Suspend, reactivate or revoke a partner: effective at once (every token issued before stops
/// working; on other servers sharing the database within 5 s).
#[utoipa::path(post, path = "/api/v1/partners/{id}/status", tag = "partners",
    params(("id" = String, Path, description = "partner id")),
    request_body = StatusChange,
    responses((status = 200, body = PartnerView),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "revoked partners stay revoked", body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn set_status(
    State(st): State<AppState>,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StatusChange>,
) -> ApiResult<Json<PartnerView>> {
    let reason = dancu_core::text::clean(&body.reason);
    if reason.is_empty() || reason.chars().count() > 500 {
        return Err(unprocessable(FieldError::new("reason", "required", "why (1-500 characters)")));
    }
    let mut p = load(&st, &id).await?;
    if p.status == PartnerStatus::Revoked {
        return Err(revoked());
    }
    p.status = body.status;
    p.status_reason = Some(reason);
    p.updated_at = unix_now();
    st.registry.store().partner_update(&p).await?;
    st.sharing.forget_partner(&id);
    Ok(Json(PartnerView::from(&p)))
}

// ---- consents ----------------------------------------------------------------------------------

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsentInput {
    pub partner_id: String,
    /// What the citizen consents to (e.g. "mở tài khoản ngân hàng").
    pub purpose: String,
    /// RFC 3339; at most 5 years ahead.
    pub expires_at: String,
}

/// A consent as shown.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ConsentView {
    pub id: String,
    pub partner_id: String,
    pub purpose: String,
    pub granted_at: String,
    pub expires_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    pub in_force: bool,
    pub recorded_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl From<&Consent> for ConsentView {
    fn from(c: &Consent) -> Self {
        ConsentView {
            id: c.id.clone(),
            partner_id: c.partner_id.clone(),
            purpose: c.purpose.clone(),
            granted_at: rfc3339(c.granted_at),
            expires_at: rfc3339(c.expires_at),
            revoked_at: c.revoked_at.map(rfc3339),
            in_force: c.in_force(unix_now()),
            recorded_by: c.recorded_by.clone(),
            revoked_by: c.revoked_by.clone(),
        }
    }
}

async fn person_key(st: &AppState, caller: &Caller, r: &str) -> ApiResult<String> {
    let rec = st.registry.get(&crate::persons::parse_ref(r)?).await?;
    caller.see(&rec.person.areas())?;
    Ok(rec.key.to_string())
}

fn targeted(mut res: Response, key: String) -> Response {
    res.extensions_mut().insert(AuditTarget(key));
    res
}

/// The consents a person gave to partners, newest first.
#[utoipa::path(get, path = "/api/v1/persons/{ref}/consents", tag = "sharing",
    params(("ref" = String, Path, description = "personal ID or record key")),
    responses((status = 200, body = Vec<ConsentView>),
              (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn consents(State(st): State<AppState>, caller: Caller, Path(r): Path<String>) -> ApiResult<Response> {
    let key = person_key(&st, &caller, &r).await?;
    let list: Vec<ConsentView> = st.registry.store().consents_of(&key).await?.iter().map(ConsentView::from).collect();
    Ok(targeted(Json(list).into_response(), key))
}

/// Record a citizen's consent to a partner (given at the counter, with the citizen present).
#[utoipa::path(post, path = "/api/v1/persons/{ref}/consents", tag = "sharing",
    params(("ref" = String, Path, description = "personal ID or record key")),
    request_body = ConsentInput,
    responses((status = 201, body = ConsentView),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn grant(
    State(st): State<AppState>,
    caller: Caller,
    Path(r): Path<String>,
    ApiJson(body): ApiJson<ConsentInput>,
) -> ApiResult<Response> {
    let key = person_key(&st, &caller, &r).await?;
    let c = new_consent(&st, &key, body, caller.username()).await?;
    Ok(targeted((StatusCode::CREATED, Json(ConsentView::from(&c))).into_response(), key))
}

/// Checks and stores a consent of a person (record key) to a partner.
pub(crate) async fn new_consent(
    st: &AppState,
    person_key: &str,
    body: ConsentInput,
    recorded_by: &str,
) -> ApiResult<Consent> {
    let now = unix_now();
    if st.registry.store().partner_get(&body.partner_id).await?.is_none() {
        return Err(unprocessable(
            FieldError::new("partner_id", "unknown_partner", "no such partner").with_value(&body.partner_id),
        ));
    }
    let purpose = dancu_core::text::clean(&body.purpose);
    if purpose.is_empty() || purpose.chars().count() > 500 {
        return Err(unprocessable(FieldError::new(
            "purpose",
            "required",
            "what the consent is for (1-500 characters)",
        )));
    }
    let expires = time_field("expires_at", &body.expires_at).map_err(unprocessable)?;
    if expires <= now || expires > now + 5 * 366 * 86_400 {
        return Err(unprocessable(
            FieldError::new("expires_at", "out_of_range", "in the future, at most 5 years ahead")
                .with_value(&body.expires_at),
        ));
    }
    let c = Consent {
        id: uuid::Uuid::new_v4().to_string(),
        person_key: person_key.to_string(),
        partner_id: body.partner_id,
        purpose,
        granted_at: now,
        expires_at: expires,
        revoked_at: None,
        recorded_by: recorded_by.to_string(),
        revoked_by: None,
    };
    st.registry.store().consent_insert(&c).await?;
    Ok(c)
}

/// Revoke a consent at the citizen's request: effective at once.
#[utoipa::path(post, path = "/api/v1/persons/{ref}/consents/{id}/revoke", tag = "sharing",
    params(("ref" = String, Path, description = "personal ID or record key"),
           ("id" = String, Path, description = "consent id")),
    responses((status = 200, body = ConsentView),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "revoked already", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(
    State(st): State<AppState>,
    caller: Caller,
    Path((r, id)): Path<(String, String)>,
) -> ApiResult<Response> {
    let key = person_key(&st, &caller, &r).await?;
    let store = st.registry.store();
    match store.consent_get(&id).await? {
        Some(c) if c.person_key == key => {}
        _ => return Err(ApiError::not_found()),
    }
    let c = store.consent_revoke(&id, caller.username(), unix_now()).await?;
    Ok(targeted(Json(ConsentView::from(&c)).into_response(), key))
}
