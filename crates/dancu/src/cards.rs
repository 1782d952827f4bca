//! `dancu pki …` and `dancu card …`: the card PKI on disk (software keys or a PKCS#11 token),
//! personalization of a registered person's chip, passive authentication of a card's files.
//!
//! The PKI folder holds `pki.json` (serial numbers, the DS list, the backend — never a PIN),
//! `csca.pem`, `ds-NNNN.pem`, `csca.crl.pem` and, with software keys, the private keys as
//! PKCS#8 files of mode 0600. With PKCS#11 the private keys stay on the token (labels
//! `dancu-csca`, `dancu-ds-NNNN`); the PIN comes from DANCU_PKCS11_PIN.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use dancu_card::pki::{self, Periods, Revocation};
use dancu_card::validity::{self, CardLaw};
use dancu_card::verify::{certificate_from_bytes, crl_from_bytes, passive_authentication};
use dancu_card::{CardContent, DocumentSigner, personalize};
use dancu_keys::pkcs11::{Pkcs11Key, TokenConfig, find_softhsm};
use dancu_keys::{Signer, SoftwareKey};
use der::Encode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

#[derive(Args, Clone)]
pub struct PkiArgs {
    /// The PKI folder
    #[arg(long, env = "DANCU_PKI", default_value = "dancu-data/pki")]
    pki: PathBuf,
}

