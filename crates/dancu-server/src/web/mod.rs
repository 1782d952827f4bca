//! The officers' web application: server-rendered HTML pages (maud templates, checked at
//! compile time), in Vietnamese with an English switch, one embedded stylesheet and no
//! JavaScript. Its routes are in the same route table as the API (`policy.rs`) and pass the same
//! authorization; a browser that is not logged in is sent to the login page instead of getting a
//! problem document. Forms carry a per-session CSRF token (besides the SameSite=Strict session
//! cookie) and a cross-site `Origin` is refused.
//!
//! Pages read and change data through the same registry calls and checks as the API handlers
//! (often by calling those handlers); nothing here holds a rule of its own.

pub mod cards;
pub mod charts;
pub mod intake;
pub mod multipart;
pub mod pages;
pub mod partners;
pub mod requests;
pub mod residence;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dancu_core::auth::{Role, SessionStage};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::AppState;
use crate::auth::Caller;
use crate::problem::ApiError;

/// Whether the officer holds one of `roles`.
pub(crate) fn has_role(caller: &Caller, roles: &[Role]) -> bool {
    caller.officer.roles.iter().any(|r| roles.contains(r))
}

/// The id at the end of the `Location` of an API handler's `201 Created` answer.
pub(crate) fn created_id(res: &Response) -> String {
    let location = res.headers().get(header::LOCATION).and_then(|v| v.to_str().ok());
    location.and_then(|v| v.rsplit('/').next()).unwrap_or("").to_string()
}

/// A moment as pages show it: day/month/year hour:minute, Vietnam time.
pub(crate) fn when(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(dancu_store::registry::VIETNAM_OFFSET);
    t.format(time::macros::format_description!("[day]/[month]/[year] [hour]:[minute]")).unwrap_or_default()
}

/// The language cookie (not a secret: readable, lax).
pub const LANG_COOKIE: &str = "dancu_lang";
/// The stylesheet, embedded in the binary.
pub const CSS: &str = include_str!("app.css");

/// The language of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Vi,
    En,
}

impl Lang {
    fn from_code(s: &str) -> Option<Lang> {
        match s {
            "vi" => Some(Lang::Vi),
            "en" => Some(Lang::En),
            _ => None,
        }
    }

    pub fn code(self) -> &'static str {
        match self {
            Lang::Vi => "vi",
            Lang::En => "en",
        }
    }

    /// The text in this language.
    pub fn t<'a>(self, vi: &'a str, en: &'a str) -> &'a str {
        match self {
            Lang::Vi => vi,
            Lang::En => en,
        }
    }

    /// One side of a bilingual "Tiếng Việt / English" title.
    pub fn pick(self, both: &str) -> String {
        match (self, both.split_once(" / ")) {
            (Lang::Vi, Some((vi, _))) => vi.to_string(),
            (Lang::En, Some((_, en))) => en.to_string(),
            _ => both.to_string(),
        }
    }
}

/// What every page needs: the language, the officer (on pages behind a login), and the CSRF
/// token of the session.
pub struct Ctx {
    pub lang: Lang,
    pub caller: Option<Caller>,
    pub csrf: String,
    pub origin_ok: bool,
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The CSRF token of a session: a one-way function of its secret token (so it is the same on
/// every server, ends with the session, and tells nothing about the session token).
pub fn csrf_token(session_token: &str) -> String {
    dancu_core::auth::token_hash(&format!("dancu-csrf\0{session_token}"))[..32].to_string()
}

/// A request from another site is refused on every form: browsers say so in `Sec-Fetch-Site`,
/// and name the sending site in `Origin` (`null` under this server's no-referrer policy).
fn same_origin(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|o| *o != "null");
    let Some(origin) = origin else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
    let bare = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).unwrap_or("");
    !host.is_empty() && bare == host
}

