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
    ApprovedChange, AuditQuery, ChangeRequest, Decision, ImportBatch, ImportedRow, RawPersonRecord, RequestQuery,
    RequestState, ReviewDecision, ReviewPair, ReviewQuery, ReviewState, Session,
};
use crate::{Attempt, CivilEvent, Delivery, DeliveryState, NewDelivery, Webhook};
use crate::{
    ChallengeLimits, ChallengeOutcome, CitizenChallenge, CitizenSession, OidcGrant, OidcTokens, RefreshOutcome,
};
use crate::{
    ChangeKind, ChangeMeta, Columns, PersonRecord, PersonRef, PersonVersion, Result, SearchPage, SearchQuery, Store,
    StoreError, now,
};
use crate::{FeedItem, PopulationCell};
use dancu_core::audit::{self, AuditEntry, Checkpoint, StoredEntry};
use dancu_core::auth::{Officer, SessionKind, SessionStage};
use dancu_core::sharing::{Consent, Partner};
use dancu_core::{Person, PersonalId};

mod cards;

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
        5,
        "audit query indexes off the append path",
        r#"
-- The chain keeps only its primary key: appending an entry (on the request path, durable
-- before the response) writes at the end of one tree. The query indexes become tables of
-- their own, filled in sorted batches by a background indexer up to a high-water mark.
-- Queries read the indexes up to the mark and the chain itself after it, so they never
-- miss a committed entry. Derived data: rebuildable from audit_log at any time.
DROP INDEX audit_log_officer;
DROP INDEX audit_log_target;
DROP INDEX audit_log_at;
CREATE TABLE audit_index_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_seq INTEGER NOT NULL
) STRICT;
-- By person; the segment (seq >> 16) leads the key so that new entries touch only the newest
-- segment's pages.
CREATE TABLE audit_by_target (
    segment INTEGER NOT NULL,
    target  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (segment, target, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE audit_by_officer (
    officer TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (officer, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE audit_by_time (
    at  TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (at, seq)
) STRICT, WITHOUT ROWID;
INSERT INTO audit_by_target (segment, target, seq)
    SELECT seq >> 16, target, seq FROM audit_log WHERE target IS NOT NULL ORDER BY 1, 2, 3;
INSERT INTO audit_by_officer (officer, seq) SELECT officer, seq FROM audit_log ORDER BY 1, 2;
INSERT INTO audit_by_time (at, seq) SELECT at, seq FROM audit_log ORDER BY 1, 2;
INSERT INTO audit_index_state (id, indexed_seq) VALUES (1, COALESCE((SELECT max(seq) FROM audit_log), 0));
"#,
    ),
    (
        6,
        "import",
        r#"
-- A record found to describe the same person as another keeps its row and history, and names
-- the survivor here; searches skip it.
ALTER TABLE persons ADD COLUMN merged_into TEXT;

CREATE TABLE import_batches (
    id          TEXT PRIMARY KEY,
    unit        TEXT NOT NULL,
    officer     TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    summary     TEXT
) STRICT;

-- Which record each line of a batch became: a re-run skips these lines.
CREATE TABLE import_rows (
    batch_id   TEXT NOT NULL REFERENCES import_batches (id),
    line       INTEGER NOT NULL,
    person_key TEXT NOT NULL REFERENCES persons (key),
    PRIMARY KEY (batch_id, line)
) STRICT, WITHOUT ROWID;

CREATE TABLE review_pairs (
    id          TEXT PRIMARY KEY,
    batch_id    TEXT NOT NULL REFERENCES import_batches (id),
    a_key       TEXT NOT NULL REFERENCES persons (key),
    b_key       TEXT NOT NULL REFERENCES persons (key),
    weight      REAL NOT NULL,
    probability REAL NOT NULL,
    explanation TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    decided_by  TEXT,
    decided_at  TEXT,
    note        TEXT,
    survivor    TEXT,
    UNIQUE (a_key, b_key)
) STRICT;
CREATE INDEX review_pairs_state ON review_pairs (state, created_at);
CREATE INDEX review_pairs_b ON review_pairs (b_key);
"#,
    ),
    (
        7,
        "residence",
        r#"
-- Households (hộ gia đình): residence file number, address, head; memberships with valid time.
CREATE TABLE households (
    id         TEXT PRIMARY KEY,
    number     TEXT NOT NULL UNIQUE,
    head_key   TEXT REFERENCES persons (key),
    version    INTEGER NOT NULL,
    data       TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
CREATE TABLE household_members (
    household_id TEXT NOT NULL REFERENCES households (id),
    person_key   TEXT NOT NULL REFERENCES persons (key),
    relationship TEXT NOT NULL,
    joined_on    TEXT NOT NULL,
    left_on      TEXT,
    recorded_at  TEXT NOT NULL
) STRICT;
CREATE INDEX household_members_household ON household_members (household_id);
-- No one in two households.
CREATE UNIQUE INDEX household_members_one_open ON household_members (person_key) WHERE left_on IS NULL;

-- Residence history, bitemporal: valid_from/valid_to (when it held), recorded_at/superseded_at
-- (when the register said so). Rows are only ever superseded, never edited.
CREATE TABLE residences (
    id            TEXT PRIMARY KEY,
    person_key    TEXT NOT NULL REFERENCES persons (key),
    kind          TEXT NOT NULL,
    scheme        TEXT NOT NULL,
    commune_code  TEXT NOT NULL,
    detail        TEXT,
    household_id  TEXT REFERENCES households (id),
    valid_from    TEXT NOT NULL,
    valid_to      TEXT,
    expires_on    TEXT,
    end_cause     TEXT,
    application   TEXT,
    recorded_at   TEXT NOT NULL,
    superseded_at TEXT
) STRICT;
CREATE INDEX residences_person ON residences (person_key, valid_from);
CREATE INDEX residences_place ON residences (scheme, commune_code, valid_from);
CREATE INDEX residences_expiry ON residences (expires_on) WHERE kind = 'temporary' AND valid_to IS NULL
    AND superseded_at IS NULL;
-- One permanent and one temporary residence per person at a time.
CREATE UNIQUE INDEX residences_one_open ON residences (person_key, kind)
    WHERE valid_to IS NULL AND superseded_at IS NULL;

CREATE TABLE residence_applications (
    id           TEXT PRIMARY KEY,
    kind         TEXT NOT NULL,
    state        TEXT NOT NULL,
    person_key   TEXT NOT NULL REFERENCES persons (key),
    deadline     TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    data         TEXT NOT NULL
) STRICT;
CREATE INDEX residence_applications_open ON residence_applications (state, deadline);
CREATE INDEX residence_applications_person ON residence_applications (person_key);
CREATE TABLE residence_application_areas (
    area           TEXT NOT NULL,
    application_id TEXT NOT NULL REFERENCES residence_applications (id),
    PRIMARY KEY (area, application_id)
) STRICT, WITHOUT ROWID;

-- Legacy addresses of partially merged communes, waiting for a person's decision (2025 reform).
CREATE TABLE address_reviews (
    person_key   TEXT NOT NULL REFERENCES persons (key),
    field        TEXT NOT NULL,
    scheme       TEXT NOT NULL,
    commune_code TEXT NOT NULL,
    detail       TEXT,
    candidates   TEXT NOT NULL,
    queued_at    TEXT NOT NULL,
    resolved_at  TEXT,
    PRIMARY KEY (person_key, field)
) STRICT;
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
    (9, "cards", cards::MIGRATION),
    (
        10,
        "address_review_decisions",
        r#"
-- Who resolved an address review and which 2025 commune they chose; the pending queue in order.
ALTER TABLE address_reviews ADD COLUMN resolved_by TEXT;
ALTER TABLE address_reviews ADD COLUMN resolved_code TEXT;
CREATE INDEX address_reviews_pending ON address_reviews (queued_at) WHERE resolved_at IS NULL;
"#,
    ),
    (
        11,
        "webhooks",
        r#"
-- A partner's webhook: where its change events are POSTed, the HMAC secret (sealed), and the
-- change-feed position up to which its events have been queued.
CREATE TABLE webhooks (
    partner_id    TEXT PRIMARY KEY REFERENCES partners (id),
    url           TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    cursor        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) STRICT;

-- Every event queued for a partner and its delivery: one row per (partner, event id).
CREATE TABLE webhook_deliveries (
    seq             INTEGER PRIMARY KEY,
    partner_id      TEXT NOT NULL REFERENCES partners (id),
    event_id        TEXT NOT NULL,
    position        INTEGER NOT NULL,
    person_key      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'delivered')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    delivered_at    INTEGER,
    UNIQUE (partner_id, event_id)
) STRICT;
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (partner_id, seq) WHERE state = 'pending';

-- Inbound civil-status events (births, deaths, marriages, divorces), one per source id of the
-- sending partner: a replay is answered from here, a different body under the same id refused.
CREATE TABLE civil_events (
    partner_id     TEXT NOT NULL REFERENCES partners (id),
    source_id      TEXT NOT NULL,
    kind           TEXT NOT NULL,
    body_hash      TEXT NOT NULL,
    person_key     TEXT NOT NULL REFERENCES persons (key),
    change_request TEXT REFERENCES change_requests (id),
    received_at    INTEGER NOT NULL,
    PRIMARY KEY (partner_id, source_id)
) STRICT;
"#,
    ),
    (
        12,
        "citizens_and_oidc",
        r#"
-- Citizen logins in progress: the one-time code as a hash bound to the challenge; an unknown
-- personal ID gets a challenge too (person_key NULL), so answers never tell IDs apart.
CREATE TABLE citizen_challenges (
    id         TEXT PRIMARY KEY,
    login_key  TEXT NOT NULL,
    person_key TEXT REFERENCES persons (key),
    code_hash  TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    attempts   INTEGER NOT NULL DEFAULT 0,
    used_at    INTEGER
) STRICT;
CREATE INDEX citizen_challenges_login ON citizen_challenges (login_key, created_at);
CREATE INDEX citizen_challenges_expiry ON citizen_challenges (expires_at);

CREATE TABLE citizen_sessions (
    token_hash TEXT PRIMARY KEY,
    person_key TEXT NOT NULL REFERENCES persons (key),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) STRICT;

-- OpenID Connect authorization codes (hashed) and the access token issued for each (hashed).
CREATE TABLE oidc_grants (
    code_hash         TEXT PRIMARY KEY,
    client_id         TEXT NOT NULL REFERENCES partners (id),
    person_key        TEXT NOT NULL REFERENCES persons (key),
    redirect_uri      TEXT NOT NULL,
    code_challenge    TEXT NOT NULL,
    scope             TEXT NOT NULL,
    nonce             TEXT,
    auth_time         INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    used_at           INTEGER,
    access_hash       TEXT UNIQUE,
    access_expires_at INTEGER
) STRICT;
CREATE INDEX oidc_grants_expiry ON oidc_grants (expires_at);
"#,
    ),
    (
        15,
        "audit trail in its own file",
        r#"
-- The chain moves to its own database file (see AUDIT_MIGRATIONS): its group commits, one per
-- few milliseconds under load, then no longer reset the page cache of every connection that
-- reads people. An entry that must commit together with a change of this file is written here,
-- in the change's transaction, and moved into the chain (idempotently, by `id`) right after.
CREATE TABLE audit_outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         TEXT NOT NULL,
    officer    TEXT NOT NULL,
    role       TEXT NOT NULL,
    unit       TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT,
    purpose    TEXT,
    request_id TEXT,
    client     TEXT,
    outcome    TEXT NOT NULL
) STRICT;
"#,
    ),
    (
        16,
        "persons_sex",
        r#"
-- Sex beside the birth year, so the dashboard's population count (by commune, birth year and
-- sex) reads a covering index, in the grouping order, instead of every record's JSON (the key
-- last, for an area's IN list). Kept in step by every write.
ALTER TABLE persons ADD COLUMN sex TEXT NOT NULL DEFAULT '';
UPDATE persons SET sex = coalesce(json_extract(data, '$.sex'), '');
CREATE INDEX persons_population
    ON persons (commune_key, province_2025, birth_year, sex, status, merged_into, key);
"#,
    ),
    (
        18,
        "civil_births_and_oidc_sessions",
        r#"
-- The records made from births the civil registration system registered: the change feed marks
-- their versions (a registered child's activation is a birth event for subscribers) by a lookup
-- per version through this index.
CREATE INDEX civil_events_births ON civil_events (person_key) WHERE kind = 'birth';

-- OpenID Connect sessions: the session a code began (the ID token's sid), its current refresh
-- token (hashed; rotated on each use) and when it was ended (a refresh token used twice, or the
-- portal's logout).
ALTER TABLE oidc_grants ADD COLUMN session_id TEXT;
ALTER TABLE oidc_grants ADD COLUMN refresh_hash TEXT;
ALTER TABLE oidc_grants ADD COLUMN refresh_expires_at INTEGER;
ALTER TABLE oidc_grants ADD COLUMN revoked_at INTEGER;
CREATE UNIQUE INDEX oidc_grants_session ON oidc_grants (session_id);
"#,
    ),
    (
        19,
        "deferred_indexes",
        r#"
-- The search indexes a bulk import set aside, with their definitions, until it builds them again
-- at its end (or the next opening of the store does, after an interrupted import).
CREATE TABLE deferred_indexes (
    name       TEXT PRIMARY KEY,
    definition TEXT NOT NULL
) STRICT;
"#,
    ),
];

/// The audit trail's own file (`<name>.audit.<ext>` beside the database): the hash chain, its
/// signed checkpoints, the query indexes and how far the outbox of the main file has been moved.
const AUDIT_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "audit trail",
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
-- Query indexes, filled in sorted batches by a background indexer up to a high-water mark;
-- derived data, rebuildable from audit_log at any time (see ARCHITECTURE.md).
CREATE TABLE audit_index_state (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_seq INTEGER NOT NULL
) STRICT;
INSERT INTO audit_index_state (id, indexed_seq) VALUES (1, 0);
CREATE TABLE audit_by_target (
    segment INTEGER NOT NULL,
    target  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (segment, target, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE audit_by_officer (
    officer TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (officer, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE audit_by_time (
    at  TEXT NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (at, seq)
) STRICT, WITHOUT ROWID;
-- The last `audit_outbox.id` of the main file moved into the chain: moved in the same
-- transaction as the entries, so a crash between the two files never moves one twice.
CREATE TABLE outbox_state (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    moved INTEGER NOT NULL
) STRICT;
INSERT INTO outbox_state (id, moved) VALUES (1, 0);
"#,
    ),
    (
        2,
        "audit query indexes in their own file",
        r#"
-- The query indexes move to `<name>.audit-index.<ext>` (derived data, rebuilt there from the
-- chain): their batches no longer hold this file's writer, share its log or wait for its disk.
DROP TABLE audit_by_target;
DROP TABLE audit_by_officer;
DROP TABLE audit_by_time;
DROP TABLE audit_index_state;
"#,
    ),
];

/// The query indexes of the audit trail (by person, officer, time) and their high-water mark, in
/// a file of their own. Time is indexed per block of [`AUDIT_TIME_BLOCK_BITS`] entries (the
/// earliest and latest time in it): entries arrive in nearly the order of their times, so a time
/// range selects a few blocks whose entries are then filtered exactly, at one index row per block
/// instead of one per entry. Derived data, not part of the tamper evidence: the file is rebuilt from
/// the chain whenever it is missing, of another layout ([`AUDIT_INDEX_LAYOUT`]) or not a prefix
/// of the chain (its mark's hash differs), so it needs no migrations and no backup.
const AUDIT_INDEX_SCHEMA: &str = r#"
DROP TABLE IF EXISTS audit_index_state;
DROP TABLE IF EXISTS audit_by_target;
DROP TABLE IF EXISTS audit_by_officer;
DROP TABLE IF EXISTS audit_by_time;
DROP TABLE IF EXISTS audit_time_blocks;
CREATE TABLE audit_index_state (
    id           INTEGER PRIMARY KEY CHECK (id = 1),
    indexed_seq  INTEGER NOT NULL,
    indexed_hash BLOB
) STRICT;
INSERT INTO audit_index_state (id, indexed_seq, indexed_hash) VALUES (1, 0, NULL);
CREATE TABLE audit_by_target (
    segment INTEGER NOT NULL,
    target  TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (segment, target, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE audit_by_officer (
    officer TEXT NOT NULL,
    seq     INTEGER NOT NULL,
    PRIMARY KEY (officer, seq)
) STRICT, WITHOUT ROWID;
CREATE TABLE audit_time_blocks (
    block  INTEGER PRIMARY KEY,
    min_at TEXT NOT NULL,
    max_at TEXT NOT NULL
) STRICT;
"#;

/// The layout of the index file (its `user_version`); another value rebuilds it.
const AUDIT_INDEX_LAYOUT: i64 = 2;

/// Entries per block of the time index (`seq >> AUDIT_TIME_BLOCK_BITS`).
const AUDIT_TIME_BLOCK_BITS: u32 = 8;

/// Where the query indexes of the audit trail of the database at `path` are kept:
/// `dancu.sqlite` → `dancu.audit-index.sqlite`.
pub fn audit_index_path(path: &Path) -> PathBuf {
    sibling(path, "audit-index")
}

/// Where the audit trail of the database at `path` is kept: `dancu.sqlite` → `dancu.audit.sqlite`.
pub fn audit_path(path: &Path) -> PathBuf {
    sibling(path, "audit")
}

/// `dancu.sqlite` → `dancu.<tag>.sqlite` (a name without extension gets `.<tag>`).
fn sibling(path: &Path, tag: &str) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match name.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => format!("{stem}.{tag}.{ext}"),
        _ => format!("{name}.{tag}"),
    };
    path.with_file_name(name)
}

/// Applies `migrations` on `conn` (each in its own transaction, recorded in `schema_migrations`);
/// `after` runs inside a migration's transaction, before it is recorded. Returns how many ran.
fn run_migrations(
    conn: &mut Connection,
    migrations: &[(i64, &str, &str)],
    mut after: impl FnMut(i64, &rusqlite::Transaction<'_>) -> Result<()>,
) -> Result<usize> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)",
    )?;
    let mut applied = 0;
    for (version, name, sql) in migrations {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let done: Option<i64> = tx
            .query_row("SELECT version FROM schema_migrations WHERE version = ?1", [version], |r| r.get(0))
            .optional()?;
        if done.is_none() {
            tx.execute_batch(sql)?;
            after(*version, &tx)?;
            tx.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![version, name, ts(now())],
            )?;
            applied += 1;
        }
        tx.commit()?;
    }
    Ok(applied)
}

/// Migration 15: copies the chain and its checkpoints kept in the main file so far into the
/// audit file (committed there first; a rerun after a crash copies only what is not there yet),
/// then drops them from the main file in the migration's transaction. The query indexes are
/// rebuilt in their own file by the indexer.
fn move_audit_to_own_file(tx: &rusqlite::Transaction<'_>, audit: &mut Connection) -> Result<()> {
    let atx = audit.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let have: i64 = atx.query_row("SELECT COALESCE(max(seq), 0) FROM audit_log", [], |r| r.get(0))?;
    {
        let mut read = tx.prepare(&format!("{AUDIT_SELECT} WHERE seq > ?1 ORDER BY seq"))?;
        let mut insert = atx.prepare(
            "INSERT INTO audit_log (seq, at, officer, role, unit, action, target, purpose, request_id, client,
                                    outcome, prev_hash, hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )?;
        let mut rows = read.query([have])?;
        while let Some(r) = rows.next()? {
            let values: Vec<rusqlite::types::Value> = (0..13).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
            insert.execute(rusqlite::params_from_iter(values))?;
        }
        let mut read = tx.prepare("SELECT seq, hash, signed_at, key_id, signature FROM audit_checkpoints")?;
        let mut insert = atx.prepare(
            "INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (seq) DO NOTHING",
        )?;
        let mut rows = read.query([])?;
        while let Some(r) = rows.next()? {
            let values: Vec<rusqlite::types::Value> = (0..5).map(|i| r.get(i)).collect::<rusqlite::Result<_>>()?;
            insert.execute(rusqlite::params_from_iter(values))?;
        }
    }
    atx.commit()?;
    tx.execute_batch(
        "DROP TABLE audit_by_target; DROP TABLE audit_by_officer; DROP TABLE audit_by_time;
         DROP TABLE audit_index_state; DROP TABLE audit_log; DROP TABLE audit_checkpoints;",
    )?;
    Ok(())
}

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
    audit: AuditFile,
}

/// The audit trail's own file: one writer (the group commit, the outbox mover and signed
/// checkpoints take turns) and a pool of readers (each with the index file attached as `ix`);
/// its query indexes live in a third file with a writer of its own, the indexer's.
struct AuditFile {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    writer: Mutex<Connection>,
    /// A connection of the main file and its last `data_version` (see [`outbox_may_have_rows`]).
    outbox_watch: Mutex<Option<(Connection, i64)>>,
    index_path: PathBuf,
    /// The index file's only writer (see [`AUDIT_INDEX_SCHEMA`]).
    index: Mutex<Connection>,
    /// A second read-write connection of the audit file, for copying its write-ahead log into
    /// the file after each indexing round ([`checkpoint_audit_log`]) instead of inside a group
    /// commit that requests wait for.
    log_copier: Mutex<Option<Connection>>,
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

/// Records entries that belong to a change of the main file, inside the change's transaction:
/// they go to its outbox and reach the chain at the next [`move_outbox`] (before any read of
/// the trail, and within the indexer's period), so they commit or vanish with the change.
fn append_audit(tx: &rusqlite::Transaction<'_>, entries: &[AuditEntry]) -> Result<()> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO audit_outbox (at, officer, role, unit, action, target, purpose, request_id, client, outcome)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    for e in entries {
        stmt.execute(params![
            e.at,
            e.officer,
            e.role,
            e.unit,
            e.action,
            e.target,
            e.purpose,
            e.request_id,
            e.client,
            e.outcome
        ])?;
    }
    Ok(())
}

/// Moves the outbox of the main file into the chain, inside `atx` (a write transaction of the
/// audit file); returns the last outbox id in the chain when the outbox holds any row (to be
/// pruned: rows at or below it are in the chain already, e.g. moved just before a crash).
/// Reads the outbox through a reader of the main file: ids are given in commit order by its
/// single writer, so nothing committed later can take an id at or below one seen here.
fn move_outbox(inner: &Inner, atx: &rusqlite::Transaction<'_>) -> Result<Option<i64>> {
    let moved: i64 = atx.query_row("SELECT moved FROM outbox_state WHERE id = 1", [], |r| r.get(0))?;
    let pending = with_reader(inner, |conn| {
        let mut stmt = conn.prepare_cached(
            "SELECT id, at, officer, role, unit, action, target, purpose, request_id, client, outcome
             FROM audit_outbox ORDER BY id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                AuditEntry {
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
                },
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })?;
    let Some(last) = pending.last().map(|(id, _)| *id) else { return Ok(None) };
    let entries: Vec<AuditEntry> = pending.into_iter().filter(|(id, _)| *id > moved).map(|(_, e)| e).collect();
    if entries.is_empty() {
        return Ok(Some(moved));
    }
    chain_audit(atx, &entries)?;
    atx.execute("UPDATE outbox_state SET moved = ?1 WHERE id = 1", [last])?;
    Ok(Some(last))
}

/// Removes outbox rows already in the chain (a write of the main file, so only after a move).
fn prune_outbox(inner: &Inner, moved: i64) -> Result<()> {
    let conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
    conn.prepare_cached("DELETE FROM audit_outbox WHERE id <= ?1")?.execute([moved])?;
    Ok(())
}

/// Whether the main file may have gained outbox rows since the last look: its `data_version`
/// (seen on a connection of its own) changes whenever any connection, in this process or
/// another, commits to it. Lookups never write the main file, so under a read load the group
/// commit skips reading the outbox; after any change it moves it before its append, keeping a
/// change's entry ahead of reads recorded after it.
fn outbox_may_have_rows(inner: &Inner) -> Result<bool> {
    let mut watch = inner.audit.outbox_watch.lock().unwrap_or_else(|p| p.into_inner());
    if watch.is_none() {
        *watch = Some((open_reader(&inner.path, false)?, i64::MIN));
    }
    let (conn, seen) = watch.as_mut().expect("opened above");
    let version: i64 = conn.prepare_cached("PRAGMA data_version")?.query_row([], |r| r.get(0))?;
    let changed = version != *seen;
    *seen = version;
    Ok(changed)
}

/// Runs `f` in a write transaction of the audit file, after moving the outbox into the chain
/// when `move_first` (then prunes the outbox). Every read of the trail moves first, so it sees
/// each committed change; appends move first when the main file changed since the last look
/// ([`outbox_may_have_rows`]).
fn with_audit_writer<T>(
    inner: &Inner,
    move_first: bool,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let (out, moved) = {
        let mut conn = inner.audit.writer.lock().unwrap_or_else(|p| p.into_inner());
        let atx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let moved = if move_first { move_outbox(inner, &atx)? } else { None };
        let out = f(&atx)?;
        atx.commit()?;
        (out, moved)
    };
    if let Some(moved) = moved {
        prune_outbox(inner, moved)?;
    }
    Ok(out)
}

/// Appends entries to the chain inside a write transaction of the audit file; returns the
/// last seq. Only the chain's own table is written here; the query indexes follow in the
/// background.
fn chain_audit(tx: &rusqlite::Transaction<'_>, entries: &[AuditEntry]) -> Result<i64> {
    let head: Option<(i64, Vec<u8>)> = tx
        .prepare_cached("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (mut seq, mut prev) = match head {
        Some((seq, h)) => (seq, to_hash(&h)?),
        None => (0, audit::GENESIS),
    };
    let mut stmt = tx.prepare_cached(
        "INSERT INTO audit_log (seq, at, officer, role, unit, action, target, purpose, request_id, client,
                                outcome, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    for e in entries {
        seq += 1;
        let hash = audit::entry_hash(&prev, e);
        stmt.execute(params![
            seq,
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
            &prev[..],
            &hash[..]
        ])?;
        prev = hash;
    }
    Ok(seq)
}

/// Opens the index file, (re)creating its tables when it is new or of another layout.
fn open_audit_index(path: &Path) -> Result<Connection> {
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    // Derived data: after a power loss it is rebuilt from the chain, so no wait for the disk.
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let layout = |c: &Connection| c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0));
    if layout(&conn)? != AUDIT_INDEX_LAYOUT {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if layout(&tx)? != AUDIT_INDEX_LAYOUT {
            tx.execute_batch(AUDIT_INDEX_SCHEMA)?;
            tx.pragma_update(None, "user_version", AUDIT_INDEX_LAYOUT)?;
        }
        tx.commit()?;
    }
    Ok(conn)
}

/// Empties the index file when it is not a prefix of the chain: its mark lies past the chain's
/// head, or the entry at its mark has another hash (the chain file was replaced, e.g. restored
/// from a backup without the index file). The indexer then rebuilds it from the start.
fn check_audit_index(inner: &Inner) -> Result<()> {
    let mut index = inner.audit.index.lock().unwrap_or_else(|p| p.into_inner());
    let (mark, hash): (i64, Option<Vec<u8>>) =
        index.query_row("SELECT indexed_seq, indexed_hash FROM audit_index_state WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })?;
    if mark == 0 {
        return Ok(());
    }
    let at_mark: Option<Vec<u8>> = with_audit_reader(inner, |c| {
        Ok(c.query_row("SELECT hash FROM audit_log WHERE seq = ?1", [mark], |r| r.get(0)).optional()?)
    })?;
    if at_mark.is_none() || at_mark != hash {
        tracing::warn!(mark, "the audit query indexes do not match the chain: rebuilding them");
        let tx = index.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute_batch(AUDIT_INDEX_SCHEMA)?;
        tx.commit()?;
    }
    Ok(())
}

/// Copies the audit file's write-ahead log into the file as far as no reader needs it (SQLite's
/// passive checkpoint: it neither waits for nor blocks the group commit).
fn checkpoint_audit_log(inner: &Inner) -> Result<()> {
    let mut copier = inner.audit.log_copier.lock().unwrap_or_else(|p| p.into_inner());
    if copier.is_none() {
        let conn = Connection::open(&inner.audit.path)?;
        configure(&conn)?;
        *copier = Some(conn);
    }
    let conn = copier.as_ref().expect("opened above");
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))?;
    Ok(())
}

/// Indexes up to `max` entries past the high-water mark in one transaction of the index file,
/// each index's rows inserted in key order (every page touched once per batch). The chain's
/// committed entries never change, so they are read before that transaction, on a reader.
fn index_audit(inner: &Inner, max: u32) -> Result<u64> {
    let mut conn = inner.audit.index.lock().unwrap_or_else(|p| p.into_inner());
    let read_mark = |c: &Connection| -> Result<i64> {
        Ok(c.query_row("SELECT indexed_seq FROM audit_index_state WHERE id = 1", [], |r| r.get(0))?)
    };
    let mark = read_mark(&conn)?;
    let rows = with_audit_reader(inner, |c| {
        let mut stmt =
            c.prepare_cached("SELECT seq, officer, target, at FROM audit_log WHERE seq > ?1 ORDER BY seq LIMIT ?2")?;
        let rows = stmt.query_map(params![mark, max], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?, r.get::<_, String>(3)?))
        })?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    })?;
    let Some(last) = rows.last().map(|r| r.0) else { return Ok(0) };
    let last_hash: Vec<u8> = with_audit_reader(inner, |c| {
        Ok(c.prepare_cached("SELECT hash FROM audit_log WHERE seq = ?1")?.query_row([last], |r| r.get(0))?)
    })?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if read_mark(&tx)? != mark {
        return Ok(0); // another process indexed meanwhile
    }
    let mut by_target: Vec<(i64, &str, i64)> = rows
        .iter()
        .filter_map(|(seq, _, target, _)| target.as_deref().map(|t| (seq >> crate::AUDIT_SEGMENT_BITS, t, *seq)))
        .collect();
    by_target.sort_unstable();
    {
        let mut stmt =
            tx.prepare_cached("INSERT OR IGNORE INTO audit_by_target (segment, target, seq) VALUES (?1, ?2, ?3)")?;
        for (segment, target, seq) in by_target {
            stmt.execute(params![segment, target, seq])?;
        }
        let mut by_officer: Vec<(&str, i64)> =
            rows.iter().map(|(seq, officer, _, _)| (officer.as_str(), *seq)).collect();
        by_officer.sort_unstable();
        let mut stmt = tx.prepare_cached("INSERT OR IGNORE INTO audit_by_officer (officer, seq) VALUES (?1, ?2)")?;
        for (officer, seq) in by_officer {
            stmt.execute(params![officer, seq])?;
        }
        // Rows come in seq order: one (block, earliest, latest) per block of the batch.
        let mut blocks: Vec<(i64, &str, &str)> = Vec::new();
        for (seq, _, _, at) in &rows {
            let block = seq >> AUDIT_TIME_BLOCK_BITS;
            match blocks.last_mut() {
                Some((b, lo, hi)) if *b == block => {
                    *lo = (*lo).min(at.as_str());
                    *hi = (*hi).max(at.as_str());
                }
                _ => blocks.push((block, at, at)),
            }
        }
        let mut stmt = tx.prepare_cached(
            "INSERT INTO audit_time_blocks (block, min_at, max_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (block) DO UPDATE SET min_at = min(min_at, excluded.min_at),
                                               max_at = max(max_at, excluded.max_at)",
        )?;
        for (block, lo, hi) in blocks {
            stmt.execute(params![block, lo, hi])?;
        }
    }
    tx.execute(
        "UPDATE audit_index_state SET indexed_seq = ?1, indexed_hash = ?2 WHERE id = 1",
        params![last, last_hash],
    )?;
    tx.commit()?;
    Ok(rows.len() as u64)
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
                        commune_key = ?7, province_2025 = ?8, version = ?9, data = ?10, updated_at = ?11,
                        merged_into = ?12, sex = ?13
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
        ts(at),
        c.merged_into,
        c.sex
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

