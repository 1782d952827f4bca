//! Residence procedures (Residence Law 2020, Decree 62/2021, Decree 154/2024): what an
//! application asks for, its statutory deadline, and the rules that need no stored state. The
//! rules that do (one permanent residence at a time, a head is a member, no one in two
//! households…) are checked by the residence service against the store.

use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime, Time, UtcOffset};
use utoipa::ToSchema;

use crate::date::PartialDate;
use crate::date::iso_date;
use crate::error::{FieldError, ValidationErrors};
use crate::id::PersonalId;
use crate::person::{Address, HeadRelationship, MaritalStatus, Name};
use crate::reference::{self, Scheme};

/// The kinds of residence application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProcedureKind {
    PermanentRegistration,
    TemporaryRegistration,
    TemporaryRenewal,
    StayNotification,
    TemporaryAbsence,
    HouseholdSeparation,
    HeadChange,
    CivilStatusUpdate,
    PermanentDeletion,
    TemporaryDeletion,
}

impl ProcedureKind {
    pub const ALL: [ProcedureKind; 10] = [
        ProcedureKind::PermanentRegistration,
        ProcedureKind::TemporaryRegistration,
        ProcedureKind::TemporaryRenewal,
        ProcedureKind::StayNotification,
        ProcedureKind::TemporaryAbsence,
        ProcedureKind::HouseholdSeparation,
        ProcedureKind::HeadChange,
        ProcedureKind::CivilStatusUpdate,
        ProcedureKind::PermanentDeletion,
        ProcedureKind::TemporaryDeletion,
    ];

    pub fn code(self) -> &'static str {
        match self {
            ProcedureKind::PermanentRegistration => "permanent_registration",
            ProcedureKind::TemporaryRegistration => "temporary_registration",
            ProcedureKind::TemporaryRenewal => "temporary_renewal",
            ProcedureKind::StayNotification => "stay_notification",
            ProcedureKind::TemporaryAbsence => "temporary_absence",
            ProcedureKind::HouseholdSeparation => "household_separation",
            ProcedureKind::HeadChange => "head_change",
            ProcedureKind::CivilStatusUpdate => "civil_status_update",
            ProcedureKind::PermanentDeletion => "permanent_deletion",
            ProcedureKind::TemporaryDeletion => "temporary_deletion",
        }
    }

    pub fn from_code(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.code() == s)
    }

    /// Statutory time limit in working days (0: handled at once).
    pub fn working_days(self) -> u32 {
        match self {
            ProcedureKind::PermanentRegistration => 7,
            ProcedureKind::TemporaryRegistration | ProcedureKind::TemporaryRenewal => 3,
            ProcedureKind::StayNotification => 0,
            ProcedureKind::TemporaryAbsence => 1,
            ProcedureKind::HouseholdSeparation => 5,
            ProcedureKind::HeadChange => 3,
            ProcedureKind::CivilStatusUpdate => 3,
            ProcedureKind::PermanentDeletion => 5,
            ProcedureKind::TemporaryDeletion => 2,
        }
    }

    pub fn vietnamese(self) -> &'static str {
        match self {
            ProcedureKind::PermanentRegistration => "Đăng ký thường trú",
            ProcedureKind::TemporaryRegistration => "Đăng ký tạm trú",
            ProcedureKind::TemporaryRenewal => "Gia hạn tạm trú",
            ProcedureKind::StayNotification => "Thông báo lưu trú",
            ProcedureKind::TemporaryAbsence => "Khai báo tạm vắng",
            ProcedureKind::HouseholdSeparation => "Tách hộ",
            ProcedureKind::HeadChange => "Thay đổi chủ hộ",
            ProcedureKind::CivilStatusUpdate => "Điều chỉnh thông tin về cư trú (thay đổi hộ tịch)",
            ProcedureKind::PermanentDeletion => "Xóa đăng ký thường trú",
            ProcedureKind::TemporaryDeletion => "Xóa đăng ký tạm trú",
        }
    }
}

/// Where an application stands: submitted → received → approved / rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ApplicationState {
    /// Filed (tiếp nhận hồ sơ pending).
    Submitted,
    /// Accepted as complete by the officer (đã tiếp nhận), being examined.
    Received,
    Approved,
    /// Refused, with a reason (từ chối, nêu rõ lý do).
    Rejected,
}

impl ApplicationState {
    pub fn code(self) -> &'static str {
        match self {
            ApplicationState::Submitted => "submitted",
            ApplicationState::Received => "received",
            ApplicationState::Approved => "approved",
            ApplicationState::Rejected => "rejected",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        [
            ApplicationState::Submitted,
            ApplicationState::Received,
            ApplicationState::Approved,
            ApplicationState::Rejected,
        ]
        .into_iter()
        .find(|k| k.code() == s)
    }
    pub fn is_open(self) -> bool {
        matches!(self, ApplicationState::Submitted | ApplicationState::Received)
    }
}

