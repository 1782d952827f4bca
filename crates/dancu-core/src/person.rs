//! The person record (Law on Identification 2023, Art. 9) and its validation.

use serde::{Deserialize, Serialize};
use time::Date;
use utoipa::ToSchema;

use crate::date::{PartialDate, iso_date};
use crate::error::{FieldError, ValidationErrors};
use crate::id::{LegacyIdNumber, PersonalId, Sex};
use crate::reference::{self, Scheme};
use crate::text;

/// Birth name in Vietnamese order: family name, middle name(s), given name. Stored NFC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Name {
    /// Họ — family name, e.g. "Nguyễn".
    pub surname: String,
    /// Chữ đệm — middle name(s), may be empty, e.g. "Văn" or "Thị Thu".
    #[serde(default)]
    pub middle: String,
    /// Tên — given name, e.g. "An".
    pub given: String,
}

impl Name {
    pub fn full(&self) -> String {
        [self.surname.as_str(), self.middle.as_str(), self.given.as_str()]
            .iter()
            .filter(|s| !s.is_empty())
            .copied()
            .collect::<Vec<_>>()
            .join(" ")
    }
    /// The accent-folded search key of the full name.
    pub fn search_key(&self) -> String {
        text::fold(&self.full())
    }
}

/// A residence address: an administrative unit (commune, 2025 or legacy list) plus free text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Address {
    pub scheme: Scheme,
    /// Five-digit commune code of the scheme's list.
    pub commune_code: String,
    /// House number, street, hamlet (thôn/xóm/tổ dân phố).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Address {
    pub fn commune(&self) -> Option<&'static reference::Commune> {
        reference::commune(self.scheme, &self.commune_code)
    }
    /// `scheme:code`, the key used by indexes and search filters.
    pub fn unit_key(&self) -> String {
        format!("{}:{}", self.scheme.code(), self.commune_code)
    }
    /// The 2025 province this address lies in (legacy communes through the conversion table).
    pub fn province_2025(&self) -> Option<String> {
        match self.scheme {
            Scheme::Y2025 => self.commune().map(|c| c.province_code.clone()),
            Scheme::Legacy => {
                reference::conversions_from(&self.commune_code).first().map(|c| c.new_province_code.clone())
            }
        }
    }
}

/// A place (of birth, of birth registration, hometown): in Việt Nam down to province or commune, or abroad.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Place {
    /// ISO 3166-1 alpha-3 country; `VNM` when omitted.
    #[serde(default = "vietnam")]
    pub country: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub province_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commune_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

fn vietnam() -> String {
    reference::VIETNAM.to_string()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Relation {
    Father,
    Mother,
    Spouse,
    Child,
    LegalRepresentative,
    RepresentedPerson,
}

/// A relative, identified by personal ID (or legacy number) with name and nationality.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Relative {
    pub relation: Relation,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_id: Option<PersonalId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_id: Option<LegacyIdNumber>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nationalities: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DocumentKind {
    /// Chứng minh nhân dân, 9 digits.
    Cmnd9,
    /// Chứng minh nhân dân, 12 digits.
    Cmnd12,
    /// Căn cước công dân (2016-2024).
    Cccd,
    /// Thẻ căn cước (from 1 July 2024).
    CanCuoc,
}

/// A previously issued identity document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IssuedDocument {
    pub kind: DocumentKind,
    pub number: String,
    #[serde(with = "iso_date")]
    #[schema(value_type = String, format = Date)]
    pub issue_date: Date,
    pub issue_place: String,
    #[serde(default, with = "iso_date::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub expiry_date: Option<Date>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum BloodGroup {
    A,
    B,
    AB,
    O,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Rhesus {
    Positive,
    Negative,
}

/// Blood type: recorded only with a laboratory result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BloodType {
    pub group: BloodGroup,
    pub rhesus: Rhesus,
    /// Reference of the laboratory result document.
    pub lab_result: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MaritalStatus {
    Single,
    Married,
    Divorced,
    Widowed,
}

/// Relationship to the household head (quan hệ với chủ hộ).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HeadRelationship {
    Head,
    Spouse,
    Child,
    Parent,
    Grandchild,
    Grandparent,
    Sibling,
    ChildInLaw,
    OtherRelative,
    NotRelated,
}

