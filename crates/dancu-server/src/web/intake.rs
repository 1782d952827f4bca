//! Intake in the web application: a collector uploads a CSV or XLSX batch, the server imports it
//! in the background with the same pipeline as `dancu import` ([`crate::intake`]), and a batch
//! page shows its progress (reloading itself) and, once done, its summary, the error report to
//! download and the possible duplicates it queued for review.
//!
//! The batch id is the file's SHA-256, as on the command line: the same file uploaded again is
//! the same batch — a finished one is shown, not applied again; an interrupted one (the server
//! stopped meanwhile) resumes where it stopped. Batch state lives in the store (started,
//! finished with its summary); what runs now lives in this server's memory, so a batch that is
//! neither finished nor running here is shown as interrupted, never as running. The uploaded
//! file is kept only while its import runs; the error report is kept beside it.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use dancu_core::auth::{Role, Unit, UnitLevel};
use dancu_core::intake::row::ImportUnit;
use dancu_store::{ImportBatch, ReviewQuery};
use maud::{Markup, html};

use super::multipart::{boundary, parts};
use super::{Ctx, FormData, Lang, redirect, when};
use crate::AppState;
use crate::intake::{self, Format, Progress, Snapshot, Stage, Summary};

/// Uploads larger than this are refused unless the server is configured otherwise.
pub const DEFAULT_MAX_UPLOAD: usize = 64 << 20;
/// Room for the form's other fields beside the file.
const FORM_OVERHEAD: usize = 64 << 10;
/// How often a running batch's page reloads itself (seconds).
const REFRESH: u32 = 2;

/// A batch this server is importing now, or whose import failed here.
#[derive(Debug, Clone)]
enum Job {
    Running(Snapshot),
    Failed(String),
}

/// Intake uploads of this server.
pub struct IntakeState {
    /// Where uploads and error reports are kept (`None`: uploads are refused).
    dir: Option<PathBuf>,
    max_bytes: usize,
    jobs: Mutex<HashMap<String, Job>>,
}

impl Default for IntakeState {
    fn default() -> Self {
        IntakeState { dir: None, max_bytes: DEFAULT_MAX_UPLOAD, jobs: Mutex::default() }
    }
}

impl IntakeState {
    pub fn new(dir: PathBuf, max_bytes: usize) -> Self {
        IntakeState { dir: Some(dir), max_bytes, jobs: Mutex::default() }
    }

    fn job(&self, id: &str) -> Option<Job> {
        self.jobs.lock().expect("intake jobs").get(id).cloned()
    }

    fn set(&self, id: &str, job: Option<Job>) {
        let mut jobs = self.jobs.lock().expect("intake jobs");
        match job {
            Some(j) => jobs.insert(id.to_string(), j),
            None => jobs.remove(id),
        };
    }

    /// Marks a batch running unless it runs already (one import of a batch at a time here).
    fn start(&self, id: &str, at: Snapshot) -> bool {
        let mut jobs = self.jobs.lock().expect("intake jobs");
        if matches!(jobs.get(id), Some(Job::Running(_))) {
            return false;
        }
        jobs.insert(id.to_string(), Job::Running(at));
        true
    }

    /// Imports running on this server now.
    pub fn running(&self) -> usize {
        self.jobs.lock().expect("intake jobs").values().filter(|j| matches!(j, Job::Running(_))).count()
    }

    /// The error report of a batch, when this server ran it.
    fn report_path(&self, id: &str) -> Option<PathBuf> {
        let safe = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        self.dir.as_ref().filter(|_| safe).map(|d| d.join(format!("{id}.report.csv")))
    }
}

/// Progress of one batch, into the server's memory.
struct Sink {
    state: Arc<IntakeState>,
    id: String,
}

impl Progress for Sink {
    fn update(&self, at: &Snapshot) {
        self.state.set(&self.id, Some(Job::Running(*at)));
    }
}

/// Whether an officer's unit holds a batch's unit.
fn holds(unit: &Unit, batch: &ImportBatch) -> bool {
    Unit::parse(&batch.unit).is_ok_and(|u| unit.contains(&u))
}

