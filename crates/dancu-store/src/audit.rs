//! The audit service: appends entries (group commit: many concurrent requests share one
//! transaction), signs checkpoints of the chain head with the server key, and verifies a
//! stored trail. The hash chain and the verifier themselves are `dancu_core::audit`.

use std::sync::Arc;

use dancu_core::audit::{self, AuditEntry, Checkpoint, Tamper, VerifyReport};
use dancu_keys::Signer;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::{mpsc, oneshot};

use crate::{Result, Store, StoreError};

/// Appends and checkpoints.
#[derive(Clone)]
pub struct Auditor {
    store: Arc<dyn Store>,
    signer: Arc<dyn Signer>,
    /// The sequence number the last checkpoint signed, as this process knows it (-1: not read
    /// yet): checkpoints come every few hundred milliseconds under load, and reading every one
    /// stored to find the last would grow with the trail.
    last_signed: Arc<std::sync::atomic::AtomicI64>,
}

impl Auditor {
    pub fn new(store: Arc<dyn Store>, signer: Arc<dyn Signer>) -> Self {
        Auditor { store, signer, last_signed: Arc::new(std::sync::atomic::AtomicI64::new(-1)) }
    }

    pub async fn append(&self, entries: Vec<AuditEntry>) -> Result<i64> {
        self.store.audit_append(entries).await
    }

    /// Signs the current head of the chain, unless the last checkpoint already covers it.
    pub async fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        use std::sync::atomic::Ordering;
        let mut last = self.last_signed.load(Ordering::Acquire);
        if last < 0 {
            last = self.store.audit_checkpoints().await?.last().map(|c| c.seq).unwrap_or(0);
            self.last_signed.fetch_max(last, Ordering::AcqRel);
        }
        let head = self.store.audit_head().await?.filter(|(seq, _)| *seq > last);
        let Some((seq, hash)) = head else { return Ok(None) };
        let signed_at = OffsetDateTime::now_utc().format(&Rfc3339).expect("RFC 3339 formatting of a UTC time");
        let signature = self
            .signer
            .sign(&audit::checkpoint_message(seq, &hash, &signed_at))
            .map_err(|e| StoreError::Backend(format!("signing an audit checkpoint: {e}")))?;
        let c = Checkpoint { seq, hash, signed_at, key_id: self.signer.key_id().to_string(), signature };
        self.store.audit_add_checkpoint(&c).await?;
        self.last_signed.fetch_max(seq, Ordering::AcqRel);
        Ok(Some(c))
    }
}

/// Verifies the whole stored trail against its checkpoints, trusting `public_key` (SPKI DER).
/// The outer error is a storage failure; the inner one the first tampering found.
pub async fn verify(store: &dyn Store, public_key: &[u8]) -> Result<std::result::Result<VerifyReport, Tamper>> {
    let mut entries = Vec::new();
    loop {
        let after = entries.last().map(|e: &audit::StoredEntry| e.seq).unwrap_or(i64::MIN);
        let page = store.audit_read(after, 10_000).await?;
        if page.is_empty() {
            break;
        }
        entries.extend(page);
    }
    let checkpoints = store.audit_checkpoints().await?;
    let key_id = dancu_keys::key_id(public_key);
    Ok(audit::verify(&entries, &checkpoints, |c| {
        c.key_id == key_id
            && dancu_keys::verify(public_key, &audit::checkpoint_message(c.seq, &c.hash, &c.signed_at), &c.signature)
    }))
}

type Pending = (AuditEntry, oneshot::Sender<std::result::Result<i64, String>>);

/// Group commit: callers hand in an entry and wait until it is durable; one task appends
/// whatever has queued up in one transaction, and signs a checkpoint every `checkpoint_every`
/// entries. Commits start at least `spacing` apart: under load each one then carries more
/// entries (fewer `fsync`s and rewrites of the trail's last page per entry) for at most that much
/// more waiting; a request arriving after a quiet spell is committed at once.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Pending>,
}

