//! PostgreSQL adapter: for scale-out. A connection pool (deadpool), the same schema as SQLite
//! in PostgreSQL's types, one transaction per operation.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use time::OffsetDateTime;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{Json, ToSql, Type};
use tokio_postgres::{NoTls, Row};
use uuid::Uuid;

use crate::{
    ApprovedChange, AuditQuery, CandidateKey, ChangeRequest, Decision, ImportBatch, ImportedRow, RawPersonRecord,
    RequestQuery, RequestState, ReviewDecision, ReviewPair, ReviewQuery, ReviewState, Session,
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
    key           uuid PRIMARY KEY,
    personal_id   text UNIQUE,
    legacy_id     text,
    status        text NOT NULL,
    name_key      text COLLATE "C" NOT NULL,
    birth_year    integer NOT NULL,
    commune_key   text,
    province_2025 text,
    version       bigint NOT NULL,
    data          jsonb NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX persons_legacy_id ON persons (legacy_id) WHERE legacy_id IS NOT NULL;
CREATE INDEX persons_name_year_commune ON persons (name_key, birth_year, commune_key);
CREATE INDEX persons_commune_name ON persons (commune_key, name_key);
CREATE INDEX persons_province_name ON persons (province_2025, name_key);

CREATE TABLE person_versions (
    key         uuid NOT NULL REFERENCES persons (key),
    version     bigint NOT NULL,
    change      text NOT NULL,
    actor       text NOT NULL,
    reason      text NOT NULL,
    legal_basis text,
    recorded_at timestamptz NOT NULL,
    data        jsonb NOT NULL,
    PRIMARY KEY (key, version)
);

CREATE TABLE issued_ids (
    personal_id text PRIMARY KEY,
    key         uuid NOT NULL REFERENCES persons (key),
    issued_at   timestamptz NOT NULL
);
"#,
    ),
    (
        2,
        "audit",
        r#"
CREATE TABLE audit_log (
    seq        bigint PRIMARY KEY,
    at         text NOT NULL,
    officer    text NOT NULL,
    role       text NOT NULL,
    unit       text NOT NULL,
    action     text NOT NULL,
    target     text,
    purpose    text,
    request_id text,
    client     text,
    outcome    text NOT NULL,
    prev_hash  bytea NOT NULL,
    hash       bytea NOT NULL
);
CREATE INDEX audit_log_officer ON audit_log (officer, at);
CREATE INDEX audit_log_target ON audit_log (target, at) WHERE target IS NOT NULL;
CREATE INDEX audit_log_at ON audit_log (at);
CREATE TABLE audit_checkpoints (
    seq       bigint PRIMARY KEY,
    hash      bytea NOT NULL,
    signed_at text NOT NULL,
    key_id    text NOT NULL,
    signature bytea NOT NULL
);
-- Append-only. Whoever can drop these triggers can edit rows, and the hash chain tells.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit trail is append-only';
END $$;
CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
"#,
    ),
    (
        3,
        "officers",
        r#"
CREATE TABLE officers (
    username       text PRIMARY KEY,
    display_name   text NOT NULL,
    unit           text NOT NULL,
    roles          text NOT NULL,
    password_hash  text NOT NULL,
    totp_secret    text,
    totp_last_step bigint,
    failed_logins  integer NOT NULL DEFAULT 0,
    locked_until   text,
    active         boolean NOT NULL,
    created_at     timestamptz NOT NULL
);
"#,
    ),
    (
        4,
        "access",
        r#"
ALTER TABLE officers ADD COLUMN permissions text NOT NULL DEFAULT '';
ALTER TABLE officers ADD COLUMN totp_pending text;
ALTER TABLE person_versions ADD COLUMN approved_by text;

CREATE TABLE sessions (
    token_hash   text PRIMARY KEY,
    username     text NOT NULL REFERENCES officers (username),
    kind         text NOT NULL,
    stage        text NOT NULL,
    created_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL,
    revoked      boolean NOT NULL DEFAULT false
);
CREATE INDEX sessions_username ON sessions (username);

-- The areas (dancu_core::access) each person lies in: what scopes officers' searches.
CREATE TABLE person_areas (
    area       text COLLATE "C" NOT NULL,
    person_key uuid NOT NULL REFERENCES persons (key),
    PRIMARY KEY (area, person_key)
);
CREATE INDEX person_areas_person ON person_areas (person_key);

CREATE TABLE change_requests (
    id             uuid PRIMARY KEY,
    person_key     uuid NOT NULL REFERENCES persons (key),
    base_version   bigint NOT NULL,
    guarded        text NOT NULL,
    proposed       jsonb NOT NULL,
    requested_by   text NOT NULL,
    requested_unit text NOT NULL,
    requested_at   timestamptz NOT NULL,
    reason         text NOT NULL,
    legal_basis    text,
    state          text NOT NULL,
    decided_by     text,
    decided_at     timestamptz,
    decision_note  text,
    result_version bigint
);
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
    id          integer PRIMARY KEY CHECK (id = 1),
    indexed_seq bigint NOT NULL
);
-- By person; the segment (seq >> 16) leads the key so that new entries touch only the newest
-- segment's pages.
CREATE TABLE audit_by_target (
    segment bigint NOT NULL,
    target  text NOT NULL,
    seq     bigint NOT NULL,
    PRIMARY KEY (segment, target, seq)
);
CREATE TABLE audit_by_officer (
    officer text NOT NULL,
    seq     bigint NOT NULL,
    PRIMARY KEY (officer, seq)
);
CREATE TABLE audit_by_time (
    at  text NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (at, seq)
);
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
ALTER TABLE persons ADD COLUMN merged_into text;

CREATE TABLE import_batches (
    id          text PRIMARY KEY,
    unit        text NOT NULL,
    officer     text NOT NULL,
    file_sha256 text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz,
    summary     text
);

-- Which record each line of a batch became: a re-run skips these lines.
CREATE TABLE import_rows (
    batch_id   text NOT NULL REFERENCES import_batches (id),
    line       bigint NOT NULL,
    person_key uuid NOT NULL REFERENCES persons (key),
    PRIMARY KEY (batch_id, line)
);

CREATE TABLE review_pairs (
    id          uuid PRIMARY KEY,
    batch_id    text NOT NULL REFERENCES import_batches (id),
    a_key       uuid NOT NULL REFERENCES persons (key),
    b_key       uuid NOT NULL REFERENCES persons (key),
    weight      double precision NOT NULL,
    probability double precision NOT NULL,
    explanation jsonb NOT NULL,
    state       text NOT NULL,
    created_at  timestamptz NOT NULL,
    decided_by  text,
    decided_at  timestamptz,
    note        text,
    survivor    uuid,
    UNIQUE (a_key, b_key)
);
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
    id         uuid PRIMARY KEY,
    number     text NOT NULL UNIQUE,
    head_key   uuid REFERENCES persons (key),
    version    bigint NOT NULL,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
CREATE TABLE household_members (
    household_id uuid NOT NULL REFERENCES households (id),
    person_key   uuid NOT NULL REFERENCES persons (key),
    relationship text NOT NULL,
    joined_on    date NOT NULL,
    left_on      date,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX household_members_household ON household_members (household_id);
-- No one in two households.
CREATE UNIQUE INDEX household_members_one_open ON household_members (person_key) WHERE left_on IS NULL;

-- Residence history, bitemporal: valid_from/valid_to (when it held), recorded_at/superseded_at
-- (when the register said so). Rows are only ever superseded, never edited.
CREATE TABLE residences (
    id            uuid PRIMARY KEY,
    person_key    uuid NOT NULL REFERENCES persons (key),
    kind          text NOT NULL,
    scheme        text NOT NULL,
    commune_code  text COLLATE "C" NOT NULL,
    detail        text,
    household_id  uuid REFERENCES households (id),
    valid_from    date NOT NULL,
    valid_to      date,
    expires_on    date,
    end_cause     text,
    application   uuid,
    recorded_at   timestamptz NOT NULL,
    superseded_at timestamptz
);
CREATE INDEX residences_person ON residences (person_key, valid_from);
CREATE INDEX residences_place ON residences (scheme, commune_code, valid_from);
CREATE INDEX residences_expiry ON residences (expires_on) WHERE kind = 'temporary' AND valid_to IS NULL
    AND superseded_at IS NULL;
-- One permanent and one temporary residence per person at a time.
CREATE UNIQUE INDEX residences_one_open ON residences (person_key, kind)
    WHERE valid_to IS NULL AND superseded_at IS NULL;

CREATE TABLE residence_applications (
    id           uuid PRIMARY KEY,
    kind         text NOT NULL,
    state        text NOT NULL,
    person_key   uuid NOT NULL REFERENCES persons (key),
    deadline     date NOT NULL,
    submitted_at timestamptz NOT NULL,
    data         jsonb NOT NULL
);
CREATE INDEX residence_applications_open ON residence_applications (state, deadline);
CREATE INDEX residence_applications_person ON residence_applications (person_key);
CREATE TABLE residence_application_areas (
    area           text COLLATE "C" NOT NULL,
    application_id uuid NOT NULL REFERENCES residence_applications (id),
    PRIMARY KEY (area, application_id)
);

-- Legacy addresses of partially merged communes, waiting for a person's decision (2025 reform).
CREATE TABLE address_reviews (
    person_key   uuid NOT NULL REFERENCES persons (key),
    field        text NOT NULL,
    scheme       text NOT NULL,
    commune_code text NOT NULL,
    detail       text,
    candidates   text NOT NULL,
    queued_at    timestamptz NOT NULL,
    resolved_at  timestamptz,
    PRIMARY KEY (person_key, field)
);
"#,
    ),
    (
        8,
        "sharing",
        r#"
CREATE TABLE partners (
    id         text PRIMARY KEY,
    data       jsonb NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);

-- Client assertions (RFC 7523) seen, kept until they expire: a replay is refused.
CREATE TABLE partner_assertions (
    partner_id text NOT NULL REFERENCES partners (id),
    jti        text NOT NULL,
    expires_at bigint NOT NULL,
    PRIMARY KEY (partner_id, jti)
);
CREATE INDEX partner_assertions_expiry ON partner_assertions (expires_at);

CREATE TABLE consents (
    id          text PRIMARY KEY,
    person_key  uuid NOT NULL REFERENCES persons (key),
    partner_id  text NOT NULL REFERENCES partners (id),
    purpose     text NOT NULL,
    granted_at  bigint NOT NULL,
    expires_at  bigint NOT NULL,
    revoked_at  bigint,
    recorded_by text NOT NULL,
    revoked_by  text
);
CREATE INDEX consents_person ON consents (person_key, partner_id);

-- The change feed's order: a sequence over versions (read only once settled; see change_feed).
ALTER TABLE person_versions ADD COLUMN feed_seq bigserial;
CREATE INDEX person_versions_feed ON person_versions (feed_seq);
"#,
    ),
    (9, "cards", cards::MIGRATION),
    (
        10,
        "address_review_decisions",
        r#"
-- Who resolved an address review and which 2025 commune they chose; the pending queue in order.
ALTER TABLE address_reviews ADD COLUMN resolved_by text;
ALTER TABLE address_reviews ADD COLUMN resolved_code text;
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
    partner_id    text PRIMARY KEY REFERENCES partners (id),
    url           text NOT NULL,
    secret_sealed text NOT NULL,
    cursor        bigint NOT NULL,
    created_at    bigint NOT NULL,
    updated_at    bigint NOT NULL
);

-- Every event queued for a partner and its delivery: one row per (partner, event id).
CREATE TABLE webhook_deliveries (
    seq             bigserial PRIMARY KEY,
    partner_id      text NOT NULL REFERENCES partners (id),
    event_id        text NOT NULL,
    position        bigint NOT NULL,
    person_key      text NOT NULL,
    payload         text NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'delivered')),
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_ms bigint NOT NULL,
    last_status     bigint,
    last_error      text,
    created_at      bigint NOT NULL,
    delivered_at    bigint,
    UNIQUE (partner_id, event_id)
);
CREATE INDEX webhook_deliveries_pending ON webhook_deliveries (partner_id, seq) WHERE state = 'pending';

-- Inbound civil-status events (births, deaths, marriages, divorces), one per source id of the
-- sending partner: a replay is answered from here, a different body under the same id refused.
CREATE TABLE civil_events (
    partner_id     text NOT NULL REFERENCES partners (id),
    source_id      text NOT NULL,
    kind           text NOT NULL,
    body_hash      text NOT NULL,
    person_key     uuid NOT NULL REFERENCES persons (key),
    change_request uuid REFERENCES change_requests (id),
    received_at    bigint NOT NULL,
    PRIMARY KEY (partner_id, source_id)
);
"#,
    ),
    (
        12,
        "citizens_and_oidc",
        r#"
-- Citizen logins in progress: the one-time code as a hash bound to the challenge; an unknown
-- personal ID gets a challenge too (person_key NULL), so answers never tell IDs apart.
CREATE TABLE citizen_challenges (
    id         text PRIMARY KEY,
    login_key  text NOT NULL,
    person_key uuid REFERENCES persons (key),
    code_hash  text NOT NULL,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    attempts   integer NOT NULL DEFAULT 0,
    used_at    bigint
);
CREATE INDEX citizen_challenges_login ON citizen_challenges (login_key, created_at);
CREATE INDEX citizen_challenges_expiry ON citizen_challenges (expires_at);

CREATE TABLE citizen_sessions (
    token_hash text PRIMARY KEY,
    person_key uuid NOT NULL REFERENCES persons (key),
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    revoked_at bigint
);

-- OpenID Connect authorization codes (hashed) and the access token issued for each (hashed).
CREATE TABLE oidc_grants (
    code_hash         text PRIMARY KEY,
    client_id         text NOT NULL REFERENCES partners (id),
    person_key        uuid NOT NULL REFERENCES persons (key),
    redirect_uri      text NOT NULL,
    code_challenge    text NOT NULL,
    scope             text NOT NULL,
    nonce             text,
    auth_time         bigint NOT NULL,
    expires_at        bigint NOT NULL,
    used_at           bigint,
    access_hash       text UNIQUE,
    access_expires_at bigint
);
CREATE INDEX oidc_grants_expiry ON oidc_grants (expires_at);
"#,
    ),
    (
        16,
        "persons_sex",
        r#"
-- Sex beside the birth year, so the dashboard's population count (by commune, birth year and
-- sex) reads a covering index instead of every record's JSON. Kept in step by every write.
ALTER TABLE persons ADD COLUMN sex text NOT NULL DEFAULT '';
UPDATE persons SET sex = coalesce(data->>'sex', '');
ALTER TABLE persons ALTER COLUMN sex DROP DEFAULT;
CREATE INDEX persons_population ON persons (key) INCLUDE (commune_key, province_2025, birth_year, sex)
    WHERE merged_into IS NULL AND status IN ('pending', 'active');
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
ALTER TABLE oidc_grants ADD COLUMN session_id text;
ALTER TABLE oidc_grants ADD COLUMN refresh_hash text;
ALTER TABLE oidc_grants ADD COLUMN refresh_expires_at bigint;
ALTER TABLE oidc_grants ADD COLUMN revoked_at bigint;
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
    name       text PRIMARY KEY,
    definition text NOT NULL
);
"#,
    ),
];

