//! The residence service: residence applications (submit → receive → approve / reject), their
//! statutory deadlines from the working-day calendar, the rules that need stored state, and the
//! plan each approval applies in one transaction (person records, residence history,
//! households). Queries: where a person lived on a date, who lived at an address on a date.
//!
//! Rules checked here (at submission, and again at the decision against the state then):
//! one permanent residence per person at a time (a second needs `moving`, which ends the first
//! in the same transaction); joining a household needs its head's consent; a head is a member;
//! no one is in two households; separation needs an adult new head and the head's consent
//! (except a divorced spouse); temporary residence only outside the permanent commune; a death
//! or settling abroad ends every residence.

use std::collections::HashMap;
use time::{Date, Duration, OffsetDateTime};
use uuid::Uuid;

use crate::registry::{Registry, RegistryError, Result, today};
use crate::{
    Application, ApplicationQuery, ApplicationState, ChangeMeta, Household, MembershipOpen, PersonRecord, PersonRef,
    Procedure, ResidenceKind, ResidencePlan, ResidenceRow,
};
use dancu_core::audit::AuditEntry;
use dancu_core::error::{FieldError, ValidationErrors};
use dancu_core::person::{Address, HeadRelationship, HouseholdLink, TemporaryAbsence};
use dancu_core::residence::{
    self as rules, AbsenceCase, HouseholdChoice, PermanentDeletionCause, TemporaryDeletionCause,
};
use dancu_core::{PersonStatus, PersonalId};

/// The legal basis recorded on every version a residence procedure makes.
pub const LEGAL_BASIS: &str = "Luật Cư trú 2020; Nghị định 62/2021/NĐ-CP; Nghị định 154/2024/NĐ-CP";

fn invalid(field: impl Into<String>, code: &'static str, reason: impl Into<String>) -> RegistryError {
    RegistryError::Invalid(ValidationErrors::single(FieldError::new(field, code, reason)))
}

fn invalid_v(field: impl Into<String>, code: &'static str, reason: impl Into<String>, v: String) -> RegistryError {
    RegistryError::Invalid(ValidationErrors::single(FieldError::new(field, code, reason).with_value(v)))
}

/// A decision on an application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Approve,
    Reject,
}

/// Where a person lived on a day.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ResidenceOn {
    #[serde(with = "dancu_core::date::iso_date")]
    #[schema(value_type = String, format = Date)]
    pub on: Date,
    pub residences: Vec<ResidenceRow>,
}

struct Loaded {
    rec: PersonRecord,
    rows: Vec<ResidenceRow>,
}

impl Loaded {
    fn open(&self, kind: ResidenceKind) -> Option<&ResidenceRow> {
        self.rows.iter().find(|r| r.kind == kind && r.valid_to.is_none())
    }
    fn address(&self, kind: ResidenceKind) -> Option<&Address> {
        match kind {
            ResidenceKind::Permanent => self.rec.person.record.permanent_residence.as_ref(),
            ResidenceKind::Temporary => self.rec.person.record.temporary_residence.as_ref(),
        }
        .or(self.open(kind).map(|r| &r.address))
    }
}

/// Ends a person's current residence of a kind in the plan: supersedes its open row with an
/// ended copy, or — for a residence known only from the record (collected before residence
/// history was kept) — records it as held from the record's creation to `valid_to`.
fn end_residence(
    plan: &mut ResidencePlan,
    l: &Loaded,
    kind: ResidenceKind,
    valid_to: Date,
    cause: &str,
    app: Option<Uuid>,
) {
    if let Some(row) = l.open(kind) {
        let ended = ResidenceRow {
            id: crate::new_key(),
            valid_to: Some(valid_to.max(row.valid_from)),
            end_cause: Some(cause.to_string()),
            application: app.or(row.application),
            ..row.clone()
        };
        plan.supersede.push((row.id, ended));
    } else if let Some(address) = l.address(kind) {
        let from = l.rec.created_at.to_offset(crate::registry::VIETNAM_OFFSET).date().min(valid_to);
        plan.open_residences.push(ResidenceRow {
            id: crate::new_key(),
            person_key: l.rec.key,
            kind,
            address: address.clone(),
            household: None,
            valid_from: from,
            valid_to: Some(valid_to),
            expires_on: None,
            end_cause: Some(cause.to_string()),
            application: app,
            recorded_at: crate::now(),
            superseded_at: None,
        });
    }
}

fn new_row(person: Uuid, kind: ResidenceKind, address: &Address, from: Date, app: Uuid) -> ResidenceRow {
    ResidenceRow {
        id: crate::new_key(),
        person_key: person,
        kind,
        address: address.clone(),
        household: None,
        valid_from: from,
        valid_to: None,
        expires_on: None,
        end_cause: None,
        application: Some(app),
        recorded_at: crate::now(),
        superseded_at: None,
    }
}

fn household_number(address: &Address, id: Uuid) -> String {
    // Commune code + the last 12 hex digits of the (random part of the) household key.
    let hex = id.simple().to_string();
    format!("{}{}", address.commune_code, &hex[20..]).to_ascii_uppercase()
}

fn parse_household_id(field: &str, s: &str) -> Result<Uuid> {
    Uuid::parse_str(s.trim()).map_err(|_| {
        invalid_v(field, "unknown_household", "no such household (give the household's key)", s.to_string())
    })
}

