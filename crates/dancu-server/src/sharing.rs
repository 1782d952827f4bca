//! Data sharing with partners: OAuth 2.0 client credentials (RFC 6749 §4.4) with
//! `private_key_jwt` client authentication (RFC 7523, ES256), short-lived access tokens signed
//! with the server's key (JWS ES256, RFC 9068 `at+jwt`), the partner check of every partner
//! route (token, partner status and validity, scope, rate limit, purpose), signed responses
//! (detached JWS in `X-Dancu-Signature`, key published at `/.well-known/jwks.json`), and the
//! services: identity verification (single and batch), data retrieval within the partner's
//! field scopes and the citizen's consent, pseudonymous identifiers, and the change-event feed.
//!
//! Invariants: a partner route runs only for a valid token of an active, unexpired partner whose
//! scope holds the route's service, under its rate limit, with a stated purpose; every partner
//! response — refusals included — is signed; every call is audited naming the partner, the
//! service and the purpose, and every person a call concerned has an entry of their own (their
//! access log shows it). Tokens issued before a partner's last change stop working.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dancu_core::sharing::{self as share, EventKind, Field, Partner, Service, Verification, VerificationFacts};
use dancu_core::{FieldError, PartialDate, PersonalId, Sex};
use dancu_keys::{PublicKey, Signer};
use dancu_store::{FeedItem, PersonRef};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::audit::{AuditActor, AuditTarget, RequestContext};
use crate::extract::{ApiJson, QueryPairs};
use crate::jose;
use crate::problem::{ApiError, ApiResult, Problem};

/// Lifetime of an access token.
pub const TOKEN_SECONDS: i64 = 300;
/// A client assertion may not live longer than this (its `jti` is remembered until it expires).
pub const ASSERTION_MAX_SECONDS: i64 = 300;
/// How long a partner read from the database is trusted before it is read again.
pub const PARTNER_CACHE_SECONDS: u64 = 5;
/// Rows a batch verification file may hold.
pub const BATCH_MAX_ROWS: usize = 1_000_000;
/// Size a batch verification file may have.
pub const BATCH_MAX_BYTES: usize = 96 * 1024 * 1024;
/// The header carrying the detached JWS of a response.
pub const SIGNATURE_HEADER: &str = "x-dancu-signature";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
const MAX_CACHED_TOKENS: usize = 100_000;

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// What an access token grants, once verified.
struct TokenInfo {
    partner: String,
    scopes: Vec<Service>,
    issued_at: i64,
    expires_at: i64,
}

/// Keys, caches and rate limits of data sharing.
pub struct SharingState {
    pub(crate) signer: Arc<dyn Signer>,
    public: PublicKey,
    /// The authorization server's identifier (`iss` of tokens, `aud` of client assertions).
    pub issuer: String,
    partners: Mutex<HashMap<String, (Arc<Partner>, Instant)>>,
    tokens: Mutex<HashMap<String, Arc<TokenInfo>>>,
    buckets: Mutex<HashMap<String, Bucket>>,
    /// Client-certificate fingerprint → partner id (mutual TLS), and when it was read.
    certs: Mutex<(HashMap<String, String>, Option<Instant>)>,
}

impl SharingState {
    /// `signer` signs access tokens and responses; `issuer` is the server's public base URL.
    pub fn new(signer: Arc<dyn Signer>, issuer: impl Into<String>) -> Self {
        let public = PublicKey::from_spki_der(signer.public_key_der()).expect("a signer's public key is P-256");
        SharingState {
            signer,
            public,
            issuer: issuer.into().trim_end_matches('/').to_string(),
            partners: Mutex::default(),
            tokens: Mutex::default(),
            buckets: Mutex::default(),
            certs: Mutex::default(),
        }
    }

    /// The key tokens, ID tokens and responses are signed with.
    pub fn signer(&self) -> &dyn Signer {
        self.signer.as_ref()
    }

    /// The public half of [`Self::signer`] (what the JWKS publishes).
    pub fn public_key(&self) -> &PublicKey {
        &self.public
    }

    pub fn key_id(&self) -> &str {
        self.signer.key_id()
    }

    /// Forgets a cached partner (after an administrator changed it): effective at once here.
    pub fn forget_partner(&self, id: &str) {
        self.partners.lock().expect("partner cache").remove(id);
        self.certs.lock().expect("certificate index").1 = None;
    }

    fn token_endpoint(&self) -> String {
        format!("{}/api/v1/oauth/token", self.issuer)
    }
}

pub(crate) fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub(crate) fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
}

/// A partner as the registry holds it (cached for a few seconds).
async fn partner(st: &AppState, id: &str) -> ApiResult<Option<Arc<Partner>>> {
    let sh = &st.sharing;
    if let Some((p, at)) = sh.partners.lock().expect("partner cache").get(id)
        && at.elapsed() < Duration::from_secs(PARTNER_CACHE_SECONDS)
    {
        return Ok(Some(p.clone()));
    }
    let Some(p) = st.registry.store().partner_get(id).await? else { return Ok(None) };
    let p = Arc::new(p);
    let mut cache = sh.partners.lock().expect("partner cache");
    if cache.len() > 10_000 {
        cache.clear();
    }
    cache.insert(id.to_string(), (p.clone(), Instant::now()));
    Ok(Some(p))
}

