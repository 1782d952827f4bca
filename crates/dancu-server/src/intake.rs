//! The import pipeline (`dancu import` and the web application's intake upload): loads a CSV or
//! XLSX file of people collected by a unit. Progress goes to a [`Progress`] sink (the command
//! line's progress bars, the web application's batch page).
//!
//! Two passes over the file, so that memory holds one compact linkage record per row, never the
//! rows themselves:
//! 1. every row is normalized ([`dancu_core::intake::row`]); failures go to the report (line,
//!    field, value, reason), repairs and doubtful conversions too; valid rows give a
//!    [`LinkRecord`]. Registry people sharing a folded name + birth year or a legacy number are
//!    fetched by indexed lookups, and [`link`] finds the rows of one person (Link: merged;
//!    Review: the clerical queue; Distinct).
//! 2. the file is read again (normalizing is deterministic), and each row is stored in chunks
//!    of one transaction each: a person under a key chosen here, its personal ID drawn and
//!    reserved, and the (batch, line) → key row that makes a re-run skip it. A duplicate is stored
//!    too, pending, naming its survivor (`merged_into`).
//!
//! Crash safety: a chunk is stored whole or not at all; a re-run of the same batch (its id is the
//! file's SHA-256 unless given) skips the lines stored, recomputes the same linkage (the batch's
//! own records are left out of the registry candidates) and finishes. No person is lost or stored
//! twice, no personal ID is issued twice (the store's `issued_ids`).

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use dancu_core::audit::AuditEntry;
use dancu_core::auth::{Role, Unit};
use dancu_core::intake::em::{Band, Thresholds};
use dancu_core::intake::linkage::{FeatureBuilder, LinkConfig, LinkRecord, Origin, link_prepared, max_link_records};
use dancu_core::intake::par;
use dancu_core::intake::row::{CellProblem, ColumnMap, ImportUnit, NormalizedRow, RowNormalizer};
use dancu_core::{Person, PersonStatus, PersonalId};
use dancu_store::registry::{draw_personal_id, today};
use dancu_store::{CandidateKey, ChangeMeta, ImportBatch, ImportedRow, ReviewPair, ReviewState, Store, StoreError};
use serde::Serialize;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// An import that cannot go on: the input or the request is wrong (`Input`, a message for the
/// officer that names the file line or field), or the store or the disk failed.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    Input(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Io(String),
}

type Result<T, E = ImportError> = std::result::Result<T, E>;

fn input(msg: impl Into<String>) -> ImportError {
    ImportError::Input(msg.into())
}

/// Refuses a linkage run larger than one run can hold, before it starts.
fn check_link_size(records: usize) -> Result<()> {
    let most = max_link_records();
    if records > most {
        return Err(input(format!(
            "{records} records to link in one run (the file's rows and the registry's candidates); \
             at most {most}: split the file / quá nhiều bản ghi để đối chiếu trong một lần ({records}, tối đa {most}): \
             hãy chia nhỏ tệp"
        )));
    }
    Ok(())
}

fn io(what: impl std::fmt::Display, e: impl std::fmt::Display) -> ImportError {
    ImportError::Io(format!("{what}: {e}"))
}

impl From<csv::Error> for ImportError {
    fn from(e: csv::Error) -> Self {
        ImportError::Io(format!("writing the report: {e}"))
    }
}

impl From<std::io::Error> for ImportError {
    fn from(e: std::io::Error) -> Self {
        ImportError::Io(e.to_string())
    }
}

impl From<serde_json::Error> for ImportError {
    fn from(e: serde_json::Error) -> Self {
        ImportError::Io(format!("the summary: {e}"))
    }
}

/// The input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Xlsx,
}

/// What an import was asked to do.
pub struct Options {
    pub file: PathBuf,
    pub format: Format,
    pub unit: String,
    pub officer: String,
    /// The column mapping: CSV text of `field,column` lines.
    pub mapping: Option<String>,
    pub batch_id: Option<String>,
    pub report: Option<PathBuf>,
    /// Rows per stored chunk (one transaction each).
    pub chunk: usize,
    /// Whether the people's search indexes are set aside while storing.
    pub indexes: Indexes,
    /// Where progress goes.
    pub progress: Arc<dyn Progress>,
    /// What started the import, for the audit trail (`cli`, `web`).
    pub client: &'static str,
}

/// Whether an import sets the people's search indexes aside while it stores, and builds them once
/// at the end (`Store::defer_person_indexes`): much faster for a bulk load; meanwhile the
/// searches of a server using the same store read the whole table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Indexes {
    /// When the import stores at least 100,000 people and at least half as many as are stored.
    Auto,
    /// Always (e.g. the first load of a store that no one is searching yet).
    Defer,
    /// Never (the store is in use and its searches must stay fast).
    Keep,
}

/// The stages of an import, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Pass 1: rows read, normalized, checked.
    Reading,
    /// Registry people that may be the same as rows of the file.
    RegistryCandidates,
    /// Record linkage.
    Linking,
    /// Pass 2: rows stored.
    Storing,
    /// The search indexes set aside while storing, built again.
    Indexing,
    /// Possible duplicates queued for clerical review.
    ReviewPairs,
    Done,
}

impl Stage {
    pub fn code(self) -> &'static str {
        match self {
            Stage::Reading => "reading",
            Stage::RegistryCandidates => "registry_candidates",
            Stage::Linking => "linking",
            Stage::Storing => "storing",
            Stage::Indexing => "indexing",
            Stage::ReviewPairs => "review_pairs",
            Stage::Done => "done",
        }
    }
}

/// Where an import stands: its stage, the position in the stage (of `total` when known), and
/// the rows read, rejected and stored so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    pub stage: Stage,
    pub done: u64,
    pub total: Option<u64>,
    pub rows_read: u64,
    pub rows_rejected: u64,
    pub rows_stored: u64,
}

/// A sink for an import's progress; called at each stage change and every few thousand rows.
pub trait Progress: Send + Sync {
    fn update(&self, at: &Snapshot);
}

/// No progress shown.
pub struct Silent;

impl Progress for Silent {
    fn update(&self, _: &Snapshot) {}
}

/// Counts what an import has done, for its progress sink.
struct Tracker {
    sink: Arc<dyn Progress>,
    at: Snapshot,
}

impl Tracker {
    fn stage(&mut self, stage: Stage, total: Option<u64>) {
        self.at.stage = stage;
        self.at.done = 0;
        self.at.total = total;
        self.sink.update(&self.at);
    }
    fn position(&mut self, done: u64) {
        self.at.done = done;
        self.sink.update(&self.at);
    }
}

