//! dancu: the one binary. `demo`, `serve`, `migrate`, `generate`, `seed`, `import`, `sample-ids`,
//! `pki` (the card PKI) and `card` (personalization, passive authentication).

mod cards;
mod import;
mod warm;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use dancu_server::AppState;
use dancu_store::registry::{Registry, today};
use dancu_store::{ChangeMeta, Store};
use dancu_synth::{Config, Generator};
use indicatif::{ProgressBar, ProgressStyle};

/// mimalloc rather than the C library's allocator: a request allocates and frees many small
/// buffers across the runtime's threads (its gain measured only together with other changes:
/// BENCHMARKS, "cheaper requests").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (its place in `mi_option_e`, mimalloc 3; the library's Rust
/// declarations do not name it): how long freed memory stays with the process before it goes back
/// to the system, 1,000 ms by default.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// The purge delay the process started with (mimalloc's default, or `MIMALLOC_PURGE_DELAY`).
static STARTING_PURGE_DELAY: std::sync::OnceLock<std::ffi::c_long> = std::sync::OnceLock::new();

/// Whether memory the process frees goes back to the system at once (`true`) or after the
/// allocator's delay (`false`, the start's setting). At once while an import or `dedupe` links its
/// rows: the linkage frees and fills buffers of gigabytes within a second (the blocking rules' pair
/// lists moved into their union), and with the delay the freed and the new ones are resident
/// together — at 10 million rows a peak half a GiB higher. With the delay everywhere else: reading
/// and storing free many small buffers a second, and returning each at once made reading a sixth
/// slower (BENCHMARKS, "the linkage's peak").
fn return_freed_memory_at_once(yes: bool) {
    // SAFETY: reads and sets one of the allocator's options (an integer it reads when it frees).
    let starting =
        *STARTING_PURGE_DELAY.get_or_init(|| unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) });
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, if yes { 0 } else { starting }) }
}

#[derive(Parser)]
#[command(name = "dancu", version, about = "dancu — national population registry and identity-card platform")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct DbArgs {
    /// Database URL: sqlite://PATH (default: DATA/dancu.sqlite) or postgres://USER@HOST:PORT/DB
    #[arg(long, env = "DANCU_DB")]
    db: Option<String>,
    /// Data folder (the SQLite file lives here)
    #[arg(long, env = "DANCU_DATA", default_value = "dancu-data")]
    data: PathBuf,
    /// Key sealing secrets at rest (officers' TOTP secrets), created on first use; every server
    /// sharing a database needs the same file. Default DATA/keys/secrets.key
    #[arg(long, env = "DANCU_SECRETS_KEY")]
    secrets_key: Option<PathBuf>,
}

impl DbArgs {
    fn secrets(&self) -> Result<Arc<dancu_keys::SecretBox>> {
        let path = self.secrets_key.clone().unwrap_or_else(|| self.data.join("keys").join("secrets.key"));
        Ok(Arc::new(
            dancu_keys::SecretBox::load_or_create(&path).with_context(|| format!("secrets key {}", path.display()))?,
        ))
    }

    fn url(&self) -> String {
        self.db.clone().unwrap_or_else(|| format!("sqlite://{}", self.data.join("dancu.sqlite").display()))
    }
}

#[derive(Subcommand)]
enum Command {
    /// Create a local data folder, seed a synthetic population (first run), start the server
    Demo {
        #[command(flatten)]
        db: DbArgs,
        /// People to seed on the first run
        #[arg(long, default_value_t = 50_000)]
        people: u64,
        #[arg(long, default_value_t = 2021)]
        seed: u64,
        /// 2025 province codes to populate
        #[arg(long, value_delimiter = ',', default_value = "01,79,48,15,92")]
        provinces: Vec<String>,
        #[arg(long, env = "DANCU_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        audit: ServeAuditArgs,
        #[command(flatten)]
        session: SessionArgs,
        #[command(flatten)]
        residence: ResidenceArgs,
        /// The card PKI folder (`dancu pki init`): chips are personalized with its current Document
        /// Signer; default DATA/pki when it exists (without one, production runs are refused)
        #[arg(long, env = "DANCU_PKI")]
        pki: Option<PathBuf>,
    },
    /// Run the HTTP server (applies pending migrations first)
    Serve {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, env = "DANCU_LISTEN", default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        #[command(flatten)]
        audit: ServeAuditArgs,
        #[command(flatten)]
        session: SessionArgs,
        #[command(flatten)]
        residence: ResidenceArgs,
        /// The card PKI folder (`dancu pki init`): chips are personalized with its current Document
        /// Signer; default DATA/pki when it exists (without one, production runs are refused)
        #[arg(long, env = "DANCU_PKI")]
        pki: Option<PathBuf>,
    },
    /// Read files to their end and print the bytes read (the server's read-ahead at start runs
    /// this in a process of its own: see `warm.rs`)
    #[command(hide = true)]
    ReadAhead { files: Vec<PathBuf> },
    /// Apply pending database migrations
    Migrate {
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write a synthetic population as CSV (deterministic for a seed; streams, bounded memory)
    Generate {
        #[arg(long)]
        people: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file ("-" for standard output)
        #[arg(long)]
        out: PathBuf,
        /// 2025 province codes to populate (default: all 34)
        #[arg(long, value_delimiter = ',')]
        provinces: Vec<String>,
        /// Share of households (0-1) still on legacy (pre-2025) commune codes
        #[arg(long, default_value_t = 0.0)]
        legacy_share: f64,
        /// Add this share (0-1) of extra duplicate rows re-recorded with realistic intake errors,
        /// shuffled in, and write which rows are one person to FILE.truth.csv (line,entity)
        #[arg(long)]
        duplicates: Option<f64>,
    },
    /// Import people collected by a unit from a CSV or XLSX file: every row normalized and
    /// validated (rejected rows go to the report with line, field, value and reason), duplicates
    /// found within the file and against the registry (linked, or queued for clerical review),
    /// personal IDs assigned. Safe to re-run: a batch (default id: the file's SHA-256) resumes
    /// where it stopped and is never applied twice.
    Import {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        input: InputArgs,
        /// The officer importing (an active collector of that unit or one above it)
        #[arg(long)]
        officer: String,
        /// Batch id (default: the file's SHA-256)
        #[arg(long)]
        batch_id: Option<String>,
        /// Report CSV (default: FILE.report.csv beside the input)
        #[arg(long)]
        report: Option<PathBuf>,
        /// Summary JSON (default: FILE.summary.json beside the input)
        #[arg(long)]
        summary: Option<PathBuf>,
        /// Rows per stored chunk (one transaction each)
        #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        chunk: u32,
        /// Set the people's search indexes aside while storing and build them once at the end
        /// (much faster for a bulk load; meanwhile a server's searches on this store read the
        /// whole table)
        #[arg(long, value_enum, default_value = "auto")]
        indexes: import::Indexes,
    },
    /// Find the duplicates in a CSV or XLSX file without importing it (nothing is stored): the
    /// import's normalization and record linkage, with every field a row lacks (or that does not
    /// read) taken as missing. Writes the clusters (line,cluster: the first line of the person's
    /// rows), optionally the linked and review pairs field by field, and a report of the rows the
    /// import would refuse.
    Dedupe {
        #[command(flatten)]
        input: InputArgs,
        /// Clusters CSV (default: FILE.clusters.csv beside the input)
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also write the linked and review pairs, field by field, to this CSV
        #[arg(long)]
        pairs: Option<PathBuf>,
        /// Report CSV (default: FILE.report.csv beside the input)
        #[arg(long)]
        report: Option<PathBuf>,
        /// Summary JSON (default: FILE.dedupe.json beside the input)
        #[arg(long)]
        summary: Option<PathBuf>,
    },
    /// Load a synthetic population into a store as active people with personal IDs
    Seed {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long)]
        people: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_delimiter = ',')]
        provinces: Vec<String>,
        /// Share of households (0-1) still on legacy (pre-2025) commune codes (for `addresses migrate`)
        #[arg(long, default_value_t = 0.0)]
        legacy_share: f64,
    },
    /// Addresses: `addresses migrate` moves legacy commune codes to the 2025 ones
    Addresses {
        #[command(subcommand)]
        command: AddressesCommand,
    },
    /// The audit trail: verify its hash chain and signed checkpoints, or sign a checkpoint now
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Officer accounts: `officer add` bootstraps the first administrator
    Officer {
        #[command(subcommand)]
        command: OfficerCommand,
    },
    /// The identity-card PKI: Country Signing CA, Document Signers, CRL
    Pki {
        #[command(subcommand)]
        command: cards::PkiCommand,
    },
    /// Identity cards: personalize a chip, verify one (passive authentication), benchmark
    Card {
        #[command(subcommand)]
        command: cards::CardCommand,
    },
    /// Residence: end expired temporary residences; compute a statutory deadline
    Residence {
        #[command(subcommand)]
        command: ResidenceCommand,
    },
    /// Print a random sample of issued personal IDs, one a line (for benchmarks)
    SampleIds {
        #[command(flatten)]
        db: DbArgs,
        #[arg(long, default_value_t = 10_000)]
        count: u32,
    },
}