/// The person's place in a household.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HouseholdLink {
    pub relationship_to_head: HeadRelationship,
    /// The head's name (the person's own name when they are the head).
    pub head_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_personal_id: Option<PersonalId>,
}

/// A declared temporary absence (khai báo tạm vắng).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TemporaryAbsence {
    #[serde(with = "iso_date")]
    #[schema(value_type = String, format = Date)]
    pub from: Date,
    #[serde(default, with = "iso_date::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = Date)]
    pub until: Option<Date>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
}

/// Lifecycle status of a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    /// Collected, not yet given a personal ID.
    Pending,
    /// Holds a personal ID.
    Active,
    Dead,
    Missing,
}

impl PersonStatus {
    pub fn code(self) -> &'static str {
        match self {
            PersonStatus::Pending => "pending",
            PersonStatus::Active => "active",
            PersonStatus::Dead => "dead",
            PersonStatus::Missing => "missing",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(PersonStatus::Pending),
            "active" => Some(PersonStatus::Active),
            "dead" => Some(PersonStatus::Dead),
            "missing" => Some(PersonStatus::Missing),
            _ => None,
        }
    }
}

/// Everything about a person that officers record (all items but the ID number and the status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PersonInput {
    pub name: Name,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_names: Vec<String>,
    pub birth_date: PartialDate,
    pub sex: Sex,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_place: Option<Place>,
    /// Where the birth was registered; its province decides the personal ID prefix.
    pub birth_registration_place: Place,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hometown: Option<Place>,
    /// Ethnicity code (54 groups).
    pub ethnicity: String,
    /// Religion code ("00" none).
    pub religion: String,
    /// Nationalities: ISO 3166-1 alpha-3, `XXA` stateless, `XXX` undetermined. At least one.
    pub nationalities: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blood_type: Option<BloodType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_id: Option<LegacyIdNumber>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub previous_documents: Vec<IssuedDocument>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relatives: Vec<Relative>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permanent_residence: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary_residence: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_residence: Option<Address>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temporary_absence: Option<TemporaryAbsence>,
    /// Số hồ sơ cư trú.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub residence_file_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub marital_status: Option<MaritalStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub household: Option<HouseholdLink>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub occupation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifying_features: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A stored person: the recorded items plus the personal ID and the lifecycle status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Person {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_id: Option<PersonalId>,
    pub status: PersonStatus,
    /// Date of death or of being declared missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_date: Option<PartialDate>,
    /// Record key of the person this record was found to describe as well (a duplicate merged
    /// into its survivor): the record is kept with its history, but no longer found by search.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
    #[serde(flatten)]
    pub record: PersonInput,
}

/// The indexed facts of a person, derived from the record (what the stores index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchFacts {
    pub name_key: String,
    pub birth_year: i32,
    /// `scheme:code` of the home commune: permanent, else current, else temporary residence.
    pub commune_key: Option<String>,
    /// The 2025 province of the home commune.
    pub province_2025: Option<String>,
}

impl Person {
    pub fn new_pending(record: PersonInput) -> Self {
        Person { personal_id: None, status: PersonStatus::Pending, status_date: None, merged_into: None, record }
    }

    pub fn home(&self) -> Option<&Address> {
        self.record
            .permanent_residence
            .as_ref()
            .or(self.record.current_residence.as_ref())
            .or(self.record.temporary_residence.as_ref())
    }