/// The outcome of a run, printed and written as JSON.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Summary {
    pub batch_id: String,
    pub unit: String,
    pub officer: String,
    pub rows_read: u64,
    pub rows_rejected: u64,
    /// Rejected rows by the code of their first problem.
    pub rejected_by_reason: std::collections::BTreeMap<String, u64>,
    /// Notes (repaired encodings, converted communes, part merges) by code.
    pub notes: std::collections::BTreeMap<String, u64>,
    /// Rows found to be a person already in this batch (stored merged into that row's record).
    pub linked_within_batch: u64,
    /// Rows found to be a person already in the registry (stored merged into that record).
    pub linked_to_registry: u64,
    pub review_pairs: u64,
    pub new_people: u64,
    pub ids_assigned: u64,
    /// Personal IDs the file carried, kept.
    pub ids_kept: u64,
    /// New people left pending: no lawful ID prefix (births registered abroad).
    pub pending_without_id: u64,
    /// Rows stored by an earlier run of the same batch.
    pub already_imported: u64,
    pub registry_candidates: u64,
    /// Candidate pairs compared by the linkage (all blocking passes).
    pub candidate_pairs: u64,
    /// Pairs of blocks too large to compare all-to-all that were left uncompared (each record
    /// paired with its neighbours only); counted as non-matches in the model's prior.
    pub uncompared_pairs: u64,
    pub seconds: f64,
    /// Seconds per phase of this run.
    pub phases: std::collections::BTreeMap<String, f64>,
    pub report: String,
    /// True when the batch had finished before (nothing done now).
    pub already_finished: bool,
    /// True when the search indexes were set aside while storing and built at the end.
    pub indexes_deferred: bool,
}

/// One data row: its file line and cells.
type Row = (u64, Vec<String>);

/// A stream of rows; an unreadable record is its line and why.
type Rows = Box<dyn Iterator<Item = Result<Row, (u64, String)>> + Send>;

/// A row of the file after normalization (blank rows are left out); a valid row with its person
/// serialized for the [`Spill`].
enum Item {
    Unreadable(u64, String),
    Row(u64, Box<Result<Normalized, Vec<CellProblem>>>),
}

/// A valid row and its person as JSON (for the [`Spill`]).
type Normalized = (NormalizedRow, serde_json::Result<Vec<u8>>);

/// Rows normalized per batch.
const BATCH: usize = 16_384;
/// Rows whose linkage records are gathered before their comparison features are prepared (on
/// all cores) and the records dropped.
const PREPARE_EVERY: usize = 65_536;

/// The rows of a file in batches of [`BATCH`], read on a thread of its own (the file is parsed
/// while the previous batch is normalized), in file order.
fn read_in_background(mut source: Rows) -> std::sync::mpsc::Receiver<Vec<Result<Row, (u64, String)>>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(2);
    std::thread::spawn(move || {
        loop {
            let batch: Vec<Result<Row, (u64, String)>> = source.by_ref().take(BATCH).collect();
            if batch.is_empty() || tx.send(batch).is_err() {
                break; // the end of the file, or the reader of the batches stopped
            }
        }
    });
    rx
}

/// Reads ([`read_in_background`]) and normalizes the rows on a thread of its own, in batches,
/// each batch normalized (and each valid row's person serialized) on all cores
/// ([`par::map_with`], one normalizer per thread); batches arrive in file order.
fn normalize_in_background(source: Rows, norm: RowNormalizer) -> tokio::sync::mpsc::Receiver<Vec<Item>> {
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let read = read_in_background(source);
    std::thread::spawn(move || {
        let mut norms = vec![norm; par::threads()];
        for batch in read {
            let items = par::map_with(&mut norms, &batch, |norm, r| match r {
                Err((line, reason)) => Some(Item::Unreadable(*line, reason.clone())),
                Ok((line, cells)) => {
                    if cells.iter().all(|c| c.trim().is_empty()) {
                        return None;
                    }
                    let row = norm.normalize(cells).map(|row| {
                        let json = serde_json::to_vec(&row.person);
                        (row, json)
                    });
                    Some(Item::Row(*line, Box::new(row)))
                }
            });
            if tx.blocking_send(items.into_iter().flatten().collect()).is_err() {
                break; // the import stopped
            }
        }
    });
    rx
}

/// The people of pass 1's valid rows, in file order, kept in a temporary file so that pass 2
/// stores them without reading and normalizing the file again (normalizing is the costly part
/// of a read). The file is unlinked as soon as it is created, so it goes away with the import
/// however that ends (even killed); each record is a length (`u32`, little-endian) and the
/// person as JSON.
struct Spill {
    file: std::fs::File,
    w: std::io::BufWriter<std::fs::File>,
    count: usize,
}