/// A written consent (of the household head, or of the owner of the dwelling).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    /// Who consents.
    pub given_by: String,
    /// Their personal ID (required for a household head's consent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_id: Option<PersonalId>,
    #[serde(with = "iso_date")]
    #[schema(value_type = String, format = Date)]
    pub given_on: Date,
    /// Reference of the signed document (văn bản đồng ý).
    pub document: String,
}

/// Into which household a permanent registration goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum HouseholdChoice {
    /// A new household with the person as head. `own_home`: the dwelling is the person's own
    /// (otherwise the owner's consent is required).
    New {
        #[serde(default)]
        own_home: bool,
    },
    /// An existing household, with the head's consent.
    Join { household: String, relationship_to_head: HeadRelationship },
}

/// The four cases in which a temporary absence must be declared (Residence Law 2020, Art. 31(1)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AbsenceCase {
    /// a) accused/defendant on bail, suspended or probationary sentence, non-custodial reform…
    BailOrProbation,
    /// b) under an administrative measure (education at the commune, compulsory treatment…).
    AdministrativeMeasure,
    /// c) of military-service age, leaving the commune for 3 months or more.
    MilitaryAge,
    /// d) anyone leaving the commune of permanent residence for 12 months or more.
    LongAbsence,
}

/// Causes of deleting a permanent residence (Residence Law 2020, Art. 24).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PermanentDeletionCause {
    Death,
    /// Declared dead or missing by a court.
    DeclaredMissing,
    SettledAbroad,
    LostNationality,
    /// Absent 12 months or more without declaring a temporary absence.
    AbsentUndeclared,
    /// No longer entitled to the dwelling (sold, tenancy or loan ended).
    AccommodationEnded,
    /// The registration was made against the law.
    RegistrationCancelled,
}

/// Causes of deleting a temporary residence (Residence Law 2020, Art. 29).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TemporaryDeletionCause {
    Death,
    DeclaredMissing,
    SettledAbroad,
    LostNationality,
    /// Absent 6 months in a row without registering elsewhere.
    AbsentSixMonths,
    /// Registered permanent residence at the same place.
    PermanentRegistered,
    RegistrationCancelled,
}

impl PermanentDeletionCause {
    /// Causes that end every residence of the person (and their household membership).
    pub fn ends_all(self) -> bool {
        matches!(self, Self::Death | Self::DeclaredMissing | Self::SettledAbroad | Self::LostNationality)
    }
    pub fn code(self) -> &'static str {
        match self {
            Self::Death => "death",
            Self::DeclaredMissing => "declared_missing",
            Self::SettledAbroad => "settled_abroad",
            Self::LostNationality => "lost_nationality",
            Self::AbsentUndeclared => "absent_undeclared",
            Self::AccommodationEnded => "accommodation_ended",
            Self::RegistrationCancelled => "registration_cancelled",
        }
    }
}

impl TemporaryDeletionCause {
    pub fn code(self) -> &'static str {
        match self {
            Self::Death => "death",
            Self::DeclaredMissing => "declared_missing",
            Self::SettledAbroad => "settled_abroad",
            Self::LostNationality => "lost_nationality",
            Self::AbsentSixMonths => "absent_six_months",
            Self::PermanentRegistered => "permanent_registered",
            Self::RegistrationCancelled => "registration_cancelled",
        }
    }
}