#[derive(Args, Clone, Default)]
pub struct TokenArgs {
    /// Keep the keys on a PKCS#11 token with this label (default: software keys in the PKI folder)
    #[arg(long, env = "DANCU_PKCS11_TOKEN")]
    token: Option<String>,
    /// The PKCS#11 module (default: SoftHSM2 where installed)
    #[arg(long, env = "DANCU_PKCS11_MODULE")]
    module: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum PkiCommand {
    /// Create the Country Signing CA, a first Document Signer and the CRL
    Init {
        #[command(flatten)]
        pki: PkiArgs,
        #[command(flatten)]
        token: TokenArgs,
        /// How long a DS key signs before it must be rotated, in days
        #[arg(long, default_value_t = 365)]
        ds_days: i64,
        /// How long the CSCA key signs, in days
        #[arg(long, default_value_t = 5 * 365)]
        csca_days: i64,
    },
    /// Start a new Document Signer (the previous one stops signing; its certificate stays valid)
    RotateDs {
        #[command(flatten)]
        pki: PkiArgs,
        #[arg(long, default_value_t = 365)]
        ds_days: i64,
    },
    /// Publish the CSCA's CRL (csca.crl.pem), optionally revoking Document Signers first
    Crl {
        #[command(flatten)]
        pki: PkiArgs,
        /// DS numbers to revoke (a compromised key)
        #[arg(long, value_delimiter = ',')]
        revoke: Vec<u64>,
        /// Days until the next CRL is due
        #[arg(long, default_value_t = 30)]
        days: i64,
    },
}

#[derive(Subcommand)]
pub enum CardCommand {
    /// Personalize a card for a registered person: MRZ, EF.COM, DG1, DG2, DG13, EF.SOD into DIR
    Personalize {
        #[command(flatten)]
        pki: PkiArgs,
        #[command(flatten)]
        db: crate::DbArgs,
        /// The holder's personal ID (12 digits)
        #[arg(long)]
        id: String,
        /// The face photo (JPEG)
        #[arg(long)]
        photo: PathBuf,
        /// Output folder
        #[arg(long)]
        out: PathBuf,
        /// Card serial number (printed on the card, in DG13)
        #[arg(long)]
        serial: Option<String>,
        /// The holder is under 14 and the card was requested for them (Law on Identification
        /// 2023, Art. 19): without it, a person under 14 gets no card
        #[arg(long)]
        under_14_requested: bool,
    },
    /// Passive authentication of a card's files in DIR; prints the decoded DG1 and DG13
    Verify {
        dir: PathBuf,
        /// Trusted CSCA certificate (PEM or DER); default: the PKI folder's csca.pem
        #[arg(long)]
        csca: Option<PathBuf>,
        /// The CSCA's CRL (PEM or DER); default: the PKI folder's csca.crl.pem
        #[arg(long)]
        crl: Option<PathBuf>,
        #[command(flatten)]
        pki: PkiArgs,
    },
    /// Measure personalization (all data groups + EF.SOD signature) on one thread
    Bench {
        #[command(flatten)]
        pki: PkiArgs,
        /// The face photo (JPEG) to put on every card
        #[arg(long)]
        photo: PathBuf,
        #[arg(long, default_value_t = 20_000)]
        cards: u32,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct DsEntry {
    number: u64,
    serial: u64,
    created: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    revoked: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct PkiState {
    /// `software` or `pkcs11`.
    backend: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    module: Option<PathBuf>,
    next_serial: u64,
    crl_number: u64,
    current_ds: u64,
    ds: Vec<DsEntry>,
    csca_key_usage_days: i64,
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).expect("0 ns is valid")
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).expect("a UTC time formats")
}

fn parse_time(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).with_context(|| format!("time {s:?}"))
}

impl PkiState {
    fn load(dir: &Path) -> Result<PkiState> {
        let path = dir.join("pki.json");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{}: no PKI here (run `dancu pki init --pki {}`)", path.display(), dir.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{}: not a dancu PKI state file", path.display()))
    }
    fn save(&self, dir: &Path) -> Result<()> {
        let tmp = dir.join("pki.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)? + "\n")?;
        std::fs::rename(&tmp, dir.join("pki.json"))?;
        Ok(())
    }
    fn token(&self) -> Result<TokenConfig> {
        let module = self
            .module
            .clone()
            .or_else(find_softhsm)
            .context("no PKCS#11 module: give --module (or DANCU_PKCS11_MODULE)")?;
        let pin = std::env::var("DANCU_PKCS11_PIN").context("the token's user PIN must be in DANCU_PKCS11_PIN")?;
        Ok(TokenConfig { module, token_label: self.token.clone().unwrap_or_default(), pin })
    }
    /// Opens (or with `create`, makes) the key called `name` (`csca`, `ds-0001`).
    fn key(&self, dir: &Path, name: &str, create: bool) -> Result<Box<dyn Signer>> {
        if self.backend == "pkcs11" {
            let cfg = self.token()?;
            let label = format!("dancu-{name}");
            let key = if create { Pkcs11Key::generate(&cfg, &label)? } else { Pkcs11Key::open(&cfg, &label)? };
            return Ok(Box::new(key));
        }
        let path = dir.join(format!("{name}.key.pem"));
        if create && path.exists() {
            bail!("{} exists already: refusing to replace a key", path.display());
        }
        if !create && !path.exists() {
            bail!("{}: key file missing", path.display());
        }
        Ok(Box::new(SoftwareKey::load_or_create(&path)?))
    }
    fn serial(&mut self) -> u64 {
        let s = self.next_serial;
        self.next_serial += 1;
        s
    }
}

fn write_pem(path: &Path, label: &str, der: &[u8]) -> Result<()> {
    std::fs::write(path, pki::pem(label, der)).with_context(|| path.display().to_string())
}

fn read_cert(path: &Path) -> Result<x509_cert::Certificate> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    certificate_from_bytes(&bytes).with_context(|| path.display().to_string())
}

fn ds_name(n: u64) -> String {
    format!("ds-{n:04}")
}

fn issue_ds(
    state: &mut PkiState,
    dir: &Path,
    csca: &x509_cert::Certificate,
    csca_key: &dyn Signer,
    ds_days: i64,
) -> Result<u64> {
    let number = state.ds.iter().map(|d| d.number).max().unwrap_or(0) + 1;
    let key = state.key(dir, &ds_name(number), true)?;
    let serial = state.serial();
    let periods =
        Periods { ds_key_usage_days: ds_days, csca_key_usage_days: state.csca_key_usage_days, ..Periods::default() };
    let t = now();
    pki::check_key_usable(csca, t, "CSCA")?;
    let cert = pki::ds_certificate(csca, csca_key, key.public_key_der(), number, serial, t, &periods)?;
    write_pem(&dir.join(format!("{}.pem", ds_name(number))), "CERTIFICATE", &cert.to_der()?)?;
    state.ds.push(DsEntry { number, serial, created: rfc3339(t), revoked: None });
    state.current_ds = number;
    Ok(number)
}

