//! SQLite adapter: the embedded default. One file, WAL journal, foreign keys on,
//! a pool of reader connections and one writer (SQLite serializes writers anyway).

use async_trait::async_trait;
use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::{
    ApprovedChange, AuditQuery, ChangeRequest, Decision, FeedItem, RawPersonRecord, RequestQuery, RequestState, Session,
};
use crate::{
    ChangeKind, ChangeMeta, Columns, PersonRecord, PersonRef, PersonVersion, Result, SearchPage, SearchQuery, Store,
    StoreError, now,
};
use dancu_core::audit::{self, AuditEntry, Checkpoint, StoredEntry};
use dancu_core::auth::{Officer, SessionKind, SessionStage};
use dancu_core::sharing::{Consent, Partner};
use dancu_core::{Person, PersonalId};

/// Schema migrations, applied in order; never edit one that has shipped, add a new one.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "persons",
        r#"
CREATE TABLE persons (
    key           TEXT PRIMARY KEY,
    personal_id   TEXT UNIQUE,
    legacy_id     TEXT,
    status        TEXT NOT NULL,
    name_key      TEXT NOT NULL,
    birth_year    INTEGER NOT NULL,
    commune_key   TEXT,
    province_2025 TEXT,
    version       INTEGER NOT NULL,
    data          TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;
CREATE INDEX persons_legacy_id ON persons (legacy_id) WHERE legacy_id IS NOT NULL;
CREATE INDEX persons_name_year_commune ON persons (name_key, birth_year, commune_key);
CREATE INDEX persons_commune_name ON persons (commune_key, name_key);
CREATE INDEX persons_province_name ON persons (province_2025, name_key);

CREATE TABLE person_versions (
    key         TEXT NOT NULL REFERENCES persons (key),
    version     INTEGER NOT NULL,
    change      TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    legal_basis TEXT,
    recorded_at TEXT NOT NULL,
    data        TEXT NOT NULL,
    PRIMARY KEY (key, version)
) STRICT;

-- Every personal ID ever issued, so that no number is ever issued twice, even after the
-- person's number is re-established.
CREATE TABLE issued_ids (
    personal_id TEXT PRIMARY KEY,
    key         TEXT NOT NULL REFERENCES persons (key),
    issued_at   TEXT NOT NULL
) STRICT;
"#,
    ),
    (
        2,
        "audit",
        r#"
CREATE TABLE audit_log (
    seq        INTEGER PRIMARY KEY,
    at         TEXT NOT NULL,
    officer    TEXT NOT NULL,
    role       TEXT NOT NULL,
    unit       TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    purpose    TEXT,
    request_id TEXT,
    client     TEXT,
    outcome    TEXT NOT NULL,
    prev_hash  BLOB NOT NULL,
    hash       BLOB NOT NULL
) STRICT;
CREATE INDEX audit_log_officer ON audit_log (officer, at);
CREATE INDEX audit_log_target ON audit_log (target, at) WHERE target IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);
CREATE TABLE audit_checkpoints (
    seq       INTEGER PRIMARY KEY,
    hash      BLOB NOT NULL,
    signed_at TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    signature BLOB NOT NULL
) STRICT;
-- Append-only. Whoever can drop these triggers can edit rows, and the hash chain tells.
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
    BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
    BEGIN SELECT RAISE(ABORT, 'audit checkpoints are append-only'); END;
"#,
    ),
    (
        3,
        "officers",
        r#"
CREATE TABLE officers (
    username       TEXT PRIMARY KEY,
    display_name   TEXT NOT NULL,
    unit           TEXT NOT NULL,
    roles          TEXT NOT NULL,
    password_hash  TEXT NOT NULL,
    totp_secret    TEXT,
    totp_last_step INTEGER,
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   TEXT,
    active         INTEGER NOT NULL,
    created_at     TEXT NOT NULL
) STRICT;
"#,
    ),
    (
        4,
        "access",
        r#"
ALTER TABLE officers ADD COLUMN permissions TEXT NOT NULL DEFAULT '';
ALTER TABLE officers ADD COLUMN totp_pending TEXT;
ALTER TABLE person_versions ADD COLUMN approved_by TEXT;

CREATE TABLE sessions (
    token_hash   TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES officers (username),
    kind         TEXT NOT NULL,
    stage        TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    revoked      INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX sessions_username ON sessions (username);

-- The areas (dancu_core::access) each person lies in: what scopes officers' searches.
CREATE TABLE person_areas (
    area       TEXT NOT NULL,
    person_key TEXT NOT NULL REFERENCES persons (key),
    PRIMARY KEY (area, person_key)
) STRICT, WITHOUT ROWID;
CREATE INDEX person_areas_person ON person_areas (person_key);

CREATE TABLE change_requests (
    id             TEXT PRIMARY KEY,
    person_key     TEXT NOT NULL REFERENCES persons (key),
    base_version   INTEGER NOT NULL,
    guarded        TEXT NOT NULL,
    proposed       TEXT NOT NULL,
    requested_by   TEXT NOT NULL,
    requested_unit TEXT NOT NULL,
    requested_at   TEXT NOT NULL,
    reason         TEXT NOT NULL,
    legal_basis    TEXT,
    state          TEXT NOT NULL,
    decided_by     TEXT,
    decided_at     TEXT,
    decision_note  TEXT,
    result_version INTEGER
) STRICT;
CREATE INDEX change_requests_state ON change_requests (state, requested_at);
CREATE INDEX change_requests_person ON change_requests (person_key);
"#,
    ),
    (
        8,
        "sharing",
        r#"
CREATE TABLE partners (
    id         TEXT PRIMARY KEY,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
) STRICT;

-- Client assertions (RFC 7523) seen, kept until they expire: a replay is refused.
CREATE TABLE partner_assertions (
    partner_id TEXT NOT NULL REFERENCES partners (id),
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (partner_id, jti)
) STRICT, WITHOUT ROWID;
CREATE INDEX partner_assertions_expiry ON partner_assertions (expires_at);

CREATE TABLE consents (
    id          TEXT PRIMARY KEY,
    person_key  TEXT NOT NULL REFERENCES persons (key),
    partner_id  TEXT NOT NULL REFERENCES partners (id),
    purpose     TEXT NOT NULL,
    granted_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    recorded_by TEXT NOT NULL,
    revoked_by  TEXT
) STRICT;
CREATE INDEX consents_person ON consents (person_key, partner_id);
"#,
    ),
];

