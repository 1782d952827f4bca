//! The citizen API: a citizen logs in with their personal ID and a one-time code delivered
//! through a [`CodeChannel`], and with the bearer token of that session reads their own record,
//! the state of their residence and identity-card applications, their consents to partners (and
//! grants or revokes them), and who accessed their data, when and for what purpose.
//!
//! Invariants: answers to a login never tell a known ID from an unknown one (an unknown ID gets a
//! challenge too, which no code opens); a code is stored only as a hash bound to its challenge,
//! lives [`citizen::CODE_SECONDS`], opens one session once, and allows [`citizen::CODE_ATTEMPTS`]
//! tries; an ID gets at most [`citizen::CHALLENGES_PER_WINDOW`] codes per window and none after
//! [`citizen::FAILURES_PER_WINDOW`] wrong codes in an hour. Citizen sessions are their own table
//! and token form: officer sessions never open citizen routes, nor citizen sessions officer ones.
//! Logs never carry the ID, the code or the token.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use dancu_core::citizen::{self, code_hash, login_key, token_hash};
use dancu_core::sharing::{Consent, b64url};
use dancu_core::{FieldError, Person, PersonalId};
use dancu_store::PersonRef;
use dancu_store::cards::CardApplicationQuery;
use dancu_store::{ApplicationQuery, AuditQuery, ChallengeLimits, ChallengeOutcome, CitizenChallenge, CitizenSession};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::audit::{AuditActor, AuditTarget};
use crate::extract::ApiJson;
use crate::partners::{ConsentInput, ConsentView};
use crate::problem::{ApiError, ApiResult, Problem};
use crate::sharing::{rfc3339, unix_now};

/// Delivers one-time login codes to citizens (an SMS gateway or the VNeID app in production).
pub trait CodeChannel: Send + Sync {
    /// Delivers `code` for the login `challenge` to the person holding the ID.
    fn deliver(&self, person: &Person, challenge: &str, code: &str) -> Result<(), String>;
}

/// The development channel: appends `challenge code` lines to a file (mode 0600) in the data
/// folder — no ID, no name, nothing else about the person — and logs that a code was written.
pub struct FileChannel {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileChannel {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileChannel { path: path.into(), lock: Mutex::new(()) }
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The code delivered for a challenge, as the citizen would read it.
    pub fn code_for(&self, challenge: &str) -> Option<String> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        text.lines().rev().find_map(|l| {
            let mut parts = l.split(' ');
            let (_, c, code) = (parts.next()?, parts.next()?, parts.next()?);
            (c == challenge).then(|| code.to_string())
        })
    }
}

impl CodeChannel for FileChannel {
    fn deliver(&self, _person: &Person, challenge: &str, code: &str) -> Result<(), String> {
        let _guard = self.lock.lock().map_err(|_| "channel lock".to_string())?;
        let mut opts = std::fs::OpenOptions::new();
        opts.create(true).append(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&self.path).map_err(|e| e.to_string())?;
        writeln!(f, "{} {challenge} {code}", crate::audit::now_rfc3339()).map_err(|e| e.to_string())?;
        tracing::info!(file = %self.path.display(), "citizen login code written to the development channel");
        Ok(())
    }
}

/// A channel that delivers nothing: citizen login unavailable (the server's default until a
/// channel is configured).
pub struct NoChannel;

impl CodeChannel for NoChannel {
    fn deliver(&self, _: &Person, _: &str, _: &str) -> Result<(), String> {
        Err("no delivery channel for citizen login codes is configured".into())
    }
}

/// The citizen caller of a citizen route.
#[derive(Clone)]
pub struct CitizenCaller {
    pub person_key: String,
    pub token_hash: String,
}

impl CitizenCaller {
    pub fn audit_actor() -> AuditActor {
        AuditActor { officer: "citizen".into(), role: "citizen".into(), unit: String::new() }
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for CitizenCaller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Self, ApiError> {
        parts.extensions.get::<CitizenCaller>().cloned().ok_or_else(unauthenticated)
    }
}

fn unauthenticated() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
        "Chưa đăng nhập / Not logged in",
        "log in with POST /api/v1/citizen/login and send the token as 'Authorization: Bearer <token>'",
    )
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")).map(str::trim)
}

