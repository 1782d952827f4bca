//! Maker-checker in the web application: the change requests of the officer's area waiting for
//! approval, one request with the record before and after the change, and the decision — made
//! by the API's own handler (`crate::requests::decide`), so who may decide (an approver of the
//! requesting unit or above, never the requester) is the API's rule.

use std::collections::{BTreeMap, BTreeSet};

use axum::body::Bytes;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use dancu_core::auth::Role;
use dancu_store::{ChangeRequest, PersonRecord, PersonRef, RequestQuery, RequestState};
use maud::{Markup, html};
use serde_json::Value;
use uuid::Uuid;

use super::pages::{carry, display, field_label, full_name, problem_title};
use super::{Ctx, Lang, field_message, redirect, when};
use crate::AppState;
use crate::audit::{AuditTarget, RequestContext};
use crate::auth::Caller;
use crate::extract::ApiJson;
use crate::problem::ApiError;

fn state_label(l: Lang, s: RequestState) -> &'static str {
    match s {
        RequestState::Pending => l.t("chờ phê duyệt", "pending"),
        RequestState::Approved => l.t("đã phê duyệt", "approved"),
        RequestState::Rejected => l.t("bị từ chối", "rejected"),
        RequestState::Withdrawn => l.t("đã rút", "withdrawn"),
    }
}