fn age_years(p: &dancu_core::Person, on: Date) -> i32 {
    match p.record.birth_date.full() {
        Some(b) => rules::age_on(b, on),
        None => on.year() - p.record.birth_date.year(),
    }
}

/// Changes to persons, gathered by key (one version per person per plan).
#[derive(Default)]
struct PersonChanges(HashMap<Uuid, (i64, dancu_core::Person)>);

impl PersonChanges {
    fn get(&mut self, rec: &PersonRecord) -> &mut dancu_core::Person {
        &mut self.0.entry(rec.key).or_insert_with(|| (rec.version, rec.person.clone())).1
    }
    fn into_plan(self, plan: &mut ResidencePlan) {
        let mut v: Vec<(Uuid, i64, dancu_core::Person)> = self.0.into_iter().map(|(k, (v, p))| (k, v, p)).collect();
        v.sort_by_key(|(k, _, _)| *k); // a fixed lock order between concurrent plans
        plan.persons = v;
    }
}

fn clear_permanent(p: &mut dancu_core::Person) {
    p.record.permanent_residence = None;
    p.record.household = None;
    p.record.residence_file_number = None;
}

impl Registry {
    async fn load_person(&self, field: &str, id: PersonalId) -> Result<Loaded> {
        let rec =
            self.store().get_person(&PersonRef::PersonalId(id)).await?.ok_or_else(|| {
                invalid_v(field, "unknown_person", "no person holds this personal ID", id.to_string())
            })?;
        let rows = self.store().residences(rec.key, None).await?;
        Ok(Loaded { rec, rows })
    }

    async fn load_household(&self, field: &str, s: &str) -> Result<Household> {
        let id = parse_household_id(field, s)?;
        self.store()
            .household_get(id)
            .await?
            .ok_or_else(|| invalid_v(field, "unknown_household", "no such household", s.to_string()))
    }

    async fn person_by_key(&self, key: Uuid) -> Result<PersonRecord> {
        self.store().get_person(&PersonRef::Key(key)).await?.ok_or(RegistryError::NotFound)
    }

    fn alive(l: &Loaded, field: &str) -> Result<()> {
        match l.rec.person.status {
            PersonStatus::Active => Ok(()),
            PersonStatus::Pending => Err(invalid(field, "no_personal_id", "the person has no personal ID yet")),
            s => Err(invalid_v(
                field,
                "not_living",
                "the person is recorded dead or missing: only the deletion of residence is possible",
                s.code().to_string(),
            )),
        }
    }