/// A random token: 32 bytes, base64url, with a prefix telling its kind.
pub(crate) fn random_token(prefix: &str) -> ApiResult<String> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|_| ApiError::internal())?;
    Ok(format!("{prefix}{}", b64url(&b)))
}

/// The check of citizen routes: a live citizen session, nothing else.
pub async fn authorize(st: &AppState, mut req: Request, next: Next) -> Response {
    let caller = match session(st, req.headers()).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(caller);
    let mut res = next.run(req).await;
    res.extensions_mut().insert(CitizenCaller::audit_actor());
    res
}

async fn session(st: &AppState, headers: &HeaderMap) -> ApiResult<CitizenCaller> {
    let token = bearer(headers).filter(|t| t.starts_with("cz_") && t.len() < 100).ok_or_else(unauthenticated)?;
    let hash = token_hash(token);
    let s = st.registry.store().citizen_session_get(&hash).await?.ok_or_else(unauthenticated)?;
    if s.revoked_at.is_some() || s.expires_at <= unix_now() {
        return Err(unauthenticated());
    }
    Ok(CitizenCaller { person_key: s.person_key, token_hash: hash })
}

// ---- login ---------------------------------------------------------------------------------------

/// The shared state of citizen login: the delivery channel.
pub struct CitizenState {
    pub channel: Arc<dyn CodeChannel>,
    /// Codes per ID per window (default [`citizen::CHALLENGES_PER_WINDOW`]).
    pub challenges_per_window: u32,
}

fn invalid_id(value: &str, e: impl std::fmt::Display) -> ApiError {
    ApiError::field(
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation",
        "Số định danh không hợp lệ / Invalid personal ID",
        FieldError::new("personal_id", "invalid_personal_id", e.to_string()).with_value(value),
    )
}

/// Starts a login: a challenge (known ID or not) and, for a known living person, a code sent
/// through the channel. The answer is the same either way (a failed delivery too: it is logged).
pub(crate) async fn start_login(st: &AppState, personal_id: &str) -> Result<String, LoginError> {
    let typed = personal_id.trim();
    let id = PersonalId::parse(typed).map_err(|e| invalid_id(typed, e))?;
    let now = unix_now();
    let person = st.registry.store().get_person(&PersonRef::PersonalId(id)).await?;
    let person =
        person.filter(|p| p.person.status == dancu_core::PersonStatus::Active && p.person.merged_into.is_none());
    let challenge = random_token("ch_")?;
    let code = loop {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).map_err(|_| ApiError::internal())?;
        if let Some(c) = citizen::code_from_random(u32::from_be_bytes(b)) {
            break c;
        }
    };
    let c = CitizenChallenge {
        id: challenge.clone(),
        login_key: login_key(id.as_str()),
        person_key: person.as_ref().map(|p| p.key.to_string()),
        code_hash: code_hash(&challenge, &code),
        created_at: now,
        expires_at: now + citizen::CODE_SECONDS,
    };
    let limits = ChallengeLimits {
        challenges_since: now - citizen::CHALLENGE_WINDOW_SECONDS,
        max_challenges: st.citizen.challenges_per_window,
        failures_since: now - citizen::FAILURE_WINDOW_SECONDS,
        max_failures: citizen::FAILURES_PER_WINDOW,
    };
    if !st.registry.store().citizen_challenge_start(&c, &limits).await? {
        return Err(LoginError::TooMany);
    }
    if let Some(p) = &person
        && let Err(e) = st.citizen.channel.deliver(&p.person, &challenge, &code)
    {
        // Answered as usual all the same: a failure told apart would tell a known ID apart.
        tracing::error!(error = %e, "a citizen login code could not be delivered");
    }
    Ok(challenge)
}

/// Why a login could not start.
pub(crate) enum LoginError {
    Api(ApiError),
    /// Too many codes, or too many wrong codes, for this ID lately.
    TooMany,
}

impl From<ApiError> for LoginError {
    fn from(e: ApiError) -> Self {
        LoginError::Api(e)
    }
}

impl From<dancu_store::StoreError> for LoginError {
    fn from(e: dancu_store::StoreError) -> Self {
        LoginError::Api(e.into())
    }
}

impl IntoResponse for LoginError {
    fn into_response(self) -> Response {
        match self {
            LoginError::Api(e) => e.into_response(),
            LoginError::TooMany => {
                let mut res = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too-many-logins",
                    "Quá nhiều lần đăng nhập / Too many login attempts",
                    "too many codes were requested or wrong codes given for this personal ID; try again later",
                )
                .into_response();
                retry_after(&mut res, citizen::CHALLENGE_WINDOW_SECONDS as u64);
                res
            }
        }
    }
}

