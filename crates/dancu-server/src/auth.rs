//! Authentication: login with password (Argon2id) and TOTP second factor, sessions for the
//! browser (HttpOnly, Secure, SameSite=Strict cookie) and bearer tokens for API clients, idle
//! and absolute timeouts, rotation when a login completes, lockout with back-off, logout.
//!
//! Tokens are 32 random bytes; the store keeps only their SHA-256. Sessions are cached in
//! memory for a few seconds (a lookup must not cost a database read); logging out on this server
//! takes effect at once, on other servers sharing the database within [`CACHE_SECONDS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dancu_core::FieldError;
use dancu_core::access::Permission;
use dancu_core::auth::{self as core_auth, Officer, Role, SessionEnd, SessionKind, SessionStage};
use dancu_store::Session;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::AppState;
use crate::audit::AuditActor;
use crate::extract::ApiJson;
use crate::problem::{ApiError, ApiResult, Problem};

/// How long a cached session is trusted before it is read again from the database.
pub const CACHE_SECONDS: u64 = 5;
/// Sessions cached at most (beyond it, stale entries are dropped).
const MAX_CACHED: usize = 10_000;
/// The session cookie's name.
pub const COOKIE: &str = "dancu_session";

/// Session lifetimes.
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// A session unused this long ends.
    pub idle: Duration,
    /// A session ends this long after login, used or not.
    pub absolute: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        // A working day, and 30 minutes away from the desk.
        AuthConfig { idle: Duration::from_secs(30 * 60), absolute: Duration::from_secs(8 * 3600) }
    }
}

struct Cached {
    session: Session,
    officer: Arc<Officer>,
    loaded: Instant,
}

/// Authentication state shared by all requests.
pub struct AuthState {
    pub config: AuthConfig,
    sessions: Mutex<HashMap<String, Cached>>,
    /// Failed logins for names that are not accounts, so that lockout does not tell them apart.
    unknown: Mutex<HashMap<String, (u32, i64)>>,
    /// Password hashing is deliberately costly: at most two at a time.
    hashing: tokio::sync::Semaphore,
}

impl AuthState {
    pub fn new(config: AuthConfig) -> Self {
        AuthState {
            config,
            sessions: Mutex::default(),
            unknown: Mutex::default(),
            hashing: tokio::sync::Semaphore::new(2),
        }
    }

    /// Forgets cached sessions of an officer (after their account changed).
    pub fn forget_officer(&self, username: &str) {
        self.sessions.lock().expect("session cache").retain(|_, c| c.session.username != username);
    }

    fn forget(&self, token_hash: &str) {
        self.sessions.lock().expect("session cache").remove(token_hash);
    }
}

/// The authenticated officer of a request, as the handlers see it.
#[derive(Clone)]
pub struct Caller {
    pub officer: Arc<Officer>,
    pub token_hash: String,
    pub kind: SessionKind,
    pub stage: SessionStage,
    pub expires_at: OffsetDateTime,
    /// The caller's roles that the route admits (all roles on routes open to any officer).
    pub acting: Vec<Role>,
}

impl Caller {
    pub fn username(&self) -> &str {
        &self.officer.username
    }

    /// The area of the caller's unit (`None`: the whole country).
    pub fn area(&self) -> Option<String> {
        self.officer.unit.area()
    }

    /// Whether the caller may see a person lying in `areas`.
    pub fn governs(&self, areas: &[String]) -> bool {
        self.officer.unit.governs(areas)
    }

    /// A person outside the caller's area answers exactly as a missing one.
    pub fn see(&self, areas: &[String]) -> ApiResult<()> {
        if self.governs(areas) { Ok(()) } else { Err(ApiError::not_found()) }
    }

    pub fn audit_actor(&self) -> AuditActor {
        let roles = if self.acting.is_empty() { &self.officer.roles } else { &self.acting };
        AuditActor {
            officer: self.officer.username.clone(),
            role: roles.iter().map(|r| r.code()).collect::<Vec<_>>().join(","),
            unit: self.officer.unit.code_str(),
        }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(unauthenticated)
    }
}

fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