const BATCH_SELECT: &str =
    "SELECT id, unit, officer, file_sha256, started_at, finished_at, summary FROM import_batches";

fn batch_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ImportBatch>> {
    let (id, unit, officer, sha): (String, String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let (started, finished, summary): (String, Option<String>, Option<String>) = (r.get(4)?, r.get(5)?, r.get(6)?);
    Ok((|| {
        Ok(ImportBatch {
            id,
            unit,
            officer,
            file_sha256: sha,
            started_at: parse_ts(&started)?,
            finished_at: finished.as_deref().map(parse_ts).transpose()?,
            summary,
        })
    })())
}

const PAIR_SELECT: &str = "SELECT id, batch_id, a_key, b_key, weight, probability, explanation, state, created_at,
                                  decided_by, decided_at, note, survivor FROM review_pairs";

fn pair_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ReviewPair>> {
    let (id, batch_id, a, b): (String, String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    let (weight, probability, explanation, state): (f64, f64, String, String) =
        (r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?);
    let (created, decided_by, decided_at, note, survivor): (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) = (r.get(8)?, r.get(9)?, r.get(10)?, r.get(11)?, r.get(12)?);
    Ok((|| {
        Ok(ReviewPair {
            id: parse_key(&id)?,
            batch_id,
            a: parse_key(&a)?,
            b: parse_key(&b)?,
            weight,
            probability,
            explanation: serde_json::from_str(&explanation)
                .map_err(|_| StoreError::Corrupt("a stored review explanation does not parse".into()))?,
            state: ReviewState::from_code(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("review state {state:?}")))?,
            created_at: parse_ts(&created)?,
            decided_by,
            decided_at: decided_at.as_deref().map(parse_ts).transpose()?,
            note,
            survivor: survivor.as_deref().map(parse_key).transpose()?,
        })
    })())
}

/// Runs `f` on a pooled read-only connection of the main file (opening one when the pool is empty).
fn with_reader<T>(inner: &Inner, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    pooled(&inner.readers, || open_reader(&inner.path, reader_mmap()), f)
}

/// Runs `f` on a pooled read-only connection of the audit file, the index file attached as `ix`.
fn with_audit_reader<T>(inner: &Inner, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
    let open = || {
        let conn = open_reader(&inner.audit.path, false)?;
        conn.execute("ATTACH DATABASE ?1 AS ix", [inner.audit.index_path.to_string_lossy()])?;
        Ok(conn)
    };
    pooled(&inner.audit.readers, open, f)
}

fn pooled<T>(
    pool: &Mutex<Vec<Connection>>,
    open: impl FnOnce() -> Result<Connection>,
    f: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    let conn = pool.lock().expect("reader pool lock").pop();
    let conn = match conn {
        Some(c) => c,
        None => open()?,
    };
    let out = f(&conn);
    let mut pool = pool.lock().expect("reader pool lock");
    if pool.len() < 16 {
        pool.push(conn);
    }
    out
}

/// Whether readers of the main file map it into memory (no read() call per page). On by default:
/// the audit trail's steady stream of writes goes to its own file, and SQLite unmaps a file only
/// at the first read after a write *to that file*. `DANCU_SQLITE_MMAP=0` turns it off (a store
/// under constant bulk writes, where each read would re-map).
fn reader_mmap() -> bool {
    !std::env::var("DANCU_SQLITE_MMAP").is_ok_and(|v| v == "0")
}

/// A read-only connection, `mmap` or not.
fn open_reader(path: &Path, mmap: bool) -> Result<Connection> {
    let c = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "cache_size", -32000)?;
    c.pragma_update(None, "mmap_size", if mmap { 1i64 << 40 } else { 0 })?;
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
        let audit_path = audit_path(&path);
        let audit_writer = Connection::open(&audit_path)?;
        configure(&audit_writer)?;
        // The log is copied into the file after each indexing round (`checkpoint_audit_log`), off
        // the path of requests; this is only the bound when no indexer runs (a long CLI command).
        audit_writer.pragma_update(None, "wal_autocheckpoint", 16_384)?;
        let index_path = audit_index_path(&path);
        let index = open_audit_index(&index_path)?;
        let audit = AuditFile {
            path: audit_path,
            readers: Mutex::new(Vec::new()),
            writer: Mutex::new(audit_writer),
            outbox_watch: Mutex::new(None),
            index_path,
            index: Mutex::new(index),
            log_copier: Mutex::new(None),
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner { path, readers: Mutex::new(Vec::new()), writer: Mutex::new(writer), audit }),
        })
    }

    /// Runs a read of the audit file on a blocking thread, after moving any outbox entries into
    /// the chain (so a read sees every committed change).
    async fn read_audit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let pending = with_reader(&inner, |c| {
                Ok(c.prepare_cached("SELECT EXISTS (SELECT 1 FROM audit_outbox)")?.query_row([], |r| r.get(0))?)
            })?;
            if pending {
                with_audit_writer(&inner, true, |_| Ok(()))?;
            }
            with_audit_reader(&inner, f)
        })
        .await
        .map_err(backend)?
    }

    /// Runs a write transaction of the audit file on a blocking thread (see [`with_audit_writer`]).
    async fn write_audit<T: Send + 'static>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let move_first = outbox_may_have_rows(&inner)?;
            with_audit_writer(&inner, move_first, f)
        })
        .await
        .map_err(backend)?
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