/// Fills `person_areas` for people stored before migration 4 (inside its transaction).
async fn backfill_areas(tx: &deadpool_postgres::Transaction<'_>) -> Result<()> {
    let rows = tx.query("SELECT key, data FROM persons", &[]).await?;
    for chunk in rows.chunks(10_000) {
        let (mut keys, mut areas) = (Vec::<Uuid>::new(), Vec::<String>::new());
        for r in chunk {
            let Json(p): Json<Person> =
                r.try_get(1).map_err(|_| StoreError::Corrupt("a stored person record does not parse".into()))?;
            for a in p.areas() {
                keys.push(r.get(0));
                areas.push(a);
            }
        }
        tx.execute(
            "INSERT INTO person_areas (area, person_key) SELECT a, k FROM UNNEST($1::text[], $2::uuid[]) AS t(a, k)
             ON CONFLICT DO NOTHING",
            &[&areas, &keys],
        )
        .await?;
    }
    Ok(())
}

/// Replaces a person's `person_areas` rows.
async fn write_areas(
    tx: &deadpool_postgres::Transaction<'_>,
    key: Uuid,
    areas: &[String],
    replace: bool,
) -> Result<()> {
    if replace {
        let stmt = tx.prepare_cached("DELETE FROM person_areas WHERE person_key = $1").await?;
        tx.execute(&stmt, &[&key]).await?;
    }
    let stmt = tx
        .prepare_cached("INSERT INTO person_areas (area, person_key) SELECT a, $2 FROM UNNEST($1::text[]) AS t(a)")
        .await?;
    tx.execute(&stmt, &[&areas, &key]).await?;
    Ok(())
}

const OFFICER_SELECT: &str = "SELECT username, display_name, unit, roles, permissions, password_hash, totp_secret,
                                      totp_last_step, totp_pending, failed_logins, locked_until, active FROM officers";

fn officer_row(r: &Row) -> Result<Officer> {
    Ok(Officer {
        username: r.get(0),
        display_name: r.get(1),
        unit: crate::unit_from_text(r.get(2))?,
        roles: crate::roles_from_text(r.get(3))?,
        permissions: crate::permissions_from_text(r.get(4))?,
        password_hash: r.get(5),
        totp_secret: r.get(6),
        totp_last_step: r.get(7),
        totp_pending: r.get(8),
        failed_logins: r.get::<_, i32>(9) as u32,
        locked_until: r.get(10),
        active: r.get(11),
    })
}

const REQUEST_SELECT: &str = "SELECT id, person_key, base_version, guarded, proposed, requested_by, requested_unit,
                                     requested_at, reason, legal_basis, state, decided_by, decided_at, decision_note,
                                     result_version FROM change_requests";

fn request_row(r: &Row) -> Result<ChangeRequest> {
    let state: String = r.get(10);
    let Json(proposed): Json<crate::ProposedChange> =
        r.try_get(4).map_err(|_| StoreError::Corrupt("a stored change request does not parse".into()))?;
    Ok(ChangeRequest {
        id: r.get(0),
        person_key: r.get(1),
        base_version: r.get(2),
        guarded: crate::guarded_from_text(r.get(3))?,
        proposed,
        requested_by: r.get(5),
        requested_unit: r.get(6),
        requested_at: r.get(7),
        reason: r.get(8),
        legal_basis: r.get(9),
        state: RequestState::from_code(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("request state {state:?}")))?,
        decided_by: r.get(11),
        decided_at: r.get(12),
        decision_note: r.get(13),
        result_version: r.get(14),
    })
}

const BATCH_SELECT: &str =
    "SELECT id, unit, officer, file_sha256, started_at, finished_at, summary FROM import_batches";

fn batch_row(r: &Row) -> ImportBatch {
    ImportBatch {
        id: r.get(0),
        unit: r.get(1),
        officer: r.get(2),
        file_sha256: r.get(3),
        started_at: r.get(4),
        finished_at: r.get(5),
        summary: r.get(6),
    }
}

const PAIR_SELECT: &str = "SELECT id, batch_id, a_key, b_key, weight, probability, explanation, state, created_at,
                                  decided_by, decided_at, note, survivor FROM review_pairs";

fn pair_row(r: &Row) -> Result<ReviewPair> {
    let state: String = r.get(7);
    let Json(explanation): Json<serde_json::Value> =
        r.try_get(6).map_err(|_| StoreError::Corrupt("a stored review explanation does not parse".into()))?;
    Ok(ReviewPair {
        id: r.get(0),
        batch_id: r.get(1),
        a: r.get(2),
        b: r.get(3),
        weight: r.get(4),
        probability: r.get(5),
        explanation,
        state: ReviewState::from_code(&state).ok_or_else(|| StoreError::Corrupt(format!("review state {state:?}")))?,
        created_at: r.get(8),
        decided_by: r.get(9),
        decided_at: r.get(10),
        note: r.get(11),
        survivor: r.get(12),
    })
}

/// The PostgreSQL store.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

fn backend(e: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(e.to_string())
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) => StoreError::Backend(format!("{}: {}", db.code().code(), db.message())),
            None => backend(e),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        backend(e)
    }
}

fn is_unique_violation(e: &tokio_postgres::Error) -> bool {
    e.code() == Some(&SqlState::UNIQUE_VIOLATION)
}

const AUDIT_SELECT: &str = "SELECT seq, at, officer, role, unit, action, target, purpose, request_id, client, outcome,
                                   prev_hash, hash FROM audit_log";

fn to_hash(b: &[u8]) -> Result<audit::Hash> {
    b.try_into().map_err(|_| StoreError::Corrupt(format!("an audit hash has {} bytes, not 32", b.len())))
}

fn audit_row(r: &Row) -> Result<StoredEntry> {
    Ok(StoredEntry {
        seq: r.get(0),
        entry: AuditEntry {
            at: r.get(1),
            officer: r.get(2),
            role: r.get(3),
            unit: r.get(4),
            action: r.get(5),
            target: r.get(6),
            purpose: r.get(7),
            request_id: r.get(8),
            client: r.get(9),
            outcome: r.get(10),
        },
        prev_hash: to_hash(r.get::<_, &[u8]>(11))?,
        hash: to_hash(r.get::<_, &[u8]>(12))?,
    })
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339 formatting of a UTC time")
}

const RECORD_COLUMNS: &str = "key, version, created_at, updated_at, data";

fn to_record(row: &Row) -> Result<PersonRecord> {
    let Json(person): Json<Person> =
        row.try_get(4).map_err(|_| StoreError::Corrupt("a stored person record does not parse".into()))?;
    Ok(PersonRecord { key: row.get(0), version: row.get(1), created_at: row.get(2), updated_at: row.get(3), person })
}

impl PgStore {
    /// Connects a pool to `url`. With `schema`, every connection works in that schema
    /// (created when missing): tests use one schema each, operators may keep dancu apart.
    pub async fn connect(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::BadUrl(format!("{url}: {e}")))?;
        if let Some(s) = schema {
            if !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(StoreError::BadUrl(format!("schema name {s:?}")));
            }
            let (client, conn) = config.connect(NoTls).await?;
            let task = tokio::spawn(conn);
            client.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {s}")).await?;
            drop(client);
            let _ = task.await;
            config.options(format!("-c search_path={s}"));
        }
        let manager = Manager::from_config(config, NoTls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(32).build().map_err(backend)?;
        let store = PgStore { pool };
        store.ping().await?;
        Ok(store)
    }
}

/// Builds the indexes an import set aside ([`Store::defer_person_indexes`]), in one
/// transaction; how many.
async fn restore_indexes(client: &mut deadpool_postgres::Client) -> Result<usize> {
    let pending: bool = client.query_one("SELECT EXISTS (SELECT 1 FROM deferred_indexes)", &[]).await?.get(0);
    if !pending {
        return Ok(0);
    }
    let tx = client.transaction().await?;
    tx.execute("LOCK TABLE deferred_indexes IN EXCLUSIVE MODE", &[]).await?;
    // Sorting a large table's keys in memory rather than in temporary files.
    tx.batch_execute("SET LOCAL maintenance_work_mem = '256MB'").await?;
    let deferred = tx.query("SELECT name, definition FROM deferred_indexes ORDER BY name", &[]).await?;
    let mut built = 0;
    for row in &deferred {
        let (name, definition): (String, String) = (row.get(0), row.get(1));
        let exists: bool = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1)",
                &[&name],
            )
            .await?
            .get(0);
        if !exists {
            tx.batch_execute(&definition).await?;
            built += 1;
        }
    }
    tx.execute("DELETE FROM deferred_indexes", &[]).await?;
    tx.commit().await?;
    Ok(built)
}

/// Appends entries to the chain inside the caller's transaction; returns the last seq.
/// Only the chain's own table is written here; the query indexes follow in the background.
async fn append_audit(tx: &deadpool_postgres::Transaction<'_>, entries: &[AuditEntry]) -> Result<i64> {
    // One appender at a time across every server sharing the database: the chain is a sequence
    // (and commits in sequence order, which the indexer's high-water mark relies on).
    tx.execute("LOCK TABLE audit_log IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
    let head = tx.query_opt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[]).await?;
    let (last, mut prev) = match head {
        Some(r) => (r.get::<_, i64>(0), to_hash(r.get::<_, &[u8]>(1))?),
        None => (0, audit::GENESIS),
    };
    let n = entries.len();
    let mut hashes: Vec<audit::Hash> = Vec::with_capacity(n + 1);
    hashes.push(prev);
    for e in entries {
        prev = audit::entry_hash(&prev, e);
        hashes.push(prev);
    }
    let seq: Vec<i64> = (1..=n as i64).map(|i| last + i).collect();
    let text = |f: fn(&AuditEntry) -> &str| entries.iter().map(f).collect::<Vec<&str>>();
    let opt = |f: fn(&AuditEntry) -> Option<&str>| entries.iter().map(f).collect::<Vec<Option<&str>>>();
    let prev: Vec<&[u8]> = hashes[..n].iter().map(|h| &h[..]).collect();
    let hash: Vec<&[u8]> = hashes[1..].iter().map(|h| &h[..]).collect();
    tx.execute(
        "INSERT INTO audit_log (seq, at, officer, role, unit, action, target, purpose, request_id, client, outcome,
                                prev_hash, hash)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                              $8::text[], $9::text[], $10::text[], $11::text[], $12::bytea[], $13::bytea[])",
        &[
            &seq,
            &text(|e| &e.at),
            &text(|e| &e.officer),
            &text(|e| &e.role),
            &text(|e| &e.unit),
            &text(|e| &e.action),
            &opt(|e| e.target.as_deref()),
            &opt(|e| e.purpose.as_deref()),
            &opt(|e| e.request_id.as_deref()),
            &opt(|e| e.client.as_deref()),
            &text(|e| &e.outcome),
            &prev,
            &hash,
        ],
    )
    .await?;
    Ok(last + n as i64)
}

/// The `persons` row a reference names (the oldest, for a legacy number held twice).
async fn row_by_ref(client: &deadpool_postgres::Client, columns: &str, by: &PersonRef) -> Result<Option<Row>> {
    let (column, order) = match by {
        PersonRef::Key(_) => ("key", ""),
        PersonRef::PersonalId(_) => ("personal_id", ""),
        PersonRef::LegacyId(_) => ("legacy_id", " ORDER BY created_at LIMIT 1"),
    };
    let stmt = client.prepare_cached(&format!("SELECT {columns} FROM persons WHERE {column} = $1{order}")).await?;
    Ok(match by {
        PersonRef::Key(k) => client.query_opt(&stmt, &[k]).await?,
        PersonRef::PersonalId(id) => client.query_opt(&stmt, &[&id.as_str()]).await?,
        PersonRef::LegacyId(l) => client.query_opt(&stmt, &[&l.as_str()]).await?,
    })
}

async fn insert_new(
    tx: &deadpool_postgres::Transaction<'_>,
    key: Uuid,
    person: &Person,
    meta: &ChangeMeta,
    at: OffsetDateTime,
) -> Result<()> {
    let c = Columns::of(person);
    let stmt = tx
        .prepare_cached(
            "INSERT INTO persons (key, personal_id, legacy_id, status, name_key, birth_year, commune_key, province_2025,
                                  version, data, created_at, updated_at, merged_into, sex)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $10, $11, $12)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &key,
            &c.personal_id,
            &c.legacy_id,
            &c.status,
            &c.facts.name_key,
            &c.facts.birth_year,
            &c.facts.commune_key,
            &c.facts.province_2025,
            &Json(person),
            &at,
            &c.merged_into,
            &c.sex,
        ],
    )
    .await
    .map_err(|e| match person.personal_id {
        Some(id) if is_unique_violation(&e) => StoreError::IdTaken(id),
        _ => e.into(),
    })?;
    write_areas(tx, key, &c.areas, false).await?;
    insert_version(tx, key, 1, ChangeKind::Create, meta, at, person).await
}