fn stage_label(l: Lang, s: Stage) -> &'static str {
    match s {
        Stage::Reading => l.t("Đọc và kiểm tra từng dòng", "Reading and checking the rows"),
        Stage::RegistryCandidates => l.t("Tìm người đã có trong CSDL", "Looking up people already registered"),
        Stage::Linking => l.t("Đối chiếu trùng lặp", "Finding duplicates"),
        Stage::Storing => l.t("Lưu hồ sơ", "Storing the records"),
        Stage::Indexing => l.t("Dựng lại chỉ mục tìm kiếm", "Rebuilding the search indexes"),
        Stage::ReviewPairs => l.t("Lập danh sách cặp cần xem xét", "Queueing pairs for review"),
        Stage::Done => l.t("Hoàn tất", "Done"),
    }
}

fn review_state(l: Lang, s: dancu_store::ReviewState) -> &'static str {
    match s {
        dancu_store::ReviewState::Pending => l.t("chờ xem xét", "pending"),
        dancu_store::ReviewState::Same => l.t("cùng một người", "one person"),
        dancu_store::ReviewState::Different => l.t("hai người khác nhau", "two people"),
    }
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// What a batch page shows about the batch's state.
enum Shown {
    Running(Snapshot),
    Failed(String),
    Finished(Box<Summary>),
    Interrupted,
}

fn shown(st: &AppState, b: &ImportBatch) -> Shown {
    match (st.intake.job(&b.id), &b.summary) {
        (_, Some(s)) => Shown::Finished(Box::new(serde_json::from_str(s).unwrap_or_default())),
        (Some(Job::Running(at)), None) => Shown::Running(at),
        (Some(Job::Failed(m)), None) => Shown::Failed(m),
        (None, None) => Shown::Interrupted,
    }
}

fn state_text(l: Lang, s: &Shown) -> &'static str {
    match s {
        Shown::Running(_) => l.t("đang nhập", "running"),
        Shown::Failed(_) => l.t("lỗi", "failed"),
        Shown::Finished(_) => l.t("đã xong", "finished"),
        Shown::Interrupted => l.t("bị gián đoạn", "interrupted"),
    }
}