impl Spill {
    fn create(dir: &Path) -> Result<Spill> {
        let path = dir.join(format!(".dancu-import-{}-{}.tmp", std::process::id(), Uuid::now_v7().simple()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io(format!("creating a temporary file in {}", dir.display()), e))?;
        std::fs::remove_file(&path).map_err(|e| io(format!("unlinking {}", path.display()), e))?;
        let w = std::io::BufWriter::with_capacity(1 << 20, file.try_clone()?);
        Ok(Spill { file, w, count: 0 })
    }

    fn push(&mut self, json: &[u8]) -> Result<()> {
        use std::io::Write;
        let len = u32::try_from(json.len()).map_err(|_| ImportError::Io("a normalized row over 4 GiB".into()))?;
        self.w.write_all(&len.to_le_bytes())?;
        self.w.write_all(json)?;
        self.count += 1;
        Ok(())
    }

    /// Reads the people back on a thread of its own, in batches deserialized on all cores, in
    /// the order they were pushed.
    fn people_in_background(self) -> Result<tokio::sync::mpsc::Receiver<Result<Vec<Person>, String>>> {
        use std::io::{Seek, Write};
        let Spill { mut file, mut w, count } = self;
        w.flush()?;
        drop(w);
        file.seek(std::io::SeekFrom::Start(0))?;
        let mut r = std::io::BufReader::with_capacity(1 << 20, file);
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        std::thread::spawn(move || {
            let mut read = 0usize;
            while read < count {
                let mut batch: Vec<Vec<u8>> = Vec::with_capacity(BATCH.min(count - read));
                let mut failed = None;
                while batch.len() < BATCH && read < count {
                    let mut len = [0u8; 4];
                    if let Err(e) = r.read_exact(&mut len) {
                        failed = Some(e);
                        break;
                    }
                    let mut json = vec![0u8; u32::from_le_bytes(len) as usize];
                    if let Err(e) = r.read_exact(&mut json) {
                        failed = Some(e);
                        break;
                    }
                    batch.push(json);
                    read += 1;
                }
                let people = match failed {
                    Some(e) => Err(format!("reading the normalized rows back: {e}")),
                    None => par::map(&batch, |json| serde_json::from_slice::<Person>(json))
                        .into_iter()
                        .collect::<Result<Vec<Person>, _>>()
                        .map_err(|e| format!("reading the normalized rows back: {e}")),
                };
                let stop = people.is_err();
                if tx.blocking_send(people).is_err() || stop {
                    break;
                }
            }
        });
        Ok(rx)
    }
}

/// Streams the rows of a file (the header first).
fn rows(path: &Path, format: Format) -> Result<Rows> {
    match format {
        Format::Csv => {
            let file = std::fs::File::open(path).map_err(|e| io(format!("opening {}", path.display()), e))?;
            let reader = csv::ReaderBuilder::new()
                .has_headers(false)
                .flexible(true)
                .buffer_capacity(1 << 20)
                .from_reader(std::io::BufReader::with_capacity(1 << 20, file));
            let mut records = reader.into_byte_records();
            let mut last_line = 0u64;
            Ok(Box::new(std::iter::from_fn(move || {
                let r = records.next()?;
                Some(match r {
                    Ok(rec) => {
                        let line = rec.position().map_or(last_line + 1, |p| p.line());
                        last_line = line;
                        Ok((line, rec.iter().map(text_of).collect()))
                    }
                    Err(e) => {
                        let line = e.position().map_or(last_line + 1, |p| p.line());
                        last_line = line;
                        Err((line, format!("unreadable CSV record / dòng CSV không đọc được: {}", e.kind_summary())))
                    }
                })
            })))
        }
        Format::Xlsx => {
            use calamine::{Data, Reader};
            let mut book: calamine::Xlsx<_> =
                calamine::open_workbook(path).map_err(|e| input(format!("not a readable XLSX workbook: {e}")))?;
            let range = book
                .worksheet_range_at(0)
                .ok_or_else(|| input("the workbook has no sheet / sổ tính không có trang nào"))?
                .map_err(|e| input(format!("reading the first sheet: {e}")))?;
            let start = range.start().map_or(0, |(r, _)| r as u64);
            let rows: Vec<Row> = range
                .rows()
                .enumerate()
                .map(|(i, cells)| {
                    let cells = cells
                        .iter()
                        .map(|c| match c {
                            Data::Empty => String::new(),
                            Data::String(s) => s.clone(),
                            Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
                            Data::Float(f) => f.to_string(),
                            Data::Int(i) => i.to_string(),
                            Data::Bool(b) => b.to_string(),
                            // Dates as their serial day number: the date normalizer reads Excel serials.
                            Data::DateTime(d) => format!("{}", d.as_f64().floor() as i64),
                            Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
                            Data::Error(e) => format!("#{e:?}"),
                        })
                        .collect();
                    (start + i as u64 + 1, cells)
                })
                .collect();
            Ok(Box::new(rows.into_iter().map(Ok)))
        }
    }
}

trait KindSummary {
    fn kind_summary(&self) -> String;
}

impl KindSummary for csv::Error {
    fn kind_summary(&self) -> String {
        match self.kind() {
            csv::ErrorKind::Io(e) => format!("read error: {e}"),
            csv::ErrorKind::UnequalLengths { .. } => "unequal number of fields".into(),
            _ => "malformed record".into(),
        }
    }
}

/// A cell as text: UTF-8 if it is, else each byte as its Windows-1252/Latin-1 character (how a
/// TCVN3 or VNI file reads), for the legacy-encoding repair to convert.
fn text_of(b: &[u8]) -> String {
    match std::str::from_utf8(b) {
        Ok(s) => s.trim_start_matches('\u{feff}').to_string(),
        Err(_) => b.iter().map(|&c| c as char).collect(),
    }
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| io(format!("opening {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(dancu_core::audit::to_hex(&h.finalize()))
}

/// The error report: one line per rejected row problem and per note.
struct Report {
    w: csv::Writer<std::fs::File>,
}

impl Report {
    fn create(path: &Path) -> Result<Report> {
        let mut w =
            csv::Writer::from_path(path).map_err(|e| io(format!("creating the report {}", path.display()), e))?;
        w.write_record(["line", "kind", "field", "value", "code", "reason", "message"])?;
        Ok(Report { w })
    }
    fn rejected(&mut self, line: u64, p: &CellProblem) -> Result<()> {
        let message = message_vi(p.code, &p.field);
        self.w.write_record([&line.to_string(), "rejected", &p.field, &p.value, p.code, &p.reason, &message])?;
        Ok(())
    }
    fn note(&mut self, line: u64, kind: &str, field: &str, value: &str, code: &str, reason: &str) -> Result<()> {
        let message = message_vi(code, field);
        self.w.write_record([&line.to_string(), kind, field, value, code, reason, &message])?;
        Ok(())
    }
}

/// The report's message for an officer, in Vietnamese: what is wrong with the field (or what
/// was done to it), by the problem's code.
pub fn message_vi(code: &str, field: &str) -> String {
    let what = problem_vi(code);
    if field.is_empty() { format!("Dòng: {what}") } else { format!("Trường {field}: {what}") }
}

/// What a problem's code means, in Vietnamese.
pub fn problem_vi(code: &str) -> &'static str {
    match code {
        "required" | "empty" => "bắt buộc nhập, ô đang trống",
        "invalid_date" => "ngày không hợp lệ (ngày/tháng/năm)",
        "future_date" => "ngày ở tương lai",
        "before_start" | "before_issue" => "ngày trước ngày bắt đầu",
        "invalid_sex" => "giới tính không hợp lệ (Nam/Nữ)",
        "invalid_phone" => "số điện thoại không hợp lệ",
        "invalid_email" => "thư điện tử không hợp lệ",
        "unknown_commune" => "mã xã/phường không có trong danh mục",
        "unknown_province" => "mã tỉnh/thành phố không có trong danh mục",
        "unknown_scheme" => "không rõ danh mục mã địa giới (2025 hay cũ)",
        "unknown_ethnicity" => "dân tộc không có trong danh mục",
        "unknown_religion" => "tôn giáo không có trong danh mục",
        "unknown_marital_status" => "tình trạng hôn nhân không hợp lệ",
        "unknown_country" | "unknown_nationality" => "quốc tịch không có trong danh mục",
        "invalid_characters" | "control_character" => "có ký tự không hợp lệ",
        "incomplete_name" => "họ tên phải có ít nhất họ và tên",
        "too_long" => "quá dài",
        "too_many" => "quá nhiều giá trị",
        "duplicate" => "giá trị lặp lại",
        "contradiction" => "mâu thuẫn với giới tính hoặc năm sinh",
        "id_taken" => "số định danh đã cấp cho người khác",
        "invalid_personal_id" | "invalid_id" | "invalid_checksum" | "invalid_century" | "invalid_province_code" => {
            "số định danh cá nhân không hợp lệ (12 chữ số)"
        }
        "invalid_legacy_id" => "số CMND cũ không hợp lệ (9 hoặc 12 chữ số)",
        "outside_unit" => "địa chỉ ngoài đơn vị nhập liệu",
        "unreadable" => "dòng không đọc được (sai định dạng CSV)",
        "encoding_repaired" => "đã chuyển bảng mã tiếng Việt cũ (TCVN3/VNI) sang Unicode",
        "legacy_commune_converted" => "đã chuyển mã xã cũ sang mã xã năm 2025",
        "part_merge" => "xã cũ sáp nhập một phần: cần xác minh xã mới",
        _ => "giá trị không hợp lệ",
    }
}

/// Reads the header of a file and maps its columns (with the mapping, CSV text of
/// `field,column` lines): what an upload checks before its import starts.
pub fn check_header(path: &Path, format: Format, mapping: Option<&str>) -> Result<()> {
    let mapping = match mapping {
        None => HashMap::new(),
        Some(text) => dancu_core::intake::row::parse_mapping(text).map_err(|e| input(format!("mapping: {e}")))?,
    };
    let header = match rows(path, format)?.next() {
        Some(Ok((_, h))) => h,
        Some(Err((line, e))) => return Err(input(format!("line {line}: {e}"))),
        None => return Err(input("the file is empty / tệp rỗng")),
    };
    ColumnMap::new(&header, &mapping).map(|_| ()).map_err(|e| input(e.to_string()))
}

/// The SHA-256 of a file (hex): the default batch id.
pub fn file_sha256(path: &Path) -> Result<String> {
    sha256_file(path)
}

fn audit_entry(
    officer: &dancu_core::auth::Officer,
    action: &str,
    batch: &str,
    outcome: String,
    client: &str,
) -> AuditEntry {
    AuditEntry {
        at: crate::audit::now_rfc3339(),
        officer: officer.username.clone(),
        role: Role::Collector.code().into(),
        unit: officer.unit.code_str(),
        action: action.into(),
        target: None,
        purpose: Some(format!("nhập dữ liệu / import batch {batch}")),
        request_id: Some(batch.to_string()),
        client: Some(client.into()),
        outcome,
    }
}

/// Runs an import; returns its summary.
pub async fn run(store: Arc<dyn Store>, o: &Options) -> Result<Summary> {
    let started = Instant::now();
    let unit = ImportUnit::parse(&o.unit).map_err(|e| input(format!("--unit: {e}")))?;
    let officer = store
        .officer_get(&o.officer)
        .await?
        .ok_or_else(|| input(format!("--officer: no officer account {:?} / không có tài khoản này", o.officer)))?;
    if !officer.active {
        return Err(input(format!("--officer: the account {:?} is deactivated / tài khoản đã bị khóa", o.officer)));
    }
    if !officer.has_role(Role::Collector) {
        return Err(input(format!(
            "--officer: {:?} does not hold the collector role / không có vai trò thu thập",
            o.officer
        )));
    }
    let import_unit = Unit::parse(&unit.code_str()).map_err(|e| input(format!("--unit: {e}")))?;
    if !officer.unit.contains(&import_unit) {
        return Err(input(format!(
            "--unit: {} does not lie within the officer's unit {} / đơn vị không thuộc đơn vị của cán bộ",
            unit.code_str(),
            officer.unit.code_str()
        )));
    }
    let mapping = match &o.mapping {
        None => HashMap::new(),
        Some(text) => dancu_core::intake::row::parse_mapping(text).map_err(|e| input(format!("mapping: {e}")))?,
    };
    let sha = sha256_file(&o.file)?;
    let batch_id = o.batch_id.clone().unwrap_or_else(|| sha.clone());
    let report_path = o.report.clone().unwrap_or_else(|| sibling(&o.file, "report.csv"));
    let mut summary = Summary {
        batch_id: batch_id.clone(),
        unit: unit.code_str(),
        officer: officer.username.clone(),
        report: report_path.display().to_string(),
        ..Summary::default()
    };
    let batch = ImportBatch {
        id: batch_id.clone(),
        unit: unit.code_str(),
        officer: officer.username.clone(),
        file_sha256: sha.clone(),
        started_at: time::OffsetDateTime::now_utc(),
        finished_at: None,
        summary: None,
    };
    let begun = store
        .import_begin(&batch, &audit_entry(&officer, "import.start", &batch_id, "started".into(), o.client))
        .await?;
    if begun.file_sha256 != sha {
        return Err(input(format!(
            "batch {batch_id} was started with another file (SHA-256 {}): give another --batch-id",
            begun.file_sha256
        )));
    }
    if begun.unit != batch.unit {
        return Err(input(format!("batch {batch_id} was started for unit {}, not {}", begun.unit, batch.unit)));
    }
    if let Some(s) = &begun.summary {
        let mut prev: Summary = serde_json::from_str(s).unwrap_or_default();
        prev.already_finished = true;
        return Ok(prev);
    }
    let done: HashMap<u64, Uuid> = store.import_rows(&batch_id).await?.into_iter().collect();
    let own_keys: HashSet<Uuid> = done.values().copied().collect();
    // Registry candidates are looked up only when the registry holds people other than this
    // batch's; otherwise no lookup key is kept per row.
    let registry_has_others = store.count_persons().await? > own_keys.len() as u64;

    // ---- pass 1: normalize, report, linkage records
    let mut report = Report::create(&report_path)?;
    let mut source = rows(&o.file, o.format)?;
    let header = match source.next() {
        Some(Ok((_, h))) => h,
        Some(Err((line, e))) => return Err(input(format!("line {line}: {e}"))),
        None => return Err(input("the file is empty / tệp rỗng")),
    };
    let map = ColumnMap::new(&header, &mapping).map_err(|e| input(e.to_string()))?;
    let today = today();
    let norm = RowNormalizer::new(map, unit.clone(), today, o.format == Format::Xlsx);
    let mut lines: Vec<u64> = Vec::new();
    // The rows' comparison features, prepared a part at a time ([`PREPARE_EVERY`] rows) so that
    // only their compact form is kept while reading.
    let mut features = FeatureBuilder::new();
    let mut pending: Vec<LinkRecord> = Vec::new();
    let mut keys: HashSet<CandidateKey> = HashSet::new();
    let mut file_ids: Vec<(usize, PersonalId)> = Vec::new();
    let mut track = Tracker {
        sink: o.progress.clone(),
        at: Snapshot { stage: Stage::Reading, done: 0, total: None, rows_read: 0, rows_rejected: 0, rows_stored: 0 },
    };
    track.stage(Stage::Reading, None);
    let mut phase = Instant::now();
    let spill_dir = report_path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut spill = Spill::create(spill_dir)?;
    let mut batches = normalize_in_background(source, norm);
    while let Some(batch) = batches.recv().await {
        for item in batch {
            summary.rows_read += 1;
            if summary.rows_read.is_multiple_of(4096) {
                track.at.rows_read = summary.rows_read;
                track.at.rows_rejected = summary.rows_rejected;
                track.position(summary.rows_read);
            }
            let (line, normalized) = match item {
                Item::Row(line, n) => (line, *n),
                Item::Unreadable(line, reason) => {
                    reject(
                        &mut summary,
                        &mut report,
                        line,
                        &CellProblem { field: String::new(), value: String::new(), code: "unreadable", reason },
                    )?;
                    continue;
                }
            };
            match normalized {
                Err(problems) => {
                    *summary.rejected_by_reason.entry(problems[0].code.to_string()).or_default() += 1;
                    summary.rows_rejected += 1;
                    for p in &problems {
                        report.rejected(line, p)?;
                    }
                }
                Ok((row, json)) => {
                    spill.push(&json.map_err(|e| ImportError::Io(format!("serializing a normalized row: {e}")))?)?;
                    for n in &row.notes {
                        *summary.notes.entry(n.code.to_string()).or_default() += 1;
                        let kind = if n.code == "part_merge" { "flagged" } else { "converted" };
                        report.note(line, kind, &n.field, &n.value, n.code, &n.reason)?;
                    }
                    let p = &row.person;
                    if registry_has_others {
                        let facts = p.search_facts();
                        keys.insert(CandidateKey::NameYear(facts.name_key, facts.birth_year));
                        if let Some(l) = &p.record.legacy_id {
                            keys.insert(CandidateKey::LegacyId(l.to_string()));
                        }
                    }
                    if let Some(id) = p.personal_id
                        && !done.contains_key(&line)
                    {
                        file_ids.push((lines.len(), id));
                    }
                    lines.push(line);
                    pending.push(LinkRecord::from_input(&p.record, Origin::Batch));
                }
            }
        }
        if pending.len() >= PREPARE_EVERY {
            tokio::task::block_in_place(|| features.extend(&pending));
            pending.clear();
        }
    }
    tokio::task::block_in_place(|| features.extend(&pending));
    drop(pending);
    track.at.rows_read = summary.rows_read;
    track.at.rows_rejected = summary.rows_rejected;
    track.position(summary.rows_read);
    summary.phase("read_normalize", &mut phase);
    // Personal IDs the file carries must be free (rows stored earlier hold theirs already).
    let mut refused: HashSet<usize> = HashSet::new();
    if !file_ids.is_empty() {
        let mut seen = HashSet::new();
        let mut issued = HashSet::new();
        for chunk in file_ids.chunks(5000) {
            let ids: Vec<PersonalId> = chunk.iter().map(|(_, id)| *id).collect();
            issued.extend(store.ids_issued(&ids).await?);
        }
        for (i, id) in &file_ids {
            if issued.contains(id) || !seen.insert(*id) {
                refused.insert(*i);
                reject(
                    &mut summary,
                    &mut report,
                    lines[*i],
                    &CellProblem {
                        field: "personal_id".into(),
                        value: id.to_string(),
                        code: "id_taken",
                        reason:
                            "this personal ID is already issued to another record / số định danh đã cấp cho người khác"
                                .into(),
                    },
                )?;
            }
        }
    }
    // Numbers drawn for new people avoid these, so a row never loses the number its line carries.
    let own_ids: Arc<HashSet<PersonalId>> = Arc::new(file_ids.iter().map(|&(_, id)| id).collect());
    drop(file_ids);
    let n_batch = lines.len();
    // Rows refused for their ID take no part in linkage.
    for &i in &refused {
        features.forget(i);
    }
    let mut registry_keys: Vec<Uuid> = Vec::new();
    if registry_has_others {
        let keys: Vec<CandidateKey> = keys.into_iter().collect();
        track.stage(Stage::RegistryCandidates, Some(keys.len() as u64));
        let mut looked = 0u64;
        let mut found: Vec<(Uuid, LinkRecord)> = Vec::new();
        for chunk in keys.chunks(5000) {
            for rec in store.link_candidates(chunk).await? {
                if !own_keys.contains(&rec.key) && rec.person.merged_into.is_none() {
                    found.push((rec.key, LinkRecord::from_person(&rec.person)));
                }
            }
            looked += chunk.len() as u64;
            track.position(looked);
        }
        // Fetched by several keys: each once, in a stable order.
        found.sort_by_key(|(key, _)| *key);
        found.dedup_by_key(|(key, _)| *key);
        let (found_keys, found_records): (Vec<Uuid>, Vec<LinkRecord>) = found.into_iter().unzip();
        tokio::task::block_in_place(|| features.extend(&found_records));
        registry_keys = found_keys;
    }
    summary.registry_candidates = registry_keys.len() as u64;
    summary.phase("registry_candidates", &mut phase);
    track.at.rows_rejected = summary.rows_rejected;
    track.stage(Stage::Linking, None);
    check_link_size(n_batch + registry_keys.len())?;
    let config = LinkConfig::default();
    let prepared = features.finish().map_err(|e| input(e.to_string()))?;
    let outcome = tokio::task::block_in_place(|| link_prepared(&prepared, &config));
    drop(prepared);
    summary.candidate_pairs = outcome.candidates as u64;
    summary.uncompared_pairs = outcome.blocking.uncompared as u64;
    summary.phase("link", &mut phase);

    // Survivors: a registry record of the cluster if any, else its earliest row.
    let mut survivor: Vec<Option<usize>> = vec![None; n_batch + registry_keys.len()];
    for c in &outcome.clusters {
        let c: Vec<usize> = c.iter().copied().filter(|i| !refused.contains(i)).collect();
        let keep = c.iter().copied().find(|&i| i >= n_batch).or_else(|| c.iter().copied().min());
        if let Some(keep) = keep {
            for &i in &c {
                if i != keep && i < n_batch {
                    survivor[i] = Some(keep);
                }
            }
        }
    }
    let root = |i: usize| survivor[i].unwrap_or(i);

    // ---- pass 2: store
    let meta = ChangeMeta::new(
        officer.username.clone(),
        format!("Nhập dữ liệu từ tệp / imported from file (batch {batch_id})"),
        None,
    );
    let mut key_of: Vec<Option<Uuid>> = vec![None; n_batch];
    let to_store = n_batch.saturating_sub(done.len()) as u64;
    summary.indexes_deferred = match o.indexes {
        Indexes::Keep => false,
        Indexes::Auto => store.defer_person_indexes(to_store, false).await?,
        Indexes::Defer => store.defer_person_indexes(to_store, true).await?,
    };
    track.stage(Stage::Storing, Some(n_batch as u64));
    let stored = store_rows(
        &store,
        &batch_id,
        &meta,
        o.chunk,
        StoreInputs {
            n_batch,
            lines: &lines,
            done: &done,
            refused: &refused,
            survivor: &survivor,
            registry_keys: &registry_keys,
            own_ids,
            draw: draw_new_id,
        },
        &mut key_of,
        &mut summary,
        &mut track,
        spill,
    )
    .await;
    if summary.indexes_deferred {
        summary.phase("store", &mut phase);
        track.stage(Stage::Indexing, None);
        // Built again also when storing failed (the next opening of the store would otherwise).
        let built = store.restore_person_indexes().await;
        if let (Err(_), Err(e)) = (&stored, &built) {
            tracing::error!(error = %e, "the search indexes set aside were not built; the next opening of the store builds them");
        }
        stored?;
        built?;
        summary.phase("indexes", &mut phase);
    } else {
        stored?;
        summary.phase("store", &mut phase);
    }

    // ---- review pairs between the records kept (survivors)
    track.stage(Stage::ReviewPairs, None);
    let key = |i: usize| if i >= n_batch { Some(registry_keys[i - n_batch]) } else { key_of[i] };
    let thresholds = Thresholds::default();
    let mut seen = HashSet::new();
    let mut pairs = Vec::new();
    for p in outcome.pairs.iter().filter(|p| p.band == Band::Review) {
        if refused.contains(&p.a) || refused.contains(&p.b) {
            continue;
        }
        let (ra, rb) = (root(p.a), root(p.b));
        let (Some(ka), Some(kb)) = (key(ra), key(rb)) else { continue };
        if ka == kb || !seen.insert((ka.min(kb), ka.max(kb))) {
            continue;
        }
        let e = outcome.model.explain(&p.comparison, &p.adjustments, &thresholds);
        let line_of = |i: usize| if i < n_batch { serde_json::json!(lines[i]) } else { serde_json::Value::Null };
        let explanation = serde_json::json!({
            "fields": e.fields.iter().map(|f| serde_json::json!({
                "field": f.field.code(), "level": f.level, "weight": round(f.weight)
            })).collect::<Vec<_>>(),
            "prior_weight": round(e.prior_weight),
            "weight": round(e.weight),
            "probability": round(e.probability),
            "band": e.band.code(),
            "lines": [line_of(p.a), line_of(p.b)],
        });
        pairs.push(ReviewPair {
            id: Uuid::now_v7(),
            batch_id: batch_id.clone(),
            a: ka.min(kb),
            b: ka.max(kb),
            weight: p.weight,
            probability: p.probability,
            explanation,
            state: ReviewState::Pending,
            created_at: time::OffsetDateTime::now_utc(),
            decided_by: None,
            decided_at: None,
            note: None,
            survivor: None,
        });
    }
    summary.review_pairs = pairs.len() as u64;
    for chunk in pairs.chunks(5000) {
        store.review_pairs_insert(chunk).await?;
    }
    summary.phase("review_pairs", &mut phase);
    report.w.flush()?;
    summary.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    let json = serde_json::to_string_pretty(&summary)?;
    let outcome = format!(
        "rows={} rejected={} new={} linked={} review={} ids={}",
        summary.rows_read,
        summary.rows_rejected,
        summary.new_people,
        summary.linked_within_batch + summary.linked_to_registry,
        summary.review_pairs,
        summary.ids_assigned
    );
    store
        .import_finish(&batch_id, &json, &audit_entry(&officer, "import.finish", &batch_id, outcome, o.client))
        .await?;
    track.stage(Stage::Done, None);
    Ok(summary)
}

/// What a linkage-only run (`dancu dedupe`) was asked to do.
pub struct DedupeOptions {
    pub file: PathBuf,
    pub format: Format,
    /// The unit the rows belong to (resolves commune names, and is every row's commune when a
    /// commune unit's file has no commune column).
    pub unit: String,
    /// The column mapping: CSV text of `field,column` lines.
    pub mapping: Option<String>,
    /// Where the clusters go: CSV `line,cluster` for every row linked (the cluster is the first
    /// line of the person's rows).
    pub out: PathBuf,
    /// Where the linked and review pairs go, field by field (none: not written).
    pub pairs: Option<PathBuf>,
    /// The report: rows the import would refuse, and why (they take part with what they have).
    pub report: PathBuf,
    /// Where progress goes: the stages `Reading`, `Linking` and `Done`, the rows read.
    pub progress: Arc<dyn Progress>,
}

/// What a linkage-only run found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DedupeSummary {
    pub rows_read: u64,
    /// Rows without a readable name: left out (in the report).
    pub rows_unusable: u64,
    /// Rows the import would refuse (in the report) that still took part with their usable fields.
    pub rows_import_would_reject: u64,
    pub records: u64,
    /// People of two or more rows.
    pub clusters: u64,
    /// Rows in those clusters.
    pub rows_in_clusters: u64,
    pub candidate_pairs: u64,
    /// Pairs of oversized blocks left uncompared (see the import's summary).
    pub uncompared_pairs: u64,
    pub link_pairs: u64,
    pub review_pairs: u64,
    /// Candidate pairs per blocking rule (new ones: not proposed by an earlier rule).
    pub blocking: std::collections::BTreeMap<String, u64>,
    pub seconds: f64,
    pub phases: std::collections::BTreeMap<String, f64>,
    pub out: String,
    pub report: String,
}

/// Linkage without import: the import's normalization, blocking, scoring and clustering over a
/// file, nothing stored. Rows the import would refuse (a missing sex or birth registration
/// province, as in files from other systems) take part with the fields they have: a missing or
/// unreadable field weighs nothing, it is never a disagreement.
pub fn dedupe(o: &DedupeOptions) -> Result<DedupeSummary> {
    let started = Instant::now();
    let mut phase = Instant::now();
    let unit = ImportUnit::parse(&o.unit).map_err(|e| input(format!("--unit: {e}")))?;
    let mapping = match &o.mapping {
        None => HashMap::new(),
        Some(text) => dancu_core::intake::row::parse_mapping(text).map_err(|e| input(format!("mapping: {e}")))?,
    };
    let mut source = rows(&o.file, o.format)?;
    let header = match source.next() {
        Some(Ok((_, h))) => h,
        Some(Err((line, e))) => return Err(input(format!("line {line}: {e}"))),
        None => return Err(input("the file is empty / tệp rỗng")),
    };
    let map = ColumnMap::for_linkage(&header, &mapping).map_err(|e| input(e.to_string()))?;
    let norm = RowNormalizer::new(map, unit, today(), o.format == Format::Xlsx);
    let mut norms = vec![norm; par::threads()];
    let mut report = Report::create(&o.report)?;
    let mut summary = DedupeSummary {
        out: o.out.display().to_string(),
        report: o.report.display().to_string(),
        ..Default::default()
    };
    let mut lines: Vec<u64> = Vec::new();
    let mut features = FeatureBuilder::new();
    let mut records: Vec<LinkRecord> = Vec::new();
    let mut track = Tracker {
        sink: o.progress.clone(),
        at: Snapshot { stage: Stage::Reading, done: 0, total: None, rows_read: 0, rows_rejected: 0, rows_stored: 0 },
    };
    track.stage(Stage::Reading, None);
    for batch in read_in_background(source) {
        let read = par::map_with(&mut norms, &batch, |norm, r| match r {
            Err((line, reason)) => Some((*line, Err(vec![unreadable(reason)]))),
            Ok((_, cells)) if cells.iter().all(|c| c.trim().is_empty()) => None,
            Ok((line, cells)) => Some((*line, norm.link_record(cells))),
        });
        for (line, r) in read.into_iter().flatten() {
            summary.rows_read += 1;
            match r {
                Err(problems) => {
                    summary.rows_unusable += 1;
                    for p in &problems {
                        report.rejected(line, p)?;
                    }
                }
                Ok(row) => {
                    if !row.problems.is_empty() {
                        summary.rows_import_would_reject += 1;
                    }
                    for p in &row.problems {
                        report.rejected(line, p)?;
                    }
                    for n in &row.notes {
                        let kind = if n.code == "part_merge" { "flagged" } else { "converted" };
                        report.note(line, kind, &n.field, &n.value, n.code, &n.reason)?;
                    }
                    lines.push(line);
                    records.push(row.record);
                }
            }
        }
        if records.len() >= PREPARE_EVERY {
            features.extend(&records);
            records.clear();
        }
        track.at.rows_read = summary.rows_read;
        track.at.rows_rejected = summary.rows_unusable;
        track.position(summary.rows_read);
    }
    features.extend(&records);
    drop(records);
    report.w.flush()?;
    summary.records = lines.len() as u64;
    summary.phase("read_normalize", &mut phase);
    check_link_size(lines.len())?;
    let config = LinkConfig::default();
    track.stage(Stage::Linking, None);
    let outcome = link_prepared(&features.finish().map_err(|e| input(e.to_string()))?, &config);
    track.stage(Stage::Done, None);
    summary.candidate_pairs = outcome.candidates as u64;
    summary.uncompared_pairs = outcome.blocking.uncompared as u64;
    summary.blocking = outcome.blocking.rules.iter().map(|r| (r.rule.to_string(), r.new_pairs as u64)).collect();
    summary.phase("link", &mut phase);
    let mut cluster_of: Vec<u64> = lines.clone();
    for c in &outcome.clusters {
        summary.clusters += 1;
        summary.rows_in_clusters += c.len() as u64;
        for &i in c {
            cluster_of[i] = lines[c[0]];
        }
    }
    let mut w = csv::Writer::from_path(&o.out).map_err(|e| io(format!("creating {}", o.out.display()), e))?;
    w.write_record(["line", "cluster"])?;
    for (line, cluster) in lines.iter().zip(&cluster_of) {
        w.write_record([line.to_string(), cluster.to_string()])?;
    }
    w.flush()?;
    let mut pairs = match &o.pairs {
        Some(path) => {
            let mut w = csv::Writer::from_path(path).map_err(|e| io(format!("creating {}", path.display()), e))?;
            let mut head = vec!["line_a", "line_b", "band", "weight", "probability"];
            head.extend(dancu_core::intake::linkage::Field::ALL.iter().map(|f| f.code()));
            w.write_record(&head)?;
            Some(w)
        }
        None => None,
    };
    for p in outcome.pairs.iter().filter(|p| p.band != Band::Distinct) {
        match p.band {
            Band::Link => summary.link_pairs += 1,
            _ => summary.review_pairs += 1,
        }
        if let Some(w) = pairs.as_mut() {
            let mut row = vec![
                lines[p.a].to_string(),
                lines[p.b].to_string(),
                p.band.code().to_string(),
                format!("{:.2}", p.weight),
                format!("{:.6}", p.probability),
            ];
            let e = outcome.model.explain(&p.comparison, &p.adjustments, &config.thresholds);
            row.extend(e.fields.iter().map(|f| f.level.map_or(String::new(), |l| format!("{l} ({:+.1})", f.weight))));
            w.write_record(&row)?;
        }
    }
    if let Some(mut w) = pairs {
        w.flush()?;
    }
    summary.phase("write", &mut phase);
    summary.seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0;
    Ok(summary)
}

/// What storing the rows of a batch needs from the linkage.
struct StoreInputs<'a> {
    n_batch: usize,
    /// The file line of each row kept for storing.
    lines: &'a [u64],
    /// Lines stored by an earlier run of the batch, with their keys.
    done: &'a HashMap<u64, Uuid>,
    /// Rows not stored (refused by the cluster guard's checks).
    refused: &'a HashSet<usize>,
    /// The row or registry record each row is merged into.
    survivor: &'a [Option<usize>],
    registry_keys: &'a [Uuid],
    /// The personal IDs the file's rows carry: never drawn for another row, never drawn again.
    own_ids: Arc<HashSet<PersonalId>>,
    draw: Draw,
}