async fn insert_version(
    tx: &deadpool_postgres::Transaction<'_>,
    key: Uuid,
    version: i64,
    kind: ChangeKind,
    meta: &ChangeMeta,
    at: OffsetDateTime,
    person: &Person,
) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO person_versions (key, version, change, actor, reason, legal_basis, approved_by, recorded_at, data)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &key,
            &version,
            &kind.code(),
            &meta.actor,
            &meta.reason,
            &meta.legal_basis,
            &meta.approved_by,
            &at,
            &Json(person),
        ],
    )
    .await?;
    Ok(())
}

/// Reserves a personal ID forever; false when it was issued before.
async fn reserve_id(
    tx: &deadpool_postgres::Transaction<'_>,
    id: PersonalId,
    key: Uuid,
    at: OffsetDateTime,
) -> Result<bool> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO issued_ids (personal_id, key, issued_at) VALUES ($1, $2, $3) ON CONFLICT (personal_id) DO NOTHING",
        )
        .await?;
    Ok(tx.execute(&stmt, &[&id.as_str(), &key, &at]).await? == 1)
}

/// Replaces a person's state at `expected_version` inside the caller's transaction.
async fn update_in_tx(
    tx: &deadpool_postgres::Transaction<'_>,
    key: Uuid,
    expected_version: i64,
    person: &Person,
    kind: ChangeKind,
    meta: &ChangeMeta,
) -> Result<PersonRecord> {
    let stmt =
        tx.prepare_cached("SELECT version, personal_id, created_at FROM persons WHERE key = $1 FOR UPDATE").await?;
    let Some(row) = tx.query_opt(&stmt, &[&key]).await? else {
        return Err(StoreError::NotFound);
    };
    let version: i64 = row.get(0);
    let current_id: Option<String> = row.get(1);
    let created_at: OffsetDateTime = row.get(2);
    if version != expected_version {
        return Err(StoreError::Conflict { expected: expected_version, actual: version });
    }
    let at = now();
    if let Some(id) = person.personal_id.filter(|id| current_id.as_deref() != Some(id.as_str()))
        && !reserve_id(tx, id, key, at).await?
    {
        return Err(StoreError::IdTaken(id));
    }
    let c = Columns::of(person);
    let new_version = version + 1;
    let stmt = tx
        .prepare_cached(
            "UPDATE persons SET personal_id = $2, legacy_id = $3, status = $4, name_key = $5, birth_year = $6,
                        commune_key = $7, province_2025 = $8, version = $9, data = $10, updated_at = $11,
                        merged_into = $12, sex = $13
                 WHERE key = $1",
        )
        .await?;
    let args: [&(dyn ToSql + Sync); 13] = [
        &key,
        &c.personal_id,
        &c.legacy_id,
        &c.status,
        &c.facts.name_key,
        &c.facts.birth_year,
        &c.facts.commune_key,
        &c.facts.province_2025,
        &new_version,
        &Json(person),
        &at,
        &c.merged_into,
        &c.sex,
    ];
    tx.execute(&stmt, &args).await.map_err(|e| match person.personal_id {
        Some(id) if is_unique_violation(&e) => StoreError::IdTaken(id),
        _ => e.into(),
    })?;
    insert_version(tx, key, new_version, kind, meta, at, person).await?;
    if let Some(entry) = &meta.audit {
        append_audit(tx, std::slice::from_ref(entry)).await?;
    }
    write_areas(tx, key, &c.areas, true).await?;
    Ok(PersonRecord { key, version: new_version, created_at, updated_at: at, person: person.clone() })
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn local_files(&self) -> Vec<std::path::PathBuf> {
        Vec::new()
    }

    async fn migrate(&self) -> Result<usize> {
        let mut client = self.pool.get().await?;
        client
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (
                     version bigint PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL)",
            )
            .await?;
        let mut applied = 0;
        for (version, name, sql) in MIGRATIONS {
            let tx = client.transaction().await?;
            // Serialize concurrent migrators (several servers starting at once).
            tx.execute("LOCK TABLE schema_migrations IN EXCLUSIVE MODE", &[]).await?;
            let done = tx.query_opt("SELECT version FROM schema_migrations WHERE version = $1", &[version]).await?;
            if done.is_none() {
                tx.batch_execute(sql).await?;
                if *version == 4 {
                    backfill_areas(&tx).await?;
                }
                tx.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                    &[version, name, &now()],
                )
                .await?;
                applied += 1;
            }
            tx.commit().await?;
        }
        let rebuilt = restore_indexes(&mut client).await?;
        if rebuilt > 0 {
            tracing::info!(indexes = rebuilt, "rebuilt the search indexes an interrupted import set aside");
        }
        Ok(applied)
    }

    async fn insert_person(&self, person: &Person, meta: &ChangeMeta) -> Result<PersonRecord> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let key = crate::new_key();
        let at = now();
        insert_new(&tx, key, person, meta, at).await?;
        if let Some(mut entry) = meta.audit.clone() {
            entry.target.get_or_insert_with(|| key.to_string());
            append_audit(&tx, &[entry]).await?;
        }
        if let Some(id) = person.personal_id
            && !reserve_id(&tx, id, key, at).await?
        {
            return Err(StoreError::IdTaken(id));
        }
        tx.commit().await?;
        Ok(PersonRecord { key, version: 1, created_at: at, updated_at: at, person: person.clone() })
    }

    async fn get_person(&self, by: &PersonRef) -> Result<Option<PersonRecord>> {
        let client = self.pool.get().await?;
        row_by_ref(&client, RECORD_COLUMNS, by).await?.as_ref().map(to_record).transpose()
    }

    async fn get_person_raw(&self, by: &PersonRef) -> Result<Option<RawPersonRecord>> {
        let client = self.pool.get().await?;
        let row = row_by_ref(&client, "key, version, created_at, updated_at, data::text", by).await?;
        let Some(row) = row else { return Ok(None) };
        let data: String = row.get(4);
        Ok(Some(RawPersonRecord {
            key: row.get(0),
            version: row.get(1),
            created_at: rfc3339(row.get(2)),
            updated_at: rfc3339(row.get(3)),
            person: serde_json::value::RawValue::from_string(data)
                .map_err(|_| StoreError::Corrupt("a stored person record is not JSON".into()))?,
        }))
    }

    async fn update_person(
        &self,
        key: Uuid,
        expected_version: i64,
        person: &Person,
        kind: ChangeKind,
        meta: &ChangeMeta,
    ) -> Result<PersonRecord> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let rec = update_in_tx(&tx, key, expected_version, person, kind, meta).await?;
        tx.commit().await?;
        Ok(rec)
    }

    async fn history(&self, key: Uuid) -> Result<Vec<PersonVersion>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT version, change, actor, reason, legal_basis, recorded_at, data, approved_by
                 FROM person_versions WHERE key = $1 ORDER BY version",
            )
            .await?;
        let mut out = Vec::new();
        for row in client.query(&stmt, &[&key]).await? {
            let change: String = row.get(1);
            let Json(person): Json<Person> =
                row.try_get(6).map_err(|_| StoreError::Corrupt("a stored person record does not parse".into()))?;
            out.push(PersonVersion {
                version: row.get(0),
                change: ChangeKind::from_code(&change)
                    .ok_or_else(|| StoreError::Corrupt(format!("change kind {change:?}")))?,
                recorded_at: row.get(5),
                meta: ChangeMeta {
                    approved_by: row.get(7),
                    ..ChangeMeta::new(row.get::<_, String>(2), row.get::<_, String>(3), row.get(4))
                },
                person,
            });
        }
        Ok(out)
    }

    async fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        let client = self.pool.get().await?;
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM persons WHERE merged_into IS NULL");
        let upper = q.name_prefix.as_deref().map(dancu_core::text::prefix_upper_bound);
        let birth_year = q.birth_year;
        let status = q.status.map(|s| s.code());
        let limit = i64::from(q.limit) + 1;
        let offset = i64::from(q.offset);
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let (Some(p), Some(u)) = (&q.name_prefix, &upper) {
            args.push(p);
            args.push(u);
            sql += &format!(" AND name_key >= ${} AND name_key < ${}", args.len() - 1, args.len());
        }
        if let Some(y) = &birth_year {
            args.push(y);
            sql += &format!(" AND birth_year = ${}", args.len());
        }
        if let Some(c) = &q.commune_key {
            args.push(c);
            sql += &format!(" AND commune_key = ${}", args.len());
        }
        if let Some(p) = &q.province_2025 {
            args.push(p);
            sql += &format!(" AND province_2025 = ${}", args.len());
        }
        if let Some(s) = &status {
            args.push(s);
            sql += &format!(" AND status = ${}", args.len());
        }
        if let Some(a) = &q.area {
            args.push(a);
            sql += &format!(" AND key IN (SELECT person_key FROM person_areas WHERE area = ${})", args.len());
        }
        args.push(&limit);
        args.push(&offset);
        sql += &format!(" ORDER BY name_key, key LIMIT ${} OFFSET ${}", args.len() - 1, args.len());
        let stmt = client.prepare_cached(&sql).await?;
        let rows = client.query(&stmt, &args).await?;
        let mut items = rows.iter().map(to_record).collect::<Result<Vec<_>>>()?;
        let has_more = items.len() > q.limit as usize;
        items.truncate(q.limit as usize);
        Ok(SearchPage { items, has_more })
    }

    async fn count_persons(&self) -> Result<u64> {
        let client = self.pool.get().await?;
        let n: i64 = client.query_one("SELECT count(*) FROM persons", &[]).await?.get(0);
        Ok(n as u64)
    }

    async fn population(&self, area: Option<&str>) -> Result<Vec<PopulationCell>> {
        let client = self.pool.get().await?;
        let mut sql = "SELECT commune_key, province_2025, birth_year, sex, count(*) \
                       FROM persons WHERE merged_into IS NULL AND status IN ('pending', 'active')"
            .to_string();
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(a) = &area {
            args.push(a);
            sql += " AND key IN (SELECT person_key FROM person_areas WHERE area = $1)";
        }
        sql += " GROUP BY 1, 2, 3, 4";
        let rows = client.query(&sql, &args).await?;
        Ok(rows
            .iter()
            .map(|r| PopulationCell {
                commune_key: r.get(0),
                province_2025: r.get(1),
                birth_year: r.get(2),
                sex: r.get(3),
                count: r.get::<_, i64>(4) as u64,
            })
            .collect())
    }

    async fn insert_batch(&self, people: &[Person], meta: &ChangeMeta) -> Result<Vec<usize>> {
        // Three set-based statements per batch (UNNEST of arrays) instead of three per person.
        let mut ids: Vec<Option<String>> = Vec::with_capacity(people.len());
        for (i, p) in people.iter().enumerate() {
            ids.push(crate::batch_id(i, p)?.map(|id| id.to_string()));
        }
        let present: Vec<&str> = ids.iter().flatten().map(String::as_str).collect();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let at = now();
        let issued: std::collections::HashSet<String> = tx
            .query("SELECT personal_id FROM issued_ids WHERE personal_id = ANY($1)", &[&present])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let mut taken = Vec::new();
        let mut seen = std::collections::HashSet::with_capacity(people.len());
        let (mut keys, mut pids, mut legacy, mut status, mut names, mut years, mut communes, mut provinces, mut data) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let mut sexes = Vec::<&str>::new();
        let (mut area_keys, mut areas) = (Vec::<Uuid>::new(), Vec::<String>::new());
        for (i, p) in people.iter().enumerate() {
            // Issued before, or twice in this batch: the caller redraws it.
            if let Some(id) = &ids[i]
                && (issued.contains(id) || !seen.insert(id.as_str()))
            {
                taken.push(i);
                continue;
            }
            let c = Columns::of(p);
            let key = crate::new_key();
            for a in c.areas {
                area_keys.push(key);
                areas.push(a);
            }
            keys.push(key);
            pids.push(ids[i].clone());
            legacy.push(c.legacy_id);
            status.push(c.status);
            names.push(c.facts.name_key);
            years.push(c.facts.birth_year);
            communes.push(c.facts.commune_key);
            provinces.push(c.facts.province_2025);
            sexes.push(c.sex);
            data.push(Json(p));
        }
        tx.execute(
            "INSERT INTO persons (key, personal_id, legacy_id, status, name_key, birth_year, commune_key, province_2025,
                                  version, data, created_at, updated_at, sex)
             SELECT k, pid, l, s, n, y, c, p, 1, d, $10, $10, x
             FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::int[], $7::text[], $8::text[], $9::jsonb[],
                         $11::text[])
                  AS t(k, pid, l, s, n, y, c, p, d, x)",
            &[&keys, &pids, &legacy, &status, &names, &years, &communes, &provinces, &data, &at, &sexes],
        )
        .await?;
        tx.execute(
            "INSERT INTO person_versions (key, version, change, actor, reason, legal_basis, recorded_at, data)
             SELECT k, 1, 'create', $3, $4, $5, $6, d FROM UNNEST($1::uuid[], $2::jsonb[]) AS t(k, d)",
            &[&keys, &data, &meta.actor, &meta.reason, &meta.legal_basis, &at],
        )
        .await?;
        tx.execute(
            "INSERT INTO issued_ids (personal_id, key, issued_at)
             SELECT pid, k, $3 FROM UNNEST($1::text[], $2::uuid[]) AS t(pid, k) WHERE pid IS NOT NULL",
            &[&pids, &keys, &at],
        )
        .await?;
        tx.execute(
            "INSERT INTO person_areas (area, person_key) SELECT a, k FROM UNNEST($1::text[], $2::uuid[]) AS t(a, k)",
            &[&areas, &area_keys],
        )
        .await?;
        tx.commit().await?;
        Ok(taken)
    }

    async fn audit_append(&self, entries: Vec<AuditEntry>) -> Result<i64> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let last = append_audit(&tx, &entries).await?;
        tx.commit().await?;
        Ok(last)
    }

    async fn audit_read(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredEntry>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&format!("{AUDIT_SELECT} WHERE seq > $1 ORDER BY seq LIMIT $2")).await?;
        client.query(&stmt, &[&after_seq, &i64::from(limit)]).await?.iter().map(audit_row).collect()
    }

    async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<StoredEntry>> {
        let client = self.pool.get().await?;
        // One statement, one snapshot: the indexes up to the mark, the chain after it.
        let limit = i64::from(q.limit);
        let offset = i64::from(q.offset);
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        let mut numbers = [None; 4];
        for (i, v) in [&q.officer, &q.target, &q.from, &q.to].into_iter().enumerate() {
            if let Some(v) = v {
                args.push(v);
                numbers[i] = Some(args.len());
            }
        }
        let [officer, target, from, to] = numbers;
        let mut filters = String::new();
        for (col, op, n) in [("officer", "=", officer), ("target", "=", target), ("at", ">=", from), ("at", "<", to)] {
            if let Some(n) = n {
                filters += &format!(" AND {col} {op} ${n}");
            }
        }
        let indexed = match (target, officer, from, to) {
            (Some(t), ..) => Some(format!(
                "SELECT a.seq FROM generate_series(0, (SELECT mark FROM h) >> {bits}) AS s(n)
                 JOIN audit_by_target a ON a.segment = s.n AND a.target = ${t}
                 WHERE a.seq <= (SELECT mark FROM h)",
                bits = crate::AUDIT_SEGMENT_BITS
            )),
            (None, Some(o), ..) => {
                Some(format!("SELECT seq FROM audit_by_officer WHERE officer = ${o} AND seq <= (SELECT mark FROM h)"))
            }
            (None, None, None, None) => None,
            (None, None, from, to) => {
                let mut sql = String::from("SELECT seq FROM audit_by_time WHERE seq <= (SELECT mark FROM h)");
                if let Some(n) = from {
                    sql += &format!(" AND at >= ${n}");
                }
                if let Some(n) = to {
                    sql += &format!(" AND at < ${n}");
                }
                Some(sql)
            }
        };
        args.push(&limit);
        args.push(&offset);
        let page = format!("ORDER BY seq DESC LIMIT ${} OFFSET ${}", args.len() - 1, args.len());
        let sql = match indexed {
            None => format!("{AUDIT_SELECT} {page}"),
            Some(indexed) => format!(
                "WITH h AS (SELECT COALESCE((SELECT indexed_seq FROM audit_index_state WHERE id = 1), 0) AS mark)
                 ({AUDIT_SELECT} WHERE seq > (SELECT mark FROM h){filters})
                 UNION ALL
                 ({AUDIT_SELECT} WHERE seq IN ({indexed}){filters})
                 {page}"
            ),
        };
        let stmt = client.prepare_cached(&sql).await?;
        client.query(&stmt, &args).await?.iter().map(audit_row).collect()
    }

    async fn audit_index(&self, max: u32) -> Result<u64> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // Derived data, rebuilt from the chain after a crash: no wait for the disk.
        tx.batch_execute("SET LOCAL synchronous_commit = off").await?;
        // One indexer at a time (appenders are not held up).
        let mark: i64 =
            tx.query_one("SELECT indexed_seq FROM audit_index_state WHERE id = 1 FOR UPDATE", &[]).await?.get(0);
        let rows = tx
            .query(
                "SELECT seq, officer, target, at FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&mark, &i64::from(max)],
            )
            .await?;
        let Some(last) = rows.last().map(|r| r.get::<_, i64>(0)) else { return Ok(0) };
        let rows: Vec<(i64, &str, Option<&str>, &str)> =
            rows.iter().map(|r| (r.get(0), r.get(1), r.get(2), r.get(3))).collect();
        let mut by_target: Vec<(i64, &str, i64)> = rows
            .iter()
            .filter_map(|&(seq, _, target, _)| target.map(|t| (seq >> crate::AUDIT_SEGMENT_BITS, t, seq)))
            .collect();
        by_target.sort_unstable();
        let mut by_officer: Vec<(&str, i64)> = rows.iter().map(|&(seq, officer, _, _)| (officer, seq)).collect();
        by_officer.sort_unstable();
        let mut by_time: Vec<(&str, i64)> = rows.iter().map(|&(seq, _, _, at)| (at, seq)).collect();
        by_time.sort_unstable();
        let segments: Vec<i64> = by_target.iter().map(|t| t.0).collect();
        let targets: Vec<&str> = by_target.iter().map(|t| t.1).collect();
        let target_seqs: Vec<i64> = by_target.iter().map(|t| t.2).collect();
        tx.execute(
            "INSERT INTO audit_by_target (segment, target, seq)
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[]) ON CONFLICT DO NOTHING",
            &[&segments, &targets, &target_seqs],
        )
        .await?;
        for (table, key, pairs) in [("audit_by_officer", "officer", &by_officer), ("audit_by_time", "at", &by_time)] {
            let keys: Vec<&str> = pairs.iter().map(|p| p.0).collect();
            let seqs: Vec<i64> = pairs.iter().map(|p| p.1).collect();
            tx.execute(
                &format!(
                    "INSERT INTO {table} ({key}, seq) SELECT * FROM UNNEST($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING"
                ),
                &[&keys, &seqs],
            )
            .await?;
        }
        tx.execute("UPDATE audit_index_state SET indexed_seq = $1 WHERE id = 1", &[&last]).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    async fn audit_indexed_seq(&self) -> Result<i64> {
        let client = self.pool.get().await?;
        Ok(client.query_one("SELECT indexed_seq FROM audit_index_state WHERE id = 1", &[]).await?.get(0))
    }

    async fn audit_head(&self) -> Result<Option<(i64, audit::Hash)>> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1", &[]).await?;
        row.map(|r| Ok((r.get::<_, i64>(0), to_hash(r.get::<_, &[u8]>(1))?))).transpose()
    }

    async fn audit_add_checkpoint(&self, c: &Checkpoint) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO audit_checkpoints (seq, hash, signed_at, key_id, signature) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (seq) DO NOTHING",
                &[&c.seq, &&c.hash[..], &c.signed_at, &c.key_id, &c.signature],
            )
            .await?;
        Ok(())
    }

    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>> {
        let client = self.pool.get().await?;
        let rows = client
            .query("SELECT seq, hash, signed_at, key_id, signature FROM audit_checkpoints ORDER BY seq", &[])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    seq: r.get(0),
                    hash: to_hash(r.get::<_, &[u8]>(1))?,
                    signed_at: r.get(2),
                    key_id: r.get(3),
                    signature: r.get(4),
                })
            })
            .collect()
    }

    async fn officer_insert(&self, o: &Officer) -> Result<()> {
        let client = self.pool.get().await?;
        let failed = o.failed_logins as i32;
        let n = client
            .execute(
                "INSERT INTO officers (username, display_name, unit, roles, permissions, password_hash, totp_secret,
                                       totp_last_step, totp_pending, failed_logins, locked_until, active, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) ON CONFLICT (username) DO NOTHING",
                &[
                    &o.username,
                    &o.display_name,
                    &o.unit.code_str(),
                    &crate::roles_to_text(&o.roles),
                    &crate::permissions_to_text(&o.permissions),
                    &o.password_hash,
                    &o.totp_secret,
                    &o.totp_last_step,
                    &o.totp_pending,
                    &failed,
                    &o.locked_until,
                    &o.active,
                    &now(),
                ],
            )
            .await?;
        if n == 0 { Err(StoreError::Duplicate(format!("officer {:?}", o.username))) } else { Ok(()) }
    }

    async fn officer_get(&self, username: &str) -> Result<Option<Officer>> {
        let client = self.pool.get().await?;
        let row = client.query_opt(&format!("{OFFICER_SELECT} WHERE username = $1"), &[&username]).await?;
        row.as_ref().map(officer_row).transpose()
    }

    async fn officer_update(&self, o: &Officer) -> Result<()> {
        let client = self.pool.get().await?;
        let failed = o.failed_logins as i32;
        let n = client
            .execute(
                "UPDATE officers SET display_name = $2, unit = $3, roles = $4, permissions = $5, password_hash = $6,
                        totp_secret = $7, totp_last_step = $8, totp_pending = $9, failed_logins = $10,
                        locked_until = $11, active = $12
                 WHERE username = $1",
                &[
                    &o.username,
                    &o.display_name,
                    &o.unit.code_str(),
                    &crate::roles_to_text(&o.roles),
                    &crate::permissions_to_text(&o.permissions),
                    &o.password_hash,
                    &o.totp_secret,
                    &o.totp_last_step,
                    &o.totp_pending,
                    &failed,
                    &o.locked_until,
                    &o.active,
                ],
            )
            .await?;
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn officer_list(&self) -> Result<Vec<Officer>> {
        let client = self.pool.get().await?;
        client.query(&format!("{OFFICER_SELECT} ORDER BY username"), &[]).await?.iter().map(officer_row).collect()
    }

    async fn session_insert(&self, x: &Session) -> Result<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO sessions (token_hash, username, kind, stage, created_at, last_seen_at, expires_at, revoked)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &x.token_hash,
                    &x.username,
                    &x.kind.code(),
                    &x.stage.code(),
                    &x.created_at,
                    &x.last_seen_at,
                    &x.expires_at,
                    &x.revoked,
                ],
            )
            .await?;
        Ok(())
    }

    async fn session_get(&self, token_hash: &str) -> Result<Option<Session>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT token_hash, username, kind, stage, created_at, last_seen_at, expires_at, revoked
                 FROM sessions WHERE token_hash = $1",
            )
            .await?;
        let Some(r) = client.query_opt(&stmt, &[&token_hash]).await? else { return Ok(None) };
        let kind: String = r.get(2);
        let stage: String = r.get(3);
        Ok(Some(Session {
            token_hash: r.get(0),
            username: r.get(1),
            kind: SessionKind::from_code(&kind).ok_or_else(|| StoreError::Corrupt(format!("session kind {kind:?}")))?,
            stage: SessionStage::from_code(&stage)
                .ok_or_else(|| StoreError::Corrupt(format!("session stage {stage:?}")))?,
            created_at: r.get(4),
            last_seen_at: r.get(5),
            expires_at: r.get(6),
            revoked: r.get(7),
        }))
    }

    async fn session_touch(&self, token_hash: &str, at: OffsetDateTime) -> Result<()> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached("UPDATE sessions SET last_seen_at = $2 WHERE token_hash = $1 AND last_seen_at < $2")
            .await?;
        client.execute(&stmt, &[&token_hash, &at]).await?;
        Ok(())
    }

    async fn session_revoke(&self, token_hash: &str) -> Result<bool> {
        let client = self.pool.get().await?;
        Ok(client
            .execute("UPDATE sessions SET revoked = true WHERE token_hash = $1 AND NOT revoked", &[&token_hash])
            .await?
            > 0)
    }

    async fn session_revoke_all(&self, username: &str) -> Result<u64> {
        let client = self.pool.get().await?;
        Ok(client
            .execute("UPDATE sessions SET revoked = true WHERE username = $1 AND NOT revoked", &[&username])
            .await?)
    }

    async fn change_request_insert(&self, r: &ChangeRequest, audit: Option<&AuditEntry>) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        insert_change_request(&tx, r).await?;
        if let Some(e) = audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn change_request_get(&self, id: Uuid) -> Result<Option<ChangeRequest>> {
        let client = self.pool.get().await?;
        client
            .query_opt(&format!("{REQUEST_SELECT} WHERE id = $1"), &[&id])
            .await?
            .as_ref()
            .map(request_row)
            .transpose()
    }

    async fn change_requests(&self, q: &RequestQuery) -> Result<Vec<ChangeRequest>> {
        let client = self.pool.get().await?;
        let mut sql = format!("{REQUEST_SELECT} WHERE true");
        let state = q.state.map(|s| s.code());
        let limit = i64::from(q.limit);
        let offset = i64::from(q.offset);
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(s) = &state {
            args.push(s);
            sql += &format!(" AND state = ${}", args.len());
        }
        if let Some(k) = &q.person_key {
            args.push(k);
            sql += &format!(" AND person_key = ${}", args.len());
        }
        if let Some(a) = &q.area {
            args.push(a);
            sql += &format!(" AND person_key IN (SELECT person_key FROM person_areas WHERE area = ${})", args.len());
        }
        args.push(&limit);
        args.push(&offset);
        sql += &format!(" ORDER BY requested_at DESC, id LIMIT ${} OFFSET ${}", args.len() - 1, args.len());
        client.query(&sql, &args).await?.iter().map(request_row).collect()
    }

    async fn change_request_decide(
        &self,
        id: Uuid,
        decision: &Decision,
        apply: Option<&ApprovedChange>,
    ) -> Result<ChangeRequest> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx.query_opt(&format!("{REQUEST_SELECT} WHERE id = $1 FOR UPDATE"), &[&id]).await?;
        let mut req = row.as_ref().map(request_row).transpose()?.ok_or(StoreError::NotFound)?;
        if req.state != RequestState::Pending {
            return Err(StoreError::State(format!("the request is already {}", req.state.code())));
        }
        if let Some(a) = apply {
            let rec = update_in_tx(&tx, req.person_key, req.base_version, &a.person, a.kind, &a.meta).await?;
            req.result_version = Some(rec.version);
        }
        let at = now();
        req.state = decision.state;
        req.decided_by = Some(decision.by.clone());
        req.decided_at = Some(at);
        req.decision_note = decision.note.clone();
        tx.execute(
            "UPDATE change_requests SET state = $2, decided_by = $3, decided_at = $4, decision_note = $5,
                    result_version = $6 WHERE id = $1",
            &[&id, &req.state.code(), &req.decided_by, &at, &req.decision_note, &req.result_version],
        )
        .await?;
        if let Some(e) = &decision.audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(req)
    }

    async fn import_begin(&self, batch: &ImportBatch, audit: &AuditEntry) -> Result<ImportBatch> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("LOCK TABLE import_batches IN SHARE ROW EXCLUSIVE MODE", &[]).await?;
        if let Some(row) = tx.query_opt(&format!("{BATCH_SELECT} WHERE id = $1"), &[&batch.id]).await? {
            return Ok(batch_row(&row));
        }
        tx.execute(
            "INSERT INTO import_batches (id, unit, officer, file_sha256, started_at) VALUES ($1, $2, $3, $4, $5)",
            &[&batch.id, &batch.unit, &batch.officer, &batch.file_sha256, &batch.started_at],
        )
        .await?;
        append_audit(&tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(batch.clone())
    }

    async fn import_batch_get(&self, batch_id: &str) -> Result<Option<ImportBatch>> {
        let client = self.pool.get().await?;
        Ok(client.query_opt(&format!("{BATCH_SELECT} WHERE id = $1"), &[&batch_id]).await?.map(|r| batch_row(&r)))
    }

    async fn import_batches(&self, limit: u32) -> Result<Vec<ImportBatch>> {
        let client = self.pool.get().await?;
        let rows =
            client.query(&format!("{BATCH_SELECT} ORDER BY started_at DESC, id LIMIT $1"), &[&(limit as i64)]).await?;
        Ok(rows.iter().map(batch_row).collect())
    }

    async fn import_rows(&self, batch_id: &str) -> Result<Vec<(u64, Uuid)>> {
        let client = self.pool.get().await?;
        let rows = client
            .query("SELECT line, person_key FROM import_rows WHERE batch_id = $1 ORDER BY line", &[&batch_id])
            .await?;
        Ok(rows.iter().map(|r| (r.get::<_, i64>(0) as u64, r.get(1))).collect())
    }

    async fn import_chunk(&self, batch_id: &str, rows: &[ImportedRow], meta: &ChangeMeta) -> Result<()> {
        // Set-based, as `insert_batch`: a handful of statements per chunk.
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let at = now();
        let (mut keys, mut pids, mut legacy, mut status, mut names, mut years, mut communes, mut provinces, mut data) =
            (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut merged, mut lines) = (Vec::<Option<String>>::new(), Vec::<i64>::new());
        let mut sexes = Vec::<&str>::new();
        let (mut area_keys, mut areas) = (Vec::<Uuid>::new(), Vec::<String>::new());
        for r in rows {
            let c = Columns::of(&r.person);
            for a in c.areas {
                area_keys.push(r.key);
                areas.push(a);
            }
            keys.push(r.key);
            pids.push(c.personal_id);
            legacy.push(c.legacy_id);
            status.push(c.status);
            names.push(c.facts.name_key);
            years.push(c.facts.birth_year);
            communes.push(c.facts.commune_key);
            provinces.push(c.facts.province_2025);
            sexes.push(c.sex);
            // Serialized once, for both the record and its first version.
            data.push(serde_json::value::to_raw_value(&r.person).map_err(|e| StoreError::Backend(e.to_string()))?);
            merged.push(c.merged_into);
            lines.push(r.line as i64);
        }
        let mut present: Vec<&str> = pids.iter().flatten().map(String::as_str).collect();
        present.sort_unstable();
        // One number twice in the chunk: named, as a number issued before is.
        if let Some(w) = present.windows(2).find(|w| w[0] == w[1]) {
            return Err(PersonalId::parse(w[0])
                .map(StoreError::IdTaken)
                .unwrap_or_else(|_| StoreError::Corrupt("a personal ID of the chunk is malformed".into())));
        }
        let taken =
            tx.query_opt("SELECT personal_id FROM issued_ids WHERE personal_id = ANY($1) LIMIT 1", &[&present]).await?;
        if let Some(row) = taken {
            let id: String = row.get(0);
            return Err(PersonalId::parse(&id)
                .map(StoreError::IdTaken)
                .unwrap_or_else(|_| StoreError::Corrupt("a stored personal ID is malformed".into())));
        }
        // The two big tables by binary COPY (the records and their first version), the rest set-based.
        let sink = tx
            .copy_in(
                "COPY persons (key, personal_id, legacy_id, status, name_key, birth_year, commune_key, province_2025,
                               version, data, created_at, updated_at, merged_into, sex) FROM STDIN BINARY",
            )
            .await?;
        let types = [
            Type::UUID,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::INT8,
            Type::JSONB,
            Type::TIMESTAMPTZ,
            Type::TIMESTAMPTZ,
            Type::TEXT,
            Type::TEXT,
        ];
        let taken_meanwhile = |e: tokio_postgres::Error| {
            if is_unique_violation(&e) {
                StoreError::Backend("a personal ID of the chunk was issued meanwhile; retry".into())
            } else {
                e.into()
            }
        };
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for i in 0..keys.len() {
            let row: [&(dyn ToSql + Sync); 14] = [
                &keys[i],
                &pids[i],
                &legacy[i],
                &status[i],
                &names[i],
                &years[i],
                &communes[i],
                &provinces[i],
                &1i64,
                &Json(&*data[i]),
                &at,
                &at,
                &merged[i],
                &sexes[i],
            ];
            writer.as_mut().write(&row).await.map_err(taken_meanwhile)?;
        }
        writer.finish().await.map_err(taken_meanwhile)?;
        let sink = tx
            .copy_in(
                "COPY person_versions (key, version, change, actor, reason, legal_basis, recorded_at, data)
                 FROM STDIN BINARY",
            )
            .await?;
        let types =
            [Type::UUID, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::TIMESTAMPTZ, Type::JSONB];
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &types));
        for i in 0..keys.len() {
            let row: [&(dyn ToSql + Sync); 8] =
                [&keys[i], &1i64, &"create", &meta.actor, &meta.reason, &meta.legal_basis, &at, &Json(&*data[i])];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        // The other three tables by binary COPY too; the numbers in their order (neighbouring
        // index pages).
        let mut issued: Vec<(&str, Uuid)> =
            pids.iter().zip(&keys).filter_map(|(p, k)| Some((p.as_deref()?, *k))).collect();
        issued.sort_unstable();
        let sink = tx.copy_in("COPY issued_ids (personal_id, key, issued_at) FROM STDIN BINARY").await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::UUID, Type::TIMESTAMPTZ]));
        for (pid, key) in &issued {
            let row: [&(dyn ToSql + Sync); 3] = [pid, key, &at];
            writer.as_mut().write(&row).await.map_err(taken_meanwhile)?;
        }
        writer.finish().await.map_err(taken_meanwhile)?;
        let sink = tx.copy_in("COPY person_areas (area, person_key) FROM STDIN BINARY").await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::UUID]));
        for (area, key) in areas.iter().zip(&area_keys) {
            let row: [&(dyn ToSql + Sync); 2] = [area, key];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        let sink = tx.copy_in("COPY import_rows (batch_id, line, person_key) FROM STDIN BINARY").await?;
        let mut writer = std::pin::pin!(BinaryCopyInWriter::new(sink, &[Type::TEXT, Type::INT8, Type::UUID]));
        for (line, key) in lines.iter().zip(&keys) {
            let row: [&(dyn ToSql + Sync); 3] = [&batch_id, line, key];
            writer.as_mut().write(&row).await?;
        }
        writer.finish().await?;
        tx.commit().await?;
        Ok(())
    }

    async fn defer_person_indexes(&self, new_people: u64, always: bool) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // One importer or restorer at a time.
        tx.execute("LOCK TABLE deferred_indexes IN EXCLUSIVE MODE", &[]).await?;
        if !always {
            let stored: i64 = tx.query_one("SELECT count(*) FROM persons", &[]).await?.get(0);
            if !crate::index_deferral_pays(new_people, stored.max(0) as u64) {
                return Ok(false);
            }
        }
        for name in crate::DEFERRABLE_PERSON_INDEXES {
            let row = tx
                .query_opt(
                    "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = $1",
                    &[name],
                )
                .await?;
            let Some(row) = row else { continue };
            let definition: String = row.get(0);
            tx.execute(
                "INSERT INTO deferred_indexes (name, definition) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[name, &definition],
            )
            .await?;
            tx.batch_execute(&format!("DROP INDEX \"{name}\"")).await?;
        }
        let deferred: bool = tx.query_one("SELECT EXISTS (SELECT 1 FROM deferred_indexes)", &[]).await?.get(0);
        tx.commit().await?;
        Ok(deferred)
    }

    async fn restore_person_indexes(&self) -> Result<usize> {
        let mut client = self.pool.get().await?;
        restore_indexes(&mut client).await
    }

    async fn ids_issued(&self, ids: &[PersonalId]) -> Result<Vec<PersonalId>> {
        let client = self.pool.get().await?;
        let wanted: Vec<&str> = ids.iter().map(|i| i.as_str()).collect();
        let rows = client.query("SELECT personal_id FROM issued_ids WHERE personal_id = ANY($1)", &[&wanted]).await?;
        let found: std::collections::HashSet<String> = rows.iter().map(|r| r.get(0)).collect();
        Ok(ids.iter().copied().filter(|i| found.contains(i.as_str())).collect())
    }

    async fn link_candidates(&self, keys: &[CandidateKey]) -> Result<Vec<PersonRecord>> {
        let client = self.pool.get().await?;
        let (mut names, mut years, mut legacy) = (Vec::<&str>::new(), Vec::<i32>::new(), Vec::<&str>::new());
        for k in keys {
            match k {
                CandidateKey::NameYear(n, y) => {
                    names.push(n);
                    years.push(*y);
                }
                CandidateKey::LegacyId(l) => legacy.push(l),
            }
        }
        let rows = client
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM persons WHERE merged_into IS NULL AND key IN (
                         SELECT p.key FROM persons p JOIN UNNEST($1::text[], $2::int[]) AS t(n, y)
                             ON p.name_key = t.n AND p.birth_year = t.y
                         UNION
                         SELECT p.key FROM persons p WHERE p.legacy_id = ANY($3))"
                ),
                &[&names, &years, &legacy],
            )
            .await?;
        rows.iter().map(to_record).collect()
    }

    async fn review_pairs_insert(&self, pairs: &[ReviewPair]) -> Result<()> {
        // One set-based statement (a pair already queued, or twice in the list, is kept once).
        let client = self.pool.get().await?;
        let ids: Vec<Uuid> = pairs.iter().map(|p| p.id).collect();
        let batches: Vec<&str> = pairs.iter().map(|p| p.batch_id.as_str()).collect();
        let a: Vec<Uuid> = pairs.iter().map(|p| p.a).collect();
        let b: Vec<Uuid> = pairs.iter().map(|p| p.b).collect();
        let weights: Vec<f64> = pairs.iter().map(|p| p.weight).collect();
        let probabilities: Vec<f64> = pairs.iter().map(|p| p.probability).collect();
        let explanations: Vec<Json<&serde_json::Value>> = pairs.iter().map(|p| Json(&p.explanation)).collect();
        let states: Vec<&str> = pairs.iter().map(|p| p.state.code()).collect();
        let created: Vec<time::OffsetDateTime> = pairs.iter().map(|p| p.created_at).collect();
        client
            .execute(
                "INSERT INTO review_pairs (id, batch_id, a_key, b_key, weight, probability, explanation, state, created_at)
                 SELECT * FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::float8[], $6::float8[],
                                      $7::jsonb[], $8::text[], $9::timestamptz[])
                 ON CONFLICT (a_key, b_key) DO NOTHING",
                &[&ids, &batches, &a, &b, &weights, &probabilities, &explanations, &states, &created],
            )
            .await?;
        Ok(())
    }

    async fn import_finish(&self, batch_id: &str, summary: &str, audit: &AuditEntry) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE import_batches SET finished_at = $2, summary = $3 WHERE id = $1 AND finished_at IS NULL",
                &[&batch_id, &now(), &summary],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::State(format!("import batch {batch_id} is not open")));
        }
        append_audit(&tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn review_pairs(&self, q: &ReviewQuery) -> Result<Vec<ReviewPair>> {
        let client = self.pool.get().await?;
        let mut sql = format!("{PAIR_SELECT} WHERE true");
        let state = q.state.map(|s| s.code());
        let (limit, offset) = (i64::from(q.limit), i64::from(q.offset));
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        if let Some(s) = &state {
            args.push(s);
            sql += &format!(" AND state = ${}", args.len());
        }
        if let Some(a) = &q.area {
            args.push(a);
            let n = args.len();
            sql += &format!(
                " AND (a_key IN (SELECT person_key FROM person_areas WHERE area = ${n})
                      OR b_key IN (SELECT person_key FROM person_areas WHERE area = ${n}))"
            );
        }
        args.push(&limit);
        args.push(&offset);
        sql += &format!(" ORDER BY created_at DESC, id LIMIT ${} OFFSET ${}", args.len() - 1, args.len());
        let rows = client.query(&sql, &args).await?;
        rows.iter().map(pair_row).collect()
    }

    async fn review_pair_get(&self, id: Uuid) -> Result<Option<ReviewPair>> {
        let client = self.pool.get().await?;
        client.query_opt(&format!("{PAIR_SELECT} WHERE id = $1"), &[&id]).await?.as_ref().map(pair_row).transpose()
    }

    async fn review_pair_decide(&self, id: Uuid, d: &ReviewDecision) -> Result<ReviewPair> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx.query_opt(&format!("{PAIR_SELECT} WHERE id = $1 FOR UPDATE"), &[&id]).await?;
        let mut pair = row.as_ref().map(pair_row).transpose()?.ok_or(StoreError::NotFound)?;
        if pair.state != ReviewState::Pending {
            return Err(StoreError::State(format!("the pair is already decided ({})", pair.state.code())));
        }
        if let Some((key, version, person, survivor)) = &d.merge {
            update_in_tx(&tx, *key, *version, person, ChangeKind::Merge, &d.meta).await?;
            pair.survivor = Some(*survivor);
        }
        let at = now();
        pair.state = d.state;
        pair.decided_by = Some(d.by.clone());
        pair.decided_at = Some(at);
        pair.note = d.note.clone();
        tx.execute(
            "UPDATE review_pairs SET state = $2, decided_by = $3, decided_at = $4, note = $5, survivor = $6
             WHERE id = $1",
            &[&id, &pair.state.code(), &pair.decided_by, &at, &pair.note, &pair.survivor],
        )
        .await?;
        if let Some(e) = &d.audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        tx.commit().await?;
        Ok(pair)
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
        let client = self.pool.get().await?;
        let after = after.unwrap_or(Uuid::nil());
        let rows = client
            .query(
                &format!(
                    "SELECT {RECORD_COLUMNS} FROM persons
                     WHERE key > $1 AND key IN (SELECT person_key FROM person_areas
                                                WHERE area >= 'c:legacy:' AND area < 'c:legacy;')
                     ORDER BY key LIMIT $2"
                ),
                &[&after, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(to_record).collect()
    }

    async fn address_migration_apply(
        &self,
        changes: &[(Uuid, i64, Person)],
        reviews: &[crate::AddressReview],
        meta: &ChangeMeta,
    ) -> Result<(u64, u64)> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let (mut done, mut skipped) = (0, 0);
        for (key, version, person) in changes {
            match update_in_tx(&tx, *key, *version, person, ChangeKind::Update, meta).await {
                Ok(_) => done += 1,
                Err(StoreError::Conflict { .. } | StoreError::NotFound) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        let at = now();
        for r in reviews {
            tx.execute(
                "INSERT INTO address_reviews (person_key, field, scheme, commune_code, detail, candidates, queued_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                &[
                    &r.person_key,
                    &r.field,
                    &r.address.scheme.code(),
                    &r.address.commune_code,
                    &r.address.detail,
                    &r.candidates.join(","),
                    &at,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok((done, skipped))
    }

    async fn address_reviews(&self, q: &crate::AddressReviewQuery) -> Result<Vec<crate::AddressReview>> {
        let client = self.pool.get().await?;
        let (limit, offset) = (i64::from(q.limit), i64::from(q.offset));
        let mut sql = format!("{ADDRESS_REVIEW_SELECT} WHERE true");
        let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
        match q.pending {
            Some(true) => sql += " AND resolved_at IS NULL",
            Some(false) => sql += " AND resolved_at IS NOT NULL",
            None => {}
        }
        if let Some(k) = &q.person_key {
            args.push(k);
            sql += &format!(" AND person_key = ${}", args.len());
        }
        if let Some(a) = &q.area {
            args.push(a);
            sql += &format!(" AND person_key IN (SELECT person_key FROM person_areas WHERE area = ${})", args.len());
        }
        args.push(&limit);
        args.push(&offset);
        sql += &format!(" ORDER BY queued_at, person_key, field LIMIT ${} OFFSET ${}", args.len() - 1, args.len());
        let rows = client.query(&sql, &args).await?;
        rows.iter().map(address_review_row).collect()
    }

    async fn address_review_get(&self, person_key: Uuid, field: &str) -> Result<Option<crate::AddressReview>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(&format!("{ADDRESS_REVIEW_SELECT} WHERE person_key = $1 AND field = $2"), &[&person_key, &field])
            .await?;
        row.as_ref().map(address_review_row).transpose()
    }

    async fn address_review_resolve(
        &self,
        review: &crate::AddressReview,
        version: i64,
        person: &Person,
        meta: &ChangeMeta,
    ) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                "SELECT resolved_at FROM address_reviews WHERE person_key = $1 AND field = $2 FOR UPDATE",
                &[&review.person_key, &review.field],
            )
            .await?;
        let Some(row) = row else { return Err(StoreError::NotFound) };
        if row.get::<_, Option<OffsetDateTime>>(0).is_some() {
            return Err(StoreError::State("the address review is resolved already".into()));
        }
        update_in_tx(&tx, review.person_key, version, person, ChangeKind::Update, meta).await?;
        tx.execute(
            "UPDATE address_reviews SET resolved_at = $3, resolved_by = $4, resolved_code = $5
             WHERE person_key = $1 AND field = $2",
            &[&review.person_key, &review.field, &now(), &meta.actor, &review.resolved_commune_code],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn sample_personal_ids(&self, n: u32) -> Result<Vec<PersonalId>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT personal_id FROM persons WHERE personal_id IS NOT NULL ORDER BY random() LIMIT $1",
                &[&i64::from(n)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let s: String = r.get(0);
                PersonalId::parse(&s)
                    .map_err(|e| StoreError::Corrupt(format!("a stored personal ID is malformed ({})", e.code())))
            })
            .collect()
    }

    async fn ping(&self) -> Result<()> {
        let client = self.pool.get().await?;
        client.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn partner_insert(&self, p: &Partner) -> Result<()> {
        let client = self.pool.get().await?;
        let at = now();
        let n = client
            .execute(
                "INSERT INTO partners (id, data, created_at, updated_at) VALUES ($1, $2::text::jsonb, $3, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&p.id, &crate::partner_to_json(p), &at],
            )
            .await?;
        if n == 0 { Err(StoreError::Duplicate(format!("partner {:?}", p.id))) } else { Ok(()) }
    }

    async fn partner_get(&self, id: &str) -> Result<Option<Partner>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached("SELECT data::text FROM partners WHERE id = $1").await?;
        let row = client.query_opt(&stmt, &[&id]).await?;
        row.map(|r| crate::partner_from_json(&r.get::<_, String>(0))).transpose()
    }

    async fn partner_update(&self, p: &Partner) -> Result<()> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE partners SET data = $2::text::jsonb, updated_at = $3 WHERE id = $1",
                &[&p.id, &crate::partner_to_json(p), &now()],
            )
            .await?;
        if n == 0 { Err(StoreError::NotFound) } else { Ok(()) }
    }

    async fn partner_list(&self) -> Result<Vec<Partner>> {
        let client = self.pool.get().await?;
        let rows = client.query("SELECT data::text FROM partners ORDER BY id", &[]).await?;
        rows.iter().map(|r| crate::partner_from_json(&r.get::<_, String>(0))).collect()
    }

    async fn assertion_use(&self, partner_id: &str, jti: &str, expires_at: i64, now_s: i64) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        tx.execute("DELETE FROM partner_assertions WHERE expires_at < $1", &[&now_s]).await?;
        let n = tx
            .execute(
                "INSERT INTO partner_assertions (partner_id, jti, expires_at) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&partner_id, &jti, &expires_at],
            )
            .await?;
        tx.commit().await?;
        Ok(n == 1)
    }

    async fn consent_insert(&self, c: &Consent) -> Result<()> {
        let client = self.pool.get().await?;
        let key = parse_uuid(&c.person_key)?;
        client
            .execute(
                "INSERT INTO consents (id, person_key, partner_id, purpose, granted_at, expires_at, revoked_at,
                                       recorded_by, revoked_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &c.id,
                    &key,
                    &c.partner_id,
                    &c.purpose,
                    &c.granted_at,
                    &c.expires_at,
                    &c.revoked_at,
                    &c.recorded_by,
                    &c.revoked_by,
                ],
            )
            .await?;
        Ok(())
    }

    async fn consent_get(&self, id: &str) -> Result<Option<Consent>> {
        let client = self.pool.get().await?;
        Ok(client.query_opt(&format!("{CONSENT_SELECT} WHERE id = $1"), &[&id]).await?.as_ref().map(consent_row))
    }

    async fn consents_of(&self, person_key: &str) -> Result<Vec<Consent>> {
        let Ok(key) = Uuid::parse_str(person_key) else { return Ok(Vec::new()) };
        let client = self.pool.get().await?;
        let rows = client
            .query(&format!("{CONSENT_SELECT} WHERE person_key = $1 ORDER BY granted_at DESC, id"), &[&key])
            .await?;
        Ok(rows.iter().map(consent_row).collect())
    }

    async fn consent_revoke(&self, id: &str, by: &str, at: i64) -> Result<Consent> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx.query_opt(&format!("{CONSENT_SELECT} WHERE id = $1 FOR UPDATE"), &[&id]).await?;
        let mut c = row.as_ref().map(consent_row).ok_or(StoreError::NotFound)?;
        if c.revoked_at.is_some() {
            return Err(StoreError::State("the consent was revoked already".into()));
        }
        tx.execute("UPDATE consents SET revoked_at = $2, revoked_by = $3 WHERE id = $1", &[&id, &at, &by]).await?;
        tx.commit().await?;
        c.revoked_at = Some(at);
        c.revoked_by = Some(by.to_string());
        Ok(c)
    }

    async fn consent_in_force(&self, person_key: &str, partner_id: &str, now_s: i64) -> Result<bool> {
        let Ok(key) = Uuid::parse_str(person_key) else { return Ok(false) };
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT 1 FROM consents WHERE person_key = $1 AND partner_id = $2 AND revoked_at IS NULL
                 AND granted_at <= $3 AND expires_at > $3 LIMIT 1",
            )
            .await?;
        Ok(client.query_opt(&stmt, &[&key, &partner_id, &now_s]).await?.is_some())
    }

    async fn citizen_challenge_start(&self, c: &CitizenChallenge, l: &ChallengeLimits) -> Result<bool> {
        let person = c.person_key.as_deref().map(parse_uuid).transpose()?;
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        // One login key at a time: the count and the insert cannot interleave with another's.
        tx.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 12))", &[&c.login_key]).await?;
        // Challenges older than every window count for nothing: forgotten.
        tx.execute(
            "DELETE FROM citizen_challenges WHERE expires_at < $1",
            &[&l.challenges_since.min(l.failures_since)],
        )
        .await?;
        let row = tx
            .query_one(
                "SELECT count(*) FILTER (WHERE created_at >= $2),
                        coalesce(sum(attempts) FILTER (WHERE created_at >= $3 AND used_at IS NULL), 0)::bigint
                 FROM citizen_challenges WHERE login_key = $1 AND created_at >= least($2, $3)",
                &[&c.login_key, &l.challenges_since, &l.failures_since],
            )
            .await?;
        let (recent, failures): (i64, i64) = (row.get(0), row.get(1));
        if recent >= i64::from(l.max_challenges) || failures >= i64::from(l.max_failures) {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO citizen_challenges (id, login_key, person_key, code_hash, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[&c.id, &c.login_key, &person, &c.code_hash, &c.created_at, &c.expires_at],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn citizen_challenge_attempt(
        &self,
        id: &str,
        code_hash: &str,
        now_s: i64,
        max_attempts: u32,
    ) -> Result<ChallengeOutcome> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT person_key, code_hash, expires_at, attempts, used_at FROM citizen_challenges
                 WHERE id = $1 FOR UPDATE",
                &[&id],
            )
            .await?
        else {
            return Ok(ChallengeOutcome::Spent);
        };
        let person: Option<Uuid> = row.get(0);
        let stored: String = row.get(1);
        let (expires_at, attempts, used_at): (i64, i32, Option<i64>) = (row.get(2), row.get(3), row.get(4));
        if used_at.is_some() || expires_at <= now_s || i64::from(attempts) >= i64::from(max_attempts) {
            return Ok(ChallengeOutcome::Spent);
        }
        let right = stored == code_hash && person.is_some();
        tx.execute(
            "UPDATE citizen_challenges SET attempts = attempts + $2, used_at = $3 WHERE id = $1",
            &[&id, &i32::from(!right), &right.then_some(now_s)],
        )
        .await?;
        tx.commit().await?;
        Ok(match person {
            Some(p) if right => ChallengeOutcome::Accepted(p.to_string()),
            _ => ChallengeOutcome::Wrong((i64::from(max_attempts) - i64::from(attempts) - 1).max(0) as u32),
        })
    }

    async fn citizen_session_insert(&self, s: &CitizenSession) -> Result<()> {
        let key = parse_uuid(&s.person_key)?;
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO citizen_sessions (token_hash, person_key, created_at, expires_at, revoked_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&s.token_hash, &key, &s.created_at, &s.expires_at, &s.revoked_at],
            )
            .await?;
        Ok(())
    }

    async fn citizen_session_get(&self, token_hash: &str) -> Result<Option<CitizenSession>> {
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(
                "SELECT token_hash, person_key, created_at, expires_at, revoked_at FROM citizen_sessions
                 WHERE token_hash = $1",
            )
            .await?;
        Ok(client.query_opt(&stmt, &[&token_hash]).await?.map(|r| CitizenSession {
            token_hash: r.get(0),
            person_key: r.get::<_, Uuid>(1).to_string(),
            created_at: r.get(2),
            expires_at: r.get(3),
            revoked_at: r.get(4),
        }))
    }

    async fn citizen_session_revoke(&self, token_hash: &str, at: i64) -> Result<bool> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE citizen_sessions SET revoked_at = $2 WHERE token_hash = $1 AND revoked_at IS NULL",
                &[&token_hash, &at],
            )
            .await?;
        Ok(n == 1)
    }

    async fn oidc_grant_insert(&self, g: &OidcGrant) -> Result<()> {
        let key = parse_uuid(&g.person_key)?;
        let client = self.pool.get().await?;
        // Grants whose code and token both ended an hour ago are forgotten.
        client
            .execute(
                "DELETE FROM oidc_grants WHERE expires_at < $1 AND coalesce(access_expires_at, 0) < $1
                   AND coalesce(refresh_expires_at, 0) < $1",
                &[&(g.auth_time - 3600)],
            )
            .await?;
        client
            .execute(
                "INSERT INTO oidc_grants (code_hash, client_id, person_key, redirect_uri, code_challenge, scope,
                                          nonce, auth_time, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &g.code_hash,
                    &g.client_id,
                    &key,
                    &g.redirect_uri,
                    &g.code_challenge,
                    &g.scope,
                    &g.nonce,
                    &g.auth_time,
                    &g.expires_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn oidc_grant_redeem(
        &self,
        code_hash: &str,
        tokens: &OidcTokens,
        session_id: &str,
        refresh_expires_at: i64,
        now_s: i64,
    ) -> Result<Option<OidcGrant>> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let Some(row) = tx.query_opt(&format!("{GRANT_SELECT} WHERE code_hash = $1 FOR UPDATE"), &[&code_hash]).await?
        else {
            return Ok(None);
        };
        let g = grant_row(&row);
        if g.used_at.is_some() {
            // A replayed code: the tokens issued for it stop working (RFC 6749 §4.1.2).
            tx.execute(
                "UPDATE oidc_grants SET access_hash = NULL, refresh_hash = NULL, revoked_at = coalesce(revoked_at, $2)
                 WHERE code_hash = $1",
                &[&code_hash, &now_s],
            )
            .await?;
        } else {
            tx.execute(
                "UPDATE oidc_grants SET used_at = $2, access_hash = $3, access_expires_at = $4, session_id = $5,
                        refresh_hash = $6, refresh_expires_at = $7
                 WHERE code_hash = $1",
                &[
                    &code_hash,
                    &now_s,
                    &tokens.access_hash,
                    &tokens.access_expires_at,
                    &session_id,
                    &tokens.refresh_hash,
                    &refresh_expires_at,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(Some(g))
    }

    async fn oidc_refresh(
        &self,
        client_id: &str,
        session_id: &str,
        refresh_hash: &str,
        new: &OidcTokens,
        now_s: i64,
    ) -> Result<RefreshOutcome> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                &format!("{GRANT_SELECT} WHERE session_id = $1 AND client_id = $2 FOR UPDATE"),
                &[&session_id, &client_id],
            )
            .await?;
        let outcome = match row {
            Some(row) => {
                let g = grant_row(&row);
                let current: Option<String> = tx
                    .query_one("SELECT refresh_hash FROM oidc_grants WHERE session_id = $1", &[&session_id])
                    .await?
                    .get(0);
                if g.revoked_at.is_some() || g.refresh_expires_at.is_none_or(|e| e <= now_s) {
                    RefreshOutcome::Refused
                } else if current.as_deref() == Some(refresh_hash) {
                    tx.execute(
                        "UPDATE oidc_grants SET refresh_hash = $2, access_hash = $3, access_expires_at = $4
                         WHERE session_id = $1",
                        &[&session_id, &new.refresh_hash, &new.access_hash, &new.access_expires_at],
                    )
                    .await?;
                    RefreshOutcome::Rotated(Box::new(g))
                } else {
                    tx.execute(
                        "UPDATE oidc_grants SET refresh_hash = NULL, access_hash = NULL, revoked_at = $2
                         WHERE session_id = $1",
                        &[&session_id, &now_s],
                    )
                    .await?;
                    RefreshOutcome::Reused
                }
            }
            None => RefreshOutcome::Refused,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    async fn oidc_session_end(&self, client_id: &str, session_id: &str, now_s: i64) -> Result<Option<OidcGrant>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE oidc_grants SET refresh_hash = NULL, access_hash = NULL, revoked_at = $3
                     WHERE session_id = $1 AND client_id = $2 AND revoked_at IS NULL
                     RETURNING {}",
                    GRANT_SELECT.trim_start_matches("SELECT ").trim_end_matches(" FROM oidc_grants")
                ),
                &[&session_id, &client_id, &now_s],
            )
            .await?;
        Ok(row.as_ref().map(grant_row))
    }

    async fn oidc_grant_by_access(&self, access_hash: &str) -> Result<Option<OidcGrant>> {
        let client = self.pool.get().await?;
        let stmt = client.prepare_cached(&format!("{GRANT_SELECT} WHERE access_hash = $1")).await?;
        Ok(client.query_opt(&stmt, &[&access_hash]).await?.as_ref().map(grant_row))
    }

    async fn change_feed(&self, after: i64, limit: u32) -> Result<Vec<FeedItem>> {
        let client = self.pool.get().await?;
        // Sequence numbers are drawn before commit, so a later number may commit first: only
        // versions recorded more than FEED_SETTLE_SECONDS ago are given, by when every
        // transaction that drew an earlier number has ended (transactions here are short).
        let rows = client
            .query(
                "SELECT v.feed_seq, v.key, v.version, v.recorded_at, p.data, v.data,
                        EXISTS (SELECT 1 FROM civil_events c WHERE c.person_key = v.key AND c.kind = 'birth')
                 FROM person_versions v JOIN person_versions p ON p.key = v.key AND p.version = v.version - 1
                 WHERE v.feed_seq > $1 AND v.version > 1
                   AND v.recorded_at < now() - make_interval(secs => $3)
                 ORDER BY v.feed_seq LIMIT $2",
                &[&after, &i64::from(limit), &FEED_SETTLE_SECONDS],
            )
            .await?;
        rows.iter()
            .map(|r| {
                let parse = |i: usize| -> Result<Person> {
                    let Json(p): Json<Person> = r
                        .try_get(i)
                        .map_err(|_| StoreError::Corrupt("a stored person record does not parse".into()))?;
                    Ok(p)
                };
                Ok(FeedItem {
                    position: r.get(0),
                    key: r.get(1),
                    version: r.get(2),
                    recorded_at: r.get(3),
                    before: parse(4)?,
                    after: parse(5)?,
                    registered_birth: r.get(6),
                })
            })
            .collect()
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
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT coalesce(max(feed_seq), 0) FROM person_versions
                 WHERE recorded_at < now() - make_interval(secs => $1)",
                &[&FEED_SETTLE_SECONDS],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn webhook_put(&self, w: &Webhook) -> Result<Webhook> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "INSERT INTO webhooks (partner_id, url, secret_sealed, cursor, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $5)
                 ON CONFLICT (partner_id) DO UPDATE SET url = excluded.url, secret_sealed = excluded.secret_sealed,
                     updated_at = excluded.updated_at
                 RETURNING partner_id, url, secret_sealed, cursor, created_at, updated_at",
                &[&w.partner_id, &w.url, &w.secret_sealed, &w.cursor, &w.updated_at],
            )
            .await?;
        Ok(webhook_row(&row))
    }

    async fn webhook_get(&self, partner_id: &str) -> Result<Option<Webhook>> {
        let client = self.pool.get().await?;
        let row = client.query_opt(&format!("{WEBHOOK_SELECT} WHERE partner_id = $1"), &[&partner_id]).await?;
        Ok(row.as_ref().map(webhook_row))
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let client = self.pool.get().await?;
        let rows = client.query(&format!("{WEBHOOK_SELECT} ORDER BY partner_id"), &[]).await?;
        Ok(rows.iter().map(webhook_row).collect())
    }

    async fn webhook_enqueue(&self, partner_id: &str, from: i64, to: i64, events: &[NewDelivery]) -> Result<bool> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE webhooks SET cursor = $3 WHERE partner_id = $1 AND cursor = $2",
                &[&partner_id, &from, &to],
            )
            .await?;
        if n == 0 {
            return Ok(false);
        }
        let ins = tx
            .prepare(
                "INSERT INTO webhook_deliveries (partner_id, event_id, position, person_key, payload, state,
                                                 next_attempt_ms, created_at)
                 VALUES ($1, $2, $3, $4, $5, 'pending', $6::bigint * 1000, $6)
                 ON CONFLICT (partner_id, event_id) DO NOTHING",
            )
            .await?;
        for e in events {
            tx.execute(&ins, &[&partner_id, &e.event_id, &e.position, &e.person_key, &e.payload, &e.created_at])
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn webhook_pending(&self, partner_id: &str, limit: u32) -> Result<Vec<Delivery>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!("{DELIVERY_SELECT} WHERE partner_id = $1 AND state = 'pending' ORDER BY seq LIMIT $2"),
                &[&partner_id, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(delivery_row).collect()
    }

    async fn webhook_attempt(&self, partner_id: &str, event_id: &str, attempt: &Attempt) -> Result<bool> {
        let client = self.pool.get().await?;
        let n = match attempt {
            Attempt::Delivered { at, status } => {
                client
                    .execute(
                        "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1,
                             delivered_at = $3, last_status = $4, last_error = NULL
                         WHERE partner_id = $1 AND event_id = $2 AND state = 'pending'",
                        &[&partner_id, &event_id, at, status],
                    )
                    .await?
            }
            Attempt::Failed { status, error, retry_at_ms } => {
                client
                    .execute(
                        "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = $3, last_error = $4,
                             next_attempt_ms = $5
                         WHERE partner_id = $1 AND event_id = $2 AND state = 'pending'",
                        &[&partner_id, &event_id, status, error, retry_at_ms],
                    )
                    .await?
            }
        };
        Ok(n == 1)
    }

    async fn webhook_deliveries(
        &self,
        partner_id: &str,
        state: Option<DeliveryState>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "{DELIVERY_SELECT} WHERE partner_id = $1 AND ($2::text IS NULL OR state = $2) AND seq > $3
                     ORDER BY seq LIMIT $4"
                ),
                &[&partner_id, &state.map(DeliveryState::code), &after, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(delivery_row).collect()
    }

    async fn webhook_counts(&self, partner_id: &str) -> Result<(i64, i64)> {
        let client = self.pool.get().await?;
        let row = client
            .query_one(
                "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FILTER (WHERE state = 'delivered')
                 FROM webhook_deliveries WHERE partner_id = $1",
                &[&partner_id],
            )
            .await?;
        Ok((row.get(0), row.get(1)))
    }

    async fn civil_event_get(&self, partner_id: &str, source_id: &str) -> Result<Option<CivilEvent>> {
        let client = self.pool.get().await?;
        Ok(client.query_opt(CIVIL_SELECT, &[&partner_id, &source_id]).await?.as_ref().map(civil_row))
    }

    async fn civil_birth(&self, event: &CivilEvent, person: &Person, meta: &ChangeMeta) -> Result<(CivilEvent, bool)> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(seen) = tx.query_opt(CIVIL_SELECT, &[&event.partner_id, &event.source_id]).await? {
            return Ok((civil_row(&seen), false));
        }
        let key = crate::new_key();
        let at = now();
        insert_new(&tx, key, person, meta, at).await?;
        if let Some(mut entry) = meta.audit.clone() {
            entry.target.get_or_insert_with(|| key.to_string());
            append_audit(&tx, &[entry]).await?;
        }
        let event = CivilEvent { person_key: key, ..event.clone() };
        if !civil_insert(&tx, &event).await? {
            // A concurrent call with this source id went first: nothing of this one stays.
            tx.rollback().await?;
            let seen = client.query_one(CIVIL_SELECT, &[&event.partner_id, &event.source_id]).await?;
            return Ok((civil_row(&seen), false));
        }
        tx.commit().await?;
        Ok((event, true))
    }

    async fn civil_change(
        &self,
        event: &CivilEvent,
        request: &ChangeRequest,
        audit: Option<&AuditEntry>,
    ) -> Result<(CivilEvent, bool)> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if let Some(seen) = tx.query_opt(CIVIL_SELECT, &[&event.partner_id, &event.source_id]).await? {
            return Ok((civil_row(&seen), false));
        }
        insert_change_request(&tx, request).await?;
        if let Some(e) = audit {
            append_audit(&tx, std::slice::from_ref(e)).await?;
        }
        if !civil_insert(&tx, event).await? {
            tx.rollback().await?;
            let seen = client.query_one(CIVIL_SELECT, &[&event.partner_id, &event.source_id]).await?;
            return Ok((civil_row(&seen), false));
        }
        tx.commit().await?;
        Ok((event.clone(), true))
    }
}