/// The form's values and its errors (field → message), to show them again.
#[derive(Default)]
struct UploadForm {
    unit: String,
    mapping: String,
    errors: Vec<(&'static str, String)>,
}

fn upload_form(ctx: &Ctx, f: &UploadForm, max_mb: usize) -> Markup {
    let l = ctx.lang;
    let err = |field: &str| f.errors.iter().find(|(k, _)| *k == field).map(|(_, m)| m.clone());
    html! {
        h2 { (l.t("Tải lên lô dữ liệu", "Upload a batch")) }
        @if !f.errors.is_empty() {
            div.errors role="alert" #upload-errors {
                p { (l.t("Chưa tải lên được:", "The upload was refused:")) }
                ul { @for (_, m) in &f.errors { li { (m) } } }
            }
        }
        form method="post" action="/ui/intake" enctype="multipart/form-data" #upload {
            (ctx.csrf_field())
            label for="file" { (l.t("Tệp CSV hoặc XLSX", "CSV or XLSX file")) }
            input #file type="file" name="file" required accept=".csv,.xlsx,text/csv,application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
                aria-describedby="file-help";
            @if let Some(m) = err("file") { p.field-error #file-error { (m) } }
            p.muted #file-help { (l.t("Dòng đầu là tên cột. Tối đa", "The first row names the columns. At most")) " "
                (format!("{max_mb} MB")) "." }
            label for="unit" { (l.t("Đơn vị của dữ liệu (commune:MÃ hoặc province:MÃ, mã 2025)", "Unit of the data (commune:CODE or province:CODE, 2025 codes)")) }
            input #unit name="unit" required value=(f.unit);
            @if let Some(m) = err("unit") { p.field-error #unit-error { (m) } }
            label for="mapping" { (l.t("Ánh xạ cột (không bắt buộc): mỗi dòng \"trường,tên cột\"", "Column mapping (optional): one \"field,column\" per line")) }
            textarea #mapping name="mapping" rows="3" { (f.mapping) }
            @if let Some(m) = err("mapping") { p.field-error #mapping-error { (m) } }
            p { button type="submit" { (l.t("Tải lên và nhập", "Upload and import")) } }
        }
    }
}

fn default_unit(unit: &Unit) -> String {
    match unit.level {
        UnitLevel::Province | UnitLevel::Commune if !unit.code.starts_with("legacy:") => unit.code_str(),
        _ => String::new(),
    }
}

async fn batches_of(st: &AppState, unit: &Unit) -> Result<Vec<ImportBatch>, crate::problem::ApiError> {
    let all = st.registry.store().import_batches(500).await?;
    Ok(all.into_iter().filter(|b| holds(unit, b)).take(100).collect())
}

fn list_page(ctx: &Ctx, st: &AppState, batches: &[ImportBatch], form: Option<&UploadForm>) -> Markup {
    let l = ctx.lang;
    let caller = ctx.caller.as_ref();
    let importer = caller.is_some_and(|c| c.officer.roles.contains(&Role::Collector));
    html! {
        h1 { (l.t("Nhập dữ liệu dân cư", "Population data intake")) }
        @if importer {
            @if let Some(f) = form { (upload_form(ctx, f, st.intake.max_bytes >> 20)) }
        }
        h2 { (l.t("Các lô đã tải lên", "Batches")) }
        @if batches.is_empty() { p.muted #no-batches { (l.t("Chưa có lô nào.", "No batch yet.")) } }
        @else {
            table #batches {
                thead { tr { th scope="col" { (l.t("Lô", "Batch")) } th scope="col" { (l.t("Đơn vị", "Unit")) }
                    th scope="col" { (l.t("Cán bộ", "Officer")) } th scope="col" { (l.t("Bắt đầu", "Started")) }
                    th scope="col" { (l.t("Trạng thái", "State")) } } }
                tbody { @for b in batches { @let s = shown(st, b); tr {
                    td { a href={ "/ui/intake/" (b.id) } { (short(&b.id)) } }
                    td { (b.unit) } td { (b.officer) } td { (when(b.started_at)) }
                    td class=(match s { Shown::Interrupted | Shown::Failed(_) => "overdue", _ => "" }) { (state_text(l, &s)) }
                } } }
            }
        }
    }
}

/// `GET /ui/intake`: the upload form (collectors) and the batches of the officer's area.
pub async fn list(State(st): State<AppState>, ctx: Ctx) -> Response {
    let Some(caller) = ctx.caller.as_ref() else { return redirect("/ui/login") };
    let batches = match batches_of(&st, &caller.officer.unit).await {
        Ok(b) => b,
        Err(e) => return ctx.api_error(e),
    };
    let form = UploadForm { unit: default_unit(&caller.officer.unit), ..Default::default() };
    ctx.page(ctx.t("Nhập dữ liệu", "Intake"), list_page(&ctx, &st, &batches, Some(&form)))
}

/// An upload over the limit is still read (and dropped) up to this size, so that the browser
/// gets the answer instead of a reset connection.
const DRAIN_MAX: usize = 1 << 30;

/// The body, if it is at most `max` bytes; a larger one is read to its end (up to
/// [`DRAIN_MAX`]) without being kept, and gives `None`.
async fn read_limited(mut body: Body, max: usize) -> Option<Vec<u8>> {
    use http_body_util::BodyExt;
    let (mut kept, mut seen) = (Vec::new(), 0usize);
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.ok()?.into_data() else { continue };
        seen += data.len();
        if seen > max {
            kept = Vec::new();
            if seen > DRAIN_MAX {
                return None;
            }
            continue;
        }
        kept.extend_from_slice(&data);
    }
    (seen <= max).then_some(kept)
}

