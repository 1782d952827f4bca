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
pub mod cards;
pub mod conformance;
pub mod postgres;
pub mod registry;
pub mod residence;
pub mod sqlite;

use async_trait::async_trait;
use dancu_core::access::Guarded;
use dancu_core::audit::{AuditEntry, Checkpoint, StoredEntry};
use dancu_core::auth::{Officer, SessionKind, SessionStage};
use dancu_core::person::SearchFacts;
use dancu_core::sharing::{Consent, Partner};
use dancu_core::{LegacyIdNumber, PartialDate, Person, PersonInput, PersonStatus, PersonalId};
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
    /// The second officer who approved the change (maker-checker), when one had to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
    /// The audit entry of the request making the change: stored in the same transaction as the
    /// change, so that no change is ever stored without its entry. (For a new person whose
    /// entry names no target yet, the store names the new record.) Not part of the history.
    #[serde(skip)]
    pub audit: Option<AuditEntry>,
}

impl ChangeMeta {
    pub fn new(actor: impl Into<String>, reason: impl Into<String>, legal_basis: Option<String>) -> Self {
        ChangeMeta { actor: actor.into(), reason: reason.into(), legal_basis, approved_by: None, audit: None }
    }
}

/// What kind of change made a version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Create,
    Update,
    Activate,
    /// A new personal ID replacing the current one (approved by a second officer).
    Reestablish,
    /// Found to describe the same person as another record, and merged into it.
    Merge,
}

impl ChangeKind {
    pub fn code(self) -> &'static str {
        match self {
            ChangeKind::Create => "create",
            ChangeKind::Update => "update",
            ChangeKind::Activate => "activate",
            ChangeKind::Reestablish => "reestablish",
            ChangeKind::Merge => "merge",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "create" => Some(ChangeKind::Create),
            "update" => Some(ChangeKind::Update),
            "activate" => Some(ChangeKind::Activate),
            "reestablish" => Some(ChangeKind::Reestablish),
            "merge" => Some(ChangeKind::Merge),
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
    /// Only people lying in this area (see `dancu_core::access`): the searching officer's unit.
    pub area: Option<String>,
    pub offset: u32,
    pub limit: u32,
}

/// A page of search results; `has_more` tells whether another page follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct SearchPage {
    pub items: Vec<PersonRecord>,
    pub has_more: bool,
}

/// One cell of the population count of an area (the officers' dashboard): living people
/// (pending or active, not merged) by home commune, birth year and sex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PopulationCell {
    /// `2025:00004` or `legacy:00004` (`None`: no home commune recorded).
    pub commune_key: Option<String>,
    /// 2025 province code of the home commune (`None`: not known).
    pub province_2025: Option<String>,
    pub birth_year: i32,
    /// `male` or `female`.
    pub sex: String,
    pub count: u64,
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

/// A login session or API token as stored (the token itself is never stored, only its hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_hash: String,
    pub username: String,
    pub kind: SessionKind,
    pub stage: SessionStage,
    pub created_at: OffsetDateTime,
    pub last_seen_at: OffsetDateTime,
    /// The absolute end of the session.
    pub expires_at: OffsetDateTime,
    pub revoked: bool,
}

/// A change held for a second officer's approval (maker-checker).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ChangeRequest {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// Record key of the person concerned.
    #[schema(value_type = String, format = "uuid")]
    pub person_key: Uuid,
    /// The version of the record the change was made against.
    pub base_version: i64,
    /// What in the change needs approval.
    pub guarded: Vec<Guarded>,
    pub proposed: ProposedChange,
    pub requested_by: String,
    /// The requesting officer's unit (`commune:00004`…).
    pub requested_unit: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub requested_at: OffsetDateTime,
    pub reason: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_basis: Option<String>,
    pub state: RequestState,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decision_note: Option<String>,
    /// The person's version the approved change made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_version: Option<i64>,
}

/// The change itself: the record as it should become, and a status change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProposedChange {
    pub person: PersonInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PersonStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_date: Option<PartialDate>,
    /// Draw a new personal ID on approval (the corrected record contradicts the current one).
    #[serde(default)]
    pub reestablish_id: bool,
}

/// Where a change request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    Pending,
    Approved,
    Rejected,
    /// Withdrawn by the officer who made it.
    Withdrawn,
}

impl RequestState {
    pub fn code(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
            RequestState::Withdrawn => "withdrawn",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        [RequestState::Pending, RequestState::Approved, RequestState::Rejected, RequestState::Withdrawn]
            .into_iter()
            .find(|k| k.code() == s)
    }
}

/// The decision on a pending change request.
#[derive(Debug, Clone)]
pub struct Decision {
    pub state: RequestState,
    pub by: String,
    pub note: Option<String>,
    /// Stored in the same transaction as the decision (and the change it applies).
    pub audit: Option<AuditEntry>,
}

/// The person change an approval applies, in the decision's transaction.
#[derive(Debug, Clone)]
pub struct ApprovedChange {
    pub person: Person,
    pub kind: ChangeKind,
    pub meta: ChangeMeta,
}

/// A query over change requests; every given filter must hold. Newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestQuery {
    pub state: Option<RequestState>,
    pub person_key: Option<Uuid>,
    /// Only requests about people lying in this area.
    pub area: Option<String>,
    pub offset: u32,
    pub limit: u32,
}

/// Entries per segment of the by-person index (`seq >> AUDIT_SEGMENT_BITS`). The segment leads
/// that index's key, so new entries land in the newest segment's small subtree instead of on a
/// random page of the whole index; a query by person seeks once per segment.
pub(crate) const AUDIT_SEGMENT_BITS: u32 = 16;