    /// Checks an application against the stored state and computes what its approval changes.
    /// `app` carries the id the plan records; `on` is the day the change takes effect.
    async fn plan_for(&self, app: &Application, on: Date) -> Result<ResidencePlan> {
        let mut plan = ResidencePlan::default();
        let mut people = PersonChanges::default();
        let a = Some(app.id);
        match &app.procedure {
            Procedure::PermanentRegistration { person, address, household, moving, consent } => {
                let l = self.load_person("procedure.person", *person).await?;
                Self::alive(&l, "procedure.person")?;
                if l.open(ResidenceKind::Permanent).map(|r| r.id) != app.replaces_residence {
                    return Err(crate::StoreError::State(
                        "the person's permanent residence changed after the application was filed (another move or \
                         deletion took effect): file a new application"
                            .into(),
                    )
                    .into());
                }
                if let Some(current) = l.address(ResidenceKind::Permanent) {
                    if current == address {
                        return Err(invalid(
                            "procedure.address",
                            "already_registered",
                            "the person's permanent residence is already this address",
                        ));
                    }
                    if !*moving {
                        return Err(invalid(
                            "procedure.moving",
                            "permanent_residence_exists",
                            "the person already has a permanent residence; one person has one permanent residence \
                             at a time — register a move (moving: true), which ends the current one",
                        ));
                    }
                    end_residence(&mut plan, &l, ResidenceKind::Permanent, on, "moved", a);
                }
                if let Some(t) = l.open(ResidenceKind::Temporary).or(None)
                    && rules::same_commune(&t.address, address)
                {
                    end_residence(&mut plan, &l, ResidenceKind::Temporary, on, "permanent_registered", a);
                    people.get(&l.rec).record.temporary_residence = None;
                }
                let current_household = self.store().household_of(l.rec.key).await?;
                if let Some(h) = current_household {
                    if !*moving {
                        return Err(invalid_v(
                            "procedure.person",
                            "in_another_household",
                            "the person belongs to another household; a person is in one household only",
                            h.to_string(),
                        ));
                    }
                    self.leave_household(&mut plan, &mut people, h, l.rec.key, on).await?;
                }
                let mut row = new_row(l.rec.key, ResidenceKind::Permanent, address, on, app.id);
                let (hh_id, number, link) = match household {
                    HouseholdChoice::New { .. } => {
                        let id = crate::new_key();
                        let number = household_number(address, id);
                        plan.households.push((
                            Household {
                                id,
                                number: number.clone(),
                                address: address.clone(),
                                head: Some(l.rec.key),
                                version: 1,
                                created_at: crate::now(),
                                members: vec![],
                            },
                            None,
                        ));
                        let link = HouseholdLink {
                            relationship_to_head: HeadRelationship::Head,
                            head_name: l.rec.person.record.name.full(),
                            head_personal_id: l.rec.person.personal_id,
                        };
                        (id, number, link)
                    }
                    HouseholdChoice::Join { household, relationship_to_head } => {
                        let h = self.load_household("procedure.household.household", household).await?;
                        let Some(head_key) = h.head else {
                            return Err(invalid(
                                "procedure.household.household",
                                "no_head",
                                "the household has no head at present: change the head first",
                            ));
                        };
                        let head = self.person_by_key(head_key).await?;
                        let c = consent.as_ref().ok_or_else(|| {
                            invalid("procedure.consent", "consent_required", "joining needs the head's consent")
                        })?;
                        if c.personal_id != head.person.personal_id {
                            return Err(invalid(
                                "procedure.consent.personal_id",
                                "not_the_head",
                                "the consent must be given by the household head (their personal ID)",
                            ));
                        }
                        if !rules::same_commune(&h.address, address) {
                            return Err(invalid(
                                "procedure.address",
                                "not_household_address",
                                "a person joining a household registers at the household's address",
                            ));
                        }
                        let link = HouseholdLink {
                            relationship_to_head: *relationship_to_head,
                            head_name: head.person.record.name.full(),
                            head_personal_id: head.person.personal_id,
                        };
                        (h.id, h.number, link)
                    }
                };
                row.household = Some(hh_id);
                plan.open_residences.push(row);
                plan.open_memberships.push(MembershipOpen {
                    household: hh_id,
                    person_key: l.rec.key,
                    relationship: link.relationship_to_head,
                    joined_on: on,
                });
                let p = people.get(&l.rec);
                p.record.permanent_residence = Some(address.clone());
                p.record.residence_file_number = Some(number);
                p.record.household = Some(link);
            }
            Procedure::TemporaryRegistration { person, address, until, .. } => {
                let l = self.load_person("procedure.person", *person).await?;
                Self::alive(&l, "procedure.person")?;
                if l.address(ResidenceKind::Permanent).is_some_and(|p| rules::same_commune(p, address)) {
                    return Err(invalid(
                        "procedure.address",
                        "in_permanent_commune",
                        "temporary residence is registered only outside the commune of permanent residence",
                    ));
                }
                if l.address(ResidenceKind::Temporary).is_some() {
                    end_residence(&mut plan, &l, ResidenceKind::Temporary, on, "replaced", a);
                }
                let mut row = new_row(l.rec.key, ResidenceKind::Temporary, address, on, app.id);
                row.expires_on = Some(*until);
                plan.open_residences.push(row);
                people.get(&l.rec).record.temporary_residence = Some(address.clone());
            }
            Procedure::TemporaryRenewal { person, until } => {
                let l = self.load_person("procedure.person", *person).await?;
                Self::alive(&l, "procedure.person")?;
                let Some(row) = l.open(ResidenceKind::Temporary) else {
                    return Err(invalid(
                        "procedure.person",
                        "no_temporary_residence",
                        "the person has no registered temporary residence to renew",
                    ));
                };
                if row.expires_on.is_some_and(|e| *until <= e) {
                    return Err(invalid_v(
                        "procedure.until",
                        "not_later",
                        "a renewal must end after the current registration",
                        dancu_core::date::iso_date::format(*until),
                    ));
                }
                // The same residence, now registered until a later day (valid time unchanged).
                let renewed =
                    ResidenceRow { id: crate::new_key(), expires_on: Some(*until), application: a, ..row.clone() };
                plan.supersede.push((row.id, renewed));
            }
            Procedure::StayNotification { person, .. } => {
                let l = self.load_person("procedure.person", *person).await?;
                Self::alive(&l, "procedure.person")?;
            }
            Procedure::TemporaryAbsence { person, case, from, until, destination, .. } => {
                let l = self.load_person("procedure.person", *person).await?;
                Self::alive(&l, "procedure.person")?;
                if l.address(ResidenceKind::Permanent).is_none() {
                    return Err(invalid(
                        "procedure.person",
                        "no_permanent_residence",
                        "a temporary absence is declared at the commune of permanent residence; the person has none",
                    ));
                }
                if *case == AbsenceCase::MilitaryAge && !rules::MILITARY_AGE.contains(&age_years(&l.rec.person, *from))
                {
                    return Err(invalid(
                        "procedure.case",
                        "not_military_age",
                        "the person is not of military-service age (18 to 27) on the day of leaving",
                    ));
                }
                people.get(&l.rec).record.temporary_absence =
                    Some(TemporaryAbsence { from: *from, until: *until, destination: Some(destination.clone()) });
            }
            Procedure::HouseholdSeparation {
                household,
                members,
                new_head,
                consent,
                divorced_spouse,
                relationships,
            } => {
                let h = self.load_household("procedure.household", household).await?;
                let head_key = h.head;
                let mut loaded = Vec::new();
                for (i, m) in members.iter().enumerate() {
                    let field = format!("procedure.members[{i}]");
                    let l = self.load_person(&field, *m).await?;
                    Self::alive(&l, &field)?;
                    if !h.is_member(l.rec.key) {
                        return Err(invalid_v(field, "not_a_member", "not a member of the household", m.to_string()));
                    }
                    if Some(l.rec.key) == head_key {
                        return Err(invalid_v(
                            field,
                            "is_head",
                            "the head stays in the household; the members who leave form the new one",
                            m.to_string(),
                        ));
                    }
                    loaded.push(l);
                }
                let nh = loaded.iter().find(|l| l.rec.person.personal_id == Some(*new_head)).ok_or_else(|| {
                    invalid_v(
                        "procedure.new_head",
                        "not_a_member",
                        "the new head must be among the members",
                        new_head.to_string(),
                    )
                })?;
                if age_years(&nh.rec.person, on) < 18 {
                    return Err(invalid(
                        "procedure.new_head",
                        "not_adult",
                        "the head of a separated household must be an adult (18 or older)",
                    ));
                }
                if *divorced_spouse {
                    let rel = h.current_members().find(|m| m.person_key == nh.rec.key).map(|m| m.relationship_to_head);
                    let divorced =
                        nh.rec.person.record.marital_status == Some(dancu_core::person::MaritalStatus::Divorced);
                    if rel != Some(HeadRelationship::Spouse) && !divorced {
                        return Err(invalid(
                            "procedure.divorced_spouse",
                            "not_divorced_spouse",
                            "the new head is not recorded as the head's spouse nor as divorced: the head's consent is needed",
                        ));
                    }
                } else {
                    let head = match head_key {
                        Some(k) => Some(self.person_by_key(k).await?),
                        None => None,
                    };
                    let c = consent.as_ref().ok_or_else(|| {
                        invalid("procedure.consent", "consent_required", "separation needs the head's consent")
                    })?;
                    if head.is_some_and(|hd| c.personal_id != hd.person.personal_id) {
                        return Err(invalid(
                            "procedure.consent.personal_id",
                            "not_the_head",
                            "the consent must be given by the household head (their personal ID)",
                        ));
                    }
                }
                let rel_of: HashMap<PersonalId, HeadRelationship> =
                    relationships.iter().map(|r| (r.person, r.relationship)).collect();
                let id = crate::new_key();
                let number = household_number(&h.address, id);
                plan.households.push((
                    Household {
                        id,
                        number: number.clone(),
                        address: h.address.clone(),
                        head: Some(nh.rec.key),
                        version: 1,
                        created_at: crate::now(),
                        members: vec![],
                    },
                    None,
                ));
                let head_name = nh.rec.person.record.name.full();
                let head_pid = nh.rec.person.personal_id;
                for (i, l) in loaded.iter().enumerate() {
                    let is_head = l.rec.person.personal_id == Some(*new_head);
                    let relationship = if is_head {
                        HeadRelationship::Head
                    } else {
                        let pid = l.rec.person.personal_id.expect("members are active");
                        *rel_of.get(&pid).ok_or_else(|| {
                            invalid_v(
                                "procedure.relationships",
                                "missing_member",
                                format!("give the relationship to the new head of members[{i}]"),
                                pid.to_string(),
                            )
                        })?
                    };
                    plan.close_memberships.push((l.rec.key, on));
                    plan.open_memberships.push(MembershipOpen {
                        household: id,
                        person_key: l.rec.key,
                        relationship,
                        joined_on: on,
                    });
                    let p = people.get(&l.rec);
                    p.record.residence_file_number = Some(number.clone());
                    p.record.household = Some(HouseholdLink {
                        relationship_to_head: relationship,
                        head_name: head_name.clone(),
                        head_personal_id: head_pid,
                    });
                }
            }
            Procedure::HeadChange { household, new_head, relationships } => {
                let h = self.load_household("procedure.household", household).await?;
                let nh = self.load_person("procedure.new_head", *new_head).await?;
                Self::alive(&nh, "procedure.new_head")?;
                if !h.is_member(nh.rec.key) {
                    return Err(invalid_v(
                        "procedure.new_head",
                        "not_a_member",
                        "the household head must be a member of the household",
                        new_head.to_string(),
                    ));
                }
                if h.head == Some(nh.rec.key) {
                    return Err(invalid("procedure.new_head", "already_head", "this person is the head already"));
                }
                let rel_of: HashMap<PersonalId, HeadRelationship> =
                    relationships.iter().map(|r| (r.person, r.relationship)).collect();
                let mut listed = 0;
                let head_name = nh.rec.person.record.name.full();
                for m in h.current_members() {
                    let rec = self.person_by_key(m.person_key).await?;
                    let relationship = if m.person_key == nh.rec.key {
                        HeadRelationship::Head
                    } else {
                        let pid = rec.person.personal_id.ok_or(RegistryError::NotFound)?;
                        listed += 1;
                        *rel_of.get(&pid).ok_or_else(|| {
                            invalid_v(
                                "procedure.relationships",
                                "missing_member",
                                "give every other member's relationship to the new head",
                                pid.to_string(),
                            )
                        })?
                    };
                    plan.close_memberships.push((m.person_key, on));
                    plan.open_memberships.push(MembershipOpen {
                        household: h.id,
                        person_key: m.person_key,
                        relationship,
                        joined_on: on,
                    });
                    people.get(&rec).record.household = Some(HouseholdLink {
                        relationship_to_head: relationship,
                        head_name: head_name.clone(),
                        head_personal_id: nh.rec.person.personal_id,
                    });
                }
                if listed != rel_of.len() {
                    return Err(invalid(
                        "procedure.relationships",
                        "not_a_member",
                        "relationships name only current members of the household",
                    ));
                }
                plan.households.push((Household { head: Some(nh.rec.key), ..h.clone() }, Some(h.version)));
            }
            Procedure::CivilStatusUpdate { person, changes, .. } => {
                let l = self.load_person("procedure.person", *person).await?;
                Self::alive(&l, "procedure.person")?;
                let old = &l.rec.person.record;
                let mut new = old.clone();
                if let Some(name) = &changes.name {
                    new.name = name.clone();
                }
                if let Some(b) = changes.birth_date {
                    if b.year() != old.birth_date.year() {
                        return Err(invalid_v(
                            "procedure.changes.birth_date",
                            "birth_year_change",
                            "the personal ID encodes the birth year: a new year is a record change that issues a \
                             new personal ID (approved by a second officer), not a residence update",
                            b.to_string(),
                        ));
                    }
                    new.birth_date = b;
                }
                if let Some(e) = &changes.ethnicity {
                    new.ethnicity = e.clone();
                }
                if let Some(n) = &changes.nationalities {
                    new.nationalities = n.clone();
                }
                if let Some(m) = changes.marital_status {
                    new.marital_status = Some(m);
                }
                if new == *old {
                    return Err(invalid(
                        "procedure.changes",
                        "no_change",
                        "the register holds these items already: nothing to update",
                    ));
                }
                // The changed items obey the rules of any record (codes, names, dates).
                let new = new.validate(on).map_err(|errs| {
                    ValidationErrors(
                        errs.0
                            .into_iter()
                            .map(|mut e| {
                                e.field = format!("procedure.changes.{}", e.field);
                                e
                            })
                            .collect(),
                    )
                })?;
                let renamed = new.name != old.name;
                people.get(&l.rec).record = new.clone();
                // A head's new name is in every member's household link.
                if renamed && let Some(hid) = self.store().household_of(l.rec.key).await? {
                    let h = self.store().household_get(hid).await?.ok_or(RegistryError::NotFound)?;
                    if h.head == Some(l.rec.key) {
                        for m in h.current_members().filter(|m| m.person_key != l.rec.key) {
                            let rec = self.person_by_key(m.person_key).await?;
                            if let Some(link) = people.get(&rec).record.household.as_mut() {
                                link.head_name = new.name.full();
                            }
                        }
                    }
                }
            }
            Procedure::PermanentDeletion { person, cause, effective } => {
                let l = self.load_person("procedure.person", *person).await?;
                if l.address(ResidenceKind::Permanent).is_none() {
                    return Err(invalid(
                        "procedure.person",
                        "no_permanent_residence",
                        "the person has no permanent residence to delete",
                    ));
                }
                check_cause_status(
                    &l,
                    matches!(cause, PermanentDeletionCause::Death | PermanentDeletionCause::DeclaredMissing),
                )?;
                let end = *effective + Duration::days(1);
                end_residence(&mut plan, &l, ResidenceKind::Permanent, end, cause.code(), a);
                if let Some(h) = self.store().household_of(l.rec.key).await? {
                    self.leave_household(&mut plan, &mut people, h, l.rec.key, end).await?;
                }
                let p = people.get(&l.rec);
                clear_permanent(p);
                p.record.temporary_absence = None;
                if cause.ends_all() && l.address(ResidenceKind::Temporary).is_some() {
                    end_residence(&mut plan, &l, ResidenceKind::Temporary, end, cause.code(), a);
                    people.get(&l.rec).record.temporary_residence = None;
                }
            }
            Procedure::TemporaryDeletion { person, cause, effective } => {
                let l = self.load_person("procedure.person", *person).await?;
                if l.address(ResidenceKind::Temporary).is_none() {
                    return Err(invalid(
                        "procedure.person",
                        "no_temporary_residence",
                        "the person has no temporary residence to delete",
                    ));
                }
                check_cause_status(
                    &l,
                    matches!(cause, TemporaryDeletionCause::Death | TemporaryDeletionCause::DeclaredMissing),
                )?;
                end_residence(&mut plan, &l, ResidenceKind::Temporary, *effective + Duration::days(1), cause.code(), a);
                people.get(&l.rec).record.temporary_residence = None;
            }
        }
        people.into_plan(&mut plan);
        Ok(plan)
    }