    pub fn search_facts(&self) -> SearchFacts {
        let home = self.home();
        SearchFacts {
            name_key: self.record.name.search_key(),
            birth_year: self.record.birth_date.year(),
            commune_key: home.map(Address::unit_key),
            province_2025: home.and_then(Address::province_2025),
        }
    }

    /// The ID prefix of the province where the birth was registered (abroad: none yet).
    pub fn id_prefix(&self) -> Option<&'static str> {
        let p = &self.record.birth_registration_place;
        if p.country != reference::VIETNAM {
            return None;
        }
        p.province_code.as_deref().and_then(reference::id_code_for_province).map(|p| p.id_code.as_str())
    }

    /// Checks a status change requested by an update.
    pub fn check_status_change(
        &self,
        to: PersonStatus,
        date: Option<PartialDate>,
        today: Date,
    ) -> Result<(), ValidationErrors> {
        let mut errs = ValidationErrors::default();
        match (self.status, to) {
            (PersonStatus::Pending, PersonStatus::Pending) => {}
            (PersonStatus::Pending, _) => errs.push(FieldError::new(
                "status",
                "status_transition",
                "a pending record becomes active only by activation (which assigns the personal ID)",
            )),
            (_, PersonStatus::Pending) => errs.push(FieldError::new(
                "status",
                "status_transition",
                "a record with a personal ID cannot return to pending",
            )),
            _ => {}
        }
        match to {
            PersonStatus::Dead | PersonStatus::Missing => match date {
                None => errs.push(FieldError::new(
                    "status_date",
                    "required",
                    "a date of death or of being missing is required",
                )),
                Some(d) if d.is_after(today) => errs.push(
                    FieldError::new("status_date", "future_date", "the date lies in the future")
                        .with_value(d.to_string()),
                ),
                Some(d)
                    if d.year() < self.record.birth_date.year() || d.earliest() < self.record.birth_date.earliest() =>
                {
                    errs.push(
                        FieldError::new("status_date", "before_birth", "the date lies before the date of birth")
                            .with_value(d.to_string()),
                    )
                }
                _ => {}
            },
            _ => {
                if date.is_some() {
                    errs.push(FieldError::new(
                        "status_date",
                        "not_allowed",
                        "only dead or missing records carry a status date",
                    ))
                }
            }
        }
        errs.into_result()
    }
}

const MAX_NAME_PART: usize = 50;
const MAX_TEXT: usize = 200;
const MAX_LIST: usize = 20;

fn check_text(errs: &mut ValidationErrors, field: &str, value: &mut String, max: usize, required: bool) {
    *value = text::clean(value);
    if value.is_empty() {
        if required {
            errs.push(FieldError::new(field, "required", "must not be empty"));
        }
        return;
    }
    let n = value.chars().count();
    if n > max {
        errs.push(FieldError::new(field, "too_long", format!("{n} characters, at most {max} allowed")));
    }
    if value.chars().any(|c| c.is_control()) {
        errs.push(FieldError::new(field, "control_character", "control characters are not allowed"));
    }
}

fn check_opt_text(errs: &mut ValidationErrors, field: &str, value: &mut Option<String>, max: usize) {
    if let Some(v) = value {
        check_text(errs, field, v, max, false);
        if v.is_empty() {
            *value = None;
        }
    }
}

fn check_name_part(errs: &mut ValidationErrors, field: &str, value: &mut String, required: bool) {
    check_text(errs, field, value, MAX_NAME_PART, required);
    if !value.is_empty() && !text::is_name_text(value) {
        errs.push(
            FieldError::new(field, "invalid_characters", "a name holds only letters, spaces, hyphens and apostrophes")
                .with_value(value.clone()),
        );
    }
}

fn check_country(errs: &mut ValidationErrors, field: &str, code: &str) {
    if reference::country(code).is_none() {
        errs.push(
            FieldError::new(
                field,
                "unknown_code",
                "not an ISO 3166-1 alpha-3 country code (or XXA stateless, XXX undetermined)",
            )
            .with_value(code),
        );
    }
}