/// An import batch (`dancu import`): one file loaded by one officer for one unit. The id makes a
/// re-run of the same batch safe (by default the SHA-256 of the file).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportBatch {
    pub id: String,
    /// The unit the rows belong to (`commune:00004`, `province:01`…).
    pub unit: String,
    pub officer: String,
    pub file_sha256: String,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<OffsetDateTime>,
    /// The final summary (JSON), once finished.
    pub summary: Option<String>,
}

/// One imported row as stored: a person under a key the importer chose (so that the duplicates
/// of a person can name their survivor in the same chunk), and the file line it came from.
#[derive(Debug, Clone)]
pub struct ImportedRow {
    pub line: u64,
    pub key: Uuid,
    pub person: Person,
}

/// The indexes an import may set aside while it stores many people ([`Store::defer_person_indexes`]):
/// the search indexes of `persons` and `person_areas`, which every insert updates at a random
/// place. Never the keys and unique constraints (record key, personal ID, issued IDs), which
/// the import itself relies on.
pub const DEFERRABLE_PERSON_INDEXES: &[&str] = &[
    "persons_legacy_id",
    "persons_name_year_commune",
    "persons_commune_name",
    "persons_province_name",
    "persons_population",
    "person_areas_person",
];

/// Whether building the search indexes once after storing `new_people` costs less than
/// updating them for each: a bulk load (at least 100,000 people) of at least half as many people
/// as are stored already. Measured on SQLite (BENCHMARKS.md, "The search indexes built once
/// after a bulk load", 1 M people into an empty store): updating the six indexes cost about 62 µs
/// per person stored, building them once about 12 µs per person in the store — so deferring pays
/// from about a quarter of the stored count; half leaves a margin.
pub fn index_deferral_pays(new_people: u64, stored: u64) -> bool {
    new_people >= 100_000 && new_people.saturating_mul(2) >= stored
}

/// A registry lookup for record-linkage candidates (indexed columns only).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum CandidateKey {
    /// Accent-folded full name and birth year.
    NameYear(String, i32),
    LegacyId(String),
}

/// Where a clerical review pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReviewState {
    Pending,
    /// Decided: the two records describe one person (merged).
    Same,
    /// Decided: two people (both kept).
    Different,
}

impl ReviewState {
    pub fn code(self) -> &'static str {
        match self {
            ReviewState::Pending => "pending",
            ReviewState::Same => "same",
            ReviewState::Different => "different",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        [ReviewState::Pending, ReviewState::Same, ReviewState::Different].into_iter().find(|k| k.code() == s)
    }
}

/// Two records that record linkage could neither link nor tell apart: a clerk decides.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ReviewPair {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// The import batch that found the pair.
    pub batch_id: String,
    #[schema(value_type = String, format = "uuid")]
    pub a: Uuid,
    #[schema(value_type = String, format = "uuid")]
    pub b: Uuid,
    /// Match weight in bits.
    pub weight: f64,
    pub probability: f64,
    /// Field-by-field comparison (levels and weights) as linkage scored it.
    #[schema(value_type = Object)]
    pub explanation: serde_json::Value,
    pub state: ReviewState,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// For `same`: the record kept (the other is merged into it).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "uuid")]
    pub survivor: Option<Uuid>,
}

/// A query over review pairs; newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReviewQuery {
    pub state: Option<ReviewState>,
    /// Only pairs with a record lying in this area.
    pub area: Option<String>,
    pub offset: u32,
    pub limit: u32,
}