// ---- errors ----------------------------------------------------------------------------------

fn invalid_token(why: &str) -> Response {
    let mut res = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid-token",
        "Mã truy cập không hợp lệ / Invalid access token",
        format!("{why}; obtain a token at POST /api/v1/oauth/token and send it as 'Authorization: Bearer <token>'"),
    )
    .into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
    res
}

fn refused(status: StatusCode, kind: &'static str, title: &'static str, detail: impl Into<String>) -> Response {
    ApiError::new(status, kind, title, detail).into_response()
}

/// An OAuth error answer (RFC 6749 §5.2).
fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let mut res = (status, Json(json!({"error": error, "error_description": description.into()}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    res
}

// ---- signing ---------------------------------------------------------------------------------

/// Signs a response: its body, as sent, is the payload of a detached JWS in [`SIGNATURE_HEADER`]
/// whose protected header names the key (`kid`), the time (`iat`) and the request (`rid`).
pub async fn sign_response(st: &AppState, res: Response, request_id: &str) -> Response {
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, BATCH_MAX_BYTES * 2).await else {
        return ApiError::internal().into_response();
    };
    let extra = [("iat", json!(unix_now())), ("rid", json!(request_id))];
    match jose::sign_detached(st.sharing.signer.as_ref(), &extra, &bytes) {
        Ok(sig) => {
            if let Ok(v) = HeaderValue::from_str(&sig) {
                parts.headers.insert(SIGNATURE_HEADER, v);
            }
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(e) => {
            tracing::error!(error = %e, "signing a response failed: response withheld");
            ApiError::internal().into_response()
        }
    }
}

// ---- the partner check of partner routes -------------------------------------------------------

/// The partner calling a partner route, as handlers see it.
#[derive(Clone)]
pub struct PartnerCaller {
    pub partner: Arc<Partner>,
    pub service: Service,
    pub purpose: String,
}

impl PartnerCaller {
    pub fn audit_actor(&self) -> AuditActor {
        AuditActor {
            officer: format!("partner:{}", self.partner.id),
            role: self.service.code().to_string(),
            unit: self.partner.kind.code().to_string(),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PartnerCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, Response> {
        parts.extensions.get::<PartnerCaller>().cloned().ok_or_else(|| invalid_token("no partner token"))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}

/// Verifies an access token (signature once per token, then from memory).
fn check_token(sh: &SharingState, token: &str, now: i64) -> Result<Arc<TokenInfo>, &'static str> {
    if let Some(t) = sh.tokens.lock().expect("token cache").get(token) {
        return if t.expires_at > now { Ok(t.clone()) } else { Err("the access token has expired") };
    }
    let parsed = jose::parse(token).map_err(|_| "not an access token of this registry")?;
    if parsed.kid() != Some(sh.key_id()) || parsed.header.get("typ").and_then(Value::as_str) != Some("at+jwt") {
        return Err("not an access token of this registry");
    }
    parsed.verify(token, &sh.public).map_err(|_| "the access token's signature does not verify")?;
    let c = parsed.claims().map_err(|_| "not an access token of this registry")?;
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    let n = |k: &str| c.get(k).and_then(Value::as_i64);
    if s("iss") != Some(sh.issuer.as_str()) || s("aud") != Some(sh.issuer.as_str()) {
        return Err("the access token was issued for another server");
    }
    let (Some(partner), Some(scope), Some(iat), Some(exp)) = (s("sub"), s("scope"), n("iat"), n("exp")) else {
        return Err("the access token lacks claims");
    };
    let info = Arc::new(TokenInfo {
        partner: partner.to_string(),
        scopes: scope.split(' ').filter_map(Service::from_code).collect(),
        issued_at: iat,
        expires_at: exp,
    });
    if exp <= now {
        return Err("the access token has expired");
    }
    let mut cache = sh.tokens.lock().expect("token cache");
    if cache.len() >= MAX_CACHED_TOKENS {
        cache.retain(|_, t| t.expires_at > now);
        if cache.len() >= MAX_CACHED_TOKENS {
            cache.clear();
        }
    }
    cache.insert(token.to_string(), info.clone());
    Ok(info)
}

/// Takes one call from the partner's bucket; the seconds to wait when it is empty.
fn take(sh: &SharingState, p: &Partner) -> Result<(), u64> {
    let rate = f64::from(p.rate_limit_per_second.max(1));
    let mut buckets = sh.buckets.lock().expect("rate buckets");
    let now = Instant::now();
    // Looked up before inserting: the partner's id is copied only for its first call.
    if !buckets.contains_key(&p.id) {
        buckets.insert(p.id.clone(), Bucket { tokens: rate, last: now });
    }
    let b = buckets.get_mut(&p.id).expect("inserted above");
    b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * rate).min(rate);
    b.last = now;
    if b.tokens >= 1.0 {
        b.tokens -= 1.0;
        Ok(())
    } else {
        Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
    }
}

/// The check of a partner route (see the module's invariants); signs whatever is answered.
pub async fn authorize_partner(st: &AppState, service: Service, mut req: Request, next: Next) -> Response {
    let request_id = req.extensions().get::<RequestContext>().map(|c| c.request_id.clone()).unwrap_or_default();
    let cert = req.extensions().get::<crate::ClientCert>().cloned();
    let (res, actor) = match admit(st, service, req.headers(), cert.as_ref()).await {
        Ok(caller) => {
            let actor = caller.audit_actor();
            req.extensions_mut().insert(caller);
            (next.run(req).await, Some(actor))
        }
        Err((res, actor)) => (res, actor),
    };
    let mut res = sign_response(st, res, &request_id).await;
    if let Some(a) = actor {
        res.extensions_mut().insert(a);
    }
    res
}

/// The partner whose client certificate this is (mutual TLS), if one is registered with it.
async fn partner_by_cert(st: &AppState, cert: &crate::ClientCert) -> ApiResult<Option<String>> {
    let sh = &st.sharing;
    {
        let index = sh.certs.lock().expect("certificate index");
        let fresh = index.1.is_some_and(|at| at.elapsed() < Duration::from_secs(PARTNER_CACHE_SECONDS));
        if fresh || index.0.contains_key(&cert.sha256) {
            return Ok(index.0.get(&cert.sha256).cloned());
        }
    }
    let partners = st.registry.store().partner_list().await?;
    let map: HashMap<String, String> =
        partners.into_iter().filter_map(|p| p.client_cert_sha256.map(|f| (f, p.id))).collect();
    let found = map.get(&cert.sha256).cloned();
    *sh.certs.lock().expect("certificate index") = (map, Some(Instant::now()));
    Ok(found)
}

async fn admit(
    st: &AppState,
    service: Service,
    headers: &HeaderMap,
    cert: Option<&crate::ClientCert>,
) -> Result<PartnerCaller, (Response, Option<AuditActor>)> {
    let now = unix_now();
    // A bearer token, or else (on the mutual-TLS port) the client certificate.
    let info = match (bearer(headers), cert) {
        (Some(token), _) => Some(check_token(&st.sharing, token, now).map_err(|why| (invalid_token(why), None))?),
        (None, Some(_)) => None,
        (None, None) => return Err((invalid_token("no access token"), None)),
    };
    let partner_id = match (&info, cert) {
        (Some(i), _) => i.partner.clone(),
        (None, Some(c)) => match partner_by_cert(st, c).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                return Err((invalid_token("the client certificate is not registered to a partner"), None));
            }
            Err(e) => return Err((e.into_response(), None)),
        },
        (None, None) => unreachable!("refused above"),
    };
    let p = match partner(st, &partner_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err((invalid_token("the partner is not registered"), None)),
        Err(e) => return Err((e.into_response(), None)),
    };
    let purpose = crate::audit::purpose(headers).unwrap_or_default();
    let caller = PartnerCaller { partner: p.clone(), service, purpose };
    let actor = Some(caller.audit_actor());
    if let Some(why) = p.refusal(now) {
        let res =
            refused(StatusCode::FORBIDDEN, "partner-inactive", "Đối tác không còn hiệu lực / Partner inactive", why);
        return Err((res, actor));
    }
    if let Some(info) = &info
        && info.issued_at < p.updated_at
    {
        return Err((invalid_token("the partner's registration changed after this token was issued"), actor));
    }
    if info.is_none() && p.client_cert_sha256.as_deref() != cert.map(|c| c.sha256.as_str()) {
        // The certificate index was older than the registration: it no longer names this partner.
        return Err((invalid_token("the client certificate is not registered to a partner"), actor));
    }
    let token_scope = info.as_ref().is_none_or(|i| i.scopes.contains(&service));
    if !token_scope || !p.allows(service) {
        let mut res = refused(
            StatusCode::FORBIDDEN,
            "insufficient-scope",
            "Ngoài phạm vi được cấp / Beyond the granted scope",
            format!("this service needs the scope '{}', which the token does not hold", service.code()),
        );
        res.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&format!("Bearer error=\"insufficient_scope\", scope=\"{}\"", service.code()))
                .expect("ASCII"),
        );
        return Err((res, actor));
    }
    if let Err(wait) = take(&st.sharing, &p) {
        let mut res = refused(
            StatusCode::TOO_MANY_REQUESTS,
            "rate-limited",
            "Vượt giới hạn tần suất / Rate limit exceeded",
            format!("at most {} calls per second; try again in {wait} s", p.rate_limit_per_second),
        );
        res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(wait));
        return Err((res, actor));
    }
    if caller.purpose.is_empty() {
        let res = ApiError::field(
            StatusCode::BAD_REQUEST,
            "purpose-required",
            "Thiếu mục đích / Purpose required",
            FieldError::new(
                "X-Dancu-Purpose",
                "required",
                "every call states its purpose (e.g. the case or contract it serves) in the X-Dancu-Purpose header",
            ),
        )
        .into_response();
        return Err((res, actor));
    }
    Ok(caller)
}