/// What an application asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Procedure {
    PermanentRegistration {
        person: PersonalId,
        address: Address,
        household: HouseholdChoice,
        /// The person moves: the registration ends their current permanent residence.
        #[serde(default)]
        moving: bool,
        /// Consent of the household head (joining) or of the dwelling's owner (not own home).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consent: Option<Consent>,
    },
    TemporaryRegistration {
        person: PersonalId,
        address: Address,
        /// Last day of validity (at most 2 years).
        #[serde(with = "iso_date")]
        #[schema(value_type = String, format = Date)]
        until: Date,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consent: Option<Consent>,
    },
    TemporaryRenewal {
        person: PersonalId,
        #[serde(with = "iso_date")]
        #[schema(value_type = String, format = Date)]
        until: Date,
    },
    StayNotification {
        person: PersonalId,
        address: Address,
        /// Arrival, with its offset (Việt Nam: +07:00).
        #[serde(with = "time::serde::rfc3339")]
        #[schema(value_type = String, format = DateTime)]
        arrived_at: OffsetDateTime,
        #[serde(with = "iso_date")]
        #[schema(value_type = String, format = Date)]
        until: Date,
    },
    TemporaryAbsence {
        person: PersonalId,
        case: AbsenceCase,
        #[serde(with = "iso_date")]
        #[schema(value_type = String, format = Date)]
        from: Date,
        #[serde(default, with = "iso_date::option", skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>, format = Date)]
        until: Option<Date>,
        destination: String,
        /// The decision or judgment (cases bail_or_probation and administrative_measure).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        decision: Option<String>,
    },
    HouseholdSeparation {
        household: String,
        /// Who leaves to form the new household (the new head among them).
        members: Vec<PersonalId>,
        new_head: PersonalId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        consent: Option<Consent>,
        /// The new head is a divorced spouse of the head (no consent needed).
        #[serde(default)]
        divorced_spouse: bool,
        /// Every other leaving member's relationship to the new head.
        #[serde(default)]
        relationships: Vec<MemberRelationship>,
    },
    HeadChange {
        household: String,
        new_head: PersonalId,
        /// Every other member's relationship to the new head.
        relationships: Vec<MemberRelationship>,
    },
    /// Update of the residence information after a civil-status change (điều chỉnh thông tin
    /// về cư trú, Residence Law 2020 Art. 26(1)(b)): a change registered in civil status (hộ
    /// tịch) carried into the person's residence information; a head's new name reaches every
    /// member's household link. Due within 30 days of the civil-status registration (filed later:
    /// flagged `late`).
    CivilStatusUpdate {
        person: PersonalId,
        /// The civil-status extract or decision (trích lục / quyết định hộ tịch).
        document: String,
        /// The day the change was registered in civil status.
        #[serde(with = "iso_date")]
        #[schema(value_type = String, format = Date)]
        registered_on: Date,
        changes: CivilStatusChanges,
    },
    PermanentDeletion {
        person: PersonalId,
        cause: PermanentDeletionCause,
        /// The day the residence ended (e.g. the date of death).
        #[serde(with = "iso_date")]
        #[schema(value_type = String, format = Date)]
        effective: Date,
    },
    TemporaryDeletion {
        person: PersonalId,
        cause: TemporaryDeletionCause,
        #[serde(with = "iso_date")]
        #[schema(value_type = String, format = Date)]
        effective: Date,
    },
}

/// The items a civil-status change alters (only those given change). Sex and the birth year are
/// not among them: the personal ID encodes them, and a new ID is a record change decided by a
/// second officer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CivilStatusChanges {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// A corrected day or month of birth (same year).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<PartialDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ethnicity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nationalities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marital_status: Option<MaritalStatus>,
}

impl CivilStatusChanges {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Days within which a civil-status change is to be carried into residence information.
pub const CIVIL_STATUS_UPDATE_DAYS: i64 = 30;

/// A member's relationship to the (new) head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MemberRelationship {
    pub person: PersonalId,
    pub relationship: HeadRelationship,
}

/// Longest validity of a temporary residence registration (Residence Law 2020, Art. 27(3)).
pub const TEMPORARY_MAX_YEARS: i32 = 2;

/// `d` plus whole years (29 February goes to 28 February).
pub fn add_years(d: Date, years: i32) -> Date {
    let y = d.year() + years;
    Date::from_calendar_date(y, d.month(), d.day()).or_else(|_| Date::from_calendar_date(y, d.month(), 28)).unwrap_or(d)
}

/// Age in whole years on `on`.
pub fn age_on(birth: Date, on: Date) -> i32 {
    let mut a = on.year() - birth.year();
    if (on.month() as u8, on.day()) < (birth.month() as u8, birth.day()) {
        a -= 1;
    }
    a
}

/// Ages of military service (Law on Military Service 2015: 18 to 25, 27 with deferment).
pub const MILITARY_AGE: std::ops::RangeInclusive<i32> = 18..=27;

/// Việt Nam's offset.
pub fn vietnam_offset() -> UtcOffset {
    UtcOffset::from_hms(7, 0, 0).expect("valid offset")
}

/// When a stay must be notified: by 23:00 of the arrival day; arrivals after 23:00 by 08:00
/// the next day (Residence Law 2020, Art. 30(4)). Local time of Việt Nam.
pub fn stay_notification_due(arrived_at: OffsetDateTime) -> OffsetDateTime {
    let local = arrived_at.to_offset(vietnam_offset());
    let eleven = local.replace_time(Time::from_hms(23, 0, 0).expect("valid time"));
    if local < eleven {
        eleven
    } else {
        (local + Duration::days(1)).replace_time(Time::from_hms(8, 0, 0).expect("valid time"))
    }
}