async fn insert_change_request(tx: &deadpool_postgres::Transaction<'_>, r: &ChangeRequest) -> Result<()> {
    tx.execute(
        "INSERT INTO change_requests (id, person_key, base_version, guarded, proposed, requested_by,
             requested_unit, requested_at, reason, legal_basis, state)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            &r.id,
            &r.person_key,
            &r.base_version,
            &crate::guarded_to_text(&r.guarded),
            &Json(&r.proposed),
            &r.requested_by,
            &r.requested_unit,
            &r.requested_at,
            &r.reason,
            &r.legal_basis,
            &r.state.code(),
        ],
    )
    .await?;
    Ok(())
}

const CIVIL_SELECT: &str = "SELECT partner_id, source_id, kind, body_hash, person_key, change_request, received_at
    FROM civil_events WHERE partner_id = $1 AND source_id = $2";

fn civil_row(r: &Row) -> CivilEvent {
    CivilEvent {
        partner_id: r.get(0),
        source_id: r.get(1),
        kind: r.get(2),
        body_hash: r.get(3),
        person_key: r.get(4),
        change_request: r.get(5),
        received_at: r.get(6),
    }
}

/// Records the event unless its source id is taken (then false: the caller rolls back).
async fn civil_insert(tx: &deadpool_postgres::Transaction<'_>, e: &CivilEvent) -> Result<bool> {
    let n = tx
        .execute(
            "INSERT INTO civil_events (partner_id, source_id, kind, body_hash, person_key, change_request,
                                       received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (partner_id, source_id) DO NOTHING",
            &[&e.partner_id, &e.source_id, &e.kind, &e.body_hash, &e.person_key, &e.change_request, &e.received_at],
        )
        .await?;
    Ok(n == 1)
}

