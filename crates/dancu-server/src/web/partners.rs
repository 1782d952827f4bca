//! Partner administration in the web application (partner administrators at ministry level):
//! the registered partners, registration with services and field scopes, a partner's page with
//! suspend / reactivate / revoke. Every change goes through the API's handler
//! (`crate::partners::create`, `set_status`), so the checks are the API's; the client secret a
//! portal registered for `client_secret_basic` gets is shown once, in the answer to the
//! registration, and never again (only its hash is stored).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use dancu_core::FieldError;
use dancu_core::sharing::{Field, PartnerStatus, Service};
use maud::{Markup, html};
use serde_json::{Value, json};

use super::{Ctx, FormData, Lang, field_message, redirect};
use crate::AppState;
use crate::extract::ApiJson;
use crate::partners::{PartnerInput, PartnerView, StatusChange};
use crate::problem::ApiError;

const KINDS: [&str; 4] = ["ministry", "province", "business", "portal"];

fn kind_label(l: Lang, k: &str) -> &'static str {
    match k {
        "ministry" => l.t("Bộ, ngành trung ương", "Ministry or central agency"),
        "province" => l.t("Ủy ban nhân dân tỉnh", "Province"),
        "business" => l.t("Doanh nghiệp (cần sự đồng ý của công dân)", "Business (needs the citizen's consent)"),
        _ => l.t("Cổng dịch vụ công", "Public-service portal"),
    }
}

fn service_label(l: Lang, s: Service) -> &'static str {
    match s {
        Service::Verify => l.t("Xác thực thông tin", "Identity verification"),
        Service::BatchVerify => l.t("Xác thực theo lô", "Batch verification"),
        Service::Retrieve => l.t("Khai thác thông tin", "Data retrieval"),
        Service::Pseudonym => l.t("Mã định danh bí danh", "Pseudonymous identifier"),
        Service::Events => l.t("Thông báo thay đổi", "Change events"),
        Service::CardValidity => l.t("Kiểm tra thẻ CCCD", "Card validity"),
        Service::CivilEvents => l.t("Gửi sự kiện hộ tịch", "Civil-status events"),
    }
}

fn field_code(f: Field) -> String {
    serde_json::to_value(f).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

/// A field scope named as the person page names the record's field.
fn scope_label(l: Lang, f: Field) -> String {
    match f {
        Field::FullName => super::pages::field_label(l, "name"),
        other => super::pages::field_label(l, &field_code(other)),
    }
}

fn status_label(l: Lang, s: PartnerStatus) -> &'static str {
    match s {
        PartnerStatus::Active => l.t("đang hoạt động", "active"),
        PartnerStatus::Suspended => l.t("tạm dừng", "suspended"),
        PartnerStatus::Revoked => l.t("đã thu hồi", "revoked"),
    }
}

/// A partner field's error in the officer's language.
fn partner_message(l: Lang, e: &FieldError) -> String {
    let vi = match (e.field.as_str(), e.code) {
        ("id", "invalid_id") => Some("mã đối tác: 3-64 ký tự chữ thường, chữ số, gạch nối"),
        ("id", "duplicate") => Some("mã đối tác đã được dùng"),
        ("public_key_pem", _) => Some("khóa công khai phải là khóa P-256 dạng PEM (PUBLIC KEY)"),
        ("client_cert_sha256", _) => Some("SHA-256 của chứng thư: 64 chữ số hệ 16"),
        ("services", _) => Some("chọn ít nhất một dịch vụ (hoặc đăng ký OpenID Connect)"),
        ("fields", _) => Some("khai thác thông tin cần ít nhất một trường dữ liệu"),
        ("consent_required", _) => Some("doanh nghiệp chỉ được khai thác khi công dân đồng ý"),
        ("rate_limit_per_second", _) => Some("từ 1 đến 1.000.000 lượt mỗi giây"),
        ("valid_until", "before_start") => Some("ngày hết hiệu lực phải sau ngày bắt đầu"),
        ("valid_until", _) => Some("ngày hết hiệu lực không hợp lệ"),
        ("name", _) => Some("bắt buộc nhập (tối đa 200 ký tự)"),
        ("legal_basis", _) => Some("bắt buộc nhập văn bản pháp lý cho phép chia sẻ (tối đa 500 ký tự)"),
        (f, _) if f.starts_with("oidc") || f.starts_with("redirect") => {
            Some("đăng ký OpenID Connect không hợp lệ (địa chỉ chuyển hướng https)")
        }
        _ => None,
    };
    match (l, vi) {
        (Lang::Vi, Some(m)) => format!("{}: {m}", e.field),
        _ => field_message(l, &e.field, e.code, &e.reason),
    }
}

