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

/// When group commits are spaced apart (see [`AuditWriter`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CommitSpacing {
    /// Least time between the starts of two commits (zero: none).
    pub min: std::time::Duration,
    /// Only while the machine's processors are at least this busy, as a share of their time
    /// over the last tenth of a second (from `/proc/stat`; 0: always).
    pub when_busy: f64,
}

impl CommitSpacing {
    /// Each commit starts as soon as the previous one is done.
    pub const NONE: CommitSpacing = CommitSpacing { min: std::time::Duration::ZERO, when_busy: 0.0 };
}

/// The share of the machine's processor time spent busy (not idle, not waiting for the disk)
/// since the previous reading of `/proc/stat`'s totals.
fn busy_share(previous: &mut Option<(u64, u64)>) -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next().filter(|l| l.starts_with("cpu "))?;
    let times: Vec<u64> = line.split_ascii_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    let total: u64 = times.iter().sum();
    let idle = times.get(3)? + times.get(4).copied().unwrap_or(0);
    let share = previous.and_then(|(t, i)| {
        let (dt, di) = (total.checked_sub(t)?, idle.checked_sub(i)?);
        (dt > 0).then(|| 1.0 - di as f64 / dt as f64)
    });
    *previous = Some((total, idle));
    share
}

/// Group commit: callers hand in an entry and wait until it is durable; one task appends
/// whatever has queued up in one transaction, and signs a checkpoint every `checkpoint_every`
/// entries. While the machine is busy (its processors, not the disk, are the limit), commits
/// start at least `spacing.min` apart: each then carries more entries, so fewer `fsync`s and
/// rewrites of the trail's last page per entry, for at most that much more waiting. When the
/// machine has idle time, waiting would only slow callers down, so commits follow each other at
/// once; a commit after a quiet spell always starts at once.
#[derive(Clone)]
pub struct AuditWriter {
    tx: mpsc::Sender<Pending>,
}

impl AuditWriter {
    pub fn spawn(auditor: Auditor, checkpoint_every: i64, spacing: CommitSpacing) -> Self {
        let (tx, mut rx) = mpsc::channel::<Pending>(65_536);
        let busy = Arc::new(std::sync::atomic::AtomicBool::new(spacing.when_busy <= 0.0));
        if !spacing.min.is_zero() && spacing.when_busy > 0.0 {
            let (busy, weak) = (busy.clone(), tx.downgrade());
            tokio::spawn(async move {
                let mut previous = None;
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
                // Until the writer is dropped.
                while weak.upgrade().is_some() {
                    tick.tick().await;
                    let now = busy_share(&mut previous).is_some_and(|b| b >= spacing.when_busy);
                    busy.store(now, std::sync::atomic::Ordering::Relaxed);
                }
            });
        }
        tokio::spawn(async move {
            let mut since_checkpoint = 0i64;
            let mut last_start: Option<tokio::time::Instant> = None;
            while let Some(first) = rx.recv().await {
                let wait = last_start
                    .map(|t| t + spacing.min)
                    .filter(|&t| t > tokio::time::Instant::now() && busy.load(std::sync::atomic::Ordering::Relaxed));
                if let Some(next) = wait {
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_busy_share_is_read_from_the_kernel_totals() {
        if !std::path::Path::new("/proc/stat").exists() {
            return; // not Linux: commits are never spaced
        }
        let mut previous = None;
        assert_eq!(super::busy_share(&mut previous), None, "the first reading has nothing to compare with");
        assert!(previous.is_some());
        // some processor time passes
        let until = std::time::Instant::now() + std::time::Duration::from_millis(50);
        while std::time::Instant::now() < until {
            std::hint::black_box(0u64);
        }
        let share = super::busy_share(&mut previous).expect("a second reading");
        assert!((0.0..=1.0).contains(&share), "{share}");
        assert!(share > 0.0, "this test itself kept a processor busy");
    }
}