fn check_nationalities(errs: &mut ValidationErrors, field: &str, list: &mut [String], required: bool) {
    for c in list.iter_mut() {
        *c = c.trim().to_ascii_uppercase();
    }
    if required && list.is_empty() {
        errs.push(FieldError::new(field, "required", "at least one nationality (XXA stateless, XXX undetermined)"));
    }
    if list.len() > 5 {
        errs.push(FieldError::new(field, "too_many", "at most 5 nationalities"));
    }
    for (i, c) in list.iter().enumerate() {
        check_country(errs, &format!("{field}[{i}]"), c);
        if list[..i].contains(c) {
            errs.push(FieldError::new(format!("{field}[{i}]"), "duplicate", "listed twice").with_value(c.clone()));
        }
    }
    let special = list.iter().filter(|c| *c == reference::STATELESS || *c == reference::UNDETERMINED).count();
    if special > 0 && list.len() > 1 {
        errs.push(FieldError::new(
            field,
            "contradiction",
            "stateless or undetermined cannot stand with another nationality",
        ));
    }
}

fn check_address(errs: &mut ValidationErrors, field: &str, a: &mut Address) {
    a.commune_code = a.commune_code.trim().to_string();
    if a.commune().is_none() {
        errs.push(
            FieldError::new(
                format!("{field}.commune_code"),
                "unknown_code",
                format!("not a commune code of the {} list", a.scheme.code()),
            )
            .with_value(a.commune_code.clone()),
        );
    }
    check_opt_text(errs, &format!("{field}.detail"), &mut a.detail, MAX_TEXT);
}

fn check_place(errs: &mut ValidationErrors, field: &str, p: &mut Place, need_province: bool) {
    p.country = p.country.trim().to_ascii_uppercase();
    check_country(errs, &format!("{field}.country"), &p.country);
    check_opt_text(errs, &format!("{field}.detail"), &mut p.detail, MAX_TEXT);
    if p.country != reference::VIETNAM {
        if p.scheme.is_some() || p.province_code.is_some() || p.commune_code.is_some() {
            errs.push(FieldError::new(field, "contradiction", "a place abroad has no Vietnamese administrative unit"));
        }
        return;
    }
    let scheme = p.scheme.unwrap_or(Scheme::Y2025);
    if let Some(cc) = &p.commune_code {
        match reference::commune(scheme, cc) {
            None => errs.push(
                FieldError::new(
                    format!("{field}.commune_code"),
                    "unknown_code",
                    format!("not a commune code of the {} list", scheme.code()),
                )
                .with_value(cc.clone()),
            ),
            Some(c) => match &p.province_code {
                None => p.province_code = Some(c.province_code.clone()),
                Some(pc) if *pc != c.province_code => errs.push(
                    FieldError::new(
                        format!("{field}.commune_code"),
                        "contradiction",
                        format!("the commune lies in province {}", c.province_code),
                    )
                    .with_value(cc.clone()),
                ),
                _ => {}
            },
        }
    }
    match &p.province_code {
        Some(pc) if reference::province(scheme, pc).is_none() => errs.push(
            FieldError::new(
                format!("{field}.province_code"),
                "unknown_code",
                format!("not a province code of the {} list", scheme.code()),
            )
            .with_value(pc.clone()),
        ),
        None if need_province => errs.push(FieldError::new(
            format!("{field}.province_code"),
            "required",
            "the province is required for a place in Việt Nam",
        )),
        _ => {}
    }
    if p.province_code.is_some() || p.commune_code.is_some() {
        p.scheme = Some(scheme);
    }
}