/// Fills `person_areas` for people stored before migration 4 (inside its transaction).
fn backfill_areas(tx: &rusqlite::Transaction<'_>) -> Result<()> {
    let mut read = tx.prepare("SELECT key, data FROM persons")?;
    let mut insert = tx.prepare("INSERT OR IGNORE INTO person_areas (area, person_key) VALUES (?1, ?2)")?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let key: String = r.get(0)?;
        let data: String = r.get(1)?;
        for area in parse_person(&data)?.areas() {
            insert.execute(params![area, key])?;
        }
    }
    Ok(())
}

/// Replaces a person's `person_areas` rows.
fn write_areas(tx: &rusqlite::Transaction<'_>, key: &str, areas: &[String], replace: bool) -> Result<()> {
    if replace {
        tx.prepare_cached("DELETE FROM person_areas WHERE person_key = ?1")?.execute([key])?;
    }
    let mut stmt = tx.prepare_cached("INSERT INTO person_areas (area, person_key) VALUES (?1, ?2)")?;
    for a in areas {
        stmt.execute(params![a, key])?;
    }
    Ok(())
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Connection>,
}

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        backend(e)
    }
}

fn configure(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // FULL: a committed change survives power loss, not only a crash of the process.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -32000)?;
    Ok(())
}

const AUDIT_SELECT: &str = "SELECT seq, at, officer, role, unit, action, target, purpose, request_id, client, outcome,
                                   prev_hash, hash FROM audit_log";