/// The format of an uploaded file, from its name and its first bytes.
fn format_of(filename: &str, data: &[u8]) -> Option<Format> {
    let lower = filename.to_lowercase();
    let zip = data.starts_with(b"PK\x03\x04");
    if lower.ends_with(".xlsx") {
        return zip.then_some(Format::Xlsx);
    }
    if lower.ends_with(".csv") || lower.ends_with(".txt") {
        // Text: no ZIP container, no NUL bytes in the first 64 KiB.
        return (!zip && !data[..data.len().min(64 << 10)].contains(&0)).then_some(Format::Csv);
    }
    None
}

fn form_again(ctx: &Ctx, st: &AppState, batches: &[ImportBatch], form: &UploadForm, status: StatusCode) -> Response {
    let mut res = ctx.page(ctx.t("Nhập dữ liệu", "Intake"), list_page(ctx, st, batches, Some(form)));
    *res.status_mut() = status;
    res
}

/// `POST /ui/intake`: receives a batch (multipart: `csrf`, `file`, `unit`, `mapping`) and
/// starts its import in the background; answers with the batch page.
pub async fn upload(State(st): State<AppState>, ctx: Ctx, headers: HeaderMap, body: Body) -> Response {
    let l = ctx.lang;
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let max = st.intake.max_bytes;
    let Some(b) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).and_then(boundary) else {
        return ctx.error_page(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            l.t("Sai kiểu dữ liệu gửi lên", "Wrong kind of request"),
            l.t(
                "Tệp phải được gửi bằng biểu mẫu tải lên (multipart/form-data).",
                "Files are sent with the upload form (multipart/form-data).",
            ),
        );
    };
    let max_text = format!("{} MB", max >> 20);
    let too_large = || {
        ctx.error_page(
            StatusCode::PAYLOAD_TOO_LARGE,
            l.t("Tệp quá lớn", "File too large"),
            &format!(
                "{} {max_text}. {}",
                l.t("Tệp vượt quá giới hạn", "The file exceeds the limit of"),
                l.t("Hãy chia thành nhiều tệp nhỏ hơn.", "Split it into smaller files.")
            ),
        )
    };
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    if declared.is_some_and(|n: usize| n > DRAIN_MAX) {
        return too_large();
    }
    let bytes = match read_limited(body, max + FORM_OVERHEAD).await {
        Some(b) => b,
        None => return too_large(),
    };
    let malformed = || {
        ctx.error_page(
            StatusCode::BAD_REQUEST,
            l.t("Biểu mẫu không đọc được", "Unreadable form"),
            l.t(
                "Biểu mẫu tải lên bị hỏng: hãy tải lại trang và thử lại.",
                "The upload form is damaged: reload and try again.",
            ),
        )
    };
    let Some(parts) = parts(&bytes, &b) else { return malformed() };
    if parts.iter().any(|p| p.name == "file" && p.data.len() > max) {
        return too_large();
    }
    let field = |name: &str| {
        parts
            .iter()
            .find(|p| p.name == name)
            .map(|p| String::from_utf8_lossy(&p.data).trim().to_string())
            .unwrap_or_default()
    };
    if let Err(res) = ctx.check_form(&FormData(vec![("csrf".into(), field("csrf"))])) {
        return res;
    }
    let batches = match batches_of(&st, &caller.officer.unit).await {
        Ok(b) => b,
        Err(e) => return ctx.api_error(e),
    };
    let mut form = UploadForm { unit: field("unit"), mapping: field("mapping"), errors: Vec::new() };
    let Some(dir) = st.intake.dir.clone() else {
        return ctx.error_page(
            StatusCode::SERVICE_UNAVAILABLE,
            l.t("Chưa nhận tệp", "Uploads unavailable"),
            l.t("Máy chủ này chưa được cấu hình thư mục nhập liệu.", "This server has no intake folder configured."),
        );
    };
    // The file: present, not empty, CSV or XLSX.
    let file = parts.iter().find(|p| p.name == "file");
    let mut format = None;
    match file {
        None => form.errors.push(("file", l.t("Tệp: bắt buộc chọn tệp", "File: required").to_string())),
        Some(f) if f.data.is_empty() || f.data.iter().all(|b| b.is_ascii_whitespace()) => {
            form.errors.push(("file", l.t("Tệp: tệp rỗng, không có dòng nào", "File: the file is empty").to_string()))
        }
        Some(f) => match format_of(f.filename.as_deref().unwrap_or(""), &f.data) {
            Some(fmt) => format = Some(fmt),
            None => {
                let msg = l.t(
                    "Tệp: chỉ nhận tệp CSV (.csv) hoặc Excel (.xlsx)",
                    "File: only CSV (.csv) or Excel (.xlsx) files are accepted",
                );
                return form_again(
                    &ctx,
                    &st,
                    &batches,
                    &UploadForm { errors: vec![("file", msg.to_string())], ..form },
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                );
            }
        },
    }
    // The unit: a province or commune within the officer's unit.
    match ImportUnit::parse(&form.unit) {
        Err(_) => form.errors.push((
            "unit",
            l.t(
                "Đơn vị: mã không có trong danh mục 2025 (commune:MÃ hoặc province:MÃ)",
                "Unit: not a 2025 code (commune:CODE or province:CODE)",
            )
            .to_string(),
        )),
        Ok(u) => {
            if !Unit::parse(&u.code_str()).is_ok_and(|u| caller.officer.unit.contains(&u)) {
                form.errors.push((
                    "unit",
                    l.t("Đơn vị: ngoài địa bàn quản lý của đơn vị bạn", "Unit: outside your unit's area").to_string(),
                ));
            } else {
                form.unit = u.code_str();
            }
        }
    }
    if !form.mapping.is_empty()
        && let Err(e) = dancu_core::intake::row::parse_mapping(&form.mapping)
    {
        form.errors.push(("mapping", format!("{}: {e}", l.t("Ánh xạ cột", "Column mapping"))));
    }
    let (Some(file), Some(format), true) = (file, format, form.errors.is_empty()) else {
        return form_again(&ctx, &st, &batches, &form, StatusCode::UNPROCESSABLE_ENTITY);
    };
    // The batch: the file's SHA-256. A finished one is shown; one running here is shown.
    let id = {
        use sha2::Digest;
        dancu_core::audit::to_hex(&sha2::Sha256::digest(&file.data))
    };
    if matches!(st.intake.job(&id), Some(Job::Running(_))) {
        return redirect(&format!("/ui/intake/{id}"));
    }
    match st.registry.store().import_batch_get(&id).await {
        Ok(Some(b)) if b.summary.is_some() && holds(&caller.officer.unit, &b) => {
            return redirect(&format!("/ui/intake/{id}?notice=already"));
        }
        Ok(Some(b)) if b.unit != form.unit => {
            form.errors.push((
                "file",
                format!(
                    "{} {}",
                    l.t("Tệp: tệp này đã được nhập cho đơn vị", "File: this file was imported for the unit"),
                    b.unit
                ),
            ));
            return form_again(&ctx, &st, &batches, &form, StatusCode::CONFLICT);
        }
        Ok(_) => {}
        Err(e) => return ctx.api_error(e.into()),
    }
    if let Err(e) = std::fs::create_dir_all(&dir) {
        tracing::error!(error = %e, "creating the intake folder failed");
        return ctx.api_error(crate::problem::ApiError::internal());
    }
    let upload = dir.join(format!("{id}.upload"));
    if let Err(e) = std::fs::write(&upload, &file.data) {
        tracing::error!(error = %e, "storing an upload failed");
        return ctx.api_error(crate::problem::ApiError::internal());
    }
    drop(bytes);
    let mapping = Some(form.mapping.clone()).filter(|m| !m.is_empty());
    if let Err(e) = intake::check_header(&upload, format, mapping.as_deref()) {
        let _ = std::fs::remove_file(&upload);
        form.errors.push(("file", format!("{}: {e}", l.t("Tệp", "File"))));
        return form_again(&ctx, &st, &batches, &form, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let start =
        Snapshot { stage: Stage::Reading, done: 0, total: None, rows_read: 0, rows_rejected: 0, rows_stored: 0 };
    if !st.intake.start(&id, start) {
        // The same file, uploaded twice at once: the first upload's import runs it.
        return redirect(&format!("/ui/intake/{id}"));
    }
    let options = intake::Options {
        file: upload.clone(),
        format,
        unit: form.unit.clone(),
        officer: caller.username().to_string(),
        mapping,
        batch_id: Some(id.clone()),
        report: Some(dir.join(format!("{id}.report.csv"))),
        chunk: 5000,
        // The server is in use: its searches stay fast.
        indexes: intake::Indexes::Keep,
        progress: Arc::new(Sink { state: st.intake.clone(), id: id.clone() }),
        client: "web",
    };
    let (store, intake_state, job_id) = (st.registry.store().clone(), st.intake.clone(), id.clone());
    tokio::spawn(async move {
        let result = intake::run(store, &options).await;
        let _ = std::fs::remove_file(&options.file);
        match result {
            Ok(_) => intake_state.set(&job_id, None),
            Err(e) => {
                // The message names a line or field of the file, never a value of a person.
                tracing::warn!(batch = %job_id, "an intake import stopped");
                intake_state.set(&job_id, Some(Job::Failed(e.to_string())));
            }
        }
    });
    redirect(&format!("/ui/intake/{id}"))
}

fn summary_view(l: Lang, s: &Summary) -> Markup {
    let repaired = s.notes.get("encoding_repaired").copied().unwrap_or(0);
    let rows: Vec<(&str, u64, &str)> = vec![
        (l.t("Số dòng đọc", "Rows read"), s.rows_read, "rows-read"),
        (l.t("Số dòng bị loại", "Rows rejected"), s.rows_rejected, "rows-rejected"),
        (l.t("Sửa bảng mã tiếng Việt", "Encodings repaired"), repaired, "repaired"),
        (l.t("Người mới", "New people"), s.new_people, "new-people"),
        (l.t("Trùng trong tệp (đã liên kết)", "Duplicates in the file (linked)"), s.linked_within_batch, "linked-file"),
        (
            l.t("Trùng với CSDL (đã liên kết)", "Duplicates of registered people (linked)"),
            s.linked_to_registry,
            "linked-registry",
        ),
        (l.t("Cặp cần xem xét", "Pairs queued for review"), s.review_pairs, "review-pairs"),
        (l.t("Số định danh đã cấp", "Personal IDs assigned"), s.ids_assigned, "ids-assigned"),
    ];
    html! {
        table #summary {
            tbody { @for (label, n, id) in rows { tr { th scope="row" { (label) } td.num id=(id) { (n) } } } }
        }
        @if !s.rejected_by_reason.is_empty() {
            h3 { (l.t("Lý do loại", "Why rows were rejected")) }
            ul { @for (code, n) in &s.rejected_by_reason { li { (intake::problem_vi(code)) " (" (code) "): " (n) } } }
        }
        p.muted { (l.t("Thời gian", "Time")) ": " (format!("{:.1}", s.seconds)) " s" }
    }
}