/// Why a code was not accepted.
pub(crate) enum CodeRefusal {
    Wrong(u32),
    Spent,
}

/// Checks a code; the person's record key when it opens the challenge.
pub(crate) async fn check_code(st: &AppState, challenge: &str, code: &str) -> ApiResult<Result<String, CodeRefusal>> {
    let now = unix_now();
    let outcome = st
        .registry
        .store()
        .citizen_challenge_attempt(challenge, &code_hash(challenge, code), now, citizen::CODE_ATTEMPTS)
        .await?;
    Ok(match outcome {
        ChallengeOutcome::Accepted(key) => Ok(key),
        ChallengeOutcome::Wrong(left) => Err(CodeRefusal::Wrong(left)),
        ChallengeOutcome::Spent => Err(CodeRefusal::Spent),
    })
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The 12-digit personal ID.
    pub personal_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct LoginChallenge {
    /// Give it back with the code.
    pub challenge: String,
    pub expires_in: i64,
    pub message: &'static str,
}

/// Start a citizen login: a one-time code is sent to the holder of the ID (the answer is the
/// same whether or not the ID is registered).
#[utoipa::path(post, path = "/api/v1/citizen/login", tag = "citizen",
    request_body = LoginRequest,
    responses(
        (status = 202, body = LoginChallenge),
        (status = 422, description = "not a valid personal ID", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "too many codes or wrong codes for this ID (Retry-After)", body = Problem, content_type = "application/problem+json"),
    ), security(()))]
pub async fn login(State(st): State<AppState>, ApiJson(body): ApiJson<LoginRequest>) -> Response {
    let challenge = match start_login(&st, &body.personal_id).await {
        Ok(c) => c,
        Err(e) => return e.into_response(),
    };
    let out = LoginChallenge {
        challenge,
        expires_in: citizen::CODE_SECONDS,
        message: "Nếu số định danh đã được cấp, mã xác thực đã được gửi tới bạn / If the ID is registered, a code \
                  was sent to its holder",
    };
    (StatusCode::ACCEPTED, Json(out)).into_response()
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    pub challenge: String,
    /// The six-digit code received.
    pub code: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct CitizenToken {
    /// Send as `Authorization: Bearer <token>` on citizen routes.
    pub token: String,
    pub expires_in: i64,
}

/// Finish a citizen login with the code received: a session token.
#[utoipa::path(post, path = "/api/v1/citizen/login/verify", tag = "citizen",
    request_body = CodeRequest,
    responses(
        (status = 200, body = CitizenToken),
        (status = 401, description = "wrong, expired or used code", body = Problem, content_type = "application/problem+json"),
    ), security(()))]
pub async fn verify(State(st): State<AppState>, ApiJson(body): ApiJson<CodeRequest>) -> ApiResult<Response> {
    if body.challenge.len() > 100 || body.code.len() > 20 {
        return Err(code_refused(CodeRefusal::Spent));
    }
    let key = check_code(&st, &body.challenge, &body.code).await?.map_err(code_refused)?;
    let token = random_token("cz_")?;
    let now = unix_now();
    let s = CitizenSession {
        token_hash: token_hash(&token),
        person_key: key.clone(),
        created_at: now,
        expires_at: now + citizen::SESSION_SECONDS,
        revoked_at: None,
    };
    st.registry.store().citizen_session_insert(&s).await?;
    let mut res = Json(CitizenToken { token, expires_in: citizen::SESSION_SECONDS }).into_response();
    res.extensions_mut().insert(AuditTarget(key));
    res.extensions_mut().insert(CitizenCaller::audit_actor());
    Ok(res)
}

fn code_refused(r: CodeRefusal) -> ApiError {
    let detail = match r {
        CodeRefusal::Wrong(left) => format!("the code is wrong; {left} tries left on this code"),
        CodeRefusal::Spent => "the code expired, was used, or ran out of tries; ask for a new code".into(),
    };
    ApiError::new(StatusCode::UNAUTHORIZED, "invalid-code", "Mã xác thực không đúng / Invalid code", detail)
}

