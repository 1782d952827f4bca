//! The screens of the officers' web application. Each handler reads through the registry with
//! the same area checks as the API (or calls the API handler itself) and renders HTML.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use dancu_core::person::Address;
use dancu_core::reference::{self, Scheme};
use dancu_core::residence::ApplicationState;
use dancu_store::{
    ApplicationQuery, PersonRecord, PersonRef, PopulationCell, RequestQuery, RequestState, ReviewQuery, ReviewState,
    SearchQuery,
};
use maud::{Markup, html};
use serde_json::Value;
use uuid::Uuid;

use super::{Ctx, FormData, Lang, charts, field_message, redirect, svg};
use crate::AppState;
use crate::audit::{AuditTarget, RequestContext};
use crate::auth::Caller;
use crate::extract::ApiJson;
use crate::problem::ApiError;

/// How long the dashboard's population counts are reused as they are (they scan the area's
/// records). Older counts are still shown while one refresh runs in the background, so only the
/// very first dashboard of an area waits for the count; the national count is read at start.
const POPULATION_CACHE: Duration = Duration::from_secs(60);

/// Population counts of an area, when they were read, and whether a refresh is running.
struct CachedCells {
    at: Instant,
    cells: Arc<Vec<PopulationCell>>,
    refreshing: bool,
}

/// Per-server state of the web application: the dashboard's cached counts by area.
#[derive(Default)]
pub struct WebState {
    population: std::sync::Mutex<BTreeMap<String, CachedCells>>,
}

pub(crate) type Q = Query<BTreeMap<String, String>>;

pub(crate) fn q<'a>(query: &'a Q, key: &str) -> &'a str {
    query.0.get(key).map(|s| s.trim()).unwrap_or("")
}

/// Moves the audit facts of an API handler's answer onto the page's answer.
pub(crate) fn carry(from: &Response, mut to: Response) -> Response {
    *to.extensions_mut() = from.extensions().clone();
    to
}

pub(crate) async fn problem_title(res: Response, l: Lang) -> (StatusCode, String) {
    let status = res.status();
    let bytes = axum::body::to_bytes(res.into_body(), 64 * 1024).await.unwrap_or_default();
    let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let mut msg = l.pick(v["title"].as_str().unwrap_or(""));
    if let Some(e) = v["errors"].as_array().and_then(|a| a.first()) {
        msg = field_message(
            l,
            e["field"].as_str().unwrap_or(""),
            e["code"].as_str().unwrap_or(""),
            e["reason"].as_str().unwrap_or(""),
        );
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        msg = format!("{msg}: {}", v["detail"].as_str().unwrap_or(""));
    }
    (status, msg)
}

// ---------------------------------------------------------------- login

fn login_form(ctx: &Ctx, username: &str, error: Option<&str>) -> Markup {
    html! {
        h1 { (ctx.t("Đăng nhập", "Log in")) }
        @if let Some(e) = error { p.errors role="alert" { (e) } }
        form method="post" action="/ui/login" {
            label for="username" { (ctx.t("Tên đăng nhập", "Username")) }
            input #username name="username" autocomplete="username" required value=(username);
            label for="password" { (ctx.t("Mật khẩu", "Password")) }
            input #password name="password" type="password" autocomplete="current-password" required;
            p { button type="submit" { (ctx.t("Đăng nhập", "Log in")) } }
        }
    }
}

/// `GET /ui/login`.
pub async fn login_page(ctx: Ctx) -> Response {
    ctx.page(ctx.t("Đăng nhập", "Log in"), login_form(&ctx, "", None))
}

/// `POST /ui/login`: the API's login in cookie mode; then on to the second factor or the dashboard.
pub async fn login(State(st): State<AppState>, ctx: Ctx, body: Bytes) -> Response {
    let form = FormData::parse(&body);
    if !ctx.origin_ok {
        return ctx.check_form(&form).err().unwrap_or_else(|| redirect("/ui/login"));
    }
    let req = crate::auth::LoginRequest {
        username: form.get("username").to_string(),
        password: form.0.iter().find(|(k, _)| k == "password").map(|(_, v)| v.clone()).unwrap_or_default(),
        mode: crate::auth::LoginMode::Cookie,
    };
    let res = crate::auth::login(State(st), ApiJson(req)).await;
    if res.status() == StatusCode::OK {
        let mut to = carry(&res, redirect("/ui"));
        if let Some(c) = res.headers().get(header::SET_COOKIE) {
            to.headers_mut().insert(header::SET_COOKIE, c.clone());
        }
        return to;
    }
    let ext = res.extensions().clone();
    let (status, msg) = problem_title(res, ctx.lang).await;
    let mut page = ctx.page(ctx.t("Đăng nhập", "Log in"), login_form(&ctx, form.get("username"), Some(&msg)));
    *page.status_mut() = status;
    *page.extensions_mut() = ext;
    page
}

fn code_form(ctx: &Ctx, action: &str, error: Option<&str>) -> Markup {
    html! {
        @if let Some(e) = error { p.errors role="alert" { (e) } }
        form method="post" action=(action) {
            (ctx.csrf_field())
            label for="code" { (ctx.t("Mã 6 chữ số trong ứng dụng xác thực", "The 6-digit code of your authenticator app")) }
            input #code name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9]{6}" maxlength="6" required;
            p { button type="submit" { (ctx.t("Xác nhận", "Confirm")) } }
        }
    }
}

fn who_block(ctx: &Ctx, caller: &Caller) -> Markup {
    html! {
        p.muted {
            (caller.officer.display_name) " (" (caller.officer.username) ") — "
            (super::unit_label(ctx.lang, &caller.officer.unit))
        }
    }
}

/// `GET /ui/mfa`: the second-factor prompt.
pub async fn mfa_page(ctx: Ctx) -> Response {
    let caller = match ctx.caller() {
        Ok(c) => c.clone(),
        Err(r) => return r,
    };
    let body = html! {
        h1 { (ctx.t("Xác thực hai lớp", "Second factor")) }
        (who_block(&ctx, &caller))
        (code_form(&ctx, "/ui/mfa", None))
    };
    ctx.page(ctx.t("Xác thực hai lớp", "Second factor"), body)
}

/// Turns the answer of the API's second-factor handlers into a page: on success the new
/// session cookie and the dashboard, else the form again with the reason.
async fn after_code(ctx: &Ctx, res: Result<Response, ApiError>, title: &str, action: &str, extra: Markup) -> Response {
    match res {
        Ok(res) if res.status() == StatusCode::OK => {
            let mut to = carry(&res, redirect("/ui"));
            if let Some(c) = res.headers().get(header::SET_COOKIE) {
                to.headers_mut().insert(header::SET_COOKIE, c.clone());
            }
            to
        }
        Ok(res) => {
            let ext = res.extensions().clone();
            let (status, msg) = problem_title(res, ctx.lang).await;
            let mut page = ctx.page(title, html! { h1 { (title) } (extra) (code_form(ctx, action, Some(&msg))) });
            *page.status_mut() = status;
            *page.extensions_mut() = ext;
            page
        }
        Err(e) => {
            let msg = match e.errors.first() {
                Some(f) => field_message(ctx.lang, &f.field, f.code, &f.reason),
                None => ctx.lang.pick(e.title),
            };
            let mut page = ctx.page(title, html! { h1 { (title) } (extra) (code_form(ctx, action, Some(&msg))) });
            *page.status_mut() = e.status;
            page
        }
    }
}