/// Whether two addresses lie in the same commune (a legacy commune is compared through the 2025
/// communes it went into).
pub fn same_commune(a: &Address, b: &Address) -> bool {
    fn communes_2025(x: &Address) -> Vec<String> {
        match x.scheme {
            Scheme::Y2025 => vec![x.commune_code.clone()],
            Scheme::Legacy => {
                reference::conversions_from(&x.commune_code).into_iter().map(|c| c.new_commune_code.clone()).collect()
            }
        }
    }
    if a.scheme == b.scheme {
        return a.commune_code == b.commune_code;
    }
    let (x, y) = (communes_2025(a), communes_2025(b));
    x.iter().any(|c| y.contains(c))
}

fn check_consent(e: &mut ValidationErrors, field: &str, c: &Consent, today: Date) {
    if c.given_by.trim().is_empty() {
        e.push(FieldError::new(format!("{field}.given_by"), "required", "name who consents"));
    }
    if c.document.trim().is_empty() {
        e.push(FieldError::new(format!("{field}.document"), "required", "reference the signed consent document"));
    }
    if c.given_on > today {
        e.push(
            FieldError::new(format!("{field}.given_on"), "future_date", "consent cannot be dated in the future")
                .with_value(iso_date::format(c.given_on)),
        );
    }
}

fn check_address(e: &mut ValidationErrors, field: &str, a: &Address) {
    if a.commune().is_none() {
        e.push(
            FieldError::new(
                format!("{field}.commune_code"),
                "unknown_code",
                format!("not a commune code of the {} list", a.scheme.code()),
            )
            .with_value(a.commune_code.clone()),
        );
    }
    match &a.detail {
        Some(d) if !d.trim().is_empty() && d.chars().count() <= 200 => {}
        _ => e.push(FieldError::new(
            format!("{field}.detail"),
            "required",
            "the house number, street or hamlet is required (at most 200 characters)",
        )),
    }
}

impl Procedure {
    pub fn kind(&self) -> ProcedureKind {
        match self {
            Procedure::PermanentRegistration { .. } => ProcedureKind::PermanentRegistration,
            Procedure::TemporaryRegistration { .. } => ProcedureKind::TemporaryRegistration,
            Procedure::TemporaryRenewal { .. } => ProcedureKind::TemporaryRenewal,
            Procedure::StayNotification { .. } => ProcedureKind::StayNotification,
            Procedure::TemporaryAbsence { .. } => ProcedureKind::TemporaryAbsence,
            Procedure::HouseholdSeparation { .. } => ProcedureKind::HouseholdSeparation,
            Procedure::HeadChange { .. } => ProcedureKind::HeadChange,
            Procedure::CivilStatusUpdate { .. } => ProcedureKind::CivilStatusUpdate,
            Procedure::PermanentDeletion { .. } => ProcedureKind::PermanentDeletion,
            Procedure::TemporaryDeletion { .. } => ProcedureKind::TemporaryDeletion,
        }
    }

    /// The person the application is about (for a household procedure: the new head).
    pub fn subject(&self) -> PersonalId {
        match self {
            Procedure::PermanentRegistration { person, .. }
            | Procedure::TemporaryRegistration { person, .. }
            | Procedure::TemporaryRenewal { person, .. }
            | Procedure::StayNotification { person, .. }
            | Procedure::TemporaryAbsence { person, .. }
            | Procedure::CivilStatusUpdate { person, .. }
            | Procedure::PermanentDeletion { person, .. }
            | Procedure::TemporaryDeletion { person, .. } => *person,
            Procedure::HouseholdSeparation { new_head, .. } | Procedure::HeadChange { new_head, .. } => *new_head,
        }
    }

    /// The household the application names, if any.
    pub fn household(&self) -> Option<&str> {
        match self {
            Procedure::PermanentRegistration { household: HouseholdChoice::Join { household, .. }, .. }
            | Procedure::HouseholdSeparation { household, .. }
            | Procedure::HeadChange { household, .. } => Some(household),
            _ => None,
        }
    }

