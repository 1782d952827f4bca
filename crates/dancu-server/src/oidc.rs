//! The OpenID Connect provider for e-government portals (OpenID Connect Core 1.0, authorization
//! code flow): discovery, a server-rendered Vietnamese login page (personal ID and one-time
//! code, the citizen login of [`crate::citizen`]), PKCE S256 (RFC 7636) required, the token
//! endpoint (client authentication per the portal's registration: `private_key_jwt` or
//! `client_secret_basic`), ID tokens signed with the server's key (ES256, published in the
//! JWKS), userinfo, refresh tokens (RFC 6749 §6: rotated on use, a spent one presented again
//! revokes its session) and RP-initiated logout (`end_session_endpoint`). Portals are partners
//! with an OpenID Connect registration.
//!
//! Invariants: the redirect URI must equal a registered one exactly; before it is known to be
//! registered every error is a page here, never a redirect. Authorization codes are stored
//! hashed, live [`citizen::AUTH_CODE_SECONDS`], are redeemed once (a replay also revokes the
//! access token issued for the code), only by the client they were issued to, with the same
//! redirect URI and the PKCE verifier. Claims are only those of the granted scopes within the
//! portal's field scopes; a portal that needs consent gets a code, a token and userinfo only
//! while the citizen's consent is in force. Every release of claims is audited for the person.
//! A session (a redeemed code: the ID token's `sid`) lives at most
//! [`citizen::OIDC_REFRESH_SECONDS`] after the login; refresh tokens name their session and are
//! stored hashed, one live at a time; logout needs an ID token this server signed, and redirects
//! only to a URI registered for the portal.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use dancu_core::citizen::{self, ClientAuth, OidcClient, Scope};
use dancu_core::sharing::{Consent, Partner, b64url_decode};
use dancu_keys::PublicKey;
use dancu_store::{OidcGrant, OidcTokens, PersonRef, RefreshOutcome};
use serde_json::{Value, json};

use crate::AppState;
use crate::audit::{AuditActor, AuditPurpose, AuditTarget};
use crate::citizen::{CitizenCaller, CodeRefusal, LoginError, check_code, random_token, start_login};
use crate::jose;
use crate::sharing::{ASSERTION_MAX_SECONDS, unix_now};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn endpoint(st: &AppState, path: &str) -> String {
    format!("{}{path}", st.sharing.issuer)
}