/// `POST /ui/mfa`.
pub async fn mfa(State(st): State<AppState>, ctx: Ctx, body: Bytes) -> Response {
    let (form, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let code = crate::auth::CodeRequest { code: form.get("code").to_string() };
    let res = crate::auth::mfa(State(st), caller, ApiJson(code)).await;
    let title = ctx.t("Xác thực hai lớp", "Second factor");
    after_code(&ctx, res, title, "/ui/mfa", html! {}).await
}

/// `GET /ui/totp`: enrolment of an authenticator app (required for approvers, auditors and
/// administrators).
pub async fn totp_page(ctx: Ctx) -> Response {
    let caller = match ctx.caller() {
        Ok(c) => c.clone(),
        Err(r) => return r,
    };
    let body = html! {
        h1 { (ctx.t("Đăng ký ứng dụng xác thực", "Enrol an authenticator app")) }
        (who_block(&ctx, &caller))
        p { (ctx.t("Vai trò của bạn cần mã xác thực hai lớp (TOTP). Bấm nút để tạo mã QR rồi quét bằng ứng dụng xác thực.",
                   "Your role needs a second factor (TOTP). Create a QR code and scan it with your authenticator app.")) }
        form method="post" action="/ui/totp" {
            (ctx.csrf_field())
            button type="submit" { (ctx.t("Tạo mã QR", "Create the QR code")) }
        }
    };
    ctx.page(ctx.t("Đăng ký ứng dụng xác thực", "Enrol an authenticator app"), body)
}

fn enrolment_block(ctx: &Ctx, e: &crate::auth::TotpEnrolment) -> Markup {
    html! {
        div.qr { (svg(e.qr_svg.clone())) }
        p { (ctx.t("Hoặc nhập khóa bí mật:", "Or type in the secret:")) " " code #totp-secret { (e.secret) } }
    }
}

/// `POST /ui/totp`: a new secret, shown as a QR code, with the form to confirm it.
pub async fn totp_start(State(st): State<AppState>, ctx: Ctx, body: Bytes) -> Response {
    let (_, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let e = match crate::auth::enrol(&st, &caller).await {
        Ok(e) => e,
        Err(e) => return ctx.api_error(e),
    };
    let title = ctx.t("Đăng ký ứng dụng xác thực", "Enrol an authenticator app");
    let body = html! {
        h1 { (title) }
        (enrolment_block(&ctx, &e))
        (code_form(&ctx, "/ui/totp/confirm", None))
    };
    ctx.page(title, body)
}

/// `POST /ui/totp/confirm`.
pub async fn totp_confirm(State(st): State<AppState>, ctx: Ctx, body: Bytes) -> Response {
    let (form, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    let code = crate::auth::CodeRequest { code: form.get("code").to_string() };
    let res = crate::auth::totp_confirm(State(st), caller, ApiJson(code)).await;
    let title = ctx.t("Đăng ký ứng dụng xác thực", "Enrol an authenticator app");
    after_code(&ctx, res, title, "/ui/totp/confirm", html! {}).await
}

/// `POST /ui/logout`.
pub async fn logout(State(st): State<AppState>, ctx: Ctx, body: Bytes) -> Response {
    let (_, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(r) => return r,
    };
    match crate::auth::logout(State(st), caller).await {
        Ok(res) => {
            let mut to = carry(&res, redirect("/ui/login"));
            if let Some(c) = res.headers().get(header::SET_COOKIE) {
                to.headers_mut().insert(header::SET_COOKIE, c.clone());
            }
            to
        }
        Err(e) => ctx.api_error(e),
    }
}

// ---------------------------------------------------------------- dashboard

async fn population(st: &AppState, area: Option<&str>) -> Result<Arc<Vec<PopulationCell>>, ApiError> {
    let key = area.unwrap_or("*").to_string();
    let stale = match st.web.population.lock().expect("population cache").get_mut(&key) {
        Some(c) if c.at.elapsed() < POPULATION_CACHE => return Ok(c.cells.clone()),
        Some(c) => Some((c.cells.clone(), !std::mem::replace(&mut c.refreshing, true))),
        None => None,
    };
    match stale {
        Some((cells, start)) => {
            if start {
                let (st, area) = (st.clone(), area.map(str::to_string));
                tokio::spawn(async move {
                    if let Err(e) = count_population(&st, area.as_deref(), key.clone()).await {
                        tracing::warn!(error = e.title, detail = %e.detail, "refreshing the dashboard's population counts failed");
                        if let Some(c) = st.web.population.lock().expect("population cache").get_mut(&key) {
                            c.refreshing = false;
                        }
                    }
                });
            }
            Ok(cells)
        }
        None => count_population(st, area, key).await,
    }
}

/// Counts the population of an area (None: the whole country) and keeps the counts.
async fn count_population(
    st: &AppState,
    area: Option<&str>,
    key: String,
) -> Result<Arc<Vec<PopulationCell>>, ApiError> {
    let cells = Arc::new(st.registry.store().population(area).await?);
    let cached = CachedCells { at: Instant::now(), cells: cells.clone(), refreshing: false };
    st.web.population.lock().expect("population cache").insert(key, cached);
    Ok(cells)
}

/// Reads the national population counts in the background (at server start), so that the first
/// dashboard of a ministry officer does not wait for the count.
pub fn warm_population(st: &AppState) -> tokio::task::JoinHandle<()> {
    let st = st.clone();
    tokio::spawn(async move {
        if let Err(e) = count_population(&st, None, "*".to_string()).await {
            tracing::warn!(error = e.title, detail = %e.detail, "counting the population for the dashboard failed");
        }
    })
}

fn commune_name(key: &str) -> String {
    let (scheme, code) = match key.split_once(':') {
        Some(("legacy", c)) => (Scheme::Legacy, c),
        Some((_, c)) => (Scheme::Y2025, c),
        None => (Scheme::Y2025, key),
    };
    reference::commune(scheme, code).map(|c| c.name.clone()).unwrap_or_else(|| key.to_string())
}

fn province_name(code: &str) -> String {
    reference::province(Scheme::Y2025, code).map(|p| p.name.clone()).unwrap_or_else(|| code.to_string())
}

/// Counts up to `cap` of a list query (`cap` or more: "cap+").
fn capped(n: usize, cap: u32) -> String {
    if n >= cap as usize { format!("{cap}+") } else { n.to_string() }
}

/// `GET /ui`: the dashboard of the officer's area.
pub async fn dashboard(State(st): State<AppState>, ctx: Ctx) -> Response {
    match dashboard_inner(&st, &ctx).await {
        Ok(r) => r,
        Err(e) => ctx.api_error(e),
    }
}

async fn dashboard_inner(st: &AppState, ctx: &Ctx) -> Result<Response, ApiError> {
    let caller = ctx.caller.as_ref().ok_or_else(ApiError::not_found)?;
    let l = ctx.lang;
    let area = caller.area();
    let cells = population(st, area.as_deref()).await?;
    let today = dancu_store::registry::today();
    let year = today.year();
    // age bands of five years, 85+ last
    let mut bands: Vec<(String, u64, u64)> =
        (0..18).map(|i| (if i == 17 { "85+".to_string() } else { format!("{}-{}", i * 5, i * 5 + 4) }, 0, 0)).collect();
    let (mut men, mut women, mut total) = (0u64, 0u64, 0u64);
    let mut by_place: BTreeMap<String, u64> = BTreeMap::new();
    let by_commune = area.is_some();
    for c in cells.iter() {
        let age = (year - c.birth_year).max(0) as usize;
        let band = &mut bands[(age / 5).min(17)];
        match c.sex.as_str() {
            "male" => {
                band.1 += c.count;
                men += c.count
            }
            _ => {
                band.2 += c.count;
                women += c.count
            }
        }
        total += c.count;
        let place = if by_commune {
            c.commune_key.as_deref().map(commune_name)
        } else {
            c.province_2025.as_deref().map(province_name)
        };
        *by_place.entry(place.unwrap_or_else(|| l.t("(chưa rõ)", "(unknown)").to_string())).or_default() += c.count;
    }
    let mut places: Vec<(String, u64)> = by_place.into_iter().collect();
    places.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    const CAP: u32 = 1000;
    let reviews = st
        .registry
        .store()
        .review_pairs(&ReviewQuery { state: Some(ReviewState::Pending), area: area.clone(), offset: 0, limit: CAP })
        .await?
        .len();
    let requests = st
        .registry
        .store()
        .change_requests(&RequestQuery {
            state: Some(RequestState::Pending),
            area: area.clone(),
            offset: 0,
            limit: CAP,
            ..Default::default()
        })
        .await?
        .len();
    let mut open = Vec::new();
    for state in [ApplicationState::Submitted, ApplicationState::Received] {
        let qy =
            ApplicationQuery { state: Some(state), area: area.clone(), offset: 0, limit: CAP, ..Default::default() };
        open.extend(st.registry.applications(&qy).await?);
    }
    let batches = st.registry.store().import_batches(500).await?;
    let in_area = |b: &&dancu_store::ImportBatch| {
        dancu_core::auth::Unit::parse(&b.unit).is_ok_and(|u| caller.officer.unit.contains(&u))
    };
    let batches: Vec<&dancu_store::ImportBatch> = batches.iter().filter(in_area).collect();
    let batches_finished = batches.iter().filter(|b| b.finished_at.is_some()).count();
    let batches_open = batches.len() - batches_finished;
    let editor = caller.officer.roles.iter().any(|r| crate::policy::EDITORS.contains(r));
    let overdue = open.iter().filter(|a| a.deadline < today).count();
    let due_today = open.iter().filter(|a| a.deadline == today).count();
    let pyramid = charts::pyramid(
        l.t("Tháp dân số theo giới tính và độ tuổi", "Population pyramid by sex and age"),
        &bands,
        l.t("Nam", "Male"),
        l.t("Nữ", "Female"),
    );
    let top: Vec<(String, u64)> = places.iter().take(15).cloned().collect();
    let place_word = if by_commune { l.t("Xã/phường", "Commune") } else { l.t("Tỉnh/thành phố", "Province") };
    let bars = charts::bars(&format!("{} — {}", l.t("Dân số", "Population"), place_word), &top);
    let card_block = super::cards::dashboard_block(st, ctx, caller).await?;
    let body = html! {
        h1 { (l.t("Tổng quan", "Dashboard")) " — " (super::unit_label(l, &caller.officer.unit)) }
        div.grid {
            div.card { div { (l.t("Dân số (đang sống)", "Population (living)")) } div.stat #population { (total) }
                div.muted { (l.t("Nam", "Male")) " " (men) " · " (l.t("Nữ", "Female")) " " (women) } }
            div.card { div { (l.t("Cặp hồ sơ chờ xem xét trùng lặp", "Possible duplicates awaiting review")) }
                div.stat { (capped(reviews, CAP)) } a href="/ui/reviews" { (l.t("Xem hàng đợi", "Open the queue")) } }
            div.card { div { (l.t("Yêu cầu thay đổi chờ phê duyệt", "Changes awaiting approval")) }
                div.stat { (capped(requests, CAP)) }
                @if editor { a href="/ui/requests" { (l.t("Xem yêu cầu", "Open the requests")) } } }
            div.card #intake-progress { div { (l.t("Nhập dữ liệu (500 lô gần nhất)", "Intake (latest 500 batches)")) }
                div.stat #batches-finished { (batches_finished) }
                div.muted { (l.t("lô đã xong", "batches finished")) " · " span #batches-open { (batches_open) } " "
                    (l.t("lô đang nhập hoặc bị gián đoạn", "running or interrupted")) " · " (st.intake.running()) " "
                    (l.t("đang chạy trên máy chủ này", "running on this server")) }
                @if editor { a href="/ui/intake" { (l.t("Xem các lô", "See the batches")) } } }
            div.card { div { (l.t("Hồ sơ cư trú đang giải quyết", "Open residence applications")) }
                div.stat { (capped(open.len(), 2 * CAP)) }
                div { span.overdue { (overdue) " " (l.t("quá hạn", "overdue")) } " · "
                      span.due { (due_today) " " (l.t("đến hạn hôm nay", "due today")) } }
                a href="/ui/residence?overdue=true" { (l.t("Xem hồ sơ quá hạn", "See the overdue ones")) } }
        }
        (card_block)
        h2 { (l.t("Dân số theo giới tính và độ tuổi", "Population by sex and age")) }
        div.legend { span { i.male {} (l.t("Nam", "Male")) } span { i.female {} (l.t("Nữ", "Female")) } }
        (svg(pyramid))
        h2 { (l.t("Dân số theo", "Population by")) " " (place_word.to_lowercase()) }
        (svg(bars))
        table {
            thead { tr { th scope="col" { (place_word) } th.num scope="col" { (l.t("Số người", "People")) } } }
            tbody { @for (name, n) in &places { tr { td { (name) } td.num { (n) } } } }
        }
        p.muted { (l.t("Tuổi tính theo năm sinh; số liệu cập nhật mỗi phút.", "Age by year of birth; counts refresh every minute.")) }
    };
    Ok(ctx.page(l.t("Tổng quan", "Dashboard"), body))
}

// ---------------------------------------------------------------- people

fn status_label(l: Lang, s: dancu_core::PersonStatus) -> &'static str {
    use dancu_core::PersonStatus::*;
    match s {
        Pending => l.t("chờ cấp số", "pending"),
        Active => l.t("đang sống", "active"),
        Dead => l.t("đã chết", "dead"),
        Missing => l.t("mất tích", "missing"),
    }
}

fn sex_label(l: Lang, s: dancu_core::Sex) -> &'static str {
    match s {
        dancu_core::Sex::Male => l.t("Nam", "Male"),
        dancu_core::Sex::Female => l.t("Nữ", "Female"),
    }
}

pub(crate) fn full_name(r: &PersonRecord) -> String {
    r.person.record.name.full()
}

/// `GET /ui/persons`: search by name (accents optional), birth year, province, commune.
pub async fn persons(State(st): State<AppState>, ctx: Ctx, query: Q) -> Response {
    let l = ctx.lang;
    let Some(caller) = ctx.caller.as_ref() else { return redirect("/ui/login") };
    let (name, year, province, commune) =
        (q(&query, "name"), q(&query, "birth_year"), q(&query, "province"), q(&query, "commune"));
    let page: u32 = q(&query, "page").parse().ok().filter(|p| (1..=500).contains(p)).unwrap_or(1);
    let mut errors = Vec::new();
    let birth_year = match year {
        "" => None,
        y => match y.parse::<i32>() {
            Ok(y) if (1800..=2199).contains(&y) => Some(y),
            _ => {
                errors.push(l.t("Năm sinh: nhập 4 chữ số, ví dụ 1990", "Birth year: four digits, e.g. 1990"));
                None
            }
        },
    };
    let province_2025 = match province {
        "" => None,
        p if reference::province(Scheme::Y2025, p).is_some() => Some(p.to_string()),
        _ => {
            errors.push(l.t("Tỉnh/thành phố không có trong danh mục", "Unknown province"));
            None
        }
    };
    let commune_key = match commune {
        "" => None,
        c if reference::commune(Scheme::Y2025, c).is_some() => Some(format!("2025:{c}")),
        _ => {
            errors.push(l.t(
                "Mã xã/phường không có trong danh mục 2025 (5 chữ số)",
                "Unknown commune code (2025 list, 5 digits)",
            ));
            None
        }
    };
    let name_prefix = Some(dancu_core::text::fold(name)).filter(|s| !s.is_empty() && s.chars().count() <= 150);
    let searched = name_prefix.is_some() || birth_year.is_some() || province_2025.is_some() || commune_key.is_some();
    let per_page = 25;
    let result = if searched && errors.is_empty() {
        let sq = SearchQuery {
            name_prefix,
            birth_year,
            commune_key,
            province_2025,
            status: None,
            area: caller.area(),
            offset: (page - 1) * per_page,
            limit: per_page,
        };
        match st.registry.search(&sq).await {
            Ok(r) => Some(r),
            Err(e) => return ctx.api_error(e.into()),
        }
    } else {
        None
    };
    let link = |p: u32| {
        let pairs = [("name", name), ("birth_year", year), ("province", province), ("commune", commune)];
        let mut s = serde_urlencoded::to_string(pairs.iter().filter(|(_, v)| !v.is_empty()).collect::<Vec<_>>())
            .unwrap_or_default();
        s += &format!("&page={p}");
        format!("/ui/persons?{s}")
    };
    let body = html! {
        h1 { (l.t("Tra cứu công dân", "Find a person")) }
        form.filters method="get" action="/ui/persons" role="search" {
            div { label for="name" { (l.t("Họ và tên (có hoặc không dấu)", "Name (accents optional)")) }
                  input #name name="name" value=(name) placeholder="nguyen van an"; }
            div { label for="birth_year" { (l.t("Năm sinh", "Birth year")) }
                  input #birth_year name="birth_year" inputmode="numeric" value=(year); }
            div { label for="province" { (l.t("Tỉnh/thành phố", "Province")) }
                  select #province name="province" {
                      option value="" { (l.t("— tất cả —", "— all —")) }
                      @for p in reference::provinces(Scheme::Y2025) {
                          option value=(p.code) selected[p.code == province] { (p.name) }
                      }
                  } }
            div { label for="commune" { (l.t("Mã xã/phường", "Commune code")) }
                  input #commune name="commune" value=(commune) inputmode="numeric"; }
            div { button type="submit" { (l.t("Tìm", "Search")) } }
        }
        @if !errors.is_empty() { div.errors role="alert" { @for e in &errors { p { (e) } } } }
        @if let Some(r) = &result {
            @if r.items.is_empty() { p #no-results { (l.t("Không tìm thấy ai trong địa bàn của bạn.", "Nobody found in your area.")) } }
            @else {
                table #results {
                    thead { tr {
                        th scope="col" { (l.t("Họ và tên", "Name")) }
                        th scope="col" { (l.t("Số định danh", "Personal ID")) }
                        th scope="col" { (l.t("Ngày sinh", "Born")) }
                        th scope="col" { (l.t("Giới tính", "Sex")) }
                        th scope="col" { (l.t("Nơi thường trú", "Permanent residence")) }
                        th scope="col" { (l.t("Tình trạng", "Status")) }
                    } }
                    tbody { @for it in &r.items { tr {
                        td { a href={ "/ui/persons/" (it.key) } { (full_name(it)) } }
                        td { @if let Some(id) = it.person.personal_id { (id.to_string()) } @else { "—" } }
                        td { (it.person.record.birth_date.to_string()) }
                        td { (sex_label(l, it.person.record.sex)) }
                        td { @if let Some(a) = &it.person.record.permanent_residence { (crate::residence::address_text(a)) } }
                        td { (status_label(l, it.person.status)) }
                    } } }
                }
                div.pager {
                    @if page > 1 { a href=(link(page - 1)) { "← " (l.t("Trang trước", "Previous")) } }
                    @if r.has_more { a href=(link(page + 1)) { (l.t("Trang sau", "Next")) " →" } }
                }
            }
        }
    };
    ctx.page(l.t("Tra cứu công dân", "Find a person"), body)
}

/// The record a path names, when it lies in the caller's area (else: not found).
pub(crate) async fn visible_person(st: &AppState, caller: &Caller, r: &str) -> Result<PersonRecord, ApiError> {
    let rec = st.registry.get(&crate::persons::parse_ref(r)?).await?;
    caller.see(&rec.person.areas())?;
    Ok(rec)
}

/// Labels of the person record's fields.
pub(crate) fn field_label(l: Lang, key: &str) -> String {
    let (vi, en) = match key {
        "name" => ("Họ, chữ đệm và tên", "Name"),
        "other_names" => ("Tên gọi khác", "Other names"),
        "birth_date" => ("Ngày sinh", "Date of birth"),
        "sex" => ("Giới tính", "Sex"),
        "birth_place" => ("Nơi sinh", "Place of birth"),
        "birth_registration_place" => ("Nơi đăng ký khai sinh", "Birth registered at"),
        "hometown" => ("Quê quán", "Home town"),
        "ethnicity" => ("Dân tộc", "Ethnicity"),
        "nationalities" => ("Quốc tịch", "Nationality"),
        "legacy_id" => ("Số CMND", "Legacy ID (CMND)"),
        "previous_documents" => ("Giấy tờ đã cấp", "Documents issued"),
        "relatives" => ("Thân nhân", "Relatives"),
        "permanent_residence" => ("Nơi thường trú", "Permanent residence"),
        "temporary_residence" => ("Nơi tạm trú", "Temporary residence"),
        "current_residence" => ("Nơi ở hiện tại", "Current residence"),
        "temporary_absence" => ("Tạm vắng", "Temporary absence"),
        "residence_file_number" => ("Số hồ sơ cư trú", "Residence file number"),
        "marital_status" => ("Tình trạng hôn nhân", "Marital status"),
        "household" => ("Hộ gia đình", "Household"),
        "occupation" => ("Nghề nghiệp", "Occupation"),
        "phone" => ("Số điện thoại", "Phone"),
        "email" => ("Thư điện tử", "Email"),
        "personal_id" => ("Số định danh cá nhân", "Personal ID"),
        "status" => ("Tình trạng", "Status"),
        "status_date" => ("Ngày (chết/mất tích)", "Date of death / missing"),
        "merged_into" => ("Đã hợp nhất vào", "Merged into"),
        other => (other, other),
    };
    l.t(vi, en).to_string()
}

/// A field's value as text: addresses by their commune's name, lists and objects flattened.
fn value_text(v: &Value) -> String {
    if let Ok(a) = serde_json::from_value::<Address>(v.clone()) {
        return crate::residence::address_text(&a);
    }
    match v {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join("; "),
        Value::Object(o) => {
            if let (Some(s), Some(g)) = (o.get("surname"), o.get("given")) {
                let m = o.get("middle").and_then(Value::as_str).unwrap_or("");
                return [s.as_str().unwrap_or(""), m, g.as_str().unwrap_or("")]
                    .into_iter()
                    .filter(|x| !x.is_empty())
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            o.iter().map(|(k, v)| format!("{k}: {}", value_text(v))).collect::<Vec<_>>().join(", ")
        }
        other => other.to_string(),
    }
}

/// A field's value for the officer: sex, status and marital status in their language.
pub(crate) fn display(l: Lang, key: &str, v: &Value) -> String {
    let code = v.as_str().unwrap_or("");
    let known = match (key, code) {
        ("sex", "male") => Some(l.t("Nam", "Male")),
        ("sex", "female") => Some(l.t("Nữ", "Female")),
        ("status", "pending") => Some(l.t("chờ cấp số", "pending")),
        ("status", "active") => Some(l.t("đang sống", "active")),
        ("status", "dead") => Some(l.t("đã chết", "dead")),
        ("status", "missing") => Some(l.t("mất tích", "missing")),
        ("marital_status", "single") => Some(l.t("chưa kết hôn", "single")),
        ("marital_status", "married") => Some(l.t("đã kết hôn", "married")),
        ("marital_status", "divorced") => Some(l.t("đã ly hôn", "divorced")),
        ("marital_status", "widowed") => Some(l.t("góa", "widowed")),
        _ => None,
    };
    known.map(str::to_string).unwrap_or_else(|| value_text(v))
}

/// The fields of a person as the officer may see them (sensitive fields left out), in the
/// record's order.
fn visible_fields(rec: &PersonRecord) -> Vec<(String, Value)> {
    let mut v = serde_json::to_value(&rec.person).unwrap_or_default();
    crate::persons::redact(&mut v);
    let mut out = Vec::new();
    if let Some(o) = v.as_object() {
        for (k, val) in o {
            if k == "record" {
                continue;
            }
            out.push((k.clone(), val.clone()));
        }
    }
    let mut r = serde_json::to_value(&rec.person.record).unwrap_or_default();
    crate::persons::redact(&mut r);
    if let Some(o) = r.as_object() {
        for (k, val) in o {
            out.push((k.clone(), val.clone()));
        }
    }
    out
}

/// `GET /ui/persons/{ref}`: everything the officer may see of a person.
pub async fn person(State(st): State<AppState>, ctx: Ctx, Path(r): Path<String>, query: Q) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let rec = match visible_person(&st, &caller, &r).await {
        Ok(rec) => rec,
        Err(e) => return ctx.api_error(e),
    };
    let mut res = match person_inner(&st, &ctx, &caller, &rec, q(&query, "notice")).await {
        Ok(r) => r,
        Err(e) => ctx.api_error(e),
    };
    res.extensions_mut().insert(AuditTarget(rec.key.to_string()));
    res
}

async fn person_inner(
    st: &AppState,
    ctx: &Ctx,
    caller: &Caller,
    rec: &PersonRecord,
    notice: &str,
) -> Result<Response, ApiError> {
    let l = ctx.lang;
    let history = st.registry.history(rec.key).await?;
    let residences = st.registry.residence_history(rec.key, None).await?;
    let household = match st.registry.store().household_of(rec.key).await? {
        Some(id) => Some(st.registry.household(id).await?),
        None => None,
    };
    let mut members = Vec::new();
    if let Some(h) = &household {
        for m in h.members.iter().filter(|m| m.left_on.is_none()).take(30) {
            if let Ok(p) = st.registry.get(&PersonRef::Key(m.person_key)).await {
                members.push((p, m.relationship_to_head));
            }
        }
    }
    let editor = caller.officer.roles.iter().any(|r| crate::policy::EDITORS.contains(r));
    let card_block = super::cards::person_block(st, ctx, caller, rec).await?;
    let pending = super::requests::pending_of(st, rec.key).await?;
    let title = full_name(rec);
    let body = html! {
        h1 { (title) }
        @match notice {
            "updated" => p.notice role="status" { (l.t("Đã cập nhật hồ sơ.", "The record was updated.")) },
            "pending" => p.notice role="status" #pending-approval { (l.t("Thay đổi đã được gửi, chờ lãnh đạo phê duyệt.", "The change waits for an approver.")) },
            _ => {}
        }
        @if !pending.is_empty() {
            section #pending-requests {
                h2 { (l.t("Yêu cầu thay đổi đang chờ phê duyệt", "Changes awaiting approval")) }
                (super::requests::requests_table(l, &pending))
            }
        }
        p.noprint {
            @if editor {
                a.button href={ "/ui/persons/" (rec.key) "/edit" } { (l.t("Sửa thông tin", "Edit")) } " "
                @if rec.person.personal_id.is_some() {
                    (super::residence::print_links(l, rec.key))
                }
            }
        }
        h2 { (l.t("Thông tin công dân", "Personal data")) }
        dl.fields {
            @for (k, v) in visible_fields(rec) {
                dt { (field_label(l, &k)) }
                dd { (display(l, &k, &v)) }
            }
            dt { (l.t("Phiên bản", "Version")) } dd { (rec.version) }
        }
        h2 { (l.t("Hộ gia đình", "Household")) }
        @if let Some(h) = &household {
            p { (l.t("Số hộ", "Household number")) " " strong { (h.number) } " — " (crate::residence::address_text(&h.address)) }
            table { thead { tr { th scope="col" { (l.t("Thành viên", "Member")) } th scope="col" { (l.t("Quan hệ với chủ hộ", "Relationship to the head")) } } }
              tbody { @for (p, rel) in &members { tr {
                  td { a href={ "/ui/persons/" (p.key) } { (full_name(p)) } }
                  td { (serde_json::to_value(rel).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
              } } } }
        } @else { p.muted { (l.t("Chưa thuộc hộ gia đình nào.", "Not in a household.")) } }
        (card_block)
        h2 { (l.t("Lịch sử cư trú", "Residence history")) }
        @if residences.is_empty() { p.muted { (l.t("Chưa có đăng ký cư trú.", "No residence registered.")) } }
        ol.timeline {
            @for row in residences.iter().rev() {
                li class=[row.valid_to.map(|_| "ended")] {
                    strong { (serde_json::to_value(row.kind).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()) }
                    " · " (crate::residence::address_text(&row.address)) br;
                    span.muted { (dancu_core::date::iso_date::format(row.valid_from)) " → "
                        @if let Some(t) = row.valid_to { (dancu_core::date::iso_date::format(t)) } @else { (l.t("nay", "now")) } }
                }
            }
        }
        h2 { (l.t("Lịch sử thay đổi", "Change history")) }
        table #history {
            thead { tr { th.num scope="col" { "#" } th scope="col" { (l.t("Thay đổi", "Change")) } th scope="col" { (l.t("Thời điểm", "When")) }
                         th scope="col" { (l.t("Cán bộ", "Officer")) } th scope="col" { (l.t("Lý do", "Reason")) } th scope="col" { (l.t("Căn cứ pháp lý", "Legal basis")) } } }
            tbody { @for v in history.iter().rev() { tr {
                td.num { (v.version) } td { (v.change.code()) }
                td { (v.recorded_at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()) }
                td { (v.meta.actor) } td { (v.meta.reason) } td { (v.meta.legal_basis.clone().unwrap_or_default()) }
            } } }
        }
    };
    Ok(ctx.page(&title, body))
}

fn edit_form(ctx: &Ctx, rec: &PersonRecord, surname: &str, middle: &str, given: &str, error: Option<&str>) -> Markup {
    let l = ctx.lang;
    html! {
        h1 { (l.t("Sửa thông tin", "Edit")) " — " (full_name(rec)) }
        p { (l.t("Thay đổi họ tên, ngày sinh, giới tính, quốc tịch cần lãnh đạo phê duyệt (người thứ hai).",
                 "A change of name, birth date, sex or nationality waits for a second officer (an approver).")) }
        @if let Some(e) = error { p.errors role="alert" { (e) } }
        form method="post" action={ "/ui/persons/" (rec.key) "/edit" } {
            (ctx.csrf_field())
            input type="hidden" name="version" value=(rec.version);
            label for="surname" { (l.t("Họ", "Surname")) } input #surname name="surname" required value=(surname);
            label for="middle" { (l.t("Chữ đệm", "Middle name")) } input #middle name="middle" value=(middle);
            label for="given" { (l.t("Tên", "Given name")) } input #given name="given" required value=(given);
            label for="reason" { (l.t("Lý do thay đổi", "Reason for the change")) } input #reason name="reason" required;
            label for="legal_basis" { (l.t("Căn cứ pháp lý (không bắt buộc)", "Legal basis (optional)")) } input #legal_basis name="legal_basis";
            p { button type="submit" { (l.t("Lưu", "Save")) } " " a href={ "/ui/persons/" (rec.key) } { (l.t("Hủy", "Cancel")) } }
        }
    }
}

/// `GET /ui/persons/{ref}/edit`.
pub async fn edit_page(State(st): State<AppState>, ctx: Ctx, Path(r): Path<String>) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let rec = match visible_person(&st, &caller, &r).await {
        Ok(rec) => rec,
        Err(e) => return ctx.api_error(e),
    };
    let n = &rec.person.record.name;
    let mut res =
        ctx.page(ctx.t("Sửa thông tin", "Edit"), edit_form(&ctx, &rec, &n.surname, &n.middle, &n.given, None));
    res.extensions_mut().insert(AuditTarget(rec.key.to_string()));
    res
}

/// `POST /ui/persons/{ref}/edit`: the API's update (maker-checker: a guarded change becomes a
/// change request).
pub async fn edit(
    State(st): State<AppState>,
    ctx: Ctx,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    Path(r): Path<String>,
    body: Bytes,
) -> Response {
    let (form, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(res) => return res,
    };
    let rec = match visible_person(&st, &caller, &r).await {
        Ok(rec) => rec,
        Err(e) => return ctx.api_error(e),
    };
    let l = ctx.lang;
    let (surname, middle, given) = (form.get("surname"), form.get("middle"), form.get("given"));
    let again = |msg: &str, status: StatusCode| {
        let mut res = ctx.page(l.t("Sửa thông tin", "Edit"), edit_form(&ctx, &rec, surname, middle, given, Some(msg)));
        *res.status_mut() = status;
        res.extensions_mut().insert(AuditTarget(rec.key.to_string()));
        res
    };
    let Ok(version) = form.get("version").parse::<i64>() else {
        return again(
            l.t("Thiếu phiên bản hồ sơ: tải lại trang.", "The record version is missing: reload."),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    };
    if form.get("reason").is_empty() {
        return again(
            l.t("Lý do thay đổi: bắt buộc nhập.", "Reason for the change: required."),
            StatusCode::UNPROCESSABLE_ENTITY,
        );
    }
    let mut person = rec.person.record.clone();
    person.name.surname = surname.to_string();
    person.name.middle = middle.to_string();
    person.name.given = given.to_string();
    let update = crate::persons::UpdatePerson {
        version,
        person,
        status: None,
        status_date: None,
        reestablish_id: false,
        reason: form.get("reason").to_string(),
        legal_basis: Some(form.get("legal_basis").to_string()).filter(|s| !s.is_empty()),
    };
    let res = crate::persons::update(State(st), caller, Extension(rc), headers, Path(r), ApiJson(update)).await;
    match res {
        Ok(res) if res.status() == StatusCode::ACCEPTED => {
            carry(&res, redirect(&format!("/ui/persons/{}?notice=pending", rec.key)))
        }
        Ok(res) if res.status() == StatusCode::OK => {
            carry(&res, redirect(&format!("/ui/persons/{}?notice=updated", rec.key)))
        }
        Ok(res) => {
            let ext = res.extensions().clone();
            let (status, msg) = problem_title(res, l).await;
            let mut page = again(&msg, status);
            *page.extensions_mut() = ext;
            page
        }
        Err(e) => {
            let msg = match e.errors.first() {
                Some(f) => field_message(l, &f.field, f.code, &f.reason),
                None => format!("{}: {}", l.pick(e.title), e.detail),
            };
            again(&msg, e.status)
        }
    }
}

// ---------------------------------------------------------------- review queue

/// `GET /ui/reviews`: pending possible duplicates of the area.
pub async fn reviews(State(st): State<AppState>, ctx: Ctx) -> Response {
    let l = ctx.lang;
    let Some(caller) = ctx.caller.as_ref() else { return redirect("/ui/login") };
    let qy = ReviewQuery { state: Some(ReviewState::Pending), area: caller.area(), offset: 0, limit: 100 };
    let pairs = match st.registry.store().review_pairs(&qy).await {
        Ok(p) => p,
        Err(e) => return ctx.api_error(e.into()),
    };
    let body = html! {
        h1 { (l.t("Xem xét hồ sơ có thể trùng lặp", "Possible duplicates to review")) }
        @if pairs.is_empty() { p #queue-empty { (l.t("Không còn cặp nào chờ xem xét.", "Nothing waits for review.")) } }
        @else {
            table #pairs {
                thead { tr { th scope="col" { (l.t("Cặp", "Pair")) } th.num scope="col" { (l.t("Xác suất trùng", "Probability")) }
                             th scope="col" { (l.t("Lô nhập", "Batch")) } } }
                tbody { @for p in &pairs { tr {
                    td { a href={ "/ui/reviews/" (p.id) } { (l.t("So sánh", "Compare")) " " (p.id.to_string()[..8]) } }
                    td.num { (format!("{:.0} %", p.probability * 100.0)) }
                    td { (p.batch_id) }
                } } }
            }
        }
    };
    ctx.page(l.t("Xem xét trùng lặp", "Review queue"), body)
}

async fn visible_pair(
    st: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<(dancu_store::ReviewPair, PersonRecord, PersonRecord), ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found())?;
    let pair = st.registry.store().review_pair_get(id).await?.ok_or_else(ApiError::not_found)?;
    let a = st.registry.get(&PersonRef::Key(pair.a)).await?;
    let b = st.registry.get(&PersonRef::Key(pair.b)).await?;
    if !caller.governs(&a.person.areas()) && !caller.governs(&b.person.areas()) {
        return Err(ApiError::not_found());
    }
    Ok((pair, a, b))
}

fn review_view(
    ctx: &Ctx,
    pair: &dancu_store::ReviewPair,
    a: &PersonRecord,
    b: &PersonRecord,
    error: Option<&str>,
) -> Markup {
    let l = ctx.lang;
    let fa: BTreeMap<String, Value> = visible_fields(a).into_iter().collect();
    let fb: BTreeMap<String, Value> = visible_fields(b).into_iter().collect();
    let keys: BTreeSet<&String> = fa.keys().chain(fb.keys()).collect();
    let decided = pair.state != ReviewState::Pending;
    html! {
        h1 { (l.t("So sánh hai hồ sơ", "Compare two records")) }
        p { (l.t("Xác suất trùng", "Probability of one person")) ": " strong { (format!("{:.0} %", pair.probability * 100.0)) } }
        @if let Some(e) = error { p.errors role="alert" { (e) } }
        table #compare {
            thead { tr { th scope="col" { (l.t("Trường", "Field")) } th scope="col" { "A" } th scope="col" { "B" } th scope="col" { (l.t("Kết quả", "Result")) } } }
            tbody { @for k in keys {
                @let (va, vb) = (fa.get(k).map(|v| display(l, k, v)).unwrap_or_else(|| "—".into()), fb.get(k).map(|v| display(l, k, v)).unwrap_or_else(|| "—".into()));
                @let same = va == vb;
                tr class=(if same { "same" } else { "different" }) {
                    th scope="row" { (field_label(l, k)) } td { (va) } td { (vb) }
                    td { @if same { (l.t("giống", "same")) } @else { strong { (l.t("khác", "different")) } } }
                }
            } }
        }
        @if decided {
            p.notice role="status" #decided { (l.t("Đã quyết định", "Decided")) ": " (pair.state.code()) }
        } @else {
            form method="post" action={ "/ui/reviews/" (pair.id) } {
                (ctx.csrf_field())
                fieldset {
                    legend { (l.t("Quyết định", "Decision")) }
                    label { input type="radio" name="decision" value="same" required; " " (l.t("Cùng một người (hợp nhất)", "One person (merge)")) }
                    label { input type="radio" name="decision" value="different"; " " (l.t("Hai người khác nhau (giữ cả hai)", "Two people (keep both)")) }
                }
                label for="note" { (l.t("Ghi chú (không bắt buộc)", "Note (optional)")) }
                textarea #note name="note" maxlength="500" {}
                p { button type="submit" { (l.t("Ghi quyết định", "Record the decision")) } }
            }
        }
    }
}

/// `GET /ui/reviews/{id}`: the two records side by side, field by field.
pub async fn review(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    match visible_pair(&st, &caller, &id).await {
        Ok((pair, a, b)) => {
            let mut res =
                ctx.page(ctx.t("So sánh hai hồ sơ", "Compare two records"), review_view(&ctx, &pair, &a, &b, None));
            res.extensions_mut().insert(AuditTarget(pair.a.to_string()));
            res
        }
        Err(e) => ctx.api_error(e),
    }
}

/// `POST /ui/reviews/{id}`: the API's decision.
pub async fn review_decide(
    State(st): State<AppState>,
    ctx: Ctx,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let (form, caller) = match ctx.posted(&body) {
        Ok(x) => x,
        Err(res) => return res,
    };
    let (pair, a, b) = match visible_pair(&st, &caller, &id).await {
        Ok(x) => x,
        Err(e) => return ctx.api_error(e),
    };
    let l = ctx.lang;
    let decision = match form.get("decision") {
        "same" => crate::reviews::ReviewVerdict::Same,
        "different" => crate::reviews::ReviewVerdict::Different,
        _ => {
            let msg = l.t("Quyết định: chọn một trong hai.", "Decision: choose one.");
            let mut res =
                ctx.page(l.t("So sánh hai hồ sơ", "Compare two records"), review_view(&ctx, &pair, &a, &b, Some(msg)));
            *res.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
            res.extensions_mut().insert(AuditTarget(pair.a.to_string()));
            return res;
        }
    };
    let note = Some(form.get("note").to_string()).filter(|s| !s.is_empty());
    let body = crate::reviews::ReviewBody { decision, note };
    match crate::reviews::decide(State(st), caller, Extension(rc), headers, Path(id), ApiJson(body)).await {
        Ok(res) if res.status().is_success() => carry(&res, redirect(&format!("/ui/reviews/{}", pair.id))),
        Ok(res) => {
            let ext = res.extensions().clone();
            let (status, msg) = problem_title(res, l).await;
            let mut page =
                ctx.page(l.t("So sánh hai hồ sơ", "Compare two records"), review_view(&ctx, &pair, &a, &b, Some(&msg)));
            *page.status_mut() = status;
            *page.extensions_mut() = ext;
            page
        }
        Err(e) => {
            let msg = match e.errors.first() {
                Some(f) => field_message(l, &f.field, f.code, &f.reason),
                None => format!("{}: {}", l.pick(e.title), e.detail),
            };
            let mut page =
                ctx.page(l.t("So sánh hai hồ sơ", "Compare two records"), review_view(&ctx, &pair, &a, &b, Some(&msg)));
            *page.status_mut() = e.status;
            page.extensions_mut().insert(AuditTarget(pair.a.to_string()));
            page
        }
    }
}

// ---------------------------------------------------------------- audit

fn audit_view(ctx: &Ctx, entries: &[dancu_core::audit::StoredEntry], query: &Q, verified: Option<Markup>) -> Markup {
    let l = ctx.lang;
    html! {
        h1 { (l.t("Nhật ký truy cập", "Audit trail")) }
        form method="post" action="/ui/audit/verify" {
            (ctx.csrf_field())
            button type="submit" { (l.t("Kiểm tra toàn vẹn chuỗi nhật ký", "Verify the chain")) }
        }
        @if let Some(v) = verified { (v) }
        form.filters method="get" action="/ui/audit" {
            div { label for="officer" { (l.t("Cán bộ", "Officer")) } input #officer name="officer" value=(q(query, "officer")); }
            div { label for="person" { (l.t("Mã hồ sơ công dân", "Person record key")) } input #person name="person" value=(q(query, "person")); }
            div { label for="from" { (l.t("Từ ngày", "From")) } input #from name="from" type="date" value=(q(query, "from")); }
            div { label for="to" { (l.t("Đến ngày", "To")) } input #to name="to" type="date" value=(q(query, "to")); }
            div { button type="submit" { (l.t("Lọc", "Filter")) } }
        }
        table #entries {
            thead { tr { th.num scope="col" { "#" } th scope="col" { (l.t("Thời điểm", "When")) } th scope="col" { (l.t("Cán bộ", "Officer")) }
                th scope="col" { (l.t("Đơn vị", "Unit")) } th scope="col" { (l.t("Hành động", "Action")) } th scope="col" { (l.t("Công dân", "Person")) }
                th scope="col" { (l.t("Mục đích", "Purpose")) } th scope="col" { (l.t("Kết quả", "Outcome")) } } }
            tbody { @for e in entries { tr {
                td.num { (e.seq) } td { (e.entry.at) } td { (e.entry.officer) } td { (e.entry.unit) } td { (e.entry.action) }
                td { (e.entry.target.clone().unwrap_or_default()) } td { (e.entry.purpose.clone().unwrap_or_default()) } td { (e.entry.outcome) }
            } } }
        }
    }
}

async fn audit_entries(st: &AppState, query: &Q) -> Result<Vec<dancu_core::audit::StoredEntry>, ApiError> {
    // Days in Việt Nam's time (UTC+7), `to` inclusive; the trail holds UTC times.
    let day = |name: &str, next: bool| -> Result<Option<String>, ApiError> {
        let v = q(query, name);
        if v.is_empty() {
            return Ok(None);
        }
        let d = time::Date::parse(v, time::macros::format_description!("[year]-[month]-[day]")).map_err(|_| {
            ApiError::field(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation",
                "Invalid query parameter",
                dancu_core::FieldError::new(name, "invalid_date", "a date, year-month-day").with_value(v),
            )
        })?;
        let d = if next { d.next_day().unwrap_or(d) } else { d };
        let at = d.midnight().assume_offset(time::UtcOffset::from_hms(7, 0, 0).expect("UTC+7"));
        let utc = at.to_offset(time::UtcOffset::UTC);
        Ok(Some(utc.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339")))
    };
    let aq = dancu_store::AuditQuery {
        officer: Some(q(query, "officer").to_string()).filter(|s| !s.is_empty()),
        target: Some(q(query, "person").to_string()).filter(|s| !s.is_empty()),
        from: day("from", false)?,
        to: day("to", true)?,
        offset: 0,
        limit: 100,
    };
    let mut entries = st.registry.store().audit_query(&aq).await?;
    entries.sort_by_key(|e| std::cmp::Reverse(e.seq));
    Ok(entries)
}

/// `GET /ui/audit`: the latest entries, filtered by officer or person.
pub async fn audit(State(st): State<AppState>, ctx: Ctx, query: Q) -> Response {
    match audit_entries(&st, &query).await {
        Ok(entries) => ctx.page(ctx.t("Nhật ký truy cập", "Audit trail"), audit_view(&ctx, &entries, &query, None)),
        Err(e) => ctx.api_error(e),
    }
}

/// `POST /ui/audit/verify`: verifies the whole chain and its signed checkpoints.
pub async fn audit_verify(State(st): State<AppState>, ctx: Ctx, body: Bytes) -> Response {
    let form = FormData::parse(&body);
    if let Err(res) = ctx.check_form(&form) {
        return res;
    }
    let l = ctx.lang;
    let Some(pk) = st.audit_public_key.clone() else {
        return ctx.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            l.t("Không kiểm tra được", "Cannot verify"),
            l.t("Máy chủ không ghi nhật ký (tắt kiểm toán).", "This server keeps no audit trail."),
        );
    };
    let result = match dancu_store::audit::verify(st.registry.store().as_ref(), &pk).await {
        Ok(r) => r,
        Err(e) => return ctx.api_error(e.into()),
    };
    let (ok, verdict) = match result {
        Ok(r) => (
            true,
            html! { p.notice role="status" #verify-result { strong { (l.t("Chuỗi nhật ký toàn vẹn.", "The chain is intact.")) } " "
            (r.entries) " " (l.t("bản ghi", "entries")) ", " (r.checkpoints) " " (l.t("điểm ký xác nhận", "signed checkpoints")) ", "
            (r.unanchored) " " (l.t("bản ghi sau điểm ký cuối", "entries after the last checkpoint")) "." } },
        ),
        Err(t) => (
            false,
            html! { p.errors role="alert" #verify-result { strong { (l.t("Phát hiện can thiệp:", "Tampering found:")) } " " (t.to_string()) } },
        ),
    };
    let query = Query(BTreeMap::new());
    let mut res = match audit_entries(&st, &query).await {
        Ok(entries) => {
            ctx.page(ctx.t("Nhật ký truy cập", "Audit trail"), audit_view(&ctx, &entries, &query, Some(verdict)))
        }
        Err(e) => ctx.api_error(e),
    };
    if !ok {
        *res.status_mut() = StatusCode::CONFLICT;
    }
    res
}

/// The response for the size test and the render-time measurement: every GET page of the
/// application as the given officer would get it.
pub fn page_paths(person_key: &str, review_id: &str) -> Vec<String> {
    vec![
        "/ui/login".into(),
        "/ui".into(),
        "/ui/persons?name=nguyen".into(),
        format!("/ui/persons/{person_key}"),
        format!("/ui/persons/{person_key}/edit"),
        "/ui/reviews".into(),
        format!("/ui/reviews/{review_id}"),
        "/ui/residence".into(),
        "/ui/residence/temporary".into(),
        "/ui/residence/new".into(),
        "/ui/residence/new/permanent_registration".into(),
        "/ui/address-reviews".into(),
        "/ui/audit".into(),
        "/ui/cards".into(),
        "/ui/production".into(),
        "/ui/cards/verify".into(),
        format!("/ui/persons/{person_key}/card-application"),
        "/ui/intake".into(),
        "/ui/requests".into(),
        "/ui/partners".into(),
    ]
}