/// The language of a request: `?lang=`, else the cookie, else Vietnamese.
pub fn lang_of(uri: &axum::http::Uri, headers: &HeaderMap) -> Lang {
    let query = uri.query().unwrap_or("");
    let from_query = query.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == "lang").map(|(_, v)| v);
    from_query
        .and_then(Lang::from_code)
        .or_else(|| cookie(headers, LANG_COOKIE).and_then(Lang::from_code))
        .unwrap_or(Lang::Vi)
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, Self::Rejection> {
        let csrf = crate::auth::presented(&parts.headers).map(|(t, _)| csrf_token(&t)).unwrap_or_default();
        Ok(Ctx {
            lang: lang_of(&parts.uri, &parts.headers),
            caller: parts.extensions.get::<Caller>().cloned(),
            csrf,
            origin_ok: same_origin(&parts.headers),
        })
    }
}

/// A submitted form (`application/x-www-form-urlencoded`).
pub struct FormData(pub Vec<(String, String)>);

impl FormData {
    pub fn parse(body: &[u8]) -> FormData {
        FormData(serde_urlencoded::from_bytes(body).unwrap_or_default())
    }

    pub fn get(&self, key: &str) -> &str {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.trim()).unwrap_or("")
    }
}

impl Ctx {
    pub fn t<'a>(&self, vi: &'a str, en: &'a str) -> &'a str {
        self.lang.t(vi, en)
    }

    #[allow(clippy::result_large_err)] // the page itself is the error: no other use of it
    pub fn caller(&self) -> Result<&Caller, Response> {
        self.caller.as_ref().ok_or_else(|| redirect("/ui/login"))
    }

    /// A form must come from this site and carry the session's token.
    #[allow(clippy::result_large_err)] // the page itself is the error: no other use of it
    pub fn check_form(&self, form: &FormData) -> Result<(), Response> {
        let token_ok = !self.csrf.is_empty() && constant_time_eq(form.get("csrf"), &self.csrf);
        if self.origin_ok && token_ok {
            return Ok(());
        }
        Err(self.error_page(
            StatusCode::FORBIDDEN,
            self.t("Biểu mẫu không hợp lệ", "Invalid form"),
            self.t(
                "Biểu mẫu đã hết hạn hoặc không được gửi từ trang này. Hãy tải lại trang và thử lại.",
                "The form expired or was not sent from this site. Reload the page and try again.",
            ),
        ))
    }

    /// A posted URL-encoded form of a logged-in officer: its fields once the CSRF check passes,
    /// and the officer (an anonymous browser is sent to the login page).
    #[allow(clippy::result_large_err)] // the page itself is the error: no other use of it
    pub fn posted(&self, body: &[u8]) -> Result<(FormData, Caller), Response> {
        let form = FormData::parse(body);
        self.check_form(&form)?;
        let caller = self.caller()?.clone();
        Ok((form, caller))
    }

    /// A hidden field with the CSRF token.
    pub fn csrf_field(&self) -> Markup {
        html! { input type="hidden" name="csrf" value=(self.csrf); }
    }

    /// An HTML page for an API error (the same status).
    pub fn api_error(&self, e: ApiError) -> Response {
        let mut detail = e.detail.clone();
        if let Some(f) = e.errors.first() {
            detail = field_message(self.lang, &f.field, f.code, &f.reason);
        }
        self.error_page(e.status, &self.lang.pick(e.title), &detail)
    }

    pub fn error_page(&self, status: StatusCode, title: &str, detail: &str) -> Response {
        let body = html! {
            h1 { (title) }
            p.error role="alert" { (detail) }
            p { a href="/ui" { (self.t("Về trang chính", "Back to the dashboard")) } }
        };
        let mut res = self.page(title, body);
        *res.status_mut() = status;
        res
    }

    /// A whole page: header with the officer, navigation by role, language switch, logout.
    pub fn page(&self, title: &str, body: Markup) -> Response {
        self.page_with(title, body, None)
    }