fn check_phone(errs: &mut ValidationErrors, phone: &mut Option<String>) {
    if let Some(p) = phone {
        let digits: String = p.chars().filter(|c| !matches!(c, ' ' | '.' | '-')).collect();
        let national = if let Some(rest) = digits.strip_prefix("+84") {
            format!("0{rest}")
        } else if let Some(rest) = digits.strip_prefix("84").filter(|r| r.len() == 9) {
            format!("0{rest}")
        } else {
            digits
        };
        if national.len() == 10 && national.starts_with('0') && national.bytes().all(|b| b.is_ascii_digit()) {
            *p = national;
        } else {
            errs.push(
                FieldError::new(
                    "phone",
                    "invalid_phone",
                    "a Vietnamese phone number has 10 digits starting with 0 (or +84)",
                )
                .with_value(p.clone()),
            );
        }
    }
}

fn check_email(errs: &mut ValidationErrors, email: &mut Option<String>) {
    if let Some(e) = email {
        *e = e.trim().to_string();
        let ok = e.len() <= 254
            && e.split_once('@').is_some_and(|(l, d)| {
                !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !d.contains('@')
            })
            && !e.chars().any(|c| c.is_whitespace() || c.is_control());
        if !ok {
            errs.push(FieldError::new("email", "invalid_email", "not an e-mail address").with_value(e.clone()));
        }
    }
}