/// The decision on a review pair, and for `same` the merge it applies in the same transaction.
#[derive(Debug, Clone)]
pub struct ReviewDecision {
    pub state: ReviewState,
    pub by: String,
    pub note: Option<String>,
    pub audit: Option<AuditEntry>,
    /// For `same`: the duplicate record (key, version read) becomes `person` (merged into the survivor).
    pub merge: Option<(Uuid, i64, Person, Uuid)>,
    pub meta: ChangeMeta,
}

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
    #[error("{0}")]
    State(String),
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

    /// The files this store keeps on the local disk, for a server to read them into the operating
    /// system's page cache when it starts (the SQLite database, the audit trail, its query index
    /// and their write-ahead logs); empty for PostgreSQL, whose own server keeps its cache across
    /// restarts of ours.
    fn local_files(&self) -> Vec<std::path::PathBuf>;

    /// Applies pending migrations, then builds any indexes an interrupted import set aside
    /// ([`Store::restore_person_indexes`]); returns how many migrations were applied.
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

    /// Living people (pending or active, not merged) counted by home commune, birth year and
    /// sex; `area` as in [`SearchQuery::area`] (`None`: everyone).
    async fn population(&self, area: Option<&str>) -> Result<Vec<PopulationCell>>;

    /// Bulk load in one transaction (seeding, imports): pending people (no ID) and active ones
    /// (with their ID, reserved here). Returns the indexes of the people whose personal ID was
    /// already issued; none of those is stored, every other one is. A person whose status and
    /// ID disagree (active without an ID, pending with one) fails the whole batch.
    async fn insert_batch(&self, people: &[Person], meta: &ChangeMeta) -> Result<Vec<usize>>;

    /// Appends entries to the audit trail in one transaction, chaining each to the one before
    /// (see `dancu_core::audit`). Returns the sequence number of the last one.
    async fn audit_append(&self, entries: Vec<AuditEntry>) -> Result<i64>;

    /// Up to `limit` audit entries after `after_seq`, in order.
    async fn audit_read(&self, after_seq: i64, limit: u32) -> Result<Vec<StoredEntry>>;

    /// Entries matching a query, newest first. Exact whatever the index lag: entries past
    /// [`Store::audit_indexed_seq`] are read from the chain itself.
    async fn audit_query(&self, q: &AuditQuery) -> Result<Vec<StoredEntry>>;

    /// Adds up to `max` entries past the high-water mark to the query indexes (by person,
    /// officer and time) and moves the mark, in one transaction; returns how many. The indexes
    /// are derived from the chain and kept off the append path (see [`audit::AuditIndexer`]).
    /// Also the trail's upkeep, which `max` 0 runs alone: SQLite moves the entries of changes
    /// waiting in the main file into the chain and copies the trail's log into its file.
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

    /// Replaces a stored officer's account (matched by username); [`StoreError::NotFound`] if none.
    async fn officer_update(&self, officer: &Officer) -> Result<()>;

    /// Every officer account, ordered by username.
    async fn officer_list(&self) -> Result<Vec<Officer>>;

    async fn session_insert(&self, s: &Session) -> Result<()>;

    async fn session_get(&self, token_hash: &str) -> Result<Option<Session>>;

    /// Records use of a session (for the idle timeout).
    async fn session_touch(&self, token_hash: &str, at: OffsetDateTime) -> Result<()>;

    /// Revokes one session; true if it existed and was not revoked already.
    async fn session_revoke(&self, token_hash: &str) -> Result<bool>;

    /// Revokes every session of an officer (password reset, deactivation); returns how many.
    async fn session_revoke_all(&self, username: &str) -> Result<u64>;

    /// Stores a new change request, with the audit entry of the request making it.
    async fn change_request_insert(&self, r: &ChangeRequest, audit: Option<&AuditEntry>) -> Result<()>;

    async fn change_request_get(&self, id: Uuid) -> Result<Option<ChangeRequest>>;

    async fn change_requests(&self, q: &RequestQuery) -> Result<Vec<ChangeRequest>>;

    /// Decides a pending request and, for an approval, applies its change to the person at the
    /// request's base version — all in one transaction. [`StoreError::State`] when the request
    /// is no longer pending; [`StoreError::Conflict`] when the person changed since.
    async fn change_request_decide(
        &self,
        id: Uuid,
        decision: &Decision,
        apply: Option<&ApprovedChange>,
    ) -> Result<ChangeRequest>;

    /// Starts an import batch, or returns the one stored under the same id (a re-run).
    /// A new batch's audit entry is written with it.
    async fn import_begin(&self, batch: &ImportBatch, audit: &AuditEntry) -> Result<ImportBatch>;

    /// The rows of a batch already stored: (file line, record key), by line.
    async fn import_rows(&self, batch_id: &str) -> Result<Vec<(u64, Uuid)>>;

    /// Stores a chunk of imported rows in one transaction: each person under its key with its
    /// first version, its personal ID reserved, and the (batch, line) → key row that makes a
    /// re-run skip it. A personal ID already issued gives [`StoreError::IdTaken`] and stores
    /// nothing.
    async fn import_chunk(&self, batch_id: &str, rows: &[ImportedRow], meta: &ChangeMeta) -> Result<()>;

    /// Before an import stores `new_people` people: sets aside the [`DEFERRABLE_PERSON_INDEXES`]
    /// when that pays ([`index_deferral_pays`], or `always`), remembering their definitions in
    /// the store, so that [`Store::restore_person_indexes`] builds them once at the end. Until
    /// then, searches that would use them read the table instead (right, but slow). Whether the
    /// indexes are set aside now.
    async fn defer_person_indexes(&self, new_people: u64, always: bool) -> Result<bool>;

    /// Builds the indexes set aside by [`Store::defer_person_indexes`] (none: nothing to do);
    /// the number built. [`Store::migrate`] calls it too, so a store opened after an import
    /// died meanwhile gets them back.
    async fn restore_person_indexes(&self) -> Result<usize>;

    /// Which of these personal IDs are already issued.
    async fn ids_issued(&self, ids: &[PersonalId]) -> Result<Vec<PersonalId>>;

    /// Stored people (not merged into another) matching any of the keys, each once.
    async fn link_candidates(&self, keys: &[CandidateKey]) -> Result<Vec<PersonRecord>>;

    /// Stores review pairs; a pair of the same two records already stored is left as it is.
    async fn review_pairs_insert(&self, pairs: &[ReviewPair]) -> Result<()>;

    /// Finishes a batch: its summary and its audit entry, in one transaction.
    async fn import_finish(&self, batch_id: &str, summary: &str, audit: &AuditEntry) -> Result<()>;

    /// One import batch.
    async fn import_batch_get(&self, batch_id: &str) -> Result<Option<ImportBatch>>;

    /// The latest import batches, newest first (at most `limit`).
    async fn import_batches(&self, limit: u32) -> Result<Vec<ImportBatch>>;

    async fn review_pairs(&self, q: &ReviewQuery) -> Result<Vec<ReviewPair>>;

    async fn review_pair_get(&self, id: Uuid) -> Result<Option<ReviewPair>>;

    /// Decides a pending pair and, for `same`, merges the duplicate record (a new version, at the
    /// version read) — with the audit entry, in one transaction. [`StoreError::State`] when the
    /// pair is no longer pending; [`StoreError::Conflict`] when the record changed since.
    async fn review_pair_decide(&self, id: Uuid, decision: &ReviewDecision) -> Result<ReviewPair>;
    /// Applies a residence plan in one transaction (see [`ResidencePlan`]): [`StoreError::State`]
    /// when the application is no longer in the expected state; [`StoreError::Conflict`] when a
    /// person or household changed since it was read; [`StoreError::Duplicate`] when a residence
    /// to end has ended already or a uniqueness rule would break (a second open permanent
    /// residence, a second household).
    async fn residence_apply(&self, plan: &ResidencePlan) -> Result<()>;

    async fn application_get(&self, id: Uuid) -> Result<Option<Application>>;

    async fn applications(&self, q: &ApplicationQuery) -> Result<Vec<Application>>;

    /// A household with every membership, current and past.
    async fn household_get(&self, id: Uuid) -> Result<Option<Household>>;

    /// The household a person belongs to now.
    async fn household_of(&self, person_key: Uuid) -> Result<Option<Uuid>>;

    /// A person's residence rows as recorded now (`as_of` none) or as they were recorded at
    /// `as_of`; ordered by valid_from.
    async fn residences(&self, person_key: Uuid, as_of: Option<OffsetDateTime>) -> Result<Vec<ResidenceRow>>;

    /// Residence rows (as recorded now) at an address that held on `on`: same commune, and the
    /// same detail when the address gives one.
    async fn residents_at(&self, address: &dancu_core::person::Address, on: time::Date) -> Result<Vec<ResidenceRow>>;

    /// Open temporary residences whose registration ended before `today` (up to `limit`).
    async fn temporary_expired(&self, today: time::Date, limit: u32) -> Result<Vec<ResidenceRow>>;

    /// People with an address on the legacy commune list, by record key after `after` (key order).
    async fn persons_with_legacy_address(&self, after: Option<Uuid>, limit: u32) -> Result<Vec<PersonRecord>>;

    /// One batch of the 2025 address migration in one transaction: each person updated at the
    /// version read (one changed meanwhile is skipped and counted), each review queued once
    /// (per person and field). Returns (people updated, people skipped).
    async fn address_migration_apply(
        &self,
        changes: &[(Uuid, i64, Person)],
        reviews: &[AddressReview],
        meta: &ChangeMeta,
    ) -> Result<(u64, u64)>;

    /// Address reviews (2025 reform), oldest first.
    async fn address_reviews(&self, q: &AddressReviewQuery) -> Result<Vec<AddressReview>>;

    /// One address review (person and field).
    async fn address_review_get(&self, person_key: Uuid, field: &str) -> Result<Option<AddressReview>>;

    /// Resolves a pending address review in one transaction: the person's record (at the
    /// version read; it carries the chosen 2025 commune) as a new version with the change's
    /// audit entry, and the review marked resolved with the officer and the commune chosen.
    /// [`StoreError::State`] when the review is resolved already, [`StoreError::NotFound`] when
    /// there is none, [`StoreError::Conflict`] when the record changed since it was read.
    async fn address_review_resolve(
        &self,
        review: &AddressReview,
        version: i64,
        person: &Person,
        meta: &ChangeMeta,
    ) -> Result<()>;

    /// A sample of up to `n` issued personal IDs (for benchmarks and smoke tests).
    async fn sample_personal_ids(&self, n: u32) -> Result<Vec<PersonalId>>;

    /// Checks the database answers (for /healthz).
    async fn ping(&self) -> Result<()>;

    // ---- data sharing -------------------------------------------------------------------------

    /// Registers a partner; [`StoreError::Duplicate`] when the id is taken.
    async fn partner_insert(&self, p: &Partner) -> Result<()>;

    async fn partner_get(&self, id: &str) -> Result<Option<Partner>>;

    /// Replaces a partner (matched by id); [`StoreError::NotFound`] if none.
    async fn partner_update(&self, p: &Partner) -> Result<()>;

    /// Every partner, ordered by id.
    async fn partner_list(&self) -> Result<Vec<Partner>>;

    /// Records the use of a client assertion (`jti`) until it expires; false when it was used
    /// before (a replay). Forgets assertions expired before `now` in the same transaction.
    async fn assertion_use(&self, partner_id: &str, jti: &str, expires_at: i64, now: i64) -> Result<bool>;

    async fn consent_insert(&self, c: &Consent) -> Result<()>;

    async fn consent_get(&self, id: &str) -> Result<Option<Consent>>;

    /// Every consent a person gave, newest first.
    async fn consents_of(&self, person_key: &str) -> Result<Vec<Consent>>;

    /// Revokes a consent; [`StoreError::NotFound`] if none, [`StoreError::State`] if it was revoked.
    async fn consent_revoke(&self, id: &str, by: &str, at: i64) -> Result<Consent>;

    /// Whether a consent of the person to the partner is in force at `now`.
    async fn consent_in_force(&self, person_key: &str, partner_id: &str, now: i64) -> Result<bool>;

    /// Versions after `after` (a position from an earlier call, 0 for the start) that changed a
    /// record (version 2 on), each with the version before it, in the order they were stored.
    async fn change_feed(&self, after: i64, limit: u32) -> Result<Vec<FeedItem>>;

    // ---- citizens and OpenID Connect -------------------------------------------------------------

    /// Starts a citizen login: stores the challenge unless its login key had `max_challenges`
    /// challenges since `challenges_since` or `max_failures` wrong codes since `failures_since`
    /// (false then, nothing stored). Counted and stored in one transaction.
    async fn citizen_challenge_start(&self, c: &CitizenChallenge, limits: &ChallengeLimits) -> Result<bool>;

    /// One try of a code: counts the attempt and, when the code is right (and the challenge
    /// names a person, unspent, unexpired, under `max_attempts`), spends the challenge — in one
    /// transaction, so a code is accepted once.
    async fn citizen_challenge_attempt(
        &self,
        id: &str,
        code_hash: &str,
        now: i64,
        max_attempts: u32,
    ) -> Result<ChallengeOutcome>;

    async fn citizen_session_insert(&self, s: &CitizenSession) -> Result<()>;

    async fn citizen_session_get(&self, token_hash: &str) -> Result<Option<CitizenSession>>;

    /// Ends a citizen session; true if it was live.
    async fn citizen_session_revoke(&self, token_hash: &str, at: i64) -> Result<bool>;

    /// Stores an authorization code (hashed) and what it grants.
    async fn oidc_grant_insert(&self, g: &OidcGrant) -> Result<()>;

    /// Redeems an authorization code once: returns the grant as it stood (`used_at` set means a
    /// replay — the access token issued for it is then revoked) and, when it was unused, marks
    /// it used and binds the access token (hashed) to it. One transaction.
    /// With the code, the session (`session_id`) begins: its first refresh token is bound, and
    /// lives until `refresh_expires_at`.
    async fn oidc_grant_redeem(
        &self,
        code_hash: &str,
        tokens: &OidcTokens,
        session_id: &str,
        refresh_expires_at: i64,
        now: i64,
    ) -> Result<Option<OidcGrant>>;

    /// Uses a refresh token of a session of `client_id` once (RFC 6749 §6, rotated on use): the
    /// current one is replaced by `new` (its access token too); one replaced already revokes
    /// the session — every token of it stops working. One transaction.
    async fn oidc_refresh(
        &self,
        client_id: &str,
        session_id: &str,
        refresh_hash: &str,
        new: &OidcTokens,
        now: i64,
    ) -> Result<RefreshOutcome>;

    /// Ends a session of `client_id` (the portal's logout): its tokens stop working. The grant,
    /// when the session was live.
    async fn oidc_session_end(&self, client_id: &str, session_id: &str, now: i64) -> Result<Option<OidcGrant>>;

    /// The grant an access token was issued for.
    async fn oidc_grant_by_access(&self, access_hash: &str) -> Result<Option<OidcGrant>>;

    // ---- identity cards -----------------------------------------------------------------------

    /// Stores a new card application with its images and audit entry. [`StoreError::Duplicate`]
    /// naming `an open card application` when the person has one open already (a unique index),
    /// or `application number` when the number is taken.
    async fn card_application_insert(
        &self,
        app: &cards::CardApplication,
        images: &cards::CardImages,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;

    async fn card_application_get(&self, id: Uuid) -> Result<Option<cards::CardApplication>>;

    async fn card_application_by_number(&self, number: &str) -> Result<Option<cards::CardApplication>>;

    async fn card_applications(&self, q: &cards::CardApplicationQuery) -> Result<Vec<cards::CardApplication>>;

    /// The applications of an area (`None`: the country) counted by stage, and those overdue on
    /// `overdue_on` (open, not yet dispatched, due before it): one grouped scan.
    async fn card_application_counts(&self, area: Option<&str>, overdue_on: time::Date) -> Result<cards::CardCounts>;

    /// Stores an application's next step if it is still at `expected` ([`StoreError::State`]
    /// otherwise), with the audit entry.
    async fn card_application_step(
        &self,
        app: &cards::CardApplication,
        expected: dancu_card::application::Stage,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;

    async fn card_images(&self, id: Uuid) -> Result<Option<cards::CardImages>>;

    /// Personalization in one transaction: the application (still queued, else
    /// [`StoreError::State`]) becomes personalized, one blank card leaves its centre's stock,
    /// the card and its chip files are stored, the holder's active or retained cards become
    /// `replaced`, with the audit entry. With no stock left nothing of that happens: the
    /// centre's alert is raised (once) and [`cards::Personalized::OutOfStock`] returned.
    async fn card_personalize(
        &self,
        app: &cards::CardApplication,
        card: &cards::Card,
        chip: &cards::ChipRecord,
        audit: Option<&AuditEntry>,
    ) -> Result<cards::Personalized>;

    /// Registers a production centre; [`StoreError::Duplicate`] when the id is taken.
    async fn centre_insert(&self, c: &cards::Centre, audit: Option<&AuditEntry>) -> Result<()>;

    /// Every centre with its backlog, throughput (cards in the hour and the day before `now`)
    /// and open alert, by id.
    async fn centres(&self, now: OffsetDateTime) -> Result<Vec<cards::CentreStatus>>;

    /// Adds to a centre's stock and resolves its open alert; [`StoreError::NotFound`] if none.
    async fn centre_restock(&self, id: &str, add: i64, audit: Option<&AuditEntry>) -> Result<()>;

    /// A person's cards, newest first.
    async fn cards_of(&self, person_key: Uuid) -> Result<Vec<cards::Card>>;

    async fn card_get(&self, serial: &str) -> Result<Option<cards::Card>>;

    async fn card_chip(&self, serial: &str) -> Result<Option<cards::ChipRecord>>;

    /// Stores a card's new state if its stored state is still `expected` ([`StoreError::State`]
    /// otherwise), with the audit entry.
    async fn card_set_state(
        &self,
        card: &cards::Card,
        expected: dancu_card::application::CardState,
        audit: Option<&AuditEntry>,
    ) -> Result<()>;
    /// The position of the latest settled version of the change feed (where a new subscriber
    /// starts), 0 when there is none.
    async fn feed_head(&self) -> Result<i64>;

    // ---- webhooks -----------------------------------------------------------------------------

    /// Registers or replaces a partner's webhook (URL and sealed secret). A new registration
    /// starts at `w.cursor`; replacing one keeps its cursor and its deliveries.
    async fn webhook_put(&self, w: &Webhook) -> Result<Webhook>;

    async fn webhook_get(&self, partner_id: &str) -> Result<Option<Webhook>>;

    /// Every registered webhook, ordered by partner id.
    async fn webhooks(&self) -> Result<Vec<Webhook>>;

    /// Queues events for a partner and moves its cursor from `from` to `to`, in one transaction;
    /// false (nothing done) when the cursor is no longer at `from` (another worker went first).
    /// An event id queued before is not queued again.
    async fn webhook_enqueue(&self, partner_id: &str, from: i64, to: i64, events: &[NewDelivery]) -> Result<bool>;

    /// A partner's pending deliveries, oldest first (the order they must arrive in).
    async fn webhook_pending(&self, partner_id: &str, limit: u32) -> Result<Vec<Delivery>>;

    /// Records one delivery attempt. A successful one marks the delivery delivered and returns
    /// true — only if it was still pending: an event is never marked delivered twice. A failed one
    /// counts the attempt, keeps the answer and schedules the next try.
    async fn webhook_attempt(&self, partner_id: &str, event_id: &str, attempt: &Attempt) -> Result<bool>;

    /// A partner's deliveries by queue order after `after` (0: from the start), optionally only
    /// those in one state.
    async fn webhook_deliveries(
        &self,
        partner_id: &str,
        state: Option<DeliveryState>,
        after: i64,
        limit: u32,
    ) -> Result<Vec<Delivery>>;

    /// (pending, delivered) deliveries of a partner.
    async fn webhook_counts(&self, partner_id: &str) -> Result<(i64, i64)>;

    // ---- inbound civil-status events --------------------------------------------------------

    async fn civil_event_get(&self, partner_id: &str, source_id: &str) -> Result<Option<CivilEvent>>;

    /// A registered birth: stores the pending person and the event together, in one transaction
    /// — unless an event with this source id was stored before, which is returned instead
    /// (`false`: nothing stored; the caller compares the bodies).
    async fn civil_birth(&self, event: &CivilEvent, person: &Person, meta: &ChangeMeta) -> Result<(CivilEvent, bool)>;

    /// A death, marriage or divorce: stores the change request and the event together, in one
    /// transaction, with the same rule for a source id seen before.
    async fn civil_change(
        &self,
        event: &CivilEvent,
        request: &ChangeRequest,
        audit: Option<&AuditEntry>,
    ) -> Result<(CivilEvent, bool)>;
}

/// A citizen's login in progress: a one-time code sent for a personal ID (stored hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenChallenge {
    pub id: String,
    /// [`dancu_core::citizen::login_key`] of the personal ID as typed (limits count under it).
    pub login_key: String,
    /// Record key of the person holding the ID; `None` for an unknown ID (no code matches).
    pub person_key: Option<String>,
    pub code_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The limits a new challenge is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChallengeLimits {
    pub challenges_since: i64,
    pub max_challenges: u32,
    pub failures_since: i64,
    pub max_failures: u32,
}

/// What a code attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChallengeOutcome {
    /// The right code: the person's record key. The challenge is spent.
    Accepted(String),
    /// A wrong code; tries left on this challenge.
    Wrong(u32),
    /// Unknown, expired, used, or out of tries.
    Spent,
}