/// What in a request needs approval, named as the person page names the fields.
fn guarded_text(l: Lang, r: &ChangeRequest) -> String {
    r.guarded
        .iter()
        .map(|g| serde_json::to_value(g).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default())
        .map(|code| match code.as_str() {
            "death" => l.t("khai tử", "death").to_string(),
            "nationality" => field_label(l, "nationalities"),
            "id_reestablishment" => l.t("cấp lại số định danh", "a new personal ID").to_string(),
            other => field_label(l, other),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A request, if its person lies in the caller's area (else: not found, as the API).
async fn visible(st: &AppState, caller: &Caller, id: &str) -> Result<(ChangeRequest, PersonRecord), ApiError> {
    let id = Uuid::parse_str(id).map_err(|_| ApiError::not_found())?;
    let r = st.registry.store().change_request_get(id).await?.ok_or_else(ApiError::not_found)?;
    let person = st.registry.get(&PersonRef::Key(r.person_key)).await?;
    caller.see(&person.person.areas())?;
    Ok((r, person))
}

/// A table of requests (the list page and a person's page).
pub(crate) fn requests_table(l: Lang, items: &[(ChangeRequest, Option<String>)]) -> Markup {
    html! {
        table.requests {
            thead { tr {
                th scope="col" { (l.t("Yêu cầu", "Request")) } th scope="col" { (l.t("Công dân", "Person")) }
                th scope="col" { (l.t("Nội dung cần duyệt", "To approve")) } th scope="col" { (l.t("Người đề nghị", "Requested by")) }
                th scope="col" { (l.t("Thời điểm", "When")) } th scope="col" { (l.t("Lý do", "Reason")) }
                th scope="col" { (l.t("Trạng thái", "State")) }
            } }
            tbody { @for (r, name) in items { tr {
                td { a href={ "/ui/requests/" (r.id) } { (l.t("Xem", "Open")) " " (r.id.to_string()[24..]) } }
                td { (name.clone().unwrap_or_else(|| "—".into())) }
                td { (guarded_text(l, r)) }
                td { (r.requested_by) }
                td { (when(r.requested_at)) }
                td { (r.reason) }
                td { (state_label(l, r.state)) }
            } } }
        }
    }
}

/// `GET /ui/requests`: change requests of the officer's area waiting for a decision.
pub async fn list(State(st): State<AppState>, ctx: Ctx) -> Response {
    let l = ctx.lang;
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let qy = RequestQuery {
        state: Some(RequestState::Pending),
        area: caller.area(),
        offset: 0,
        limit: 100,
        ..Default::default()
    };
    let items = match st.registry.store().change_requests(&qy).await {
        Ok(i) => i,
        Err(e) => return ctx.api_error(e.into()),
    };
    let mut rows = Vec::with_capacity(items.len());
    for r in items {
        let name = st.registry.get(&PersonRef::Key(r.person_key)).await.ok().map(|p| full_name(&p));
        rows.push((r, name));
    }
    let approver = caller.officer.roles.contains(&Role::Approver);
    let body = html! {
        h1 { (l.t("Yêu cầu thay đổi chờ phê duyệt", "Change requests awaiting approval")) }
        p.muted { @if approver {
            (l.t("Lãnh đạo phê duyệt hoặc từ chối yêu cầu của cán bộ khác trong đơn vị mình hoặc đơn vị cấp dưới.",
                 "Approvers decide the requests of other officers of their unit or of units below it."))
        } @else {
            (l.t("Chỉ lãnh đạo (vai trò phê duyệt) mới quyết định được; người đề nghị có thể rút yêu cầu của mình.",
                 "Only approvers decide; the officer who made a request may withdraw it."))
        } }
        @if rows.is_empty() { p #requests-empty { (l.t("Không có yêu cầu nào đang chờ.", "Nothing waits for approval.")) } }
        @else { div #requests { (requests_table(l, &rows)) } }
    };
    ctx.page(l.t("Phê duyệt thay đổi", "Change requests"), body)
}

/// The record's fields before and after the change (sensitive fields left out).
fn compare(l: Lang, r: &ChangeRequest, rec: &PersonRecord) -> Markup {
    let fields = |v: &mut Value| -> BTreeMap<String, Value> {
        crate::persons::redact(v);
        v.as_object().map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect()).unwrap_or_default()
    };
    let before = fields(&mut serde_json::to_value(&rec.person.record).unwrap_or_default());
    let after = fields(&mut serde_json::to_value(&r.proposed.person).unwrap_or_default());
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    let text = |m: &BTreeMap<String, Value>, k: &str| m.get(k).map(|v| display(l, k, v)).unwrap_or_else(|| "—".into());
    html! {
        table #compare {
            thead { tr { th scope="col" { (l.t("Trường", "Field")) } th scope="col" { (l.t("Hiện tại", "Now")) }
                         th scope="col" { (l.t("Đề nghị", "Proposed")) } } }
            tbody {
                @for k in keys {
                    @let (b, a) = (text(&before, k), text(&after, k));
                    @if a != b {
                        tr.different { th scope="row" { (field_label(l, k)) } td { (b) } td { strong { (a) } } }
                    }
                }
                @if let Some(s) = r.proposed.status {
                    tr.different { th scope="row" { (field_label(l, "status")) }
                        td { (display(l, "status", &serde_json::to_value(rec.person.status).unwrap_or_default())) }
                        td { strong { (display(l, "status", &serde_json::to_value(s).unwrap_or_default())) } } }
                }
            }
        }
    }
}

fn request_view(ctx: &Ctx, caller: &Caller, r: &ChangeRequest, rec: &PersonRecord, error: Option<&str>) -> Markup {
    let l = ctx.lang;
    let own = r.requested_by == caller.username();
    let approver = caller.officer.roles.contains(&Role::Approver);
    html! {
        h1 { (l.t("Yêu cầu thay đổi", "Change request")) " — " (full_name(rec)) }
        @if let Some(e) = error { p.errors role="alert" #decision-error { (e) } }
        dl.fields {
            dt { (l.t("Công dân", "Person")) } dd { a href={ "/ui/persons/" (rec.key) } { (full_name(rec)) } }
            dt { (l.t("Nội dung cần duyệt", "To approve")) } dd { (guarded_text(l, r)) }
            dt { (l.t("Người đề nghị", "Requested by")) } dd #maker { (r.requested_by) " (" (r.requested_unit) ")" }
            dt { (l.t("Thời điểm", "When")) } dd { (when(r.requested_at)) }
            dt { (l.t("Lý do", "Reason")) } dd #reason { (r.reason) }
            @if let Some(b) = &r.legal_basis { dt { (l.t("Căn cứ pháp lý", "Legal basis")) } dd { (b) } }
            dt { (l.t("Phiên bản hồ sơ khi đề nghị", "Record version requested against")) } dd { (r.base_version) }
            dt { (l.t("Trạng thái", "State")) } dd #request-state { (state_label(l, r.state)) }
            @if let Some(by) = &r.decided_by { dt { (l.t("Người quyết định", "Decided by")) } dd #checker { (by) } }
            @if let Some(n) = &r.decision_note { dt { (l.t("Ghi chú", "Note")) } dd { (n) } }
        }
        h2 { (l.t("Thay đổi đề nghị", "The proposed change")) }
        (compare(l, r, rec))
        @if r.state == RequestState::Pending {
            @if own {
                p.muted #own-request { (l.t("Đây là yêu cầu của bạn: người khác phải phê duyệt. Bạn có thể rút yêu cầu.",
                    "This is your own request: another officer decides. You may withdraw it.")) }
                form method="post" action={ "/ui/requests/" (r.id) } {
                    (ctx.csrf_field())
                    input type="hidden" name="decision" value="withdraw";
                    p { button type="submit" { (l.t("Rút yêu cầu", "Withdraw")) } }
                }
            } @else if approver {
                form method="post" action={ "/ui/requests/" (r.id) } #decide {
                    (ctx.csrf_field())
                    fieldset {
                        legend { (l.t("Quyết định", "Decision")) }
                        label { input type="radio" name="decision" value="approve" required; " " (l.t("Phê duyệt (áp dụng thay đổi)", "Approve (apply the change)")) }
                        label { input type="radio" name="decision" value="reject"; " " (l.t("Từ chối", "Reject")) }
                    }
                    label for="note" { (l.t("Ghi chú (bắt buộc khi từ chối)", "Note (required to reject)")) }
                    textarea #note name="note" maxlength="500" {}
                    p { button type="submit" { (l.t("Ghi quyết định", "Record the decision")) } }
                }
            } @else {
                p.muted { (l.t("Chỉ lãnh đạo (vai trò phê duyệt) mới quyết định được.", "Only approvers decide.")) }
            }
        }
        p { a href="/ui/requests" { (l.t("Về danh sách yêu cầu", "Back to the requests")) } }
    }
}

/// `GET /ui/requests/{id}`: one request — the maker, the reason, the fields before and after.
pub async fn request(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    match visible(&st, &caller, &id).await {
        Ok((r, rec)) => {
            let mut res =
                ctx.page(ctx.t("Yêu cầu thay đổi", "Change request"), request_view(&ctx, &caller, &r, &rec, None));
            res.extensions_mut().insert(AuditTarget(rec.key.to_string()));
            res
        }
        Err(e) => ctx.api_error(e),
    }
}

/// `POST /ui/requests/{id}`: approve, reject or withdraw, through the API's handler.
pub async fn decide(
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
    let (r, rec) = match visible(&st, &caller, &id).await {
        Ok(x) => x,
        Err(e) => return ctx.api_error(e),
    };
    let l = ctx.lang;
    let again = |msg: &str, status: StatusCode| {
        let mut res =
            ctx.page(l.t("Yêu cầu thay đổi", "Change request"), request_view(&ctx, &caller, &r, &rec, Some(msg)));
        *res.status_mut() = status;
        res.extensions_mut().insert(AuditTarget(rec.key.to_string()));
        res
    };
    use crate::requests::DecisionKind;
    let decision = match form.get("decision") {
        "approve" => DecisionKind::Approve,
        "reject" => DecisionKind::Reject,
        "withdraw" => DecisionKind::Withdraw,
        _ => {
            return again(
                l.t("Quyết định: chọn phê duyệt hoặc từ chối.", "Decision: choose approve or reject."),
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let note = Some(form.get("note").to_string()).filter(|s| !s.is_empty());
    let body = crate::requests::DecisionBody { decision, note };
    let res =
        crate::requests::decide(State(st.clone()), caller.clone(), Extension(rc), headers, Path(id), ApiJson(body))
            .await;
    match res {
        Ok(res) if res.status().is_success() => carry(&res, redirect(&format!("/ui/requests/{}", r.id))),
        Ok(res) => {
            let ext = res.extensions().clone();
            let (status, msg) = problem_title(res, l).await;
            let mut page = again(&msg, status);
            *page.extensions_mut() = ext;
            page
        }
        Err(e) => {
            let msg = match (e.errors.first(), e.status) {
                (Some(f), _) if f.field == "note" => {
                    l.t("Ghi chú: bắt buộc nhập lý do khi từ chối.", "Note: say why the change is rejected.").to_string()
                }
                (Some(f), _) => field_message(l, &f.field, f.code, &f.reason),
                (None, StatusCode::FORBIDDEN) => format!(
                    "{} ({})",
                    l.t(
                        "Bạn không được quyết định yêu cầu này: cần lãnh đạo khác với người đề nghị, thuộc đơn vị đề nghị hoặc cấp trên",
                        "You may not decide this request: it needs an approver other than its maker, of the maker's unit or above"
                    ),
                    e.detail
                ),
                (None, StatusCode::CONFLICT) => format!(
                    "{} ({})",
                    l.t("Không quyết định được: yêu cầu đã được quyết định hoặc hồ sơ đã thay đổi", "Not possible: decided already, or the record changed"),
                    e.detail
                ),
                (None, _) => format!("{}: {}", l.pick(e.title), e.detail),
            };
            again(&msg, e.status)
        }
    }
}

/// The pending requests about one person (the person's page).
pub(crate) async fn pending_of(st: &AppState, person: Uuid) -> Result<Vec<(ChangeRequest, Option<String>)>, ApiError> {
    let qy =
        RequestQuery { state: Some(RequestState::Pending), person_key: Some(person), area: None, offset: 0, limit: 20 };
    Ok(st.registry.store().change_requests(&qy).await?.into_iter().map(|r| (r, None)).collect())
}