impl PersonInput {
    /// Normalizes every text to its storage form (NFC, trimmed) and checks every item.
    /// Returns all problems at once, each naming its field.
    pub fn validate(mut self, today: Date) -> Result<PersonInput, ValidationErrors> {
        let mut e = ValidationErrors::default();
        check_name_part(&mut e, "name.surname", &mut self.name.surname, true);
        check_name_part(&mut e, "name.middle", &mut self.name.middle, false);
        check_name_part(&mut e, "name.given", &mut self.name.given, true);
        if self.other_names.len() > 10 {
            e.push(FieldError::new("other_names", "too_many", "at most 10 other names"));
        }
        for (i, n) in self.other_names.iter_mut().enumerate() {
            check_name_part(&mut e, &format!("other_names[{i}]"), n, true);
        }
        if self.birth_date.is_after(today) {
            e.push(
                FieldError::new("birth_date", "future_date", "the date of birth lies in the future")
                    .with_value(self.birth_date.to_string()),
            );
        }
        if let Some(p) = &mut self.birth_place {
            check_place(&mut e, "birth_place", p, false);
        }
        check_place(&mut e, "birth_registration_place", &mut self.birth_registration_place, true);
        if let Some(p) = &mut self.hometown {
            check_place(&mut e, "hometown", p, false);
        }
        if reference::ethnicity(&self.ethnicity).is_none() {
            e.push(
                FieldError::new("ethnicity", "unknown_code", "not one of the 54 ethnicity codes (01-54)")
                    .with_value(self.ethnicity.clone()),
            );
        }
        if reference::religion(&self.religion).is_none() {
            e.push(
                FieldError::new("religion", "unknown_code", "not a religion code (00 none, 01-16)")
                    .with_value(self.religion.clone()),
            );
        }
        check_nationalities(&mut e, "nationalities", &mut self.nationalities, true);
        if let Some(b) = &mut self.blood_type {
            check_text(&mut e, "blood_type.lab_result", &mut b.lab_result, MAX_TEXT, true);
        }
        if self.previous_documents.len() > MAX_LIST {
            e.push(FieldError::new("previous_documents", "too_many", format!("at most {MAX_LIST} documents")));
        }
        for (i, d) in self.previous_documents.iter_mut().enumerate() {
            let f = format!("previous_documents[{i}]");
            d.number = d.number.trim().to_string();
            let ok = match d.kind {
                DocumentKind::Cmnd9 => d.number.len() == 9,
                _ => d.number.len() == 12,
            } && d.number.bytes().all(|b| b.is_ascii_digit());
            if !ok {
                e.push(
                    FieldError::new(
                        format!("{f}.number"),
                        "invalid_number",
                        "9 digits for a CMND, 12 digits otherwise",
                    )
                    .with_value(d.number.clone()),
                );
            }
            check_text(&mut e, &format!("{f}.issue_place"), &mut d.issue_place, MAX_TEXT, true);
            if d.issue_date > today {
                e.push(FieldError::new(format!("{f}.issue_date"), "future_date", "the issue date lies in the future"));
            }
            if d.expiry_date.is_some_and(|x| x < d.issue_date) {
                e.push(FieldError::new(format!("{f}.expiry_date"), "before_issue", "expires before it was issued"));
            }
        }
        if self.relatives.len() > MAX_LIST {
            e.push(FieldError::new("relatives", "too_many", format!("at most {MAX_LIST} relatives")));
        }
        for (i, r) in self.relatives.iter_mut().enumerate() {
            let f = format!("relatives[{i}]");
            check_text(&mut e, &format!("{f}.name"), &mut r.name, 3 * MAX_NAME_PART, true);
            if !r.name.is_empty() && !text::is_name_text(&r.name) {
                e.push(
                    FieldError::new(
                        format!("{f}.name"),
                        "invalid_characters",
                        "a name holds only letters, spaces, hyphens and apostrophes",
                    )
                    .with_value(r.name.clone()),
                );
            }
            check_nationalities(&mut e, &format!("{f}.nationalities"), &mut r.nationalities, false);
        }
        for (f, a) in [
            ("permanent_residence", &mut self.permanent_residence),
            ("temporary_residence", &mut self.temporary_residence),
            ("current_residence", &mut self.current_residence),
        ] {
            if let Some(a) = a {
                check_address(&mut e, f, a);
            }
        }
        if let Some(t) = &mut self.temporary_absence {
            check_opt_text(&mut e, "temporary_absence.destination", &mut t.destination, MAX_TEXT);
            if t.until.is_some_and(|u| u < t.from) {
                e.push(FieldError::new("temporary_absence.until", "before_start", "ends before it starts"));
            }
        }
        check_opt_text(&mut e, "residence_file_number", &mut self.residence_file_number, 30);
        if let Some(h) = &mut self.household {
            check_text(&mut e, "household.head_name", &mut h.head_name, 3 * MAX_NAME_PART, true);
        }
        check_opt_text(&mut e, "occupation", &mut self.occupation, MAX_TEXT);
        check_opt_text(&mut e, "identifying_features", &mut self.identifying_features, MAX_TEXT);
        check_phone(&mut e, &mut self.phone);
        check_email(&mut e, &mut self.email);
        e.into_result().map(|()| self)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use time::macros::date;

    pub fn sample() -> PersonInput {
        serde_json::from_value(serde_json::json!({
            "name": {"surname": "Nguyễn", "middle": "Văn", "given": "An"},
            "birth_date": "1990-05-17",
            "sex": "male",
            "birth_registration_place": {"province_code": "01"},
            "ethnicity": "01",
            "religion": "00",
            "nationalities": ["VNM"],
            "permanent_residence": {"scheme": "2025", "commune_code": "00004", "detail": "12 Phố Đội Cấn"}
        }))
        .unwrap()
    }

    const TODAY: Date = date!(2026 - 11 - 29);

    #[test]
    fn a_minimal_record_validates() {
        let p = sample().validate(TODAY).unwrap();
        assert_eq!(p.birth_registration_place.scheme, Some(Scheme::Y2025));
        let person = Person::new_pending(p);
        assert_eq!(person.id_prefix(), Some("001"));
        let f = person.search_facts();
        assert_eq!(f.name_key, "nguyen van an");
        assert_eq!(f.birth_year, 1990);
        assert_eq!(f.commune_key.as_deref(), Some("2025:00004"));
        assert_eq!(f.province_2025.as_deref(), Some("01"));
    }

    #[test]
    fn legacy_addresses_map_to_their_2025_province() {
        let a = Address { scheme: Scheme::Legacy, commune_code: "00004".into(), detail: None };
        assert_eq!(a.province_2025().as_deref(), Some("01"));
    }

    #[test]
    fn every_bad_item_is_named() {
        let mut p = sample();
        p.name.given = "An3".into();
        p.birth_date = PartialDate::Year(2030);
        p.ethnicity = "99".into();
        p.religion = "17".into();
        p.nationalities = vec!["VNM".into(), "ZZZ".into(), "VNM".into()];
        p.permanent_residence.as_mut().unwrap().commune_code = "99999".into();
        p.phone = Some("12345".into());
        p.email = Some("nobody".into());
        p.name.surname = "N".repeat(51);
        let errs = p.validate(TODAY).unwrap_err();
        let fields: Vec<&str> = errs.0.iter().map(|e| e.field.as_str()).collect();
        for f in [
            "name.given",
            "name.surname",
            "birth_date",
            "ethnicity",
            "religion",
            "nationalities[1]",
            "nationalities[2]",
            "permanent_residence.commune_code",
            "phone",
            "email",
        ] {
            assert!(fields.contains(&f), "{f} missing in {fields:?}");
        }
    }

    #[test]
    fn stateless_stands_alone() {
        let mut p = sample();
        p.nationalities = vec!["XXA".into()];
        assert!(p.clone().validate(TODAY).is_ok());
        p.nationalities = vec!["XXA".into(), "VNM".into()];
        assert!(p.validate(TODAY).is_err());
        let mut p = sample();
        p.nationalities = vec!["VNM".into(), "fra".into()];
        assert_eq!(p.validate(TODAY).unwrap().nationalities, vec!["VNM", "FRA"]);
    }

    #[test]
    fn text_is_stored_nfc_and_phone_normalized() {
        use unicode_normalization::UnicodeNormalization;
        let mut p = sample();
        p.name.surname = "Nguyễn".nfd().collect();
        p.phone = Some("+84 912 345 678".into());
        let p = p.validate(TODAY).unwrap();
        assert_eq!(p.name.surname, "Nguyễn");
        assert_eq!(p.phone.as_deref(), Some("0912345678"));
    }

    #[test]
    fn commune_must_lie_in_the_given_province() {
        let mut p = sample();
        p.birth_registration_place = Place {
            country: "VNM".into(),
            scheme: Some(Scheme::Y2025),
            province_code: Some("79".into()),
            commune_code: Some("00004".into()),
            detail: None,
        };
        let errs = p.validate(TODAY).unwrap_err();
        assert_eq!(errs.0[0].field, "birth_registration_place.commune_code");
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let mut v = serde_json::to_value(sample()).unwrap();
        v["nickname"] = "x".into();
        assert!(serde_json::from_value::<PersonInput>(v).is_err());
    }

    #[test]
    fn status_changes() {
        let mut person = Person::new_pending(sample().validate(TODAY).unwrap());
        assert!(person.check_status_change(PersonStatus::Dead, Some(PartialDate::Year(2020)), TODAY).is_err());
        person.status = PersonStatus::Active;
        assert!(person.check_status_change(PersonStatus::Dead, Some(PartialDate::Year(2020)), TODAY).is_ok());
        assert!(person.check_status_change(PersonStatus::Dead, None, TODAY).is_err());
        assert!(person.check_status_change(PersonStatus::Dead, Some(PartialDate::Year(1980)), TODAY).is_err());
        assert!(person.check_status_change(PersonStatus::Missing, Some(PartialDate::Year(2027)), TODAY).is_err());
        assert!(person.check_status_change(PersonStatus::Pending, None, TODAY).is_err());
    }

    #[test]
    fn person_json_is_flat() {
        let person = Person::new_pending(sample());
        let v = serde_json::to_value(&person).unwrap();
        assert_eq!(v["status"], "pending");
        assert_eq!(v["name"]["given"], "An");
        let back: Person = serde_json::from_value(v).unwrap();
        assert_eq!(back, person);
    }
}