/// A citizen's session (bearer token stored as SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CitizenSession {
    pub token_hash: String,
    pub person_key: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// An OpenID Connect authorization: the code (hashed) and what it grants a portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcGrant {
    pub code_hash: String,
    pub client_id: String,
    pub person_key: String,
    pub redirect_uri: String,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    pub nonce: Option<String>,
    pub auth_time: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    pub access_expires_at: Option<i64>,
    /// The login session the code began (the ID token's `sid`; the family of its refresh tokens).
    pub session_id: Option<String>,
    /// When the refresh tokens of the session stop working (set when the code is redeemed).
    pub refresh_expires_at: Option<i64>,
    /// When the session was ended: a refresh token used twice, or the portal's logout.
    pub revoked_at: Option<i64>,
}

/// The tokens issued for a grant (hashed): on redeeming its code and on each refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcTokens {
    pub access_hash: String,
    pub access_expires_at: i64,
    pub refresh_hash: String,
}

/// What became of a refresh token presented at the token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// The current refresh token: replaced by the new tokens (the grant as it stood).
    Rotated(Box<OidcGrant>),
    /// A refresh token of the session that was replaced already: the session is revoked.
    Reused,
    /// No live session of this client: unknown, another client's, revoked or expired.
    Refused,
}

/// An inbound civil-status event as the registry keeps it (idempotency by its source id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CivilEvent {
    pub partner_id: String,
    /// The civil registration system's id of the event (its register entry).
    pub source_id: String,
    /// birth, death, marriage, divorce.
    pub kind: String,
    /// SHA-256 of the event's canonical JSON: a replay must carry the same.
    pub body_hash: String,
    /// The person the event created (birth) or concerns.
    pub person_key: Uuid,
    /// The change request it made (death, marriage, divorce).
    pub change_request: Option<Uuid>,
    /// Unix seconds.
    pub received_at: i64,
}