fn to_hash(b: &[u8]) -> Result<audit::Hash> {
    b.try_into().map_err(|_| StoreError::Corrupt(format!("an audit hash has {} bytes, not 32", b.len())))
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<StoredEntry>> {
    let prev: Vec<u8> = r.get(11)?;
    let hash: Vec<u8> = r.get(12)?;
    let entry = AuditEntry {
        at: r.get(1)?,
        officer: r.get(2)?,
        role: r.get(3)?,
        unit: r.get(4)?,
        action: r.get(5)?,
        target: r.get(6)?,
        purpose: r.get(7)?,
        request_id: r.get(8)?,
        client: r.get(9)?,
        outcome: r.get(10)?,
    };
    let seq: i64 = r.get(0)?;
    Ok((|| Ok(StoredEntry { seq, entry, prev_hash: to_hash(&prev)?, hash: to_hash(&hash)? }))())
}

/// Appends entries to the chain inside the caller's (write) transaction; returns the last seq.
fn append_audit(tx: &rusqlite::Transaction<'_>, entries: &[AuditEntry]) -> Result<i64> {
    let head: Option<(i64, Vec<u8>)> = tx
        .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (last, prev) = match head {
        Some((seq, h)) => (seq, to_hash(&h)?),
        None => (0, audit::GENESIS),
    };
    let chained = audit::chain(prev, last + 1, entries);
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit_log (seq, at, officer, role, unit, action, target, purpose, request_id, client,
                                    outcome, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        for c in &chained {
            let e = &c.entry;
            stmt.execute(params![
                c.seq,
                e.at,
                e.officer,
                e.role,
                e.unit,
                e.action,
                e.target,
                e.purpose,
                e.request_id,
                e.client,
                e.outcome,
                &c.prev_hash[..],
                &c.hash[..]
            ])?;
        }
    }
    Ok(last + chained.len() as i64)
}

/// Replaces a person's state at `expected_version` inside the caller's write transaction.
fn update_in_tx(
    tx: &rusqlite::Transaction<'_>,
    key: Uuid,
    expected_version: i64,
    person: &Person,
    kind: ChangeKind,
    meta: &ChangeMeta,
) -> Result<PersonRecord> {
    let k = key.to_string();
    let current: Option<(i64, Option<String>, String)> = tx
        .prepare_cached("SELECT version, personal_id, created_at FROM persons WHERE key = ?1")?
        .query_row([&k], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((version, current_id, created)) = current else { return Err(StoreError::NotFound) };
    if version != expected_version {
        return Err(StoreError::Conflict { expected: expected_version, actual: version });
    }
    let at = now();
    if let Some(id) = person.personal_id.filter(|id| current_id.as_deref() != Some(id.as_str())) {
        let n = tx.execute(
            "INSERT INTO issued_ids (personal_id, key, issued_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
            params![id.as_str(), k, ts(at)],
        )?;
        if n == 0 {
            return Err(StoreError::IdTaken(id));
        }
    }
    let c = Columns::of(person);
    let data = serde_json::to_string(&person).map_err(backend)?;
    let new_version = version + 1;
    tx.prepare_cached(
        "UPDATE persons SET personal_id = ?2, legacy_id = ?3, status = ?4, name_key = ?5, birth_year = ?6,
                        commune_key = ?7, province_2025 = ?8, version = ?9, data = ?10, updated_at = ?11
                 WHERE key = ?1",
    )?
    .execute(params![
        k,
        c.personal_id,
        c.legacy_id,
        c.status,
        c.facts.name_key,
        c.facts.birth_year,
        c.facts.commune_key,
        c.facts.province_2025,
        new_version,
        data,
        ts(at)
    ])
    .map_err(|e| match person.personal_id {
        Some(id) if is_unique_violation(&e) => StoreError::IdTaken(id),
        _ => e.into(),
    })?;
    insert_version(tx, &k, new_version, kind, meta, &ts(at), &data)?;
    if let Some(entry) = &meta.audit {
        append_audit(tx, std::slice::from_ref(entry))?;
    }
    write_areas(tx, &k, &c.areas, true)?;
    Ok(PersonRecord {
        key,
        version: new_version,
        created_at: parse_ts(&created)?,
        updated_at: at,
        person: person.clone(),
    })
}

const OFFICER_SELECT: &str = "SELECT username, display_name, unit, roles, permissions, password_hash, totp_secret,
                                      totp_last_step, totp_pending, failed_logins, locked_until, active FROM officers";

fn officer_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Officer>> {
    let unit: String = r.get(2)?;
    let roles: String = r.get(3)?;
    let permissions: String = r.get(4)?;
    let (username, display_name, password_hash) = (r.get(0)?, r.get(1)?, r.get(5)?);
    let (totp_secret, totp_last_step, totp_pending) = (r.get(6)?, r.get(7)?, r.get(8)?);
    let (failed_logins, locked_until, active) = (r.get(9)?, r.get(10)?, r.get(11)?);
    Ok((|| {
        Ok(Officer {
            username,
            display_name,
            unit: crate::unit_from_text(&unit)?,
            roles: crate::roles_from_text(&roles)?,
            permissions: crate::permissions_from_text(&permissions)?,
            password_hash,
            totp_secret,
            totp_last_step,
            totp_pending,
            failed_logins,
            locked_until,
            active,
        })
    })())
}

const REQUEST_SELECT: &str = "SELECT id, person_key, base_version, guarded, proposed, requested_by, requested_unit,
                                     requested_at, reason, legal_basis, state, decided_by, decided_at, decision_note,
                                     result_version FROM change_requests";

fn request_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ChangeRequest>> {
    let (id, person_key, base_version): (String, String, i64) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (guarded, proposed, requested_by): (String, String, String) = (r.get(3)?, r.get(4)?, r.get(5)?);
    let (requested_unit, requested_at, reason): (String, String, String) = (r.get(6)?, r.get(7)?, r.get(8)?);
    let (legal_basis, state, decided_by): (Option<String>, String, Option<String>) =
        (r.get(9)?, r.get(10)?, r.get(11)?);
    let (decided_at, decision_note, result_version): (Option<String>, Option<String>, Option<i64>) =
        (r.get(12)?, r.get(13)?, r.get(14)?);
    Ok((|| {
        Ok(ChangeRequest {
            id: parse_key(&id)?,
            person_key: parse_key(&person_key)?,
            base_version,
            guarded: crate::guarded_from_text(&guarded)?,
            proposed: serde_json::from_str(&proposed)
                .map_err(|_| StoreError::Corrupt("a stored change request does not parse".into()))?,
            requested_by,
            requested_unit,
            requested_at: parse_ts(&requested_at)?,
            reason,
            legal_basis,
            state: RequestState::from_code(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("request state {state:?}")))?,
            decided_by,
            decided_at: decided_at.as_deref().map(parse_ts).transpose()?,
            decision_note,
            result_version,
        })
    })())
}

/// Runs `f` on a pooled read-only connection (opening one when the pool is empty).
fn with_reader<T>(inner: &Inner, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let conn = inner.readers.lock().expect("reader pool lock").pop();
    let conn = match conn {
        Some(c) => c,
        None => open_reader(&inner.path)?,
    };
    let out = f(&conn);
    let mut pool = inner.readers.lock().expect("reader pool lock");
    if pool.len() < 16 {
        pool.push(conn);
    }
    out
}

/// A read-only connection; reads map the file into memory (no read() call per page).
fn open_reader(path: &Path) -> Result<Connection> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "cache_size", -32000)?;
    c.pragma_update(None, "mmap_size", 1i64 << 40)?;
    Ok(c)
}

fn ts(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("RFC 3339 formatting of a UTC time")
}

fn parse_ts(s: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| StoreError::Corrupt(format!("timestamp {s:?}: {e}")))
}

fn parse_key(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| StoreError::Corrupt(format!("key {s:?}: {e}")))
}

fn parse_person(s: &str) -> Result<Person> {
    serde_json::from_str(s).map_err(|e| {
        // Never the message itself: it may quote the stored (personal) value.
        StoreError::Corrupt(format!("a stored person record does not parse (line {}, column {})", e.line(), e.column()))
    })
}

const RECORD_COLUMNS: &str = "key, version, created_at, updated_at, data";

/// key, version, created_at, updated_at, data — as stored.
type RecordRow = (String, i64, String, String, String);

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

