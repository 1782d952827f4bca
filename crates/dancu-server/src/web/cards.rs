//! The identity-card screens: an application taken at the counter (multipart form with the face
//! photo, previewed in the browser before it is sent), the workflow board by stage with deadlines,
//! an application's page with the steps the officer's roles allow, the production centres
//! (queue, blank-card stock and its alert, restock, personalization run), a card's page (faces,
//! chip files) and the verification page (passive authentication of an uploaded chip folder).
//! Every change goes through the API's own handler (`crate::cards`), so its rules, roles and
//! audit entries are the API's.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dancu_card::application::{self as rules, ApplicationKind, ReissueReason, ReplacementReason, Stage};
use dancu_core::sharing::b64url;
use dancu_store::cards::{CardApplication, CardApplicationQuery, CentreStatus};
use dancu_store::{PersonRecord, PersonRef};
use maud::{Markup, PreEscaped, html};
use serde_json::Value;

use super::multipart::{self, Part};
use super::pages::{Q, carry, q, visible_person};
use super::{Ctx, FormData, Lang, created_id, has_role, redirect};
use crate::AppState;
use crate::audit::{AuditTarget, RequestContext};
use crate::auth::Caller;
use crate::extract::ApiJson;
use crate::problem::ApiError;

/// The largest intake form: the photo (64 KiB) and ten fingerprint images (512 KiB each), encoded.
pub const INTAKE_MAX_BYTES: usize = 6 * 1024 * 1024;

/// The script of the intake form (photo preview), embedded in the binary.
pub const JS: &str = include_str!("cards.js");

/// The page's Content-Security-Policy with this server's own scripts allowed (the intake form's
/// photo preview); everything else as on every page.
fn with_script(mut res: Response) -> Response {
    res.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    res
}

fn status(mut res: Response, s: StatusCode) -> Response {
    *res.status_mut() = s;
    res
}

fn targeted(mut res: Response, person: uuid::Uuid) -> Response {
    res.extensions_mut().insert(AuditTarget(person.to_string()));
    res
}

async fn json_of(res: Response) -> Value {
    let bytes = axum::body::to_bytes(res.into_body(), 4 * 1024 * 1024).await.unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or_default()
}

fn date(d: time::Date) -> String {
    dancu_core::date::iso_date::format(d)
}

fn when(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(dancu_store::registry::VIETNAM_OFFSET);
    format!("{} {:02}:{:02}", date(t.date()), t.hour(), t.minute())
}

pub fn stage_label(l: Lang, s: Stage) -> String {
    match l {
        Lang::Vi => s.vietnamese().to_string(),
        Lang::En => s.code().replace('_', " "),
    }
}

fn replacement_label(l: Lang, r: ReplacementReason) -> &'static str {
    use ReplacementReason::*;
    match r {
        IdentityChange => l.t("thay đổi thông tin nhân thân", "change of identity information"),
        GenderTransition => l.t("xác định lại giới tính, chuyển đổi giới tính", "gender transition"),
        WrongInformation => l.t("thông tin trên thẻ có sai sót", "wrong information on the card"),
        AdministrativeRearrangement => l.t("sắp xếp đơn vị hành chính", "administrative rearrangement"),
        IdReestablished => l.t("xác lập lại số định danh cá nhân", "personal ID re-established"),
        HolderRequest => l.t("theo yêu cầu của người được cấp thẻ", "at the holder's request"),
    }
}

fn reissue_label(l: Lang, r: ReissueReason) -> &'static str {
    match r {
        ReissueReason::Lost => l.t("bị mất thẻ", "lost"),
        ReissueReason::Damaged => l.t("thẻ bị hư hỏng", "damaged"),
    }
}

pub fn kind_label(l: Lang, k: ApplicationKind) -> String {
    match k {
        ApplicationKind::FirstIssue => l.t("Cấp lần đầu", "First issue").to_string(),
        ApplicationKind::Renewal => l.t("Cấp đổi (đến tuổi đổi thẻ)", "Renewal (age milestone)").to_string(),
        ApplicationKind::Replacement(r) => format!("{} — {}", l.t("Cấp đổi", "Replacement"), replacement_label(l, r)),
        ApplicationKind::Reissue(r) => format!("{} — {}", l.t("Cấp lại", "Re-issue"), reissue_label(l, r)),
    }
}

const REPLACEMENT: [(&str, ReplacementReason); 6] = [
    ("identity_change", ReplacementReason::IdentityChange),
    ("gender_transition", ReplacementReason::GenderTransition),
    ("wrong_information", ReplacementReason::WrongInformation),
    ("administrative_rearrangement", ReplacementReason::AdministrativeRearrangement),
    ("id_reestablished", ReplacementReason::IdReestablished),
    ("holder_request", ReplacementReason::HolderRequest),
];
const REISSUE: [(&str, ReissueReason); 2] = [("lost", ReissueReason::Lost), ("damaged", ReissueReason::Damaged)];

// ---------------------------------------------------------------- multipart forms

/// The parts of a form: multipart as the card forms send it, or URL-encoded fields (no files).
fn form_parts<'a>(headers: &HeaderMap, body: &'a [u8]) -> Vec<Part<'a>> {
    multipart::of_request(headers, body).unwrap_or_else(|| {
        FormData::parse(body)
            .0
            .into_iter()
            .map(|(name, v)| Part { name, filename: None, data: v.into_bytes().into() })
            .collect()
    })
}

/// The text fields of a multipart form (for the CSRF check and the choices).
fn text_fields(parts: &[Part<'_>]) -> FormData {
    FormData(
        parts
            .iter()
            .filter(|p| p.filename.is_none())
            .map(|p| (p.name.clone(), String::from_utf8_lossy(&p.data).into_owned()))
            .collect(),
    )
}

/// The files of a field (an empty file input sends one empty part: none).
fn files<'a, 'b>(parts: &'a [Part<'b>], name: &str) -> Vec<&'a Part<'b>> {
    parts.iter().filter(|p| p.name == name && p.filename.as_deref().is_some_and(|f| !f.is_empty())).collect()
}

// ---------------------------------------------------------------- intake

#[derive(Default)]
struct IntakeForm {
    kind: String,
    reason: String,
    under_14: bool,
}

type Errors = Vec<(&'static str, String)>;

fn err_of<'a>(errors: &'a Errors, field: &str) -> Option<&'a str> {
    errors.iter().find(|(k, _)| *k == field).map(|(_, m)| m.as_str())
}