/// OpenID Provider metadata (OpenID Connect Discovery 1.0).
pub async fn discovery(State(st): State<AppState>) -> Response {
    let i = &st.sharing.issuer;
    let body = json!({
        "issuer": i,
        "authorization_endpoint": endpoint(&st, "/oidc/authorize"),
        "token_endpoint": endpoint(&st, "/oidc/token"),
        "userinfo_endpoint": endpoint(&st, "/oidc/userinfo"),
        "jwks_uri": endpoint(&st, "/.well-known/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "end_session_endpoint": endpoint(&st, "/oidc/logout"),
        "subject_types_supported": ["pairwise", "public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "scopes_supported": Scope::ALL.iter().map(|s| s.code()).collect::<Vec<_>>(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "sid", "name", "family_name",
            "middle_name", "given_name", "birthdate", "gender", "address", "personal_id"],
        "authorization_response_iss_parameter_supported": true,
        "ui_locales_supported": ["vi"],
    });
    ([(header::CACHE_CONTROL, "public, max-age=300")], Json(body)).into_response()
}

// ---- the authorization endpoint and its login page -------------------------------------------------

/// The parameters of an authorization request (carried through the login page's forms).
struct AuthRequest {
    params: HashMap<String, String>,
}

impl AuthRequest {
    fn get(&self, k: &str) -> Option<&str> {
        self.params.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
}

/// Parses form or query pairs; a repeated parameter is refused (OAuth 2.0 §3.1).
fn pairs(raw: &str) -> Result<HashMap<String, String>, String> {
    let list: Vec<(String, String)> = serde_urlencoded::from_str(raw).map_err(|e| e.to_string())?;
    let mut out = HashMap::new();
    for (k, v) in list {
        if v.len() > 2048 {
            return Err(format!("the parameter {k} is too long"));
        }
        if out.insert(k.clone(), v).is_some() {
            return Err(format!("the parameter {k} is repeated"));
        }
    }
    Ok(out)
}

/// A checked authorization request: the portal, and where errors may now be redirected.
struct Checked {
    partner: Partner,
    redirect_uri: String,
    state: Option<String>,
    scopes: Vec<Scope>,
}

/// An error answered on a page (no redirect: the redirect URI is not trusted).
fn error_page(status: StatusCode, message: &str) -> Response {
    let html = page(
        "Không thể đăng nhập",
        &format!(
            "<p class=\"err\">{}</p><p>Vui lòng quay lại cổng dịch vụ và thử lại. \
             <small>(The login request is invalid; nothing was sent back to the portal.)</small></p>",
            esc(message)
        ),
    );
    (status, html).into_response()
}

/// An error sent back to the portal's (registered) redirect URI.
fn error_redirect(st: &AppState, c: &Checked, error: &str, description: &str) -> Response {
    let mut q = vec![("error", error), ("error_description", description)];
    if let Some(s) = &c.state {
        q.push(("state", s));
    }
    let iss = st.sharing.issuer.clone();
    q.push(("iss", &iss));
    redirect(&c.redirect_uri, &q)
}

fn redirect(uri: &str, q: &[(&str, &str)]) -> Response {
    let query = serde_urlencoded::to_string(q).expect("pairs encode");
    let sep = if uri.contains('?') { '&' } else { '?' };
    let location = format!("{uri}{sep}{query}");
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// Checks an authorization request: client and redirect URI first (errors on a page), then the
/// rest (errors redirected to the portal).
async fn check(st: &AppState, r: &AuthRequest) -> Result<Checked, Response> {
    let Some(client_id) = r.get("client_id") else {
        return Err(error_page(StatusCode::BAD_REQUEST, "Thiếu client_id (the request names no portal)."));
    };
    let partner = match st.registry.store().partner_get(client_id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return Err(error_page(StatusCode::BAD_REQUEST, "Cổng dịch vụ chưa được đăng ký (unknown client)."));
        }
        Err(e) => return Err(crate::problem::ApiError::from(e).into_response()),
    };
    let Some(client) = partner.oidc.clone() else {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Cổng dịch vụ chưa đăng ký đăng nhập (no OpenID Connect registration).",
        ));
    };
    if partner.refusal(unix_now()).is_some() {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Cổng dịch vụ đang bị tạm dừng hoặc hết hiệu lực (client not active).",
        ));
    }
    let Some(redirect_uri) = r.get("redirect_uri").filter(|u| citizen::redirect_registered(&client, u)) else {
        return Err(error_page(
            StatusCode::BAD_REQUEST,
            "Địa chỉ chuyển hướng không khớp với đăng ký của cổng (redirect_uri does not match the registration).",
        ));
    };
    let mut c = Checked {
        redirect_uri: redirect_uri.to_string(),
        state: r.get("state").map(str::to_string),
        partner,
        scopes: Vec::new(),
    };
    if r.get("response_type") != Some("code") {
        return Err(error_redirect(st, &c, "unsupported_response_type", "response_type must be code"));
    }
    c.scopes = match citizen::parse_scopes(r.get("scope").unwrap_or(""), &c.partner.fields) {
        Ok(s) => s,
        Err(why) => return Err(error_redirect(st, &c, "invalid_scope", &why)),
    };
    if r.get("code_challenge_method") != Some("S256") {
        return Err(error_redirect(st, &c, "invalid_request", "PKCE is required: code_challenge_method=S256"));
    }
    if let Some(why) = r.get("code_challenge").map_or(Some("code_challenge is missing"), citizen::challenge_problem) {
        return Err(error_redirect(st, &c, "invalid_request", why));
    }
    if r.get("prompt") == Some("none") {
        return Err(error_redirect(st, &c, "login_required", "the citizen must log in"));
    }
    if r.get("nonce").is_some_and(|n| n.len() > 255) {
        return Err(error_redirect(st, &c, "invalid_request", "nonce: at most 255 characters"));
    }
    Ok(c)
}

/// The authorization endpoint: checks the request and shows the login page.
pub async fn authorize(State(st): State<AppState>, req: Request) -> Response {
    let params = match pairs(req.uri().query().unwrap_or("")) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let r = AuthRequest { params };
    match check(&st, &r).await {
        Ok(c) => id_page(&r, &c, None),
        Err(res) => res,
    }
}

/// The login page's steps: the personal ID (a code is sent), then the code (and consent).
pub async fn authorize_post(State(st): State<AppState>, req: Request) -> Response {
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return error_page(StatusCode::BAD_REQUEST, "The form could not be read.");
    };
    let params = match std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(pairs) {
        Ok(p) => p,
        Err(e) => return error_page(StatusCode::BAD_REQUEST, &e),
    };
    let r = AuthRequest { params };
    let c = match check(&st, &r).await {
        Ok(c) => c,
        Err(res) => return res,
    };
    match r.get("step") {
        Some("id") => match start_login(&st, r.get("personal_id").unwrap_or("")).await {
            Ok(challenge) => code_page(&r, &c, &challenge, None),
            Err(LoginError::TooMany) => id_page(
                &r,
                &c,
                Some("Bạn đã yêu cầu quá nhiều mã hoặc nhập sai quá nhiều lần. Vui lòng thử lại sau 15 phút."),
            ),
            Err(LoginError::Api(e)) if e.status == StatusCode::UNPROCESSABLE_ENTITY => {
                id_page(&r, &c, Some("Số định danh cá nhân phải gồm 12 chữ số hợp lệ."))
            }
            Err(LoginError::Api(e)) => e.into_response(),
        },
        Some("code") => {
            let challenge = r.get("challenge").unwrap_or("");
            let code = r.get("code").unwrap_or("");
            if challenge.len() > 100 || code.len() > 20 {
                return id_page(&r, &c, Some("Mã xác thực đã hết hạn. Vui lòng nhập lại số định danh."));
            }
            match check_code(&st, challenge, code).await {
                Err(e) => e.into_response(),
                Ok(Err(CodeRefusal::Wrong(left))) => {
                    code_page(&r, &c, challenge, Some(&format!("Mã xác thực không đúng. Bạn còn {left} lần thử.")))
                }
                Ok(Err(CodeRefusal::Spent)) => id_page(
                    &r,
                    &c,
                    Some("Mã xác thực đã hết hạn, đã dùng hoặc nhập sai quá số lần. Vui lòng nhập lại số định danh."),
                ),
                Ok(Ok(person_key)) => {
                    let mut res = grant(&st, &r, &c, &person_key).await;
                    res.extensions_mut().insert(AuditTarget(person_key));
                    res.extensions_mut().insert(CitizenCaller::audit_actor());
                    res
                }
            }
        }
        _ => error_page(StatusCode::BAD_REQUEST, "Yêu cầu không hợp lệ (step must be id or code)."),
    }
}