    /// A person leaves their household in the plan; a leaving head leaves it without a head
    /// until the members choose a new one (change of head).
    async fn leave_household(
        &self,
        plan: &mut ResidencePlan,
        people: &mut PersonChanges,
        household: Uuid,
        person: Uuid,
        on: Date,
    ) -> Result<()> {
        plan.close_memberships.push((person, on));
        let h = self.store().household_get(household).await?.ok_or(RegistryError::NotFound)?;
        if h.head == Some(person) {
            plan.households.push((Household { head: None, ..h.clone() }, Some(h.version)));
            for m in h.current_members().filter(|m| m.person_key != person) {
                let rec = self.person_by_key(m.person_key).await?;
                if let Some(link) = people.get(&rec).record.household.as_mut() {
                    link.head_personal_id = None;
                }
            }
        }
        Ok(())
    }

    /// The areas an application lies in: where it is handled.
    async fn application_areas(&self, procedure: &Procedure) -> Result<Vec<String>> {
        let address = match procedure {
            Procedure::PermanentRegistration { address, .. }
            | Procedure::TemporaryRegistration { address, .. }
            | Procedure::StayNotification { address, .. } => Some(address.clone()),
            Procedure::HouseholdSeparation { household, .. } | Procedure::HeadChange { household, .. } => {
                Some(self.load_household("procedure.household", household).await?.address)
            }
            Procedure::TemporaryRenewal { person, .. } | Procedure::TemporaryDeletion { person, .. } => {
                self.load_person("procedure.person", *person).await?.address(ResidenceKind::Temporary).cloned()
            }
            Procedure::TemporaryAbsence { person, .. } | Procedure::PermanentDeletion { person, .. } => {
                self.load_person("procedure.person", *person).await?.address(ResidenceKind::Permanent).cloned()
            }
            // Handled where the person's residence file is: the permanent residence, else the
            // temporary one.
            Procedure::CivilStatusUpdate { person, .. } => {
                let l = self.load_person("procedure.person", *person).await?;
                l.address(ResidenceKind::Permanent).or_else(|| l.address(ResidenceKind::Temporary)).cloned()
            }
        };
        Ok(address.map(|a| dancu_core::access::residence_areas([&a])).unwrap_or_default())
    }