// ---- the token endpoint ----------------------------------------------------------------------

/// A token request (RFC 6749 §4.4.2 with RFC 7523 §2.2 client authentication).
#[derive(Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// `client_credentials`.
    pub grant_type: Option<String>,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    pub client_assertion_type: Option<String>,
    /// A JWT signed (ES256) with the partner's registered key: `iss` = `sub` = the partner id,
    /// `aud` = the issuer or the token endpoint URL, `exp` at most 5 minutes ahead, a unique `jti`.
    pub client_assertion: Option<String>,
    /// Space-separated services (default: every service the partner is registered for).
    pub scope: Option<String>,
    pub client_id: Option<String>,
}

/// An access token.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
}

/// OAuth 2.0 token endpoint: client credentials grant with `private_key_jwt` client
/// authentication. Errors follow RFC 6749 §5.2 (`error`, `error_description`).
#[utoipa::path(post, path = "/api/v1/oauth/token", tag = "sharing",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "an access token (a JWS, `at+jwt`)", body = TokenResponse),
        (status = 400, description = "invalid_request, unsupported_grant_type or invalid_scope"),
        (status = 401, description = "invalid_client: unknown, inactive, bad signature, expired or replayed assertion"),
    ))]
pub async fn token(State(st): State<AppState>, req: Request) -> Response {
    let request_id = req.extensions().get::<RequestContext>().map(|c| c.request_id.clone()).unwrap_or_default();
    let (res, actor) = token_inner(&st, req).await;
    let mut res = sign_response(&st, res, &request_id).await;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.extensions_mut().insert(actor);
    res
}