/// After a successful login: the citizen's consent where the portal needs it, then a code.
async fn grant(st: &AppState, r: &AuthRequest, c: &Checked, person_key: &str) -> Response {
    let store = st.registry.store();
    let now = unix_now();
    if c.partner.consent_required {
        match store.consent_in_force(person_key, &c.partner.id, now).await {
            Ok(true) => {}
            Ok(false) if r.get("consent") == Some("yes") => {
                let consent = Consent {
                    id: uuid::Uuid::new_v4().to_string(),
                    person_key: person_key.to_string(),
                    partner_id: c.partner.id.clone(),
                    purpose: format!("Đăng nhập {} — chia sẻ: {}", c.partner.name, citizen::scopes_string(&c.scopes)),
                    granted_at: now,
                    expires_at: now + 365 * 86_400,
                    revoked_at: None,
                    recorded_by: "citizen".into(),
                    revoked_by: None,
                };
                if let Err(e) = store.consent_insert(&consent).await {
                    return crate::problem::ApiError::from(e).into_response();
                }
            }
            Ok(false) => {
                return error_redirect(st, c, "access_denied", "the citizen did not consent to sharing these claims");
            }
            Err(e) => return crate::problem::ApiError::from(e).into_response(),
        }
    }
    let code = match random_token("") {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let g = OidcGrant {
        code_hash: citizen::token_hash(&code),
        client_id: c.partner.id.clone(),
        person_key: person_key.to_string(),
        redirect_uri: c.redirect_uri.clone(),
        code_challenge: r.get("code_challenge").unwrap_or("").to_string(),
        scope: citizen::scopes_string(&c.scopes),
        nonce: r.get("nonce").map(str::to_string),
        auth_time: now,
        expires_at: now + citizen::AUTH_CODE_SECONDS,
        used_at: None,
        access_expires_at: None,
        session_id: None,
        refresh_expires_at: None,
        revoked_at: None,
    };
    if let Err(e) = store.oidc_grant_insert(&g).await {
        return crate::problem::ApiError::from(e).into_response();
    }
    let iss = st.sharing.issuer.clone();
    let mut q = vec![("code", code.as_str())];
    if let Some(s) = &c.state {
        q.push(("state", s));
    }
    q.push(("iss", &iss));
    redirect(&c.redirect_uri, &q)
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"vi\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{t}</title>\
         <style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem}}\
         .err{{color:#b00020}}input[type=text]{{font-size:1.2rem;width:100%;padding:.4rem}}\
         button{{font-size:1.1rem;padding:.4rem 1rem;margin-top:1rem}}</style></head><body>\
         <h1>{t}</h1>{body}<hr><small>Cơ sở dữ liệu quốc gia về dân cư — đăng nhập bằng số định danh cá nhân \
         và mã xác thực một lần.</small></body></html>",
        t = esc(title)
    );
    let mut res = Html(html).into_response();
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
    );
    res
}

/// The authorization request's parameters as hidden fields.
fn hidden(r: &AuthRequest) -> String {
    const KEEP: [&str; 8] = [
        "client_id",
        "redirect_uri",
        "response_type",
        "scope",
        "state",
        "nonce",
        "code_challenge",
        "code_challenge_method",
    ];
    KEEP.iter()
        .filter_map(|k| r.get(k).map(|v| format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v))))
        .collect()
}

