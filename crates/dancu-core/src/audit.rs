//! The audit trail's tamper evidence: every entry commits to the one before it (a SHA-256 hash
//! chain), and signed checkpoints pin the chain at points in time. Pure: the store keeps the
//! rows, the key signs; this module defines the hash, the checkpoint message and the verifier.
//!
//! What the verifier tells apart, at the first place it finds:
//! - a **modified** entry: its content no longer hashes to its stored hash;
//! - a **deleted** entry: the next entry links to a hash no stored entry has;
//! - an **inserted** entry: the entry after it links past it, to the one before it;
//! - **reordered** entries: an entry links to an entry stored elsewhere than right before it;
//! - a **rewritten** chain (modified, then every later hash recomputed) or a **truncated** one:
//!   a signed checkpoint no longer matches, or names an entry that is gone.
//!
//! Entries after the last checkpoint are protected by the chain alone; checkpoints are taken
//! often (every few hundred entries and on a timer) to keep that tail short.

use sha2::{Digest, Sha256};

pub type Hash = [u8; 32];

/// The hash before the first entry.
pub const GENESIS: Hash = [0u8; 32];

/// One recorded access or change.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// When, RFC 3339 UTC.
    pub at: String,
    /// The acting officer (or partner, or system process).
    pub officer: String,
    pub role: String,
    pub unit: String,
    /// What was done, e.g. `person.read`, `person.update`, `person.search`.
    pub action: String,
    /// The person concerned (record key), when one is.
    pub target: Option<String>,
    /// The purpose or legal basis the caller gave.
    pub purpose: Option<String>,
    pub request_id: Option<String>,
    /// The client's network address.
    pub client: Option<String>,
    /// The outcome: the HTTP status, or `ok`/`error` for other callers.
    pub outcome: String,
}

fn put(h: &mut Sha256, field: Option<&str>) {
    match field {
        None => h.update(u32::MAX.to_be_bytes()),
        Some(s) => {
            h.update((s.len() as u32).to_be_bytes());
            h.update(s.as_bytes());
        }
    }
}

/// The hash of an entry given the previous entry's hash (length-prefixed fields, so no two
/// different entries encode alike).
pub fn entry_hash(prev: &Hash, e: &AuditEntry) -> Hash {
    let mut h = Sha256::new();
    h.update(b"dancu-audit-entry-v1");
    h.update(prev);
    for f in [
        Some(e.at.as_str()),
        Some(e.officer.as_str()),
        Some(e.role.as_str()),
        Some(e.unit.as_str()),
        Some(e.action.as_str()),
        e.target.as_deref(),
        e.purpose.as_deref(),
        e.request_id.as_deref(),
        e.client.as_deref(),
        Some(e.outcome.as_str()),
    ] {
        put(&mut h, f);
    }
    h.finalize().into()
}

/// An entry as stored: its position, the hash it links to and its own hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: i64,
    pub entry: AuditEntry,
    pub prev_hash: Hash,
    pub hash: Hash,
}

/// A signed statement: "entry `seq` of the audit trail has hash `hash`".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub seq: i64,
    pub hash: Hash,
    /// RFC 3339 UTC.
    pub signed_at: String,
    pub key_id: String,
    pub signature: Vec<u8>,
}

/// The bytes a checkpoint's signature covers.
pub fn checkpoint_message(seq: i64, hash: &Hash, signed_at: &str) -> Vec<u8> {
    let mut m = b"dancu-audit-checkpoint-v1".to_vec();
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(hash);
    m.extend_from_slice(signed_at.as_bytes());
    m
}

/// The first sign of tampering found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Tamper {
    #[error("entry {seq} was modified: its content does not match its hash")]
    Modified { seq: i64 },
    #[error("an entry was deleted just before entry {seq}: it links to an entry that is gone")]
    Deleted { seq: i64 },
    #[error("entry {seq} was inserted: the entry after it links past it")]
    Inserted { seq: i64 },
    #[error("entries were reordered at entry {seq}: it links to entry {links_to}, not to the one stored before it")]
    Reordered { seq: i64, links_to: i64 },
    #[error("the trail was rewritten up to entry {seq}: the signed checkpoint for it does not match")]
    Rewritten { seq: i64 },
    #[error("entries after {last} were deleted: a signed checkpoint names entry {seq}")]
    Truncated { last: i64, seq: i64 },
    #[error("the checkpoint for entry {seq} has an invalid signature")]
    BadCheckpoint { seq: i64 },
    #[error("entry numbers are out of order at {seq}")]
    Numbering { seq: i64 },
}