fn millis(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Chưa đăng nhập / Not logged in",
        "log in first (POST /api/v1/auth/login), then send the token as 'Authorization: Bearer <token>' \
         or the session cookie",
    )
}

/// The answer to a session that has not finished logging in.
pub fn login_unfinished(stage: SessionStage) -> ApiError {
    let detail = match stage {
        SessionStage::MfaEnrolmentRequired => {
            "your role requires a second factor: enrol an authenticator (POST /api/v1/auth/totp, then \
             /api/v1/auth/totp/confirm)"
        }
        _ => "give the code of your authenticator app (POST /api/v1/auth/mfa)",
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "login-unfinished", "Chưa hoàn tất đăng nhập / Login not finished", detail)
}

/// The token a request carries, and by which channel.
pub(crate) fn presented(headers: &HeaderMap) -> Option<(String, SessionKind)> {
    if let Some(v) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let t = v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer "))?;
        return Some((t.trim().to_string(), SessionKind::Bearer));
    }
    for v in headers.get_all(header::COOKIE) {
        let Ok(v) = v.to_str() else { continue };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && k == COOKIE
            {
                return Some((val.to_string(), SessionKind::Cookie));
            }
        }
    }
    None
}

/// Finds the session a request presents and checks it is alive.
pub async fn authenticate(st: &AppState, headers: &HeaderMap) -> ApiResult<Caller> {
    let (token, channel) = presented(headers).ok_or_else(unauthenticated)?;
    if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(unauthenticated());
    }
    let hash = core_auth::token_hash(&token);
    let auth = &st.auth;
    let cached = {
        let cache = auth.sessions.lock().expect("session cache");
        cache
            .get(&hash)
            .filter(|c| c.loaded.elapsed() < Duration::from_secs(CACHE_SECONDS))
            .map(|c| (c.session.clone(), c.officer.clone()))
    };
    let (mut session, officer) = match cached {
        Some(hit) => hit,
        None => {
            let store = st.registry.store();
            let session = store.session_get(&hash).await?.ok_or_else(unauthenticated)?;
            let officer = Arc::new(store.officer_get(&session.username).await?.ok_or_else(unauthenticated)?);
            let mut cache = auth.sessions.lock().expect("session cache");
            if cache.len() >= MAX_CACHED {
                // Entries older than the cache lifetime would be read again anyway.
                cache.retain(|_, c| c.loaded.elapsed() < Duration::from_secs(CACHE_SECONDS));
            }
            cache.insert(
                hash.clone(),
                Cached { session: session.clone(), officer: officer.clone(), loaded: Instant::now() },
            );
            drop(cache);
            (session, officer)
        }
    };
    // A cookie session is only accepted as a cookie, a bearer token only as a header.
    if session.kind != channel || !officer.active {
        return Err(unauthenticated());
    }
    let now = OffsetDateTime::now_utc();
    let idle = auth.config.idle.as_millis() as i64;
    let (seen, expires) = (millis(session.last_seen_at), millis(session.expires_at));
    if let Some(end) = core_auth::session_end(session.revoked, seen, expires, millis(now), idle) {
        auth.forget(&hash);
        let why = match end {
            SessionEnd::Revoked => "the session was ended (logged out)",
            SessionEnd::Idle => "the session was unused for too long",
            SessionEnd::Expired => "the session reached its maximum length",
        };
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "session-ended",
            "Phiên làm việc đã kết thúc / Session ended",
            format!("{why}; log in again"),
        ));
    }
    // Record use at a tenth of the idle timeout's resolution (not one write per request).
    if millis(now) - seen >= idle / 10 {
        session.last_seen_at = now;
        if let Some(c) = auth.sessions.lock().expect("session cache").get_mut(&hash) {
            c.session.last_seen_at = now;
        }
        if let Err(e) = st.registry.store().session_touch(&hash, now).await {
            tracing::warn!(error = %e, "recording session use failed");
        }
    }
    Ok(Caller {
        officer,
        token_hash: hash,
        kind: session.kind,
        stage: session.stage,
        expires_at: session.expires_at,
        acting: Vec::new(),
    })
}