/// The `persons` row a reference names (the oldest, for a legacy number held twice). Indexed
/// point lookups: callers run them inline.
fn row_by_ref(conn: &Connection, by: &PersonRef) -> Result<Option<RecordRow>> {
    const BY_KEY: &str = "SELECT key, version, created_at, updated_at, data FROM persons WHERE key = ?1";
    const BY_ID: &str = "SELECT key, version, created_at, updated_at, data FROM persons WHERE personal_id = ?1";
    const BY_LEGACY: &str = "SELECT key, version, created_at, updated_at, data FROM persons WHERE legacy_id = ?1
                             ORDER BY created_at LIMIT 1";
    let (sql, value) = match by {
        PersonRef::Key(k) => (BY_KEY, k.to_string()),
        PersonRef::PersonalId(id) => (BY_ID, id.to_string()),
        PersonRef::LegacyId(l) => (BY_LEGACY, l.to_string()),
    };
    Ok(conn.prepare_cached(sql)?.query_row([value], record_from_row).optional()?)
}

fn to_record((key, version, created, updated, data): RecordRow) -> Result<PersonRecord> {
    Ok(PersonRecord {
        key: parse_key(&key)?,
        version,
        created_at: parse_ts(&created)?,
        updated_at: parse_ts(&updated)?,
        person: parse_person(&data)?,
    })
}

/// A UNIQUE violation on a personal ID column.
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, Some(msg))
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE && msg.contains("personal_id"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file. Migrations are applied by [`Store::migrate`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| backend(format!("creating {}: {e}", dir.display())))?;
        }
        let writer = Connection::open(&path)?;
        configure(&writer)?;
        writer.pragma_update(None, "cache_size", -262_144)?; // 256 MiB: bulk loads touch random index pages
        Ok(SqliteStore { inner: Arc::new(Inner { path, readers: Mutex::new(Vec::new()), writer: Mutex::new(writer) }) })
    }

    /// Runs a read on the calling thread. Only for indexed point lookups (tens of
    /// microseconds): the hand-off to a blocking thread would cost more than the query.
    fn read_now<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        with_reader(&self.inner, f)
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&Connection) -> Result<T> + Send + 'static) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || with_reader(&inner, f)).await.map_err(backend)?
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(backend)?
    }
}

fn insert_version(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    version: i64,
    kind: ChangeKind,
    meta: &ChangeMeta,
    at: &str,
    data: &str,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO person_versions (key, version, change, actor, reason, legal_basis, approved_by, recorded_at, data)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        key,
        version,
        kind.code(),
        meta.actor,
        meta.reason,
        meta.legal_basis,
        meta.approved_by,
        at,
        data
    ])?;
    Ok(())
}

