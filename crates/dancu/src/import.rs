//! `dancu import`: the import pipeline of `dancu_server::intake` (the same one the web
//! application's intake upload runs), with progress bars on a terminal.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use dancu_server::intake::{self, Progress, Snapshot, Stage};
pub use dancu_server::intake::{Summary, sibling};
use dancu_store::Store;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The input format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Xlsx,
}

/// Whether the people's search indexes are set aside while an import stores (built once at its end).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Indexes {
    /// When the file adds at least 100,000 people and at least half as many as are stored
    Auto,
    /// Always: a first load of a store no one searches yet
    Defer,
    /// Never: a server is using the store and its searches must stay fast meanwhile
    Keep,
}

/// What `dancu import` was asked to do.
pub struct Options {
    pub file: PathBuf,
    pub format: Format,
    pub unit: String,
    pub officer: String,
    pub mapping: Option<PathBuf>,
    pub batch_id: Option<String>,
    pub report: Option<PathBuf>,
    /// Rows per stored chunk (one transaction each).
    pub chunk: usize,
    pub indexes: Indexes,
}

fn bar(len: Option<u64>, what: &str) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    if !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let template = if len.is_some() {
        "{msg} [{bar:40}] {human_pos}/{human_len} ({per_sec}, {eta} left)"
    } else {
        "{msg} {human_pos} rows ({per_sec})"
    };
    pb.set_style(ProgressStyle::with_template(template).expect("template").progress_chars("=> "));
    pb.set_message(what.to_string());
    pb
}

/// One progress bar per stage (a spinner while linking). At each stage it also tells the
/// allocator whether to return freed memory at once: only while linking (see
/// [`crate::return_freed_memory_at_once`]).
#[derive(Default)]
struct Bars {
    current: Mutex<Option<(Stage, ProgressBar)>>,
}

impl Progress for Bars {
    fn update(&self, at: &Snapshot) {
        let mut current = self.current.lock().expect("progress bar");
        if current.as_ref().is_none_or(|(s, _)| *s != at.stage) {
            crate::return_freed_memory_at_once(at.stage == Stage::Linking);
            if let Some((_, pb)) = current.take() {
                pb.finish_and_clear();
            }
            let pb = match at.stage {
                Stage::Reading => bar(None, "reading / đọc"),
                Stage::RegistryCandidates => bar(at.total, "registry candidates / tìm trong CSDL"),
                Stage::Linking => {
                    let pb = bar(None, "linking / đối chiếu trùng");
                    pb.enable_steady_tick(std::time::Duration::from_millis(200));
                    pb
                }
                Stage::Storing => bar(at.total, "storing / lưu"),
                Stage::Indexing => {
                    let pb = bar(None, "search indexes / dựng chỉ mục");
                    pb.enable_steady_tick(std::time::Duration::from_millis(200));
                    pb
                }
                Stage::ReviewPairs | Stage::Done => return,
            };
            *current = Some((at.stage, pb));
        }
        if let Some((_, pb)) = current.as_ref() {
            pb.set_position(at.done);
        }
    }
}

/// Runs an import; returns its summary.
pub async fn run(store: Arc<dyn Store>, o: &Options) -> Result<Summary> {
    let mapping = match &o.mapping {
        None => None,
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading the mapping {}: {e}", p.display()))?)
        }
    };
    let bars = Arc::new(Bars::default());
    let options = intake::Options {
        file: o.file.clone(),
        format: match o.format {
            Format::Csv => intake::Format::Csv,
            Format::Xlsx => intake::Format::Xlsx,
        },
        unit: o.unit.clone(),
        officer: o.officer.clone(),
        mapping,
        batch_id: o.batch_id.clone(),
        report: o.report.clone(),
        chunk: o.chunk,
        indexes: match o.indexes {
            Indexes::Auto => intake::Indexes::Auto,
            Indexes::Defer => intake::Indexes::Defer,
            Indexes::Keep => intake::Indexes::Keep,
        },
        progress: bars.clone(),
        client: "cli",
    };
    let result = intake::run(store, &options).await;
    if let Some((_, pb)) = bars.current.lock().expect("progress bar").take() {
        pb.finish_and_clear();
    }
    result.map_err(|e| match &e {
        intake::ImportError::Input(m) => anyhow::anyhow!("{}: {m}", o.file.display()),
        _ => anyhow::Error::new(e),
    })
}

/// What `dancu dedupe` was asked to do.
pub struct DedupeOptions {
    pub file: PathBuf,
    pub format: Format,
    pub unit: String,
    pub mapping: Option<PathBuf>,
    pub out: PathBuf,
    pub pairs: Option<PathBuf>,
    pub report: PathBuf,
}

/// Runs linkage over a file without importing it; returns its summary.
pub fn dedupe(o: &DedupeOptions) -> Result<intake::DedupeSummary> {
    let bars = Arc::new(Bars::default());
    let mapping = match &o.mapping {
        None => None,
        Some(p) => {
            Some(std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("reading the mapping {}: {e}", p.display()))?)
        }
    };
    let options = intake::DedupeOptions {
        file: o.file.clone(),
        format: match o.format {
            Format::Csv => intake::Format::Csv,
            Format::Xlsx => intake::Format::Xlsx,
        },
        unit: o.unit.clone(),
        mapping,
        out: o.out.clone(),
        pairs: o.pairs.clone(),
        report: o.report.clone(),
        progress: bars.clone(),
    };
    let result = intake::dedupe(&options);
    if let Some((_, pb)) = bars.current.lock().expect("progress bar").take() {
        pb.finish_and_clear();
    }
    result.map_err(|e| match &e {
        intake::ImportError::Input(m) => anyhow::anyhow!("{}: {m}", o.file.display()),
        _ => anyhow::Error::new(e),
    })
}