    /// A page that reloads itself every `refresh` seconds (progress of a running job).
    pub fn page_with(&self, title: &str, body: Markup, refresh: Option<u32>) -> Response {
        let l = self.lang;
        let nav: Vec<(&str, &str, &[Role])> = vec![
            ("/ui", l.t("Tổng quan", "Dashboard"), &Role::ALL),
            ("/ui/persons", l.t("Tra cứu công dân", "People"), crate::policy::READERS),
            ("/ui/reviews", l.t("Xem xét trùng lặp", "Review queue"), crate::policy::ISSUERS),
            ("/ui/intake", l.t("Nhập dữ liệu", "Intake"), crate::policy::EDITORS),
            ("/ui/requests", l.t("Phê duyệt thay đổi", "Change requests"), crate::policy::EDITORS),
            ("/ui/partners", l.t("Đối tác", "Partners"), crate::policy::PARTNER_ADMINS),
            ("/ui/residence", l.t("Hồ sơ cư trú", "Residence"), crate::policy::READERS),
            ("/ui/audit", l.t("Nhật ký truy cập", "Audit trail"), crate::policy::AUDITORS),
            ("/ui/cards", l.t("Thẻ căn cước", "Identity cards"), crate::policy::CARD_READERS),
            ("/ui/production", l.t("Sản xuất thẻ", "Card production"), crate::policy::PRODUCTION),
        ];
        let other = match l {
            Lang::Vi => ("en", "English"),
            Lang::En => ("vi", "Tiếng Việt"),
        };
        let markup = html! {
            (DOCTYPE)
            html lang=(l.code()) {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    @if let Some(s) = refresh { meta http-equiv="refresh" content=(s); }
                    title { (title) " — dancu" }
                    link rel="icon" href="data:,";
                    link rel="stylesheet" href="/ui/assets/app.css";
                }
                body {
                    a.skip href="#main" { (l.t("Bỏ qua đến nội dung", "Skip to content")) }
                    header.top {
                        a.brand href="/ui" { "dancu" span { (l.t(" · CSDL quốc gia về dân cư", " · National population registry")) } }
                        @if let Some(c) = &self.caller {
                            @if c.stage == SessionStage::Complete {
                                nav aria-label=(l.t("Chức năng", "Sections")) {
                                    ul {
                                        @for (href, label, roles) in &nav {
                                            @if c.officer.roles.iter().any(|r| roles.contains(r)) {
                                                li { a href=(href) { (label) } }
                                            }
                                        }
                                    }
                                }
                            }
                            div.who {
                                span.name { (c.officer.display_name) }
                                " · " span.unit { (unit_label(l, &c.officer.unit)) }
                                " · " span.roles { (roles_label(l, &c.officer.roles)) }
                                form.inline method="post" action="/ui/logout" {
                                    (self.csrf_field())
                                    button type="submit" { (l.t("Đăng xuất", "Log out")) }
                                }
                            }
                        }
                        a.lang href={ "/ui/lang/" (other.0) } lang=(other.0) { (other.1) }
                    }
                    main #main { (body) }
                }
            }
        };
        html_response(markup)
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn html_response(markup: Markup) -> Response {
    let mut res = (StatusCode::OK, markup.into_string()).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
             base-uri 'none'",
        ),
    );
    res
}