fn partners_table(l: Lang, items: &[PartnerView]) -> Markup {
    html! {
        @if items.is_empty() { p.muted #no-partners { (l.t("Chưa có đối tác nào.", "No partner yet.")) } }
        @else {
            table #partners {
                thead { tr { th scope="col" { (l.t("Mã", "Id")) } th scope="col" { (l.t("Tên", "Name")) }
                    th scope="col" { (l.t("Loại", "Kind")) } th scope="col" { (l.t("Dịch vụ", "Services")) }
                    th scope="col" { (l.t("Hiệu lực đến", "Valid until")) } th scope="col" { (l.t("Trạng thái", "Status")) } } }
                tbody { @for p in items { tr {
                    td { a href={ "/ui/partners/" (p.id) } { (p.id) } }
                    td { (p.name) }
                    td { (kind_label(l, p.kind.code())) }
                    td { (p.services.iter().map(|s| s.code()).collect::<Vec<_>>().join(", ")) }
                    td { (p.valid_until.get(..10).unwrap_or(&p.valid_until)) }
                    td { (status_label(l, p.status)) }
                } } }
            }
        }
    }
}

fn form_value<'a>(form: Option<&'a FormData>, key: &str) -> &'a str {
    form.map(|f| f.get(key)).unwrap_or("")
}

fn checked(form: Option<&FormData>, key: &str, value: &str) -> bool {
    form.is_some_and(|f| f.0.iter().any(|(k, v)| k == key && v == value))
}

fn register_form(ctx: &Ctx, form: Option<&FormData>, errors: &[FieldError]) -> Markup {
    let l = ctx.lang;
    let err = |field: &str| -> Vec<String> {
        errors
            .iter()
            .filter(|e| e.field == field || e.field.starts_with(&format!("{field}.")))
            .map(|e| partner_message(l, e))
            .collect()
    };
    let v = |k: &str| form_value(form, k).to_string();
    let kind = if form.is_some() { v("kind") } else { "ministry".to_string() };
    let rate = if form.is_some() { v("rate_limit_per_second") } else { "10".to_string() };
    html! {
        h2 #register-heading { (l.t("Đăng ký đối tác mới", "Register a partner")) }
        @if !errors.is_empty() {
            div.errors role="alert" #partner-errors {
                p { (l.t("Chưa đăng ký được:", "The registration was refused:")) }
                ul { @for e in errors { li { (partner_message(l, e)) } } }
            }
        }
        form method="post" action="/ui/partners" #register {
            (ctx.csrf_field())
            label for="id" { (l.t("Mã đối tác (client_id)", "Partner id (client_id)")) }
            input #id name="id" required value=(v("id")) placeholder="ngan-hang-abc";
            @for m in err("id") { p.field-error { (m) } }
            label for="name" { (l.t("Tên đối tác", "Name")) }
            input #name name="name" required value=(v("name"));
            @for m in err("name") { p.field-error { (m) } }
            label for="kind" { (l.t("Loại đối tác", "Kind")) }
            select #kind name="kind" {
                @for k in KINDS { option value=(k) selected[kind == k] { (kind_label(l, k)) } }
            }
            label for="legal_basis" { (l.t("Căn cứ pháp lý", "Legal basis")) }
            input #legal_basis name="legal_basis" required value=(v("legal_basis"));
            @for m in err("legal_basis") { p.field-error { (m) } }
            fieldset #services {
                legend { (l.t("Dịch vụ được phép", "Services")) }
                @for s in Service::ALL {
                    label { input type="checkbox" name="services" value=(s.code()) checked[checked(form, "services", s.code())]; " " (service_label(l, s)) }
                }
                @for m in err("services") { p.field-error { (m) } }
            }
            fieldset #fields {
                legend { (l.t("Trường dữ liệu được khai thác", "Fields in scope")) }
                @for f in Field::ALL {
                    @let code = field_code(f);
                    label.inline { input type="checkbox" name="fields" value=(code) checked[checked(form, "fields", &code)]; " " (scope_label(l, f)) }
                }
                @for m in err("fields") { p.field-error { (m) } }
            }
            label for="consent_required" { (l.t("Cần sự đồng ý của công dân", "Needs the citizen's consent")) }
            select #consent_required name="consent_required" {
                option value="" { (l.t("theo loại đối tác", "by the partner's kind")) }
                option value="true" selected[v("consent_required") == "true"] { (l.t("có", "yes")) }
                option value="false" selected[v("consent_required") == "false"] { (l.t("không", "no")) }
            }
            @for m in err("consent_required") { p.field-error { (m) } }
            label for="rate_limit_per_second" { (l.t("Giới hạn lượt gọi mỗi giây", "Calls per second")) }
            input #rate_limit_per_second name="rate_limit_per_second" type="number" min="1" required value=(rate);
            @for m in err("rate_limit_per_second") { p.field-error { (m) } }
            label for="valid_until" { (l.t("Hiệu lực đến ngày", "Valid until")) }
            input #valid_until name="valid_until" type="date" required value=(v("valid_until"));
            @for m in err("valid_until") { p.field-error { (m) } }
            label for="public_key_pem" { (l.t("Khóa công khai của đối tác (P-256, PEM)", "The partner's public key (P-256, PEM)")) }
            textarea #public_key_pem name="public_key_pem" rows="5" required { (v("public_key_pem")) }
            @for m in err("public_key_pem") { p.field-error { (m) } }
            label for="client_cert_sha256" { (l.t("SHA-256 chứng thư máy khách (mTLS, không bắt buộc)", "Client certificate SHA-256 (mutual TLS, optional)")) }
            input #client_cert_sha256 name="client_cert_sha256" value=(v("client_cert_sha256"));
            @for m in err("client_cert_sha256") { p.field-error { (m) } }
            fieldset #oidc {
                legend { (l.t("Đăng nhập công dân qua cổng (OpenID Connect, không bắt buộc)", "Citizen login for a portal (OpenID Connect, optional)")) }
                label for="redirect_uris" { (l.t("Địa chỉ chuyển hướng (mỗi dòng một địa chỉ)", "Redirect URIs (one per line)")) }
                textarea #redirect_uris name="redirect_uris" rows="2" { (v("redirect_uris")) }
                label for="auth_method" { (l.t("Cách xác thực của cổng", "How the portal authenticates")) }
                select #auth_method name="auth_method" {
                    option value="private_key_jwt" { (l.t("Khóa riêng (private_key_jwt)", "Private key (private_key_jwt)")) }
                    option value="client_secret_basic" selected[v("auth_method") == "client_secret_basic"] { (l.t("Mật khẩu máy khách (cấp một lần)", "Client secret (issued once)")) }
                }
                label for="subject_type" { (l.t("Định danh công dân gửi cho cổng", "Subject sent to the portal")) }
                select #subject_type name="subject_type" {
                    option value="pairwise" { (l.t("Bí danh riêng cho cổng", "A pseudonym per portal")) }
                    option value="personal_id" selected[v("subject_type") == "personal_id"] { (l.t("Số định danh cá nhân", "The personal ID")) }
                }
                @for m in err("oidc") { p.field-error { (m) } }
            }
            p { button type="submit" { (l.t("Đăng ký đối tác", "Register the partner")) } }
        }
    }
}