    /// Files an application: validates it, checks it against the register, computes its
    /// deadline. `governs` says whether the submitting officer's unit governs the areas the
    /// application lies in (outside: not found, as for people outside one's area). A stay
    /// notification is recorded at once (approved), flagged late after its due time.
    pub async fn submit(
        &self,
        mut procedure: Procedure,
        actor: &str,
        governs: impl Fn(&[String]) -> bool,
        audit: Option<AuditEntry>,
    ) -> Result<Application> {
        let today = today();
        procedure.validate(today)?;
        let person = self
            .load_person(
                match &procedure {
                    Procedure::HouseholdSeparation { .. } | Procedure::HeadChange { .. } => "procedure.new_head",
                    _ => "procedure.person",
                },
                procedure.subject(),
            )
            .await?;
        let areas = self.application_areas(&procedure).await?;
        if !governs(&areas) {
            return Err(RegistryError::NotFound);
        }
        if procedure.kind() == rules::ProcedureKind::PermanentRegistration {
            let open = self
                .store()
                .applications(&ApplicationQuery { person_key: Some(person.rec.key), limit: 100, ..Default::default() })
                .await?;
            if open.iter().any(|a| a.kind == rules::ProcedureKind::PermanentRegistration && a.state.is_open()) {
                return Err(invalid(
                    "procedure.person",
                    "application_pending",
                    "a permanent residence application of this person is pending already",
                ));
            }
        }
        let kind = procedure.kind();
        let now = crate::now();
        let mut app = Application {
            id: crate::new_key(),
            kind,
            state: ApplicationState::Submitted,
            household: procedure.household().and_then(|h| Uuid::parse_str(h).ok()),
            procedure,
            person_key: person.rec.key,
            areas,
            submitted_by: actor.to_string(),
            submitted_at: now,
            deadline: self.calendar().deadline(today, kind.working_days()),
            received_by: None,
            received_at: None,
            decided_by: None,
            decided_at: None,
            decision_reason: None,
            late: false,
            replaces_residence: person.open(ResidenceKind::Permanent).map(|r| r.id),
            created_household: None,
        };
        // The rules, against the register as it is now (checked again at the decision).
        let plan = self.plan_for(&app, today).await?;
        if let Procedure::StayNotification { arrived_at, .. } = &app.procedure {
            app.late = now > rules::stay_notification_due(*arrived_at);
            app.state = ApplicationState::Approved;
            app.received_by = Some(actor.to_string());
            app.received_at = Some(now);
            app.decided_by = Some(actor.to_string());
            app.decided_at = Some(now);
            drop(plan);
        }
        if let Procedure::CivilStatusUpdate { registered_on, .. } = &app.procedure {
            app.late = today > *registered_on + Duration::days(rules::CIVIL_STATUS_UPDATE_DAYS);
        }
        self.store()
            .residence_apply(&ResidencePlan {
                expected_state: None,
                application: Some(app.clone()),
                audit,
                ..Default::default()
            })
            .await?;
        Ok(app)
    }