    /// Checks what needs no stored state; every problem names its field (`procedure.…`).
    pub fn validate(&mut self, today: Date) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::default();
        let f = |s: &str| format!("procedure.{s}");
        match self {
            Procedure::PermanentRegistration { address, household, consent, .. } => {
                check_address(&mut e, &f("address"), address);
                if let Some(c) = consent {
                    check_consent(&mut e, &f("consent"), c, today);
                }
                let needs = match household {
                    HouseholdChoice::New { own_home } => !*own_home,
                    HouseholdChoice::Join { relationship_to_head, .. } => {
                        if *relationship_to_head == HeadRelationship::Head {
                            e.push(FieldError::new(
                                f("household.relationship_to_head"),
                                "invalid_relationship",
                                "a person joining a household is not its head (change the head afterwards)",
                            ));
                        }
                        true
                    }
                };
                if needs && consent.is_none() {
                    e.push(FieldError::new(
                        f("consent"),
                        "consent_required",
                        match household {
                            HouseholdChoice::Join { .. } => {
                                "joining a household needs the written consent of its head (ý kiến đồng ý của chủ hộ)"
                            }
                            HouseholdChoice::New { .. } => {
                                "registering at a dwelling one does not own needs the owner's written consent \
                                 (ý kiến đồng ý của chủ sở hữu)"
                            }
                        },
                    ));
                }
            }
            Procedure::TemporaryRegistration { address, until, consent, .. } => {
                check_address(&mut e, &f("address"), address);
                if let Some(c) = consent {
                    check_consent(&mut e, &f("consent"), c, today);
                }
                check_expiry(&mut e, &f("until"), *until, today);
            }
            Procedure::TemporaryRenewal { until, .. } => check_expiry(&mut e, &f("until"), *until, today),
            Procedure::StayNotification { address, arrived_at, until, .. } => {
                check_address(&mut e, &f("address"), address);
                let arrival_day = arrived_at.to_offset(vietnam_offset()).date();
                if arrival_day > today + Duration::days(1) {
                    e.push(FieldError::new(f("arrived_at"), "future_date", "the arrival lies in the future"));
                }
                if *until < arrival_day {
                    e.push(
                        FieldError::new(f("until"), "before_start", "the stay ends before the arrival")
                            .with_value(iso_date::format(*until)),
                    );
                } else if (*until - arrival_day).whole_days() >= 30 {
                    e.push(
                        FieldError::new(
                            f("until"),
                            "stay_too_long",
                            "a stay of 30 days or more needs temporary residence registration (đăng ký tạm trú)",
                        )
                        .with_value(iso_date::format(*until)),
                    );
                }
            }
            Procedure::TemporaryAbsence { case, from, until, destination, decision, .. } => {
                if destination.trim().is_empty() {
                    e.push(FieldError::new(f("destination"), "required", "where the person goes"));
                }
                if until.is_some_and(|u| u < *from) {
                    e.push(FieldError::new(f("until"), "before_start", "ends before it starts"));
                }
                let months = until.map(|u| (u - *from).whole_days() / 30);
                match case {
                    AbsenceCase::BailOrProbation | AbsenceCase::AdministrativeMeasure => {
                        if decision.as_deref().is_none_or(|d| d.trim().is_empty()) {
                            e.push(FieldError::new(
                                f("decision"),
                                "required",
                                "this case needs the decision or judgment it is based on",
                            ));
                        }
                    }
                    AbsenceCase::MilitaryAge => {
                        if months.is_some_and(|m| m < 3) {
                            e.push(FieldError::new(
                                f("until"),
                                "too_short",
                                "this case is an absence of 3 months or more",
                            ));
                        }
                    }
                    AbsenceCase::LongAbsence => {
                        if until.is_some_and(|u| u < add_years(*from, 1)) {
                            e.push(FieldError::new(
                                f("until"),
                                "too_short",
                                "this case is an absence of 12 months or more",
                            ));
                        }
                    }
                }
            }
            Procedure::HouseholdSeparation { members, new_head, consent, divorced_spouse, relationships, .. } => {
                for r in relationships.iter() {
                    if !members.contains(&r.person) || r.person == *new_head {
                        e.push(
                            FieldError::new(
                                f("relationships"),
                                "not_a_member",
                                "relationships name the other leaving members",
                            )
                            .with_value(r.person.to_string()),
                        );
                    }
                }
                if members.is_empty() || members.len() > 50 {
                    e.push(FieldError::new(f("members"), "required", "1 to 50 members leave to form the household"));
                }
                if !members.contains(new_head) {
                    e.push(
                        FieldError::new(f("new_head"), "not_a_member", "the new head must be among the members")
                            .with_value(new_head.to_string()),
                    );
                }
                let mut seen = std::collections::HashSet::new();
                for (i, m) in members.iter().enumerate() {
                    if !seen.insert(*m) {
                        e.push(FieldError::new(format!("procedure.members[{i}]"), "duplicate", "named twice"));
                    }
                }
                match consent {
                    Some(c) => check_consent(&mut e, &f("consent"), c, today),
                    None if !*divorced_spouse => e.push(FieldError::new(
                        f("consent"),
                        "consent_required",
                        "separating needs the written consent of the household head (except a divorced spouse)",
                    )),
                    None => {}
                }
            }
            Procedure::HeadChange { relationships, new_head, .. } => {
                if relationships.iter().any(|r| r.person == *new_head) {
                    e.push(FieldError::new(
                        f("relationships"),
                        "invalid_relationship",
                        "the new head is the head; list the other members",
                    ));
                }
            }
            Procedure::CivilStatusUpdate { document, registered_on, changes, .. } => {
                if document.trim().is_empty() {
                    e.push(FieldError::new(
                        f("document"),
                        "required",
                        "the civil-status extract or decision (trích lục / quyết định hộ tịch)",
                    ));
                }
                if *registered_on > today {
                    e.push(
                        FieldError::new(f("registered_on"), "future_date", "the date lies in the future")
                            .with_value(iso_date::format(*registered_on)),
                    );
                }
                if changes.is_empty() {
                    e.push(FieldError::new(f("changes"), "required", "name at least one item the change alters"));
                }
            }
            Procedure::PermanentDeletion { effective, .. } | Procedure::TemporaryDeletion { effective, .. } => {
                if *effective > today {
                    e.push(
                        FieldError::new(f("effective"), "future_date", "the date lies in the future")
                            .with_value(iso_date::format(*effective)),
                    );
                }
            }
        }
        e.into_result()
    }
}