/// A partner's webhook registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub partner_id: String,
    /// `http://host[:port]/path` the events are POSTed to.
    pub url: String,
    /// The HMAC secret, sealed at rest.
    pub secret_sealed: String,
    /// Change-feed position up to which events have been queued.
    pub cursor: i64,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
}

/// An event to queue for delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    /// The event id (the change feed's): what receivers deduplicate by.
    pub event_id: String,
    /// The change-feed position the event comes from.
    pub position: i64,
    pub person_key: String,
    /// The JSON body sent.
    pub payload: String,
    /// Unix seconds (also the first try, in milliseconds: `created_at * 1000`).
    pub created_at: i64,
}

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    Pending,
    Delivered,
}

impl DeliveryState {
    pub fn code(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
        }
    }

    pub fn from_code(s: &str) -> Option<DeliveryState> {
        match s {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            _ => None,
        }
    }
}

/// One queued event and its delivery history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Queue order (per registry, increasing).
    pub seq: i64,
    pub partner_id: String,
    pub event_id: String,
    pub position: i64,
    pub person_key: String,
    pub payload: String,
    pub state: DeliveryState,
    pub attempts: i64,
    /// Unix milliseconds: not tried again before.
    pub next_attempt_ms: i64,
    /// The receiver's last HTTP status (none: no answer).
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub delivered_at: Option<i64>,
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered 2xx.
    Delivered { at: i64, status: i64 },
    /// No answer or not 2xx: try again at `retry_at_ms` (unix milliseconds).
    Failed { status: Option<i64>, error: String, retry_at_ms: i64 },
}