fn random_token() -> ApiResult<(String, String)> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| ApiError::internal())?;
    Ok(core_auth::token_from_random(&b))
}

/// How the client wants its session: a cookie (browsers) or a bearer token (API clients).
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    #[default]
    Token,
    Cookie,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// `token` (default): the answer carries a bearer token; `cookie`: a session cookie is set.
    #[serde(default)]
    pub mode: LoginMode,
}

/// An officer as shown to themselves and to administrators.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OfficerView {
    pub username: String,
    pub display_name: String,
    /// `ministry`, `province:01`, `commune:00004`…
    pub unit: String,
    pub roles: Vec<Role>,
    pub permissions: Vec<Permission>,
    pub mfa_enrolled: bool,
    pub active: bool,
    /// Locked after failed logins until this time (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked_until: Option<String>,
}

impl From<&Officer> for OfficerView {
    fn from(o: &Officer) -> Self {
        OfficerView {
            username: o.username.clone(),
            display_name: o.display_name.clone(),
            unit: o.unit.code_str(),
            roles: o.roles.clone(),
            permissions: o.permissions.clone(),
            mfa_enrolled: o.totp_secret.is_some(),
            active: o.active,
            locked_until: o.locked_until.clone(),
        }
    }
}

/// A session as its holder sees it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct SessionView {
    /// What is left to do: `mfa_required`, `mfa_enrolment_required`, or `complete`.
    pub stage: SessionStage,
    /// The bearer token (token mode only; shown once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The absolute end of the session (RFC 3339).
    pub expires_at: String,
    /// Minutes of inactivity after which the session ends.
    pub idle_timeout_minutes: u64,
    pub officer: OfficerView,
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339")
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid-credentials",
        "Sai tên đăng nhập hoặc mật khẩu / Wrong username or password",
        "the username or the password is wrong",
    )
}