/// What a successful verification saw.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub last_seq: i64,
    pub checkpoints: u64,
    /// Entries after the last checkpoint (protected by the chain only).
    pub unanchored: u64,
}

/// Verifies a whole trail (entries in storage order) against its checkpoints.
/// `signature_ok` checks one checkpoint's signature with the trusted key.
pub fn verify(
    entries: &[StoredEntry],
    checkpoints: &[Checkpoint],
    signature_ok: impl Fn(&Checkpoint) -> bool,
) -> Result<VerifyReport, Tamper> {
    use std::collections::HashMap;
    let position: HashMap<Hash, usize> = entries.iter().enumerate().map(|(i, e)| (e.hash, i)).collect();
    for (i, e) in entries.iter().enumerate() {
        if entry_hash(&e.prev_hash, &e.entry) != e.hash {
            return Err(Tamper::Modified { seq: e.seq });
        }
        let expected = if i == 0 { GENESIS } else { entries[i - 1].hash };
        if e.prev_hash != expected {
            let before_previous = if i >= 2 {
                Some(entries[i - 2].hash)
            } else if i == 1 {
                Some(GENESIS)
            } else {
                None
            };
            if before_previous == Some(e.prev_hash) {
                return Err(Tamper::Inserted { seq: entries[i - 1].seq });
            }
            return Err(match position.get(&e.prev_hash) {
                Some(&j) => Tamper::Reordered { seq: e.seq, links_to: entries[j].seq },
                None if e.prev_hash == GENESIS => Tamper::Reordered { seq: e.seq, links_to: 0 },
                None => Tamper::Deleted { seq: e.seq },
            });
        }
        if i > 0 && e.seq <= entries[i - 1].seq {
            return Err(Tamper::Numbering { seq: e.seq });
        }
    }
    let last_seq = entries.last().map(|e| e.seq).unwrap_or(0);
    let by_seq: HashMap<i64, &StoredEntry> = entries.iter().map(|e| (e.seq, e)).collect();
    let mut anchored = 0;
    for c in checkpoints {
        if !signature_ok(c) {
            return Err(Tamper::BadCheckpoint { seq: c.seq });
        }
        match by_seq.get(&c.seq) {
            Some(e) if e.hash == c.hash => anchored = anchored.max(c.seq),
            Some(_) => return Err(Tamper::Rewritten { seq: c.seq }),
            None if c.seq > last_seq => return Err(Tamper::Truncated { last: last_seq, seq: c.seq }),
            None => return Err(Tamper::Deleted { seq: c.seq }),
        }
    }
    Ok(VerifyReport {
        entries: entries.len() as u64,
        last_seq,
        checkpoints: checkpoints.len() as u64,
        unanchored: entries.iter().filter(|e| e.seq > anchored).count() as u64,
    })
}

/// Builds stored entries from plain ones (what an appender does): seq from `first_seq`.
pub fn chain(prev: Hash, first_seq: i64, entries: &[AuditEntry]) -> Vec<StoredEntry> {
    let mut prev = prev;
    entries
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let hash = entry_hash(&prev, e);
            let s = StoredEntry { seq: first_seq + i as i64, entry: e.clone(), prev_hash: prev, hash };
            prev = hash;
            s
        })
        .collect()
}