/// One change of a record as the change feed gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    /// Position in the feed (resume after it).
    pub position: i64,
    pub key: Uuid,
    pub version: i64,
    pub recorded_at: OffsetDateTime,
    pub before: Person,
    pub after: Person,
    /// The record was made from a birth the civil registration system registered (an inbound
    /// `birth` event): its activation is the birth subscribers are told of.
    pub registered_birth: bool,
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
    /// `male` or `female` (the `sex` column, counted by the dashboard without reading the record).
    pub sex: &'static str,
    /// The areas the person lies in (`person_areas` rows): none for a merged record, which
    /// area-scoped searches no longer find.
    pub areas: Vec<String>,
    /// The survivor's record key, for a record merged into another.
    pub merged_into: Option<String>,
}

impl Columns {
    pub fn of(p: &Person) -> Self {
        Columns {
            personal_id: p.personal_id.map(|i| i.to_string()),
            legacy_id: p.record.legacy_id.as_ref().map(|l| l.to_string()),
            status: p.status.code(),
            facts: p.search_facts(),
            sex: p.record.sex.code(),
            areas: if p.merged_into.is_some() { Vec::new() } else { p.areas() },
            merged_into: p.merged_into.clone(),
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

pub(crate) fn permissions_to_text(p: &[dancu_core::access::Permission]) -> String {
    p.iter().map(|r| r.code()).collect::<Vec<_>>().join(",")
}

pub(crate) fn permissions_from_text(s: &str) -> Result<Vec<dancu_core::access::Permission>> {
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            dancu_core::access::Permission::from_code(r).ok_or_else(|| StoreError::Corrupt(format!("permission {r:?}")))
        })
        .collect()
}

pub(crate) fn guarded_to_text(g: &[Guarded]) -> String {
    g.iter().map(|r| r.code()).collect::<Vec<_>>().join(",")
}

pub(crate) fn guarded_from_text(s: &str) -> Result<Vec<Guarded>> {
    const ALL: [Guarded; 7] = [
        Guarded::Name,
        Guarded::BirthDate,
        Guarded::Sex,
        Guarded::Nationality,
        Guarded::Death,
        Guarded::IdReestablishment,
        Guarded::MaritalStatus,
    ];
    s.split(',')
        .filter(|r| !r.is_empty())
        .map(|r| {
            ALL.into_iter().find(|g| g.code() == r).ok_or_else(|| StoreError::Corrupt(format!("guarded change {r:?}")))
        })
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

pub(crate) fn partner_to_json(p: &Partner) -> String {
    serde_json::to_string(p).expect("a partner serializes")
}

pub(crate) fn partner_from_json(s: &str) -> Result<Partner> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("a stored partner does not parse: {e}")))
}