fn id_page(r: &AuthRequest, c: &Checked, message: Option<&str>) -> Response {
    let msg = message.map(|m| format!("<p class=\"err\">{}</p>", esc(m))).unwrap_or_default();
    page(
        "Đăng nhập",
        &format!(
            "<p><b>{portal}</b> đề nghị bạn đăng nhập bằng tài khoản định danh.</p>{msg}\
             <form method=\"post\" action=\"/oidc/authorize\">{h}<input type=\"hidden\" name=\"step\" value=\"id\">\
             <label for=\"pid\">Số định danh cá nhân (12 chữ số)</label>\
             <input type=\"text\" id=\"pid\" name=\"personal_id\" inputmode=\"numeric\" autocomplete=\"username\" \
             maxlength=\"12\" required><button type=\"submit\">Gửi mã xác thực</button></form>",
            portal = esc(&c.partner.name),
            h = hidden(r)
        ),
    )
}

fn code_page(r: &AuthRequest, c: &Checked, challenge: &str, message: Option<&str>) -> Response {
    let msg = message.map(|m| format!("<p class=\"err\">{}</p>", esc(m))).unwrap_or_default();
    let claims: String = c.scopes.iter().map(|s| format!("<li>{}</li>", esc(s.vietnamese()))).collect();
    let consent = if c.partner.consent_required {
        "<p><label><input type=\"checkbox\" name=\"consent\" value=\"yes\"> Tôi đồng ý chia sẻ các thông tin trên \
         với cổng này (trong 1 năm, có thể thu hồi bất cứ lúc nào).</label></p>"
    } else {
        "<p>Cổng này được chia sẻ các thông tin trên theo căn cứ pháp lý đã đăng ký.</p>"
    };
    page(
        "Nhập mã xác thực",
        &format!(
            "<p>Nếu số định danh đã được cấp, mã xác thực gồm 6 chữ số đã được gửi tới bạn. Mã có hiệu lực 5 phút.</p>\
             {msg}<p><b>{portal}</b> sẽ nhận:</p><ul>{claims}</ul>\
             <form method=\"post\" action=\"/oidc/authorize\">{h}<input type=\"hidden\" name=\"step\" value=\"code\">\
             <input type=\"hidden\" name=\"challenge\" value=\"{ch}\">\
             <label for=\"code\">Mã xác thực</label><input type=\"text\" id=\"code\" name=\"code\" \
             inputmode=\"numeric\" autocomplete=\"one-time-code\" maxlength=\"6\" required>{consent}\
             <button type=\"submit\">Đăng nhập</button></form>",
            portal = esc(&c.partner.name),
            h = hidden(r),
            ch = esc(challenge)
        ),
    )
}

// ---- the token endpoint ------------------------------------------------------------------------

fn oauth_error(status: StatusCode, error: &str, description: impl Into<String>) -> Response {
    let mut res = (status, Json(json!({"error": error, "error_description": description.into()}))).into_response();
    if status == StatusCode::UNAUTHORIZED {
        res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"dancu\""));
    }
    res
}

fn invalid_client(why: impl Into<String>) -> Response {
    oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", why)
}

/// The HTTP Basic credentials (client_id, client_secret), form-urldecoded (RFC 6749 §2.3.1).
fn basic(headers: &HeaderMap) -> Option<(String, String)> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let b64 = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?.trim();
    let url_alphabet: String = b64
        .trim_end_matches('=')
        .chars()
        .map(|c| {
            if c == '+' {
                '-'
            } else if c == '/' {
                '_'
            } else {
                c
            }
        })
        .collect();
    let raw = String::from_utf8(b64url_decode(&url_alphabet)?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    let dec = |s: &str| serde_urlencoded::from_str::<Vec<(String, String)>>(&format!("v={s}")).ok()?.pop().map(|p| p.1);
    Some((dec(id)?, dec(secret)?))
}

/// Authenticates the client per its registration; the partner and its registration.
async fn authenticate(
    st: &AppState,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(Partner, OidcClient), Response> {
    let store = st.registry.store();
    let from_basic = basic(headers);
    let assertion = form.get("client_assertion");
    let client_id = match (&from_basic, assertion) {
        (Some((id, _)), None) => id.clone(),
        (None, Some(a)) => {
            if form.get("client_assertion_type").map(String::as_str) != Some(ASSERTION_TYPE) {
                return Err(invalid_client(format!("client_assertion_type must be {ASSERTION_TYPE}")));
            }
            let iss = jose::parse(a)
                .ok()
                .and_then(|p| p.claims().ok())
                .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string));
            iss.ok_or_else(|| invalid_client("client_assertion: not a JWT with iss"))?
        }
        (Some(_), Some(_)) => return Err(invalid_client("use one client authentication method")),
        (None, None) => return Err(invalid_client("client authentication is required")),
    };
    if form.get("client_id").is_some_and(|c| *c != client_id) {
        return Err(invalid_client("client_id differs from the authenticated client"));
    }
    let partner = match store.partner_get(&client_id).await {
        Ok(Some(p)) => p,
        Ok(None) => return Err(invalid_client("unknown client")),
        Err(e) => return Err(crate::problem::ApiError::from(e).into_response()),
    };
    let Some(client) = partner.oidc.clone() else {
        return Err(invalid_client("the client has no OpenID Connect registration"));
    };
    let now = unix_now();
    match (client.auth_method, &from_basic, assertion) {
        (ClientAuth::ClientSecretBasic, Some((_, secret)), None) => {
            let ok = client.secret_sha256.as_deref().is_some_and(|h| constant_eq(h, &citizen::token_hash(secret)));
            if !ok {
                return Err(invalid_client("the client secret is wrong"));
            }
        }
        (ClientAuth::PrivateKeyJwt, None, Some(a)) => {
            let audience = [st.sharing.issuer.clone(), endpoint(st, "/oidc/token")];
            let jti = check_assertion(&partner, a, &audience, now).map_err(invalid_client)?;
            match store.assertion_use(&partner.id, &jti.0, jti.1, now).await {
                Ok(true) => {}
                Ok(false) => return Err(invalid_client("client_assertion: this assertion (jti) was used before")),
                Err(e) => return Err(crate::problem::ApiError::from(e).into_response()),
            }
        }
        (m, _, _) => return Err(invalid_client(format!("the client is registered for {}", m.code()))),
    }
    if let Some(why) = partner.refusal(now) {
        return Err(invalid_client(why));
    }
    Ok((partner, client))
}