const WEBHOOK_SELECT: &str = "SELECT partner_id, url, secret_sealed, cursor, created_at, updated_at FROM webhooks";

fn webhook_row(r: &Row) -> Webhook {
    Webhook {
        partner_id: r.get(0),
        url: r.get(1),
        secret_sealed: r.get(2),
        cursor: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
    }
}

const DELIVERY_SELECT: &str = "SELECT seq, partner_id, event_id, position, person_key, payload, state, attempts,
    next_attempt_ms, last_status, last_error, created_at, delivered_at FROM webhook_deliveries";

fn delivery_row(r: &Row) -> Result<Delivery> {
    let state: String = r.get(6);
    let state =
        DeliveryState::from_code(&state).ok_or_else(|| StoreError::Corrupt(format!("delivery state {state:?}")))?;
    Ok(Delivery {
        seq: r.get(0),
        partner_id: r.get(1),
        event_id: r.get(2),
        position: r.get(3),
        person_key: r.get(4),
        payload: r.get(5),
        state,
        attempts: r.get(7),
        next_attempt_ms: r.get(8),
        last_status: r.get(9),
        last_error: r.get(10),
        created_at: r.get(11),
        delivered_at: r.get(12),
    })
}

// ---------------------------------------------------------------------------------------------
// Residence.