/// End the citizen session.
#[utoipa::path(post, path = "/api/v1/citizen/logout", tag = "citizen", responses((status = 204)))]
pub async fn logout(State(st): State<AppState>, caller: CitizenCaller) -> ApiResult<StatusCode> {
    st.registry.store().citizen_session_revoke(&caller.token_hash, unix_now()).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- the citizen's own data ---------------------------------------------------------------------

fn mine(res: Response, caller: &CitizenCaller) -> Response {
    let mut res = res;
    res.extensions_mut().insert(AuditTarget(caller.person_key.clone()));
    res
}

fn person_ref(caller: &CitizenCaller) -> ApiResult<PersonRef> {
    Ok(PersonRef::Key(caller.person_key.parse().map_err(|_| ApiError::internal())?))
}

/// My record: every field the register holds about me.
#[utoipa::path(get, path = "/api/v1/citizen/me", tag = "citizen",
    responses((status = 200, description = "`{\"person\": {…}, \"version\": N, \"updated_at\": …}`")))]
pub async fn me(State(st): State<AppState>, caller: CitizenCaller) -> ApiResult<Response> {
    let raw = st.registry.store().get_person_raw(&person_ref(&caller)?).await?.ok_or_else(ApiError::not_found)?;
    let person: Value = serde_json::from_str(raw.person.get()).map_err(|_| ApiError::internal())?;
    let body = json!({"person": person, "version": raw.version});
    Ok(mine(Json(body).into_response(), &caller))
}

/// One of my applications as I see it: a residence procedure or an identity-card application.
/// Its state and dates only — no officer's name, no internal note, no image or chip data.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MyApplication {
    /// `residence` (thủ tục cư trú) or `card` (cấp thẻ căn cước).
    pub category: &'static str,
    pub id: String,
    /// Số hồ sơ: the number on the receipt of a card application (`GET /api/v1/card-status/{number}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    /// The procedure's code: a residence procedure (`permanent_registration`, …) or the kind of
    /// card application (`first_issue`, `renewal`, `replacement`, `reissue`).
    pub kind: String,
    /// The reason's code of a card replacement or re-issue (`lost`, `identity_change`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Tên thủ tục.
    pub procedure: String,
    /// The procedure in English.
    pub procedure_en: String,
    /// The state's code: `submitted`, `received`, `approved`, `rejected` (residence); the card
    /// workflow's stage: `received`, `verified`, `approved`, `queued`, `personalized`,
    /// `quality_checked`, `dispatched`, `delivered`, `returned`, `cancelled`.
    pub state: String,
    /// Trạng thái.
    pub state_label: String,
    /// The state in English.
    pub state_label_en: String,
    pub submitted_at: String,
    /// Hạn giải quyết.
    pub deadline: String,
    /// When it was decided (residence) or ended: delivered, returned or cancelled (card).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The reason given for a rejection (residence), a return or a cancellation (card).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    /// A card application's stages, each with when it was reached (oldest first).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<MyStep>,
}

/// A stage a card application reached, and when.
#[derive(Serialize, utoipa::ToSchema)]
pub struct MyStep {
    pub state: String,
    pub state_label: String,
    pub state_label_en: String,
    pub at: String,
}

fn fmt_time(t: time::OffsetDateTime) -> String {
    rfc3339(t.unix_timestamp())
}

fn residence_view(a: dancu_store::Application) -> MyApplication {
    use crate::web::Lang;
    use crate::web::residence::{app_state_label, kind_label};
    MyApplication {
        category: "residence",
        id: a.id.to_string(),
        number: None,
        kind: a.kind.code().to_string(),
        reason: None,
        procedure: a.kind.vietnamese().to_string(),
        procedure_en: kind_label(Lang::En, a.kind),
        state: a.state.code().to_string(),
        state_label: app_state_label(Lang::Vi, a.state).to_string(),
        state_label_en: app_state_label(Lang::En, a.state).to_string(),
        submitted_at: fmt_time(a.submitted_at),
        deadline: dancu_core::date::iso_date::format(a.deadline),
        decided_at: a.decided_at.map(fmt_time),
        decision_reason: a.decision_reason,
        steps: Vec::new(),
    }
}

