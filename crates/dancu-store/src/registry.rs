//! The registry service: the rules above the storage port. Handlers and the CLI call this,
//! never the store directly for changes: it validates with the core, assigns personal IDs
//! (drawing the random part from the operating system's CSPRNG, retrying on collision), and
//! keeps every change a new version with who, when, why and legal basis.

use std::sync::Arc;
use time::{Date, OffsetDateTime, UtcOffset};
use uuid::Uuid;

use crate::{
    ApprovedChange, ChangeKind, ChangeMeta, ChangeRequest, CivilEvent, Decision, PersonRecord, PersonRef,
    PersonVersion, ProposedChange, RequestState, SearchPage, SearchQuery, Store, StoreError,
};

/// What became of a change an officer asked for.
#[derive(Debug)]
pub enum ChangeOutcome {
    /// Made at once: the new version.
    Applied(PersonRecord),
    /// Held for a second officer's approval.
    Pending(ChangeRequest),
}
use dancu_core::error::{FieldError, ValidationErrors};
use dancu_core::id::random_serial;
use dancu_core::{PartialDate, Person, PersonInput, PersonStatus, PersonalId};

/// Why a registry operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("invalid input: {0}")]
    Invalid(ValidationErrors),
    #[error("no such person")]
    NotFound,
    #[error("the record changed meanwhile: it is at version {actual}, the change was made against version {expected}")]
    Conflict { expected: i64, actual: i64 },
    #[error("the person already holds personal ID {0}")]
    AlreadyActive(PersonalId),
    #[error("could not draw an unused personal ID after {0} attempts")]
    IdSpaceExhausted(u32),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => RegistryError::NotFound,
            StoreError::Conflict { expected, actual } => RegistryError::Conflict { expected, actual },
            other => RegistryError::Store(other),
        }
    }
}

impl From<ValidationErrors> for RegistryError {
    fn from(e: ValidationErrors) -> Self {
        RegistryError::Invalid(e)
    }
}

pub type Result<T> = std::result::Result<T, RegistryError>;

/// Vietnam's civil time (UTC+7, no daylight saving).
pub const VIETNAM_OFFSET: UtcOffset = match UtcOffset::from_hms(7, 0, 0) {
    Ok(o) => o,
    Err(_) => panic!("UTC+7"),
};

/// Today's date in Vietnam.
pub fn today() -> Date {
    OffsetDateTime::now_utc().to_offset(VIETNAM_OFFSET).date()
}

/// A uniform random u32 from the operating system.
fn os_random_u32() -> u32 {
    let mut b = [0u8; 4];
    getrandom::fill(&mut b).expect("the operating system's random source is available");
    u32::from_le_bytes(b)
}

/// Draws a personal ID for a person: legal prefix, century/sex, year, 6 random digits.
pub fn draw_personal_id(person: &Person) -> Result<PersonalId> {
    let prefix = person.id_prefix().ok_or_else(|| {
        ValidationErrors::single(FieldError::new(
            "birth_registration_place",
            "no_id_prefix",
            "a personal ID needs the province where the birth was registered in Việt Nam \
             (births registered abroad need a configured country code)",
        ))
    })?;
    let year = person.record.birth_date.year();
    PersonalId::from_parts(prefix, person.record.sex, year, random_serial(os_random_u32)).map_err(|e| {
        RegistryError::Invalid(ValidationErrors::single(
            FieldError::new("birth_date", e.code(), e.to_string()).with_value(person.record.birth_date.to_string()),
        ))
    })
}

const MAX_ID_ATTEMPTS: u32 = 64;