/// Draws a personal ID for a new person ([`draw_personal_id`]; tests draw from a list).
type Draw = fn(&Person) -> std::result::Result<PersonalId, String>;

fn draw_new_id(p: &Person) -> std::result::Result<PersonalId, String> {
    draw_personal_id(p).map_err(|e| e.to_string())
}

/// A number for a new person that no row of the file carries.
fn draw_free(p: &Person, own_ids: &HashSet<PersonalId>, draw: Draw) -> Result<PersonalId> {
    for _ in 0..64 {
        let id = draw(p).map_err(|e| ImportError::Store(StoreError::State(e)))?;
        if !own_ids.contains(&id) {
            return Ok(id);
        }
    }
    Err(ImportError::Store(StoreError::State(
        "could not draw a personal ID that no row of the file carries after 64 attempts".into(),
    )))
}

/// Makes the personal IDs of a chunk free before it is stored. A number drawn by this import
/// that is issued already, held by an earlier row of the chunk or by the chunk being stored
/// meanwhile (`in_flight`) is drawn again; a number the file carries never is: found issued (a
/// registration elsewhere took it after the import checked it), the import stops at its line.
/// Checks the store in one pass for the whole chunk, then only the rows drawn again.
async fn settle_ids(
    store: &Arc<dyn Store>,
    rows: &mut [ImportedRow],
    in_flight: &HashSet<PersonalId>,
    own_ids: &HashSet<PersonalId>,
    draw: Draw,
) -> Result<()> {
    let mut held: HashSet<PersonalId> = HashSet::with_capacity(rows.len());
    let mut check: Vec<usize> = (0..rows.len()).collect();
    for _ in 0..64 {
        if check.is_empty() {
            return Ok(());
        }
        let mut ids: Vec<PersonalId> = check.iter().filter_map(|&i| rows[i].person.personal_id).collect();
        // In their order: neighbouring pages of the index, not one page each.
        ids.sort_unstable();
        let issued: HashSet<PersonalId> = store.ids_issued(&ids).await?.into_iter().collect();
        let mut again = Vec::new();
        for i in check {
            let r = &mut rows[i];
            let Some(id) = r.person.personal_id else { continue };
            if own_ids.contains(&id) {
                if issued.contains(&id) {
                    return Err(own_id_taken(r.line, id));
                }
                held.insert(id);
            } else if issued.contains(&id) || in_flight.contains(&id) || !held.insert(id) {
                r.person.personal_id = Some(draw_free(&r.person, own_ids, draw)?);
                again.push(i);
            }
        }
        check = again;
    }
    Err(no_free_ids())
}

