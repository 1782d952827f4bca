//! The audit trail's own cost, without HTTP: `TASKS` concurrent callers record entries through
//! the group commit (`AuditWriter`) into a fresh SQLite store for `SECONDS`, with the indexer
//! running as the server runs it; prints entries per second and the process's CPU time per entry
//! (user + system, from /proc/self/stat: steadier than wall time on a shared machine).
//!
//!     cargo run --release -p dancu --example audit_append -- DIR [SECONDS] [TASKS] [SPACING_US]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dancu_core::audit::AuditEntry;
use dancu_store::Store;
use dancu_store::audit::{AuditIndexer, AuditWriter, Auditor, CommitSpacing};
use dancu_store::sqlite::SqliteStore;

fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("reading /proc/self/stat");
    let after = &stat[stat.rfind(')').expect("the command name's end") + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).expect("usage: audit_append DIR [SECONDS] [TASKS] [SPACING_US]"));
    let seconds: u64 = args.get(2).map(|s| s.parse().expect("SECONDS")).unwrap_or(10);
    let tasks: usize = args.get(3).map(|s| s.parse().expect("TASKS")).unwrap_or(64);
    let spacing = Duration::from_micros(args.get(4).map(|s| s.parse().expect("SPACING_US")).unwrap_or(0));
    std::fs::create_dir_all(&dir).expect("creating DIR");
    let store = SqliteStore::open(dir.join("dancu.sqlite")).expect("opening the store");
    store.migrate().await.expect("migrating");
    let store: Arc<dyn Store> = Arc::new(store);
    let signer = Arc::new(dancu_keys::SoftwareKey::generate().expect("a key"));
    let writer =
        AuditWriter::spawn(Auditor::new(store.clone(), signer), 10_000, CommitSpacing { min: spacing, when_busy: 0.9 });
    let _indexer = AuditIndexer::spawn(store.clone(), Duration::from_secs(5));
    let count = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let mut handles = Vec::new();
    for t in 0..tasks {
        let (writer, count) = (writer.clone(), count.clone());
        handles.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < deadline {
                i += 1;
                let entry = AuditEntry {
                    at: time::OffsetDateTime::now_utc()
                        .format(&time::format_description::well_known::Rfc3339)
                        .expect("formatting a time"),
                    officer: format!("officer-{}", t % 8),
                    role: "verifier".into(),
                    unit: "commune:00004".into(),
                    action: "person.read".into(),
                    target: Some(uuid::Uuid::new_v4().to_string()),
                    purpose: Some("Kiểm tra thông tin cư trú".into()),
                    request_id: Some(format!("{t:04}-{i:012}")),
                    client: Some("127.0.0.1".into()),
                    outcome: "200".into(),
                };
                writer.record(entry).await.expect("recording");
                count.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    for h in handles {
        h.await.expect("a caller");
    }
    let (cpu, wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());
    let n = count.load(Ordering::Relaxed) as f64;
    println!("entries {n} in {wall:.1} s: {:.0}/s, CPU {:.1} us per entry", n / wall, cpu * 1e6 / n);
}