fn intake_view(ctx: &Ctx, rec: &PersonRecord, f: &IntakeForm, errors: &Errors) -> Markup {
    let l = ctx.lang;
    let name = rec.person.record.name.full();
    let described = |id: &str| err_of(errors, id).map(|_| format!("{id}-error"));
    let invalid = |id: &str| err_of(errors, id).map(|_| "true");
    let general = err_of(errors, "form");
    html! {
        h1 { (l.t("Làm thủ tục cấp CCCD", "Identity card application")) }
        p { (l.t("Công dân", "Person")) ": " a href={ "/ui/persons/" (rec.key) } { (name) } " — "
            (rec.person.personal_id.map(|p| p.to_string()).unwrap_or_default()) }
        @if !errors.is_empty() {
            div.errors role="alert" #intake-errors {
                p { (l.t("Hồ sơ chưa hợp lệ:", "The application is not valid:")) }
                ul { @for (_, m) in errors { li { (m) } } }
            }
        }
        @if let Some(m) = general { p.error #form-error { (m) } }
        form method="post" action={ "/ui/persons/" (rec.key) "/card-application" } enctype="multipart/form-data" novalidate {
            (ctx.csrf_field())
            label for="kind" { (l.t("Loại thủ tục", "Kind")) }
            @if let Some(m) = err_of(errors, "kind") { span.error #kind-error { (m) } }
            select #kind name="kind" aria-invalid=[invalid("kind")] aria-describedby=[described("kind")] {
                option value="" { (l.t("— chọn —", "— choose —")) }
                @for (code, vi, en) in [("first_issue", "Cấp lần đầu", "First issue"),
                                        ("renewal", "Cấp đổi khi đến tuổi đổi thẻ (14, 25, 40, 60)", "Renewal at an age milestone (14, 25, 40, 60)"),
                                        ("replacement", "Cấp đổi (có lý do)", "Replacement (with a reason)"),
                                        ("reissue", "Cấp lại (mất, hư hỏng)", "Re-issue (lost, damaged)")] {
                    option value=(code) selected[f.kind == code] { (l.t(vi, en)) }
                }
            }
            div #reason-field {
                label for="reason" { (l.t("Lý do (cấp đổi, cấp lại)", "Reason (replacement, re-issue)")) }
                @if let Some(m) = err_of(errors, "reason") { span.error #reason-error { (m) } }
                select #reason name="reason" aria-invalid=[invalid("reason")] aria-describedby=[described("reason")] {
                    option value="" { (l.t("— chọn —", "— choose —")) }
                    optgroup label=(l.t("Cấp đổi", "Replacement")) data-kind="replacement" {
                        @for (code, r) in REPLACEMENT {
                            option value=(code) selected[f.reason == code] { (replacement_label(l, r)) }
                        }
                    }
                    optgroup label=(l.t("Cấp lại", "Re-issue")) data-kind="reissue" {
                        @for (code, r) in REISSUE {
                            option value=(code) selected[f.reason == code] { (reissue_label(l, r)) }
                        }
                    }
                }
            }
            @if let Some(m) = err_of(errors, "requested_under_14") { span.error #requested_under_14-error { (m) } }
            label.check {
                input type="checkbox" name="requested_under_14" value="true" checked[f.under_14];
                " " (l.t("Người dưới 14 tuổi, cha, mẹ hoặc người giám hộ đề nghị cấp thẻ", "Under 14: requested by a parent or guardian"))
            }
            label for="photo" { (l.t("Ảnh chân dung (JPEG, tối thiểu 240 × 320, tối đa 64 KB)", "Face photo (JPEG, at least 240 × 320, at most 64 KB)")) }
            @if let Some(m) = err_of(errors, "photo") { span.error #photo-error { (m) } }
            input #photo name="photo" type="file" accept="image/jpeg" aria-invalid=[invalid("photo")] aria-describedby=[described("photo")];
            figure.preview {
                img #photo-preview hidden alt=(l.t("Ảnh chân dung sẽ gửi", "The photo to be sent"));
                figcaption.muted { (l.t("Xem trước ảnh trước khi gửi.", "The photo is shown here before it is sent.")) }
            }
            label for="fingerprints" { (l.t("Ảnh vân tay (JPEG, không bắt buộc, tối đa 10 ảnh)", "Fingerprint images (JPEG, optional, up to 10)")) }
            @if let Some(m) = err_of(errors, "fingerprints") { span.error #fingerprints-error { (m) } }
            input #fingerprints name="fingerprints" type="file" accept="image/jpeg" multiple aria-invalid=[invalid("fingerprints")] aria-describedby=[described("fingerprints")];
            p { button type="submit" { (l.t("Tiếp nhận hồ sơ", "Take the application")) } " "
                a href={ "/ui/persons/" (rec.key) } { (l.t("Hủy", "Cancel")) } }
        }
        script src="/ui/assets/cards.js" defer {}
    }
}

/// `GET /ui/persons/{ref}/card-application`: the intake form.
pub async fn intake_page(State(st): State<AppState>, ctx: Ctx, Path(r): Path<String>) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let rec = match visible_person(&st, &caller, &r).await {
        Ok(rec) => rec,
        Err(e) => return ctx.api_error(e),
    };
    let title = ctx.t("Làm thủ tục cấp CCCD", "Identity card application");
    let res = ctx.page(title, intake_view(&ctx, &rec, &IntakeForm::default(), &Vec::new()));
    with_script(targeted(res, rec.key))
}

/// A refused photo or fingerprint image, in the officer's language.
fn image_message(l: Lang, what: &str, reason: &str) -> String {
    let vi = if reason.contains("not a JPEG") {
        "không phải tệp ảnh JPEG".to_string()
    } else if reason.contains("not a complete JPEG") || reason.contains("corrupt") {
        "tệp JPEG bị hỏng hoặc không đầy đủ".to_string()
    } else if reason.contains("too large") {
        format!("tệp quá lớn ({})", reason.rsplit("most ").next().unwrap_or(reason))
    } else if reason.contains("too small") {
        "ảnh quá nhỏ: tối thiểu 240 × 320 điểm ảnh".to_string()
    } else {
        reason.to_string()
    };
    match l {
        Lang::Vi => format!("{what}: {vi}"),
        Lang::En => format!("{what}: {reason}"),
    }
}

/// The API's refusal of an application, as messages next to the form's fields.
fn apply_errors(l: Lang, e: &ApiError) -> Errors {
    if e.status == StatusCode::NOT_FOUND {
        let m = l.t("Không tìm thấy công dân trong địa bàn quản lý.", "No such person in your area.");
        return vec![("form", m.to_string())];
    }
    if e.kind == "open-application" {
        let m = l.t(
            "Công dân đã có hồ sơ cấp thẻ đang xử lý: hoàn tất hoặc hủy hồ sơ đó trước.",
            "The person already has an open card application: finish or cancel it first.",
        );
        return vec![("form", format!("{m} ({})", e.detail))];
    }
    if e.errors.is_empty() {
        return vec![("form", format!("{}: {}", l.pick(e.title), e.detail))];
    }
    e.errors
        .iter()
        .map(|f| {
            let photo = l.t("Ảnh chân dung", "Face photo");
            let prints = l.t("Ảnh vân tay", "Fingerprint image");
            match (f.field.as_str(), f.code) {
                ("photo", _) => ("photo", image_message(l, photo, &f.reason)),
                (p, "too_many") if p.starts_with("fingerprints") => {
                    ("fingerprints", l.t("Tối đa 10 ảnh vân tay.", "At most 10 fingerprint images.").to_string())
                }
                (p, _) if p.starts_with("fingerprints") => ("fingerprints", image_message(l, prints, &f.reason)),
                ("requested_under_14", _) => (
                    "requested_under_14",
                    l.t(
                        "Công dân chưa đủ 14 tuổi: chỉ cấp thẻ khi cha, mẹ hoặc người giám hộ đề nghị (đánh dấu ô bên dưới).",
                        "Under 14: a card only on a parent's or guardian's request (tick the box below).",
                    )
                    .to_string(),
                ),
                ("kind", "renewal_not_due") => (
                    "kind",
                    l.t(
                        "Chưa đến hạn đổi thẻ: thẻ hiện tại còn giá trị và chưa đến mốc tuổi đổi thẻ.",
                        "No renewal is due: the current card is valid and no age milestone is near.",
                    )
                    .to_string(),
                ),
                ("kind", _) => ("kind", format!("{}: {}", l.t("Loại thủ tục không phù hợp", "Kind not possible"), f.reason)),
                ("person", "no_personal_id") => (
                    "form",
                    l.t("Công dân chưa được cấp số định danh cá nhân.", "The person has no personal ID yet.").to_string(),
                ),
                ("person", "not_active") => (
                    "form",
                    l.t("Chỉ cấp thẻ cho công dân đang sống có trong CSDL.", "Cards are issued to living persons only.")
                        .to_string(),
                ),
                (field, _) => ("form", super::field_message(l, field, f.code, &f.reason)),
            }
        })
        .collect()
}

/// `POST /ui/persons/{ref}/card-application`: checks the form, then takes the application
/// through the API's handler (the same image checks and workflow rules).
pub async fn intake(
    State(st): State<AppState>,
    ctx: Ctx,
    Extension(rc): Extension<RequestContext>,
    headers: HeaderMap,
    Path(r): Path<String>,
    body: Bytes,
) -> Response {
    let l = ctx.lang;
    let parts = form_parts(&headers, &body);
    let form = text_fields(&parts);
    if let Err(res) = ctx.check_form(&form) {
        return res;
    }
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let rec = match visible_person(&st, &caller, &r).await {
        Ok(rec) => rec,
        Err(e) => return ctx.api_error(e),
    };
    let f = IntakeForm {
        kind: form.get("kind").to_string(),
        reason: form.get("reason").to_string(),
        under_14: form.get("requested_under_14") == "true",
    };
    let title = l.t("Làm thủ tục cấp CCCD", "Identity card application");
    let fail = |errors: Errors, s: StatusCode| {
        with_script(targeted(status(ctx.page(title, intake_view(&ctx, &rec, &f, &errors)), s), rec.key))
    };
    let mut errors: Errors = Vec::new();
    let kind = match f.kind.as_str() {
        "first_issue" => Some(ApplicationKind::FirstIssue),
        "renewal" => Some(ApplicationKind::Renewal),
        "replacement" => match REPLACEMENT.iter().find(|(c, _)| *c == f.reason) {
            Some((_, r)) => Some(ApplicationKind::Replacement(*r)),
            None => {
                errors.push(("reason", l.t("Lý do cấp đổi: chọn một lý do.", "Replacement: choose a reason.").into()));
                None
            }
        },
        "reissue" => match REISSUE.iter().find(|(c, _)| *c == f.reason) {
            Some((_, r)) => Some(ApplicationKind::Reissue(*r)),
            None => {
                errors.push((
                    "reason",
                    l.t("Lý do cấp lại: chọn mất hoặc hư hỏng.", "Re-issue: lost or damaged?").into(),
                ));
                None
            }
        },
        _ => {
            errors.push(("kind", l.t("Loại thủ tục: bắt buộc chọn.", "Kind: required.").into()));
            None
        }
    };
    let photo = files(&parts, "photo");
    if photo.is_empty() {
        errors.push(("photo", l.t("Ảnh chân dung: bắt buộc tải lên.", "Face photo: required.").into()));
    } else if photo.len() > 1 {
        errors.push(("photo", l.t("Ảnh chân dung: chỉ một ảnh.", "Face photo: one image only.").into()));
    }
    let (Some(kind), true) = (kind, errors.is_empty()) else {
        return fail(errors, StatusCode::UNPROCESSABLE_ENTITY);
    };
    let body = crate::cards::ApplyBody {
        person: rec.key.to_string(),
        kind,
        requested_under_14: f.under_14,
        photo: b64url(&photo[0].data),
        fingerprints: files(&parts, "fingerprints").iter().map(|p| b64url(&p.data)).collect(),
    };
    match crate::cards::apply(State(st), caller, Extension(rc), headers, ApiJson(body)).await {
        Ok(res) => {
            let id = created_id(&res);
            carry(&res, redirect(&format!("/ui/cards/applications/{id}?notice=created")))
        }
        Err(e) => {
            let s = if e.status == StatusCode::NOT_FOUND { StatusCode::UNPROCESSABLE_ENTITY } else { e.status };
            fail(apply_errors(l, &e), s)
        }
    }
}

// ---------------------------------------------------------------- board

fn overdue(a: &CardApplication, today: time::Date) -> bool {
    a.stage.is_pending_work() && a.due_on < today
}

fn deadline_cell(l: Lang, a: &CardApplication, today: time::Date) -> Markup {
    html! {
        (date(a.due_on))
        @if overdue(a, today) { " " span.overdue { (l.t("QUÁ HẠN", "OVERDUE")) } }
        @else if a.stage.is_pending_work() && a.due_on == today { " " span.due { (l.t("đến hạn hôm nay", "due today")) } }
    }
}

fn app_rows(l: Lang, apps: &[CardApplication], today: time::Date) -> Markup {
    html! {
        ul.cardlist {
            @for a in apps {
                li id={ "card-app-" (a.id) } class=[overdue(a, today).then_some("late")] {
                    a href={ "/ui/cards/applications/" (a.id) } { code { (a.number) } }
                    br; span.muted { (kind_label(l, a.kind)) } br;
                    (l.t("Hạn", "Due")) ": " (deadline_cell(l, a, today))
                }
            }
        }
    }
}

/// The columns of the board: the stages an application passes, the ended ones together.
const COLUMNS: [&[Stage]; 8] = [
    &[Stage::Received],
    &[Stage::Verified],
    &[Stage::Approved],
    &[Stage::Queued],
    &[Stage::Personalized],
    &[Stage::QualityChecked],
    &[Stage::Dispatched],
    &[Stage::Delivered, Stage::Returned, Stage::Cancelled],
];

/// `GET /ui/cards`: the area's card applications by stage, earliest deadline first, overdue
/// marked; `?stage=` one stage (up to 200), `?overdue=true` the late ones.
pub async fn board(State(st): State<AppState>, ctx: Ctx, query: Q) -> Response {
    let l = ctx.lang;
    let Some(caller) = ctx.caller.as_ref() else { return redirect("/ui/login") };
    let today = dancu_store::registry::today();
    let one = Stage::from_code(q(&query, "stage"));
    let late = q(&query, "overdue") == "true";
    let store = st.registry.store();
    let list = |stage: Option<Stage>, limit: u32| CardApplicationQuery {
        stage,
        overdue_on: late.then_some(today),
        area: caller.area(),
        limit,
        ..Default::default()
    };
    let mut columns: Vec<(String, Vec<CardApplication>, Option<&'static str>)> = Vec::new();
    if one.is_some() || late {
        match store.card_applications(&list(one, 200)).await {
            Ok(apps) => columns.push((
                match one {
                    Some(s) => stage_label(l, s),
                    None => l.t("Quá hạn", "Overdue").to_string(),
                },
                apps,
                None,
            )),
            Err(e) => return ctx.api_error(e.into()),
        }
    } else {
        for stages in COLUMNS {
            let mut apps = Vec::new();
            for s in stages {
                match store.card_applications(&list(Some(*s), 25)).await {
                    Ok(a) => apps.extend(a),
                    Err(e) => return ctx.api_error(e.into()),
                }
            }
            let name = stages.iter().map(|s| stage_label(l, *s)).collect::<Vec<_>>().join(" / ");
            columns.push((name, apps, (stages.len() == 1).then(|| stages[0].code())));
        }
    }
    let body = html! {
        h1 { (l.t("Hồ sơ cấp thẻ căn cước", "Identity card applications")) }
        p.noprint {
            a href="/ui/cards" { (l.t("Bảng theo trạng thái", "Board by stage")) } " · "
            a href="/ui/cards?overdue=true" { (l.t("Quá hạn", "Overdue")) } " · "
            a href="/ui/cards/verify" { (l.t("Kiểm tra dữ liệu chip", "Verify chip data")) }
            @if has_role(caller, crate::policy::PRODUCTION) { " · " a href="/ui/production" { (l.t("Sản xuất thẻ", "Card production")) } }
        }
        @if has_role(caller, crate::policy::CARD_OPERATORS) {
            p.muted { (l.t("Tiếp nhận hồ sơ mới: mở trang công dân và chọn “Làm thủ tục cấp CCCD”.",
                           "A new application: open the person's page and choose “Identity card application”.")) }
        }
        div.board #board {
            @for (name, apps, code) in &columns {
                section.column aria-label=(name) {
                    h2 { (name) " " span.count { "(" (apps.len()) ")" } }
                    @if apps.is_empty() { p.muted { (l.t("Không có hồ sơ.", "None.")) } }
                    @else { (app_rows(l, apps, today)) }
                    @if let Some(c) = code { @if apps.len() >= 25 { a href={ "/ui/cards?stage=" (c) } { (l.t("Xem tất cả", "See all")) } } }
                }
            }
        }
    };
    ctx.page(l.t("Hồ sơ cấp thẻ căn cước", "Identity card applications"), body)
}

// ---------------------------------------------------------------- one application

fn stage_buttons(ctx: &Ctx, caller: &Caller, a: &CardApplication, centres: &[CentreStatus]) -> Markup {
    let l = ctx.lang;
    let steps: Vec<Stage> =
        Stage::ALL.into_iter().filter(|to| *to != Stage::Personalized && rules::allowed(a.stage, *to)).collect();
    let mine: Vec<Stage> =
        steps.iter().copied().filter(|to| caller.officer.roles.contains(&rules::role_for(*to))).collect();
    let verifier_is_me = a.verified_by.as_deref() == Some(caller.username());
    let verb = |to: Stage| match to {
        Stage::Verified => l.t("Xác minh hồ sơ", "Verify"),
        Stage::Approved => l.t("Phê duyệt", "Approve"),
        Stage::Queued => l.t("Chuyển sản xuất", "Queue for production"),
        Stage::QualityChecked => l.t("Đạt kiểm tra chất lượng", "Quality checked"),
        Stage::Dispatched => l.t("Chuyển phát", "Dispatch"),
        Stage::Delivered => l.t("Đã trả thẻ cho công dân", "Delivered"),
        Stage::Returned => l.t("Thẻ bị trả lại", "Returned"),
        Stage::Cancelled => l.t("Hủy hồ sơ", "Cancel the application"),
        _ => "",
    };
    html! {
        @if a.stage == Stage::Queued {
            p.muted { (l.t("Hồ sơ chờ trung tâm sản xuất cá nhân hóa thẻ.", "Waiting for the production centre to personalize the card.")) }
        }
        @if mine.is_empty() {
            @if a.stage.is_open() { p.muted #no-actions { (l.t("Vai trò của bạn không có bước nào ở trạng thái này.", "Your roles have no step at this stage.")) } }
        }
        div.actions {
            @for to in &mine {
                @if *to == Stage::Approved && verifier_is_me {
                    p.muted #same-officer { (l.t("Bạn đã xác minh hồ sơ này: một lãnh đạo khác phải phê duyệt.",
                                                 "You verified this application: another officer must approve it.")) }
                } @else {
                    form.step method="post" action={ "/ui/cards/applications/" (a.id) "/steps" } {
                        (ctx.csrf_field())
                        input type="hidden" name="to" value=(to.code());
                        @if *to == Stage::Queued {
                            label for="centre" { (l.t("Trung tâm sản xuất", "Production centre")) }
                            select #centre name="centre" required {
                                @for c in centres { option value=(c.id) { (c.name) " (" (c.id) ")" } }
                            }
                        }
                        @if matches!(to, Stage::Cancelled | Stage::Returned) {
                            label for={ "note-" (to.code()) } { (l.t("Lý do (bắt buộc)", "Reason (required)")) }
                            input id={ "note-" (to.code()) } name="note" maxlength="500";
                        }
                        button type="submit" class=[matches!(to, Stage::Cancelled | Stage::Returned).then_some("secondary")] { (verb(*to)) }
                    }
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn application_view(
    ctx: &Ctx,
    caller: &Caller,
    a: &CardApplication,
    rec: &PersonRecord,
    photo: Option<&[u8]>,
    centres: &[CentreStatus],
    notice: Option<&str>,
    error: Option<&str>,
) -> Markup {
    let l = ctx.lang;
    let today = dancu_store::registry::today();
    html! {
        h1 { (l.t("Hồ sơ cấp thẻ", "Card application")) " " code #app-number { (a.number) } }
        @if let Some(n) = notice { p.notice role="status" #notice { (n) } }
        @if let Some(e) = error { p.errors role="alert" #step-error { (e) } }
        div.appgrid {
            dl.fields {
                dt { (l.t("Công dân", "Person")) } dd { a href={ "/ui/persons/" (rec.key) } { (rec.person.record.name.full()) } }
                dt { (l.t("Số định danh", "Personal ID")) } dd { (rec.person.personal_id.map(|p| p.to_string()).unwrap_or_default()) }
                dt { (l.t("Loại thủ tục", "Kind")) } dd { (kind_label(l, a.kind)) }
                dt { (l.t("Trạng thái", "Stage")) } dd #stage { strong { (stage_label(l, a.stage)) } }
                dt { (l.t("Ngày tiếp nhận", "Received")) } dd { (when(a.received_at)) }
                dt { (l.t("Hạn trả thẻ", "Due")) } dd { (deadline_cell(l, a, today)) }
                @if let Some(v) = &a.verified_by { dt { (l.t("Người xác minh", "Verified by")) } dd { (v) } }
                @if let Some(c) = &a.centre { dt { (l.t("Trung tâm sản xuất", "Production centre")) } dd { (c) } }
                dt { (l.t("Ảnh", "Images")) } dd { (a.photo_width) " × " (a.photo_height) ", " (a.photo_bytes) " B; "
                    (a.fingerprints) " " (l.t("ảnh vân tay", "fingerprint images")) }
                @if let Some(s) = &a.card_serial {
                    dt { (l.t("Thẻ", "Card")) } dd { a #card-link href={ "/ui/cards/" (s) } { (s) } }
                }
            }
            @if let Some(p) = photo {
                img.portrait src={ "data:image/jpeg;base64," (std_b64(p)) } alt=(l.t("Ảnh chân dung trong hồ sơ", "The application's face photo"));
            }
        }
        h2 { (l.t("Xử lý", "Steps")) }
        (stage_buttons(ctx, caller, a, centres))
        h2 { (l.t("Quá trình xử lý", "History")) }
        table #steps {
            thead { tr { th scope="col" { (l.t("Bước", "Step")) } th scope="col" { (l.t("Cán bộ", "Officer")) }
                         th scope="col" { (l.t("Thời điểm", "When")) } th scope="col" { (l.t("Ghi chú", "Note")) } } }
            tbody { @for s in &a.steps { tr {
                td { (stage_label(l, s.stage)) } td { (s.by) } td { (when(s.at)) } td { (s.note.clone().unwrap_or_default()) }
            } } }
        }
    }
}

/// Standard base64 with padding (data URIs).
fn std_b64(bytes: &[u8]) -> String {
    let mut s: String = b64url(bytes)
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

async fn application_page(
    st: &AppState,
    ctx: &Ctx,
    caller: &Caller,
    id: &str,
    notice: Option<&str>,
    error: Option<(StatusCode, String)>,
) -> Response {
    let a = match crate::cards::visible(st, caller, id).await {
        Ok(a) => a,
        Err(e) => return ctx.api_error(e),
    };
    let inner = async {
        let rec = st.registry.get(&PersonRef::Key(a.person_key)).await?;
        let photo = st.registry.store().card_images(a.id).await?.map(|i| i.photo);
        let centres = st.registry.store().centres(time::OffsetDateTime::now_utc()).await?;
        Ok::<_, ApiError>((rec, photo, centres))
    };
    let (rec, photo, centres) = match inner.await {
        Ok(x) => x,
        Err(e) => return ctx.api_error(e),
    };
    let (s, msg) = match error {
        Some((s, m)) => (s, Some(m)),
        None => (StatusCode::OK, None),
    };
    let view = application_view(ctx, caller, &a, &rec, photo.as_deref(), &centres, notice, msg.as_deref());
    targeted(status(ctx.page(ctx.t("Hồ sơ cấp thẻ", "Card application"), view), s), a.person_key)
}

/// `GET /ui/cards/applications/{id}`: an application, its history and the steps the officer
/// may take.
pub async fn application(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>, query: Q) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let l = ctx.lang;
    let notice = match q(&query, "notice") {
        "created" => Some(l.t("Đã tiếp nhận hồ sơ cấp thẻ.", "The application was taken.")),
        "step" => Some(l.t("Đã chuyển hồ sơ sang bước tiếp theo.", "The application moved on.")),
        _ => None,
    };
    application_page(&st, &ctx, &caller, &id, notice, None).await
}

/// A workflow refusal, in the officer's language.
fn step_message(l: Lang, e: &ApiError) -> String {
    let vi = match (e.kind, e.errors.first().map(|f| (f.field.as_str(), f.code))) {
        ("same-officer", _) => Some("Người đã xác minh hồ sơ không được phê duyệt: cần một lãnh đạo khác."),
        ("state", _) => Some("Không thực hiện được ở trạng thái hiện tại của hồ sơ (có thể đã được người khác xử lý)."),
        ("forbidden", _) => Some("Vai trò của bạn không được thực hiện bước này."),
        (_, Some(("note", _))) => Some("Lý do: bắt buộc nhập khi hủy hoặc trả lại."),
        (_, Some(("centre", "required"))) => Some("Trung tâm sản xuất: bắt buộc chọn."),
        (_, Some(("centre", _))) => Some("Không có trung tâm sản xuất này."),
        _ => None,
    };
    match (l, vi) {
        (Lang::Vi, Some(m)) => m.to_string(),
        _ => match e.errors.first() {
            Some(f) => super::field_message(l, &f.field, f.code, &f.reason),
            None => format!("{}: {}", l.pick(e.title), e.detail),
        },
    }
}

/// `POST /ui/cards/applications/{id}/steps`: the API's step (its roles, the verifier who may not
/// approve, the centre and the reason checks).
pub async fn step(
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
    let l = ctx.lang;
    let Some(to) = Stage::from_code(form.get("to")) else {
        let msg = l.t("Bước xử lý không hợp lệ.", "Not a step.").to_string();
        return application_page(&st, &ctx, &caller, &id, None, Some((StatusCode::UNPROCESSABLE_ENTITY, msg))).await;
    };
    let body = crate::cards::StepBody {
        to,
        note: Some(form.get("note").to_string()).filter(|s| !s.is_empty()),
        centre: Some(form.get("centre").to_string()).filter(|s| !s.is_empty()),
    };
    match crate::cards::step(State(st.clone()), caller.clone(), Extension(rc), headers, Path(id.clone()), ApiJson(body))
        .await
    {
        Ok(res) => carry(&res, redirect(&format!("/ui/cards/applications/{id}?notice=step"))),
        Err(e) if e.status == StatusCode::NOT_FOUND => ctx.api_error(e),
        Err(e) => {
            let msg = step_message(l, &e);
            application_page(&st, &ctx, &caller, &id, None, Some((e.status, msg))).await
        }
    }
}

// ---------------------------------------------------------------- production

fn centre_view(ctx: &Ctx, c: &CentreStatus, queue: &[CardApplication], today: time::Date) -> Markup {
    let l = ctx.lang;
    let out = c.stock <= 0 || c.alert.is_some();
    html! {
        section.centre id={ "centre-" (c.id) } {
            h2 { (c.name) " " span.muted { "(" (c.id) ")" } }
            @if out {
                p.errors role="alert" .stock-alert {
                    strong { (l.t("HẾT PHÔI THẺ", "OUT OF BLANK CARDS")) } " — "
                    (l.t("hàng đợi dừng cho đến khi nhập thêm phôi.", "the queue waits for a restock."))
                    @if let Some(a) = &c.alert { " " span.muted { (when(a.raised_at)) } }
                }
            }
            div.grid {
                div.card { div { (l.t("Phôi thẻ còn", "Blank cards in stock")) } div.stat .stock { (c.stock) } }
                div.card { div { (l.t("Hồ sơ chờ sản xuất", "Queued applications")) } div.stat .backlog { (c.backlog) } }
                div.card { div { (l.t("Đã in trong 1 giờ / 24 giờ", "Made in the last hour / day")) }
                    div.stat { (c.personalized_last_hour) " / " (c.personalized_last_day) } }
            }
            div.forms {
                form method="post" action={ "/ui/production/" (c.id) "/run" } {
                    (ctx.csrf_field())
                    label for={ "max-" (c.id) } { (l.t("Số thẻ tối đa", "At most this many cards")) }
                    input id={ "max-" (c.id) } name="max" type="number" min="1" max="1000" value="100";
                    button type="submit" { (l.t("Chạy cá nhân hóa thẻ", "Run personalization")) }
                }
                form method="post" action={ "/ui/production/" (c.id) "/restock" } {
                    (ctx.csrf_field())
                    label for={ "cards-" (c.id) } { (l.t("Số phôi thẻ nhập thêm", "Blank cards delivered")) }
                    input id={ "cards-" (c.id) } name="cards" type="number" min="1" max="10000000" required;
                    button.secondary type="submit" { (l.t("Nhập phôi", "Restock")) }
                }
            }
            h3 { (l.t("Hàng đợi (hạn sớm nhất trước)", "Queue (earliest deadline first)")) }
            @if queue.is_empty() { p.muted { (l.t("Không có hồ sơ chờ.", "Nothing queued.")) } }
            @else {
                table.queue {
                    thead { tr { th scope="col" { (l.t("Số hồ sơ", "Number")) } th scope="col" { (l.t("Loại", "Kind")) }
                                 th scope="col" { (l.t("Hạn", "Due")) } } }
                    tbody { @for a in queue { tr {
                        td { a href={ "/ui/cards/applications/" (a.id) } { code { (a.number) } } }
                        td { (kind_label(l, a.kind)) } td { (deadline_cell(l, a, today)) }
                    } } }
                }
            }
        }
    }
}

/// `GET /ui/production`: each centre's queue, stock (with the out-of-stock alert), restock and
/// personalization run.
pub async fn production(State(st): State<AppState>, ctx: Ctx, query: Q) -> Response {
    let l = ctx.lang;
    let today = dancu_store::registry::today();
    let store = st.registry.store();
    let centres = match store.centres(time::OffsetDateTime::now_utc()).await {
        Ok(c) => c,
        Err(e) => return ctx.api_error(e.into()),
    };
    let mut queues = Vec::new();
    for c in &centres {
        let qy = CardApplicationQuery {
            stage: Some(Stage::Queued),
            centre: Some(c.id.clone()),
            limit: 50,
            ..Default::default()
        };
        match store.card_applications(&qy).await {
            Ok(a) => queues.push(a),
            Err(e) => return ctx.api_error(e.into()),
        }
    }
    let made = q(&query, "made");
    let stopped = q(&query, "stopped") == "true";
    let restocked = q(&query, "restocked");
    let body = html! {
        h1 { (l.t("Sản xuất thẻ căn cước", "Card production")) }
        @if !made.is_empty() {
            p.notice role="status" #run-result {
                (l.t("Đã cá nhân hóa", "Personalized")) " " strong { (made) } " " (l.t("thẻ", "cards")) "."
                @if stopped { " " strong.overdue { (l.t("Dừng vì hết phôi thẻ.", "Stopped: out of blank cards.")) } }
            }
        }
        @if !restocked.is_empty() { p.notice role="status" #restocked { (l.t("Đã nhập thêm phôi thẻ:", "Restocked:")) " " (restocked) } }
        @if st.card_signer.is_none() {
            p.errors role="alert" { (l.t("Máy chủ chưa có khóa ký DS (PKI): không cá nhân hóa được thẻ.",
                                         "This server has no Document Signer (PKI): cards cannot be personalized.")) }
        }
        @if centres.is_empty() { p { (l.t("Chưa có trung tâm sản xuất nào.", "No production centre yet.")) } }
        @for (c, queue) in centres.iter().zip(&queues) { (centre_view(&ctx, c, queue, today)) }
    };
    ctx.page(l.t("Sản xuất thẻ căn cước", "Card production"), body)
}

async fn production_error(st: &AppState, ctx: &Ctx, e: ApiError) -> Response {
    let l = ctx.lang;
    let msg = match e.kind {
        "signer-unusable" => l
            .t(
                "Khóa ký DS không dùng được (chưa cấu hình hoặc hết hạn sử dụng khóa).",
                "The Document Signer cannot sign.",
            )
            .to_string(),
        "not-found" => l.t("Không có trung tâm sản xuất này.", "No such production centre.").to_string(),
        _ => match e.errors.first() {
            Some(f) if f.code == "out_of_range" => format!(
                "{}: {}",
                f.field,
                l.t("ngoài khoảng cho phép", "out of range").to_string() + " (" + &f.reason + ")"
            ),
            Some(f) => super::field_message(l, &f.field, f.code, &f.reason),
            None => format!("{}: {}", l.pick(e.title), e.detail),
        },
    };
    let _ = st;
    ctx.error_page(e.status, l.t("Không thực hiện được", "Not done"), &msg)
}

/// `POST /ui/production/{id}/restock`: the API's restock.
pub async fn restock(
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
    let Ok(cards) = form.get("cards").parse::<i64>() else {
        let m = ctx.t("Số phôi thẻ: nhập một số từ 1 đến 10.000.000.", "Blank cards: a number from 1 to 10,000,000.");
        return ctx.error_page(StatusCode::UNPROCESSABLE_ENTITY, ctx.t("Biểu mẫu chưa hợp lệ", "Invalid form"), m);
    };
    let body = crate::cards::RestockBody { cards };
    match crate::cards::restock(State(st.clone()), caller, Extension(rc), headers, Path(id.clone()), ApiJson(body))
        .await
    {
        Ok(res) => carry(&res, redirect(&format!("/ui/production?restocked={cards}#centre-{id}"))),
        Err(e) => production_error(&st, &ctx, e).await,
    }
}

/// `POST /ui/production/{id}/run`: the API's production run (earliest deadline first, stops when
/// the blank cards run out).
pub async fn run(
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
    let max = match form.get("max") {
        "" => None,
        m => match m.parse::<u32>() {
            Ok(m) => Some(m),
            Err(_) => {
                let msg = ctx.t("Số thẻ tối đa: từ 1 đến 1000.", "At most: 1 to 1000.");
                return ctx.error_page(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ctx.t("Biểu mẫu chưa hợp lệ", "Invalid form"),
                    msg,
                );
            }
        },
    };
    let body = crate::cards::RunBody { max };
    match crate::cards::run(State(st.clone()), caller, Extension(rc), headers, Path(id.clone()), ApiJson(body)).await {
        Ok(res) => {
            let ext = res.extensions().clone();
            let v = json_of(res).await;
            let made = v["personalized"].as_array().map(|a| a.len()).unwrap_or(0);
            let stopped = v["stopped_out_of_stock"].as_bool().unwrap_or(false);
            let mut to = redirect(&format!("/ui/production?made={made}&stopped={stopped}#centre-{id}"));
            *to.extensions_mut() = ext;
            to
        }
        Err(e) => production_error(&st, &ctx, e).await,
    }
}

// ---------------------------------------------------------------- cards

/// `GET /ui/cards/{serial}`: a card, its faces (for the officers who print them) and its chip
/// files (for production operators).
pub async fn card(State(st): State<AppState>, ctx: Ctx, Path(serial): Path<String>) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let l = ctx.lang;
    let card = match crate::cards::visible_card(&st, &caller, &serial).await {
        Ok(c) => c,
        Err(e) => return ctx.api_error(e),
    };
    let rec = match st.registry.get(&PersonRef::Key(card.person_key)).await {
        Ok(r) => r,
        Err(e) => return ctx.api_error(e.into()),
    };
    let mut faces = Vec::new();
    if has_role(&caller, crate::policy::CARD_PRINTERS) {
        for side in ["front", "back"] {
            let res =
                crate::cards::face(State(st.clone()), caller.clone(), Path((serial.clone(), side.to_string()))).await;
            match res {
                Ok(r) if r.status() == StatusCode::OK => {
                    let bytes = axum::body::to_bytes(r.into_body(), 1024 * 1024).await.unwrap_or_default();
                    faces.push((side, String::from_utf8_lossy(&bytes).into_owned()));
                }
                Ok(_) => {}
                Err(e) => return ctx.api_error(e),
            }
        }
    }
    let state = card.state_on(dancu_store::registry::today());
    let chip = has_role(&caller, crate::policy::PRODUCTION);
    let body = html! {
        h1 { (l.t("Thẻ căn cước", "Identity card")) " " code { (card.serial) } }
        dl.fields {
            dt { (l.t("Người được cấp", "Holder")) } dd { a href={ "/ui/persons/" (rec.key) } { (rec.person.record.name.full()) } }
            dt { (l.t("Số định danh", "Personal ID")) } dd { (card.personal_id) }
            dt { (l.t("Tình trạng", "State")) } dd #card-state { (match l { Lang::Vi => state.vietnamese().to_string(), Lang::En => state.code().to_string() }) }
            dt { (l.t("Ngày cấp", "Issued")) } dd { (date(card.issue_date)) }
            dt { (l.t("Có giá trị đến", "Valid until")) } dd { (card.expiry.map(date).unwrap_or_else(|| l.t("không thời hạn", "no expiry").into())) }
            dt { (l.t("Trung tâm sản xuất", "Production centre")) } dd { (card.centre) }
            dt { (l.t("Ký bởi (DS)", "Signed by (DS)")) } dd { (card.signed_by) }
            dt { (l.t("Hồ sơ", "Application")) } dd { a href={ "/ui/cards/applications/" (card.application_id) } { (l.t("xem hồ sơ", "open")) } }
        }
        h2 { (l.t("Vùng đọc máy (MRZ)", "Machine-readable zone")) }
        pre.mrz { (card.mrz.join("\n")) }
        @if !faces.is_empty() {
            h2 { (l.t("Mặt thẻ", "Card faces")) }
            div.faces {
                @for (side, svg) in &faces {
                    figure.face role="img" aria-label=(if *side == "front" { l.t("Mặt trước", "Front") } else { l.t("Mặt sau", "Back") }) {
                        (PreEscaped(svg))
                        figcaption { (if *side == "front" { l.t("Mặt trước", "Front") } else { l.t("Mặt sau", "Back") }) }
                    }
                }
            }
        }
        h2 { (l.t("Dữ liệu chip", "Chip data")) }
        @if chip {
            p { (l.t("Tải các tệp dữ liệu chip (để ghi chip hoặc kiểm tra):", "Download the chip's files (for the encoder, or to verify):")) }
            ul #chip-files { @for name in CHIP_FILES {
                li { a href={ "/ui/cards/" (card.serial) "/chip/" (name) } download=(name) { (name) } }
            } }
        }
        p { a.button href="/ui/cards/verify" { (l.t("Kiểm tra dữ liệu chip (xác thực thụ động)", "Verify chip data (passive authentication)")) } }
    };
    targeted(ctx.page(l.t("Thẻ căn cước", "Identity card"), body), card.person_key)
}

const CHIP_FILES: [&str; 5] = ["ef_com.bin", "dg1.bin", "dg2.bin", "dg13.bin", "ef_sod.bin"];

/// `GET /ui/cards/{serial}/chip/{file}`: one of the chip's files, as a download.
pub async fn chip_file(State(st): State<AppState>, ctx: Ctx, Path((serial, file)): Path<(String, String)>) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let card = match crate::cards::visible_card(&st, &caller, &serial).await {
        Ok(c) => c,
        Err(e) => return ctx.api_error(e),
    };
    let chip = match st.registry.store().card_chip(&serial).await {
        Ok(Some(c)) => c,
        Ok(None) => return ctx.api_error(ApiError::not_found()),
        Err(e) => return ctx.api_error(e.into()),
    };
    let Some((name, bytes)) = chip.files().and_then(|f| f.into_iter().find(|(n, _)| *n == file)) else {
        return targeted(ctx.api_error(ApiError::not_found()), card.person_key);
    };
    let mut res = bytes.into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    targeted(res, card.person_key)
}

// ---------------------------------------------------------------- verification

fn verify_form(ctx: &Ctx, error: Option<&str>) -> Markup {
    let l = ctx.lang;
    html! {
        h1 { (l.t("Kiểm tra dữ liệu chip thẻ căn cước", "Verify an identity card's chip data")) }
        p { (l.t("Chọn thư mục dữ liệu chip đã xuất (EF.COM, EF.SOD, DG1, DG2, DG13: ef_com.bin, ef_sod.bin, dg1.bin, dg2.bin, dg13.bin). Máy chủ xác thực thụ động với chứng thư CSCA và danh sách thu hồi (CRL) của mình.",
                 "Choose the exported chip data folder (ef_com.bin, ef_sod.bin, dg1.bin, dg2.bin, dg13.bin). The server runs passive authentication against its CSCA certificate and CRL.")) }
        @if let Some(e) = error { p.errors role="alert" #verify-error { (e) } }
        form method="post" action="/ui/cards/verify" enctype="multipart/form-data" {
            (ctx.csrf_field())
            label for="chip-folder" { (l.t("Thư mục dữ liệu chip", "Chip data folder")) }
            input #chip-folder name="files" type="file" webkitdirectory multiple;
            label for="chip-files" { (l.t("Hoặc chọn từng tệp", "Or choose the files")) }
            input #chip-files name="files" type="file" multiple;
            p { button type="submit" { (l.t("Kiểm tra", "Verify")) } }
        }
    }
}

/// `GET /ui/cards/verify`.
pub async fn verify_page(ctx: Ctx) -> Response {
    ctx.page(ctx.t("Kiểm tra dữ liệu chip", "Verify chip data"), verify_form(&ctx, None))
}

/// A check of passive authentication, named in the officer's language.
fn check_label(l: Lang, name: &str) -> String {
    let vi = match name {
        "EF.SOD structure" => "Cấu trúc EF.SOD (đối tượng bảo mật)",
        "SignerInfo" => "Thông tin người ký trong EF.SOD",
        "DS certificate" => "Chứng thư người ký tài liệu (DS)",
        "DS certificate chains to the CSCA and is valid" => "Chứng thư DS do CSCA tin cậy cấp và còn hiệu lực",
        "DS certificate not revoked (the CSCA's current CRL)" => {
            "Chứng thư DS không bị thu hồi (danh sách thu hồi CRL hiện hành của CSCA)"
        }
        "SignerInfo signature" => "Chữ ký số của EF.SOD",
        "data-group hashes" => "Mã băm các nhóm dữ liệu",
        "DG1 hash" => "Mã băm DG1 (vùng MRZ)",
        "DG2 hash" => "Mã băm DG2 (ảnh chân dung)",
        "DG13 hash" => "Mã băm DG13 (thông tin công dân)",
        "data-group hash" => "Mã băm nhóm dữ liệu",
        "MRZ check digits" => "Số kiểm tra của vùng MRZ",
        "DG13 decodes and agrees with DG1" => "DG13 đọc được và khớp số định danh với DG1",
        other => other,
    };
    match l {
        Lang::Vi => vi.to_string(),
        Lang::En => name.to_string(),
    }
}

/// What a failed check means, in Vietnamese (the library's own words stay beside it).
fn failure_vi(detail: &str) -> Option<&'static str> {
    let known: [(&str, &str); 9] = [
        ("does not match its hash", "tệp đã bị thay đổi: mã băm không khớp với EF.SOD"),
        ("is not listed in EF.SOD", "nhóm dữ liệu không có trong EF.SOD"),
        ("signature does not verify", "chữ ký không hợp lệ với khóa của DS"),
        ("message-digest", "mã băm của đối tượng bảo mật không khớp"),
        ("no trusted CSCA", "không do CSCA tin cậy cấp"),
        ("revoked", "chứng thư DS đã bị thu hồi"),
        ("no CRL", "thiếu danh sách thu hồi (CRL) của CSCA"),
        ("check digit", "số kiểm tra sai"),
        ("expired", "đã hết hiệu lực"),
    ];
    known.iter().find(|(k, _)| detail.contains(k)).map(|(_, v)| *v)
}

/// `POST /ui/cards/verify`: passive authentication of the uploaded chip files against this
/// server's CSCA certificates and CRLs, each check shown with its result.
pub async fn verify(State(st): State<AppState>, ctx: Ctx, headers: HeaderMap, body: Bytes) -> Response {
    let l = ctx.lang;
    let parts = form_parts(&headers, &body);
    if let Err(res) = ctx.check_form(&text_fields(&parts)) {
        return res;
    }
    let title = l.t("Kiểm tra dữ liệu chip", "Verify chip data");
    let Some(trust) = st.card_trust.clone() else {
        return ctx.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            title,
            l.t(
                "Máy chủ chưa cấu hình chứng thư CSCA và CRL: không kiểm tra được.",
                "This server has no CSCA certificate and CRL configured: nothing to verify against.",
            ),
        );
    };
    let mut found: BTreeMap<&'static str, &[u8]> = BTreeMap::new();
    for p in files(&parts, "files") {
        let base = p.filename.as_deref().unwrap_or("").rsplit(['/', '\\']).next().unwrap_or("").to_ascii_lowercase();
        if let Some(name) = CHIP_FILES.iter().find(|n| **n == base) {
            found.insert(name, &p.data);
        }
    }
    let Some(sod) = found.get("ef_sod.bin") else {
        let msg = l.t(
            "Thiếu tệp ef_sod.bin (EF.SOD): chọn thư mục dữ liệu chip đã xuất.",
            "ef_sod.bin (EF.SOD) is missing: choose the exported chip data folder.",
        );
        return status(ctx.page(title, verify_form(&ctx, Some(msg))), StatusCode::UNPROCESSABLE_ENTITY);
    };
    let groups: Vec<(u8, &[u8])> = [(1u8, "dg1.bin"), (2, "dg2.bin"), (13, "dg13.bin")]
        .into_iter()
        .filter_map(|(n, name)| found.get(name).map(|b| (n, *b)))
        .collect();
    let report = dancu_card::verify::passive_authentication(
        sod,
        &groups,
        &trust.cscas,
        &trust.crls,
        time::OffsetDateTime::now_utc(),
    );
    let passed = report.passed();
    let read: Vec<&str> = found.keys().copied().collect();
    let result = html! {
        h2 { (l.t("Kết quả", "Result")) }
        @if passed {
            p.notice role="status" #verify-result { strong { (l.t("Thẻ hợp lệ: dữ liệu chip vượt qua xác thực thụ động.",
                                                                  "Valid: the chip data passed passive authentication.")) } }
        } @else {
            p.errors role="alert" #verify-result { strong { (l.t("Thẻ KHÔNG hợp lệ: dữ liệu chip không vượt qua xác thực thụ động.",
                                                                 "NOT valid: the chip data failed passive authentication.")) } }
        }
        p.muted { (l.t("Tệp đã đọc", "Files read")) ": " (read.join(", "))
            @if !found.contains_key("ef_com.bin") { " — " (l.t("không có EF.COM", "no EF.COM")) } }
        @if let Some(ds) = &report.ds_subject { p { (l.t("Người ký tài liệu (DS)", "Document Signer")) ": " code { (ds) } } }
        table #checks {
            thead { tr { th scope="col" { (l.t("Kiểm tra", "Check")) } th scope="col" { (l.t("Kết quả", "Result")) } th scope="col" { (l.t("Chi tiết", "Detail")) } } }
            tbody { @for c in &report.checks {
                tr class=(if c.ok { "check-ok" } else { "check-fail" }) data-check=(c.name) {
                    th scope="row" { (check_label(l, c.name)) }
                    td { @if c.ok { span.ok { "✓ " (l.t("Đạt", "Passed")) } } @else { strong.overdue { "✗ " (l.t("KHÔNG ĐẠT", "FAILED")) } } }
                    td {
                        @if !c.ok && l == Lang::Vi { @if let Some(v) = failure_vi(&c.detail) { (v) br; } }
                        span.muted { (c.detail) }
                    }
                }
            } }
        }
        @if let Some(m) = &report.mrz_text { h3 { (l.t("Vùng MRZ (DG1)", "MRZ (DG1)")) } pre.mrz { (m) } }
        @if let Some(d) = &report.dg13 {
            h3 { (l.t("Thông tin công dân (DG13)", "Citizen data (DG13)")) }
            dl.fields #dg13 { @for line in d.to_text().lines() {
                @if let Some((k, v)) = line.split_once(':') { dt { (l.pick(k.trim())) } dd { (v.trim()) } }
            } }
        }
    };
    let body = html! { (verify_form(&ctx, None)) (result) };
    ctx.page(title, body)
}