/// An imported row ready for the writer: key, indexed columns, the record as JSON, file line and
/// personal ID.
type PreparedRow = (String, Columns, String, i64, Option<PersonalId>);

/// One chunk of an import in one transaction (see [`Store::import_chunk`]).
///
/// Without the foreign-key checks: every row of the chunk refers to the batch (looked up once
/// here) or to the person inserted just before it in this transaction, so each check (one
/// lookup in the persons' key index per reference, five or more a row) could only pass. They
/// are on again for every other statement of the writer, also when the chunk fails.
fn store_chunk(conn: &mut Connection, batch_id: &str, prepared: &[PreparedRow], meta: &ChangeMeta) -> Result<()> {
    conn.pragma_update(None, "foreign_keys", "OFF")?;
    let stored = store_chunk_unchecked(conn, batch_id, prepared, meta);
    let restored = conn.pragma_update(None, "foreign_keys", "ON");
    stored?;
    Ok(restored?)
}

fn store_chunk_unchecked(
    conn: &mut Connection,
    batch_id: &str,
    prepared: &[PreparedRow],
    meta: &ChangeMeta,
) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let begun: bool =
        tx.query_row("SELECT EXISTS (SELECT 1 FROM import_batches WHERE id = ?1)", [batch_id], |r| r.get(0))?;
    if !begun {
        return Err(StoreError::State(format!("no import batch {batch_id:?}: begin it first")));
    }
    let at = ts(now());
    {
        let mut person = tx.prepare_cached(INSERT_PERSON)?;
        let mut version = tx.prepare_cached(INSERT_VERSION)?;
        let mut area = tx.prepare_cached("INSERT INTO person_areas (area, person_key) VALUES (?1, ?2)")?;
        let mut line = tx.prepare_cached("INSERT INTO import_rows (batch_id, line, person_key) VALUES (?1, ?2, ?3)")?;
        for (key, c, data, l, id) in prepared {
            person_row(&mut person, key, c, data, &at, *id)?;
            for a in &c.areas {
                area.execute(params![a, key])?;
            }
            version_row(&mut version, key, 1, ChangeKind::Create, meta, &at, data)?;
            line.execute(params![batch_id, l, key])?;
        }
        // The numbers in their order: neighbouring pages of the index, not one page each.
        let mut issued: Vec<(&str, &str)> =
            prepared.iter().filter_map(|(key, c, ..)| Some((c.personal_id.as_deref()?, key.as_str()))).collect();
        issued.sort_unstable();
        let mut issue = tx.prepare_cached(
            "INSERT INTO issued_ids (personal_id, key, issued_at) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?;
        for (id, key) in issued {
            if issue.execute(params![id, key, at])? == 0 {
                let id = PersonalId::parse(id).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                return Err(StoreError::IdTaken(id));
            }
        }
    }
    tx.commit()?;
    Ok(())
}