    pub async fn application(&self, id: Uuid) -> Result<Application> {
        self.store().application_get(id).await?.ok_or(RegistryError::NotFound)
    }

    pub async fn applications(&self, q: &ApplicationQuery) -> Result<Vec<Application>> {
        Ok(self.store().applications(q).await?)
    }

    /// Accepts a submitted application as complete (tiếp nhận).
    pub async fn receive(&self, id: Uuid, actor: &str, audit: Option<AuditEntry>) -> Result<Application> {
        let mut app = self.application(id).await?;
        if app.state != ApplicationState::Submitted {
            return Err(crate::StoreError::State(format!("the application is already {}", app.state.code())).into());
        }
        app.state = ApplicationState::Received;
        app.received_by = Some(actor.to_string());
        app.received_at = Some(crate::now());
        self.store()
            .residence_apply(&ResidencePlan {
                expected_state: Some(ApplicationState::Submitted),
                application: Some(app.clone()),
                audit,
                ..Default::default()
            })
            .await?;
        Ok(app)
    }

    /// Approves (applying the change, in one transaction with the decision) or rejects (with a
    /// reason) a received application.
    pub async fn decide_application(
        &self,
        id: Uuid,
        verdict: Verdict,
        reason: Option<String>,
        actor: &str,
        audit: Option<AuditEntry>,
    ) -> Result<Application> {
        let reason = reason.map(|r| dancu_core::text::clean(&r)).filter(|r| !r.is_empty());
        if reason.as_ref().is_some_and(|r| r.chars().count() > 500) {
            return Err(invalid("reason", "too_long", "at most 500 characters"));
        }
        if verdict == Verdict::Reject && reason.is_none() {
            return Err(invalid("reason", "required", "a rejection states its reason (nêu rõ lý do)"));
        }
        let mut app = self.application(id).await?;
        if app.state != ApplicationState::Received {
            return Err(crate::StoreError::State(match app.state {
                ApplicationState::Submitted => "the application has not been received yet".to_string(),
                s => format!("the application is already {}", s.code()),
            })
            .into());
        }
        let now = crate::now();
        app.decided_by = Some(actor.to_string());
        app.decided_at = Some(now);
        app.decision_reason = reason;
        let mut plan = match verdict {
            Verdict::Reject => {
                app.state = ApplicationState::Rejected;
                ResidencePlan::default()
            }
            Verdict::Approve => {
                app.state = ApplicationState::Approved;
                let plan = self.plan_for(&app, today()).await?;
                app.created_household = plan.households.iter().find(|(_, v)| v.is_none()).map(|(h, _)| h.id);
                plan
            }
        };
        plan.expected_state = Some(ApplicationState::Received);
        plan.meta = Some(ChangeMeta::new(
            actor,
            format!("{} (hồ sơ {})", app.kind.vietnamese(), app.id),
            Some(LEGAL_BASIS.to_string()),
        ));
        plan.application = Some(app.clone());
        plan.audit = audit;
        self.store().residence_apply(&plan).await?;
        Ok(app)
    }