/// Lowercase hex of bytes (hashes, tokens, signatures). On the path of every authenticated
/// request (the session token's hash), so written out rather than formatted byte by byte.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lowercase_two_digits_a_byte() {
        assert_eq!(to_hex(&[0x00, 0x0f, 0xa5, 0xff, 0x10]), "000fa5ff10");
        assert_eq!(to_hex(&[]), "");
        // SHA-256("abc"), FIPS 180-2 appendix B.1, through the session-token hash.
        assert_eq!(crate::auth::token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    fn entry(i: u32) -> AuditEntry {
        AuditEntry {
            at: format!("2026-11-29T08:00:{:02}Z", i % 60),
            officer: format!("officer-{}", i % 3),
            role: "collector".into(),
            unit: "00004".into(),
            action: if i.is_multiple_of(2) { "person.read" } else { "person.update" }.into(),
            target: Some(format!("key-{i}")),
            purpose: (!i.is_multiple_of(4)).then(|| "kiểm tra".to_string()),
            request_id: Some(format!("req-{i}")),
            client: Some("127.0.0.1".into()),
            outcome: "200".into(),
        }
    }

    fn trail(n: u32) -> Vec<StoredEntry> {
        chain(GENESIS, 1, &(1..=n).map(entry).collect::<Vec<_>>())
    }

    fn ok(_: &Checkpoint) -> bool {
        true
    }

    fn cp(t: &[StoredEntry], seq: i64) -> Checkpoint {
        let e = t.iter().find(|e| e.seq == seq).unwrap();
        Checkpoint { seq, hash: e.hash, signed_at: "x".into(), key_id: "k".into(), signature: vec![1] }
    }

    #[test]
    fn an_intact_trail_verifies() {
        let t = trail(20);
        let r = verify(&t, &[cp(&t, 10)], ok).unwrap();
        assert_eq!(r, VerifyReport { entries: 20, last_seq: 20, checkpoints: 1, unanchored: 10 });
        assert_eq!(verify(&[], &[], ok).unwrap().entries, 0);
    }

    #[test]
    fn every_field_is_covered() {
        let e = entry(1);
        let h = entry_hash(&GENESIS, &e);
        let variants = [
            AuditEntry { at: "other".into(), ..e.clone() },
            AuditEntry { officer: "other".into(), ..e.clone() },
            AuditEntry { role: "other".into(), ..e.clone() },
            AuditEntry { unit: "other".into(), ..e.clone() },
            AuditEntry { action: "other".into(), ..e.clone() },
            AuditEntry { target: None, ..e.clone() },
            AuditEntry { purpose: Some(String::new()), ..e.clone() },
            AuditEntry { request_id: None, ..e.clone() },
            AuditEntry { client: None, ..e.clone() },
            AuditEntry { outcome: "500".into(), ..e.clone() },
        ];
        for v in variants {
            assert_ne!(entry_hash(&GENESIS, &v), h, "{v:?}");
        }
        assert_ne!(entry_hash(&[1u8; 32], &e), h, "the previous hash is covered");
        // field boundaries are unambiguous
        let a = AuditEntry { officer: "ab".into(), role: "c".into(), ..e.clone() };
        let b = AuditEntry { officer: "a".into(), role: "bc".into(), ..e };
        assert_ne!(entry_hash(&GENESIS, &a), entry_hash(&GENESIS, &b));
    }

    #[test]
    fn a_modified_entry_is_named() {
        let mut t = trail(10);
        t[4].entry.purpose = Some("forged".into());
        assert_eq!(verify(&t, &[], ok), Err(Tamper::Modified { seq: 5 }));
    }

    #[test]
    fn a_deleted_entry_is_named() {
        let mut t = trail(10);
        t.remove(4);
        assert_eq!(verify(&t, &[], ok), Err(Tamper::Deleted { seq: 6 }));
        let mut t = trail(10);
        t.remove(0);
        assert_eq!(verify(&t, &[], ok), Err(Tamper::Deleted { seq: 2 }));
    }

    #[test]
    fn an_inserted_entry_is_named() {
        let t = trail(10);
        let forged = chain(t[3].hash, 5, &[entry(99)]).remove(0);
        let mut tampered: Vec<StoredEntry> = t[..4].to_vec();
        tampered.push(forged);
        for e in &t[4..] {
            tampered.push(StoredEntry { seq: e.seq + 1, ..e.clone() });
        }
        assert_eq!(verify(&tampered, &[], ok), Err(Tamper::Inserted { seq: 5 }));
    }

    #[test]
    fn reordered_entries_are_named() {
        let mut t = trail(10);
        t.swap(4, 5);
        let (a, b) = (t[4].seq, t[5].seq);
        t[4].seq = b;
        t[5].seq = a;
        // position 5 now holds the old entry 6, which links to the old entry 5, stored at 6
        assert_eq!(verify(&t, &[], ok), Err(Tamper::Reordered { seq: 5, links_to: 6 }));
    }

    #[test]
    fn a_rewritten_or_truncated_trail_fails_its_checkpoints() {
        let t = trail(10);
        let checkpoint = cp(&t, 8);
        // rewrite from entry 3 on, recomputing every hash: the chain alone looks fine
        let mut entries: Vec<AuditEntry> = t.iter().map(|e| e.entry.clone()).collect();
        entries[2].purpose = Some("forged".into());
        let rewritten = chain(GENESIS, 1, &entries);
        assert!(verify(&rewritten, &[], ok).is_ok());
        assert_eq!(verify(&rewritten, std::slice::from_ref(&checkpoint), ok), Err(Tamper::Rewritten { seq: 8 }));
        // drop the last three entries
        assert_eq!(verify(&t[..7], std::slice::from_ref(&checkpoint), ok), Err(Tamper::Truncated { last: 7, seq: 8 }));
        // a forged checkpoint
        assert_eq!(verify(&t, &[checkpoint], |_| false), Err(Tamper::BadCheckpoint { seq: 8 }));
    }
}