async fn token_inner(st: &AppState, req: Request) -> (Response, AuditActor) {
    let mut actor = AuditActor { officer: "anonymous".into(), role: "token".into(), unit: String::new() };
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        let e = oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the body must be application/x-www-form-urlencoded",
        );
        return (e, actor);
    }
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return (
            oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "the body could not be read (at most 64 KiB)"),
            actor,
        );
    };
    let form: TokenRequest = match serde_urlencoded::from_bytes(&bytes) {
        Ok(f) => f,
        Err(e) => return (oauth_error(StatusCode::BAD_REQUEST, "invalid_request", format!("form: {e}")), actor),
    };
    if form.grant_type.as_deref() != Some("client_credentials") {
        let e = oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "grant_type must be client_credentials");
        return (e, actor);
    }
    if form.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
        let e = oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            format!("client authentication is private_key_jwt: client_assertion_type must be {ASSERTION_TYPE}"),
        );
        return (e, actor);
    }
    let Some(assertion) = form.client_assertion.as_deref() else {
        return (oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client_assertion is missing"), actor);
    };
    let bad = |why: String| oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why);
    let parsed = match jose::parse(assertion) {
        Ok(p) => p,
        Err(e) => return (bad(format!("client_assertion: {e}")), actor),
    };
    let Ok(claims) = parsed.claims() else {
        return (bad("client_assertion: the claims are not a JSON object".into()), actor);
    };
    let s = |k: &str| claims.get(k).and_then(Value::as_str);
    let n = |k: &str| claims.get(k).and_then(Value::as_i64);
    let Some(iss) = s("iss").filter(|i| share::partner_id_problem(i).is_none()) else {
        return (bad("client_assertion: iss must be the partner's id".into()), actor);
    };
    actor.officer = format!("partner:{iss}");
    if s("sub") != Some(iss) || form.client_id.as_deref().is_some_and(|c| c != iss) {
        return (bad("client_assertion: sub (and client_id, if given) must equal iss".into()), actor);
    }
    let p = match st.registry.store().partner_get(iss).await {
        Ok(Some(p)) => p,
        Ok(None) => return (bad(format!("no partner {iss:?} is registered")), actor),
        Err(e) => return (ApiError::from(e).into_response(), actor),
    };
    actor.unit = p.kind.code().into();
    let Ok(key) = PublicKey::from_pem(&p.public_key_pem) else {
        return (bad("the partner's registered key is unusable; ask the registry to re-register it".into()), actor);
    };
    if parsed.verify(assertion, &key).is_err() {
        return (
            bad("client_assertion: the signature does not verify with the partner's registered key".into()),
            actor,
        );
    }
    let audience = [st.sharing.issuer.clone(), st.sharing.token_endpoint()];
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => audience.contains(a),
        Some(Value::Array(v)) => v.iter().any(|a| a.as_str().is_some_and(|a| audience.iter().any(|x| x == a))),
        _ => false,
    };
    if !aud_ok {
        return (bad(format!("client_assertion: aud must be {:?} or {:?}", audience[0], audience[1])), actor);
    }
    let now = unix_now();
    let Some(exp) = n("exp") else { return (bad("client_assertion: exp is missing".into()), actor) };
    if exp <= now {
        return (bad(format!("client_assertion: expired {} s ago", now - exp)), actor);
    }
    if exp > now + ASSERTION_MAX_SECONDS + 30 {
        return (bad(format!("client_assertion: exp may be at most {ASSERTION_MAX_SECONDS} s ahead")), actor);
    }
    if n("nbf").is_some_and(|nbf| nbf > now + 30) || n("iat").is_some_and(|iat| iat > now + 30) {
        return (bad("client_assertion: not valid yet (nbf or iat in the future)".into()), actor);
    }
    let Some(jti) = s("jti").filter(|j| !j.is_empty() && j.len() <= 256) else {
        return (bad("client_assertion: jti (1-256 characters) is required".into()), actor);
    };
    if let Some(why) = p.refusal(now) {
        return (bad(why.to_string()), actor);
    }
    let scopes: Vec<Service> = match form.scope.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => p.services.clone(),
        Some(requested) => {
            let mut out = Vec::new();
            for code in requested.split_whitespace() {
                match Service::from_code(code) {
                    Some(s) if p.allows(s) => out.push(s),
                    _ => {
                        let e = oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_scope",
                            format!("scope {code:?} is not among the partner's services"),
                        );
                        return (e, actor);
                    }
                }
            }
            out
        }
    };
    match st.registry.store().assertion_use(&p.id, jti, exp, now).await {
        Ok(true) => {}
        Ok(false) => return (bad("client_assertion: this assertion (jti) was used before".into()), actor),
        Err(e) => return (ApiError::from(e).into_response(), actor),
    }
    let scope = scopes.iter().map(|s| s.code()).collect::<Vec<_>>().join(" ");
    let mut jti_bytes = [0u8; 16];
    if getrandom::fill(&mut jti_bytes).is_err() {
        return (ApiError::internal().into_response(), actor);
    }
    let claims = json!({
        "iss": st.sharing.issuer, "aud": st.sharing.issuer, "sub": p.id, "client_id": p.id, "scope": scope,
        "iat": now, "exp": now + TOKEN_SECONDS, "jti": share::b64url(&jti_bytes),
    });
    let payload = serde_json::to_vec(&claims).expect("JSON");
    let access_token = match jose::sign(st.sharing.signer.as_ref(), &[("typ", json!("at+jwt"))], &payload) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(error = %e, "signing an access token failed");
            return (ApiError::internal().into_response(), actor);
        }
    };
    let body = TokenResponse { access_token, token_type: "Bearer", expires_in: TOKEN_SECONDS, scope };
    (Json(body).into_response(), actor)
}

