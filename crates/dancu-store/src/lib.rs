//! The storage port of dancu and its two adapters.
//!
//! [`Store`] is the port: every operation the registry needs from a database, each one
//! transaction. [`sqlite::SqliteStore`] (embedded default: one file, WAL, foreign keys on) and
//! [`postgres::PgStore`] (scale-out) implement it; [`open`] picks one from a URL.
//! [`registry::Registry`] holds the rules that sit above the port (validation, ID assignment).
//! [`conformance`] is the one test suite both adapters must pass unchanged.
//!
//! Architecture invariant: SQL lives only in the adapters; no business rule lives in SQL
//! except the uniqueness and referential constraints the database enforces for us.

pub mod audit;
pub mod conformance;
pub mod postgres;
pub mod registry;
pub mod sqlite;

use async_trait::async_trait;
use dancu_core::audit::{AuditEntry, Checkpoint, StoredEntry};
use dancu_core::auth::Officer;
use dancu_core::person::SearchFacts;
use dancu_core::{LegacyIdNumber, Person, PersonStatus, PersonalId};
use serde::Serialize;
use std::sync::Arc;
use time::OffsetDateTime;
use uuid::Uuid;

/// Who made a change, why, and on what legal basis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChangeMeta {
    pub actor: String,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    /// The audit entry of the request making the change: stored in the same transaction as the
    /// change, so that no change is ever stored without its entry. (For a new person whose
    /// entry names no target yet, the store names the new record.) Not part of the history.
    #[serde(skip)]
    pub audit: Option<AuditEntry>,
}

impl ChangeMeta {
    pub fn new(actor: impl Into<String>, reason: impl Into<String>, legal_basis: Option<String>) -> Self {
        ChangeMeta { actor: actor.into(), reason: reason.into(), legal_basis, audit: None }
    }
}

/// What kind of change made a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Create,
    Update,
    Activate,
}

impl ChangeKind {
    pub fn code(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Activate => "activate",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "create" => Some(ChangeKind::Create),
            "update" => Some(ChangeKind::Update),
            "activate" => Some(ChangeKind::Activate),
            _ => None,
        }
    }
}

/// The current state of a stored person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PersonRecord {
    /// Internal record key (stable from collection on, before any personal ID exists).
    #[schema(value_type = String, format = "uuid")]
    pub key: Uuid,
    /// Version number, 1 at creation, +1 at every change.
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub updated_at: OffsetDateTime,
    pub person: Person,
}

/// The current state of a stored person with the record as stored JSON, not parsed: the
/// read path of lookups, which hands the record on unchanged. Serializes exactly like
/// [`PersonRecord`].
#[derive(Debug, Clone, Serialize)]
pub struct RawPersonRecord {
    pub key: Uuid,
    pub version: i64,
    /// RFC 3339, as stored.
    pub created_at: String,
    /// RFC 3339, as stored.
    pub updated_at: String,
    pub person: Box<serde_json::value::RawValue>,
}

/// One version of a person's record, with who, when, why and the legal basis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct PersonVersion {
    pub version: i64,
    pub change: ChangeKind,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
    pub meta: ChangeMeta,
    pub person: Person,
}

/// How to find one person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PersonRef {
    Key(Uuid),
    PersonalId(PersonalId),
    LegacyId(LegacyIdNumber),
}

/// A search over the registry. Every given filter must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Accent-folded prefix of the full name (see `dancu_core::text::fold`).
    pub name_prefix: Option<String>,
    pub birth_year: Option<i32>,
    /// `scheme:code` of the home commune.
    pub commune_key: Option<String>,
    /// 2025 province code of the home commune.
    pub province_2025: Option<String>,
    pub status: Option<PersonStatus>,
    pub offset: u32,
    pub limit: u32,
}

/// A page of search results; `has_more` tells whether another page follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub items: Vec<PersonRecord>,
    pub has_more: bool,
}

/// A query over the audit trail; every given filter must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub officer: Option<String>,
    /// Record key of the person concerned.
    pub target: Option<String>,
    /// RFC 3339 bounds, inclusive from, exclusive to.
    pub from: Option<String>,
    pub to: Option<String>,
    pub offset: u32,
    pub limit: u32,
}

/// Entries per segment of the by-person index (`seq >> AUDIT_SEGMENT_BITS`). The segment leads
/// that index's key, so new entries land in the newest segment's small subtree instead of on a
/// random page of the whole index; a query by person seeks once per segment.
pub(crate) const AUDIT_SEGMENT_BITS: u32 = 16;