fn locked(until: i64, now: i64) -> Response {
    let wait = (until - now).max(1);
    let mut res = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "locked",
        "Tạm khóa do đăng nhập sai nhiều lần / Temporarily locked",
        format!("too many failed attempts: try again in {} s", wait),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

fn parse_time(s: &Option<String>) -> Option<i64> {
    s.as_deref().and_then(|t| OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()).map(unix)
}

/// Records a failed attempt on an account; returns the new lock end, if locked.
async fn record_failure(st: &AppState, officer: &Officer, now: i64) -> ApiResult<Option<i64>> {
    let mut o = officer.clone();
    o.failed_logins = o.failed_logins.saturating_add(1);
    let wait = core_auth::lockout_seconds(o.failed_logins);
    let until = (wait > 0).then_some(now + wait);
    o.locked_until = until.and_then(|u| OffsetDateTime::from_unix_timestamp(u).ok()).map(rfc3339);
    st.registry.store().officer_update(&o).await?;
    st.auth.forget_officer(&o.username);
    Ok(until)
}

fn with_actor(mut res: Response, username: &str, officer: Option<&Officer>) -> Response {
    res.extensions_mut().insert(AuditActor {
        officer: username.to_string(),
        role: officer.map(|o| o.roles.iter().map(|r| r.code()).collect::<Vec<_>>().join(",")).unwrap_or_default(),
        unit: officer.map(|o| o.unit.code_str()).unwrap_or_default(),
    });
    res
}

fn cookie_header(token: &str, max_age: i64) -> HeaderValue {
    HeaderValue::from_str(&format!("{COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}"))
        .expect("cookie is ASCII")
}

/// Starts a new session (login, or rotation when it completes).
async fn open_session(
    st: &AppState,
    officer: &Officer,
    kind: SessionKind,
    stage: SessionStage,
    expires_at: OffsetDateTime,
    status: StatusCode,
) -> ApiResult<Response> {
    let (token, hash) = random_token()?;
    let now = OffsetDateTime::now_utc();
    st.registry
        .store()
        .session_insert(&Session {
            token_hash: hash,
            username: officer.username.clone(),
            kind,
            stage,
            created_at: now,
            last_seen_at: now,
            expires_at,
            revoked: false,
        })
        .await?;
    let view = SessionView {
        stage,
        token: (kind == SessionKind::Bearer).then(|| token.clone()),
        expires_at: rfc3339(expires_at),
        idle_timeout_minutes: st.auth.config.idle.as_secs() / 60,
        officer: OfficerView::from(officer),
    };
    let mut res = (status, Json(view)).into_response();
    if kind == SessionKind::Cookie {
        res.headers_mut().insert(header::SET_COOKIE, cookie_header(&token, unix(expires_at) - unix(now)));
    }
    Ok(res)
}

/// Log in with username and password. The answer says what is left: the second factor, its
/// enrolment, or nothing.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "password accepted; see `stage`", body = SessionView),
        (status = 401, description = "wrong username or password", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "locked after repeated failures", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn login(State(st): State<AppState>, ApiJson(body): ApiJson<LoginRequest>) -> Response {
    let username = body.username.trim().to_string();
    let shown = if core_auth::username_problem(&username).is_none() { username.clone() } else { "invalid".into() };
    match login_inner(&st, &username, &body.password, body.mode).await {
        Ok((res, officer)) => with_actor(res, &shown, officer.as_ref()),
        Err(e) => with_actor(e.into_response(), &shown, None),
    }
}

async fn login_inner(
    st: &AppState,
    username: &str,
    password: &str,
    mode: LoginMode,
) -> Result<(Response, Option<Officer>), ApiError> {
    if username.is_empty() || password.is_empty() || password.len() > 1024 {
        return Err(ApiError::field(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation",
            "The request has invalid fields",
            FieldError::new(
                if username.is_empty() { "username" } else { "password" },
                "required",
                "username and password (at most 1024 bytes) are required",
            ),
        ));
    }
    let now = unix(OffsetDateTime::now_utc());
    let officer = st.registry.store().officer_get(username).await?.filter(|o| o.active);
    let Some(officer) = officer else {
        // Same work and same answers as for an account, lockout included.
        let (n, until) = st.auth.unknown.lock().expect("failure map").get(username).copied().unwrap_or((0, 0));
        if until > now {
            return Ok((locked(until, now), None));
        }
        hash_check(st, password, DUMMY_HASH).await?;
        let mut map = st.auth.unknown.lock().expect("failure map");
        if map.len() > 100_000 {
            map.clear();
        }
        let wait = core_auth::lockout_seconds(n + 1);
        map.insert(username.to_string(), (n + 1, if wait > 0 { now + wait } else { 0 }));
        return Err(invalid_credentials());
    };
    if let Some(until) = parse_time(&officer.locked_until).filter(|u| *u > now) {
        return Ok((locked(until, now), Some(officer)));
    }
    if !hash_check(st, password, &officer.password_hash).await? {
        record_failure(st, &officer, now).await?;
        return Err(invalid_credentials());
    }
    if officer.failed_logins > 0 || officer.locked_until.is_some() {
        let mut o = officer.clone();
        o.failed_logins = 0;
        o.locked_until = None;
        st.registry.store().officer_update(&o).await?;
    }
    let stage = if officer.totp_secret.is_some() {
        SessionStage::MfaRequired
    } else if officer.needs_mfa() {
        SessionStage::MfaEnrolmentRequired
    } else {
        SessionStage::Complete
    };
    let kind = match mode {
        LoginMode::Token => SessionKind::Bearer,
        LoginMode::Cookie => SessionKind::Cookie,
    };
    let expires = OffsetDateTime::now_utc() + st.auth.config.absolute;
    let res = open_session(st, &officer, kind, stage, expires, StatusCode::OK).await?;
    Ok((res, Some(officer)))
}

/// An Argon2id hash of a random password: unknown usernames cost as much as known ones.
const DUMMY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$ZGFuY3UtZHVtbXktc2FsdA$3rXgGqVh5W2mYb2M1o1b0m8k4Q6s9r2CwzQ5v9l0c1E";

async fn hash_check(st: &AppState, password: &str, phc: &str) -> ApiResult<bool> {
    let _permit = st.auth.hashing.acquire().await.map_err(|_| ApiError::internal())?;
    let (p, h) = (password.to_string(), phc.to_string());
    tokio::task::spawn_blocking(move || core_auth::verify_password(&p, &h)).await.map_err(|_| ApiError::internal())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    /// The 6-digit code of the authenticator app.
    pub code: String,
}

fn invalid_code() -> ApiError {
    ApiError::field(
        StatusCode::UNAUTHORIZED,
        "invalid-code",
        "Mã xác thực không đúng / Wrong code",
        FieldError::new("code", "invalid_code", "not the current code of your authenticator (or already used)"),
    )
}

/// The TOTP secret of an officer as stored: sealed under the server's secrets key, bound to the
/// username. One that does not open means the wrong key file (or an edited row).
fn open_secret(st: &AppState, officer: &Officer, sealed: Option<&str>) -> ApiResult<Vec<u8>> {
    sealed
        .and_then(|s| st.secrets.open(s, &officer.username))
        .and_then(|b32| core_auth::base32_decode(&b32))
        .ok_or_else(|| {
            tracing::error!("a stored TOTP secret does not open: wrong secrets key, or an edited row");
            ApiError::internal()
        })
}

/// Replaces the caller's session by a new, complete one (new token: rotation on login).
async fn complete(st: &AppState, caller: &Caller, officer: &Officer) -> ApiResult<Response> {
    st.registry.store().session_revoke(&caller.token_hash).await?;
    st.auth.forget(&caller.token_hash);
    open_session(st, officer, caller.kind, SessionStage::Complete, caller.expires_at, StatusCode::OK).await
}

/// Give the second factor; the session is replaced by a complete one (a new token).
#[utoipa::path(post, path = "/api/v1/auth/mfa", tag = "auth",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "logged in; a new token or cookie replaces the old", body = SessionView),
        (status = 401, description = "wrong or reused code", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "no second factor is pending", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "locked after repeated failures", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn mfa(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult<Response> {
    if caller.stage != SessionStage::MfaRequired {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no-mfa-pending",
            "No second factor is pending",
            "this session is not waiting for a code",
        ));
    }
    let now = unix(OffsetDateTime::now_utc());
    let officer = st.registry.store().officer_get(caller.username()).await?.ok_or_else(unauthenticated)?;
    if let Some(until) = parse_time(&officer.locked_until).filter(|u| *u > now) {
        return Ok(locked(until, now));
    }
    let secret = open_secret(&st, &officer, officer.totp_secret.as_deref())?;
    let Some(step) = core_auth::totp_check(&secret, &body.code, now, officer.totp_last_step) else {
        record_failure(&st, &officer, now).await?;
        return Err(invalid_code());
    };
    let mut o = officer.clone();
    o.totp_last_step = Some(step);
    o.failed_logins = 0;
    o.locked_until = None;
    st.registry.store().officer_update(&o).await?;
    complete(&st, &caller, &o).await
}

/// A new authenticator secret to enrol.
#[derive(Serialize, utoipa::ToSchema)]
pub struct TotpEnrolment {
    /// Base32 secret, to type in by hand.
    pub secret: String,
    pub otpauth_uri: String,
    /// The URI as a QR code (SVG) to scan.
    pub qr_svg: String,
}

/// Start enrolling an authenticator app: a new secret, shown as an otpauth:// URI and a QR code.
/// Confirm it with a code (`/api/v1/auth/totp/confirm`) to make it the second factor.
#[utoipa::path(post, path = "/api/v1/auth/totp", tag = "auth",
    responses(
        (status = 200, description = "the secret to enrol", body = TotpEnrolment),
        (status = 401, description = "the second factor must be given first", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn totp_enrol(State(st): State<AppState>, caller: Caller) -> ApiResult<Response> {
    let mut res = Json(enrol(&st, &caller).await?).into_response();
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(res)
}

/// Starts an enrolment: a new secret (pending until confirmed), its URI and QR code.
pub(crate) async fn enrol(st: &AppState, caller: &Caller) -> ApiResult<TotpEnrolment> {
    // With the password alone one may not replace an enrolled second factor.
    if caller.stage == SessionStage::MfaRequired {
        return Err(login_unfinished(caller.stage));
    }
    let mut secret = [0u8; 20];
    getrandom::fill(&mut secret).map_err(|_| ApiError::internal())?;
    let mut o = st.registry.store().officer_get(caller.username()).await?.ok_or_else(unauthenticated)?;
    o.totp_pending =
        Some(st.secrets.seal(&core_auth::base32_encode(&secret), &o.username).map_err(|_| ApiError::internal())?);
    st.registry.store().officer_update(&o).await?;
    st.auth.forget_officer(&o.username);
    let uri = core_auth::otpauth_uri(&secret, &o.username);
    let qr = qrcode::QrCode::new(uri.as_bytes()).map_err(|_| ApiError::internal())?;
    let svg = qr.render::<qrcode::render::svg::Color>().min_dimensions(200, 200).build();
    Ok(TotpEnrolment { secret: core_auth::base32_encode(&secret), otpauth_uri: uri, qr_svg: svg })
}

/// Confirm the authenticator being enrolled with a current code. A session waiting for
/// enrolment becomes complete (with a new token).
#[utoipa::path(post, path = "/api/v1/auth/totp/confirm", tag = "auth",
    request_body = CodeRequest,
    responses(
        (status = 200, description = "enrolled", body = SessionView),
        (status = 401, description = "wrong code", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "no enrolment in progress", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn totp_confirm(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<CodeRequest>,
) -> ApiResult<Response> {
    if caller.stage == SessionStage::MfaRequired {
        return Err(login_unfinished(caller.stage));
    }
    let officer = st.registry.store().officer_get(caller.username()).await?.ok_or_else(unauthenticated)?;
    let Some(pending) = officer.totp_pending.clone() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no-enrolment",
            "No enrolment in progress",
            "start with POST /api/v1/auth/totp",
        ));
    };
    let now = unix(OffsetDateTime::now_utc());
    let secret = open_secret(&st, &officer, Some(&pending))?;
    let Some(step) = core_auth::totp_check(&secret, &body.code, now, None) else {
        record_failure(&st, &officer, now).await?;
        return Err(invalid_code());
    };
    let mut o = officer.clone();
    o.totp_secret = Some(pending);
    o.totp_pending = None;
    o.totp_last_step = Some(step);
    o.failed_logins = 0;
    o.locked_until = None;
    st.registry.store().officer_update(&o).await?;
    st.auth.forget_officer(&o.username);
    if caller.stage == SessionStage::MfaEnrolmentRequired {
        return complete(&st, &caller, &o).await;
    }
    Ok(Json(SessionView {
        stage: caller.stage,
        token: None,
        expires_at: rfc3339(caller.expires_at),
        idle_timeout_minutes: st.auth.config.idle.as_secs() / 60,
        officer: OfficerView::from(&o),
    })
    .into_response())
}

/// End the session (the token or cookie stops working at once).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "logged out"),
              (status = 401, description = "not logged in", body = Problem, content_type = "application/problem+json")))]
pub async fn logout(State(st): State<AppState>, caller: Caller) -> ApiResult<Response> {
    st.registry.store().session_revoke(&caller.token_hash).await?;
    st.auth.forget(&caller.token_hash);
    let mut res = StatusCode::NO_CONTENT.into_response();
    if caller.kind == SessionKind::Cookie {
        res.headers_mut().insert(header::SET_COOKIE, cookie_header("", 0));
    }
    Ok(res)
}

/// The caller's session and account.
#[utoipa::path(get, path = "/api/v1/auth/session", tag = "auth",
    responses((status = 200, body = SessionView),
              (status = 401, description = "not logged in", body = Problem, content_type = "application/problem+json")))]
pub async fn session(State(st): State<AppState>, Extension(caller): Extension<Caller>) -> Json<SessionView> {
    Json(SessionView {
        stage: caller.stage,
        token: None,
        expires_at: rfc3339(caller.expires_at),
        idle_timeout_minutes: st.auth.config.idle.as_secs() / 60,
        officer: OfficerView::from(caller.officer.as_ref()),
    })
}