/// Sets the search indexes of people aside for a bulk import (see [`Store::defer_person_indexes`]):
/// their definitions into `deferred_indexes`, the indexes dropped, in one transaction.
fn defer_indexes(conn: &mut Connection, new_people: u64, always: bool) -> Result<bool> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if !always {
        let stored: i64 = tx.query_row("SELECT count(*) FROM persons", [], |r| r.get(0))?;
        if !crate::index_deferral_pays(new_people, stored.max(0) as u64) {
            return Ok(false);
        }
    }
    for name in crate::DEFERRABLE_PERSON_INDEXES {
        let definition: Option<String> = tx
            .query_row("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?1", [name], |r| r.get(0))
            .optional()?;
        let Some(definition) = definition else { continue };
        tx.execute(
            "INSERT INTO deferred_indexes (name, definition) VALUES (?1, ?2) ON CONFLICT (name) DO NOTHING",
            params![name, definition],
        )?;
        tx.execute_batch(&format!("DROP INDEX \"{name}\""))?;
    }
    let deferred = tx.query_row("SELECT EXISTS (SELECT 1 FROM deferred_indexes)", [], |r| r.get(0))?;
    tx.commit()?;
    Ok(deferred)
}

/// Builds the indexes [`defer_indexes`] set aside, in one transaction; how many.
fn restore_indexes(conn: &mut Connection) -> Result<usize> {
    let pending: bool = conn.query_row("SELECT EXISTS (SELECT 1 FROM deferred_indexes)", [], |r| r.get(0))?;
    if !pending {
        return Ok(0);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let deferred: Vec<(String, String)> = tx
        .prepare("SELECT name, definition FROM deferred_indexes ORDER BY name")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let mut built = 0;
    for (name, definition) in &deferred {
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = ?1)",
            [name],
            |r| r.get(0),
        )?;
        if !exists {
            tx.execute_batch(definition)?;
            built += 1;
        }
    }
    tx.execute("DELETE FROM deferred_indexes", [])?;
    tx.commit()?;
    Ok(built)
}

const INSERT_VERSION: &str =
    "INSERT INTO person_versions (key, version, change, actor, reason, legal_basis, approved_by, recorded_at, data)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// A new person's row (version 1, created and updated now).
const INSERT_PERSON: &str =
    "INSERT INTO persons (key, personal_id, legacy_id, status, name_key, birth_year, commune_key, province_2025,
                          version, data, created_at, updated_at, merged_into, sex)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9, ?10, ?10, ?11, ?12)";

/// Runs [`INSERT_PERSON`] for a new person; a personal ID already held is [`StoreError::IdTaken`].
fn person_row(
    stmt: &mut rusqlite::Statement<'_>,
    key: &str,
    c: &Columns,
    data: &str,
    at: &str,
    id: Option<PersonalId>,
) -> Result<()> {
    stmt.execute(params![
        key,
        c.personal_id,
        c.legacy_id,
        c.status,
        c.facts.name_key,
        c.facts.birth_year,
        c.facts.commune_key,
        c.facts.province_2025,
        data,
        at,
        c.merged_into,
        c.sex
    ])
    .map_err(|e| match id {
        Some(id) if is_unique_violation(&e) => StoreError::IdTaken(id),
        _ => e.into(),
    })?;
    Ok(())
}