// ---------------------------------------------------------------- blocks of other pages

/// The dashboard's card block: the area's applications by stage (overdue ones apart), and the
/// production centres' backlog and stock with their alerts.
pub async fn dashboard_block(st: &AppState, ctx: &Ctx, caller: &Caller) -> Result<Markup, ApiError> {
    let l = ctx.lang;
    if !has_role(caller, crate::policy::CARD_READERS) {
        return Ok(html! {});
    }
    let store = st.registry.store();
    let today = dancu_store::registry::today();
    let counts = store.card_application_counts(caller.area().as_deref(), today).await?;
    let open: Vec<(Stage, u64)> =
        Stage::ALL.into_iter().filter(|s| s.is_open()).map(|s| (s, counts.count(s))).collect();
    let centres = store.centres(time::OffsetDateTime::now_utc()).await?;
    Ok(html! {
        h2 { (l.t("Thẻ căn cước", "Identity cards")) }
        div.grid #card-dashboard {
            div.card {
                div { (l.t("Hồ sơ cấp thẻ đang xử lý", "Card applications in progress")) }
                table.compact { tbody { @for (s, c) in &open { tr {
                    td { a href={ "/ui/cards?stage=" (s.code()) } { (stage_label(l, *s)) } } td.num { (c) }
                } } } }
                div { span.overdue #card-overdue { (counts.overdue) " " (l.t("quá hạn", "overdue")) } " · "
                      a href="/ui/cards?overdue=true" { (l.t("xem", "see")) } }
            }
            @for c in &centres {
                div.card {
                    div { (l.t("Trung tâm", "Centre")) " " (c.name) }
                    div { (l.t("Chờ sản xuất", "Backlog")) ": " strong { (c.backlog) } }
                    div { (l.t("Phôi thẻ còn", "Blank cards")) ": " strong { (c.stock) } }
                    @if c.stock <= 0 || c.alert.is_some() { p.errors role="alert" { (l.t("Hết phôi thẻ!", "Out of blank cards!")) } }
                }
            }
        }
    })
}