#[derive(Subcommand)]
enum OfficerCommand {
    /// Create an officer account. The password is read from standard input with
    /// --password-stdin; otherwise a strong one is generated and printed once. Roles that
    /// require a second factor (approver, auditor, system_administrator) get a TOTP secret,
    /// printed as an otpauth:// URI to enrol in an authenticator app.
    Add {
        #[command(flatten)]
        db: DbArgs,
        /// Login name: 3-64 of a-z, 0-9, '.', '_', '-'
        #[arg(long)]
        username: String,
        /// Full name, as shown to other officers
        #[arg(long)]
        name: String,
        /// ministry, province:CODE, district:CODE (legacy) or commune:CODE (2025; legacy:CODE for legacy)
        #[arg(long)]
        unit: String,
        /// Comma-separated: collector, verifier, approver, card_operator, production_operator,
        /// partner_administrator, auditor, system_administrator
        #[arg(long, value_delimiter = ',', required = true)]
        roles: Vec<String>,
        /// Comma-separated rights beyond the roles: sensitive_data (read religion, blood type,
        /// identifying features)
        #[arg(long, value_delimiter = ',')]
        permissions: Vec<String>,
        #[arg(long)]
        password_stdin: bool,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Walk the whole trail; report the first modified, deleted, inserted or reordered entry.
    /// Exits 0 when intact, 1 when tampered with.
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// The trusted public key of the checkpoint signer (PEM); default: the server's own
        /// (`KEY.pub.pem` beside the audit key)
        #[arg(long)]
        public_key: Option<PathBuf>,
        #[command(flatten)]
        key: AuditKeyArgs,
    },
    /// Sign a checkpoint of the current head of the trail
    Checkpoint {
        #[command(flatten)]
        db: DbArgs,
        #[command(flatten)]
        key: AuditKeyArgs,
    },
}

#[derive(Subcommand)]
enum AddressesCommand {
    /// Move residence addresses from legacy commune codes to the 2025 ones with the official
    /// conversion table: whole merges automatically (the record's history keeps the old code),
    /// partial merges to the review queue; reports the counts and the rate
    Migrate {
        #[command(flatten)]
        db: DbArgs,
        /// People per transaction
        #[arg(long, default_value_t = 5000)]
        batch: u32,
    },
}

#[derive(Subcommand)]
enum ResidenceCommand {
    /// End every temporary residence whose registration expired before today (the server also
    /// does this every hour)
    Expire {
        #[command(flatten)]
        db: DbArgs,
        /// Treat this day (YYYY-MM-DD) as today
        #[arg(long)]
        on: Option<String>,
    },
    /// The deadline of an application submitted on a day, N working days later (weekends,
    /// public holidays, Tết skipped); lists the days off in between
    Deadline {
        /// Day of submission, YYYY-MM-DD
        #[arg(long)]
        from: String,
        /// Working days
        #[arg(long)]
        days: u32,
        #[command(flatten)]
        residence: ResidenceArgs,
    },
}

#[derive(Args, Clone)]
struct ResidenceArgs {
    /// Holiday schedule changes, one a line: `YYYY-MM-DD,holiday,Name` or `YYYY-MM-DD,working_day`
    /// (the yearly schedule announced by the government), applied over the statutory holidays
    #[arg(long, env = "DANCU_HOLIDAYS")]
    holidays: Option<PathBuf>,
    /// The key residence confirmations are signed with (PKCS#8 PEM, created on first use);
    /// default DATA/keys/residence-confirmation.pem
    #[arg(long, env = "DANCU_CONFIRMATION_KEY")]
    confirmation_key: Option<PathBuf>,
}

impl ResidenceArgs {
    fn calendar(&self) -> Result<dancu_core::calendar::HolidayCalendar> {
        let mut c = dancu_core::calendar::HolidayCalendar::vietnam(2000..=2100);
        if let Some(path) = &self.holidays {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            c.configure(&text).map_err(|e| {
                anyhow::anyhow!("{}: {}: {} ({})", path.display(), e.field, e.reason, e.value.unwrap_or_default())
            })?;
        }
        Ok(c)
    }
}