fn constant_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks a `private_key_jwt` client assertion (RFC 7523): signature by the registered key,
/// `iss` = `sub` = the client, `aud`, `exp` at most 5 minutes ahead, a `jti`. Its (jti, exp).
fn check_assertion(p: &Partner, a: &str, audience: &[String], now: i64) -> Result<(String, i64), String> {
    let parsed = jose::parse(a).map_err(|e| format!("client_assertion: {e}"))?;
    let key = PublicKey::from_pem(&p.public_key_pem).map_err(|_| "the client's registered key is unusable")?;
    parsed.verify(a, &key).map_err(|_| "client_assertion: the signature does not verify with the registered key")?;
    let c = parsed.claims().map_err(|_| "client_assertion: the claims are not a JSON object")?;
    let s = |k: &str| c.get(k).and_then(Value::as_str);
    if s("iss") != Some(p.id.as_str()) || s("sub") != Some(p.id.as_str()) {
        return Err("client_assertion: iss and sub must be the client_id".into());
    }
    let aud_ok = match c.get("aud") {
        Some(Value::String(x)) => audience.contains(x),
        Some(Value::Array(v)) => v.iter().any(|x| x.as_str().is_some_and(|x| audience.iter().any(|y| y == x))),
        _ => false,
    };
    if !aud_ok {
        return Err(format!("client_assertion: aud must be {:?} or {:?}", audience[0], audience[1]));
    }
    let exp = c.get("exp").and_then(Value::as_i64).ok_or("client_assertion: exp is missing")?;
    if exp <= now {
        return Err("client_assertion: expired".into());
    }
    if exp > now + ASSERTION_MAX_SECONDS + 30 {
        return Err(format!("client_assertion: exp may be at most {ASSERTION_MAX_SECONDS} s ahead"));
    }
    let jti = s("jti").filter(|j| !j.is_empty() && j.len() <= 256).ok_or("client_assertion: jti is required")?;
    Ok((jti.to_string(), exp))
}

/// The person of a grant and the claims the portal receives, with `sub`.
async fn claims_for(
    st: &AppState,
    partner: &Partner,
    client: &OidcClient,
    g: &OidcGrant,
) -> Result<serde_json::Map<String, Value>, Response> {
    let key: uuid::Uuid = g.person_key.parse().map_err(|_| crate::problem::ApiError::internal().into_response())?;
    let rec = match st.registry.store().get_person(&PersonRef::Key(key)).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(crate::problem::ApiError::internal().into_response()),
        Err(e) => return Err(crate::problem::ApiError::from(e).into_response()),
    };
    let Some(id) = rec.person.personal_id else { return Err(crate::problem::ApiError::internal().into_response()) };
    let pkey = crate::sharing::pseudonym_key(st, partner).map_err(IntoResponse::into_response)?;
    let scopes: Vec<Scope> = g.scope.split(' ').filter_map(Scope::from_code).collect();
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), json!(citizen::subject(client, &pkey, id.as_str())));
    out.extend(citizen::claims(&rec.person, &scopes, partner));
    Ok(out)
}

fn audited(mut res: Response, partner: &Partner, g: &OidcGrant, purpose: &str) -> Response {
    res.extensions_mut().insert(AuditTarget(g.person_key.clone()));
    res.extensions_mut().insert(AuditActor {
        officer: format!("partner:{}", partner.id),
        role: "oidc".into(),
        unit: partner.kind.code().into(),
    });
    res.extensions_mut().insert(AuditPurpose(format!("{purpose} ({})", g.scope)));
    res
}

/// The token endpoint: an authorization code (with its PKCE verifier) for an ID token and an
/// access token to userinfo.
pub async fn token(State(st): State<AppState>, req: Request) -> Response {
    let mut res = token_inner(&st, req).await;
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut().insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    res
}