use crate::{Application, ApplicationQuery, Household, HouseholdMember, ResidenceKind, ResidencePlan, ResidenceRow};
use dancu_core::person::{Address, HeadRelationship};
use dancu_core::reference::Scheme;

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

const ADDRESS_REVIEW_SELECT: &str = "SELECT person_key, field, scheme, commune_code, detail, candidates, queued_at,
    resolved_at, resolved_by, resolved_code FROM address_reviews";

fn address_review_row(r: &Row) -> Result<crate::AddressReview> {
    let scheme: String = r.get(2);
    let candidates: String = r.get(5);
    Ok(crate::AddressReview {
        person_key: r.get(0),
        field: r.get(1),
        address: Address {
            scheme: Scheme::from_code(&scheme).ok_or_else(|| StoreError::Corrupt(format!("scheme {scheme:?}")))?,
            commune_code: r.get(3),
            detail: r.get(4),
        },
        candidates: candidates.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect(),
        queued_at: Some(r.get(6)),
        resolved_at: r.get(7),
        resolved_by: r.get(8),
        resolved_commune_code: r.get(9),
    })
}

const RESIDENCE_SELECT: &str = "SELECT id, person_key, kind, scheme, commune_code, detail, household_id, valid_from,
    valid_to, expires_on, end_cause, application, recorded_at, superseded_at FROM residences";