async fn list_body(
    st: &AppState,
    ctx: &Ctx,
    form: Option<&FormData>,
    errors: &[FieldError],
) -> Result<Markup, ApiError> {
    let l = ctx.lang;
    let items: Vec<PartnerView> = st.registry.store().partner_list().await?.iter().map(PartnerView::from).collect();
    Ok(html! {
        h1 { (l.t("Đối tác khai thác dữ liệu", "Data-sharing partners")) }
        (partners_table(l, &items))
        (register_form(ctx, form, errors))
    })
}

/// `GET /ui/partners`: the registered partners and the registration form.
pub async fn list(State(st): State<AppState>, ctx: Ctx) -> Response {
    match list_body(&st, &ctx, None, &[]).await {
        Ok(body) => ctx.page(ctx.t("Đối tác", "Partners"), body),
        Err(e) => ctx.api_error(e),
    }
}

/// The API's registration document from the form; a field the form cannot express is named.
fn input_of(form: &FormData) -> Result<PartnerInput, FieldError> {
    let all = |key: &str| -> Vec<String> { form.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.clone()).collect() };
    let rate = form.get("rate_limit_per_second");
    let rate: u32 = rate.parse().map_err(|_| {
        FieldError::new("rate_limit_per_second", "out_of_range", "1 to 1,000,000 calls per second").with_value(rate)
    })?;
    let until = form.get("valid_until");
    let until = match time::Date::parse(until, time::macros::format_description!("[year]-[month]-[day]")) {
        Ok(d) => format!("{d}T23:59:59+07:00"),
        Err(_) => {
            return Err(FieldError::new("valid_until", "invalid_time", "a date (year-month-day)").with_value(until));
        }
    };
    let uris: Vec<String> =
        form.get("redirect_uris").lines().map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect();
    let oidc = (!uris.is_empty()).then(|| {
        json!({"redirect_uris": uris, "token_endpoint_auth_method": form.get("auth_method"),
               "subject_type": form.get("subject_type")})
    });
    let consent = match form.get("consent_required") {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    };
    let doc = json!({
        "id": form.get("id"),
        "name": form.get("name"),
        "kind": form.get("kind"),
        "legal_basis": form.get("legal_basis"),
        "services": all("services"),
        "fields": all("fields"),
        "consent_required": consent,
        "rate_limit_per_second": rate,
        "valid_until": until,
        "public_key_pem": form.get("public_key_pem"),
        "oidc": oidc.unwrap_or(Value::Null),
        "client_cert_sha256": Some(form.get("client_cert_sha256")).filter(|s| !s.is_empty()),
    });
    serde_path_to_error::deserialize(doc).map_err(|e| {
        let path = e.path().to_string();
        let field = path.split(['.', '[']).next().unwrap_or("form").to_string();
        FieldError::new(field, "invalid", e.inner().to_string())
    })
}