async fn token_inner(st: &AppState, req: Request) -> Response {
    let bad = |e: &str, why: &str| oauth_error(StatusCode::BAD_REQUEST, e, why);
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return bad("invalid_request", "the body must be application/x-www-form-urlencoded");
    }
    let headers = req.headers().clone();
    let Ok(bytes) = axum::body::to_bytes(req.into_body(), 64 * 1024).await else {
        return bad("invalid_request", "the body could not be read (at most 64 KiB)");
    };
    let form = match std::str::from_utf8(&bytes).map_err(|e| e.to_string()).and_then(pairs) {
        Ok(f) => f,
        Err(e) => return bad("invalid_request", &e),
    };
    match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => {}
        Some("refresh_token") => return refresh(st, &headers, &form).await,
        _ => return bad("unsupported_grant_type", "grant_type must be authorization_code or refresh_token"),
    }
    let (Some(code), Some(redirect_uri), Some(verifier)) =
        (form.get("code"), form.get("redirect_uri"), form.get("code_verifier"))
    else {
        return bad("invalid_request", "code, redirect_uri and code_verifier are required");
    };
    let (partner, client) = match authenticate(st, &headers, &form).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let now = unix_now();
    let session_id = match random_token("") {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let (access, refresh_token, tokens) = match new_tokens(&session_id, now) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let store = st.registry.store();
    let refresh_exp = now + citizen::OIDC_REFRESH_SECONDS;
    let g = match store.oidc_grant_redeem(&citizen::token_hash(code), &tokens, &session_id, refresh_exp, now).await {
        Ok(Some(g)) => g,
        Ok(None) => return bad("invalid_grant", "unknown authorization code"),
        Err(e) => return crate::problem::ApiError::from(e).into_response(),
    };
    let invalid = |why: &str| bad("invalid_grant", why);
    if g.client_id != partner.id {
        return invalid("the code was issued to another client");
    }
    if g.used_at.is_some() {
        return invalid("the code was used before; the token issued for it is revoked");
    }
    if g.expires_at <= now {
        return invalid("the code expired");
    }
    if g.redirect_uri != *redirect_uri {
        return invalid("redirect_uri differs from the authorization request's");
    }
    if !citizen::pkce_matches(verifier, &g.code_challenge) {
        return invalid("the code_verifier does not match the code_challenge (PKCE S256)");
    }
    if partner.consent_required {
        match store.consent_in_force(&g.person_key, &partner.id, now).await {
            Ok(true) => {}
            Ok(false) => return invalid("the citizen's consent to this portal is not in force"),
            Err(e) => return crate::problem::ApiError::from(e).into_response(),
        }
    }
    let id_token = match id_token(st, &partner, &client, &g, &session_id, g.nonce.as_deref(), now).await {
        Ok(t) => t,
        Err(res) => return res,
    };
    let body = json!({"access_token": access, "token_type": "Bearer", "expires_in": citizen::OIDC_TOKEN_SECONDS,
                      "refresh_token": refresh_token, "id_token": id_token, "scope": g.scope});
    audited(Json(body).into_response(), &partner, &g, "Đăng nhập cổng dịch vụ công: mã thông báo định danh")
}

/// A new access token and refresh token of a session, and their hashes as stored. A refresh
/// token names its session (`or_<session>.<random>`): a spent one is recognised as its session's.
fn new_tokens(session_id: &str, now: i64) -> crate::problem::ApiResult<(String, String, OidcTokens)> {
    let access = random_token("oa_")?;
    let refresh = format!("or_{session_id}.{}", random_token("")?);
    let tokens = OidcTokens {
        access_hash: citizen::token_hash(&access),
        access_expires_at: now + citizen::OIDC_TOKEN_SECONDS,
        refresh_hash: citizen::token_hash(&refresh),
    };
    Ok((access, refresh, tokens))
}

/// A signed ID token for a grant: the claims of its scopes, `sid` naming the session.
async fn id_token(
    st: &AppState,
    partner: &Partner,
    client: &OidcClient,
    g: &OidcGrant,
    session_id: &str,
    nonce: Option<&str>,
    now: i64,
) -> Result<String, Response> {
    let mut claims = claims_for(st, partner, client, g).await?;
    claims.insert("iss".into(), json!(st.sharing.issuer));
    claims.insert("aud".into(), json!(partner.id));
    claims.insert("azp".into(), json!(partner.id));
    claims.insert("iat".into(), json!(now));
    claims.insert("exp".into(), json!(now + citizen::OIDC_TOKEN_SECONDS));
    claims.insert("auth_time".into(), json!(g.auth_time));
    claims.insert("sid".into(), json!(session_id));
    if let Some(n) = nonce {
        claims.insert("nonce".into(), json!(n));
    }
    let payload = serde_json::to_vec(&Value::Object(claims)).expect("JSON");
    jose::sign(st.sharing.signer(), &[("typ", json!("JWT"))], &payload).map_err(|e| {
        tracing::error!(error = %e, "signing an ID token failed");
        crate::problem::ApiError::internal().into_response()
    })
}