fn residence_row(r: &Row) -> Result<ResidenceRow> {
    let kind: String = r.get(2);
    let scheme: String = r.get(3);
    Ok(ResidenceRow {
        id: r.get(0),
        person_key: r.get(1),
        kind: ResidenceKind::from_code(&kind).ok_or_else(|| StoreError::Corrupt(format!("kind {kind:?}")))?,
        address: Address {
            scheme: Scheme::from_code(&scheme).ok_or_else(|| StoreError::Corrupt(format!("scheme {scheme:?}")))?,
            commune_code: r.get(4),
            detail: r.get(5),
        },
        household: r.get(6),
        valid_from: r.get(7),
        valid_to: r.get(8),
        expires_on: r.get(9),
        end_cause: r.get(10),
        application: r.get(11),
        recorded_at: r.get(12),
        superseded_at: r.get(13),
    })
}

fn unique_as_duplicate(e: tokio_postgres::Error, what: &str) -> StoreError {
    if is_unique_violation(&e) { StoreError::Duplicate(what.to_string()) } else { e.into() }
}

async fn insert_residence(tx: &deadpool_postgres::Transaction<'_>, r: &ResidenceRow) -> Result<()> {
    let stmt = tx
        .prepare_cached(
            "INSERT INTO residences (id, person_key, kind, scheme, commune_code, detail, household_id, valid_from,
                 valid_to, expires_on, end_cause, application, recorded_at, superseded_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .await?;
    tx.execute(
        &stmt,
        &[
            &r.id,
            &r.person_key,
            &r.kind.code(),
            &r.address.scheme.code(),
            &r.address.commune_code,
            &r.address.detail,
            &r.household,
            &r.valid_from,
            &r.valid_to,
            &r.expires_on,
            &r.end_cause,
            &r.application,
            &r.recorded_at,
            &r.superseded_at,
        ],
    )
    .await
    .map_err(|e| unique_as_duplicate(e, "an open residence of this kind for this person"))?;
    Ok(())
}

fn parse_application(v: serde_json::Value) -> Result<Application> {
    serde_json::from_value(v).map_err(|_| StoreError::Corrupt("a stored application does not parse".into()))
}

fn application_value(a: &Application) -> Result<serde_json::Value> {
    serde_json::to_value(a).map_err(backend)
}

async fn apply_plan(tx: &deadpool_postgres::Transaction<'_>, plan: &ResidencePlan) -> Result<()> {
    let at = now();
    if let Some(app) = &plan.application {
        match plan.expected_state {
            None => {
                tx.execute(
                    "INSERT INTO residence_applications (id, kind, state, person_key, deadline, submitted_at, data)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &app.id,
                        &app.kind.code(),
                        &app.state.code(),
                        &app.person_key,
                        &app.deadline,
                        &app.submitted_at,
                        &application_value(app)?,
                    ],
                )
                .await?;
                tx.execute(
                    "INSERT INTO residence_application_areas (area, application_id)
                     SELECT DISTINCT a, $2::uuid FROM UNNEST($1::text[]) AS t(a)",
                    &[&app.areas, &app.id],
                )
                .await?;
            }
            Some(expected) => {
                let row = tx
                    .query_opt("SELECT state FROM residence_applications WHERE id = $1 FOR UPDATE", &[&app.id])
                    .await?;
                let Some(row) = row else { return Err(StoreError::NotFound) };
                let state: String = row.get(0);
                if state != expected.code() {
                    return Err(StoreError::State(format!("the application is already {state}")));
                }
                tx.execute(
                    "UPDATE residence_applications SET state = $2, data = $3 WHERE id = $1",
                    &[&app.id, &app.state.code(), &application_value(app)?],
                )
                .await?;
            }
        }
    }
    if let Some(meta) = &plan.meta {
        for (key, version, person) in &plan.persons {
            let m = ChangeMeta { audit: None, ..meta.clone() };
            update_in_tx(tx, *key, *version, person, ChangeKind::Update, &m).await?;
        }
    }
    for (h, expected) in &plan.households {
        let data = serde_json::to_value((&h.address, &h.number)).map_err(backend)?;
        match expected {
            None => {
                tx.execute(
                    "INSERT INTO households (id, number, head_key, version, data, created_at)
                     VALUES ($1, $2, $3, 1, $4, $5)",
                    &[&h.id, &h.number, &h.head, &data, &h.created_at],
                )
                .await
                .map_err(|e| unique_as_duplicate(e, "household number"))?;
            }
            Some(v) => {
                let n = tx
                    .execute(
                        "UPDATE households SET head_key = $2, version = version + 1, data = $3
                         WHERE id = $1 AND version = $4",
                        &[&h.id, &h.head, &data, v],
                    )
                    .await?;
                if n == 0 {
                    let actual = tx.query_opt("SELECT version FROM households WHERE id = $1", &[&h.id]).await?;
                    return Err(match actual {
                        None => StoreError::NotFound,
                        Some(r) => StoreError::Conflict { expected: *v, actual: r.get(0) },
                    });
                }
            }
        }
    }
    for (person, left_on) in &plan.close_memberships {
        let n = tx
            .execute(
                "UPDATE household_members SET left_on = $2 WHERE person_key = $1 AND left_on IS NULL",
                &[person, left_on],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Duplicate("the membership has ended already".into()));
        }
    }
    for m in &plan.open_memberships {
        tx.execute(
            "INSERT INTO household_members (household_id, person_key, relationship, joined_on, recorded_at)
             VALUES ($1, $2, $3, $4, $5)",
            &[&m.household, &m.person_key, &relationship_code(m.relationship)?, &m.joined_on, &at],
        )
        .await
        .map_err(|e| unique_as_duplicate(e, "a membership of another household"))?;
    }
    for (id, row) in &plan.supersede {
        let n = tx
            .execute(
                "UPDATE residences SET superseded_at = $2 WHERE id = $1 AND superseded_at IS NULL AND valid_to IS NULL",
                &[id, &at],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::Duplicate("the residence has ended already".into()));
        }
        insert_residence(tx, &ResidenceRow { recorded_at: at, superseded_at: None, ..row.clone() }).await?;
    }
    for r in &plan.open_residences {
        insert_residence(tx, &ResidenceRow { recorded_at: at, ..r.clone() }).await?;
    }
    if let Some(e) = &plan.audit {
        append_audit(tx, std::slice::from_ref(e)).await?;
    }
    Ok(())
}