/// 303 See Other.
pub fn redirect(to: &str) -> Response {
    let mut res = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

/// The unit of an officer, named.
pub fn unit_label(l: Lang, unit: &dancu_core::auth::Unit) -> String {
    use dancu_core::auth::UnitLevel;
    use dancu_core::reference::{self, Scheme};
    match unit.level {
        UnitLevel::Ministry => l.t("Bộ Công an", "Ministry of Public Security").to_string(),
        UnitLevel::Province => reference::province(Scheme::Y2025, &unit.code)
            .map(|p| format!("{} {}", l.t("Công an", "Police of"), p.name))
            .unwrap_or_else(|| unit.code_str()),
        UnitLevel::Commune | UnitLevel::District => {
            let (scheme, code) = match unit.code.strip_prefix("legacy:") {
                Some(c) => (Scheme::Legacy, c),
                None => (Scheme::Y2025, unit.code.as_str()),
            };
            reference::commune(scheme, code)
                .map(|c| format!("{} {}", l.t("Công an", "Police of"), c.name))
                .unwrap_or_else(|| unit.code_str())
        }
    }
}

pub fn role_label(l: Lang, r: Role) -> String {
    match l {
        Lang::Vi => r.vietnamese().to_string(),
        Lang::En => r.code().replace('_', " "),
    }
}

fn roles_label(l: Lang, roles: &[Role]) -> String {
    roles.iter().map(|r| role_label(l, *r)).collect::<Vec<_>>().join(", ")
}

/// A validation message for an officer, in their language: Vietnamese for the codes the forms
/// produce, the rule's own (English) reason otherwise.
pub fn field_message(l: Lang, field: &str, code: &str, reason: &str) -> String {
    let vi = match code {
        "required" => Some("bắt buộc nhập"),
        "invalid_code" => Some("mã xác thực không đúng hoặc đã được dùng"),
        "invalid_personal_id" | "invalid_id" | "invalid_reference" => {
            Some("số định danh cá nhân không hợp lệ (12 chữ số)")
        }
        "invalid_date" => Some("ngày không hợp lệ (năm-tháng-ngày)"),
        "unknown_code" | "unknown_commune" => Some("mã xã/phường không có trong danh mục"),
        "too_long" => Some("quá dài"),
        "outside_area" => Some("ngoài địa bàn quản lý của đơn vị"),
        "same_commune" | "in_permanent_commune" => Some("không đăng ký tạm trú tại xã nơi đang thường trú"),
        "too_far" | "too_long_stay" | "max_two_years" => Some("thời hạn tạm trú tối đa 2 năm"),
        "in_past" | "not_future" => Some("ngày hết hạn phải sau hôm nay"),
        "not_found" => Some("không tìm thấy công dân (trong địa bàn)"),
        "not_active" => Some("công dân chưa được cấp số định danh"),
        "consent_required" => Some("cần ý kiến đồng ý của chủ hộ hoặc chủ sở hữu chỗ ở"),
        _ => None,
    };
    match (l, vi) {
        (Lang::Vi, Some(m)) => format!("{field}: {m}"),
        (Lang::Vi, None) => format!("{field}: {reason}"),
        (Lang::En, _) => format!("{field}: {reason}"),
    }
}

/// Answers a refusal of the route table on a page route: not logged in → the login page; a
/// login part-way → its next step; a refusal by role or area → an HTML page of the same status.
pub fn refusal(stage: Option<SessionStage>, lang: Lang, e: ApiError) -> Response {
    match (e.status, stage) {
        (StatusCode::UNAUTHORIZED, Some(SessionStage::MfaRequired)) => redirect("/ui/mfa"),
        (StatusCode::UNAUTHORIZED, Some(SessionStage::MfaEnrolmentRequired)) => redirect("/ui/totp"),
        (StatusCode::UNAUTHORIZED, _) => redirect("/ui/login"),
        _ => {
            let ctx = Ctx { lang, caller: None, csrf: String::new(), origin_ok: true };
            let detail = match e.status {
                StatusCode::FORBIDDEN => lang.t(
                    "Vai trò hoặc đơn vị của bạn không được dùng chức năng này.",
                    "Your roles or your unit do not permit this page.",
                ),
                _ => "",
            };
            ctx.error_page(e.status, lang.t("Không được phép", "Not permitted"), detail)
        }
    }
}

/// `GET /ui/assets/{asset}`: the stylesheet and the card intake's script.
pub async fn asset(axum::extract::Path(asset): axum::extract::Path<String>) -> Response {
    match asset.as_str() {
        "app.css" => {
            ([(header::CONTENT_TYPE, "text/css; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")], CSS)
                .into_response()
        }
        "cards.js" => (
            [(header::CONTENT_TYPE, "text/javascript; charset=utf-8"), (header::CACHE_CONTROL, "public, max-age=3600")],
            cards::JS,
        )
            .into_response(),
        _ => (StatusCode::NOT_FOUND, "not found").into_response(),
    }
}

/// `GET /ui/lang/{code}`: switches the language (a cookie) and goes back to the dashboard.
pub async fn switch_lang(axum::extract::Path(code): axum::extract::Path<String>) -> Response {
    let Some(lang) = Lang::from_code(&code) else { return redirect("/ui") };
    let mut res = redirect("/ui");
    let cookie = format!("{LANG_COOKIE}={}; Path=/; SameSite=Lax; Max-Age=31536000", lang.code());
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    res
}

/// Inline SVG (charts, QR codes) in a page.
pub fn svg(s: String) -> Markup {
    PreEscaped(s)
}