    /// Ends the temporary residences whose registration expired before `today` (automatic
    /// expiry). Returns how many ended. Each is one transaction; one changed meanwhile is left
    /// for the next run.
    pub async fn expire_temporary(&self, today: Date, actor: &str) -> Result<usize> {
        let mut ended = 0;
        loop {
            let rows = self.store().temporary_expired(today, 500).await?;
            if rows.is_empty() {
                return Ok(ended);
            }
            let mut progressed = false;
            for row in rows {
                let rec = self.person_by_key(row.person_key).await?;
                let expires = row.expires_on.unwrap_or(today);
                let mut person = rec.person.clone();
                if person.record.temporary_residence.as_ref() == Some(&row.address) {
                    person.record.temporary_residence = None;
                }
                let plan = ResidencePlan {
                    supersede: vec![(
                        row.id,
                        ResidenceRow {
                            id: crate::new_key(),
                            valid_to: Some(expires + Duration::days(1)),
                            end_cause: Some("expired".into()),
                            ..row.clone()
                        },
                    )],
                    persons: vec![(rec.key, rec.version, person)],
                    meta: Some(ChangeMeta::new(
                        actor,
                        "Hết thời hạn tạm trú (temporary residence expired)",
                        Some(LEGAL_BASIS.to_string()),
                    )),
                    ..Default::default()
                };
                match self.store().residence_apply(&plan).await {
                    Ok(()) => {
                        ended += 1;
                        progressed = true;
                    }
                    Err(crate::StoreError::Conflict { .. } | crate::StoreError::Duplicate(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            if !progressed {
                return Ok(ended);
            }
        }
    }

    /// Where a person lived on a day (as recorded now, or as recorded at `as_of`).
    pub async fn residence_on(&self, key: Uuid, on: Date, as_of: Option<OffsetDateTime>) -> Result<ResidenceOn> {
        let rows = self.store().residences(key, as_of).await?;
        Ok(ResidenceOn { on, residences: rows.into_iter().filter(|r| r.holds_on(on)).collect() })
    }

    /// Every residence row of a person, as recorded now or at `as_of`.
    pub async fn residence_history(&self, key: Uuid, as_of: Option<OffsetDateTime>) -> Result<Vec<ResidenceRow>> {
        Ok(self.store().residences(key, as_of).await?)
    }

    /// Who lived at an address on a day.
    pub async fn residents_at(&self, address: &Address, on: Date) -> Result<Vec<ResidenceRow>> {
        Ok(self.store().residents_at(address, on).await?)
    }

    pub async fn household(&self, id: Uuid) -> Result<Household> {
        self.store().household_get(id).await?.ok_or(RegistryError::NotFound)
    }
}

fn check_cause_status(l: &Loaded, death_cause: bool) -> Result<()> {
    let dead = matches!(l.rec.person.status, PersonStatus::Dead | PersonStatus::Missing);
    if death_cause && !dead {
        return Err(invalid(
            "procedure.cause",
            "death_not_recorded",
            "record the death (or the declaration of missing) first: it needs a second officer's approval",
        ));
    }
    Ok(())
}

/// What one run of the 2025 address migration did (counts of addresses and people).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AddressMigrationReport {
    /// People read who had at least one legacy address.
    pub people_scanned: u64,
    /// Addresses moved to their 2025 commune (whole merges).
    pub moved_automatically: u64,
    /// Addresses queued for a person's decision (partial merges).
    pub queued_for_review: u64,
    /// Addresses whose commune is in no row of the conversion table (left as they are).
    pub unknown_code: u64,
    /// People whose record changed.
    pub people_updated: u64,
    /// People changed by someone else during the run (left for the next run).
    pub people_skipped: u64,
}

impl Registry {
    /// Moves legacy residence addresses to the 2025 communes with the official conversion table:
    /// whole merges automatically (a new version of the record; its history keeps the old code),
    /// partial merges to the review queue. Batches of `batch` people, one transaction each;
    /// `progress` is called after each batch with the report so far.
    pub async fn migrate_addresses(
        &self,
        batch: u32,
        actor: &str,
        mut progress: impl FnMut(&AddressMigrationReport),
    ) -> Result<AddressMigrationReport> {
        use dancu_core::residence::{AddressMigration, migrate_address};
        let meta = ChangeMeta::new(
            actor,
            "Chuyển địa chỉ sang đơn vị hành chính cấp xã mới (2025 administrative reform)",
            Some("Nghị quyết 202/2025/QH15; Nghị quyết của UBTVQH về sắp xếp đơn vị hành chính cấp xã năm 2025".into()),
        );
        let mut report = AddressMigrationReport::default();
        let mut after = None;
        loop {
            let page = self.store().persons_with_legacy_address(after, batch.max(1)).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key);
            let mut changes = Vec::new();
            let mut reviews = Vec::new();
            for rec in page {
                report.people_scanned += 1;
                let mut person = rec.person.clone();
                let mut changed = false;
                let r = &mut person.record;
                for (field, slot) in [
                    ("permanent_residence", &mut r.permanent_residence),
                    ("temporary_residence", &mut r.temporary_residence),
                    ("current_residence", &mut r.current_residence),
                ] {
                    let Some(a) = slot.as_ref() else { continue };
                    match migrate_address(a) {
                        None => {}
                        Some(AddressMigration::Automatic(new)) => {
                            *slot = Some(new);
                            changed = true;
                            report.moved_automatically += 1;
                        }
                        Some(AddressMigration::Review(candidates)) => {
                            reviews.push(crate::AddressReview {
                                person_key: rec.key,
                                field: field.to_string(),
                                address: a.clone(),
                                candidates,
                                queued_at: None,
                                resolved_at: None,
                                resolved_by: None,
                                resolved_commune_code: None,
                            });
                            report.queued_for_review += 1;
                        }
                        Some(AddressMigration::Unknown) => report.unknown_code += 1,
                    }
                }
                if changed {
                    changes.push((rec.key, rec.version, person));
                }
            }
            let (done, skipped) = self.store().address_migration_apply(&changes, &reviews, &meta).await?;
            report.people_updated += done;
            report.people_skipped += skipped;
            progress(&report);
        }
        Ok(report)
    }
}

/// The fields of a person record the 2025 address migration moves.
pub const MIGRATED_FIELDS: [&str; 3] = ["permanent_residence", "temporary_residence", "current_residence"];

impl Registry {
    /// Address reviews of the 2025 migration (see [`crate::AddressReviewQuery`]).
    pub async fn address_reviews(&self, q: &crate::AddressReviewQuery) -> Result<Vec<crate::AddressReview>> {
        Ok(self.store().address_reviews(q).await?)
    }

    /// An officer resolves an address review: the person's address in `field` moves to the
    /// chosen 2025 commune (one of the candidates; the detail is kept), as a new version of the
    /// record whose history keeps the legacy code, in one transaction with the review's
    /// resolution and the audit entry. `allowed` says whether the record, changed, still lies
    /// in the officer's area. Refused when the review is resolved already or the address was
    /// changed since it was queued.
    pub async fn resolve_address_review(
        &self,
        person_key: Uuid,
        field: &str,
        commune_code: &str,
        actor: &str,
        allowed: impl Fn(&[String]) -> bool,
        audit: Option<AuditEntry>,
    ) -> Result<crate::AddressReview> {
        if !MIGRATED_FIELDS.contains(&field) {
            return Err(invalid_v(
                "field",
                "unknown_field",
                "permanent_residence, temporary_residence or current_residence",
                field.to_string(),
            ));
        }
        let mut review = self.store().address_review_get(person_key, field).await?.ok_or(RegistryError::NotFound)?;
        if review.resolved_at.is_some() {
            return Err(crate::StoreError::State(format!(
                "the address review was resolved already (commune {})",
                review.resolved_commune_code.as_deref().unwrap_or("?")
            ))
            .into());
        }
        if !review.candidates.iter().any(|c| c == commune_code) {
            return Err(invalid_v(
                "commune_code",
                "not_a_candidate",
                format!("choose one of the 2025 communes the old commune went into: {}", review.candidates.join(", ")),
                commune_code.to_string(),
            ));
        }
        let rec = self.person_by_key(person_key).await?;
        let mut person = rec.person.clone();
        let r = &mut person.record;
        let slot = match field {
            "permanent_residence" => &mut r.permanent_residence,
            "temporary_residence" => &mut r.temporary_residence,
            _ => &mut r.current_residence,
        };
        if slot.as_ref() != Some(&review.address) {
            return Err(crate::StoreError::State(
                "the address was changed since it was queued for review: the review no longer applies".into(),
            )
            .into());
        }
        *slot = Some(Address {
            scheme: dancu_core::reference::Scheme::Y2025,
            commune_code: commune_code.to_string(),
            detail: review.address.detail.clone(),
        });
        if !allowed(&person.areas()) {
            return Err(invalid_v(
                "commune_code",
                "outside_area",
                "the person would leave your area: an officer of the province decides",
                commune_code.to_string(),
            ));
        }
        let mut meta = ChangeMeta::new(
            actor,
            format!("Chuyển địa chỉ sang xã mới (sắp xếp đơn vị hành chính 2025), xã được chọn: {commune_code}"),
            Some("Nghị quyết 202/2025/QH15; Nghị quyết của UBTVQH về sắp xếp đơn vị hành chính cấp xã năm 2025".into()),
        );
        meta.audit = audit;
        review.resolved_commune_code = Some(commune_code.to_string());
        self.store().address_review_resolve(&review, rec.version, &person, &meta).await?;
        Ok(self.store().address_review_get(person_key, field).await?.unwrap_or(review))
    }
}