/// `POST /ui/partners`: registers a partner through the API's handler; the answer shows the
/// client secret, when one was issued, this once.
pub async fn create(State(st): State<AppState>, ctx: Ctx, body: Bytes) -> Response {
    let form = FormData::parse(&body);
    if let Err(res) = ctx.check_form(&form) {
        return res;
    }
    let l = ctx.lang;
    let refused = |errors: Vec<FieldError>, status: StatusCode| {
        let st = st.clone();
        let ctx = &ctx;
        let form = &form;
        async move {
            let mut res = match list_body(&st, ctx, Some(form), &errors).await {
                Ok(body) => ctx.page(ctx.t("Đối tác", "Partners"), body),
                Err(e) => return ctx.api_error(e),
            };
            *res.status_mut() = status;
            res
        }
    };
    let input = match input_of(&form) {
        Ok(i) => i,
        Err(e) => return refused(vec![e], StatusCode::UNPROCESSABLE_ENTITY).await,
    };
    let res = match crate::partners::create(State(st.clone()), ApiJson(input)).await {
        Ok(res) => res,
        Err(e) if e.status == StatusCode::CONFLICT => {
            let dup = FieldError::new("id", "duplicate", "the id is taken").with_value(form.get("id"));
            return refused(vec![dup], StatusCode::CONFLICT).await;
        }
        Err(e) if !e.errors.is_empty() => return refused(e.errors.clone(), e.status).await,
        Err(e) => return ctx.api_error(e),
    };
    let ext = res.extensions().clone();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 20).await.unwrap_or_default();
    let view: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let id = view["id"].as_str().unwrap_or_default().to_string();
    let secret = view["client_secret"].as_str().map(str::to_string);
    let body = html! {
        h1 { (l.t("Đã đăng ký đối tác", "Partner registered")) " " (id) }
        @if let Some(s) = &secret {
            div.notice role="status" #secret-block {
                p { strong { (l.t("Mật khẩu máy khách (client secret) — chỉ hiển thị MỘT LẦN, hãy sao chép và giao cho đối tác qua kênh an toàn:",
                    "Client secret — shown ONCE: copy it and hand it to the partner over a safe channel:")) } }
                p { code #client-secret { (s) } }
            }
        } @else {
            p.notice role="status" #registered { (l.t("Đối tác xác thực bằng khóa riêng của mình: không có mật khẩu máy khách.",
                "The partner authenticates with its own key: no client secret.")) }
        }
        p { a.button href={ "/ui/partners/" (id) } { (l.t("Xem trang đối tác", "Open the partner's page")) } " "
            a href="/ui/partners" { (l.t("Về danh sách đối tác", "Back to the partners")) } }
    };
    let mut page = ctx.page(l.t("Đã đăng ký đối tác", "Partner registered"), body);
    *page.status_mut() = StatusCode::CREATED;
    *page.extensions_mut() = ext;
    page
}