fn card_view(a: dancu_store::cards::CardApplication) -> MyApplication {
    use crate::web::Lang;
    use crate::web::cards::{kind_label, stage_label};
    use dancu_card::application::Stage;
    let kind = serde_json::to_value(a.kind).unwrap_or_default();
    let code = |k: &str| kind.get(k).and_then(Value::as_str).map(str::to_string);
    let ended = (!a.stage.is_open()).then(|| a.steps.last()).flatten();
    // The reason of a return or a cancellation is the answer to the citizen; the notes of the
    // other steps are the officers' own and stay out.
    let reason = ended.filter(|s| matches!(s.stage, Stage::Returned | Stage::Cancelled)).and_then(|s| s.note.clone());
    MyApplication {
        category: "card",
        id: a.id.to_string(),
        number: Some(a.number.clone()),
        kind: code("kind").unwrap_or_default(),
        reason: code("reason"),
        procedure: format!("Cấp thẻ căn cước: {}", kind_label(Lang::Vi, a.kind)),
        procedure_en: format!("Identity card: {}", kind_label(Lang::En, a.kind)),
        state: a.stage.code().to_string(),
        state_label: stage_label(Lang::Vi, a.stage),
        state_label_en: stage_label(Lang::En, a.stage),
        submitted_at: fmt_time(a.received_at),
        deadline: dancu_core::date::iso_date::format(a.due_on),
        decided_at: ended.map(|s| fmt_time(s.at)),
        decision_reason: reason,
        steps: a
            .steps
            .iter()
            .map(|s| MyStep {
                state: s.stage.code().to_string(),
                state_label: stage_label(Lang::Vi, s.stage),
                state_label_en: stage_label(Lang::En, s.stage),
                at: fmt_time(s.at),
            })
            .collect(),
    }
}

/// My applications and their state — residence procedures and identity-card applications —,
/// earliest deadline first.
#[utoipa::path(get, path = "/api/v1/citizen/me/applications", tag = "citizen",
    responses((status = 200, body = Vec<MyApplication>)))]
pub async fn applications(State(st): State<AppState>, caller: CitizenCaller) -> ApiResult<Response> {
    let key = caller.person_key.parse().map_err(|_| ApiError::internal())?;
    let store = st.registry.store();
    let q = ApplicationQuery { person_key: Some(key), limit: 500, ..Default::default() };
    let mut list: Vec<MyApplication> = store.applications(&q).await?.into_iter().map(residence_view).collect();
    let q = CardApplicationQuery { person_key: Some(key), limit: 500, ..Default::default() };
    list.extend(store.card_applications(&q).await?.into_iter().map(card_view));
    list.sort_by(|a, b| (&a.deadline, &a.submitted_at).cmp(&(&b.deadline, &b.submitted_at)));
    Ok(mine(Json(list).into_response(), &caller))
}

/// My consents to partners, newest first.
#[utoipa::path(get, path = "/api/v1/citizen/me/consents", tag = "citizen",
    responses((status = 200, body = Vec<ConsentView>)))]
pub async fn consents(State(st): State<AppState>, caller: CitizenCaller) -> ApiResult<Response> {
    let list: Vec<ConsentView> =
        st.registry.store().consents_of(&caller.person_key).await?.iter().map(ConsentView::from).collect();
    Ok(mine(Json(list).into_response(), &caller))
}

/// Consent to a partner reading the data of its scope, for a purpose, until a time.
#[utoipa::path(post, path = "/api/v1/citizen/me/consents", tag = "citizen",
    request_body = ConsentInput,
    responses((status = 201, body = ConsentView),
              (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn grant(
    State(st): State<AppState>,
    caller: CitizenCaller,
    ApiJson(body): ApiJson<ConsentInput>,
) -> ApiResult<Response> {
    let c = crate::partners::new_consent(&st, &caller.person_key, body, "citizen").await?;
    Ok(mine((StatusCode::CREATED, Json(ConsentView::from(&c))).into_response(), &caller))
}

/// Revoke one of my consents: effective at once.
#[utoipa::path(post, path = "/api/v1/citizen/me/consents/{id}/revoke", tag = "citizen",
    params(("id" = String, Path, description = "consent id")),
    responses((status = 200, body = ConsentView),
              (status = 404, body = Problem, content_type = "application/problem+json"),
              (status = 409, description = "revoked already", body = Problem, content_type = "application/problem+json")))]