/// The server's signing key (tokens and responses) as a JSON Web Key Set.
pub async fn jwks(State(st): State<AppState>) -> Response {
    let body = json!({"keys": [jose::jwk(&st.sharing.public, st.sharing.key_id())]});
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

/// Authorization server metadata (RFC 8414).
pub async fn metadata(State(st): State<AppState>) -> Response {
    let i = &st.sharing.issuer;
    let body = json!({
        "issuer": i,
        "token_endpoint": st.sharing.token_endpoint(),
        "jwks_uri": format!("{i}/.well-known/jwks.json"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "scopes_supported": Service::ALL.iter().map(|s| s.code()).collect::<Vec<_>>(),
    });
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

// ---- services --------------------------------------------------------------------------------

/// What a partner gives to verify a person.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// 12-digit personal ID.
    pub personal_id: String,
    /// Full name as the partner holds it (family, middle, given).
    pub name: String,
    /// `YYYY-MM-DD` (or `YYYY-MM`, `YYYY`).
    pub birth_date: String,
    #[serde(default)]
    pub sex: Option<Sex>,
}

fn invalid(field: &str, code: &'static str, reason: &str, value: &str) -> FieldError {
    FieldError::new(field, code, reason).with_value(value)
}

/// Checks a verification's inputs; the field errors otherwise.
fn verify_inputs(id: &str, name: &str, date: &str) -> Result<(PersonalId, PartialDate), FieldError> {
    let pid =
        PersonalId::parse(id.trim()).map_err(|e| invalid("personal_id", "invalid_personal_id", &format!("{e}"), id))?;
    let name_len = name.trim().chars().count();
    if name_len == 0 || name_len > 200 {
        return Err(FieldError::new("name", "required", "the full name, 1 to 200 characters"));
    }
    let d = PartialDate::parse(date.trim()).map_err(|e| invalid("birth_date", "invalid_date", &e.to_string(), date))?;
    Ok((pid, d))
}

/// The person holding an ID, with what a verification compares (the stored record is read
/// partially, without building the whole record).
async fn facts(st: &AppState, id: PersonalId) -> ApiResult<Option<(String, VerificationFacts)>> {
    let Some(raw) = st.registry.store().get_person_raw(&PersonRef::PersonalId(id)).await? else { return Ok(None) };
    let f: VerificationFacts = serde_json::from_str(raw.person.get()).map_err(|_| {
        tracing::error!("a stored person record does not parse");
        ApiError::internal()
    })?;
    Ok(Some((raw.key.to_string(), f)))
}

/// Identity verification (e-KYC): does a person hold this ID with this name and birth date?
/// A per-field result; `match` is true only for a living person and an exact match of every
/// field given.
#[utoipa::path(post, path = "/api/v1/sharing/verify", tag = "sharing",
    request_body = VerifyRequest,
    params(("X-Dancu-Purpose" = String, Header, description = "why the partner verifies")),
    responses(
        (status = 200, description = "the result, field by field (signed: X-Dancu-Signature)", body = Verification),
        (status = 422, description = "an invalid field, named", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "no valid access token", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "rate limit exceeded (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify(State(st): State<AppState>, ApiJson(body): ApiJson<VerifyRequest>) -> ApiResult<Response> {
    let (id, date) = verify_inputs(&body.personal_id, &body.name, &body.birth_date).map_err(|e| {
        ApiError::field(StatusCode::UNPROCESSABLE_ENTITY, "validation", "The request has invalid fields", e)
    })?;
    let found = facts(&st, id).await?;
    let result = share::verify(found.as_ref().map(|f| &f.1), &body.name, &date, body.sex);
    let mut res = Json(result).into_response();
    if let Some((key, _)) = found {
        res.extensions_mut().insert(AuditTarget(key));
    }
    Ok(res)
}

/// The fields of a person within the partner's scope. Where the partner needs the citizen's
/// consent, only with one in force.
#[utoipa::path(get, path = "/api/v1/sharing/persons/{personal_id}", tag = "sharing",
    params(("personal_id" = String, Path, description = "12-digit personal ID"),
           ("X-Dancu-Purpose" = String, Header, description = "why the partner reads")),
    responses(
        (status = 200, description = "the fields of the partner's scope (signed)"),
        (status = 403, description = "consent required and not in force", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn retrieve(
    State(st): State<AppState>,
    caller: PartnerCaller,
    Path(personal_id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&personal_id)?;
    let Some(raw) = st.registry.store().get_person_raw(&PersonRef::PersonalId(id)).await? else {
        return Err(ApiError::not_found());
    };
    let key = raw.key.to_string();
    let p = &caller.partner;
    if p.consent_required && !st.registry.store().consent_in_force(&key, &p.id, unix_now()).await? {
        let mut res = ApiError::new(
            StatusCode::FORBIDDEN,
            "consent-required",
            "Cần sự đồng ý của công dân / The citizen's consent is required",
            "the citizen has not consented to this partner reading their data, or the consent expired or was \
             revoked",
        )
        .into_response();
        res.extensions_mut().insert(AuditTarget(key));
        return Ok(res);
    }
    let full: serde_json::Map<String, Value> =
        serde_json::from_str(raw.person.get()).map_err(|_| ApiError::internal())?;
    let mut out = serde_json::Map::new();
    for f in &p.fields {
        for k in f.json_keys() {
            if let Some(v) = full.get(*k) {
                out.insert((*k).to_string(), v.clone());
            }
        }
    }
    let fields: Vec<Field> = p.fields.clone();
    let mut res = Json(json!({"person": out, "fields": fields, "version": raw.version})).into_response();
    res.extensions_mut().insert(AuditTarget(key));
    Ok(res)
}

fn parse_id(s: &str) -> ApiResult<PersonalId> {
    PersonalId::parse(s).map_err(|e| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "Invalid personal ID",
            invalid("personal_id", "invalid_personal_id", &e.to_string(), s),
        )
    })
}

pub(crate) fn pseudonym_key(st: &AppState, p: &Partner) -> ApiResult<Vec<u8>> {
    st.secrets
        .open(&p.pseudonym_key_sealed, &format!("partner:{}", p.id))
        .and_then(|k| share::b64url_decode(&k))
        .ok_or_else(|| {
            tracing::error!("a partner's pseudonym key does not open: wrong secrets key, or an edited row");
            ApiError::internal()
        })
}

/// The partner's pseudonymous identifier of a person: stable for this partner, unlinkable
/// across partners, and not reversible to the ID without the registry's key.
#[utoipa::path(get, path = "/api/v1/sharing/pseudonyms/{personal_id}", tag = "sharing",
    params(("personal_id" = String, Path, description = "12-digit personal ID"),
           ("X-Dancu-Purpose" = String, Header, description = "why")),
    responses(
        (status = 200, description = "`{\"pseudonym\": …}` (signed)"),
        (status = 404, description = "no such person", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn pseudonym(
    State(st): State<AppState>,
    caller: PartnerCaller,
    Path(personal_id): Path<String>,
) -> ApiResult<Response> {
    let id = parse_id(&personal_id)?;
    let Some(raw) = st.registry.store().get_person_raw(&PersonRef::PersonalId(id)).await? else {
        return Err(ApiError::not_found());
    };
    let key = pseudonym_key(&st, &caller.partner)?;
    let value = share::pseudonym(&key, id.as_str());
    let mut res = Json(json!({"pseudonym": value, "scheme": "hmac-sha256-v1"})).into_response();
    res.extensions_mut().insert(AuditTarget(raw.key.to_string()));
    Ok(res)
}

/// Change events in the partner's scope (births registered by the civil registration system —
/// once the child has its personal ID —, deaths, name changes, moves), oldest first, after a
/// position; `next` is where to resume. Each event has a stable `id` for deduplication.
#[utoipa::path(get, path = "/api/v1/sharing/events", tag = "sharing",
    params(("after" = Option<i64>, Query, description = "resume after this position (0: from the start)"),
           ("limit" = Option<u32>, Query, description = "versions examined, 1-1000 (default 200)"),
           ("X-Dancu-Purpose" = String, Header, description = "why")),
    responses((status = 200, description = "`{\"events\": […], \"next\": N}` (signed)")))]
pub async fn events(State(st): State<AppState>, caller: PartnerCaller, q: QueryPairs) -> ApiResult<Response> {
    q.check(&["after", "limit"])?;
    let after = q.int("after", 0..=i64::MAX)?.unwrap_or(0);
    let limit = q.int("limit", 1..=1000)?.unwrap_or(200) as u32;
    let items = st.registry.store().change_feed(after, limit).await?;
    let p = &caller.partner;
    let key = if p.allows(Service::Pseudonym) { Some(pseudonym_key(&st, p)?) } else { None };
    let mut out = Vec::new();
    let mut next = after;
    let mut targets = Vec::new();
    for item in &items {
        next = item.position;
        for (_, ev) in partner_events(p, key.as_deref(), item) {
            out.push(ev);
            targets.push(item.key.to_string());
        }
    }
    record_each(&st, &caller, "partner.events", targets).await?;
    Ok(Json(json!({"events": out, "next": next})).into_response())
}

/// The events one change of a record makes for a partner (those its field scopes see), each with
/// its stable id (`{record key}:{version}:{kind}`) — the same for the feed and for webhooks.
pub(crate) fn partner_events(p: &Partner, pseudonym_key: Option<&[u8]>, item: &FeedItem) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for kind in share::events(&item.before, &item.after, item.registered_birth) {
        if !kind.in_scope(&p.fields) {
            continue;
        }
        let person = &item.after;
        let id = format!("{}:{}:{}", item.key, item.version, kind.code());
        let mut ev = serde_json::Map::new();
        ev.insert("id".into(), json!(id));
        ev.insert("kind".into(), json!(kind));
        ev.insert("at".into(), json!(rfc3339(item.recorded_at.unix_timestamp())));
        if let Some(pid) = person.personal_id {
            if p.sees(Field::PersonalId) {
                ev.insert("personal_id".into(), json!(pid));
            }
            if let Some(k) = pseudonym_key {
                ev.insert("pseudonym".into(), json!(share::pseudonym(k, pid.as_str())));
            }
        }
        match kind {
            EventKind::Birth => {
                // The new person as registered, within the partner's fields (the birth date is in
                // scope, or the partner would not be told).
                let r = &person.record;
                ev.insert("status".into(), json!(person.status));
                for (f, k, v) in [
                    (Field::BirthDate, "birth_date", json!(r.birth_date)),
                    (Field::FullName, "name", json!(r.name)),
                    (Field::Sex, "sex", json!(r.sex)),
                    (Field::BirthPlace, "birth_place", json!(r.birth_place)),
                    (Field::BirthRegistrationPlace, "birth_registration_place", json!(r.birth_registration_place)),
                    (Field::Nationalities, "nationalities", json!(r.nationalities)),
                    (Field::Ethnicity, "ethnicity", json!(r.ethnicity)),
                    (Field::PermanentResidence, "permanent_residence", json!(r.permanent_residence)),
                    (Field::CurrentResidence, "current_residence", json!(r.current_residence)),
                    (Field::Relatives, "relatives", json!(r.relatives)),
                ] {
                    if p.sees(f) {
                        ev.insert(k.into(), v);
                    }
                }
            }
            EventKind::Death | EventKind::Missing => {
                ev.insert("status".into(), json!(person.status));
                ev.insert("status_date".into(), json!(person.status_date));
            }
            EventKind::NameChange => {
                ev.insert("name".into(), json!(person.record.name));
            }
            EventKind::Move => {
                let r = &person.record;
                for (f, k, v) in [
                    (Field::PermanentResidence, "permanent_residence", &r.permanent_residence),
                    (Field::TemporaryResidence, "temporary_residence", &r.temporary_residence),
                    (Field::CurrentResidence, "current_residence", &r.current_residence),
                ] {
                    if p.sees(f) {
                        ev.insert(k.into(), json!(v));
                    }
                }
            }
        }
        out.push((id, Value::Object(ev)));
    }
    out
}

/// One audit entry per person a call concerned (their access log shows it), durable before the
/// answer.
pub(crate) async fn record_each(
    st: &AppState,
    caller: &PartnerCaller,
    action: &str,
    targets: Vec<String>,
) -> ApiResult<()> {
    let Some(writer) = &st.audit else { return Ok(()) };
    if targets.is_empty() {
        return Ok(());
    }
    let actor = caller.audit_actor();
    let at = crate::audit::now_rfc3339();
    let entries = targets.into_iter().map(|t| {
        let mut e = dancu_core::audit::AuditEntry {
            at: at.clone(),
            officer: String::new(),
            role: String::new(),
            unit: String::new(),
            action: action.into(),
            target: Some(t),
            purpose: Some(caller.purpose.clone()),
            request_id: None,
            client: None,
            outcome: "ok".into(),
        };
        actor.fill(&mut e);
        e
    });
    writer.record_many(entries).await.map_err(|e| {
        tracing::error!(error = %e, "audit trail unavailable: response withheld");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "audit-unavailable",
            "The audit trail cannot be written",
            "the request was not answered because it could not be recorded; try again later",
        )
    })
}

/// Splits one CSV line (RFC 4180 quoting) into fields; `None` for an unterminated quote.
fn csv_fields(line: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = line.chars().peekable();
    let mut quoted = false;
    let mut at_start = true;
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    cur.push('"');
                } else {
                    quoted = false;
                }
            } else {
                cur.push(c);
            }
        } else if c == '"' && at_start {
            quoted = true;
            at_start = false;
        } else if c == ',' {
            out.push(std::mem::take(&mut cur));
            at_start = true;
        } else {
            cur.push(c);
            at_start = false;
        }
    }
    if quoted {
        return None;
    }
    out.push(cur);
    Some(out)
}