fn publish_crl(
    state: &mut PkiState,
    dir: &Path,
    csca: &x509_cert::Certificate,
    csca_key: &dyn Signer,
    days: i64,
) -> Result<()> {
    let revoked = state
        .ds
        .iter()
        .filter_map(|d| d.revoked.as_ref().map(|at| Ok(Revocation { serial: d.serial, at: parse_time(at)? })))
        .collect::<Result<Vec<_>>>()?;
    state.crl_number += 1;
    let crl = pki::crl(csca, csca_key, state.crl_number, &revoked, now(), days)?;
    write_pem(&dir.join("csca.crl.pem"), "X509 CRL", &crl.to_der()?)?;
    Ok(())
}

pub fn pki_command(command: PkiCommand) -> Result<()> {
    match command {
        PkiCommand::Init { pki: PkiArgs { pki: dir }, token, ds_days, csca_days } => {
            if dir.join("pki.json").exists() {
                bail!("{} already holds a PKI: use `dancu pki rotate-ds` or `dancu pki crl`", dir.display());
            }
            std::fs::create_dir_all(&dir).with_context(|| dir.display().to_string())?;
            let mut state = PkiState {
                backend: if token.token.is_some() { "pkcs11".into() } else { "software".into() },
                token: token.token,
                module: token.module,
                next_serial: 1,
                crl_number: 0,
                current_ds: 0,
                ds: Vec::new(),
                csca_key_usage_days: csca_days,
            };
            let csca_key = state.key(&dir, "csca", true)?;
            let serial = state.serial();
            let periods = Periods { csca_key_usage_days: csca_days, ds_key_usage_days: ds_days, ..Periods::default() };
            let csca = pki::csca_certificate(csca_key.as_ref(), serial, now(), &periods)?;
            write_pem(&dir.join("csca.pem"), "CERTIFICATE", &csca.to_der()?)?;
            let n = issue_ds(&mut state, &dir, &csca, csca_key.as_ref(), ds_days)?;
            publish_crl(&mut state, &dir, &csca, csca_key.as_ref(), 30)?;
            state.save(&dir)?;
            println!("CSCA: {}  (key {}, {})", dir.join("csca.pem").display(), csca_key.key_id(), state.backend);
            println!("Document Signer {n}: {}", dir.join(format!("{}.pem", ds_name(n))).display());
            println!("CRL: {}", dir.join("csca.crl.pem").display());
        }
        PkiCommand::RotateDs { pki: PkiArgs { pki: dir }, ds_days } => {
            let mut state = PkiState::load(&dir)?;
            let csca = read_cert(&dir.join("csca.pem"))?;
            let csca_key = state.key(&dir, "csca", false)?;
            let previous = state.current_ds;
            let n = issue_ds(&mut state, &dir, &csca, csca_key.as_ref(), ds_days)?;
            state.save(&dir)?;
            println!("Document Signer {n} signs from now on; DS {previous} no longer signs (its cards stay valid)");
        }
        PkiCommand::Crl { pki: PkiArgs { pki: dir }, revoke, days } => {
            let mut state = PkiState::load(&dir)?;
            for n in &revoke {
                let entry =
                    state.ds.iter_mut().find(|d| d.number == *n).with_context(|| format!("no Document Signer {n}"))?;
                entry.revoked.get_or_insert_with(|| rfc3339(now()));
            }
            let csca = read_cert(&dir.join("csca.pem"))?;
            let csca_key = state.key(&dir, "csca", false)?;
            publish_crl(&mut state, &dir, &csca, csca_key.as_ref(), days)?;
            state.save(&dir)?;
            let revoked: Vec<String> =
                state.ds.iter().filter(|d| d.revoked.is_some()).map(|d| d.number.to_string()).collect();
            println!(
                "CRL {} published: {} (revoked DS: {})",
                state.crl_number,
                dir.join("csca.crl.pem").display(),
                if revoked.is_empty() { "none".into() } else { revoked.join(", ") }
            );
        }
    }
    Ok(())
}