/// The refresh token grant (RFC 6749 §6): the current refresh token of a live session of this
/// client gets a new access token, a new refresh token (the old one is spent) and a new ID token
/// (the same `sub`, `auth_time` and `sid`; no nonce). A spent refresh token presented again
/// revokes the session. A `scope` may only narrow what was granted (the grant's is issued).
async fn refresh(st: &AppState, headers: &HeaderMap, form: &HashMap<String, String>) -> Response {
    let bad = |e: &str, why: &str| oauth_error(StatusCode::BAD_REQUEST, e, why);
    let Some(presented) = form.get("refresh_token") else {
        return bad("invalid_request", "refresh_token is required");
    };
    let (partner, client) = match authenticate(st, headers, form).await {
        Ok(x) => x,
        Err(res) => return res,
    };
    let session_id = presented
        .strip_prefix("or_")
        .filter(|t| t.len() < 200)
        .and_then(|t| t.split_once('.'))
        .map(|(s, _)| s)
        .filter(|s| !s.is_empty());
    let Some(session_id) = session_id else { return bad("invalid_grant", "unknown refresh token") };
    let now = unix_now();
    let (access, refresh_token, tokens) = match new_tokens(session_id, now) {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let store = st.registry.store();
    let outcome = store.oidc_refresh(&partner.id, session_id, &citizen::token_hash(presented), &tokens, now).await;
    let g = match outcome {
        Ok(RefreshOutcome::Rotated(g)) => *g,
        Ok(RefreshOutcome::Reused) => {
            tracing::warn!(client = %partner.id, "a spent refresh token was presented again; its session is revoked");
            return bad("invalid_grant", "the refresh token was used before; the session is revoked: log in again");
        }
        Ok(RefreshOutcome::Refused) => return bad("invalid_grant", "unknown, expired or revoked refresh token"),
        Err(e) => return crate::problem::ApiError::from(e).into_response(),
    };
    // What cannot be known before the session is found ends it: the citizen logs in again.
    let partner_id = partner.id.as_str();
    let end = |error: &'static str, why: &'static str| async move {
        if let Err(e) = store.oidc_session_end(partner_id, session_id, now).await {
            return crate::problem::ApiError::from(e).into_response();
        }
        bad(error, why)
    };
    if let Some(scope) = form.get("scope") {
        let granted: Vec<&str> = g.scope.split(' ').collect();
        if !scope.split_whitespace().all(|s| granted.contains(&s)) {
            return end("invalid_scope", "a refresh cannot add scopes to the grant").await;
        }
    }
    if partner.consent_required {
        match store.consent_in_force(&g.person_key, &partner.id, now).await {
            Ok(true) => {}
            Ok(false) => return end("invalid_grant", "the citizen's consent to this portal is not in force").await,
            Err(e) => return crate::problem::ApiError::from(e).into_response(),
        }
    }
    let id_token = match id_token(st, &partner, &client, &g, session_id, None, now).await {
        Ok(t) => t,
        Err(res) => return res,
    };
    let body = json!({"access_token": access, "token_type": "Bearer", "expires_in": citizen::OIDC_TOKEN_SECONDS,
                      "refresh_token": refresh_token, "id_token": id_token, "scope": g.scope});
    audited(Json(body).into_response(), &partner, &g, "Đăng nhập cổng dịch vụ công: làm mới mã thông báo")
}

// ---- RP-initiated logout ---------------------------------------------------------------------------

/// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0), GET or POST (form): with an
/// `id_token_hint` this server issued to the portal, the session it names ends — its access and
/// refresh tokens stop working. Then back to `post_logout_redirect_uri` (one of the portal's
/// registered redirect URIs, exactly; with `state`), or a page saying the citizen logged out.
/// Errors are pages: an unverified URI is never redirected to.
pub async fn logout(State(st): State<AppState>, req: Request) -> Response {
    let raw = if req.method() == axum::http::Method::POST {
        let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
            return logout_error(StatusCode::BAD_REQUEST, "the body must be application/x-www-form-urlencoded");
        }
        match axum::body::to_bytes(req.into_body(), 16 * 1024).await {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(_) => return logout_error(StatusCode::BAD_REQUEST, "the body could not be read (at most 16 KiB)"),
        }
    } else {
        req.uri().query().unwrap_or("").to_string()
    };
    let params = match pairs(&raw) {
        Ok(p) => p,
        Err(e) => return logout_error(StatusCode::BAD_REQUEST, &e),
    };
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    // The hint: an ID token of this server (expired ones too: logout comes after they lapse).
    let mut hinted: Option<(String, String)> = None;
    if let Some(hint) = get("id_token_hint") {
        let claims = jose::parse(hint)
            .ok()
            .filter(|p| p.verify(hint, st.sharing.public_key()).is_ok())
            .and_then(|p| p.claims().ok())
            .filter(|c| c.get("iss").and_then(Value::as_str) == Some(st.sharing.issuer.as_str()));
        let Some(c) = claims else {
            return logout_error(StatusCode::BAD_REQUEST, "id_token_hint is not an ID token this server issued");
        };
        let text = |k: &str| c.get(k).and_then(Value::as_str).map(str::to_string);
        match (text("aud"), text("sid")) {
            (Some(aud), Some(sid)) => hinted = Some((aud, sid)),
            _ => return logout_error(StatusCode::BAD_REQUEST, "id_token_hint names no portal session"),
        }
    }
    let client_id = match (get("client_id"), &hinted) {
        (Some(c), Some((aud, _))) if c != aud => {
            return logout_error(StatusCode::BAD_REQUEST, "client_id differs from the ID token's audience");
        }
        (Some(c), _) => Some(c.to_string()),
        (None, Some((aud, _))) => Some(aud.clone()),
        (None, None) => None,
    };
    let store = st.registry.store();
    let partner = match &client_id {
        Some(id) => match store.partner_get(id).await {
            Ok(Some(p)) if p.oidc.is_some() => Some(p),
            Ok(_) => return logout_error(StatusCode::BAD_REQUEST, "unknown client_id"),
            Err(e) => return crate::problem::ApiError::from(e).into_response(),
        },
        None => None,
    };
    let back = match (get("post_logout_redirect_uri"), &partner) {
        (None, _) => None,
        (Some(_), None) => {
            return logout_error(StatusCode::BAD_REQUEST, "post_logout_redirect_uri needs id_token_hint or client_id");
        }
        (Some(uri), Some(p)) => {
            if !p.oidc.as_ref().is_some_and(|c| c.redirect_uris.iter().any(|r| r == uri)) {
                return logout_error(
                    StatusCode::BAD_REQUEST,
                    "post_logout_redirect_uri is not registered for the client",
                );
            }
            Some(uri.to_string())
        }
    };
    let mut ended = None;
    if let (Some((_, sid)), Some(p)) = (&hinted, &partner) {
        match store.oidc_session_end(&p.id, sid, unix_now()).await {
            Ok(g) => ended = g,
            Err(e) => return crate::problem::ApiError::from(e).into_response(),
        }
    }
    let mut res = match back {
        Some(uri) => {
            let mut q = Vec::new();
            if let Some(s) = get("state") {
                q.push(("state", s));
            }
            redirect(&uri, &q)
        }
        None => page(
            "Đã đăng xuất",
            "<p>Bạn đã đăng xuất khỏi cổng dịch vụ. Có thể đóng trang này. \
             <small>(You have logged out of the portal; you may close this page.)</small></p>",
        ),
    };
    res.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    match (ended, partner) {
        (Some(g), Some(p)) => audited(res, &p, &g, "Đăng xuất khỏi cổng dịch vụ công"),
        _ => res,
    }
}