fn insert_new(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    person: &Person,
    meta: &ChangeMeta,
    kind: ChangeKind,
    at: &str,
) -> Result<()> {
    let c = Columns::of(person);
    let data = serde_json::to_string(person).map_err(backend)?;
    tx.prepare_cached(
        "INSERT INTO persons (key, personal_id, legacy_id, status, name_key, birth_year, commune_key, province_2025,
                              version, data, created_at, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?10)",
    )?
    .execute(params![
        key,
        c.personal_id,
        c.legacy_id,
        c.status,
        c.facts.name_key,
        c.facts.birth_year,
        c.facts.commune_key,
        c.facts.province_2025,
        data,
        at
    ])
    .map_err(|e| match person.personal_id {
        Some(id) if is_unique_violation(&e) => StoreError::IdTaken(id),
        _ => e.into(),
    })?;
    write_areas(tx, key, &c.areas, false)?;
    insert_version(tx, key, 1, kind, meta, at, &data)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<usize> {
        self.write(|conn| {
            conn.execute_batch(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
            )?;
            let mut applied = 0;
            for (version, name, sql) in MIGRATIONS {
                let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let done: Option<i64> = tx
                    .query_row("SELECT version FROM schema_migrations WHERE version = ?1", [version], |r| r.get(0))
                    .optional()?;
                if done.is_none() {
                    tx.execute_batch(sql)?;
                    if *version == 4 {
                        backfill_areas(&tx)?;
                    }
                    tx.execute(
                        "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                        params![version, name, ts(now())],
                    )?;
                    applied += 1;
                }
                tx.commit()?;
            }
            Ok(applied)
        })
        .await
    }

    async fn insert_person(&self, person: &Person, meta: &ChangeMeta) -> Result<PersonRecord> {
        let person = person.clone();
        let meta = meta.clone();
        self.write(move |conn| {
            let key = crate::new_key();
            let at = now();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            insert_new(&tx, &key.to_string(), &person, &meta, ChangeKind::Create, &ts(at))?;
            if let Some(mut entry) = meta.audit.clone() {
                entry.target.get_or_insert_with(|| key.to_string());
                append_audit(&tx, &[entry])?;
            }
            if let Some(id) = person.personal_id {
                let n = tx.execute(
                    "INSERT INTO issued_ids (personal_id, key, issued_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                    params![id.as_str(), key.to_string(), ts(at)],
                )?;
                if n == 0 {
                    return Err(StoreError::IdTaken(id));
                }
            }
            tx.commit()?;
            Ok(PersonRecord { key, version: 1, created_at: at, updated_at: at, person })
        })
        .await
    }

    async fn get_person(&self, by: &PersonRef) -> Result<Option<PersonRecord>> {
        self.read_now(|conn| row_by_ref(conn, by)?.map(to_record).transpose())
    }

    async fn get_person_raw(&self, by: &PersonRef) -> Result<Option<RawPersonRecord>> {
        // Timestamps passed through as stored, the record as stored JSON.
        self.read_now(|conn| {
            row_by_ref(conn, by)?
                .map(|(key, version, created_at, updated_at, data)| {
                    Ok(RawPersonRecord {
                        key: parse_key(&key)?,
                        version,
                        created_at,
                        updated_at,
                        person: serde_json::value::RawValue::from_string(data)
                            .map_err(|_| StoreError::Corrupt("a stored person record is not JSON".into()))?,
                    })
                })
                .transpose()
        })
    }

    async fn update_person(
        &self,
        key: Uuid,
        expected_version: i64,
        person: &Person,
        kind: ChangeKind,
        meta: &ChangeMeta,
    ) -> Result<PersonRecord> {
        let person = person.clone();
        let meta = meta.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let rec = update_in_tx(&tx, key, expected_version, &person, kind, &meta)?;
            tx.commit()?;
            Ok(rec)
        })
        .await
    }

    async fn history(&self, key: Uuid) -> Result<Vec<PersonVersion>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT version, change, actor, reason, legal_basis, recorded_at, data, approved_by
                 FROM person_versions WHERE key = ?1 ORDER BY version",
            )?;
            let rows = stmt.query_map([key.to_string()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<String>>(4)?,
                    r.get::<_, String>(5)?,
                    r.get::<_, String>(6)?,
                    r.get::<_, Option<String>>(7)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (version, change, actor, reason, legal_basis, at, data, approved_by) = row?;
                out.push(PersonVersion {
                    version,
                    change: ChangeKind::from_code(&change)
                        .ok_or_else(|| StoreError::Corrupt(format!("change kind {change:?}")))?,
                    recorded_at: parse_ts(&at)?,
                    meta: ChangeMeta { approved_by, ..ChangeMeta::new(actor, reason, legal_basis) },
                    person: parse_person(&data)?,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        let q = q.clone();
        self.read(move |conn| {
            let mut sql = format!("SELECT {RECORD_COLUMNS} FROM persons WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(p) = &q.name_prefix {
                args.push(p.clone().into());
                args.push(dancu_core::text::prefix_upper_bound(p).into());
                sql += &format!(" AND name_key >= ?{} AND name_key < ?{}", args.len() - 1, args.len());
            }
            if let Some(y) = q.birth_year {
                args.push(i64::from(y).into());
                sql += &format!(" AND birth_year = ?{}", args.len());
            }
            if let Some(c) = &q.commune_key {
                args.push(c.clone().into());
                sql += &format!(" AND commune_key = ?{}", args.len());
            }
            if let Some(p) = &q.province_2025 {
                args.push(p.clone().into());
                sql += &format!(" AND province_2025 = ?{}", args.len());
            }
            if let Some(s) = q.status {
                args.push(s.code().to_string().into());
                sql += &format!(" AND status = ?{}", args.len());
            }
            if let Some(a) = &q.area {
                args.push(a.clone().into());
                sql += &format!(" AND key IN (SELECT person_key FROM person_areas WHERE area = ?{})", args.len());
            }
            args.push(i64::from(q.limit + 1).into());
            args.push(i64::from(q.offset).into());
            sql += &format!(" ORDER BY name_key, key LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), record_from_row)?;
            let mut items = Vec::new();
            for row in rows {
                items.push(to_record(row?)?);
            }
            let has_more = items.len() > q.limit as usize;
            items.truncate(q.limit as usize);
            Ok(SearchPage { items, has_more })
        })
        .await
    }

    async fn count_persons(&self) -> Result<u64> {
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM persons", [], |r| r.get::<_, i64>(0))? as u64)).await
    }

    async fn insert_batch(&self, people: &[Person], meta: &ChangeMeta) -> Result<Vec<usize>> {
        let people = people.to_vec();
        let meta = meta.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let at = ts(now());
            let mut taken = Vec::new();
            for (i, p) in people.iter().enumerate() {
                let id = crate::batch_id(i, p)?;
                if let Some(id) = id {
                    let exists: bool = tx
                        .prepare_cached("SELECT 1 FROM issued_ids WHERE personal_id = ?1")?
                        .query_row([id.as_str()], |_| Ok(()))
                        .optional()?
                        .is_some();
                    if exists {
                        taken.push(i);
                        continue;
                    }
                }
                let key = crate::new_key().to_string();
                insert_new(&tx, &key, p, &meta, ChangeKind::Create, &at)?;
                if let Some(id) = id {
                    tx.prepare_cached("INSERT INTO issued_ids (personal_id, key, issued_at) VALUES (?1, ?2, ?3)")?
                        .execute(params![id.as_str(), key, at])?;
                }
            }
            tx.commit()?;
            Ok(taken)
        })
        .await
    }

    async fn audit_append(&self, entries: &[AuditEntry]) -> Result<i64> {
        let entries = entries.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let last = append_audit(&tx, &entries)?;
            tx.commit()?;
            Ok(last)
        })
        .await
    }

    async fn audit_read(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredEntry>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!("{AUDIT_SELECT} WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
            let rows = stmt.query_map(params![after_seq, limit], audit_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<StoredEntry>> {
        let q = q.clone();
        self.read(move |conn| {
            let mut sql = format!("{AUDIT_SELECT} WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            for (col, op, v) in
                [("officer", "=", &q.officer), ("target", "=", &q.target), ("at", ">=", &q.from), ("at", "<", &q.to)]
            {
                if let Some(v) = v {
                    args.push(v.clone().into());
                    sql += &format!(" AND {col} {op} ?{}", args.len());
                }
            }
            args.push(i64::from(q.limit).into());
            args.push(i64::from(q.offset).into());
            sql += &format!(" ORDER BY seq DESC LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), audit_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<(i64, audit::Hash)>> {
        self.read(|conn| {
            let head: Option<(i64, Vec<u8>)> = conn
                .query_row("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", [], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?;
            head.map(|(seq, h)| Ok((seq, to_hash(&h)?))).transpose()
        })
        .await
    }

    async fn audit_add_checkpoint(&self, c: &Checkpoint) -> Result<()> {
        let c = c.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (seq) DO NOTHING",
                params![c.seq, &c.hash[..], c.signed_at, c.key_id, c.signature],
            )?;
            Ok(())
        })
        .await
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        self.read(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT seq, hash, signed_at, key_id, signature FROM audit_checkpoints ORDER BY seq")?;
            let rows = stmt.query_map([], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, hash, signed_at, key_id, signature) = row?;
                out.push(Checkpoint { seq, hash: to_hash(&hash)?, signed_at, key_id, signature });
            }
            Ok(out)
        })
        .await
    }

    async fn officer_insert(&self, o: &Officer) -> Result<()> {
        let o = o.clone();
        self.write(move |conn| {
            let n = conn.execute(
                "INSERT INTO officers (username, display_name, unit, roles, permissions, password_hash, totp_secret,
                                       totp_last_step, totp_pending, failed_logins, locked_until, active, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) ON CONFLICT (username) DO NOTHING",
                params![
                    o.username,
                    o.display_name,
                    o.unit.code_str(),
                    crate::roles_to_text(&o.roles),
                    crate::permissions_to_text(&o.permissions),
                    o.password_hash,
                    o.totp_secret,
                    o.totp_last_step,
                    o.totp_pending,
                    o.failed_logins,
                    o.locked_until,
                    o.active,
                    ts(now())
                ],
            )?;
            if n == 0 { Err(StoreError::Duplicate(format!("officer {:?}", o.username))) } else { Ok(()) }
        })
        .await
    }

    async fn officer_get(&self, username: &str) -> Result<Option<Officer>> {
        let username = username.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!("{OFFICER_SELECT} WHERE username = ?1"))?;
            stmt.query_row([&username], officer_row).optional()?.transpose()
        })
        .await
    }

    async fn officer_update(&self, o: &Officer) -> Result<()> {
        let o = o.clone();
        self.write(move |conn| {
            let n = conn.execute(
                "UPDATE officers SET display_name = ?2, unit = ?3, roles = ?4, permissions = ?5, password_hash = ?6,
                        totp_secret = ?7, totp_last_step = ?8, totp_pending = ?9, failed_logins = ?10,
                        locked_until = ?11, active = ?12
                 WHERE username = ?1",
                params![
                    o.username,
                    o.display_name,
                    o.unit.code_str(),
                    crate::roles_to_text(&o.roles),
                    crate::permissions_to_text(&o.permissions),
                    o.password_hash,
                    o.totp_secret,
                    o.totp_last_step,
                    o.totp_pending,
                    o.failed_logins,
                    o.locked_until,
                    o.active
                ],
            )?;
            if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
        })
        .await
    }

    async fn officer_list(&self) -> Result<Vec<Officer>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!("{OFFICER_SELECT} ORDER BY username"))?;
            let rows = stmt.query_map([], officer_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn session_insert(&self, x: &Session) -> Result<()> {
        let x = x.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO sessions (token_hash, username, kind, stage, created_at, last_seen_at, expires_at, revoked)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    x.token_hash,
                    x.username,
                    x.kind.code(),
                    x.stage.code(),
                    ts(x.created_at),
                    ts(x.last_seen_at),
                    ts(x.expires_at),
                    x.revoked
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn session_get(&self, token_hash: &str) -> Result<Option<Session>> {
        let token_hash = token_hash.to_string();
        self.read_now(move |conn| {
            let row = conn
                .prepare_cached(
                    "SELECT token_hash, username, kind, stage, created_at, last_seen_at, expires_at, revoked
                     FROM sessions WHERE token_hash = ?1",
                )?
                .query_row([&token_hash], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                        r.get::<_, String>(5)?,
                        r.get::<_, String>(6)?,
                        r.get::<_, bool>(7)?,
                    ))
                })
                .optional()?;
            row.map(|(token_hash, username, kind, stage, created, seen, expires, revoked)| {
                Ok(Session {
                    token_hash,
                    username,
                    kind: SessionKind::from_code(&kind)
                        .ok_or_else(|| StoreError::Corrupt(format!("session kind {kind:?}")))?,
                    stage: SessionStage::from_code(&stage)
                        .ok_or_else(|| StoreError::Corrupt(format!("session stage {stage:?}")))?,
                    created_at: parse_ts(&created)?,
                    last_seen_at: parse_ts(&seen)?,
                    expires_at: parse_ts(&expires)?,
                    revoked,
                })
            })
            .transpose()
        })
    }

    async fn session_touch(&self, token_hash: &str, at: OffsetDateTime) -> Result<()> {
        let token_hash = token_hash.to_string();
        self.write(move |conn| {
            conn.prepare_cached("UPDATE sessions SET last_seen_at = ?2 WHERE token_hash = ?1 AND last_seen_at < ?2")?
                .execute(params![token_hash, ts(at)])?;
            Ok(())
        })
        .await
    }

    async fn session_revoke(&self, token_hash: &str) -> Result<bool> {
        let token_hash = token_hash.to_string();
        self.write(move |conn| {
            Ok(conn.execute("UPDATE sessions SET revoked = 1 WHERE token_hash = ?1 AND revoked = 0", [&token_hash])?
                > 0)
        })
        .await
    }

    async fn session_revoke_all(&self, username: &str) -> Result<u64> {
        let username = username.to_string();
        self.write(move |conn| {
            Ok(conn.execute("UPDATE sessions SET revoked = 1 WHERE username = ?1 AND revoked = 0", [&username])? as u64)
        })
        .await
    }

    async fn change_request_insert(&self, r: &ChangeRequest, audit: Option<&AuditEntry>) -> Result<()> {
        let r = r.clone();
        let audit = audit.cloned();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let proposed = serde_json::to_string(&r.proposed).map_err(backend)?;
            tx.execute(
                "INSERT INTO change_requests (id, person_key, base_version, guarded, proposed, requested_by,
                     requested_unit, requested_at, reason, legal_basis, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                params![
                    r.id.to_string(),
                    r.person_key.to_string(),
                    r.base_version,
                    crate::guarded_to_text(&r.guarded),
                    proposed,
                    r.requested_by,
                    r.requested_unit,
                    ts(r.requested_at),
                    r.reason,
                    r.legal_basis,
                    r.state.code()
                ],
            )?;
            if let Some(e) = audit {
                append_audit(&tx, &[e])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn change_request_get(&self, id: Uuid) -> Result<Option<ChangeRequest>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!("{REQUEST_SELECT} WHERE id = ?1"))?;
            stmt.query_row([id.to_string()], request_row).optional()?.transpose()
        })
        .await
    }

    async fn change_requests(&self, q: &RequestQuery) -> Result<Vec<ChangeRequest>> {
        let q = q.clone();
        self.read(move |conn| {
            let mut sql = format!("{REQUEST_SELECT} WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(s) = q.state {
                args.push(s.code().to_string().into());
                sql += &format!(" AND state = ?{}", args.len());
            }
            if let Some(k) = q.person_key {
                args.push(k.to_string().into());
                sql += &format!(" AND person_key = ?{}", args.len());
            }
            if let Some(a) = &q.area {
                args.push(a.clone().into());
                sql +=
                    &format!(" AND person_key IN (SELECT person_key FROM person_areas WHERE area = ?{})", args.len());
            }
            args.push(i64::from(q.limit).into());
            args.push(i64::from(q.offset).into());
            sql += &format!(" ORDER BY requested_at DESC, id LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), request_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn change_request_decide(
        &self,
        id: Uuid,
        decision: &Decision,
        apply: Option<&ApprovedChange>,
    ) -> Result<ChangeRequest> {
        let decision = decision.clone();
        let apply = apply.cloned();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut req = tx
                .prepare_cached(&format!("{REQUEST_SELECT} WHERE id = ?1"))?
                .query_row([id.to_string()], request_row)
                .optional()?
                .transpose()?
                .ok_or(StoreError::NotFound)?;
            if req.state != RequestState::Pending {
                return Err(StoreError::State(format!("the request is already {}", req.state.code())));
            }
            if let Some(a) = &apply {
                let rec = update_in_tx(&tx, req.person_key, req.base_version, &a.person, a.kind, &a.meta)?;
                req.result_version = Some(rec.version);
            }
            let at = now();
            req.state = decision.state;
            req.decided_by = Some(decision.by.clone());
            req.decided_at = Some(at);
            req.decision_note = decision.note.clone();
            tx.execute(
                "UPDATE change_requests SET state = ?2, decided_by = ?3, decided_at = ?4, decision_note = ?5,
                        result_version = ?6 WHERE id = ?1",
                params![
                    id.to_string(),
                    req.state.code(),
                    req.decided_by,
                    ts(at),
                    req.decision_note,
                    req.result_version
                ],
            )?;
            if let Some(e) = &decision.audit {
                append_audit(&tx, std::slice::from_ref(e))?;
            }
            tx.commit()?;
            Ok(req)
        })
        .await
    }

    async fn sample_personal_ids(&self, n: u32) -> Result<Vec<PersonalId>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT personal_id FROM persons WHERE personal_id IS NOT NULL
                 AND rowid IN (SELECT rowid FROM persons ORDER BY random() LIMIT ?1 * 2) LIMIT ?1",
            )?;
            let ids = stmt.query_map([n], |r| r.get::<_, String>(0))?;
            let mut out = Vec::new();
            for id in ids {
                let id = id?;
                out.push(
                    PersonalId::parse(&id).map_err(|e| {
                        StoreError::Corrupt(format!("a stored personal ID is malformed ({})", e.code()))
                    })?,
                );
            }
            Ok(out)
        })
        .await
    }

    async fn ping(&self) -> Result<()> {
        self.read(|conn| Ok(conn.query_row("SELECT 1", [], |_| Ok(()))?)).await
    }

    async fn partner_insert(&self, p: &Partner) -> Result<()> {
        let p = p.clone();
        self.write(move |conn| {
            let at = ts(now());
            let n = conn.execute(
                "INSERT INTO partners (id, data, created_at, updated_at) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT (id) DO NOTHING",
                params![p.id, crate::partner_to_json(&p), at],
            )?;
            if n == 0 { Err(StoreError::Duplicate(format!("partner {:?}", p.id))) } else { Ok(()) }
        })
        .await
    }

    async fn partner_get(&self, id: &str) -> Result<Option<Partner>> {
        let id = id.to_string();
        self.read_now(move |conn| {
            let data: Option<String> = conn
                .prepare_cached("SELECT data FROM partners WHERE id = ?1")?
                .query_row([&id], |r| r.get(0))
                .optional()?;
            data.as_deref().map(crate::partner_from_json).transpose()
        })
    }

    async fn partner_update(&self, p: &Partner) -> Result<()> {
        let p = p.clone();
        self.write(move |conn| {
            let n = conn.execute(
                "UPDATE partners SET data = ?2, updated_at = ?3 WHERE id = ?1",
                params![p.id, crate::partner_to_json(&p), ts(now())],
            )?;
            if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
        })
        .await
    }

    async fn partner_list(&self) -> Result<Vec<Partner>> {
        self.read(|conn| {
            let mut stmt = conn.prepare("SELECT data FROM partners ORDER BY id")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.map(|r| crate::partner_from_json(&r?)).collect()
        })
        .await
    }

    async fn assertion_use(&self, partner_id: &str, jti: &str, expires_at: i64, now_s: i64) -> Result<bool> {
        let (partner_id, jti) = (partner_id.to_string(), jti.to_string());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute("DELETE FROM partner_assertions WHERE expires_at < ?1", [now_s])?;
            let n = tx.execute(
                "INSERT INTO partner_assertions (partner_id, jti, expires_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![partner_id, jti, expires_at],
            )?;
            tx.commit()?;
            Ok(n == 1)
        })
        .await
    }

    async fn consent_insert(&self, c: &Consent) -> Result<()> {
        let c = c.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO consents (id, person_key, partner_id, purpose, granted_at, expires_at, revoked_at,
                                       recorded_by, revoked_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    c.id,
                    c.person_key,
                    c.partner_id,
                    c.purpose,
                    c.granted_at,
                    c.expires_at,
                    c.revoked_at,
                    c.recorded_by,
                    c.revoked_by
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn consent_get(&self, id: &str) -> Result<Option<Consent>> {
        let id = id.to_string();
        self.read_now(move |conn| {
            Ok(conn
                .prepare_cached(&format!("{CONSENT_SELECT} WHERE id = ?1"))?
                .query_row([&id], consent_row)
                .optional()?)
        })
    }

    async fn consents_of(&self, person_key: &str) -> Result<Vec<Consent>> {
        let key = person_key.to_string();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare(&format!("{CONSENT_SELECT} WHERE person_key = ?1 ORDER BY granted_at DESC, id"))?;
            let rows = stmt.query_map([&key], consent_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn consent_revoke(&self, id: &str, by: &str, at: i64) -> Result<Consent> {
        let (id, by) = (id.to_string(), by.to_string());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut c = tx
                .prepare_cached(&format!("{CONSENT_SELECT} WHERE id = ?1"))?
                .query_row([&id], consent_row)
                .optional()?
                .ok_or(StoreError::NotFound)?;
            if c.revoked_at.is_some() {
                return Err(StoreError::State("the consent was revoked already".into()));
            }
            tx.execute("UPDATE consents SET revoked_at = ?2, revoked_by = ?3 WHERE id = ?1", params![id, at, by])?;
            tx.commit()?;
            c.revoked_at = Some(at);
            c.revoked_by = Some(by);
            Ok(c)
        })
        .await
    }

    async fn consent_in_force(&self, person_key: &str, partner_id: &str, now_s: i64) -> Result<bool> {
        let (key, partner) = (person_key.to_string(), partner_id.to_string());
        self.read_now(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT 1 FROM consents WHERE person_key = ?1 AND partner_id = ?2 AND revoked_at IS NULL
                     AND granted_at <= ?3 AND expires_at > ?3 LIMIT 1",
                )?
                .query_row(params![key, partner, now_s], |_| Ok(()))
                .optional()?
                .is_some())
        })
    }

    async fn change_feed(&self, after: i64, limit: u32) -> Result<Vec<FeedItem>> {
        self.read(move |conn| {
            // The single writer appends versions in commit order: rowid order is the feed's order.
            let mut stmt = conn.prepare_cached(
                "SELECT v.rowid, v.key, v.version, v.recorded_at, p.data, v.data
                 FROM person_versions v JOIN person_versions p ON p.key = v.key AND p.version = v.version - 1
                 WHERE v.rowid > ?1 AND v.version > 1 ORDER BY v.rowid LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![after, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (position, key, version, at, before, after) = row?;
                out.push(FeedItem {
                    position,
                    key: parse_key(&key)?,
                    version,
                    recorded_at: parse_ts(&at)?,
                    before: parse_person(&before)?,
                    after: parse_person(&after)?,
                });
            }
            Ok(out)
        })
        .await
    }
}

const CONSENT_SELECT: &str =
    "SELECT id, person_key, partner_id, purpose, granted_at, expires_at, revoked_at, recorded_by,
                                     revoked_by FROM consents";

fn consent_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Consent> {
    Ok(Consent {
        id: r.get(0)?,
        person_key: r.get(1)?,
        partner_id: r.get(2)?,
        purpose: r.get(3)?,
        granted_at: r.get(4)?,
        expires_at: r.get(5)?,
        revoked_at: r.get(6)?,
        recorded_by: r.get(7)?,
        revoked_by: r.get(8)?,
    })
}