impl AuditWriter {
    pub fn spawn(auditor: Auditor, checkpoint_every: i64, spacing: std::time::Duration) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(65_536);
        tokio::spawn(async move {
            let mut since_checkpoint = 0i64;
            let mut last_start: Option<tokio::time::Instant> = None;
            while let Some(first) = rx.recv().await {
                if let Some(next) = last_start.map(|t| t + spacing).filter(|&t| t > tokio::time::Instant::now()) {
                    tokio::time::sleep_until(next).await;
                }
                last_start = Some(tokio::time::Instant::now());
                let mut batch = Vec::with_capacity(rx.len() + 1);
                batch.push(first);
                while batch.len() < 4096 {
                    match rx.try_recv() {
                        Ok(p) => batch.push(p),
                        Err(_) => break,
                    }
                }
                let (entries, replies): (Vec<AuditEntry>, Vec<_>) = batch.into_iter().unzip();
                let started = std::time::Instant::now();
                let n = entries.len() as i64;
                let result = auditor.append(entries).await;
                tracing::trace!(entries = n, micros = started.elapsed().as_micros() as u64, "audit batch appended");
                match result {
                    Ok(last) => {
                        for (i, reply) in replies.into_iter().enumerate() {
                            let _ = reply.send(Ok(last - n + 1 + i as i64));
                        }
                        since_checkpoint += n;
                        if since_checkpoint >= checkpoint_every {
                            match auditor.checkpoint().await {
                                Ok(_) => since_checkpoint = 0,
                                Err(e) => tracing::error!(error = %e, "audit checkpoint failed"),
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, entries = n, "audit append failed");
                        for reply in replies {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        });
        AuditWriter { tx }
    }

    /// Records an entry; returns once it is stored (its sequence number), or the failure.
    pub async fn record(&self, entry: AuditEntry) -> Result<i64> {
        let (reply, done) = oneshot::channel();
        self.tx.send((entry, reply)).await.map_err(|_| StoreError::Backend("the audit writer has stopped".into()))?;
        done.await.map_err(|_| StoreError::Backend("the audit writer has stopped".into()))?.map_err(StoreError::Backend)
    }

    /// Records many entries (one call concerning many people); returns once all are stored.
    pub async fn record_many(&self, entries: impl IntoIterator<Item = AuditEntry>) -> Result<()> {
        let stopped = || StoreError::Backend("the audit writer has stopped".into());
        let mut replies = Vec::new();
        for entry in entries {
            let (reply, done) = oneshot::channel();
            self.tx.send((entry, reply)).await.map_err(|_| stopped())?;
            replies.push(done);
        }
        for done in replies {
            done.await.map_err(|_| stopped())?.map_err(StoreError::Backend)?;
        }
        Ok(())
    }
}

/// Keeps the query indexes of the audit trail (by person, officer, time) close behind the
/// chain: at start it catches up from the high-water mark stored in the database (so nothing
/// is lost by a crash), then indexes whatever was appended, in sorted batches, every `period`.
/// Queries are exact meanwhile: they read the chain itself past the mark.
pub struct AuditIndexer;

impl AuditIndexer {
    /// Entries per indexing transaction at most. Appends never wait for one (SQLite keeps the
    /// indexes in a file of their own, PostgreSQL locks only the high-water mark's row); a
    /// larger batch touches each page of the by-person index's newest segment fewer times per
    /// entry.
    pub const BATCH: u32 = 65_536;

    /// Indexes every `period` (at once again while whole batches are waiting). Between rounds,
    /// at least every second, it runs the upkeep alone ([`Store::audit_index`] with `max` 0:
    /// entries of changes reach the chain, SQLite's trail log is copied into its file). A longer
    /// period means fewer, larger batches: each page of the by-person index's newest segment is
    /// rewritten fewer times per entry.
    pub fn spawn(store: Arc<dyn Store>, period: std::time::Duration) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let upkeep = period.min(std::time::Duration::from_secs(1));
            let mut indexed_at: Option<std::time::Instant> = None;
            loop {
                let due = indexed_at.is_none_or(|t| t.elapsed() >= period);
                match store.audit_index(if due { Self::BATCH } else { 0 }).await {
                    Ok(n) if due && n == u64::from(Self::BATCH) => continue,
                    Ok(_) if due => indexed_at = Some(std::time::Instant::now()),
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "audit indexing failed"),
                }
                tokio::time::sleep(upkeep).await;
            }
        })
    }
}