/// The trust anchors of passive authentication in a PKI folder: its CSCA certificate and CRL.
pub fn trust_anchors(dir: &Path) -> Result<(x509_cert::Certificate, x509_cert::crl::CertificateList)> {
    let csca = read_cert(&dir.join("csca.pem"))?;
    let path = dir.join("csca.crl.pem");
    let bytes = std::fs::read(&path).with_context(|| path.display().to_string())?;
    let crl = crl_from_bytes(&bytes).with_context(|| path.display().to_string())?;
    Ok((csca, crl))
}

/// The demo's card PKI: made in `dir` with software keys on the first run (as `dancu pki init`),
/// its CRL published again on later runs (a CRL is due every 30 days).
pub fn demo_pki(dir: &Path) -> Result<()> {
    let pki = PkiArgs { pki: dir.to_path_buf() };
    if !dir.join("pki.json").exists() {
        return pki_command(PkiCommand::Init { pki, token: TokenArgs::default(), ds_days: 365, csca_days: 5 * 365 });
    }
    pki_command(PkiCommand::Crl { pki, revoke: Vec::new(), days: 30 })
}

/// The current Document Signer, ready to sign (refuses a revoked one or one past its usage period).
pub fn document_signer(dir: &Path) -> Result<DocumentSigner> {
    let state = PkiState::load(dir)?;
    let entry =
        state.ds.iter().find(|d| d.number == state.current_ds).context("the PKI has no current Document Signer")?;
    if entry.revoked.is_some() {
        bail!("Document Signer {} is revoked: run `dancu pki rotate-ds`", entry.number);
    }
    let cert = read_cert(&dir.join(format!("{}.pem", ds_name(entry.number))))?;
    let key = state.key(dir, &ds_name(entry.number), false)?;
    let signer = DocumentSigner::new(key, cert)?;
    signer.check_usable(now())?;
    Ok(signer)
}

fn write_card(out: &Path, files: &dancu_card::ChipFiles) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| out.display().to_string())?;
    for (name, bytes) in files.named() {
        std::fs::write(out.join(&name), bytes).with_context(|| out.join(&name).display().to_string())?;
    }
    std::fs::write(out.join("mrz.txt"), files.mrz.join("\n") + "\n")?;
    Ok(())
}