/// The expiry rule of a temporary residence (after today, at most 2 years ahead) on its own, for
/// a form that reports it together with items it could not read.
pub fn check_temporary_expiry(field: &str, until: Date, today: Date) -> Result<(), FieldError> {
    let mut e = ValidationErrors::default();
    check_expiry(&mut e, field, until, today);
    match e.into_result() {
        Ok(()) => Ok(()),
        Err(v) => Err(v.0.into_iter().next().expect("one error")),
    }
}

fn check_expiry(e: &mut ValidationErrors, field: &str, until: Date, today: Date) {
    if until <= today {
        e.push(
            FieldError::new(field, "past_date", "the expiry date must lie in the future")
                .with_value(iso_date::format(until)),
        );
    } else if until > add_years(today, TEMPORARY_MAX_YEARS) {
        e.push(
            FieldError::new(field, "too_long", "a temporary residence is registered for at most 2 years")
                .with_value(iso_date::format(until)),
        );
    }
}

/// What the 2025 reform does to an address on the legacy commune list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddressMigration {
    /// The whole old commune went into one 2025 commune: the address moves automatically.
    Automatic(Address),
    /// Only part of the old commune went into each of these 2025 communes: a person decides.
    Review(Vec<String>),
    /// The code is in no row of the conversion table.
    Unknown,
}

/// The migration of a legacy address (`None` for an address already on the 2025 list).
pub fn migrate_address(a: &Address) -> Option<AddressMigration> {
    if a.scheme != Scheme::Legacy {
        return None;
    }
    let rows = reference::conversions_from(&a.commune_code);
    let mut targets: Vec<String> = rows.iter().map(|c| c.new_commune_code.clone()).collect();
    targets.sort_unstable();
    targets.dedup();
    Some(match (targets.len(), rows.iter().all(|c| c.kind == reference::MergeKind::Whole)) {
        (0, _) => AddressMigration::Unknown,
        (1, true) => AddressMigration::Automatic(Address {
            scheme: Scheme::Y2025,
            commune_code: targets.remove(0),
            detail: a.detail.clone(),
        }),
        _ => AddressMigration::Review(targets),
    })
}

/// What a residence confirmation (xác nhận thông tin về cư trú) states, as signed. The signed
/// message is the statement's JSON in field order (`to_message`); the code carries it whole,
/// so a verifier needs only the public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmationStatement {
    /// Format version.
    pub v: u8,
    pub personal_id: PersonalId,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent_residence: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary_residence: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household_head: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relationship_to_head: Option<HeadRelationship>,
    #[serde(with = "iso_date")]
    #[schema(value_type = String, format = Date)]
    pub issued_on: Date,
    /// The issuing unit (`commune:00004`…).
    pub issued_by: String,
}

/// Why a confirmation code does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("not a residence confirmation code (expected BASE32.BASE32)")]
    Malformed,
    #[error("the code's statement does not parse")]
    Statement,
}

impl ConfirmationStatement {
    pub fn to_message(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a statement serializes")
    }

    /// `BASE32(statement).BASE32(signature)` (RFC 4648 alphabet: upper case and digits, which QR
    /// codes store compactly).
    pub fn code(&self, signature_der: &[u8]) -> String {
        format!("{}.{}", crate::auth::base32_encode(&self.to_message()), crate::auth::base32_encode(signature_der))
    }