/// `GET /ui/intake/{id}`: a batch — its progress (reloading itself while it runs) or its summary,
/// error report and review pairs.
pub async fn batch(
    State(st): State<AppState>,
    ctx: Ctx,
    Path(id): Path<String>,
    query: axum::extract::Query<BTreeMap<String, String>>,
) -> Response {
    let l = ctx.lang;
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let stored = match st.registry.store().import_batch_get(&id).await {
        Ok(b) => b,
        Err(e) => return ctx.api_error(e.into()),
    };
    let b = match (stored, st.intake.job(&id)) {
        (Some(b), _) if holds(&caller.officer.unit, &b) => b,
        // Uploaded here a moment ago, not yet begun in the store: running.
        (None, Some(job @ Job::Running(_))) | (None, Some(job @ Job::Failed(_))) => {
            let body = html! {
                h1 { (l.t("Lô", "Batch")) " " (short(&id)) }
                @match job {
                    Job::Running(_) => p.notice role="status" #batch-state { (l.t("Đang bắt đầu nhập…", "Starting…")) },
                    Job::Failed(m) => p.errors role="alert" #batch-state { (l.t("Không nhập được", "The import failed")) ": " (m) },
                }
                p { a href="/ui/intake" { (l.t("Về danh sách lô", "Back to the batches")) } }
            };
            return ctx.page_with(l.t("Nhập dữ liệu", "Intake"), body, Some(REFRESH));
        }
        _ => return ctx.api_error(crate::problem::ApiError::not_found()),
    };
    let s = shown(&st, &b);
    let issuer = caller.officer.roles.iter().any(|r| crate::policy::ISSUERS.contains(r));
    let pairs = match (&s, issuer) {
        (Shown::Finished(_), true) => {
            let qy = ReviewQuery { state: None, area: caller.area(), offset: 0, limit: 1000 };
            match st.registry.store().review_pairs(&qy).await {
                Ok(p) => p.into_iter().filter(|p| p.batch_id == b.id).take(50).collect(),
                Err(e) => return ctx.api_error(e.into()),
            }
        }
        _ => Vec::new(),
    };
    let report = st.intake.report_path(&b.id).filter(|p| p.exists());
    let body = html! {
        h1 { (l.t("Lô", "Batch")) " " (short(&b.id)) }
        @if query.0.get("notice").is_some_and(|n| n == "already") {
            p.notice role="status" #already { (l.t("Tệp này đã được nhập trước đó: không nhập lại.", "This file was imported before: it is not applied again.")) }
        }
        dl.fields {
            dt { (l.t("Đơn vị", "Unit")) } dd { (b.unit) }
            dt { (l.t("Cán bộ", "Officer")) } dd { (b.officer) }
            dt { (l.t("Bắt đầu", "Started")) } dd { (when(b.started_at)) }
            @if let Some(f) = b.finished_at { dt { (l.t("Kết thúc", "Finished")) } dd { (when(f)) } }
            dt { (l.t("Mã lô (SHA-256 của tệp)", "Batch id (the file's SHA-256)")) } dd { code { (b.id) } }
        }
        @match &s {
            Shown::Running(at) => {
                p.notice role="status" #batch-state { (l.t("Đang nhập", "Importing")) ": " strong { (stage_label(l, at.stage)) } }
                @if let Some(total) = at.total {
                    progress #progress max=(total.max(1)) value=(at.done) { (at.done) "/" (total) }
                } @else { progress #progress {} }
                table #counts { tbody {
                    tr { th scope="row" { (l.t("Dòng đã đọc", "Rows read")) } td.num { (at.rows_read) } }
                    tr { th scope="row" { (l.t("Dòng bị loại", "Rows rejected")) } td.num { (at.rows_rejected) } }
                    tr { th scope="row" { (l.t("Dòng đã lưu", "Rows stored")) } td.num { (at.rows_stored) } }
                } }
                p.muted { (l.t("Trang tự cập nhật mỗi 2 giây.", "This page refreshes every 2 seconds.")) }
            }
            Shown::Failed(m) => {
                p.errors role="alert" #batch-state { (l.t("Không nhập được", "The import failed")) ": " (m) }
                p { (l.t("Sửa tệp rồi tải lên lại.", "Correct the file and upload it again.")) }
            }
            Shown::Interrupted => {
                p.errors role="alert" #batch-state { (l.t("Bị gián đoạn: lô chưa xong và không còn chạy trên máy chủ này (máy chủ đã khởi động lại).",
                    "Interrupted: the batch did not finish and is not running on this server (the server restarted).")) }
                p { (l.t("Tải lên lại đúng tệp này để nhập tiếp: các dòng đã lưu không bị lưu lại lần nữa.",
                    "Upload the same file again to finish it: rows already stored are not stored twice.")) }
            }
            Shown::Finished(summary) => {
                p.notice role="status" #batch-state { (l.t("Đã nhập xong.", "Finished.")) }
                (summary_view(l, summary))
                @if report.is_some() {
                    p { a.button #report download href={ "/ui/intake/" (b.id) "/report.csv" } { (l.t("Tải báo cáo lỗi (CSV)", "Download the error report (CSV)")) } }
                } @else {
                    p.muted { (l.t("Báo cáo lỗi được ghi ở nơi chạy lệnh nhập (dòng lệnh), không có trên máy chủ này.",
                        "The error report was written where the import ran (command line), not on this server.")) }
                }
                @if summary.review_pairs > 0 {
                    h2 { (l.t("Cặp hồ sơ cần xem xét", "Pairs to review")) }
                    @if issuer {
                        @if pairs.is_empty() { p.muted { (l.t("Không còn cặp nào trong địa bàn của bạn.", "None left in your area.")) } }
                        ul #batch-pairs { @for p in &pairs {
                            li { a href={ "/ui/reviews/" (p.id) } { (l.t("So sánh", "Compare")) " " (p.id.to_string()[24..]) }
                                 " — " (format!("{:.0} %", p.probability * 100.0)) " · " (review_state(l, p.state)) }
                        } }
                        p { a href="/ui/reviews" { (l.t("Mở hàng đợi xem xét", "Open the review queue")) } }
                    } @else {
                        p.muted { (l.t("Cán bộ kiểm tra hoặc lãnh đạo xem xét các cặp này.", "A verifier or an approver reviews them.")) }
                    }
                }
            }
        }
        p { a href="/ui/intake" { (l.t("Về danh sách lô", "Back to the batches")) } }
    };
    let refresh = matches!(s, Shown::Running(_)).then_some(REFRESH);
    ctx.page_with(&format!("{} {}", l.t("Lô", "Batch"), short(&b.id)), body, refresh)
}