pub async fn card_command(command: CardCommand) -> Result<()> {
    match command {
        CardCommand::Personalize { pki: PkiArgs { pki: dir }, db, id, photo, out, serial, under_14_requested } => {
            let personal_id = dancu_core::PersonalId::parse(&id).with_context(|| format!("--id {id:?}"))?;
            let store = crate::open_store(&db).await?;
            let record = store
                .get_person(&dancu_store::PersonRef::PersonalId(personal_id))
                .await?
                .with_context(|| format!("no person with personal ID {id} in the registry"))?;
            let jpeg = std::fs::read(&photo).with_context(|| photo.display().to_string())?;
            let signer = document_signer(&dir)?;
            let issue = now().date();
            let birth = record.person.record.birth_date;
            let age = validity::age_on(&birth, issue);
            if age < dancu_card::application::MINIMUM_AGE && !under_14_requested {
                anyhow::bail!(
                    "the holder is {age}: a person under {} gets a card only on request \
                     (--under-14-requested)",
                    dancu_card::application::MINIMUM_AGE
                );
            }
            let expiry = validity::expiry(&birth, issue, CardLaw::on(issue));
            let card = CardContent::from_person(&record.person, issue, expiry, serial, jpeg)?;
            let files = personalize(&card, &signer, now())?;
            write_card(&out, &files)?;
            println!("{}", files.mrz.join("\n"));
            println!(
                "card written to {} (expires {})",
                out.display(),
                expiry.map(|d| d.to_string()).unwrap_or_else(|| "never".into())
            );
        }
        CardCommand::Verify { dir, csca, crl, pki: PkiArgs { pki } } => {
            let csca_path = csca.unwrap_or_else(|| pki.join("csca.pem"));
            let crl_path = crl.unwrap_or_else(|| pki.join("csca.crl.pem"));
            let csca = read_cert(&csca_path)?;
            let crl_bytes = std::fs::read(&crl_path).with_context(|| crl_path.display().to_string())?;
            let crl = crl_from_bytes(&crl_bytes).with_context(|| crl_path.display().to_string())?;
            let read = |name: &str| std::fs::read(dir.join(name)).with_context(|| dir.join(name).display().to_string());
            let sod = read("ef_sod.bin")?;
            let mut groups = Vec::new();
            for n in [1u8, 2, 13] {
                let path = dir.join(format!("dg{n}.bin"));
                if path.exists() {
                    groups.push((n, std::fs::read(&path)?));
                }
            }
            let view: Vec<(u8, &[u8])> = groups.iter().map(|(n, b)| (*n, b.as_slice())).collect();
            let report = passive_authentication(&sod, &view, &[csca], &[crl], now());
            println!("Xác thực thụ động / Passive authentication: {}", dir.display());
            if let Some(ds) = &report.ds_subject {
                println!("  Document Signer: {ds}");
            }
            for c in &report.checks {
                println!("  [{}] {}: {}", if c.ok { "OK  " } else { "FAIL" }, c.name, c.detail);
            }
            if let Some(m) = &report.mrz_text {
                println!("\nMRZ (DG1):\n{m}");
            }
            if let Some(d) = &report.dg13 {
                println!("\nDG13:\n{}", d.to_text());
            }
            if !report.passed() {
                bail!("the card did NOT pass passive authentication / thẻ KHÔNG hợp lệ");
            }
            println!("Kết quả / Result: hợp lệ / valid");
        }
        CardCommand::Bench { pki: PkiArgs { pki: dir }, photo, cards } => bench(&dir, &photo, cards)?,
    }
    Ok(())
}

/// Personalizes `cards` distinct cards on this thread and reports the rate.
fn bench(dir: &Path, photo: &Path, cards: u32) -> Result<()> {
    let signer = document_signer(dir)?;
    let jpeg = std::fs::read(photo).with_context(|| photo.display().to_string())?;
    let issue = now().date();
    let mut base = CardContent {
        personal_id: dancu_core::PersonalId::parse("001093000000")?,
        surname: "Nguyễn".into(),
        middle: "Thị Ngọc".into(),
        given: "Ánh".into(),
        birth_date: dancu_core::PartialDate::from_ymd(1993, 1, 5)?,
        sex: dancu_core::Sex::Female,
        nationality: "Việt Nam".into(),
        ethnicity: Some("Kinh".into()),
        religion: Some("Không".into()),
        hometown: Some("Xã Đông Anh, Thành phố Hà Nội".into()),
        residence: Some("Số 12 ngõ 34 phố Đội Cấn, Phường Ba Đình, Thành phố Hà Nội".into()),
        identifying_features: Some("Nốt ruồi C:1cm trên trước mày trái".into()),
        issue_date: issue,
        expiry: None,
        father: Some("Nguyễn Văn Hải".into()),
        mother: Some("Đỗ Thị Lụa".into()),
        spouse: None,
        legacy_id: None,
        card_serial: None,
        photo_jpeg: jpeg,
    };
    let mut bytes = 0usize;
    let t = now();
    let start = Instant::now();
    for i in 0..cards {
        base.personal_id = dancu_core::PersonalId::parse(&format!("001093{:06}", i % 1_000_000))?;
        base.expiry = validity::expiry(&base.birth_date, issue, CardLaw::Law2023);
        let files = personalize(&base, &signer, t)?;
        bytes += files.ef_sod.len() + files.dg1.len() + files.dg2.len() + files.dg13.len() + files.ef_com.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{cards} cards in {secs:.3} s: {:.0} cards/s on one thread ({} bytes of chip files a card)",
        f64::from(cards) / secs,
        bytes / cards.max(1) as usize
    );
    Ok(())
}