/// Runs [`INSERT_VERSION`].
fn version_row(
    stmt: &mut rusqlite::Statement<'_>,
    key: &str,
    version: i64,
    kind: ChangeKind,
    meta: &ChangeMeta,
    at: &str,
    data: &str,
) -> Result<()> {
    stmt.execute(params![
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

fn insert_version(
    tx: &rusqlite::Transaction<'_>,
    key: &str,
    version: i64,
    kind: ChangeKind,
    meta: &ChangeMeta,
    at: &str,
    data: &str,
) -> Result<()> {
    version_row(&mut *tx.prepare_cached(INSERT_VERSION)?, key, version, kind, meta, at, data)
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
    person_row(&mut *tx.prepare_cached(INSERT_PERSON)?, key, &c, &data, at, person.personal_id)?;
    write_areas(tx, key, &c.areas, false)?;
    insert_version(tx, key, 1, kind, meta, at, &data)
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn local_files(&self) -> Vec<PathBuf> {
        let a = &self.inner.audit;
        [&self.inner.path, &a.index_path, &a.path]
            .into_iter()
            .flat_map(|p| {
                let mut wal = p.clone().into_os_string();
                wal.push("-wal");
                [p.clone(), PathBuf::from(wal)]
            })
            .filter(|p| p.is_file())
            .collect()
    }

    async fn migrate(&self) -> Result<usize> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let applied = {
                let mut audit = inner.audit.writer.lock().unwrap_or_else(|p| p.into_inner());
                let mut applied = run_migrations(&mut audit, AUDIT_MIGRATIONS, |_, _| Ok(()))?;
                let mut conn = inner.writer.lock().unwrap_or_else(|p| p.into_inner());
                applied += run_migrations(&mut conn, MIGRATIONS, |version, tx| match version {
                    4 => backfill_areas(tx),
                    15 => move_audit_to_own_file(tx, &mut audit),
                    _ => Ok(()),
                })?;
                let rebuilt = restore_indexes(&mut conn)?;
                if rebuilt > 0 {
                    tracing::info!(indexes = rebuilt, "rebuilt the search indexes an interrupted import set aside");
                }
                applied
            };
            check_audit_index(&inner)?;
            Ok(applied)
        })
        .await
        .map_err(backend)?
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
            let mut sql = format!("SELECT {RECORD_COLUMNS} FROM persons WHERE merged_into IS NULL");
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

    async fn population(&self, area: Option<&str>) -> Result<Vec<PopulationCell>> {
        let area = area.map(str::to_string);
        self.read(move |conn| {
            let mut sql = "SELECT commune_key, province_2025, birth_year, sex, count(*) \
                           FROM persons WHERE merged_into IS NULL AND status IN ('pending', 'active')"
                .to_string();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(a) = area {
                args.push(a.into());
                sql += " AND key IN (SELECT person_key FROM person_areas WHERE area = ?1)";
            }
            sql += " GROUP BY 1, 2, 3, 4";
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
                Ok(PopulationCell {
                    commune_key: r.get(0)?,
                    province_2025: r.get(1)?,
                    birth_year: r.get(2)?,
                    sex: r.get(3)?,
                    count: r.get::<_, i64>(4)? as u64,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
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

    async fn audit_append(&self, entries: Vec<AuditEntry>) -> Result<i64> {
        self.write_audit(move |atx| chain_audit(atx, &entries)).await
    }

    async fn audit_read(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredEntry>> {
        self.read_audit(move |conn| {
            let mut stmt = conn.prepare_cached(&format!("{AUDIT_SELECT} WHERE seq > ?1 ORDER BY seq LIMIT ?2"))?;
            let rows = stmt.query_map(params![after_seq, limit], audit_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<StoredEntry>> {
        let q = q.clone();
        self.read_audit(move |conn| {
            // One statement, one snapshot: the indexes up to the mark, the chain after it.
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            let mut filters = String::new();
            let arg = |v: &str, args: &mut Vec<rusqlite::types::Value>| {
                args.push(v.to_string().into());
                args.len()
            };
            let officer = q.officer.as_deref().map(|v| arg(v, &mut args));
            let target = q.target.as_deref().map(|v| arg(v, &mut args));
            let from = q.from.as_deref().map(|v| arg(v, &mut args));
            let to = q.to.as_deref().map(|v| arg(v, &mut args));
            for (col, op, n) in
                [("officer", "=", officer), ("target", "=", target), ("at", ">=", from), ("at", "<", to)]
            {
                if let Some(n) = n {
                    filters += &format!(" AND {col} {op} ?{n}");
                }
            }
            let indexed = match (target, officer, from, to) {
                (Some(t), ..) => Some(format!(
                    "SELECT a.seq FROM s JOIN ix.audit_by_target a ON a.segment = s.n AND a.target = ?{t}
                     WHERE a.seq <= (SELECT mark FROM h)"
                )),
                (None, Some(o), ..) => Some(format!(
                    "SELECT seq FROM ix.audit_by_officer WHERE officer = ?{o} AND seq <= (SELECT mark FROM h)"
                )),
                (None, None, None, None) => None,
                (None, None, from, to) => {
                    // Every entry of the blocks the range touches; the filters keep the exact ones.
                    let mut sql = format!(
                        "SELECT l.seq FROM ix.audit_time_blocks b
                         JOIN audit_log l ON l.seq BETWEEN b.block << {bits} AND ((b.block + 1) << {bits}) - 1
                         WHERE l.seq <= (SELECT mark FROM h)",
                        bits = AUDIT_TIME_BLOCK_BITS
                    );
                    if let Some(n) = from {
                        sql += &format!(" AND b.max_at >= ?{n}");
                    }
                    if let Some(n) = to {
                        sql += &format!(" AND b.min_at < ?{n}");
                    }
                    Some(sql)
                }
            };
            args.push(i64::from(q.limit).into());
            args.push(i64::from(q.offset).into());
            let page = format!("ORDER BY seq DESC LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
            let sql = match indexed {
                None => format!("{AUDIT_SELECT} {page}"),
                Some(indexed) => format!(
                    "WITH RECURSIVE
                         h(mark) AS (SELECT COALESCE((SELECT indexed_seq FROM ix.audit_index_state WHERE id = 1), 0)),
                         s(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM s, h WHERE n < h.mark >> {bits})
                     {AUDIT_SELECT} WHERE seq > (SELECT mark FROM h){filters}
                     UNION ALL
                     {AUDIT_SELECT} WHERE seq IN ({indexed}){filters}
                     {page}",
                    bits = crate::AUDIT_SEGMENT_BITS
                ),
            };
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), audit_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn audit_index(&self, max: u32) -> Result<u64> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // Entries of changes reach the chain within the indexer's period, even with no other traffic.
            with_audit_writer(&inner, true, |_| Ok(()))?;
            let indexed = index_audit(&inner, max)?;
            checkpoint_audit_log(&inner)?;
            Ok(indexed)
        })
        .await
        .map_err(backend)?
    }

    async fn audit_indexed_seq(&self) -> Result<i64> {
        self.read_audit(|conn| {
            Ok(conn.query_row("SELECT indexed_seq FROM ix.audit_index_state WHERE id = 1", [], |r| r.get(0))?)
        })
        .await
    }

    async fn audit_head(&self) -> Result<Option<(i64, audit::Hash)>> {
        self.read_audit(|conn| {
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
        self.write_audit(move |conn| {
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
        self.read_audit(|conn| {
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
            insert_change_request(&tx, &r)?;
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

    async fn import_begin(&self, batch: &ImportBatch, audit: &AuditEntry) -> Result<ImportBatch> {
        let b = batch.clone();
        let audit = audit.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(existing) =
                tx.query_row(&format!("{BATCH_SELECT} WHERE id = ?1"), [&b.id], batch_row).optional()?.transpose()?
            {
                return Ok(existing);
            }
            tx.execute(
                "INSERT INTO import_batches (id, unit, officer, file_sha256, started_at) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![b.id, b.unit, b.officer, b.file_sha256, ts(b.started_at)],
            )?;
            append_audit(&tx, &[audit])?;
            tx.commit()?;
            Ok(b)
        })
        .await
    }

    async fn import_batch_get(&self, batch_id: &str) -> Result<Option<ImportBatch>> {
        let batch_id = batch_id.to_string();
        self.read(move |conn| {
            conn.query_row(&format!("{BATCH_SELECT} WHERE id = ?1"), [&batch_id], batch_row).optional()?.transpose()
        })
        .await
    }

    async fn import_batches(&self, limit: u32) -> Result<Vec<ImportBatch>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare(&format!("{BATCH_SELECT} ORDER BY started_at DESC, id LIMIT ?1"))?;
            let rows = stmt.query_map([limit as i64], batch_row)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(row??);
            }
            Ok(out)
        })
        .await
    }

    async fn import_rows(&self, batch_id: &str) -> Result<Vec<(u64, Uuid)>> {
        let batch_id = batch_id.to_string();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare("SELECT line, person_key FROM import_rows WHERE batch_id = ?1 ORDER BY line")?;
            let rows = stmt.query_map([&batch_id], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            let mut out = Vec::new();
            for row in rows {
                let (line, key) = row?;
                out.push((line as u64, parse_key(&key)?));
            }
            Ok(out)
        })
        .await
    }

    async fn import_chunk(&self, batch_id: &str, rows: &[ImportedRow], meta: &ChangeMeta) -> Result<()> {
        // Columns and JSON made before taking the writer (and instead of copying the people):
        // the writer's time goes to the B-trees only.
        let prepared: Vec<PreparedRow> = dancu_core::intake::par::map(rows, |r| {
            let data = serde_json::to_string(&r.person).map_err(backend)?;
            Ok((r.key.to_string(), Columns::of(&r.person), data, r.line as i64, r.person.personal_id))
        })
        .into_iter()
        .collect::<Result<_>>()?;
        let meta = meta.clone();
        let batch_id = batch_id.to_string();
        self.write(move |conn| store_chunk(conn, &batch_id, &prepared, &meta)).await
    }

    async fn defer_person_indexes(&self, new_people: u64, always: bool) -> Result<bool> {
        self.write(move |conn| defer_indexes(conn, new_people, always)).await
    }

    async fn restore_person_indexes(&self) -> Result<usize> {
        self.write(restore_indexes).await
    }

    async fn ids_issued(&self, ids: &[PersonalId]) -> Result<Vec<PersonalId>> {
        let ids = ids.to_vec();
        self.read(move |conn| {
            // One read transaction for all of them: a lookup on its own would take and release the
            // log's read lock (two `fcntl` calls) for each number.
            let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Deferred)?;
            let mut stmt = tx.prepare_cached("SELECT 1 FROM issued_ids WHERE personal_id = ?1")?;
            let mut out = Vec::new();
            for id in ids {
                if stmt.query_row([id.as_str()], |_| Ok(())).optional()?.is_some() {
                    out.push(id);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn link_candidates(&self, keys: &[crate::CandidateKey]) -> Result<Vec<PersonRecord>> {
        let keys = keys.to_vec();
        self.read(move |conn| {
            let mut by_name = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM persons WHERE name_key = ?1 AND birth_year = ?2 AND merged_into IS NULL"
            ))?;
            let mut by_legacy = conn.prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM persons WHERE legacy_id = ?1 AND merged_into IS NULL"
            ))?;
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for k in &keys {
                let rows = match k {
                    crate::CandidateKey::NameYear(n, y) => by_name.query_map(params![n, y], record_from_row)?,
                    crate::CandidateKey::LegacyId(l) => by_legacy.query_map([l], record_from_row)?,
                };
                for row in rows {
                    let row = row?;
                    if seen.insert(row.0.clone()) {
                        out.push(to_record(row)?);
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn review_pairs_insert(&self, pairs: &[ReviewPair]) -> Result<()> {
        let pairs = pairs.to_vec();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            for p in &pairs {
                tx.prepare_cached(
                    "INSERT INTO review_pairs (id, batch_id, a_key, b_key, weight, probability, explanation, state,
                                               created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (a_key, b_key) DO NOTHING",
                )?
                .execute(params![
                    p.id.to_string(),
                    p.batch_id,
                    p.a.to_string(),
                    p.b.to_string(),
                    p.weight,
                    p.probability,
                    p.explanation.to_string(),
                    p.state.code(),
                    ts(p.created_at)
                ])?;
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn import_finish(&self, batch_id: &str, summary: &str, audit: &AuditEntry) -> Result<()> {
        let (batch_id, summary, audit) = (batch_id.to_string(), summary.to_string(), audit.clone());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE import_batches SET finished_at = ?2, summary = ?3 WHERE id = ?1 AND finished_at IS NULL",
                params![batch_id, ts(now()), summary],
            )?;
            if n == 0 {
                return Err(StoreError::State(format!("import batch {batch_id} is not open")));
            }
            append_audit(&tx, &[audit])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    async fn review_pairs(&self, q: &ReviewQuery) -> Result<Vec<ReviewPair>> {
        let q = q.clone();
        self.read(move |conn| {
            let mut sql = format!("{PAIR_SELECT} WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(s) = q.state {
                args.push(s.code().to_string().into());
                sql += &format!(" AND state = ?{}", args.len());
            }
            if let Some(a) = &q.area {
                args.push(a.clone().into());
                let n = args.len();
                sql += &format!(
                    " AND (a_key IN (SELECT person_key FROM person_areas WHERE area = ?{n})
                          OR b_key IN (SELECT person_key FROM person_areas WHERE area = ?{n}))"
                );
            }
            args.push(i64::from(q.limit).into());
            args.push(i64::from(q.offset).into());
            sql += &format!(" ORDER BY created_at DESC, id LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), pair_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn review_pair_get(&self, id: Uuid) -> Result<Option<ReviewPair>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!("{PAIR_SELECT} WHERE id = ?1"))?;
            stmt.query_row([id.to_string()], pair_row).optional()?.transpose()
        })
        .await
    }

    async fn review_pair_decide(&self, id: Uuid, d: &ReviewDecision) -> Result<ReviewPair> {
        let d = d.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut pair = tx
                .prepare_cached(&format!("{PAIR_SELECT} WHERE id = ?1"))?
                .query_row([id.to_string()], pair_row)
                .optional()?
                .transpose()?
                .ok_or(StoreError::NotFound)?;
            if pair.state != ReviewState::Pending {
                return Err(StoreError::State(format!("the pair is already decided ({})", pair.state.code())));
            }
            if let Some((key, version, person, survivor)) = &d.merge {
                update_in_tx(&tx, *key, *version, person, ChangeKind::Merge, &d.meta)?;
                pair.survivor = Some(*survivor);
            }
            let at = now();
            pair.state = d.state;
            pair.decided_by = Some(d.by.clone());
            pair.decided_at = Some(at);
            pair.note = d.note.clone();
            tx.execute(
                "UPDATE review_pairs SET state = ?2, decided_by = ?3, decided_at = ?4, note = ?5, survivor = ?6
                 WHERE id = ?1",
                params![
                    id.to_string(),
                    pair.state.code(),
                    pair.decided_by,
                    ts(at),
                    pair.note,
                    pair.survivor.map(|s| s.to_string())
                ],
            )?;
            if let Some(e) = &d.audit {
                append_audit(&tx, std::slice::from_ref(e))?;
            }
            tx.commit()?;
            Ok(pair)
        })
        .await
    }

    async fn residence_apply(&self, plan: &ResidencePlan) -> Result<()> {
        self.residence_apply_impl(plan).await
    }

    async fn application_get(&self, id: Uuid) -> Result<Option<Application>> {
        self.application_get_impl(id).await
    }

    async fn applications(&self, q: &ApplicationQuery) -> Result<Vec<Application>> {
        self.applications_impl(q).await
    }

    async fn household_get(&self, id: Uuid) -> Result<Option<Household>> {
        self.household_get_impl(id).await
    }

    async fn household_of(&self, person_key: Uuid) -> Result<Option<Uuid>> {
        self.household_of_impl(person_key).await
    }

    async fn residences(&self, person_key: Uuid, as_of: Option<OffsetDateTime>) -> Result<Vec<ResidenceRow>> {
        self.residences_impl(person_key, as_of).await
    }

    async fn residents_at(&self, address: &Address, on: time::Date) -> Result<Vec<ResidenceRow>> {
        self.residents_at_impl(address, on).await
    }

    async fn temporary_expired(&self, today: time::Date, limit: u32) -> Result<Vec<ResidenceRow>> {
        self.temporary_expired_impl(today, limit).await
    }

    async fn persons_with_legacy_address(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<PersonRecord>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT key, version, created_at, updated_at, data FROM persons
                 WHERE key > ?1 AND key IN (SELECT person_key FROM person_areas
                                            WHERE area >= 'c:legacy:' AND area < 'c:legacy;')
                 ORDER BY key LIMIT ?2",
            )?;
            let after = after.map(|k| k.to_string()).unwrap_or_default();
            let rows = stmt.query_map(params![after, limit], record_from_row)?;
            rows.map(|r| to_record(r?)).collect()
        })
        .await
    }

    async fn address_migration_apply(
        &self,
        changes: &[(Uuid, i64, Person)],
        reviews: &[crate::AddressReview],
        meta: &ChangeMeta,
    ) -> Result<(u64, u64)> {
        let changes = changes.to_vec();
        let reviews = reviews.to_vec();
        let meta = meta.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (mut done, mut skipped) = (0, 0);
            for (key, version, person) in &changes {
                match update_in_tx(&tx, *key, *version, person, ChangeKind::Update, &meta) {
                    Ok(_) => done += 1,
                    Err(StoreError::Conflict { .. } | StoreError::NotFound) => skipped += 1,
                    Err(e) => return Err(e),
                }
            }
            let at = ts(now());
            let mut stmt = tx.prepare_cached(
                "INSERT INTO address_reviews (person_key, field, scheme, commune_code, detail, candidates, queued_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
            )?;
            for r in &reviews {
                stmt.execute(params![
                    r.person_key.to_string(),
                    r.field,
                    r.address.scheme.code(),
                    r.address.commune_code,
                    r.address.detail,
                    r.candidates.join(","),
                    at
                ])?;
            }
            drop(stmt);
            tx.commit()?;
            Ok((done, skipped))
        })
        .await
    }

    async fn address_reviews(&self, q: &crate::AddressReviewQuery) -> Result<Vec<crate::AddressReview>> {
        let q = q.clone();
        self.read(move |conn| {
            let mut sql = format!("{ADDRESS_REVIEW_SELECT} WHERE 1=1");
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            match q.pending {
                Some(true) => sql += " AND resolved_at IS NULL",
                Some(false) => sql += " AND resolved_at IS NOT NULL",
                None => {}
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
            sql += &format!(" ORDER BY queued_at, person_key, field LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), address_review_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn address_review_get(&self, person_key: Uuid, field: &str) -> Result<Option<crate::AddressReview>> {
        let field = field.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("{ADDRESS_REVIEW_SELECT} WHERE person_key = ?1 AND field = ?2"))?
                .query_row(params![person_key.to_string(), field], address_review_row)
                .optional()?
                .transpose()
        })
        .await
    }

    async fn address_review_resolve(
        &self,
        review: &crate::AddressReview,
        version: i64,
        person: &Person,
        meta: &ChangeMeta,
    ) -> Result<()> {
        let review = review.clone();
        let person = person.clone();
        let meta = meta.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let resolved: Option<Option<String>> = tx
                .query_row(
                    "SELECT resolved_at FROM address_reviews WHERE person_key = ?1 AND field = ?2",
                    params![review.person_key.to_string(), review.field],
                    |r| r.get(0),
                )
                .optional()?;
            match resolved {
                None => return Err(StoreError::NotFound),
                Some(Some(_)) => return Err(StoreError::State("the address review is resolved already".into())),
                Some(None) => {}
            }
            update_in_tx(&tx, review.person_key, version, &person, ChangeKind::Update, &meta)?;
            tx.execute(
                "UPDATE address_reviews SET resolved_at = ?3, resolved_by = ?4, resolved_code = ?5
                 WHERE person_key = ?1 AND field = ?2",
                params![
                    review.person_key.to_string(),
                    review.field,
                    ts(now()),
                    meta.actor,
                    review.resolved_commune_code
                ],
            )?;
            tx.commit()?;
            Ok(())
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

    async fn citizen_challenge_start(&self, c: &CitizenChallenge, limits: &ChallengeLimits) -> Result<bool> {
        let (c, l) = (c.clone(), *limits);
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Challenges older than every window count for nothing: forgotten.
            tx.execute(
                "DELETE FROM citizen_challenges WHERE expires_at < ?1",
                [l.challenges_since.min(l.failures_since)],
            )?;
            let recent: i64 = tx.query_row(
                "SELECT count(*) FROM citizen_challenges WHERE login_key = ?1 AND created_at >= ?2",
                params![c.login_key, l.challenges_since],
                |r| r.get(0),
            )?;
            let failures: i64 = tx.query_row(
                "SELECT coalesce(sum(attempts), 0) FROM citizen_challenges
                 WHERE login_key = ?1 AND created_at >= ?2 AND used_at IS NULL",
                params![c.login_key, l.failures_since],
                |r| r.get(0),
            )?;
            if recent >= i64::from(l.max_challenges) || failures >= i64::from(l.max_failures) {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO citizen_challenges (id, login_key, person_key, code_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![c.id, c.login_key, c.person_key, c.code_hash, c.created_at, c.expires_at],
            )?;
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn citizen_challenge_attempt(
        &self,
        id: &str,
        code_hash: &str,
        now_s: i64,
        max_attempts: u32,
    ) -> Result<ChallengeOutcome> {
        let (id, code_hash) = (id.to_string(), code_hash.to_string());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let row: Option<(Option<String>, String, i64, i64, Option<i64>)> = tx
                .query_row(
                    "SELECT person_key, code_hash, expires_at, attempts, used_at FROM citizen_challenges
                     WHERE id = ?1",
                    [&id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((person, stored, expires_at, attempts, used_at)) = row else { return Ok(ChallengeOutcome::Spent) };
            if used_at.is_some() || expires_at <= now_s || attempts >= i64::from(max_attempts) {
                return Ok(ChallengeOutcome::Spent);
            }
            let right = stored == code_hash && person.is_some();
            tx.execute(
                "UPDATE citizen_challenges SET attempts = attempts + ?2, used_at = ?3 WHERE id = ?1",
                params![id, i64::from(!right), right.then_some(now_s)],
            )?;
            tx.commit()?;
            Ok(match person {
                Some(p) if right => ChallengeOutcome::Accepted(p),
                _ => ChallengeOutcome::Wrong((i64::from(max_attempts) - attempts - 1).max(0) as u32),
            })
        })
        .await
    }

    async fn citizen_session_insert(&self, s: &CitizenSession) -> Result<()> {
        let s = s.clone();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO citizen_sessions (token_hash, person_key, created_at, expires_at, revoked_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![s.token_hash, s.person_key, s.created_at, s.expires_at, s.revoked_at],
            )?;
            Ok(())
        })
        .await
    }

    async fn citizen_session_get(&self, token_hash: &str) -> Result<Option<CitizenSession>> {
        let h = token_hash.to_string();
        self.read_now(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT token_hash, person_key, created_at, expires_at, revoked_at FROM citizen_sessions
                     WHERE token_hash = ?1",
                )?
                .query_row([&h], |r| {
                    Ok(CitizenSession {
                        token_hash: r.get(0)?,
                        person_key: r.get(1)?,
                        created_at: r.get(2)?,
                        expires_at: r.get(3)?,
                        revoked_at: r.get(4)?,
                    })
                })
                .optional()?)
        })
    }

    async fn citizen_session_revoke(&self, token_hash: &str, at: i64) -> Result<bool> {
        let h = token_hash.to_string();
        self.write(move |conn| {
            Ok(conn.execute(
                "UPDATE citizen_sessions SET revoked_at = ?2 WHERE token_hash = ?1 AND revoked_at IS NULL",
                params![h, at],
            )? == 1)
        })
        .await
    }

    async fn oidc_grant_insert(&self, g: &OidcGrant) -> Result<()> {
        let g = g.clone();
        self.write(move |conn| {
            // Grants whose code and token both ended an hour ago are forgotten.
            conn.execute(
                "DELETE FROM oidc_grants WHERE expires_at < ?1 AND coalesce(access_expires_at, 0) < ?1
                   AND coalesce(refresh_expires_at, 0) < ?1",
                [g.auth_time - 3600],
            )?;
            conn.execute(
                "INSERT INTO oidc_grants (code_hash, client_id, person_key, redirect_uri, code_challenge, scope,
                                          nonce, auth_time, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    g.code_hash,
                    g.client_id,
                    g.person_key,
                    g.redirect_uri,
                    g.code_challenge,
                    g.scope,
                    g.nonce,
                    g.auth_time,
                    g.expires_at
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn oidc_grant_redeem(
        &self,
        code_hash: &str,
        tokens: &OidcTokens,
        session_id: &str,
        refresh_expires_at: i64,
        now_s: i64,
    ) -> Result<Option<OidcGrant>> {
        let (code, t, sid) = (code_hash.to_string(), tokens.clone(), session_id.to_string());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let Some(g) = tx
                .prepare_cached(&format!("{GRANT_SELECT} WHERE code_hash = ?1"))?
                .query_row([&code], grant_row)
                .optional()?
            else {
                return Ok(None);
            };
            if g.used_at.is_some() {
                // A replayed code: the tokens issued for it stop working (RFC 6749 §4.1.2).
                tx.execute(
                    "UPDATE oidc_grants SET access_hash = NULL, refresh_hash = NULL,
                            revoked_at = coalesce(revoked_at, ?2) WHERE code_hash = ?1",
                    params![code, now_s],
                )?;
            } else {
                tx.execute(
                    "UPDATE oidc_grants SET used_at = ?2, access_hash = ?3, access_expires_at = ?4, session_id = ?5,
                            refresh_hash = ?6, refresh_expires_at = ?7
                     WHERE code_hash = ?1",
                    params![code, now_s, t.access_hash, t.access_expires_at, sid, t.refresh_hash, refresh_expires_at],
                )?;
            }
            tx.commit()?;
            Ok(Some(g))
        })
        .await
    }

    async fn oidc_refresh(
        &self,
        client_id: &str,
        session_id: &str,
        refresh_hash: &str,
        new: &OidcTokens,
        now_s: i64,
    ) -> Result<RefreshOutcome> {
        let (client, sid, presented, t) =
            (client_id.to_string(), session_id.to_string(), refresh_hash.to_string(), new.clone());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = tx
                .prepare_cached(&format!("{GRANT_SELECT} WHERE session_id = ?1 AND client_id = ?2"))?
                .query_row([&sid, &client], grant_row)
                .optional()?;
            let current: Option<String> = tx
                .query_row("SELECT refresh_hash FROM oidc_grants WHERE session_id = ?1", [&sid], |r| r.get(0))
                .optional()?
                .flatten();
            let outcome = match found {
                Some(g) if g.revoked_at.is_none() && g.refresh_expires_at.is_some_and(|e| e > now_s) => {
                    if current.as_deref() == Some(presented.as_str()) {
                        tx.execute(
                            "UPDATE oidc_grants SET refresh_hash = ?2, access_hash = ?3, access_expires_at = ?4
                             WHERE session_id = ?1",
                            params![sid, t.refresh_hash, t.access_hash, t.access_expires_at],
                        )?;
                        RefreshOutcome::Rotated(Box::new(g))
                    } else {
                        tx.execute(
                            "UPDATE oidc_grants SET refresh_hash = NULL, access_hash = NULL, revoked_at = ?2
                             WHERE session_id = ?1",
                            params![sid, now_s],
                        )?;
                        RefreshOutcome::Reused
                    }
                }
                _ => RefreshOutcome::Refused,
            };
            tx.commit()?;
            Ok(outcome)
        })
        .await
    }

    async fn oidc_session_end(&self, client_id: &str, session_id: &str, now_s: i64) -> Result<Option<OidcGrant>> {
        let (client, sid) = (client_id.to_string(), session_id.to_string());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let found = tx
                .prepare_cached(&format!(
                    "{GRANT_SELECT} WHERE session_id = ?1 AND client_id = ?2 AND revoked_at IS NULL"
                ))?
                .query_row([&sid, &client], grant_row)
                .optional()?;
            if found.is_some() {
                tx.execute(
                    "UPDATE oidc_grants SET refresh_hash = NULL, access_hash = NULL, revoked_at = ?2
                     WHERE session_id = ?1",
                    params![sid, now_s],
                )?;
            }
            tx.commit()?;
            Ok(found)
        })
        .await
    }

    async fn oidc_grant_by_access(&self, access_hash: &str) -> Result<Option<OidcGrant>> {
        let h = access_hash.to_string();
        self.read_now(move |conn| {
            Ok(conn
                .prepare_cached(&format!("{GRANT_SELECT} WHERE access_hash = ?1"))?
                .query_row([&h], grant_row)
                .optional()?)
        })
    }

    async fn change_feed(&self, after: i64, limit: u32) -> Result<Vec<FeedItem>> {
        self.read(move |conn| {
            // The single writer appends versions in commit order: rowid order is the feed's order.
            let mut stmt = conn.prepare_cached(
                "SELECT v.rowid, v.key, v.version, v.recorded_at, p.data, v.data,
                        EXISTS (SELECT 1 FROM civil_events c WHERE c.person_key = v.key AND c.kind = 'birth')
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
                    r.get::<_, bool>(6)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (position, key, version, at, before, after, registered_birth) = row?;
                out.push(FeedItem {
                    position,
                    key: parse_key(&key)?,
                    version,
                    recorded_at: parse_ts(&at)?,
                    before: parse_person(&before)?,
                    after: parse_person(&after)?,
                    registered_birth,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn card_application_insert(
        &self,
        app: &crate::cards::CardApplication,
        images: &crate::cards::CardImages,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        self.card_application_insert_impl(app, images, audit).await
    }

    async fn card_application_get(&self, id: Uuid) -> Result<Option<crate::cards::CardApplication>> {
        self.card_application_get_impl(id).await
    }

    async fn card_application_by_number(&self, number: &str) -> Result<Option<crate::cards::CardApplication>> {
        self.card_application_by_number_impl(number).await
    }

    async fn card_applications(
        &self,
        q: &crate::cards::CardApplicationQuery,
    ) -> Result<Vec<crate::cards::CardApplication>> {
        self.card_applications_impl(q).await
    }

    async fn card_application_counts(
        &self,
        area: Option<&str>,
        overdue_on: time::Date,
    ) -> Result<crate::cards::CardCounts> {
        self.card_application_counts_impl(area, overdue_on).await
    }

    async fn card_application_step(
        &self,
        app: &crate::cards::CardApplication,
        expected: dancu_card::application::Stage,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        self.card_application_step_impl(app, expected, audit).await
    }

    async fn card_images(&self, id: Uuid) -> Result<Option<crate::cards::CardImages>> {
        self.card_images_impl(id).await
    }

    async fn card_personalize(
        &self,
        app: &crate::cards::CardApplication,
        card: &crate::cards::Card,
        chip: &crate::cards::ChipRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<crate::cards::Personalized> {
        self.card_personalize_impl(app, card, chip, audit).await
    }

    async fn centre_insert(&self, c: &crate::cards::Centre, audit: Option<&AuditEntry>) -> Result<()> {
        self.centre_insert_impl(c, audit).await
    }

    async fn centres(&self, now: OffsetDateTime) -> Result<Vec<crate::cards::CentreStatus>> {
        self.centres_impl(now).await
    }

    async fn centre_restock(&self, id: &str, add: i64, audit: Option<&AuditEntry>) -> Result<()> {
        self.centre_restock_impl(id, add, audit).await
    }

    async fn cards_of(&self, person_key: Uuid) -> Result<Vec<crate::cards::Card>> {
        self.cards_of_impl(person_key).await
    }

    async fn card_get(&self, serial: &str) -> Result<Option<crate::cards::Card>> {
        self.card_get_impl(serial).await
    }

    async fn card_chip(&self, serial: &str) -> Result<Option<crate::cards::ChipRecord>> {
        self.card_chip_impl(serial).await
    }

    async fn card_set_state(
        &self,
        card: &crate::cards::Card,
        expected: dancu_card::application::CardState,
        audit: Option<&AuditEntry>,
    ) -> Result<()> {
        self.card_set_state_impl(card, expected, audit).await
    }
    async fn feed_head(&self) -> Result<i64> {
        self.read(|conn| Ok(conn.query_row("SELECT coalesce(max(rowid), 0) FROM person_versions", [], |r| r.get(0))?))
            .await
    }

    async fn webhook_put(&self, w: &Webhook) -> Result<Webhook> {
        let w = w.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute(
                "INSERT INTO webhooks (partner_id, url, secret_sealed, cursor, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (partner_id) DO UPDATE SET url = excluded.url, secret_sealed = excluded.secret_sealed,
                     updated_at = excluded.updated_at",
                params![w.partner_id, w.url, w.secret_sealed, w.cursor, w.updated_at],
            )?;
            let stored =
                tx.query_row(&format!("{WEBHOOK_SELECT} WHERE partner_id = ?1"), [&w.partner_id], webhook_row)?;
            tx.commit()?;
            Ok(stored)
        })
        .await
    }

    async fn webhook_get(&self, partner_id: &str) -> Result<Option<Webhook>> {
        let id = partner_id.to_string();
        self.read_now(move |conn| {
            Ok(conn
                .prepare_cached(&format!("{WEBHOOK_SELECT} WHERE partner_id = ?1"))?
                .query_row([&id], webhook_row)
                .optional()?)
        })
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&format!("{WEBHOOK_SELECT} ORDER BY partner_id"))?;
            let rows = stmt.query_map([], webhook_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn webhook_enqueue(&self, partner_id: &str, from: i64, to: i64, events: &[NewDelivery]) -> Result<bool> {
        let (id, events) = (partner_id.to_string(), events.to_vec());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE webhooks SET cursor = ?3 WHERE partner_id = ?1 AND cursor = ?2",
                params![id, from, to],
            )?;
            if n == 0 {
                return Ok(false);
            }
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO webhook_deliveries (partner_id, event_id, position, person_key, payload, state,
                                                     next_attempt_ms, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6 * 1000, ?6)
                     ON CONFLICT (partner_id, event_id) DO NOTHING",
                )?;
                for e in &events {
                    ins.execute(params![id, e.event_id, e.position, e.person_key, e.payload, e.created_at])?;
                }
            }
            tx.commit()?;
            Ok(true)
        })
        .await
    }

    async fn webhook_pending(&self, partner_id: &str, limit: u32) -> Result<Vec<Delivery>> {
        let id = partner_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{DELIVERY_SELECT} WHERE partner_id = ?1 AND state = 'pending' ORDER BY seq LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![id, limit], delivery_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn webhook_attempt(&self, partner_id: &str, event_id: &str, attempt: &Attempt) -> Result<bool> {
        let (id, event, attempt) = (partner_id.to_string(), event_id.to_string(), attempt.clone());
        self.write(move |conn| {
            let n = match attempt {
                Attempt::Delivered { at, status } => conn.execute(
                    "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, delivered_at = ?3,
                         last_status = ?4, last_error = NULL
                     WHERE partner_id = ?1 AND event_id = ?2 AND state = 'pending'",
                    params![id, event, at, status],
                )?,
                Attempt::Failed { status, error, retry_at_ms } => conn.execute(
                    "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?3, last_error = ?4,
                         next_attempt_ms = ?5
                     WHERE partner_id = ?1 AND event_id = ?2 AND state = 'pending'",
                    params![id, event, status, error, retry_at_ms],
                )?,
            };
            Ok(n == 1)
        })
        .await
    }

    async fn webhook_deliveries(
        &self,
        partner_id: &str,
        state: Option<DeliveryState>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let id = partner_id.to_string();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{DELIVERY_SELECT} WHERE partner_id = ?1 AND (?2 IS NULL OR state = ?2) AND seq > ?3
                 ORDER BY seq LIMIT ?4"
            ))?;
            let rows = stmt.query_map(params![id, state.map(DeliveryState::code), after, limit], delivery_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    async fn webhook_counts(&self, partner_id: &str) -> Result<(i64, i64)> {
        let id = partner_id.to_string();
        self.read(move |conn| {
            Ok(conn.query_row(
                "SELECT coalesce(sum(state = 'pending'), 0), coalesce(sum(state = 'delivered'), 0)
                 FROM webhook_deliveries WHERE partner_id = ?1",
                [&id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
    }

    async fn civil_event_get(&self, partner_id: &str, source_id: &str) -> Result<Option<CivilEvent>> {
        let (p, id) = (partner_id.to_string(), source_id.to_string());
        self.read_now(move |conn| civil_get(conn, &p, &id))
    }

    async fn civil_birth(&self, event: &CivilEvent, person: &Person, meta: &ChangeMeta) -> Result<(CivilEvent, bool)> {
        let (mut event, person, meta) = (event.clone(), person.clone(), meta.clone());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(seen) = civil_get(&tx, &event.partner_id, &event.source_id)? {
                return Ok((seen, false));
            }
            let key = crate::new_key();
            let at = now();
            insert_new(&tx, &key.to_string(), &person, &meta, ChangeKind::Create, &ts(at))?;
            if let Some(mut entry) = meta.audit.clone() {
                entry.target.get_or_insert_with(|| key.to_string());
                append_audit(&tx, &[entry])?;
            }
            event.person_key = key;
            civil_insert(&tx, &event)?;
            tx.commit()?;
            Ok((event, true))
        })
        .await
    }

    async fn civil_change(
        &self,
        event: &CivilEvent,
        request: &ChangeRequest,
        audit: Option<&AuditEntry>,
    ) -> Result<(CivilEvent, bool)> {
        let (event, request, audit) = (event.clone(), request.clone(), audit.cloned());
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            if let Some(seen) = civil_get(&tx, &event.partner_id, &event.source_id)? {
                return Ok((seen, false));
            }
            insert_change_request(&tx, &request)?;
            if let Some(e) = audit {
                append_audit(&tx, &[e])?;
            }
            civil_insert(&tx, &event)?;
            tx.commit()?;
            Ok((event, true))
        })
        .await
    }
}

fn insert_change_request(tx: &rusqlite::Transaction<'_>, r: &ChangeRequest) -> Result<()> {
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
    Ok(())
}

const CIVIL_SELECT: &str = "SELECT partner_id, source_id, kind, body_hash, person_key, change_request, received_at
    FROM civil_events WHERE partner_id = ?1 AND source_id = ?2";

fn civil_get(conn: &Connection, partner_id: &str, source_id: &str) -> Result<Option<CivilEvent>> {
    let row = conn
        .prepare_cached(CIVIL_SELECT)?
        .query_row(params![partner_id, source_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, String>(4)?,
                r.get::<_, Option<String>>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .optional()?;
    let Some((partner_id, source_id, kind, body_hash, key, request, received_at)) = row else { return Ok(None) };
    Ok(Some(CivilEvent {
        partner_id,
        source_id,
        kind,
        body_hash,
        person_key: parse_key(&key)?,
        change_request: request.as_deref().map(parse_key).transpose()?,
        received_at,
    }))
}

fn civil_insert(tx: &rusqlite::Transaction<'_>, e: &CivilEvent) -> Result<()> {
    tx.execute(
        "INSERT INTO civil_events (partner_id, source_id, kind, body_hash, person_key, change_request, received_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.partner_id,
            e.source_id,
            e.kind,
            e.body_hash,
            e.person_key.to_string(),
            e.change_request.map(|k| k.to_string()),
            e.received_at
        ],
    )?;
    Ok(())
}

const WEBHOOK_SELECT: &str = "SELECT partner_id, url, secret_sealed, cursor, created_at, updated_at FROM webhooks";

fn webhook_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Webhook> {
    Ok(Webhook {
        partner_id: r.get(0)?,
        url: r.get(1)?,
        secret_sealed: r.get(2)?,
        cursor: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const DELIVERY_SELECT: &str = "SELECT seq, partner_id, event_id, position, person_key, payload, state, attempts,
    next_attempt_ms, last_status, last_error, created_at, delivered_at FROM webhook_deliveries";

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Delivery>> {
    let state: String = r.get(6)?;
    let Some(state) = DeliveryState::from_code(&state) else {
        return Ok(Err(StoreError::Corrupt(format!("delivery state {state:?}"))));
    };
    Ok(Ok(Delivery {
        seq: r.get(0)?,
        partner_id: r.get(1)?,
        event_id: r.get(2)?,
        position: r.get(3)?,
        person_key: r.get(4)?,
        payload: r.get(5)?,
        state,
        attempts: r.get(7)?,
        next_attempt_ms: r.get(8)?,
        last_status: r.get(9)?,
        last_error: r.get(10)?,
        created_at: r.get(11)?,
        delivered_at: r.get(12)?,
    }))
}

// ---------------------------------------------------------------------------------------------
// Residence.

use crate::{Application, ApplicationQuery, Household, HouseholdMember, ResidenceKind, ResidencePlan, ResidenceRow};
use dancu_core::date::iso_date;
use dancu_core::person::{Address, HeadRelationship};
use dancu_core::reference::Scheme;

fn day(d: time::Date) -> String {
    iso_date::format(d)
}

fn parse_day(s: &str) -> Result<time::Date> {
    iso_date::parse(s).ok_or_else(|| StoreError::Corrupt(format!("date {s:?}")))
}

const ADDRESS_REVIEW_SELECT: &str = "SELECT person_key, field, scheme, commune_code, detail, candidates, queued_at,
    resolved_at, resolved_by, resolved_code FROM address_reviews";

fn address_review_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<crate::AddressReview>> {
    let (key, field, scheme): (String, String, String) = (r.get(0)?, r.get(1)?, r.get(2)?);
    let (code, detail, candidates): (String, Option<String>, String) = (r.get(3)?, r.get(4)?, r.get(5)?);
    let (queued, resolved): (String, Option<String>) = (r.get(6)?, r.get(7)?);
    let (by, chosen): (Option<String>, Option<String>) = (r.get(8)?, r.get(9)?);
    Ok((|| {
        Ok(crate::AddressReview {
            person_key: Uuid::parse_str(&key).map_err(|_| StoreError::Corrupt(format!("key {key:?}")))?,
            field,
            address: Address {
                scheme: Scheme::from_code(&scheme).ok_or_else(|| StoreError::Corrupt(format!("scheme {scheme:?}")))?,
                commune_code: code,
                detail,
            },
            candidates: candidates.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect(),
            queued_at: Some(parse_ts(&queued)?),
            resolved_at: resolved.as_deref().map(parse_ts).transpose()?,
            resolved_by: by,
            resolved_commune_code: chosen,
        })
    })())
}

fn relationship_code(r: HeadRelationship) -> Result<String> {
    match serde_json::to_value(r).map_err(backend)? {
        serde_json::Value::String(s) => Ok(s),
        _ => Err(backend("relationship code")),
    }
}

fn parse_relationship(s: &str) -> Result<HeadRelationship> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| StoreError::Corrupt(format!("relationship {s:?}")))
}

const RESIDENCE_SELECT: &str = "SELECT id, person_key, kind, scheme, commune_code, detail, household_id, valid_from,
    valid_to, expires_on, end_cause, application, recorded_at, superseded_at FROM residences";

fn residence_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<ResidenceRow>> {
    let text = |i: usize| r.get::<_, String>(i);
    let opt = |i: usize| r.get::<_, Option<String>>(i);
    let (id, person, kind, scheme, commune_code) = (text(0)?, text(1)?, text(2)?, text(3)?, text(4)?);
    let (detail, household, from, to, expires) = (opt(5)?, opt(6)?, text(7)?, opt(8)?, opt(9)?);
    let (end_cause, application, recorded, superseded) = (opt(10)?, opt(11)?, text(12)?, opt(13)?);
    Ok((|| {
        Ok(ResidenceRow {
            id: parse_key(&id)?,
            person_key: parse_key(&person)?,
            kind: ResidenceKind::from_code(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
            address: Address {
                scheme: Scheme::from_code(&scheme).ok_or_else(|| StoreError::Corrupt(format!("scheme {scheme:?}")))?,
                commune_code,
                detail,
            },
            household: household.as_deref().map(parse_key).transpose()?,
            valid_from: parse_day(&from)?,
            valid_to: to.as_deref().map(parse_day).transpose()?,
            expires_on: expires.as_deref().map(parse_day).transpose()?,
            end_cause,
            application: application.as_deref().map(parse_key).transpose()?,
            recorded_at: parse_ts(&recorded)?,
            superseded_at: superseded.as_deref().map(parse_ts).transpose()?,
        })
    })())
}

fn insert_residence(tx: &rusqlite::Transaction<'_>, r: &ResidenceRow) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO residences (id, person_key, kind, scheme, commune_code, detail, household_id, valid_from,
             valid_to, expires_on, end_cause, application, recorded_at, superseded_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(params![
        r.id.to_string(),
        r.person_key.to_string(),
        r.kind.code(),
        r.address.scheme.code(),
        r.address.commune_code,
        r.address.detail,
        r.household.map(|h| h.to_string()),
        day(r.valid_from),
        r.valid_to.map(day),
        r.expires_on.map(day),
        r.end_cause,
        r.application.map(|a| a.to_string()),
        ts(r.recorded_at),
        r.superseded_at.map(ts)
    ])
    .map_err(|e| unique_as_duplicate(e, "an open residence of this kind for this person"))?;
    Ok(())
}

fn unique_as_duplicate(e: rusqlite::Error, what: &str) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _) if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE => {
            StoreError::Duplicate(what.to_string())
        }
        _ => e.into(),
    }
}

fn application_json(a: &Application) -> Result<String> {
    serde_json::to_string(a).map_err(backend)
}

fn parse_application(s: &str) -> Result<Application> {
    serde_json::from_str(s).map_err(|e| {
        StoreError::Corrupt(format!("a stored application does not parse (line {}, column {})", e.line(), e.column()))
    })
}

fn apply_plan(tx: &rusqlite::Transaction<'_>, plan: &ResidencePlan) -> Result<()> {
    let at = now();
    // The application first: it is the lock on the decision (state checked, then changed).
    if let Some(app) = &plan.application {
        let id = app.id.to_string();
        match plan.expected_state {
            None => {
                tx.execute(
                    "INSERT INTO residence_applications (id, kind, state, person_key, deadline, submitted_at, data)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        id,
                        app.kind.code(),
                        app.state.code(),
                        app.person_key.to_string(),
                        day(app.deadline),
                        ts(app.submitted_at),
                        application_json(app)?
                    ],
                )?;
                let mut stmt = tx.prepare_cached(
                    "INSERT OR IGNORE INTO residence_application_areas (area, application_id) VALUES (?1, ?2)",
                )?;
                for a in &app.areas {
                    stmt.execute(params![a, id])?;
                }
            }
            Some(expected) => {
                let current: Option<String> = tx
                    .query_row("SELECT state FROM residence_applications WHERE id = ?1", [&id], |r| r.get(0))
                    .optional()?;
                match current {
                    None => return Err(StoreError::NotFound),
                    Some(s) if s != expected.code() => {
                        return Err(StoreError::State(format!("the application is already {s}")));
                    }
                    _ => {}
                }
                tx.execute(
                    "UPDATE residence_applications SET state = ?2, data = ?3 WHERE id = ?1",
                    params![id, app.state.code(), application_json(app)?],
                )?;
            }
        }
    }
    if let Some(meta) = &plan.meta {
        for (key, version, person) in &plan.persons {
            let m = ChangeMeta { audit: None, ..meta.clone() };
            update_in_tx(tx, *key, *version, person, ChangeKind::Update, &m)?;
        }
    }
    for (h, expected) in &plan.households {
        let data = serde_json::to_string(&(&h.address, &h.number)).map_err(backend)?;
        match expected {
            None => {
                tx.execute(
                    "INSERT INTO households (id, number, head_key, version, data, created_at)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5)",
                    params![h.id.to_string(), h.number, h.head.map(|k| k.to_string()), data, ts(h.created_at)],
                )
                .map_err(|e| unique_as_duplicate(e, "household number"))?;
            }
            Some(v) => {
                let n = tx.execute(
                    "UPDATE households SET head_key = ?2, version = version + 1, data = ?3
                     WHERE id = ?1 AND version = ?4",
                    params![h.id.to_string(), h.head.map(|k| k.to_string()), data, v],
                )?;
                if n == 0 {
                    let actual: Option<i64> = tx
                        .query_row("SELECT version FROM households WHERE id = ?1", [h.id.to_string()], |r| r.get(0))
                        .optional()?;
                    return Err(match actual {
                        None => StoreError::NotFound,
                        Some(actual) => StoreError::Conflict { expected: *v, actual },
                    });
                }
            }
        }
    }
    for (person, left_on) in &plan.close_memberships {
        let n = tx.execute(
            "UPDATE household_members SET left_on = ?2 WHERE person_key = ?1 AND left_on IS NULL",
            params![person.to_string(), day(*left_on)],
        )?;
        if n == 0 {
            return Err(StoreError::Duplicate("the membership has ended already".into()));
        }
    }
    for m in &plan.open_memberships {
        tx.execute(
            "INSERT INTO household_members (household_id, person_key, relationship, joined_on, recorded_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                m.household.to_string(),
                m.person_key.to_string(),
                relationship_code(m.relationship)?,
                day(m.joined_on),
                ts(at)
            ],
        )
        .map_err(|e| unique_as_duplicate(e, "a membership of another household"))?;
    }
    for (id, row) in &plan.supersede {
        let n = tx.execute(
            "UPDATE residences SET superseded_at = ?2 WHERE id = ?1 AND superseded_at IS NULL AND valid_to IS NULL",
            params![id.to_string(), ts(at)],
        )?;
        if n == 0 {
            return Err(StoreError::Duplicate("the residence has ended already".into()));
        }
        insert_residence(tx, &ResidenceRow { recorded_at: at, superseded_at: None, ..row.clone() })?;
    }
    for r in &plan.open_residences {
        insert_residence(tx, &ResidenceRow { recorded_at: at, ..r.clone() })?;
    }
    if let Some(e) = &plan.audit {
        append_audit(tx, std::slice::from_ref(e))?;
    }
    Ok(())
}

fn household_read(conn: &Connection, id: &str) -> Result<Option<Household>> {
    let row: Option<(String, String, Option<String>, i64, String, String)> = conn
        .prepare_cached("SELECT id, number, head_key, version, data, created_at FROM households WHERE id = ?1")?
        .query_row([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
        .optional()?;
    let Some((id, number, head, version, data, created)) = row else { return Ok(None) };
    let (address, _): (Address, String) =
        serde_json::from_str(&data).map_err(|_| StoreError::Corrupt("a stored household does not parse".into()))?;
    let mut stmt = conn.prepare_cached(
        "SELECT person_key, relationship, joined_on, left_on, recorded_at FROM household_members
         WHERE household_id = ?1 ORDER BY joined_on, recorded_at",
    )?;
    let rows = stmt.query_map([&id], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, String>(4)?,
        ))
    })?;
    let mut members = Vec::new();
    for row in rows {
        let (person, rel, joined, left, recorded) = row?;
        members.push(HouseholdMember {
            person_key: parse_key(&person)?,
            relationship_to_head: parse_relationship(&rel)?,
            joined_on: parse_day(&joined)?,
            left_on: left.as_deref().map(parse_day).transpose()?,
            recorded_at: parse_ts(&recorded)?,
        });
    }
    Ok(Some(Household {
        id: parse_key(&id)?,
        number,
        address,
        head: head.as_deref().map(parse_key).transpose()?,
        version,
        created_at: parse_ts(&created)?,
        members,
    }))
}

impl SqliteStore {
    pub(crate) async fn residence_apply_impl(&self, plan: &ResidencePlan) -> Result<()> {
        let plan = plan.clone();
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            apply_plan(&tx, &plan)?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub(crate) async fn application_get_impl(&self, id: Uuid) -> Result<Option<Application>> {
        self.read(move |conn| {
            let data: Option<String> = conn
                .prepare_cached("SELECT data FROM residence_applications WHERE id = ?1")?
                .query_row([id.to_string()], |r| r.get(0))
                .optional()?;
            data.as_deref().map(parse_application).transpose()
        })
        .await
    }

    pub(crate) async fn applications_impl(&self, q: &ApplicationQuery) -> Result<Vec<Application>> {
        let q = q.clone();
        self.read(move |conn| {
            let mut sql = "SELECT data FROM residence_applications WHERE 1=1".to_string();
            let mut args: Vec<rusqlite::types::Value> = Vec::new();
            if let Some(s) = q.state {
                args.push(s.code().to_string().into());
                sql += &format!(" AND state = ?{}", args.len());
            }
            if let Some(d) = q.overdue_on {
                args.push(day(d).into());
                sql += &format!(" AND state IN ('submitted', 'received') AND deadline < ?{}", args.len());
            }
            if let Some(k) = q.person_key {
                args.push(k.to_string().into());
                sql += &format!(" AND person_key = ?{}", args.len());
            }
            if let Some(a) = &q.area {
                args.push(a.clone().into());
                sql += &format!(
                    " AND id IN (SELECT application_id FROM residence_application_areas WHERE area = ?{})",
                    args.len()
                );
            }
            args.push(i64::from(q.limit).into());
            args.push(i64::from(q.offset).into());
            sql += &format!(" ORDER BY deadline, submitted_at, id LIMIT ?{} OFFSET ?{}", args.len() - 1, args.len());
            let mut stmt = conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(0))?;
            rows.map(|r| parse_application(&r?)).collect()
        })
        .await
    }

    pub(crate) async fn household_get_impl(&self, id: Uuid) -> Result<Option<Household>> {
        self.read(move |conn| household_read(conn, &id.to_string())).await
    }

    pub(crate) async fn household_of_impl(&self, person_key: Uuid) -> Result<Option<Uuid>> {
        self.read(move |conn| {
            let h: Option<String> = conn
                .prepare_cached("SELECT household_id FROM household_members WHERE person_key = ?1 AND left_on IS NULL")?
                .query_row([person_key.to_string()], |r| r.get(0))
                .optional()?;
            h.as_deref().map(parse_key).transpose()
        })
        .await
    }

    pub(crate) async fn residences_impl(
        &self,
        person_key: Uuid,
        as_of: Option<OffsetDateTime>,
    ) -> Result<Vec<ResidenceRow>> {
        self.read(move |conn| {
            let rows = match as_of {
                None => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "{RESIDENCE_SELECT} WHERE person_key = ?1 AND superseded_at IS NULL ORDER BY valid_from, recorded_at"
                    ))?;
                    stmt.query_map([person_key.to_string()], residence_row)?.collect::<rusqlite::Result<Vec<_>>>()?
                }
                Some(t) => {
                    let mut stmt = conn.prepare_cached(&format!(
                        "{RESIDENCE_SELECT} WHERE person_key = ?1 AND recorded_at <= ?2
                           AND (superseded_at IS NULL OR superseded_at > ?2) ORDER BY valid_from, recorded_at"
                    ))?;
                    stmt.query_map(params![person_key.to_string(), ts(t)], residence_row)?
                        .collect::<rusqlite::Result<Vec<_>>>()?
                }
            };
            rows.into_iter().collect()
        })
        .await
    }

    pub(crate) async fn residents_at_impl(&self, address: &Address, on: time::Date) -> Result<Vec<ResidenceRow>> {
        let address = address.clone();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{RESIDENCE_SELECT} WHERE scheme = ?1 AND commune_code = ?2 AND valid_from <= ?3
                   AND (valid_to IS NULL OR valid_to > ?3) AND superseded_at IS NULL
                   AND (?4 IS NULL OR detail = ?4) ORDER BY valid_from, person_key"
            ))?;
            let rows = stmt.query_map(
                params![address.scheme.code(), address.commune_code, day(on), address.detail],
                residence_row,
            )?;
            rows.map(|r| r?).collect()
        })
        .await
    }

    pub(crate) async fn temporary_expired_impl(&self, today: time::Date, limit: u32) -> Result<Vec<ResidenceRow>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "{RESIDENCE_SELECT} WHERE kind = 'temporary' AND valid_to IS NULL AND superseded_at IS NULL
                   AND expires_on < ?1 ORDER BY expires_on LIMIT ?2"
            ))?;
            let rows = stmt.query_map(params![day(today), limit], residence_row)?;
            rows.map(|r| r?).collect()
        })
        .await
    }
}