/// Storage failures the callers can act on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no such record")]
    NotFound,
    #[error("the record is at version {actual}, the change was made against version {expected}")]
    Conflict { expected: i64, actual: i64 },
    #[error("personal ID {0} is already issued")]
    IdTaken(PersonalId),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    BadUrl(String),
    #[error("{0} already exists")]
    Duplicate(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Backend(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The storage port. Every method is one transaction: it happens entirely or not at all.
#[async_trait]
pub trait Store: Send + Sync {
    /// Which adapter this is ("sqlite" or "postgres").
    fn backend(&self) -> &'static str;

    /// Applies pending migrations; returns how many were applied.
    async fn migrate(&self) -> Result<usize>;

    /// Stores a new person (version 1) and its first history entry.
    async fn insert_person(&self, person: &Person, meta: &ChangeMeta) -> Result<PersonRecord>;

    async fn get_person(&self, by: &PersonRef) -> Result<Option<PersonRecord>>;

    /// Like [`Store::get_person`], with the record left as the stored JSON (the fast read path).
    async fn get_person_raw(&self, by: &PersonRef) -> Result<Option<RawPersonRecord>>;

    /// Replaces the person's state if the stored version is `expected_version`; records a version.
    /// Assigning a personal ID (kind `Activate`) also reserves the number forever; a number
    /// already issued gives [`StoreError::IdTaken`] and changes nothing.
    async fn update_person(
        &self,
        key: Uuid,
        expected_version: i64,
        person: &Person,
        kind: ChangeKind,
        meta: &ChangeMeta,
    ) -> Result<PersonRecord>;

    /// Every version of a person, oldest first (empty when there is no such person).
    async fn history(&self, key: Uuid) -> Result<Vec<PersonVersion>>;

    async fn search(&self, q: &SearchQuery) -> Result<SearchPage>;

    async fn count_persons(&self) -> Result<u64>;

    /// Bulk load in one transaction (seeding, imports): pending people (no ID) and active ones
    /// (with their ID, reserved here). Returns the indexes of the people whose personal ID was
    /// already issued; none of those is stored, every other one is. A person whose status and
    /// ID disagree (active without an ID, pending with one) fails the whole batch.
    async fn insert_batch(&self, people: &[Person], meta: &ChangeMeta) -> Result<Vec<usize>>;

    /// Appends entries to the audit trail in one transaction, chaining each to the one before
    /// (see `dancu_core::audit`). Returns the sequence number of the last one.
    async fn audit_append(&self, entries: &[AuditEntry]) -> Result<i64>;

    /// Up to `limit` audit entries after `after_seq`, in order.
    async fn audit_read(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredEntry>>;

    /// Entries matching a query, newest first. Exact whatever the index lag: entries past
    /// [`Store::audit_indexed_seq`] are read from the chain itself.
    async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<StoredEntry>>;

    /// Adds up to `max` entries past the high-water mark to the query indexes (by person,
    /// officer and time) and moves the mark, in one transaction; returns how many. The indexes
    /// are derived from the chain and kept off the append path (see [`audit::AuditIndexer`]).
    async fn audit_index(&self, max: u32) -> Result<u64>;

    /// The high-water mark of the query indexes: every entry up to it is indexed.
    async fn audit_indexed_seq(&self) -> Result<i64>;

    /// The last entry's sequence number and hash (`None` for an empty trail).
    async fn audit_head(&self) -> Result<Option<(i64, dancu_core::audit::Hash)>>;

    async fn audit_add_checkpoint(&self, c: &Checkpoint) -> Result<()>;

    /// Every checkpoint, in order.
    async fn audit_checkpoints(&self) -> Result<Vec<Checkpoint>>;

    /// Stores a new officer account; [`StoreError::Duplicate`] when the username is taken.
    async fn officer_insert(&self, officer: &Officer) -> Result<()>;

    async fn officer_get(&self, username: &str) -> Result<Option<Officer>>;

    /// A sample of up to `n` issued personal IDs (for benchmarks and smoke tests).
    async fn sample_personal_ids(&self, n: u32) -> Result<Vec<PersonalId>>;

    /// Checks the database answers (for /healthz).
    async fn ping(&self) -> Result<()>;
}

/// Opens the store named by a URL: `sqlite://PATH` (or a plain path) or `postgres://…`.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::connect(url, None).await?))
    } else if let Some(path) = url.strip_prefix("sqlite://") {
        Ok(Arc::new(sqlite::SqliteStore::open(path)?))
    } else if !url.contains("://") && !url.is_empty() {
        Ok(Arc::new(sqlite::SqliteStore::open(url)?))
    } else {
        Err(StoreError::BadUrl(url.to_string()))
    }
}

/// The indexed columns of a person, as both adapters store them.
pub(crate) struct Columns {
    pub personal_id: Option<String>,
    pub legacy_id: Option<String>,
    pub status: &'static str,
    pub facts: SearchFacts,
}

impl Columns {
    pub fn of(p: &Person) -> Self {
        Columns {
            personal_id: p.personal_id.map(|i| i.to_string()),
            legacy_id: p.record.legacy_id.as_ref().map(|l| l.to_string()),
            status: p.status.code(),
            facts: p.search_facts(),
        }
    }
}

/// The personal ID of a batch member, checked against its status.
pub(crate) fn batch_id(i: usize, p: &Person) -> Result<Option<PersonalId>> {
    match (p.status, p.personal_id) {
        (PersonStatus::Pending, None) => Ok(None),
        (PersonStatus::Pending, Some(_)) => {
            Err(StoreError::Backend(format!("batch person {i} is pending but has a personal ID")))
        }
        (_, None) => Err(StoreError::Backend(format!("batch person {i} is {} without a personal ID", p.status.code()))),
        (_, Some(id)) => Ok(Some(id)),
    }
}

/// Officer roles as stored: comma-separated codes.
pub(crate) fn roles_to_text(roles: &[dancu_core::auth::Role]) -> String {
    roles.iter().map(|r| r.code()).collect::<Vec<_>>().join(",")
}

pub(crate) fn roles_from_text(s: &str) -> Result<Vec<dancu_core::auth::Role>> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| dancu_core::auth::Role::from_code(r).ok_or_else(|| StoreError::Corrupt(format!("role {r:?}"))))
        .collect()
}

pub(crate) fn unit_from_text(s: &str) -> Result<dancu_core::auth::Unit> {
    dancu_core::auth::Unit::parse(s).map_err(StoreError::Corrupt)
}

/// A new record key: UUIDv7, so keys issued close in time sort close together and inserts land at
/// the end of the key indexes instead of on random pages (74 random bits: still unguessable).
pub(crate) fn new_key() -> Uuid {
    Uuid::now_v7()
}

pub(crate) fn now() -> OffsetDateTime {
    // Microsecond precision: what both databases keep.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}