fn csv_quote(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
}

/// Batch verification: a CSV file (`personal_id,name,birth_date[,sex]`, a header line optional,
/// at most 1,000,000 rows) in, a CSV result file out, one line per row in the same order. A
/// malformed row gets its own result naming the field; it never stops the others.
#[utoipa::path(post, path = "/api/v1/sharing/verify/batch", tag = "sharing",
    request_body(content = String, content_type = "text/csv",
                 description = "personal_id,name,birth_date[,sex] — UTF-8, one person a line"),
    params(("X-Dancu-Purpose" = String, Header, description = "why")),
    responses(
        (status = 200, description = "text/csv: row,personal_id,match,personal_id_result,name,birth_date,sex,person_status,error (signed)"),
        (status = 413, description = "more than 1,000,000 rows or 96 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "not UTF-8", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn verify_batch(State(st): State<AppState>, caller: PartnerCaller, req: Request) -> ApiResult<Response> {
    let bytes = axum::body::to_bytes(req.into_body(), BATCH_MAX_BYTES).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "The file is too large",
            format!("a batch file holds at most {BATCH_MAX_BYTES} bytes"),
        )
    })?;
    let text = std::str::from_utf8(&bytes).map_err(|e| {
        ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The file is not UTF-8",
            FieldError::new("body", "not_utf8", format!("invalid UTF-8 at byte {}", e.valid_up_to())),
        )
    })?;
    let mut lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    if lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.first().is_some_and(|l| l.trim_start_matches('\u{feff}').starts_with("personal_id")) {
        lines.remove(0);
    }
    if lines.len() > BATCH_MAX_ROWS {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            "Too many rows",
            format!("{} rows; a batch holds at most {BATCH_MAX_ROWS}", lines.len()),
        ));
    }
    let mut out = String::with_capacity(lines.len() * 64 + 100);
    out.push_str("row,personal_id,match,personal_id_result,name,birth_date,sex,person_status,error\n");
    let mut targets = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if i % 2048 == 2047 {
            tokio::task::yield_now().await;
        }
        let row = i + 1;
        match batch_row(&st, line).await? {
            Ok((id, v, key)) => {
                let status = v.person_status.map(|s| s.code()).unwrap_or("");
                out.push_str(&format!(
                    "{row},{id},{},{},{},{},{},{status},\n",
                    v.matched,
                    v.personal_id.code(),
                    v.name.code(),
                    v.birth_date.code(),
                    v.sex.code()
                ));
                targets.extend(key);
            }
            Err(e) => {
                let why = format!("{}: {}", e.field, e.reason);
                out.push_str(&format!("{row},,false,,,,,,{}\n", csv_quote(&why)));
            }
        }
    }
    record_each(&st, &caller, "partner.batch_verify", targets).await?;
    let mut res = out.into_response();
    res.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    Ok(res)
}

