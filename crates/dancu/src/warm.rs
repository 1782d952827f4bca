//! Reading the store's files into the operating system's page cache when the server starts
//! (`serve --warm-cache`). Without it, the first requests after a restart — or after other work
//! evicted the store's pages — each wait on random reads of the disk, and the audit trail's
//! durable commits wait behind those reads: seconds of responses hundreds of times slower than
//! usual. One sequential pass over the files, in the background while the server already
//! serves, reads them at the disk's full speed instead.
//!
//! The pass runs in a child process (`dancu read-ahead FILE…`), never in the server's: SQLite
//! locks its files with POSIX advisory locks, and a process that closes *any* descriptor of a
//! file loses every lock it holds on that file. A read-ahead that opened and closed the database
//! inside the server dropped the server's locks; the next program to close the database (an
//! import) then believed it was the last one, removed the write-ahead log the server was still
//! using, and the store was corrupted (`tests/cli.rs` shows it).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Whether `serve` reads the store's files ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WarmCache {
    /// When they fit in half of the memory available (Linux `MemAvailable`); never when the
    /// memory available cannot be read
    Auto,
    /// Always, whatever their size
    Always,
    /// Never: the pages are read as requests need them
    Off,
}

/// What the warm-up decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Read these files (`bytes` in all).
    Read { files: Vec<PathBuf>, bytes: u64 },
    /// Not read, and why (for the log).
    Skip(String),
}

/// Decides from the files' sizes and the memory available (bytes; `None`: unknown).
pub fn decide(mode: WarmCache, files: &[PathBuf], available: Option<u64>) -> Decision {
    if mode == WarmCache::Off {
        return Decision::Skip("--warm-cache off".into());
    }
    if files.is_empty() {
        return Decision::Skip("the store keeps no files here (its server has its own cache)".into());
    }
    let bytes: u64 = files.iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum();
    if mode == WarmCache::Auto {
        match available {
            None => return Decision::Skip("the memory available is unknown on this system".into()),
            Some(a) if bytes > a / 2 => {
                return Decision::Skip(format!(
                    "the store's files ({} MiB) exceed half of the memory available ({} MiB)",
                    bytes >> 20,
                    a >> 20
                ));
            }
            Some(_) => {}
        }
    }
    Decision::Read { files: files.to_vec(), bytes }
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (`None` elsewhere or when unreadable).
pub fn mem_available() -> Option<u64> {
    parse_mem_available(&std::fs::read_to_string("/proc/meminfo").ok()?)
}

fn parse_mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let mut parts = line["MemAvailable:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => Some(value * 1024),
        _ => None,
    }
}

/// Reads each file from start to end (the data is dropped: only the page cache keeps it); the
/// bytes read. A file that disappeared meanwhile (a write-ahead log removed at a checkpoint) is
/// skipped.
pub fn read_through(files: &[PathBuf]) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    for path in files {
        let mut file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(with_path(e, path)),
        };
        loop {
            match file.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(with_path(e, path)),
            }
        }
    }
    Ok(total)
}

fn with_path(e: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Starts the warm-up — `dancu read-ahead FILE…` in a child process, waited for on a thread of
/// its own (the server serves meanwhile) — and logs what it did; the flag returned is set until
/// the child has finished (the server's `/readyz` answers 503 while it is).
pub fn start(mode: WarmCache, files: Vec<PathBuf>) -> Arc<AtomicBool> {
    let warming = Arc::new(AtomicBool::new(false));
    let (files, bytes) = match decide(mode, &files, mem_available()) {
        Decision::Read { files, bytes } => (files, bytes),
        Decision::Skip(why) => {
            tracing::info!(reason = %why, "store files not read ahead");
            return warming;
        }
    };
    warming.store(true, Ordering::Release);
    let flag = warming.clone();
    let spawned = std::thread::Builder::new().name("dancu-warm-cache".into()).spawn(move || {
        let started = Instant::now();
        tracing::info!(files = files.len(), mib = bytes >> 20, "reading the store's files into the page cache");
        match read_in_child(&files) {
            Ok(read) => tracing::info!(
                mib = read >> 20,
                seconds = (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
                "store files read into the page cache"
            ),
            Err(e) => tracing::warn!(error = %e, "reading the store's files ahead stopped"),
        }
        flag.store(false, Ordering::Release);
    });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "reading the store's files ahead could not start");
        warming.store(false, Ordering::Release);
    }
    warming
}

/// Runs `dancu read-ahead FILE…` (this same program) and returns the bytes it read.
fn read_in_child(files: &[PathBuf]) -> Result<u64, String> {
    let exe = std::env::current_exe().map_err(|e| format!("this program's path: {e}"))?;
    let out = std::process::Command::new(&exe)
        .arg("read-ahead")
        .args(files)
        .env("DANCU_LOG", "error")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running {} read-ahead: {e}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!("read-ahead {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    stdout.trim().parse().map_err(|_| format!("read-ahead printed {:?}, not a byte count", stdout.trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> PathBuf {
        let dir = dancu_store::conformance::scratch_dir("warm");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn reads_every_byte_of_every_file_and_skips_one_gone() {
        let dir = folder();
        let a = dir.join("a.sqlite");
        let b = dir.join("a.sqlite-wal");
        std::fs::write(&a, vec![7u8; (3 << 20) + 123]).unwrap();
        std::fs::write(&b, vec![1u8; 4096]).unwrap();
        assert_eq!(read_through(&[a.clone(), b.clone()]).unwrap(), (3 << 20) + 123 + 4096);
        std::fs::remove_file(&b).unwrap();
        assert_eq!(read_through(&[a, b]).unwrap(), (3 << 20) + 123);
    }

    #[test]
    fn auto_reads_only_what_fits_in_half_the_memory_available() {
        let dir = folder();
        let f = dir.join("store.sqlite");
        std::fs::write(&f, vec![0u8; 10_000]).unwrap();
        let files = vec![f];
        let read = Decision::Read { files: files.clone(), bytes: 10_000 };
        assert_eq!(decide(WarmCache::Auto, &files, Some(20_000)), read);
        assert!(matches!(decide(WarmCache::Auto, &files, Some(19_999)), Decision::Skip(why) if why.contains("half")));
        assert!(matches!(decide(WarmCache::Auto, &files, None), Decision::Skip(why) if why.contains("unknown")));
        assert_eq!(decide(WarmCache::Always, &files, Some(1)), read);
        assert_eq!(decide(WarmCache::Always, &files, None), read);
        assert!(matches!(decide(WarmCache::Off, &files, Some(1 << 40)), Decision::Skip(_)));
        assert!(
            matches!(decide(WarmCache::Always, &[], Some(1 << 40)), Decision::Skip(why) if why.contains("no files"))
        );
    }

    #[test]
    fn memory_available_is_read_from_meminfo() {
        let text = "MemTotal:       24684096 kB\nMemFree:        21042304 kB\nMemAvailable:   23789280 kB\n";
        assert_eq!(parse_mem_available(text), Some(23_789_280 * 1024));
        assert_eq!(parse_mem_available("MemTotal: 1 kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: many kB\n"), None);
        assert_eq!(parse_mem_available("MemAvailable: 12 pages\n"), None);
    }
}