fn partner_view(ctx: &Ctx, p: &PartnerView, error: Option<&str>) -> Markup {
    let l = ctx.lang;
    html! {
        h1 { (p.name) " (" (p.id) ")" }
        @if let Some(e) = error { p.errors role="alert" #status-error { (e) } }
        dl.fields {
            dt { (l.t("Loại", "Kind")) } dd { (kind_label(l, p.kind.code())) }
            dt { (l.t("Trạng thái", "Status")) } dd #partner-status { (status_label(l, p.status)) }
            @if let Some(r) = &p.status_reason { dt { (l.t("Lý do", "Reason")) } dd { (r) } }
            dt { (l.t("Căn cứ pháp lý", "Legal basis")) } dd { (p.legal_basis) }
            dt { (l.t("Dịch vụ", "Services")) } dd #partner-services { ul { @for s in &p.services { li { (service_label(l, *s)) " (" (s.code()) ")" } } } }
            dt { (l.t("Trường dữ liệu", "Fields")) } dd { @if p.fields.is_empty() { "—" } @else {
                (p.fields.iter().map(|f| scope_label(l, *f)).collect::<Vec<_>>().join(", ")) } }
            dt { (l.t("Cần sự đồng ý của công dân", "Needs consent")) } dd { (if p.consent_required { l.t("có", "yes") } else { l.t("không", "no") }) }
            dt { (l.t("Giới hạn lượt gọi mỗi giây", "Calls per second")) } dd { (p.rate_limit_per_second) }
            dt { (l.t("Hiệu lực", "Valid")) } dd { (p.valid_from) " → " (p.valid_until) }
            @if let Some(o) = &p.oidc {
                dt { "OpenID Connect" } dd { (o.redirect_uris.join(", ")) " · " (o.token_endpoint_auth_method.code()) }
            }
            @if let Some(c) = &p.client_cert_sha256 { dt { (l.t("Chứng thư mTLS (SHA-256)", "mTLS certificate (SHA-256)")) } dd { code { (c) } } }
            dt { (l.t("Mật khẩu máy khách", "Client secret")) } dd { (l.t("không hiển thị lại (chỉ lưu giá trị băm)", "never shown again (stored as a hash)")) }
        }
        @if p.status != PartnerStatus::Revoked {
            h2 { (l.t("Thay đổi trạng thái", "Change the status")) }
            form method="post" action={ "/ui/partners/" (p.id) "/status" } #status-form {
                (ctx.csrf_field())
                label for="status" { (l.t("Trạng thái mới", "New status")) }
                select #status name="status" {
                    @if p.status == PartnerStatus::Active { option value="suspended" { (l.t("Tạm dừng", "Suspend")) } }
                    @if p.status == PartnerStatus::Suspended { option value="active" { (l.t("Cho hoạt động lại", "Reactivate")) } }
                    option value="revoked" { (l.t("Thu hồi (vĩnh viễn)", "Revoke (final)")) }
                }
                label for="reason" { (l.t("Lý do", "Reason")) }
                input #reason name="reason" required maxlength="500";
                p { button type="submit" { (l.t("Ghi", "Save")) } }
            }
        } @else {
            p.muted { (l.t("Đối tác đã bị thu hồi: không thay đổi được nữa.", "Revoked partners do not change.")) }
        }
        p { a href="/ui/partners" { (l.t("Về danh sách đối tác", "Back to the partners")) } }
    }
}

/// `GET /ui/partners/{id}`: one partner — scopes, status, the status form.
pub async fn partner(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    match crate::partners::get(State(st), Path(id)).await {
        Ok(axum::Json(p)) => ctx.page(&p.name.clone(), partner_view(&ctx, &p, None)),
        Err(e) => ctx.api_error(e),
    }
}

/// `POST /ui/partners/{id}/status`: suspend, reactivate or revoke through the API's handler.
pub async fn set_status(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>, body: Bytes) -> Response {
    let form = FormData::parse(&body);
    if let Err(res) = ctx.check_form(&form) {
        return res;
    }
    let l = ctx.lang;
    let current = match crate::partners::get(State(st.clone()), Path(id.clone())).await {
        Ok(axum::Json(p)) => p,
        Err(e) => return ctx.api_error(e),
    };
    let again = |msg: &str, status: StatusCode| {
        let mut res = ctx.page(&current.name, partner_view(&ctx, &current, Some(msg)));
        *res.status_mut() = status;
        res
    };
    let status = match form.get("status") {
        "active" => PartnerStatus::Active,
        "suspended" => PartnerStatus::Suspended,
        "revoked" => PartnerStatus::Revoked,
        _ => {
            return again(
                l.t("Trạng thái mới: chọn một trạng thái.", "New status: choose one."),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let change = StatusChange { status, reason: form.get("reason").to_string() };
    match crate::partners::set_status(State(st), Path(id.clone()), ApiJson(change)).await {
        Ok(_) => redirect(&format!("/ui/partners/{id}")),
        Err(e) => {
            let msg = match e.errors.first() {
                Some(f) if f.field == "reason" => l
                    .t("Lý do: bắt buộc nhập (tối đa 500 ký tự).", "Reason: required (at most 500 characters).")
                    .to_string(),
                Some(f) => field_message(l, &f.field, f.code, &f.reason),
                None => format!("{}: {}", l.pick(e.title), e.detail),
            };
            again(&msg, e.status)
        }
    }
}