fn check_meta(meta: &ChangeMeta) -> std::result::Result<ChangeMeta, ValidationErrors> {
    let mut e = ValidationErrors::default();
    let clean = |s: &str| dancu_core::text::clean(s);
    let m = ChangeMeta {
        actor: clean(&meta.actor),
        reason: clean(&meta.reason),
        legal_basis: meta.legal_basis.as_deref().map(clean).filter(|s| !s.is_empty()),
        approved_by: meta.approved_by.clone(),
        audit: meta.audit.clone(),
    };
    if m.actor.is_empty() || m.actor.chars().count() > 100 {
        e.push(FieldError::new("actor", "required", "who makes the change must be named (at most 100 characters)"));
    }
    if m.reason.is_empty() || m.reason.chars().count() > 500 {
        e.push(FieldError::new("reason", "required", "the reason for the change is required (at most 500 characters)"));
    }
    if m.legal_basis.as_ref().is_some_and(|l| l.chars().count() > 500) {
        e.push(FieldError::new("legal_basis", "too_long", "at most 500 characters"));
    }
    e.into_result().map(|()| m)
}

/// The registry service over one store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    calendar: Arc<dancu_core::calendar::HolidayCalendar>,
}

impl Registry {
    /// A registry with Việt Nam's statutory holidays (2000-2100) as its working-day calendar.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry { store, calendar: Arc::new(dancu_core::calendar::HolidayCalendar::vietnam(2000..=2100)) }
    }

    /// The same registry counting deadlines on another calendar (configured holiday schedule).
    pub fn with_calendar(mut self, calendar: dancu_core::calendar::HolidayCalendar) -> Self {
        self.calendar = Arc::new(calendar);
        self
    }

    /// The working-day calendar deadlines are counted on.
    pub fn calendar(&self) -> &dancu_core::calendar::HolidayCalendar {
        &self.calendar
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Records a newly collected person, pending (no personal ID yet).
    pub async fn create(&self, input: PersonInput, meta: &ChangeMeta) -> Result<PersonRecord> {
        let meta = check_meta(meta);
        let input = input.validate(today());
        let (meta, input) = merge(meta, input)?;
        Ok(self.store.insert_person(&Person::new_pending(input), &meta).await?)
    }

    pub async fn get(&self, by: &PersonRef) -> Result<PersonRecord> {
        self.store.get_person(by).await?.ok_or(RegistryError::NotFound)
    }

    /// The current record as stored JSON (the lookup path: nothing to validate or change).
    pub async fn get_raw(&self, by: &PersonRef) -> Result<crate::RawPersonRecord> {
        self.store.get_person_raw(by).await?.ok_or(RegistryError::NotFound)
    }

    /// Assigns the personal ID to a pending person: a number never issued before.
    pub async fn activate(&self, key: Uuid, expected_version: Option<i64>, meta: &ChangeMeta) -> Result<PersonRecord> {
        let meta = check_meta(meta)?;
        let current = self.get(&PersonRef::Key(key)).await?;
        if let Some(id) = current.person.personal_id {
            return Err(RegistryError::AlreadyActive(id));
        }
        if let Some(v) = expected_version.filter(|v| *v != current.version) {
            return Err(RegistryError::Conflict { expected: v, actual: current.version });
        }
        for _ in 0..MAX_ID_ATTEMPTS {
            let mut person = current.person.clone();
            person.personal_id = Some(draw_personal_id(&person)?);
            person.status = PersonStatus::Active;
            match self.store.update_person(key, current.version, &person, ChangeKind::Activate, &meta).await {
                Err(StoreError::IdTaken(_)) => continue,
                Err(StoreError::Conflict { .. }) => {
                    // Someone else changed (or activated) it meanwhile: report what it is now.
                    let now = self.get(&PersonRef::Key(key)).await?;
                    return Err(match now.person.personal_id {
                        Some(id) => RegistryError::AlreadyActive(id),
                        None => RegistryError::Conflict { expected: current.version, actual: now.version },
                    });
                }
                other => return Ok(other?),
            }
        }
        Err(RegistryError::IdSpaceExhausted(MAX_ID_ATTEMPTS))
    }

    /// Replaces the recorded items of a person (a new version), optionally changing status.
    /// `expected_version` must be the version the caller read (optimistic concurrency).
    pub async fn update(
        &self,
        key: Uuid,
        expected_version: i64,
        input: PersonInput,
        status: Option<(PersonStatus, Option<PartialDate>)>,
        meta: &ChangeMeta,
    ) -> Result<PersonRecord> {
        let meta = check_meta(meta);
        let input = input.validate(today());
        let (meta, input) = merge(meta, input)?;
        let current = self.get(&PersonRef::Key(key)).await?;
        if current.version != expected_version {
            return Err(RegistryError::Conflict { expected: expected_version, actual: current.version });
        }
        let mut person = current.person.clone();
        person.record = input;
        if let Some((to, date)) = status {
            current.person.check_status_change(to, date, today())?;
            person.status = to;
            person.status_date = date;
        }
        if let Some(id) = person.personal_id
            && let Err(e) = id.check_matches(person.record.sex, person.record.birth_date.year())
        {
            let field = if id.sex() != person.record.sex { "sex" } else { "birth_date" };
            return Err(ValidationErrors::single(FieldError::new(
                field,
                "contradicts_personal_id",
                format!("{e}; changing this needs the personal ID to be re-established"),
            ))
            .into());
        }
        Ok(self.store.update_person(key, expected_version, &person, ChangeKind::Update, &meta).await?)
    }

    /// A change as an officer asks for it: applied at once, unless it touches what needs a
    /// second officer (name, birth date, sex, nationality, death, a new personal ID — see
    /// `dancu_core::access::guarded_changes`); then it is validated and held for approval.
    /// `requested_unit` is the requesting officer's unit.
    pub async fn change(
        &self,
        key: Uuid,
        expected_version: i64,
        proposed: ProposedChange,
        meta: &ChangeMeta,
        requested_unit: &str,
    ) -> Result<ChangeOutcome> {
        let current = self.get(&PersonRef::Key(key)).await?;
        let guarded = dancu_core::access::guarded_changes(
            &current.person,
            &proposed.person,
            proposed.status,
            proposed.reestablish_id,
        );
        if proposed.reestablish_id && current.person.personal_id.is_none() {
            return Err(ValidationErrors::single(FieldError::new(
                "reestablish_id",
                "no_personal_id",
                "the person has no personal ID yet: activation assigns the first one",
            ))
            .into());
        }
        if guarded.is_empty() {
            let status = proposed.status.map(|s| (s, proposed.status_date));
            return Ok(ChangeOutcome::Applied(
                self.update(key, expected_version, proposed.person, status, meta).await?,
            ));
        }
        // Validate now, so that the approver decides on a change that can be applied.
        let checked = check_meta(meta);
        let input = proposed.person.validate(today());
        let (meta, input) = merge(checked, input)?;
        if current.version != expected_version {
            return Err(RegistryError::Conflict { expected: expected_version, actual: current.version });
        }
        let proposed = ProposedChange { person: input, ..proposed };
        self.apply_proposal(&current.person, &proposed, false)?;
        if let Some((to, date)) = proposed.status.map(|s| (s, proposed.status_date)) {
            current.person.check_status_change(to, date, today())?;
        }
        let request = ChangeRequest {
            id: crate::new_key(),
            person_key: key,
            base_version: current.version,
            guarded,
            proposed,
            requested_by: meta.actor.clone(),
            requested_unit: requested_unit.to_string(),
            requested_at: crate::now(),
            reason: meta.reason.clone(),
            legal_basis: meta.legal_basis.clone(),
            state: RequestState::Pending,
            decided_by: None,
            decided_at: None,
            decision_note: None,
            result_version: None,
        };
        self.store.change_request_insert(&request, meta.audit.as_ref()).await?;
        Ok(ChangeOutcome::Pending(request))
    }

    /// A registered birth sent by the civil registration system: the child's record is created
    /// pending (an officer's activation assigns the personal ID), together with the event, in one
    /// transaction. `false`: the source id was seen before, nothing was created and the stored
    /// event is returned (the caller compares the bodies).
    pub async fn civil_birth(
        &self,
        event: CivilEvent,
        input: PersonInput,
        meta: &ChangeMeta,
    ) -> Result<(CivilEvent, bool)> {
        let meta = check_meta(meta);
        let input = input.validate(today());
        let (meta, input) = merge(meta, input)?;
        Ok(self.store.civil_birth(&event, &Person::new_pending(input), &meta).await?)
    }

    /// A death, marriage or divorce sent by the civil registration system: validated now, and
    /// held as a change request for an officer of `requested_unit` (or above) to approve, stored
    /// with the event in one transaction. A marriage needs a person not married, a divorce a
    /// married one; a death a person not yet dead.
    pub async fn civil_change(
        &self,
        mut event: CivilEvent,
        status: Option<(PersonStatus, PartialDate)>,
        marital: Option<dancu_core::person::MaritalStatus>,
        meta: &ChangeMeta,
        requested_unit: &str,
    ) -> Result<(CivilEvent, bool)> {
        use dancu_core::person::MaritalStatus;
        let meta = check_meta(meta)?;
        let current = self.get(&PersonRef::Key(event.person_key)).await?;
        let mut input = current.person.record.clone();
        let mut guarded = Vec::new();
        if let Some((to, date)) = status {
            if to == current.person.status {
                return Err(ValidationErrors::single(FieldError::new(
                    "personal_id",
                    "same_status",
                    format!("the register holds this person as {} already", to.code()),
                ))
                .into());
            }
            current.person.check_status_change(to, Some(date), today())?;
            if to == PersonStatus::Dead {
                guarded.push(dancu_core::access::Guarded::Death);
            }
        }
        if let Some(m) = marital {
            let was = input.marital_status;
            let refusal = match m {
                MaritalStatus::Married if was == Some(MaritalStatus::Married) => {
                    Some(("already_married", "the register holds this person as married already"))
                }
                MaritalStatus::Divorced if was != Some(MaritalStatus::Married) => {
                    Some(("not_married", "the register does not hold this person as married"))
                }
                _ => None,
            };
            if let Some((code, reason)) = refusal {
                return Err(ValidationErrors::single(FieldError::new("personal_id", code, reason)).into());
            }
            if current.person.status != PersonStatus::Active {
                return Err(ValidationErrors::single(FieldError::new(
                    "personal_id",
                    "not_active",
                    "the register holds this person as dead, missing or not yet active",
                ))
                .into());
            }
            input.marital_status = Some(m);
            guarded.push(dancu_core::access::Guarded::MaritalStatus);
        }
        let proposed = ProposedChange {
            person: input,
            status: status.map(|s| s.0),
            status_date: status.map(|s| s.1),
            reestablish_id: false,
        };
        let request = ChangeRequest {
            id: crate::new_key(),
            person_key: event.person_key,
            base_version: current.version,
            guarded,
            proposed,
            requested_by: meta.actor.clone(),
            requested_unit: requested_unit.to_string(),
            requested_at: crate::now(),
            reason: meta.reason.clone(),
            legal_basis: meta.legal_basis.clone(),
            state: RequestState::Pending,
            decided_by: None,
            decided_at: None,
            decision_note: None,
            result_version: None,
        };
        event.change_request = Some(request.id);
        Ok(self.store.civil_change(&event, &request, meta.audit.as_ref()).await?)
    }

    /// The person a proposal makes of `current` (a new personal ID drawn when asked and
    /// `draw` is set). Refuses a record that contradicts its personal ID without re-establishment.
    fn apply_proposal(&self, current: &Person, p: &ProposedChange, draw: bool) -> Result<Person> {
        let mut person = current.clone();
        person.record = p.person.clone();
        if let Some(to) = p.status {
            person.status = to;
            person.status_date = p.status_date;
        }
        if p.reestablish_id {
            if draw {
                person.personal_id = Some(draw_personal_id(&person)?);
            } else {
                // The new number must be possible: the record needs a lawful prefix and year.
                draw_personal_id(&person)?;
            }
            return Ok(person);
        }
        if let Some(id) = person.personal_id
            && let Err(e) = id.check_matches(person.record.sex, person.record.birth_date.year())
        {
            let field = if id.sex() != person.record.sex { "sex" } else { "birth_date" };
            return Err(ValidationErrors::single(FieldError::new(
                field,
                "contradicts_personal_id",
                format!("{e}; ask for the personal ID to be re-established (reestablish_id: true)"),
            ))
            .into());
        }
        Ok(person)
    }

    /// Decides a pending change request. Approval applies the change (drawing the new personal
    /// ID for a re-establishment) in the same transaction as the decision; the version records
    /// both the requesting and the approving officer. Who may decide is the caller's check
    /// (`dancu_core::access::may_decide`).
    pub async fn decide(&self, id: Uuid, decision: Decision) -> Result<ChangeRequest> {
        let request = self.store.change_request_get(id).await?.ok_or(RegistryError::NotFound)?;
        if request.state != RequestState::Pending {
            return Err(StoreError::State(format!("the request is already {}", request.state.code())).into());
        }
        if decision.state != RequestState::Approved {
            return Ok(self.store.change_request_decide(id, &decision, None).await?);
        }
        let current = self.get(&PersonRef::Key(request.person_key)).await?;
        if current.version != request.base_version {
            return Err(RegistryError::Conflict { expected: request.base_version, actual: current.version });
        }
        let kind = if request.proposed.reestablish_id { ChangeKind::Reestablish } else { ChangeKind::Update };
        let meta = ChangeMeta {
            actor: request.requested_by.clone(),
            reason: request.reason.clone(),
            legal_basis: request.legal_basis.clone(),
            approved_by: Some(decision.by.clone()),
            audit: None,
        };
        for _ in 0..MAX_ID_ATTEMPTS {
            let person = self.apply_proposal(&current.person, &request.proposed, true)?;
            let change = ApprovedChange { person, kind, meta: meta.clone() };
            match self.store.change_request_decide(id, &decision, Some(&change)).await {
                Err(StoreError::IdTaken(_)) => continue,
                other => return Ok(other?),
            }
        }
        Err(RegistryError::IdSpaceExhausted(MAX_ID_ATTEMPTS))
    }

    /// Decides a clerical review pair. `same` merges: the record to keep (the survivor) is the
    /// one holding a personal ID, else the one recorded first; the other gets a new version naming
    /// the survivor (`merged_into`), keeps its history and any personal ID it held (that number
    /// stays reserved forever), and is no longer found by search. `different` keeps both.
    /// Who may decide is the caller's check.
    pub async fn decide_review(
        &self,
        id: Uuid,
        same: bool,
        by: &str,
        note: Option<String>,
        audit: Option<dancu_core::audit::AuditEntry>,
    ) -> Result<crate::ReviewPair> {
        let pair = self.store.review_pair_get(id).await?.ok_or(RegistryError::NotFound)?;
        if pair.state != crate::ReviewState::Pending {
            return Err(StoreError::State(format!("the pair is already decided ({})", pair.state.code())).into());
        }
        let meta = check_meta(&ChangeMeta::new(
            by,
            format!("Hợp nhất bản ghi trùng / duplicate record merged (review pair {id})"),
            None,
        ))?;
        let mut decision = crate::ReviewDecision {
            state: if same { crate::ReviewState::Same } else { crate::ReviewState::Different },
            by: by.to_string(),
            note,
            audit,
            merge: None,
            meta,
        };
        if same {
            let a = self.survivor_of(pair.a).await?;
            let b = self.survivor_of(pair.b).await?;
            if a.key != b.key {
                let a_first = match (a.person.personal_id.is_some(), b.person.personal_id.is_some()) {
                    (true, false) => true,
                    (false, true) => false,
                    _ => (a.created_at, a.key) <= (b.created_at, b.key),
                };
                let (keep, dup) = if a_first { (a, b) } else { (b, a) };
                let mut merged = dup.person.clone();
                merged.merged_into = Some(keep.key.to_string());
                decision.merge = Some((dup.key, dup.version, merged, keep.key));
            }
        }
        Ok(self.store.review_pair_decide(id, &decision).await?)
    }

    /// The record a record was merged into, following the chain (the record itself if none).
    pub async fn survivor_of(&self, key: Uuid) -> Result<PersonRecord> {
        let mut rec = self.get(&PersonRef::Key(key)).await?;
        for _ in 0..16 {
            let Some(next) = rec.person.merged_into.as_deref().and_then(|k| Uuid::parse_str(k).ok()) else {
                return Ok(rec);
            };
            rec = self.get(&PersonRef::Key(next)).await?;
        }
        Err(StoreError::Corrupt("a chain of merged records is longer than 16".into()).into())
    }

    pub async fn history(&self, key: Uuid) -> Result<Vec<PersonVersion>> {
        let h = self.store.history(key).await?;
        if h.is_empty() {
            return Err(RegistryError::NotFound);
        }
        Ok(h)
    }

    pub async fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        Ok(self.store.search(q).await?)
    }

    /// Records many collected people at once, pending (bulk intake). Every record is validated;
    /// one invalid record refuses the batch, naming it (`[index].field`). Returns how many.
    pub async fn load_pending(&self, inputs: Vec<PersonInput>, meta: &ChangeMeta) -> Result<usize> {
        let meta = check_meta(meta)?;
        let today = today();
        let mut people = Vec::with_capacity(inputs.len());
        for (i, input) in inputs.into_iter().enumerate() {
            let valid = input.validate(today).map_err(|mut e| {
                for f in e.0.iter_mut() {
                    f.field = format!("[{i}].{}", f.field);
                }
                RegistryError::Invalid(e)
            })?;
            people.push(Person::new_pending(valid));
        }
        self.store.insert_batch(&people, &meta).await?;
        Ok(people.len())
    }

    /// Loads already-validated people as active, assigning each a fresh personal ID
    /// (bulk seeding). Returns how many were stored.
    pub async fn load_active(&self, inputs: Vec<PersonInput>, meta: &ChangeMeta) -> Result<usize> {
        let meta = check_meta(meta)?;
        let mut people = inputs
            .into_iter()
            .map(|r| {
                let mut p = Person::new_pending(r);
                p.personal_id = Some(draw_personal_id(&p)?);
                p.status = PersonStatus::Active;
                Ok(p)
            })
            .collect::<Result<Vec<_>>>()?;
        let total = people.len();
        for _ in 0..MAX_ID_ATTEMPTS {
            // Collisions inside the batch itself are redrawn before the store sees them.
            let mut seen = std::collections::HashSet::with_capacity(people.len());
            for p in people.iter_mut() {
                while !seen.insert(p.personal_id.expect("drawn")) {
                    p.personal_id = Some(draw_personal_id(p)?);
                }
            }
            let taken = self.store.insert_batch(&people, &meta).await?;
            if taken.is_empty() {
                return Ok(total);
            }
            people = taken.into_iter().map(|i| people[i].clone()).collect();
            for p in people.iter_mut() {
                p.personal_id = Some(draw_personal_id(p)?);
            }
        }
        Err(RegistryError::IdSpaceExhausted(MAX_ID_ATTEMPTS))
    }
}

fn merge<A>(
    a: std::result::Result<A, ValidationErrors>,
    b: std::result::Result<PersonInput, ValidationErrors>,
) -> std::result::Result<(A, PersonInput), ValidationErrors> {
    match (a, b) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(mut x), Err(y)) => {
            x.0.extend(y.0);
            Err(x)
        }
        (Err(x), _) | (_, Err(x)) => Err(x),
    }
}