fn logout_error(status: StatusCode, message: &str) -> Response {
    let html = page(
        "Không thể đăng xuất",
        &format!(
            "<p class=\"err\">{}</p><p><small>(The logout request is invalid; nothing was sent back to the \
             portal.)</small></p>",
            esc(message)
        ),
    );
    (status, html).into_response()
}

// ---- userinfo --------------------------------------------------------------------------------------

fn invalid_token(why: &str) -> Response {
    let mut res =
        (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_token", "error_description": why}))).into_response();
    res.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
    res
}

/// The claims of the granted scopes, for the access token of a code.
pub async fn userinfo(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim)
        .filter(|t| t.starts_with("oa_") && t.len() < 100);
    let Some(token) = token else { return invalid_token("no access token") };
    let store = st.registry.store();
    let now = unix_now();
    let g = match store.oidc_grant_by_access(&citizen::token_hash(token)).await {
        Ok(Some(g)) if g.access_expires_at.is_some_and(|e| e > now) => g,
        Ok(_) => return invalid_token("unknown, expired or revoked access token"),
        Err(e) => return crate::problem::ApiError::from(e).into_response(),
    };
    let partner = match store.partner_get(&g.client_id).await {
        Ok(Some(p)) if p.refusal(now).is_none() => p,
        Ok(_) => return invalid_token("the client is not active"),
        Err(e) => return crate::problem::ApiError::from(e).into_response(),
    };
    let Some(client) = partner.oidc.clone() else {
        return invalid_token("the client has no OpenID Connect registration");
    };
    if partner.consent_required {
        match store.consent_in_force(&g.person_key, &partner.id, now).await {
            Ok(true) => {}
            Ok(false) => return invalid_token("the citizen's consent to this portal is not in force"),
            Err(e) => return crate::problem::ApiError::from(e).into_response(),
        }
    }
    match claims_for(&st, &partner, &client, &g).await {
        Ok(c) => audited(
            Json(Value::Object(c)).into_response(),
            &partner,
            &g,
            "Đăng nhập cổng dịch vụ công: thông tin người dùng",
        ),
        Err(res) => res,
    }
}