/// The person page's card block: the intake link for card operators, the person's cards and
/// open application.
pub async fn person_block(st: &AppState, ctx: &Ctx, caller: &Caller, rec: &PersonRecord) -> Result<Markup, ApiError> {
    let l = ctx.lang;
    if !has_role(caller, crate::policy::CARD_READERS) {
        return Ok(html! {});
    }
    let store = st.registry.store();
    let cards = store.cards_of(rec.key).await?;
    let qy = CardApplicationQuery { person_key: Some(rec.key), limit: 20, ..Default::default() };
    let apps = store.card_applications(&qy).await?;
    let today = dancu_store::registry::today();
    Ok(html! {
        h2 { (l.t("Thẻ căn cước", "Identity cards")) }
        @if has_role(caller, crate::policy::CARD_OPERATORS) && rec.person.personal_id.is_some() {
            p.noprint { a.button #card-intake href={ "/ui/persons/" (rec.key) "/card-application" } { (l.t("Làm thủ tục cấp CCCD", "Identity card application")) } }
        }
        @if cards.is_empty() && apps.is_empty() { p.muted { (l.t("Chưa có thẻ hay hồ sơ cấp thẻ.", "No card and no application.")) } }
        @if !cards.is_empty() {
            ul #person-cards { @for c in &cards {
                li { a href={ "/ui/cards/" (c.serial) } { (c.serial) } " — " (c.state_on(today).vietnamese()) ", "
                     (l.t("cấp", "issued")) " " (date(c.issue_date)) }
            } }
        }
        @if !apps.is_empty() {
            ul #person-card-applications { @for a in &apps {
                li { a href={ "/ui/cards/applications/" (a.id) } { (a.number) } " — " (kind_label(l, a.kind)) ", " (stage_label(l, a.stage)) }
            } }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_browser_multipart_body() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("multipart/form-data; boundary=----WebKitX"));
        let body = b"------WebKitX\r\nContent-Disposition: form-data; name=\"csrf\"\r\n\r\nabc\r\n\
------WebKitX\r\nContent-Disposition: form-data; name=\"files\"; filename=\"card/dg1.bin\"\r\n\
Content-Type: application/octet-stream\r\n\r\n\x00\r\n--\xff\r\n------WebKitX--\r\n";
        let parts = multipart::of_request(&h, body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!((parts[0].name.as_str(), &*parts[0].data), ("csrf", &b"abc"[..]));
        assert_eq!(parts[1].filename.as_deref(), Some("card/dg1.bin"));
        assert_eq!(&*parts[1].data, b"\x00\r\n--\xff");
        assert!(multipart::of_request(&h, &body[..body.len() - 10]).is_none(), "a truncated body is refused");
        let mut other = HeaderMap::new();
        other.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/x-www-form-urlencoded"));
        assert!(multipart::of_request(&other, body).is_none());
    }
}