fn no_free_ids() -> ImportError {
    ImportError::Store(StoreError::State("could not draw unused personal IDs for a chunk after 64 attempts".into()))
}

fn own_id_taken(line: u64, id: PersonalId) -> ImportError {
    input(format!(
        "line {line}: personal ID {id} was issued to another record while this file was being imported; \
         run the import again to refuse this row / dòng {line}: số định danh {id} vừa được cấp cho người khác \
         trong khi nhập tệp; hãy chạy lại để loại dòng này"
    ))
}

/// Pass 2: the rows read back from the spill, stored in chunks (one in flight while the next is
/// made), merged rows pointing at their survivor, new people given their ID; how many were stored.
#[allow(clippy::too_many_arguments)]
async fn store_rows(
    store: &Arc<dyn Store>,
    batch_id: &str,
    meta: &ChangeMeta,
    chunk_rows: usize,
    inputs: StoreInputs<'_>,
    key_of: &mut [Option<Uuid>],
    summary: &mut Summary,
    track: &mut Tracker,
    spill: Spill,
) -> Result<u64> {
    let StoreInputs { n_batch, lines, done, refused, survivor, registry_keys, own_ids, draw } = inputs;
    let mut stored = 0u64;
    let mut chunk: Vec<ImportedRow> = Vec::with_capacity(chunk_rows);
    // The chunk being written (one at a time, in order: a merged row's survivor is stored
    // before it) and its personal IDs; the next chunk's IDs are settled meanwhile.
    let mut in_flight: Option<tokio::task::JoinHandle<Result<()>>> = None;
    let mut in_flight_ids: HashSet<PersonalId> = HashSet::new();
    let mut idx = 0usize;
    if spill.count != n_batch {
        return Err(ImportError::Io(format!("{} rows kept for storing, {n_batch} expected", spill.count)));
    }
    let mut people = spill.people_in_background()?;
    while let Some(batch) = people.recv().await {
        for mut person in batch.map_err(ImportError::Io)? {
            let i = idx;
            idx += 1;
            let line = lines[i];
            if let Some(k) = done.get(&line) {
                key_of[i] = Some(*k);
                summary.already_imported += 1;
                continue;
            }
            if refused.contains(&i) {
                continue;
            }
            let key = Uuid::now_v7();
            key_of[i] = Some(key);
            if let Some(s) = survivor[i] {
                let target = if s >= n_batch {
                    registry_keys[s - n_batch]
                } else {
                    key_of[s].ok_or_else(|| input(format!("line {line}: its survivor was not stored first")))?
                };
                person.merged_into = Some(target.to_string());
                if s >= n_batch {
                    summary.linked_to_registry += 1;
                } else {
                    summary.linked_within_batch += 1;
                }
            } else {
                summary.new_people += 1;
            }
            if person.personal_id.is_some() {
                summary.ids_kept += 1;
            } else if person.merged_into.is_none() {
                match draw_free(&person, &own_ids, draw) {
                    Ok(id) => {
                        person.personal_id = Some(id);
                        person.status = PersonStatus::Active;
                        summary.ids_assigned += 1;
                    }
                    Err(_) => summary.pending_without_id += 1,
                }
            }
            chunk.push(ImportedRow { line, key, person });
            if chunk.len() >= chunk_rows {
                let mut rows = std::mem::replace(&mut chunk, Vec::with_capacity(chunk_rows));
                settle_ids(store, &mut rows, &in_flight_ids, &own_ids, draw).await?;
                if let Some(h) = in_flight.take() {
                    h.await.map_err(|e| ImportError::Io(e.to_string()))??;
                }
                stored += rows.len() as u64;
                track.at.rows_stored = stored;
                track.position(stored);
                in_flight_ids = rows.iter().filter_map(|r| r.person.personal_id).collect();
                let (store, batch_id, meta, own_ids) =
                    (store.clone(), batch_id.to_string(), meta.clone(), own_ids.clone());
                in_flight =
                    Some(tokio::spawn(async move { store_chunk(store, &batch_id, rows, &meta, &own_ids, draw).await }));
            }
        }
    }
    if idx != n_batch {
        return Err(ImportError::Io(format!("{idx} normalized rows read back, {n_batch} expected")));
    }
    if !chunk.is_empty() {
        settle_ids(store, &mut chunk, &in_flight_ids, &own_ids, draw).await?;
    }
    if let Some(h) = in_flight.take() {
        h.await.map_err(|e| ImportError::Io(e.to_string()))??;
    }
    if !chunk.is_empty() {
        stored += chunk.len() as u64;
        store_chunk(store.clone(), batch_id, chunk, meta, &own_ids, draw).await?;
    }
    track.at.rows_stored = stored;
    track.position(stored);
    Ok(stored)
}