type RowResult = Result<(PersonalId, Verification, Option<String>), FieldError>;

async fn batch_row(st: &AppState, line: &str) -> ApiResult<RowResult> {
    let Some(f) = csv_fields(line) else {
        return Ok(Err(FieldError::new("line", "unterminated_quote", "a quoted field is not closed")));
    };
    if f.len() < 3 || f.len() > 4 {
        return Ok(Err(FieldError::new(
            "line",
            "column_count",
            format!("{} columns; expected personal_id,name,birth_date[,sex]", f.len()),
        )));
    }
    let (id, date) = match verify_inputs(&f[0], &f[1], &f[2]) {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let sex = match f.get(3).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => None,
        Some("male") => Some(Sex::Male),
        Some("female") => Some(Sex::Female),
        Some(other) => return Ok(Err(invalid("sex", "invalid_sex", "male or female", other))),
    };
    let found = facts(st, id).await?;
    let v = share::verify(found.as_ref().map(|x| &x.1), &f[1], &date, sex);
    Ok(Ok((id, v, found.map(|x| x.0))))
}

/// The request body limit of the batch route (the rest of the API keeps the default).
pub fn batch_route() -> axum::routing::MethodRouter<AppState> {
    axum::routing::post(verify_batch).layer(axum::extract::DefaultBodyLimit::max(BATCH_MAX_BYTES))
}

/// Validates a partner's key as given by an administrator: a P-256 public key in PEM.
pub fn check_public_key(pem: &str) -> Result<(), FieldError> {
    PublicKey::from_pem(pem).map(|_| ()).map_err(|e| FieldError::new("public_key_pem", "invalid_key", e))
}

/// A fresh pseudonym key for a partner, sealed for storage.
pub fn new_pseudonym_key(st: &AppState, partner_id: &str) -> ApiResult<String> {
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|_| ApiError::internal())?;
    st.secrets.seal(&share::b64url(&k), &format!("partner:{partner_id}")).map_err(|_| ApiError::internal())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_follow_rfc4180() {
        assert_eq!(csv_fields("a,b,c").unwrap(), ["a", "b", "c"]);
        assert_eq!(csv_fields("\"Nguyễn, Văn\",\"x\"\"y\",").unwrap(), ["Nguyễn, Văn", "x\"y", ""]);
        assert!(csv_fields("\"open").is_none());
        assert_eq!(csv_quote("a,b"), "\"a,b\"");
    }
}