pub(crate) fn now() -> OffsetDateTime {
    // Microsecond precision: what both databases keep.
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap_or(t)
}

// ---------------------------------------------------------------------------------------------
// Residence: households, residence history (bitemporal), residence applications.

pub use dancu_core::residence::{ApplicationState, Procedure, ProcedureKind};

/// Which residence a row records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ResidenceKind {
    /// Thường trú.
    Permanent,
    /// Tạm trú.
    Temporary,
}

impl ResidenceKind {
    pub fn code(self) -> &'static str {
        match self {
            ResidenceKind::Permanent => "permanent",
            ResidenceKind::Temporary => "temporary",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "permanent" => Some(ResidenceKind::Permanent),
            "temporary" => Some(ResidenceKind::Temporary),
            _ => None,
        }
    }
}

/// One version of a residence, bitemporal: `valid_from`/`valid_to` say when it was true,
/// `recorded_at`/`superseded_at` when the register said so. Rows are never changed except to
/// mark them superseded; ending a residence supersedes its open row with a closed copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ResidenceRow {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    #[schema(value_type = String, format = "uuid")]
    pub person_key: Uuid,
    pub kind: ResidenceKind,
    pub address: dancu_core::person::Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "uuid")]
    pub household: Option<Uuid>,
    #[serde(with = "dancu_core::date::iso_date")]
    #[schema(value_type = String, format = Date)]
    pub valid_from: time::Date,
    /// First day it no longer holds (exclusive); none while it holds.
    #[serde(with = "dancu_core::date::iso_date::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub valid_to: Option<time::Date>,
    /// Last day of a temporary residence's registration.
    #[serde(with = "dancu_core::date::iso_date::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub expires_on: Option<time::Date>,
    /// Why it ended (a deletion cause, `moved`, `expired`, `replaced`, `renewed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end_cause: Option<String>,
    /// The application that made this version.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "uuid")]
    pub application: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub superseded_at: Option<OffsetDateTime>,
}

impl ResidenceRow {
    /// Whether the row (as currently recorded) says the residence held on `d`.
    pub fn holds_on(&self, d: time::Date) -> bool {
        self.valid_from <= d && self.valid_to.is_none_or(|t| d < t)
    }
}