fn unreadable(reason: &str) -> CellProblem {
    CellProblem { field: String::new(), value: String::new(), code: "unreadable", reason: reason.to_string() }
}

impl DedupeSummary {
    fn phase(&mut self, name: &str, since: &mut Instant) {
        self.phases.insert(name.into(), (since.elapsed().as_secs_f64() * 10.0).round() / 10.0);
        *since = Instant::now();
    }
}

impl Summary {
    /// Records the seconds since `since` as `name`, and restarts the clock.
    fn phase(&mut self, name: &str, since: &mut Instant) {
        self.phases.insert(name.to_string(), (since.elapsed().as_secs_f64() * 10.0).round() / 10.0);
        *since = Instant::now();
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn reject(summary: &mut Summary, report: &mut Report, line: u64, p: &CellProblem) -> Result<()> {
    summary.rows_rejected += 1;
    *summary.rejected_by_reason.entry(p.code.to_string()).or_default() += 1;
    report.rejected(line, p)
}

/// `FILE.suffix` beside the input (`people.csv` → `people.report.csv`).
pub fn sibling(file: &Path, suffix: &str) -> PathBuf {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "import".into());
    file.with_file_name(format!("{stem}.{suffix}"))
}

/// Stores one chunk whose IDs [`settle_ids`] made free. A number found issued when it is
/// written (taken meanwhile by another writer, or by the chunk before, drawn again after this
/// one was settled) is drawn again and the chunk settled and written anew; a number the file
/// carries is never drawn again ([`settle_ids`]).
async fn store_chunk(
    store: Arc<dyn Store>,
    batch_id: &str,
    mut rows: Vec<ImportedRow>,
    meta: &ChangeMeta,
    own_ids: &HashSet<PersonalId>,
    draw: Draw,
) -> Result<()> {
    for _ in 0..64 {
        match store.import_chunk(batch_id, &rows, meta).await {
            Err(StoreError::IdTaken(id)) => {
                for r in rows.iter_mut().filter(|r| r.person.personal_id == Some(id)) {
                    if own_ids.contains(&id) {
                        return Err(own_id_taken(r.line, id));
                    }
                    r.person.personal_id = Some(draw_free(&r.person, own_ids, draw)?);
                }
                settle_ids(&store, &mut rows, &HashSet::new(), own_ids, draw).await?;
            }
            other => return Ok(other?),
        }
    }
    Err(no_free_ids())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dancu_core::Sex;
    use std::cell::RefCell;
    use std::collections::VecDeque;

    thread_local! {
        /// The numbers [`listed`] draws, in order.
        static DRAWS: RefCell<VecDeque<PersonalId>> = const { RefCell::new(VecDeque::new()) };
    }

    fn listed(_: &Person) -> std::result::Result<PersonalId, String> {
        DRAWS.with(|d| d.borrow_mut().pop_front()).ok_or_else(|| "no number left to draw".to_string())
    }

    fn id(serial: u32) -> PersonalId {
        PersonalId::from_parts("001", Sex::Male, 1950, serial).unwrap()
    }

    fn row(line: u64, id: PersonalId) -> ImportedRow {
        let mut person = Person::new_pending(dancu_store::conformance::sample(line as u32));
        person.personal_id = Some(id);
        person.status = PersonStatus::Active;
        ImportedRow { line, key: Uuid::now_v7(), person }
    }

    #[test]
    fn a_drawn_number_is_never_one_the_file_carries() {
        DRAWS.with(|d| *d.borrow_mut() = [id(1), id(1), id(2)].into());
        let own = HashSet::from([id(1)]);
        assert_eq!(draw_free(&row(2, id(9)).person, &own, listed).unwrap(), id(2));
        assert!(DRAWS.with(|d| d.borrow().is_empty()));
    }

    #[tokio::test]
    async fn a_chunk_draws_again_issued_repeated_and_in_flight_numbers_never_the_files_own() {
        let dir = dancu_store::conformance::scratch_dir("settle");
        std::fs::create_dir_all(&dir).unwrap();
        let store: Arc<dyn Store> = Arc::new(dancu_store::sqlite::SqliteStore::open(dir.join("d.sqlite")).unwrap());
        store.migrate().await.unwrap();
        let meta = ChangeMeta::new("test", "test", None);
        store.insert_person(&row(1, id(10)).person, &meta).await.unwrap();
        // drawn: 10 (issued), 30 twice (the second repeats the first), 40 (the chunk in flight
        // holds it); the file's own: 20 (free), 50 (issued meanwhile)
        let mut rows = vec![row(2, id(10)), row(3, id(20)), row(4, id(30)), row(5, id(30)), row(6, id(40))];
        let own = HashSet::from([id(20), id(50)]);
        let in_flight = HashSet::from([id(40)]);
        // each number drawn is checked in its turn: 20 and 50 are the file's (drawn past at
        // once), 30 is held by an earlier row and 10 is issued (drawn past on the next passes)
        DRAWS.with(|d| *d.borrow_mut() = [id(20), id(11), id(50), id(30), id(12), id(10), id(13)].into());
        settle_ids(&store, &mut rows, &in_flight, &own, listed).await.unwrap();
        let got: Vec<PersonalId> = rows.iter().map(|r| r.person.personal_id.unwrap()).collect();
        assert_eq!(got, [id(11), id(20), id(30), id(13), id(12)]);
        assert!(DRAWS.with(|d| d.borrow().is_empty()));
        // a number the file carries, issued elsewhere after the import checked it: stop at its line
        store.insert_person(&row(1, id(50)).person, &meta).await.unwrap();
        let mut rows = vec![row(7, id(60)), row(8, id(50))];
        match settle_ids(&store, &mut rows, &HashSet::new(), &own, listed).await {
            Err(ImportError::Input(msg)) => {
                assert!(msg.starts_with(&format!("line 8: personal ID {} ", id(50))), "{msg}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rows[1].person.personal_id, Some(id(50)));
    }

    #[test]
    fn a_run_too_large_to_link_is_refused_with_its_size() {
        let most = max_link_records();
        assert!(check_link_size(most).is_ok());
        match check_link_size(most + 1) {
            Err(ImportError::Input(msg)) => assert!(msg.contains(&(most + 1).to_string()), "{msg}"),
            other => panic!("{other:?}"),
        }
    }
}