    /// Splits a code into its statement and signature (the signature is the caller's check).
    pub fn parse_code(code: &str) -> Result<(ConfirmationStatement, Vec<u8>, Vec<u8>), CodeError> {
        let compact: String = code.chars().filter(|c| !c.is_whitespace()).collect::<String>().to_ascii_uppercase();
        let (m, s) = compact.split_once('.').ok_or(CodeError::Malformed)?;
        let message = crate::auth::base32_decode(m).ok_or(CodeError::Malformed)?;
        let sig = crate::auth::base32_decode(s).ok_or(CodeError::Malformed)?;
        if message.is_empty() || sig.is_empty() || sig.len() > 80 {
            return Err(CodeError::Malformed);
        }
        let st: ConfirmationStatement = serde_json::from_slice(&message).map_err(|_| CodeError::Statement)?;
        // Only the canonical form is accepted: what was signed is exactly what is shown.
        if st.to_message() != message {
            return Err(CodeError::Statement);
        }
        Ok((st, message, sig))
    }
}

/// The short reference printed beside the QR code: 16 characters of SHA-256 of the signature.
pub fn short_code(signature_der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let b32 = crate::auth::base32_encode(&Sha256::digest(signature_der));
    let s: Vec<String> = b32.as_bytes()[..16].chunks(4).map(|c| String::from_utf8_lossy(c).into_owned()).collect();
    s.join("-")
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn addr(code: &str) -> Address {
        Address { scheme: Scheme::Y2025, commune_code: code.into(), detail: Some("12 Phố Đội Cấn".into()) }
    }

    const TODAY: Date = date!(2026 - 03 - 10);

    fn pid() -> PersonalId {
        PersonalId::parse("001090012345").unwrap()
    }

    #[test]
    fn the_23_hour_rule() {
        assert_eq!(stay_notification_due(datetime!(2026-03-10 14:00 +7)), datetime!(2026-03-10 23:00 +7));
        assert_eq!(stay_notification_due(datetime!(2026-03-10 23:30 +7)), datetime!(2026-03-11 08:00 +7));
        // 16:30 UTC is 23:30 in Việt Nam.
        assert_eq!(stay_notification_due(datetime!(2026-03-10 16:30 UTC)), datetime!(2026-03-11 08:00 +7));
    }

    #[test]
    fn expiry_must_be_future_and_within_two_years() {
        let mut p = Procedure::TemporaryRegistration {
            person: pid(),
            address: addr("00004"),
            until: date!(2026 - 03 - 01),
            consent: None,
        };
        assert_eq!(p.validate(TODAY).unwrap_err().0[0].code, "past_date");
        let mut p = Procedure::TemporaryRenewal { person: pid(), until: date!(2028 - 03 - 11) };
        assert_eq!(p.validate(TODAY).unwrap_err().0[0].code, "too_long");
        let mut p = Procedure::TemporaryRenewal { person: pid(), until: date!(2028 - 03 - 10) };
        assert!(p.validate(TODAY).is_ok());
    }

    #[test]
    fn joining_needs_consent() {
        let mut p = Procedure::PermanentRegistration {
            person: pid(),
            address: addr("00004"),
            household: HouseholdChoice::Join { household: "x".into(), relationship_to_head: HeadRelationship::Child },
            moving: false,
            consent: None,
        };
        let e = p.validate(TODAY).unwrap_err();
        assert_eq!((e.0[0].field.as_str(), e.0[0].code), ("procedure.consent", "consent_required"));
        let mut own = Procedure::PermanentRegistration {
            person: pid(),
            address: addr("00004"),
            household: HouseholdChoice::New { own_home: true },
            moving: false,
            consent: None,
        };
        assert!(own.validate(TODAY).is_ok());
    }

    #[test]
    fn separation_consent_except_divorced_spouse() {
        let mk = |divorced| Procedure::HouseholdSeparation {
            household: "h".into(),
            members: vec![pid()],
            new_head: pid(),
            consent: None,
            divorced_spouse: divorced,
            relationships: vec![],
        };
        assert_eq!(mk(false).validate(TODAY).unwrap_err().0[0].code, "consent_required");
        assert!(mk(true).validate(TODAY).is_ok());
    }

    #[test]
    fn absence_cases() {
        let mk = |case, until| Procedure::TemporaryAbsence {
            person: pid(),
            case,
            from: date!(2026 - 03 - 10),
            until,
            destination: "TP. Hồ Chí Minh".into(),
            decision: None,
        };
        assert_eq!(
            mk(AbsenceCase::BailOrProbation, None).validate(TODAY).unwrap_err().0[0].field,
            "procedure.decision"
        );
        assert!(mk(AbsenceCase::MilitaryAge, Some(date!(2026 - 04 - 10))).validate(TODAY).is_err());
        assert!(mk(AbsenceCase::MilitaryAge, Some(date!(2026 - 07 - 10))).validate(TODAY).is_ok());
        assert!(mk(AbsenceCase::LongAbsence, Some(date!(2027 - 01 - 10))).validate(TODAY).is_err());
        assert!(mk(AbsenceCase::LongAbsence, None).validate(TODAY).is_ok());
    }

    #[test]
    fn stays_of_thirty_days_need_registration() {
        let mut p = Procedure::StayNotification {
            person: pid(),
            address: addr("00004"),
            arrived_at: datetime!(2026-03-10 10:00 +7),
            until: date!(2026 - 04 - 09),
        };
        assert_eq!(p.validate(TODAY).unwrap_err().0[0].code, "stay_too_long");
    }

    #[test]
    fn legacy_and_2025_communes_compare() {
        let legacy = Address { scheme: Scheme::Legacy, commune_code: "00004".into(), detail: None };
        let conv = reference::conversions_from("00004")[0].new_commune_code.clone();
        assert!(same_commune(&legacy, &addr(&conv)));
        assert!(!same_commune(&addr("00004"), &addr("26506")));
    }

    #[test]
    fn legacy_addresses_migrate_whole_or_go_to_review() {
        let whole = reference::conversions()
            .iter()
            .find(|c| {
                let rows = reference::conversions_from(&c.old_commune_code);
                rows.len() == 1 && rows[0].kind == reference::MergeKind::Whole
            })
            .unwrap();
        let a = Address {
            scheme: Scheme::Legacy,
            commune_code: whole.old_commune_code.clone(),
            detail: Some("Thôn 1".into()),
        };
        match migrate_address(&a) {
            Some(AddressMigration::Automatic(n)) => {
                assert_eq!(
                    (n.scheme, n.commune_code.as_str(), n.detail.as_deref()),
                    (Scheme::Y2025, whole.new_commune_code.as_str(), Some("Thôn 1"))
                );
            }
            other => panic!("{other:?}"),
        }
        let part = reference::conversions().iter().find(|c| c.kind == reference::MergeKind::Part).unwrap();
        let a = Address { scheme: Scheme::Legacy, commune_code: part.old_commune_code.clone(), detail: None };
        assert!(matches!(migrate_address(&a), Some(AddressMigration::Review(c)) if c.contains(&part.new_commune_code)));
        let a = Address { scheme: Scheme::Legacy, commune_code: "99999".into(), detail: None };
        assert_eq!(migrate_address(&a), Some(AddressMigration::Unknown));
        assert_eq!(
            migrate_address(&Address { scheme: Scheme::Y2025, commune_code: "00004".into(), detail: None }),
            None
        );
    }

    #[test]
    fn civil_status_updates_name_a_document_a_past_day_and_a_change() {
        let today = Date::from_calendar_date(2026, time::Month::March, 10).unwrap();
        let mk = |v: serde_json::Value| serde_json::from_value::<Procedure>(v).unwrap();
        let mut ok = mk(serde_json::json!({"kind": "civil_status_update", "person": "001090012345",
            "document": "Trích lục 45", "registered_on": "2026-03-01", "changes": {"marital_status": "divorced"}}));
        assert_eq!(ok.validate(today), Ok(()));
        assert_eq!(ok.kind().working_days(), 3);
        let mut bad = mk(serde_json::json!({"kind": "civil_status_update", "person": "001090012345",
            "document": " ", "registered_on": "2026-03-11", "changes": {}}));
        let codes: Vec<(String, &str)> =
            bad.validate(today).unwrap_err().0.into_iter().map(|e| (e.field, e.code)).collect();
        assert_eq!(
            codes,
            vec![
                ("procedure.document".to_string(), "required"),
                ("procedure.registered_on".to_string(), "future_date"),
                ("procedure.changes".to_string(), "required"),
            ]
        );
        // sex is not a residence update (the personal ID encodes it)
        let v = serde_json::json!({"kind": "civil_status_update", "person": "001090012345", "document": "x",
            "registered_on": "2026-03-01", "changes": {"sex": "female"}});
        assert!(serde_json::from_value::<Procedure>(v).is_err());
    }

    #[test]
    fn unknown_procedure_fields_are_refused() {
        let v =
            serde_json::json!({"kind": "temporary_renewal", "person": "001090012345", "until": "2027-01-01", "x": 1});
        assert!(serde_json::from_value::<Procedure>(v).is_err());
    }
}