pub async fn revoke(State(st): State<AppState>, caller: CitizenCaller, Path(id): Path<String>) -> ApiResult<Response> {
    let store = st.registry.store();
    match store.consent_get(&id).await? {
        Some(Consent { person_key, .. }) if person_key == caller.person_key => {}
        _ => return Err(ApiError::not_found()),
    }
    let c = store.consent_revoke(&id, "citizen", unix_now()).await?;
    Ok(mine(Json(ConsentView::from(&c)).into_response(), &caller))
}

/// One access to my data.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Access {
    pub at: String,
    /// `officer`, `partner`, `citizen` (you) or `system`.
    pub by: &'static str,
    /// Who, as shown to you: the officer's unit and role (not their name), the partner's name.
    pub who: String,
    /// The officer's unit code or the partner's kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub action: String,
    /// Việc gì.
    pub what: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    pub outcome: String,
}

fn what(action: &str) -> &'static str {
    match action {
        "person.read" | "person.search" => "Xem thông tin",
        "person.create" => "Tạo hồ sơ",
        "person.update" => "Cập nhật thông tin",
        "person.activate" => "Cấp số định danh",
        "person.history" => "Xem lịch sử thay đổi",
        "person.access_log" => "Xem nhật ký truy cập",
        a if a.starts_with("residence.") || a == "person.residences" || a == "household.read" => "Thủ tục cư trú",
        a if a.starts_with("consent.") => "Sự đồng ý chia sẻ dữ liệu",
        "partner.verify" | "partner.batch_verify" => "Xác thực thông tin",
        "partner.retrieve" => "Khai thác thông tin",
        "partner.pseudonym" => "Mã định danh riêng của đối tác",
        "partner.events" => "Nhận thông báo thay đổi",
        a if a.starts_with("oidc.") => "Đăng nhập cổng dịch vụ công",
        "citizen.login_verify" => "Bạn đăng nhập",
        a if a.starts_with("citizen.") => "Bạn tự tra cứu",
        _ => "Truy cập khác",
    }
}

/// Who accessed my data, when and for what purpose (the audit trail), newest first. Officers are
/// shown by unit and role; partners by name.
#[utoipa::path(get, path = "/api/v1/citizen/me/access-log", tag = "citizen",
    params(("page" = Option<u32>, Query, description = "page number from 1"),
           ("per_page" = Option<u32>, Query, description = "1-500, default 50")),
    responses((status = 200, body = Vec<Access>)))]
pub async fn access_log(
    State(st): State<AppState>,
    caller: CitizenCaller,
    q: crate::extract::QueryPairs,
) -> ApiResult<Response> {
    q.check(&["page", "per_page"])?;
    let (offset, limit) = q.paging(500, 50)?;
    let store = st.registry.store();
    let entries = store
        .audit_query(&AuditQuery { target: Some(caller.person_key.clone()), offset, limit, ..Default::default() })
        .await?;
    let mut names: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut out = Vec::with_capacity(entries.len());
    for e in entries {
        let e = e.entry;
        let (by, who, unit, role) = if let Some(pid) = e.officer.strip_prefix("partner:") {
            if !names.contains_key(pid) {
                let n = store.partner_get(pid).await?.map(|p| p.name).unwrap_or_else(|| pid.to_string());
                names.insert(pid.to_string(), n);
            }
            ("partner", names[pid].clone(), Some(e.unit.clone()), None)
        } else if e.officer == "citizen" {
            ("citizen", "Bạn / you".to_string(), None, None)
        } else if e.officer == "anonymous" || e.unit.is_empty() {
            ("system", "Hệ thống / system".to_string(), None, None)
        } else {
            let roles: Vec<&str> =
                e.role.split(',').map(|r| dancu_core::auth::Role::from_code(r).map_or(r, |r| r.vietnamese())).collect();
            let role = roles.join(", ");
            ("officer", format!("{} — {role}", citizen::unit_name(&e.unit)), Some(e.unit.clone()), Some(role))
        };
        out.push(Access {
            at: e.at,
            by,
            who,
            unit,
            role,
            what: what(&e.action),
            action: e.action,
            purpose: e.purpose,
            outcome: e.outcome,
        });
    }
    Ok(mine(Json(out).into_response(), &caller))
}

/// The header of a refusal that says when to try again.
pub(crate) fn retry_after(res: &mut Response, seconds: u64) {
    if let Ok(v) = HeaderValue::from_str(&seconds.to_string()) {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
}