impl PgStore {
    pub(crate) async fn residence_apply_impl(&self, plan: &ResidencePlan) -> Result<()> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        apply_plan(&tx, plan).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(crate) async fn application_get_impl(&self, id: Uuid) -> Result<Option<Application>> {
        let client = self.pool.get().await?;
        let row = client.query_opt("SELECT data FROM residence_applications WHERE id = $1", &[&id]).await?;
        row.map(|r| parse_application(r.get(0))).transpose()
    }

    pub(crate) async fn applications_impl(&self, q: &ApplicationQuery) -> Result<Vec<Application>> {
        let client = self.pool.get().await?;
        let mut sql = "SELECT data FROM residence_applications WHERE true".to_string();
        let mut args: Vec<Box<dyn ToSql + Sync + Send>> = Vec::new();
        if let Some(s) = q.state {
            args.push(Box::new(s.code().to_string()));
            sql += &format!(" AND state = ${}", args.len());
        }
        if let Some(d) = q.overdue_on {
            args.push(Box::new(d));
            sql += &format!(" AND state IN ('submitted', 'received') AND deadline < ${}", args.len());
        }
        if let Some(k) = q.person_key {
            args.push(Box::new(k));
            sql += &format!(" AND person_key = ${}", args.len());
        }
        if let Some(a) = &q.area {
            args.push(Box::new(a.clone()));
            sql += &format!(
                " AND id IN (SELECT application_id FROM residence_application_areas WHERE area = ${})",
                args.len()
            );
        }
        args.push(Box::new(i64::from(q.limit)));
        args.push(Box::new(i64::from(q.offset)));
        sql += &format!(" ORDER BY deadline, submitted_at, id LIMIT ${} OFFSET ${}", args.len() - 1, args.len());
        let refs: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref() as &(dyn ToSql + Sync)).collect();
        let rows = client.query(&sql, &refs).await?;
        rows.into_iter().map(|r| parse_application(r.get(0))).collect()
    }

    pub(crate) async fn household_get_impl(&self, id: Uuid) -> Result<Option<Household>> {
        let client = self.pool.get().await?;
        let Some(row) = client
            .query_opt("SELECT id, number, head_key, version, data, created_at FROM households WHERE id = $1", &[&id])
            .await?
        else {
            return Ok(None);
        };
        let Json((address, _)): Json<(Address, String)> =
            row.try_get(4).map_err(|_| StoreError::Corrupt("a stored household does not parse".into()))?;
        let rows = client
            .query(
                "SELECT person_key, relationship, joined_on, left_on, recorded_at FROM household_members
                 WHERE household_id = $1 ORDER BY joined_on, recorded_at",
                &[&id],
            )
            .await?;
        let mut members = Vec::new();
        for r in rows {
            let rel: String = r.get(1);
            members.push(HouseholdMember {
                person_key: r.get(0),
                relationship_to_head: parse_relationship(&rel)?,
                joined_on: r.get(2),
                left_on: r.get(3),
                recorded_at: r.get(4),
            });
        }
        Ok(Some(Household {
            id: row.get(0),
            number: row.get(1),
            address,
            head: row.get(2),
            version: row.get(3),
            created_at: row.get(5),
            members,
        }))
    }

    pub(crate) async fn household_of_impl(&self, person_key: Uuid) -> Result<Option<Uuid>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT household_id FROM household_members WHERE person_key = $1 AND left_on IS NULL",
                &[&person_key],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    pub(crate) async fn residences_impl(
        &self,
        person_key: Uuid,
        as_of: Option<OffsetDateTime>,
    ) -> Result<Vec<ResidenceRow>> {
        let client = self.pool.get().await?;
        let rows = match as_of {
            None => {
                client
                    .query(
                        &format!(
                            "{RESIDENCE_SELECT} WHERE person_key = $1 AND superseded_at IS NULL
                             ORDER BY valid_from, recorded_at"
                        ),
                        &[&person_key],
                    )
                    .await?
            }
            Some(t) => {
                client
                    .query(
                        &format!(
                            "{RESIDENCE_SELECT} WHERE person_key = $1 AND recorded_at <= $2
                             AND (superseded_at IS NULL OR superseded_at > $2) ORDER BY valid_from, recorded_at"
                        ),
                        &[&person_key, &t],
                    )
                    .await?
            }
        };
        rows.iter().map(residence_row).collect()
    }

    pub(crate) async fn residents_at_impl(&self, address: &Address, on: time::Date) -> Result<Vec<ResidenceRow>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "{RESIDENCE_SELECT} WHERE scheme = $1 AND commune_code = $2 AND valid_from <= $3
                     AND (valid_to IS NULL OR valid_to > $3) AND superseded_at IS NULL
                     AND ($4::text IS NULL OR detail = $4) ORDER BY valid_from, person_key"
                ),
                &[&address.scheme.code(), &address.commune_code, &on, &address.detail],
            )
            .await?;
        rows.iter().map(residence_row).collect()
    }

    pub(crate) async fn temporary_expired_impl(&self, today: time::Date, limit: u32) -> Result<Vec<ResidenceRow>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                &format!(
                    "{RESIDENCE_SELECT} WHERE kind = 'temporary' AND valid_to IS NULL AND superseded_at IS NULL
                     AND expires_on < $1 ORDER BY expires_on LIMIT $2"
                ),
                &[&today, &i64::from(limit)],
            )
            .await?;
        rows.iter().map(residence_row).collect()
    }
}

/// How old a version must be before the PostgreSQL change feed gives it (see `change_feed`).
pub const FEED_SETTLE_SECONDS: f64 = 2.0;

fn parse_uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|_| StoreError::Backend(format!("not a record key: {s:?}")))
}

const GRANT_SELECT: &str = "SELECT code_hash, client_id, person_key, redirect_uri, code_challenge, scope, nonce,
     auth_time, expires_at, used_at, access_expires_at, session_id, refresh_expires_at, revoked_at FROM oidc_grants";

fn grant_row(r: &Row) -> OidcGrant {
    OidcGrant {
        code_hash: r.get(0),
        client_id: r.get(1),
        person_key: r.get::<_, Uuid>(2).to_string(),
        redirect_uri: r.get(3),
        code_challenge: r.get(4),
        scope: r.get(5),
        nonce: r.get(6),
        auth_time: r.get(7),
        expires_at: r.get(8),
        used_at: r.get(9),
        access_expires_at: r.get(10),
        session_id: r.get(11),
        refresh_expires_at: r.get(12),
        revoked_at: r.get(13),
    }
}

const CONSENT_SELECT: &str =
    "SELECT id, person_key, partner_id, purpose, granted_at, expires_at, revoked_at, recorded_by,
                                     revoked_by FROM consents";

fn consent_row(r: &Row) -> Consent {
    Consent {
        id: r.get(0),
        person_key: r.get::<_, Uuid>(1).to_string(),
        partner_id: r.get(2),
        purpose: r.get(3),
        granted_at: r.get(4),
        expires_at: r.get(5),
        revoked_at: r.get(6),
        recorded_by: r.get(7),
        revoked_by: r.get(8),
    }
}