/// A member of a household (one membership, with its valid time).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HouseholdMember {
    #[schema(value_type = String, format = "uuid")]
    pub person_key: Uuid,
    pub relationship_to_head: dancu_core::person::HeadRelationship,
    #[serde(with = "dancu_core::date::iso_date")]
    #[schema(value_type = String, format = Date)]
    pub joined_on: time::Date,
    #[serde(with = "dancu_core::date::iso_date::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub left_on: Option<time::Date>,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub recorded_at: OffsetDateTime,
}

/// A household (hộ gia đình): its residence file number, address, head and members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Household {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    /// Số hồ sơ cư trú.
    pub number: String,
    pub address: dancu_core::person::Address,
    /// Record key of the head; none between a head's death or departure and the choice of a new one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "uuid")]
    pub head: Option<Uuid>,
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub created_at: OffsetDateTime,
    /// Every membership, current and past (filled on reads; ignored on writes).
    pub members: Vec<HouseholdMember>,
}

impl Household {
    pub fn current_members(&self) -> impl Iterator<Item = &HouseholdMember> {
        self.members.iter().filter(|m| m.left_on.is_none())
    }
    pub fn is_member(&self, key: Uuid) -> bool {
        self.current_members().any(|m| m.person_key == key)
    }
}

/// A residence application (hồ sơ) and its workflow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct Application {
    #[schema(value_type = String, format = "uuid")]
    pub id: Uuid,
    pub kind: ProcedureKind,
    pub state: ApplicationState,
    pub procedure: Procedure,
    /// Record key of the person concerned (for household procedures: the new head).
    #[schema(value_type = String, format = "uuid")]
    pub person_key: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "uuid")]
    pub household: Option<Uuid>,
    /// Area tokens the application lies in (the officers who handle it).
    pub areas: Vec<String>,
    pub submitted_by: String,
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub submitted_at: OffsetDateTime,
    /// Statutory deadline (working days from the calendar).
    #[serde(with = "dancu_core::date::iso_date")]
    #[schema(value_type = String, format = Date)]
    pub deadline: time::Date,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_by: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub received_at: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    /// The reason of a rejection (or a note on an approval).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision_reason: Option<String>,
    /// A stay notified after its due time (23:00 / 08:00 rule), or a civil-status update filed
    /// more than 30 days after the change was registered.
    #[serde(default)]
    pub late: bool,
    /// For a permanent registration: the permanent residence (history row) the person held when
    /// it was filed. A move is approved only while that is still the person's residence, so of
    /// two moves filed from the same residence exactly one takes effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "uuid")]
    pub replaces_residence: Option<Uuid>,
    /// The household a permanent registration or separation created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = "uuid")]
    pub created_household: Option<Uuid>,
}

/// A query over residence applications; every given filter must hold. Oldest deadline first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationQuery {
    pub state: Option<ApplicationState>,
    /// Only open applications whose deadline lies before this day (overdue on it).
    pub overdue_on: Option<time::Date>,
    pub person_key: Option<Uuid>,
    pub area: Option<String>,
    pub offset: u32,
    pub limit: u32,
}

/// A membership change in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipOpen {
    pub household: Uuid,
    pub person_key: Uuid,
    pub relationship: dancu_core::person::HeadRelationship,
    pub joined_on: time::Date,
}

/// Everything one decision on a residence application changes, applied by the store in one
/// transaction: the application's new state (checked against the state it was read in), the
/// people's records (each at the version read), residence rows ended and begun, households
/// created or changed (at the version read), memberships ended and begun, and the audit entry.
/// Uniqueness constraints (one open permanent and one open temporary residence per person, one
/// open membership per person) hold in the database too: of two concurrent moves, one wins.
#[derive(Debug, Clone, Default)]
pub struct ResidencePlan {
    /// `None`: a new application (inserted).
    pub expected_state: Option<ApplicationState>,
    pub application: Option<Application>,
    pub persons: Vec<(Uuid, i64, Person)>,
    pub meta: Option<ChangeMeta>,
    /// (open row id, its replacement): the open row is marked superseded and the replacement
    /// (e.g. the same residence ended, or renewed) recorded.
    pub supersede: Vec<(Uuid, ResidenceRow)>,
    pub open_residences: Vec<ResidenceRow>,
    /// (household, expected version; `None` = new).
    pub households: Vec<(Household, Option<i64>)>,
    /// (person key, left_on).
    pub close_memberships: Vec<(Uuid, time::Date)>,
    pub open_memberships: Vec<MembershipOpen>,
    pub audit: Option<AuditEntry>,
}

/// A legacy address the 2025 migration could not move by itself (a partial merge): a person
/// decides among the candidate 2025 communes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct AddressReview {
    #[schema(value_type = String, format = "uuid")]
    pub person_key: Uuid,
    /// `permanent_residence`, `temporary_residence` or `current_residence`.
    pub field: String,
    /// The legacy address as it was queued (the record's history keeps it too).
    pub address: dancu_core::person::Address,
    /// 2025 commune codes the old commune went into, in part.
    pub candidates: Vec<String>,
    /// When the migration queued it (set by the store).
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub queued_at: Option<OffsetDateTime>,
    #[serde(default, with = "time::serde::rfc3339::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub resolved_at: Option<OffsetDateTime>,
    /// The officer who chose the commune.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_by: Option<String>,
    /// The 2025 commune chosen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolved_commune_code: Option<String>,
}

/// Which address reviews to list.
#[derive(Debug, Clone, Default)]
pub struct AddressReviewQuery {
    /// `Some(true)`: waiting for a decision; `Some(false)`: resolved; `None`: all.
    pub pending: Option<bool>,
    /// Only people lying in this area (`person_areas`).
    pub area: Option<String>,
    pub person_key: Option<Uuid>,
    pub offset: u32,
    pub limit: u32,
}