fn check_share(share: f64) -> Result<()> {
    if !(0.0..=1.0).contains(&share) {
        bail!("--legacy-share must lie between 0 and 1 (got {share})");
    }
    Ok(())
}

fn parse_day(what: &str, s: &str) -> Result<time::Date> {
    dancu_core::date::iso_date::parse(s).with_context(|| format!("{what}: not a date YYYY-MM-DD: {s:?}"))
}

async fn residence_command(command: ResidenceCommand) -> Result<()> {
    match command {
        ResidenceCommand::Expire { db, on } => {
            let store = open_store(&db).await?;
            let day = on.as_deref().map(|d| parse_day("--on", d)).transpose()?.unwrap_or_else(today);
            let n = Registry::new(store)
                .expire_temporary(day, "dancu-residence-expiry")
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{n} temporary residence(s) ended (registration expired before {day})");
            Ok(())
        }
        ResidenceCommand::Deadline { from, days, residence } => {
            let from = parse_day("--from", &from)?;
            let c = residence.calendar()?;
            let due = c.deadline(from, days);
            println!("{}", dancu_core::date::iso_date::format(due));
            for h in c.holidays_between(from, due) {
                println!("  {} {}", dancu_core::date::iso_date::format(h.date), h.name);
            }
            Ok(())
        }
    }
}

/// The file of an import or a deduplication and how to read it.
#[derive(Args, Clone)]
struct InputArgs {
    file: PathBuf,
    #[arg(long, value_enum, default_value = "csv")]
    format: import::Format,
    /// The unit the rows belong to: commune:CODE or province:CODE (2025 codes)
    #[arg(long)]
    unit: String,
    /// A CSV of `field,column` lines naming the file's column for each field
    #[arg(long)]
    mapping: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ServeAuditArgs {
    #[command(flatten)]
    key: AuditKeyArgs,
    /// Sign a checkpoint of the audit trail after this many entries (and every minute)
    #[arg(long, default_value_t = 1000)]
    checkpoint_every: i64,
    /// While the machine's processors are at least 90% busy, start group commits of the audit
    /// trail at least this many microseconds apart: each carries more entries (fewer disk flushes
    /// per entry), a request waits at most this much longer; 0: each commit as soon as the
    /// previous one is done
    #[arg(long, env = "DANCU_AUDIT_COMMIT_SPACING_US", default_value_t = 1500)]
    audit_commit_spacing_us: u64,
    /// Turn the audit trail off (for measuring its cost only: nothing is recorded)
    #[arg(long, env = "DANCU_NO_AUDIT")]
    no_audit: bool,
}

#[derive(Args, Clone)]
struct SessionArgs {
    /// A login session unused this many minutes ends
    #[arg(long, env = "DANCU_SESSION_IDLE_MINUTES", default_value_t = 30)]
    session_idle_minutes: u64,
    /// A login session ends this many hours after login
    #[arg(long, env = "DANCU_SESSION_HOURS", default_value_t = 8)]
    session_hours: u64,
    /// Key signing partners' access tokens and every partner response (published at
    /// /.well-known/jwks.json), created on first start. Default DATA/keys/sharing-signing.pem
    #[arg(long, env = "DANCU_SHARING_KEY")]
    sharing_key: Option<PathBuf>,
    /// The server's public base URL: the issuer of partner tokens and the audience partners put
    /// in their client assertions. Default http://LISTEN
    #[arg(long, env = "DANCU_PUBLIC_URL")]
    public_url: Option<String>,
    /// The longest wait between two tries of a webhook delivery (the wait doubles from 2 s)
    #[arg(long, env = "DANCU_WEBHOOK_BACKOFF_MAX_SECONDS", default_value_t = 3600)]
    webhook_backoff_max_seconds: u64,
    /// Certificate authorities (PEM) trusted for https:// webhook receivers besides the system's
    /// (e.g. the government network's own CA)
    #[arg(long, env = "DANCU_WEBHOOK_CA")]
    webhook_ca: Option<PathBuf>,
    /// Also serve the API over mutual TLS on this address: partners registered with a client
    /// certificate fingerprint are authenticated by it (needs --mtls-cert, --mtls-key, --mtls-client-ca)
    #[arg(long, env = "DANCU_MTLS_LISTEN")]
    mtls_listen: Option<std::net::SocketAddr>,
    /// The TLS port's certificate chain (PEM)
    #[arg(long, env = "DANCU_MTLS_CERT")]
    mtls_cert: Option<PathBuf>,
    /// The TLS port's private key (PEM, PKCS#8 or SEC1)
    #[arg(long, env = "DANCU_MTLS_KEY")]
    mtls_key: Option<PathBuf>,
    /// The CA certificates (PEM) partners' client certificates must chain to
    #[arg(long, env = "DANCU_MTLS_CLIENT_CA")]
    mtls_client_ca: Option<PathBuf>,
    /// The partner CAs' certificate revocation lists (PEM): revoked client certificates are
    /// refused. The TLS files are read again within 30 s of a change
    #[arg(long, env = "DANCU_MTLS_CRL")]
    mtls_crl: Option<PathBuf>,
    /// The largest file the web application's intake upload accepts, in MiB (uploads and their
    /// error reports are kept in DATA/intake)
    #[arg(long, env = "DANCU_INTAKE_MAX_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=4096))]
    intake_max_mb: u64,
    /// Read the store's files into the page cache at start, in the background, so that the first
    /// requests after a restart do not each wait on the disk (auto: when they fit in half of the
    /// memory available)
    #[arg(long, env = "DANCU_WARM_CACHE", value_enum, default_value = "auto")]
    warm_cache: warm::WarmCache,
}

impl SessionArgs {
    fn config(&self) -> Result<dancu_server::auth::AuthConfig> {
        if self.session_idle_minutes == 0 || self.session_hours == 0 {
            bail!("--session-idle-minutes and --session-hours must be at least 1");
        }
        Ok(dancu_server::auth::AuthConfig {
            idle: std::time::Duration::from_secs(self.session_idle_minutes * 60),
            absolute: std::time::Duration::from_secs(self.session_hours * 3600),
        })
    }
}

#[derive(Args, Clone)]
struct AuditKeyArgs {
    /// The audit checkpoint signing key (PKCS#8 PEM, created on first use); default DATA/keys/audit-checkpoint.pem
    #[arg(long = "audit-key", env = "DANCU_AUDIT_KEY")]
    path: Option<PathBuf>,
}

impl AuditKeyArgs {
    fn path(&self, db: &DbArgs) -> PathBuf {
        self.path.clone().unwrap_or_else(|| db.data.join("keys").join("audit-checkpoint.pem"))
    }
}

/// A demo account as printed at start.
struct DemoLogin {
    username: String,
    password: String,
    about: String,
    totp_uri: Option<String>,
}

/// The demo's officer accounts, made on the first run and remembered in the data folder
/// (readable by its owner only): a ministry officer, a commune officer (sees only the people of
/// one commune), a ministry approver/auditor (second factor required), a card production operator
/// and a partner administrator.
async fn demo_logins(store: &Arc<dyn Store>, db: &DbArgs) -> Result<Vec<DemoLogin>> {
    use dancu_core::auth::{self, Officer, Role, Unit};
    let file = db.data.join("demo-logins.txt");
    if let Ok(text) = std::fs::read_to_string(&file) {
        let mut out = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            let f: Vec<&str> = line.splitn(4, '\t').collect();
            if f.len() == 4 && store.officer_get(f[0]).await?.is_some() {
                out.push(DemoLogin {
                    username: f[0].into(),
                    password: f[1].into(),
                    about: f[3].into(),
                    totp_uri: Some(f[2]).filter(|u| !u.is_empty()).map(str::to_string),
                });
            }
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    // The commune officer's commune: the one where most people live (a demo officer of a commune
    // with one resident would see little).
    let mut by_commune = std::collections::HashMap::<String, u64>::new();
    for cell in store.population(None).await? {
        if let Some(code) = cell.commune_key.as_deref().and_then(|k| k.strip_prefix("2025:")) {
            *by_commune.entry(code.to_string()).or_default() += cell.count;
        }
    }
    let commune = by_commune
        .into_iter()
        .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        .map(|(code, _)| code)
        .unwrap_or_else(|| "00004".into());
    let specs = [
        (
            "demo",
            "ministry".to_string(),
            vec![Role::Collector, Role::Verifier, Role::CardOperator],
            "Bộ Công an: thu thập, kiểm tra, cấp thẻ",
        ),
        (
            "demo.xa",
            format!("commune:{commune}"),
            vec![Role::Collector, Role::Verifier],
            "Công an xã: chỉ thấy dân cư của xã",
        ),
        (
            "demo.lanhdao",
            "ministry".to_string(),
            vec![Role::Approver, Role::Auditor],
            "phê duyệt, kiểm toán; cần mã OTP",
        ),
        (
            "demo.sanxuat",
            "ministry".to_string(),
            vec![Role::ProductionOperator],
            "trung tâm sản xuất thẻ: cá nhân hóa, dữ liệu chip",
        ),
        ("demo.doitac", "ministry".to_string(), vec![Role::PartnerAdministrator], "quản trị đối tác khai thác dữ liệu"),
    ];
    let secrets = db.secrets()?;
    let mut out = Vec::new();
    for (username, unit, roles, about) in specs {
        let password = auth::base32_encode(&random_bytes::<10>()?).to_lowercase();
        let totp = roles.iter().any(|r| r.requires_mfa()).then(random_bytes::<20>).transpose()?;
        let officer = Officer {
            username: username.into(),
            display_name: format!("Cán bộ demo {username}"),
            unit: Unit::parse(&unit).map_err(anyhow::Error::msg)?,
            roles,
            permissions: vec![],
            password_hash: auth::hash_password(&password, &random_bytes::<16>()?),
            totp_secret: totp.map(|s| secrets.seal(&auth::base32_encode(&s), username)).transpose()?,
            totp_last_step: None,
            totp_pending: None,
            failed_logins: 0,
            locked_until: None,
            active: true,
        };
        match store.officer_insert(&officer).await {
            Ok(()) | Err(dancu_store::StoreError::Duplicate(_)) => {}
            Err(e) => return Err(e.into()),
        }
        out.push(DemoLogin {
            username: username.into(),
            password,
            about: format!("{about} — {unit}"),
            totp_uri: totp.map(|s| auth::otpauth_uri(&s, username)),
        });
    }
    let text: String = out
        .iter()
        .map(|l| format!("{}\t{}\t{}\t{}\n", l.username, l.password, l.totp_uri.clone().unwrap_or_default(), l.about))
        .collect();
    write_private(&file, &text)?;
    Ok(out)
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, text: &str) -> Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| anyhow::anyhow!("the operating system's random source failed: {e}"))?;
    Ok(b)
}