const GRANT_SELECT: &str = "SELECT code_hash, client_id, person_key, redirect_uri, code_challenge, scope, nonce,
     auth_time, expires_at, used_at, access_expires_at, session_id, refresh_expires_at, revoked_at FROM oidc_grants";

fn grant_row(r: &rusqlite::Row) -> rusqlite::Result<OidcGrant> {
    Ok(OidcGrant {
        code_hash: r.get(0)?,
        client_id: r.get(1)?,
        person_key: r.get(2)?,
        redirect_uri: r.get(3)?,
        code_challenge: r.get(4)?,
        scope: r.get(5)?,
        nonce: r.get(6)?,
        auth_time: r.get(7)?,
        expires_at: r.get(8)?,
        used_at: r.get(9)?,
        access_expires_at: r.get(10)?,
        session_id: r.get(11)?,
        refresh_expires_at: r.get(12)?,
        revoked_at: r.get(13)?,
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use dancu_keys::Signer;

    fn temp_path() -> PathBuf {
        crate::conformance::scratch_dir("unit").join("dancu.sqlite")
    }

    fn entry(i: i64) -> AuditEntry {
        AuditEntry {
            at: format!("2026-11-29T08:00:{:02}Z", i % 60),
            officer: format!("officer-{}", i % 3),
            role: "collector".into(),
            unit: "00004".into(),
            action: "person.update".into(),
            target: Some(format!("person-{}", i % 5)),
            purpose: None,
            request_id: Some(format!("req-{i}")),
            client: None,
            outcome: "200".into(),
        }
    }

    #[test]
    fn the_audit_file_sits_beside_the_database() {
        assert_eq!(audit_path(Path::new("d/dancu.sqlite")), Path::new("d/dancu.audit.sqlite"));
        assert_eq!(audit_path(Path::new("d/registry")), Path::new("d/registry.audit"));
        assert_eq!(audit_path(Path::new(".hidden")), Path::new(".hidden.audit"));
        assert_eq!(audit_index_path(Path::new("d/dancu.sqlite")), Path::new("d/dancu.audit-index.sqlite"));
    }

    /// A store whose trail was kept in the main file (before migration 15) keeps every entry and
    /// checkpoint, still verifying, once the trail has moved to its own file.
    #[tokio::test]
    async fn an_existing_trail_moves_to_its_own_file_intact() {
        let path = temp_path();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let key = dancu_keys::SoftwareKey::generate().unwrap();
        {
            let mut conn = Connection::open(&path).unwrap();
            configure(&conn).unwrap();
            let before: Vec<_> = MIGRATIONS.iter().copied().filter(|m| m.0 < 15).collect();
            run_migrations(&mut conn, &before, |v, tx| if v == 4 { backfill_areas(tx) } else { Ok(()) }).unwrap();
            let tx = conn.transaction().unwrap();
            let last = chain_audit(&tx, &(1..=25).map(entry).collect::<Vec<_>>()).unwrap();
            let hash: Vec<u8> = tx.query_row("SELECT hash FROM audit_log WHERE seq = 20", [], |r| r.get(0)).unwrap();
            let hash = to_hash(&hash).unwrap();
            let signed_at = "2026-11-29T08:01:00Z".to_string();
            let signature = key.sign(&audit::checkpoint_message(20, &hash, &signed_at)).unwrap();
            tx.execute(
                "INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) VALUES (20, ?1, ?2, ?3, ?4)",
                params![&hash[..], signed_at, key.key_id(), signature],
            )
            .unwrap();
            tx.commit().unwrap();
            assert_eq!(last, 25);
        }
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        assert_eq!(store.migrate().await.unwrap(), 6, "the audit file's two, then migrations 15, 16, 18 and 19");
        let report = crate::audit::verify(store.as_ref(), key.public_key_der()).await.unwrap().unwrap();
        assert_eq!((report.entries, report.last_seq, report.checkpoints), (25, 25, 1));
        let tables: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name LIKE 'audit_%' AND name <> 'audit_outbox'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(tables, 0, "no copy of the trail is left in the main file");
        // Queries find the moved entries once the indexer has caught up, and meanwhile.
        let q = crate::AuditQuery { target: Some("person-2".into()), limit: 100, ..Default::default() };
        assert_eq!(store.audit_query(&q).await.unwrap().len(), 5);
        while store.audit_index(8).await.unwrap() > 0 {}
        assert_eq!(store.audit_indexed_seq().await.unwrap(), 25);
        assert_eq!(store.audit_query(&q).await.unwrap().len(), 5);
    }

    /// An outbox entry reaches the chain once, also when the process stopped after moving it and
    /// before removing it from the outbox.
    #[tokio::test]
    async fn an_outbox_entry_is_moved_exactly_once() {
        let path = temp_path();
        let store = SqliteStore::open(&path).unwrap();
        store.migrate().await.unwrap();
        {
            let mut conn = store.inner.writer.lock().unwrap();
            let tx = conn.transaction().unwrap();
            append_audit(&tx, &[entry(1), entry(2)]).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(store.audit_read(0, 10).await.unwrap().len(), 2);
        // the crash: the moved rows are back in the outbox, as if never pruned
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "INSERT INTO audit_outbox (id, at, officer, role, unit, action, outcome)
             VALUES (1, 'x', 'o', 'r', 'u', 'a', '200'), (2, 'x', 'o', 'r', 'u', 'a', '200')",
        )
        .unwrap();
        store.audit_append(vec![entry(3)]).await.unwrap();
        let chain = store.audit_read(0, 10).await.unwrap();
        assert_eq!(
            chain.iter().map(|e| e.entry.request_id.clone().unwrap()).collect::<Vec<_>>(),
            ["req-1", "req-2", "req-3"]
        );
        let left: i64 = conn.query_row("SELECT count(*) FROM audit_outbox", [], |r| r.get(0)).unwrap();
        assert_eq!(left, 0, "moved rows are pruned");
        // a later change still gets a fresh id (AUTOINCREMENT never reuses one)
        {
            let mut w = store.inner.writer.lock().unwrap();
            let tx = w.transaction().unwrap();
            append_audit(&tx, &[entry(4)]).unwrap();
            tx.commit().unwrap();
        }
        assert_eq!(store.audit_read(3, 10).await.unwrap()[0].entry.request_id.as_deref(), Some("req-4"));
    }
}