/// `GET /ui/intake/{id}/report.csv`: the batch's error report (line, kind, field, value, code,
/// reason, and the message in Vietnamese), as this server wrote it.
pub async fn report(State(st): State<AppState>, ctx: Ctx, Path(id): Path<String>) -> Response {
    let Some(caller) = ctx.caller.clone() else { return redirect("/ui/login") };
    let b = match st.registry.store().import_batch_get(&id).await {
        Ok(Some(b)) if holds(&caller.officer.unit, &b) => b,
        Ok(_) => return ctx.api_error(crate::problem::ApiError::not_found()),
        Err(e) => return ctx.api_error(e.into()),
    };
    let Some(bytes) = st.intake.report_path(&b.id).and_then(|p| std::fs::read(p).ok()) else {
        return ctx.error_page(
            StatusCode::NOT_FOUND,
            ctx.t("Không có báo cáo", "No report"),
            ctx.t("Báo cáo của lô này không có trên máy chủ này.", "This batch's report is not on this server."),
        );
    };
    // A byte-order mark, so that spreadsheet programs read the Vietnamese text as UTF-8.
    let mut out = Vec::with_capacity(bytes.len() + 3);
    out.extend_from_slice("\u{feff}".as_bytes());
    out.extend_from_slice(&bytes);
    let mut res = (StatusCode::OK, out).into_response();
    let h = res.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/csv; charset=utf-8"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"bao-cao-lo-{}.csv\"", short(&b.id))) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_come_from_the_name_and_the_bytes() {
        assert_eq!(format_of("a.CSV", b"ho_ten\n"), Some(Format::Csv));
        assert_eq!(format_of("a.xlsx", b"PK\x03\x04rest"), Some(Format::Xlsx));
        assert_eq!(format_of("a.xlsx", b"ho_ten\n"), None);
        assert_eq!(format_of("a.csv", b"PK\x03\x04"), None);
        assert_eq!(format_of("a.csv", b"a\0b"), None);
        assert_eq!(format_of("a.pdf", b"%PDF"), None);
    }
}