async fn officer_command(command: OfficerCommand) -> Result<()> {
    use dancu_core::access::Permission;
    use dancu_core::auth::{self, Officer, Role, Unit};
    let OfficerCommand::Add { db, username, name, unit, roles, permissions, password_stdin } = command;
    if let Some(p) = auth::username_problem(&username) {
        bail!("--username {username:?}: {p}");
    }
    let name = dancu_core::text::clean(&name);
    if name.is_empty() || name.chars().count() > 100 {
        bail!("--name: 1 to 100 characters");
    }
    let unit = Unit::parse(&unit).map_err(|e| anyhow::anyhow!("--unit {e}"))?;
    let roles = roles
        .iter()
        .map(|r| {
            Role::from_code(r.trim()).ok_or_else(|| {
                let all: Vec<&str> = Role::ALL.iter().map(|r| r.code()).collect();
                anyhow::anyhow!("--roles: unknown role {r:?} (one of {})", all.join(", "))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let permissions = permissions
        .iter()
        .map(|p| {
            Permission::from_code(p.trim()).ok_or_else(|| {
                let all: Vec<&str> = Permission::ALL.iter().map(|p| p.code()).collect();
                anyhow::anyhow!("--permissions: unknown permission {p:?} (one of {})", all.join(", "))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let (password, generated) = if password_stdin {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).context("reading the password from standard input")?;
        let p = line.trim_end_matches(['\n', '\r']).to_string();
        if let Some(problem) = auth::password_problem(&p) {
            bail!("the password must have {problem}");
        }
        (p, false)
    } else {
        (auth::base32_encode(&random_bytes::<15>()?), true)
    };
    let totp = roles.iter().any(|r| r.requires_mfa()).then(random_bytes::<20>).transpose()?;
    let secrets = db.secrets()?;
    let officer = Officer {
        username: username.clone(),
        display_name: name,
        unit,
        roles,
        permissions,
        password_hash: auth::hash_password(&password, &random_bytes::<16>()?),
        totp_secret: totp.map(|s| secrets.seal(&auth::base32_encode(&s), &username)).transpose()?,
        totp_last_step: None,
        totp_pending: None,
        failed_logins: 0,
        locked_until: None,
        active: true,
    };
    let store = open_store(&db).await?;
    store.officer_insert(&officer).await?;
    say(format!("Đã tạo tài khoản / officer created: {username} ({})", officer.unit.code_str()));
    if generated {
        say(format!("Mật khẩu / password (shown once): {password}"));
    }
    if let Some(secret) = totp {
        say("Xác thực hai lớp / second factor required: enrol this in an authenticator app:".to_string());
        say(format!("  {}", auth::otpauth_uri(&secret, &username)));
    }
    Ok(())
}

async fn audit_command(command: AuditCommand) -> Result<()> {
    match command {
        AuditCommand::Verify { db, public_key, key } => {
            let store = open_store(&db).await?;
            let pk_path = public_key.unwrap_or_else(|| dancu_keys::public_key_path(&key.path(&db)));
            let pk = dancu_keys::read_public_key_pem(&pk_path)?;
            match dancu_store::audit::verify(store.as_ref(), &pk).await? {
                Ok(r) => {
                    say(format!(
                        "audit trail intact: {} entries (last {}), {} signed checkpoint(s), {} entries after the last checkpoint",
                        r.entries, r.last_seq, r.checkpoints, r.unanchored
                    ));
                    Ok(())
                }
                Err(t) => {
                    say(format!("AUDIT TRAIL TAMPERED WITH: {t}"));
                    std::process::exit(1);
                }
            }
        }
        AuditCommand::Checkpoint { db, key } => {
            let store = open_store(&db).await?;
            let signer = std::sync::Arc::new(dancu_keys::SoftwareKey::load_or_create(&key.path(&db))?);
            match dancu_store::audit::Auditor::new(store, signer).checkpoint().await? {
                Some(c) => say(format!("signed checkpoint at entry {} (key {})", c.seq, c.key_id)),
                None => say("nothing to sign: the last checkpoint covers the whole trail".to_string()),
            }
            Ok(())
        }
    }
}

/// Logs to standard error: human-readable (colour on a terminal only), or one JSON object a
/// line with `DANCU_LOG_FORMAT=json`.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DANCU_LOG").unwrap_or_else(|_| "info".into());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if std::env::var("DANCU_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn progress(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
            .expect("template")
            .progress_chars("=> "),
    );
    pb.set_message(what.to_string());
    pb
}

async fn open_store(db: &DbArgs) -> Result<Arc<dyn Store>> {
    let url = db.url();
    if url.starts_with("sqlite://") && db.db.is_none() {
        std::fs::create_dir_all(&db.data).with_context(|| format!("creating data folder {}", db.data.display()))?;
    }
    let store = dancu_store::open(&url).await.with_context(|| format!("opening database {}", redact(&url)))?;
    let applied = store.migrate().await.context("applying migrations")?;
    if applied > 0 {
        tracing::info!(applied, backend = store.backend(), "migrations applied");
    }
    Ok(store)
}

/// A database URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..s + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

fn synth_config(seed: u64, provinces: Vec<String>, legacy_share: f64) -> Config {
    Config { seed, provinces, today: today(), legacy_share }
}

/// Seeds `people` synthetic people in batches; about 2% stay pending (collected, no ID yet).
async fn seed(store: Arc<dyn Store>, people: u64, seed: u64, provinces: Vec<String>, legacy_share: f64) -> Result<()> {
    let registry = Registry::new(store);
    let generator = Generator::new(&synth_config(seed, provinces, legacy_share)).map_err(anyhow::Error::msg)?;
    let meta = ChangeMeta::new("dancu-seed", "Dữ liệu dân cư tổng hợp (synthetic population)", None);
    let pb = progress(people, "seeding");
    let started = Instant::now();
    let mut active = Vec::with_capacity(5000);
    let mut pending_batch = Vec::new();
    let mut pending = 0u64;
    let flush = |active: Vec<dancu_core::PersonInput>, pending: Vec<dancu_core::PersonInput>| {
        let registry = registry.clone();
        let meta = meta.clone();
        async move {
            let n = (active.len() + pending.len()) as u64;
            registry.load_active(active, &meta).await.map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
            registry.load_pending(pending, &meta).await.map_err(|e| anyhow::anyhow!("seeding: {e}"))?;
            anyhow::Ok(n)
        }
    };
    for (i, p) in generator.take(people as usize).enumerate() {
        if i % 50 == 49 {
            pending_batch.push(p.person);
            pending += 1;
        } else {
            active.push(p.person);
        }
        if active.len() == 5000 {
            pb.inc(flush(std::mem::take(&mut active), std::mem::take(&mut pending_batch)).await?);
        }
    }
    pb.inc(flush(active, pending_batch).await?);
    pb.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "seeded {people} people ({} active, {pending} pending) in {secs:.1} s ({:.0}/s)",
        people - pending,
        people as f64 / secs
    );
    Ok(())
}

/// Prints a line for the person at the terminal; a closed standard output is not an error
/// (`println!` would panic and take the server down with it).
fn say(line: String) {
    let _ = writeln!(std::io::stdout(), "{line}");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

/// The development channel of citizens' one-time login codes: DATA/citizen-codes.log (0600),
/// one `time challenge code` line per code, nothing else about the person.
fn citizen_channel(db: &DbArgs) -> Result<Arc<dyn dancu_server::citizen::CodeChannel>> {
    std::fs::create_dir_all(&db.data).with_context(|| format!("data folder {}", db.data.display()))?;
    let path = db.data.join("citizen-codes.log");
    tracing::warn!(file = %path.display(), "citizen login codes go to the development channel (a file), not to phones");
    Ok(Arc::new(dancu_server::citizen::FileChannel::new(path)))
}

#[allow(clippy::too_many_arguments)]
async fn serve(
    store: Arc<dyn Store>,
    db: &DbArgs,
    listen: SocketAddr,
    audit: &ServeAuditArgs,
    session: &SessionArgs,
    residence: &ResidenceArgs,
    pki: Option<&std::path::Path>,
    banner: impl FnOnce(SocketAddr),
) -> Result<()> {
    let auth = session.config()?;
    let warming = warm::start(session.warm_cache, store.local_files());
    // The Document Signer of personalization: the named PKI folder (which must load), else
    // DATA/pki when one was made there.
    let default_pki = db.data.join("pki");
    let pki_dir = match pki {
        Some(dir) => Some(dir.to_path_buf()),
        None if default_pki.join("pki.json").exists() => Some(default_pki),
        None => {
            tracing::warn!("no card PKI: production runs (chip personalization) and chip verification are refused");
            None
        }
    };
    let card_signer = match &pki_dir {
        Some(dir) => Some(cards::document_signer(dir).with_context(|| format!("card PKI {}", dir.display()))?),
        None => None,
    };
    // The web application verifies chips against the PKI's CSCA certificate and CRL.
    let card_trust = match &pki_dir {
        Some(dir) => Some(cards::trust_anchors(dir).with_context(|| format!("card PKI {}", dir.display()))?),
        None => None,
    };
    let registry = Registry::new(store.clone()).with_calendar(residence.calendar()?);
    let confirmation_path =
        residence.confirmation_key.clone().unwrap_or_else(|| db.data.join("keys").join("residence-confirmation.pem"));
    let confirmation_key: Arc<dyn dancu_keys::Signer> = Arc::new(
        dancu_keys::SoftwareKey::load_or_create(&confirmation_path)
            .with_context(|| format!("residence confirmation key {}", confirmation_path.display()))?,
    );
    {
        // Temporary residences end by themselves when their registration expires.
        let registry = registry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
            loop {
                tick.tick().await;
                match registry.expire_temporary(today(), "dancu-residence-expiry").await {
                    Ok(n) if n > 0 => tracing::info!(ended = n, "expired temporary residences ended"),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "ending expired temporary residences failed"),
                }
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let addr = listener.local_addr()?;
    let mut audit_public_key = None;
    let auditor = if audit.no_audit {
        tracing::warn!("the audit trail is OFF: reads and changes of personal data are not recorded");
        None
    } else {
        let key_path = audit.key.path(db);
        let signer = Arc::new(
            dancu_keys::SoftwareKey::load_or_create(&key_path)
                .with_context(|| format!("audit checkpoint key {}", key_path.display()))?,
        );
        tracing::info!(key_id = dancu_keys::Signer::key_id(signer.as_ref()), "audit trail on");
        audit_public_key = Some(dancu_keys::Signer::public_key_der(signer.as_ref()).to_vec());
        Some(dancu_store::audit::Auditor::new(store.clone(), signer))
    };
    let writer = auditor.clone().map(|a| {
        let spacing = dancu_store::audit::CommitSpacing {
            min: std::time::Duration::from_micros(audit.audit_commit_spacing_us),
            when_busy: 0.9,
        };
        dancu_store::audit::AuditWriter::spawn(a, audit.checkpoint_every.max(1), spacing)
    });
    // The audit query indexes: caught up from their stored high-water mark now, then kept a few
    // seconds behind the chain (queries read the chain past the mark, so they are exact meanwhile).
    let indexer = dancu_store::audit::AuditIndexer::spawn(store.clone(), std::time::Duration::from_secs(5));
    if let Some(a) = auditor.clone() {
        // A checkpoint every minute keeps the unsigned tail short when traffic is light.
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
            loop {
                tick.tick().await;
                if let Err(e) = a.checkpoint().await {
                    tracing::error!(error = %e, "audit checkpoint failed");
                }
            }
        });
    }
    tracing::info!(%addr, backend = store.backend(), "serving");
    banner(addr);
    let sharing_path = session.sharing_key.clone().unwrap_or_else(|| db.data.join("keys").join("sharing-signing.pem"));
    let sharing_key = Arc::new(
        dancu_keys::SoftwareKey::load_or_create(&sharing_path)
            .with_context(|| format!("sharing signing key {}", sharing_path.display()))?,
    );
    let issuer = session.public_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let state = AppState::with_auth(registry, writer, auth, db.secrets()?)
        .with_confirmation_key(confirmation_key)
        .with_sharing(sharing_key, &issuer)
        .with_code_channel(citizen_channel(db)?)
        .with_intake(db.data.join("intake"), (session.intake_max_mb as usize) << 20)
        .with_warming(warming);
    let mut state = match card_signer {
        Some(s) => state.with_card_signer(Arc::new(s)),
        None => state,
    };
    if let Some((csca, crl)) = card_trust {
        state = state.with_card_trust(vec![csca], vec![crl]);
    }
    if let Some(pk) = audit_public_key {
        state = state.with_audit_key(pk);
    }
    dancu_server::web::pages::warm_population(&state);
    // Partners' webhooks: change events queued and delivered in the background (state in the
    // store: a restart resumes where it stopped).
    let webhook_ca = match &session.webhook_ca {
        Some(p) => Some(std::fs::read(p).with_context(|| format!("reading {}", p.display()))?),
        None => None,
    };
    let webhooks = dancu_server::webhooks::spawn(
        state.clone(),
        dancu_server::webhooks::WebhookConfig {
            backoff_max: std::time::Duration::from_secs(session.webhook_backoff_max_seconds.max(1)),
            tls: dancu_server::webhooks::client_tls(webhook_ca.as_deref()).map_err(anyhow::Error::msg)?,
            ..Default::default()
        },
    );
    let mtls = match (&session.mtls_listen, &session.mtls_cert, &session.mtls_key, &session.mtls_client_ca) {
        (None, ..) => None,
        (Some(at), Some(cert), Some(key), Some(ca)) => {
            let files = dancu_server::MtlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: ca.clone(),
                crl: session.mtls_crl.clone(),
            };
            let tls = files.watch(std::time::Duration::from_secs(30)).map_err(anyhow::Error::msg)?;
            let l = tokio::net::TcpListener::bind(at).await.with_context(|| format!("listening on {at}"))?;
            tracing::info!(addr = %l.local_addr()?, "serving partners over mutual TLS");
            Some(tokio::spawn(dancu_server::serve_mtls(l, state.clone(), tls, std::future::pending())))
        }
        _ => bail!("--mtls-listen needs --mtls-cert, --mtls-key and --mtls-client-ca"),
    };
    dancu_server::serve(listener, state, shutdown_signal()).await?;
    if let Some(m) = mtls {
        m.abort();
    }
    webhooks.abort();
    indexer.abort();
    if let Some(a) = auditor {
        a.checkpoint().await.context("signing the final audit checkpoint")?;
    }
    Ok(())
}

fn generate_csv(people: u64, seed: u64, out: &Path, provinces: Vec<String>, legacy_share: f64) -> Result<()> {
    let generator = Generator::new(&synth_config(seed, provinces, legacy_share)).map_err(anyhow::Error::msg)?;
    let sink: Box<dyn Write> = if out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?)
    };
    let mut w = csv::WriterBuilder::new().buffer_capacity(1 << 20).from_writer(sink);
    w.write_record(dancu_synth::CSV_HEADER)?;
    let pb = if out.as_os_str() == "-" { ProgressBar::hidden() } else { progress(people, "generating") };
    let started = Instant::now();
    for (i, p) in generator.take(people as usize).enumerate() {
        w.write_record(p.csv_row())?;
        if i % 10_000 == 0 {
            pb.set_position(i as u64);
        }
    }
    w.flush()?;
    pb.finish_and_clear();
    if out.as_os_str() != "-" {
        eprintln!("wrote {people} people to {} in {:.1} s", out.display(), started.elapsed().as_secs_f64());
    }
    Ok(())
}

fn print_summary(s: &import::Summary, path: &Path) {
    if s.already_finished {
        say(format!("Lô {} đã nhập xong trước đó / batch already imported; its summary:", s.batch_id));
    }
    say(format!("Lô / batch {} — đơn vị / unit {}, cán bộ / officer {}", s.batch_id, s.unit, s.officer));
    say(format!("  dòng đọc / rows read:                 {}", s.rows_read));
    say(format!("  dòng bị loại / rows rejected:         {}", s.rows_rejected));
    for (code, n) in &s.rejected_by_reason {
        say(format!("      {code}: {n}"));
    }
    for (code, n) in &s.notes {
        say(format!("  ghi chú / note {code}: {n}"));
    }
    say(format!("  người mới / new people:               {}", s.new_people));
    say(format!("  trùng trong tệp / linked in file:     {}", s.linked_within_batch));
    say(format!("  trùng với CSDL / linked to registry:  {}", s.linked_to_registry));
    say(format!("  cặp cần xem xét / review pairs:       {}", s.review_pairs));
    say(format!("  số định danh cấp / IDs assigned:      {} (kept from file: {})", s.ids_assigned, s.ids_kept));
    if s.pending_without_id > 0 {
        say(format!("  chờ cấp số / pending without ID:      {}", s.pending_without_id));
    }
    if s.already_imported > 0 {
        say(format!("  đã nhập ở lần trước / stored earlier: {}", s.already_imported));
    }
    say(format!("  thời gian / time:                     {:.1} s", s.seconds));
    say(format!("  báo cáo / report: {}", s.report));
    say(format!("  tóm tắt / summary: {}", path.display()));
}

/// Generated people plus labelled duplicates (`dancu_synth::duplicates`), shuffled; the truth
/// (file line → person number) beside the data as `FILE.truth.csv`.
fn generate_with_duplicates(
    people: u64,
    seed: u64,
    out: &Path,
    provinces: Vec<String>,
    share: f64,
    legacy_share: f64,
) -> Result<()> {
    if !(0.0..=1.0).contains(&share) {
        bail!("--duplicates must be a share between 0 and 1, got {share}");
    }
    if out.as_os_str() == "-" {
        bail!("--duplicates writes a truth file beside the data: give a file for --out");
    }
    if people > 1_000_000_000 {
        bail!("--duplicates works with at most 1,000,000,000 people, got {people}");
    }
    let generator = Generator::new(&synth_config(seed, provinces, legacy_share)).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    // Every record is kept as its CSV line in one buffer (about 170 bytes a row, not the
    // kilobytes of a parsed person), then the lines are written in shuffled order.
    let mut duplicator = dancu_synth::duplicates::Duplicator::new(share, seed);
    let mut lines = csv::Writer::from_writer(Vec::<u8>::new());
    let mut ends: Vec<u64> = Vec::new();
    let mut labels: Vec<(u32, bool)> = Vec::new();
    let mut records = Vec::with_capacity(3);
    for (entity, p) in generator.take(people as usize).enumerate() {
        duplicator.records(entity, p.person, |l| records.push(l));
        for l in records.drain(..) {
            lines.write_record(dancu_synth::SynthPerson { household: p.household, person: l.person }.csv_row())?;
            lines.flush()?;
            ends.push(lines.get_ref().len() as u64);
            labels.push((l.entity as u32, l.duplicate));
        }
    }
    let lines = lines.into_inner().map_err(|e| anyhow::anyhow!("{}", e.error()))?;
    let mut order: Vec<u32> = (0..ends.len() as u32).collect();
    duplicator.shuffle(&mut order);
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    {
        let mut header = csv::Writer::from_writer(&mut w);
        header.write_record(dancu_synth::CSV_HEADER)?;
        header.flush()?;
    }
    let truth_path = import::sibling(out, "truth.csv");
    let mut truth =
        csv::Writer::from_path(&truth_path).with_context(|| format!("creating {}", truth_path.display()))?;
    truth.write_record(["line", "entity", "duplicate"])?;
    for (i, &k) in order.iter().enumerate() {
        let k = k as usize;
        let start = if k == 0 { 0 } else { ends[k - 1] as usize };
        w.write_all(&lines[start..ends[k] as usize])?;
        let (entity, duplicate) = labels[k];
        truth.write_record([(i + 2).to_string(), entity.to_string(), duplicate.to_string()])?;
    }
    w.flush()?;
    truth.flush()?;
    eprintln!(
        "wrote {} rows ({people} people, {} duplicates) to {} and the truth to {} in {:.1} s",
        order.len(),
        order.len() as u64 - people.min(order.len() as u64),
        out.display(),
        truth_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Demo { db, people, seed: s, provinces, listen, audit, session, residence, pki } => {
            let store = open_store(&db).await?;
            let existing = store.count_persons().await?;
            if existing == 0 {
                eprintln!("dancu demo: seeding {people} synthetic people into {}", redact(&db.url()));
                seed(store.clone(), people, s, provinces, 0.0).await?;
            } else {
                eprintln!("dancu demo: reusing {existing} people in {}", redact(&db.url()));
            }
            let sample = store.sample_personal_ids(1).await?.into_iter().next();
            let logins = demo_logins(&store, &db).await?;
            if pki.is_none() {
                // A card PKI (software CSCA and Document Signer) and a production centre, so that
                // cards can be personalized and verified.
                cards::demo_pki(&db.data.join("pki"))?;
            }
            if store.centres(time::OffsetDateTime::now_utc()).await?.is_empty() {
                let centre = dancu_store::cards::Centre {
                    id: "tt-ha-noi".into(),
                    name: "Trung tâm cá nhân hóa thẻ Hà Nội".into(),
                    stock: 200,
                };
                Registry::new(store.clone()).centre_add(&centre, None).await?;
            }
            serve(store, &db, listen, &audit, &session, &residence, pki.as_deref(), |addr| {
                say(String::new());
                say(format!("  dancu đang chạy / dancu is running: http://{addr}/"));
                say(format!("  API docs (Swagger UI):              http://{addr}/api/docs"));
                say(String::new());
                say("  Đăng nhập demo / demo logins (also in the data folder, demo-logins.txt):".to_string());
                for l in &logins {
                    say(format!("    {:<14} {}  ({})", l.username, l.password, l.about));
                    if let Some(uri) = &l.totp_uri {
                        say(format!("    {:<14} second factor: {uri}", ""));
                    }
                }
                say(String::new());
                say("  Thử / try:".to_string());
                say(format!(
                    "    TOKEN=$(curl -s http://{addr}/api/v1/auth/login -H 'Content-Type: application/json' \\\n\
                     -d '{{\"username\":\"demo\",\"password\":\"{}\"}}' | sed 's/.*\"token\":\"\\([0-9a-f]*\\)\".*/\\1/')",
                    logins[0].password
                ));
                if let Some(id) = sample {
                    say(format!("    curl -H \"Authorization: Bearer $TOKEN\" http://{addr}/api/v1/persons/{id}"));
                }
                say(format!(
                    "    curl -H \"Authorization: Bearer $TOKEN\" 'http://{addr}/api/v1/persons?name=nguyen%20van&province=01'"
                ));
                say("  Dừng / stop: Ctrl+C".to_string());
                say(String::new());
            })
            .await
        }
        Command::Serve { db, listen, audit, session, residence, pki } => {
            let store = open_store(&db).await?;
            serve(store, &db, listen, &audit, &session, &residence, pki.as_deref(), |addr| {
                say(format!("dancu listening on http://{addr}/"))
            })
            .await
        }
        Command::ReadAhead { files } => {
            println!("{}", warm::read_through(&files)?);
            Ok(())
        }
        Command::Migrate { db } => {
            let store = dancu_store::open(&db.url()).await.with_context(|| format!("opening {}", redact(&db.url())))?;
            if db.db.is_none() {
                std::fs::create_dir_all(&db.data)?;
            }
            let n = store.migrate().await?;
            println!("{n} migration(s) applied ({})", store.backend());
            Ok(())
        }
        Command::Generate { people, seed, out, provinces, legacy_share, duplicates: None } => {
            check_share(legacy_share)?;
            generate_csv(people, seed, &out, provinces, legacy_share)
        }
        Command::Generate { people, seed, out, provinces, legacy_share, duplicates: Some(share) } => {
            check_share(legacy_share)?;
            generate_with_duplicates(people, seed, &out, provinces, share, legacy_share)
        }
        Command::Import {
            db,
            input: InputArgs { file, format, unit, mapping },
            officer,
            batch_id,
            report,
            summary,
            chunk,
            indexes,
        } => {
            let store = open_store(&db).await?;
            let summary_path = summary.unwrap_or_else(|| import::sibling(&file, "summary.json"));
            let options = import::Options {
                file,
                format,
                unit,
                officer,
                mapping,
                batch_id,
                report,
                chunk: chunk as usize,
                indexes,
            };
            let s = import::run(store, &options).await?;
            std::fs::write(&summary_path, serde_json::to_string_pretty(&s)? + "\n")
                .with_context(|| format!("writing {}", summary_path.display()))?;
            print_summary(&s, &summary_path);
            Ok(())
        }
        Command::Dedupe { input: InputArgs { file, format, unit, mapping }, out, pairs, report, summary } => {
            let summary_path = summary.unwrap_or_else(|| import::sibling(&file, "dedupe.json"));
            let options = import::DedupeOptions {
                out: out.unwrap_or_else(|| import::sibling(&file, "clusters.csv")),
                report: report.unwrap_or_else(|| import::sibling(&file, "report.csv")),
                file,
                format,
                unit,
                mapping,
                pairs,
            };
            let s = import::dedupe(&options)?;
            let json = serde_json::to_string_pretty(&s)?;
            std::fs::write(&summary_path, json + "\n")
                .with_context(|| format!("writing {}", summary_path.display()))?;
            say(format!(
                "{} dòng / rows: {} người trùng / people with several rows ({} rows), {} cặp chờ duyệt / review pairs, \
                 {} dòng không dùng được / unusable; {} → {} (summary / tóm tắt: {})",
                s.rows_read,
                s.clusters,
                s.rows_in_clusters,
                s.review_pairs,
                s.rows_unusable,
                options.file.display(),
                s.out,
                summary_path.display()
            ));
            Ok(())
        }
        Command::Seed { db, people, seed: s, provinces, legacy_share } => {
            if people == 0 {
                bail!("--people must be at least 1");
            }
            check_share(legacy_share)?;
            let store = open_store(&db).await?;
            seed(store, people, s, provinces, legacy_share).await
        }
        Command::Addresses { command: AddressesCommand::Migrate { db, batch } } => {
            if batch == 0 {
                bail!("--batch must be at least 1");
            }
            let store = open_store(&db).await?;
            let started = Instant::now();
            let pb = ProgressBar::new_spinner();
            let report = Registry::new(store)
                .migrate_addresses(batch, "dancu-addresses-migrate", |r| {
                    pb.set_message(format!("{} people scanned", r.people_scanned));
                    pb.tick();
                })
                .await
                .map_err(|e| anyhow::anyhow!("migrating addresses: {e}"))?;
            pb.finish_and_clear();
            let secs = started.elapsed().as_secs_f64();
            println!("people with legacy addresses scanned: {}", report.people_scanned);
            println!("addresses moved automatically (whole merges): {}", report.moved_automatically);
            println!("addresses queued for review (partial merges): {}", report.queued_for_review);
            println!("addresses with a code outside the conversion table: {}", report.unknown_code);
            println!(
                "people updated: {} (skipped, changed meanwhile: {})",
                report.people_updated, report.people_skipped
            );
            println!("{secs:.1} s, {:.0} people/s", report.people_scanned as f64 / secs.max(1e-9));
            Ok(())
        }
        Command::Audit { command } => audit_command(command).await,
        Command::Residence { command } => residence_command(command).await,
        Command::Officer { command } => officer_command(command).await,
        Command::Pki { command } => cards::pki_command(command),
        Command::Card { command } => cards::card_command(command).await,
        Command::SampleIds { db, count } => {
            let store = open_store(&db).await?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for id in store.sample_personal_ids(count).await? {
                writeln!(out, "{id}")?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(redact("postgres://dancu:s3cret@db:5432/dancu"), "postgres://dancu:***@db:5432/dancu");
        assert_eq!(redact("postgres://dancu@db/dancu"), "postgres://dancu@db/dancu");
        assert_eq!(redact("sqlite://dancu-data/dancu.sqlite"), "sqlite://dancu-data/dancu.sqlite");
    }

    /// The option set is the purge delay: option 15 reads mimalloc 3's default delay (1,000 ms)
    /// unless the environment set it, 0 while linking, and the starting value again after. Fails
    /// if an upgrade of mimalloc moves the option.
    #[test]
    fn linking_returns_freed_memory_at_once_and_the_other_stages_after_the_delay() {
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        let starting = get();
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
            assert_eq!(starting, 1000, "option 15 is not the purge delay of mimalloc 3");
        }
        super::return_freed_memory_at_once(true);
        assert_eq!(get(), 0);
        super::return_freed_memory_at_once(false);
        assert_eq!(get(), starting);
    }
}
