//! Data sharing with partners (ministries, provinces, businesses, the public-service portal):
//! who a partner is and what it may do (services, field-level scopes, rate, validity), identity
//! verification with a per-field result, change events between two versions of a record,
//! per-partner pseudonymous identifiers, and citizens' consents. Pure: callers pass the time and
//! the keys in.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use unicode_normalization::UnicodeNormalization;

use crate::error::{FieldError, ValidationErrors};
use crate::person::{Name, Person, PersonStatus};
use crate::{PartialDate, Sex, text};

/// What kind of organisation a partner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerKind {
    /// A ministry or central agency (tax, social insurance, justice…).
    Ministry,
    /// A province's people's committee or departments.
    Province,
    /// A business (bank, telecom operator…): needs the citizen's consent to read data.
    Business,
    /// The national public-service portal.
    Portal,
}

impl PartnerKind {
    pub fn code(self) -> &'static str {
        match self {
            PartnerKind::Ministry => "ministry",
            PartnerKind::Province => "province",
            PartnerKind::Business => "business",
            PartnerKind::Portal => "portal",
        }
    }
}

/// Where a partner stands. `Revoked` is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartnerStatus {
    Active,
    /// Tạm dừng: no token is issued and issued tokens stop working until reactivated.
    Suspended,
    /// Thu hồi: for good.
    Revoked,
}

/// A service a partner may call (an OAuth scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Service {
    /// Xác thực thông tin: match / no match on ID + name + birth date (e-KYC).
    Verify,
    /// Batch verification of an uploaded file.
    BatchVerify,
    /// Khai thác thông tin: the fields of the partner's scope.
    Retrieve,
    /// The partner's pseudonymous identifier of a person.
    Pseudonym,
    /// Change events (deaths, name changes, moves) in the partner's scope.
    Events,
    /// Kiểm tra thẻ: is this identity card valid now (state and expiry; no personal data).
    CardValidity,
    /// Sending civil-status events (births, deaths, marriages, divorces): the civil registration
    /// system of the Ministry of Justice.
    CivilEvents,
}

impl Service {
    pub const ALL: [Service; 7] = [
        Service::Verify,
        Service::BatchVerify,
        Service::Retrieve,
        Service::Pseudonym,
        Service::Events,
        Service::CardValidity,
        Service::CivilEvents,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Service::Verify => "verify",
            Service::BatchVerify => "batch_verify",
            Service::Retrieve => "retrieve",
            Service::Pseudonym => "pseudonym",
            Service::Events => "events",
            Service::CardValidity => "card_validity",
            Service::CivilEvents => "civil_events",
        }
    }

    pub fn from_code(s: &str) -> Option<Service> {
        Service::ALL.into_iter().find(|x| x.code() == s)
    }
}

/// A field of the person record a partner may receive (field-level scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    PersonalId,
    /// Name and other names.
    FullName,
    BirthDate,
    Sex,
    /// Status (alive, dead, missing) and its date.
    Status,
    Nationalities,
    Ethnicity,
    /// Sensitive (religion).
    Religion,
    BirthPlace,
    BirthRegistrationPlace,
    Hometown,
    PermanentResidence,
    TemporaryResidence,
    CurrentResidence,
    MaritalStatus,
    Household,
    Relatives,
    LegacyId,
    Phone,
    Email,
    Occupation,
}

impl Field {
    pub const ALL: [Field; 21] = [
        Field::PersonalId,
        Field::FullName,
        Field::BirthDate,
        Field::Sex,
        Field::Status,
        Field::Nationalities,
        Field::Ethnicity,
        Field::Religion,
        Field::BirthPlace,
        Field::BirthRegistrationPlace,
        Field::Hometown,
        Field::PermanentResidence,
        Field::TemporaryResidence,
        Field::CurrentResidence,
        Field::MaritalStatus,
        Field::Household,
        Field::Relatives,
        Field::LegacyId,
        Field::Phone,
        Field::Email,
        Field::Occupation,
    ];

    /// The keys of the stored record's JSON that this field covers.
    pub fn json_keys(self) -> &'static [&'static str] {
        match self {
            Field::PersonalId => &["personal_id"],
            Field::FullName => &["name", "other_names"],
            Field::BirthDate => &["birth_date"],
            Field::Sex => &["sex"],
            Field::Status => &["status", "status_date"],
            Field::Nationalities => &["nationalities"],
            Field::Ethnicity => &["ethnicity"],
            Field::Religion => &["religion"],
            Field::BirthPlace => &["birth_place"],
            Field::BirthRegistrationPlace => &["birth_registration_place"],
            Field::Hometown => &["hometown"],
            Field::PermanentResidence => &["permanent_residence"],
            Field::TemporaryResidence => &["temporary_residence"],
            Field::CurrentResidence => &["current_residence"],
            Field::MaritalStatus => &["marital_status"],
            Field::Household => &["household"],
            Field::Relatives => &["relatives"],
            Field::LegacyId => &["legacy_id"],
            Field::Phone => &["phone"],
            Field::Email => &["email"],
            Field::Occupation => &["occupation"],
        }
    }
}

/// A partner as registered, with everything the registry decides by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partner {
    /// Stable identifier, the OAuth `client_id` (lowercase letters, digits, hyphens).
    pub id: String,
    pub name: String,
    pub kind: PartnerKind,
    /// The legal document that allows the sharing (law, decree, agreement number).
    pub legal_basis: String,
    pub services: Vec<Service>,
    pub fields: Vec<Field>,
    /// Data retrieval needs the citizen's consent (businesses: always).
    pub consent_required: bool,
    /// Calls allowed per second (a burst of as many).
    pub rate_limit_per_second: u32,
    /// Unix seconds.
    pub valid_from: i64,
    pub valid_until: i64,
    pub status: PartnerStatus,
    /// The partner's client-authentication key (SPKI PEM, P-256).
    pub public_key_pem: String,
    /// The per-partner key of pseudonymous identifiers, sealed at rest (never shown).
    pub pseudonym_key_sealed: String,
    /// SHA-256 (lowercase hex) of the partner's client certificate (DER), for mutual TLS: a
    /// connection presenting it (verified against the registry's partner CA) authenticates the
    /// partner without a bearer token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_sha256: Option<String>,
    /// Why the partner was last suspended or revoked.
    pub status_reason: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    pub updated_at: i64,
    /// An e-government portal's OpenID Connect registration (citizens log in to it through the
    /// registry); `None` for partners that only call services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<crate::citizen::OidcClient>,
}

impl Partner {
    /// Why the partner may not act at `now` (unix seconds), if it may not.
    pub fn refusal(&self, now: i64) -> Option<&'static str> {
        match self.status {
            PartnerStatus::Revoked => Some("the partner's access was revoked"),
            PartnerStatus::Suspended => Some("the partner's access is suspended"),
            PartnerStatus::Active if now < self.valid_from => Some("the partner's access is not valid yet"),
            PartnerStatus::Active if now >= self.valid_until => Some("the partner's access has expired"),
            PartnerStatus::Active => None,
        }
    }

    pub fn allows(&self, s: Service) -> bool {
        self.services.contains(&s)
    }

    pub fn sees(&self, f: Field) -> bool {
        self.fields.contains(&f)
    }
}

/// Checks a partner identifier: 3–64 of `a-z`, `0-9`, `-`, starting with a letter.
pub fn partner_id_problem(id: &str) -> Option<&'static str> {
    let ok = (3..=64).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    (!ok).then_some("3 to 64 lowercase letters, digits or hyphens, starting with a letter")
}

/// Validates what an administrator gives for a partner (the key is checked by the caller).
pub fn validate_partner(p: &Partner) -> Result<(), ValidationErrors> {
    let mut errs = ValidationErrors::default();
    if let Some(why) = partner_id_problem(&p.id) {
        errs.push(FieldError::new("id", "invalid_id", why).with_value(&p.id));
    }
    if p.name.trim().is_empty() || p.name.chars().count() > 200 {
        errs.push(FieldError::new("name", "required", "1 to 200 characters"));
    }
    if p.legal_basis.trim().is_empty() || p.legal_basis.chars().count() > 500 {
        errs.push(FieldError::new(
            "legal_basis",
            "required",
            "the legal document allowing the sharing (1–500 characters)",
        ));
    }
    if p.services.is_empty() && p.oidc.is_none() {
        errs.push(FieldError::new("services", "required", "at least one service (or an OpenID Connect registration)"));
    }
    if let Some(c) = &p.oidc {
        for e in crate::citizen::validate_client(c, &p.fields) {
            errs.push(e);
        }
    }
    if p.services.contains(&Service::Retrieve) && p.fields.is_empty() {
        errs.push(FieldError::new("fields", "required", "data retrieval needs at least one field in scope"));
    }
    if p.kind == PartnerKind::Business && !p.consent_required {
        errs.push(FieldError::new(
            "consent_required",
            "consent_required",
            "a business reads personal data only with the citizen's consent",
        ));
    }
    if p.rate_limit_per_second == 0 || p.rate_limit_per_second > 1_000_000 {
        errs.push(
            FieldError::new("rate_limit_per_second", "out_of_range", "1 to 1,000,000 calls per second")
                .with_value(p.rate_limit_per_second.to_string()),
        );
    }
    if p.valid_until <= p.valid_from {
        errs.push(FieldError::new("valid_until", "before_start", "the validity must end after it starts"));
    }
    errs.into_result()
}

/// The outcome of comparing one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FieldResult {
    Match,
    /// Consistent but not equal: the same letters with other diacritics, or a full date where
    /// the register holds only the year (or month and year).
    Partial,
    NoMatch,
    /// Not given, or not compared (no such person).
    NotChecked,
}

impl FieldResult {
    pub fn code(self) -> &'static str {
        match self {
            FieldResult::Match => "match",
            FieldResult::Partial => "partial",
            FieldResult::NoMatch => "no_match",
            FieldResult::NotChecked => "not_checked",
        }
    }
}

/// What the register holds that a verification compares.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VerificationFacts {
    pub status: PersonStatus,
    pub name: Name,
    pub birth_date: PartialDate,
    pub sex: Sex,
}

/// The result of a verification, field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// True only when the person exists, is alive, and every given field matches exactly.
    #[serde(rename = "match")]
    pub matched: bool,
    /// `match` (a person holds this ID) or `no_match`.
    pub personal_id: FieldResult,
    pub name: FieldResult,
    pub birth_date: FieldResult,
    pub sex: FieldResult,
    /// `active`, `dead`, `missing` (when the person exists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub person_status: Option<PersonStatus>,
}

/// A name as an exact comparison sees it: NFC, whitespace runs as one space, lower case
/// (`text::clean` then lower case, one character at a time: no string is built).
fn name_form(s: &str) -> impl Iterator<Item = char> + '_ {
    s.split_whitespace()
        .enumerate()
        .flat_map(|(i, word)| (i > 0).then_some(' ').into_iter().chain(word.nfc().flat_map(char::to_lowercase)))
}

/// Compares what a partner gives with the register (`None`: no person holds the ID).
pub fn verify(
    facts: Option<&VerificationFacts>,
    name: &str,
    birth_date: &PartialDate,
    sex: Option<Sex>,
) -> Verification {
    let Some(f) = facts else {
        return Verification {
            matched: false,
            personal_id: FieldResult::NoMatch,
            name: FieldResult::NotChecked,
            birth_date: FieldResult::NotChecked,
            sex: FieldResult::NotChecked,
            person_status: None,
        };
    };
    let full = f.name.full();
    let name_r = if name_form(name).eq(name_form(&full)) {
        FieldResult::Match
    } else if text::fold(name) == text::fold(&full) {
        FieldResult::Partial
    } else {
        FieldResult::NoMatch
    };
    let date_r = if *birth_date == f.birth_date {
        FieldResult::Match
    } else if birth_date.year() == f.birth_date.year()
        && precision(&f.birth_date) < precision(birth_date)
        && (f.birth_date.month().is_none() || f.birth_date.month() == birth_date.month())
    {
        FieldResult::Partial
    } else {
        FieldResult::NoMatch
    };
    let sex_r = match sex {
        None => FieldResult::NotChecked,
        Some(s) if s == f.sex => FieldResult::Match,
        Some(_) => FieldResult::NoMatch,
    };
    let matched = f.status == PersonStatus::Active
        && name_r == FieldResult::Match
        && date_r == FieldResult::Match
        && sex_r != FieldResult::NoMatch;
    Verification {
        matched,
        personal_id: FieldResult::Match,
        name: name_r,
        birth_date: date_r,
        sex: sex_r,
        person_status: Some(f.status),
    }
}

fn precision(d: &PartialDate) -> u8 {
    match d {
        PartialDate::Year(_) => 0,
        PartialDate::YearMonth(..) => 1,
        PartialDate::Full(_) => 2,
    }
}

/// A change in a person's record that subscribers are told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A child whose birth the civil registration system registered got its personal ID (the
    /// pending record made from the inbound `birth` event was activated).
    Birth,
    Death,
    Missing,
    NameChange,
    /// Permanent, temporary or current residence changed.
    Move,
}

impl EventKind {
    pub fn code(self) -> &'static str {
        match self {
            EventKind::Birth => "birth",
            EventKind::Death => "death",
            EventKind::Missing => "missing",
            EventKind::NameChange => "name_change",
            EventKind::Move => "move",
        }
    }

    /// Whether a partner with these fields in scope is told of this kind of event.
    pub fn in_scope(self, fields: &[Field]) -> bool {
        match self {
            EventKind::Birth => fields.contains(&Field::BirthDate),
            EventKind::Death | EventKind::Missing => fields.contains(&Field::Status),
            EventKind::NameChange => fields.contains(&Field::FullName),
            EventKind::Move => [Field::PermanentResidence, Field::TemporaryResidence, Field::CurrentResidence]
                .iter()
                .any(|f| fields.contains(f)),
        }
    }
}

/// The events between two versions of a record. `registered_birth`: the record was made from a
/// birth the civil registration system registered — its activation (a personal ID given) is a
/// birth; any other record's activation is not (an import, a late registration by an officer).
pub fn events(before: &Person, after: &Person, registered_birth: bool) -> Vec<EventKind> {
    let mut out = Vec::new();
    if registered_birth && before.personal_id.is_none() && after.personal_id.is_some() {
        out.push(EventKind::Birth);
    }
    if after.status == PersonStatus::Dead && before.status != PersonStatus::Dead {
        out.push(EventKind::Death);
    }
    if after.status == PersonStatus::Missing && before.status != PersonStatus::Missing {
        out.push(EventKind::Missing);
    }
    if after.record.name != before.record.name {
        out.push(EventKind::NameChange);
    }
    let (a, b) = (&after.record, &before.record);
    if a.permanent_residence != b.permanent_residence
        || a.temporary_residence != b.temporary_residence
        || a.current_residence != b.current_residence
    {
        out.push(EventKind::Move);
    }
    out
}

/// A partner's pseudonymous identifier of a person: HMAC-SHA256 of the personal ID under the
/// partner's own key, base64url. The same person gets the same value for one partner and
/// unlinkable values across partners; the ID cannot be recovered from it without the key.
pub fn pseudonym(partner_key: &[u8], personal_id: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(partner_key).expect("HMAC takes keys of any length");
    mac.update(b"dancu-pseudonym-v1:");
    mac.update(personal_id.as_bytes());
    b64url(&mac.finalize().into_bytes())
}

/// The signature of a webhook delivery: `v1=` and the lowercase hex HMAC-SHA256, under the
/// partner's webhook secret, of `{timestamp}.{event id}.{body}` (the timestamp in unix seconds, as
/// sent in `X-Dancu-Webhook-Timestamp`). Binding the time and the event id lets a receiver refuse
/// old or re-labelled deliveries.
pub fn webhook_signature(secret: &[u8], timestamp: i64, event_id: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(event_id.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", crate::audit::to_hex(&mac.finalize().into_bytes()))
}

/// A certificate fingerprint as administrators may write it (hex, any case, with or without
/// colons) in its stored form: 64 lowercase hex digits.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let hex: String = s.trim().chars().filter(|c| *c != ':').collect::<String>().to_ascii_lowercase();
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some(hex)
}

/// SHA-256 of bytes, lowercase hex (what an inbound event's body is compared by).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::audit::to_hex(&Sha256::digest(bytes))
}

/// Back-off before the next try of a delivery that failed `attempts` times (1 or more):
/// `base_ms` doubled per failure, at most `max_ms`.
pub fn backoff_ms(attempts: i64, base_ms: u64, max_ms: u64) -> u64 {
    let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
    base_ms.saturating_mul(1u64 << doublings).min(max_ms)
}

/// A citizen's consent to one partner reading the data of its scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Consent {
    pub id: String,
    /// Record key of the person.
    pub person_key: String,
    pub partner_id: String,
    pub purpose: String,
    /// Unix seconds.
    pub granted_at: i64,
    pub expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    /// Who recorded it (the officer at the counter, or `citizen`).
    pub recorded_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
}

impl Consent {
    pub fn in_force(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.granted_at <= now && now < self.expires_at
    }
}

// ---- base64url (RFC 4648 §5, no padding): what JOSE uses -------------------------------------

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub fn b64url(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    b64url_into(&mut out, bytes);
    out
}

/// Appends unpadded base64url of `bytes` to `out`.
pub fn b64url_into(out: &mut String, bytes: &[u8]) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
}

/// Decodes unpadded base64url; `None` on any other character or an impossible length.
pub fn b64url_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut buf, mut bits) = (0u32, 0u32);
    for b in s.bytes() {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        buf = (buf << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((buf >> bits) as u8);
            buf &= (1 << bits) - 1;
        }
    }
    // Leftover bits must be zero (canonical encoding).
    if buf != 0 {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {

    #[test]
    fn webhook_signature_is_hmac_sha256_of_time_id_and_body() {
        // Known answer computed independently (Python's hmac module).
        let sig = webhook_signature(b"Jefe", 1_700_000_000, "e1", b"{}");
        assert_eq!(sig, "v1=7f53602c17f65c1ab1fa4ae92832ee3a5d289828d4d70133afb0224d5285abe9");
        assert_ne!(sig, webhook_signature(b"Jefe", 1_700_000_001, "e1", b"{}"), "bound to the time");
        assert_ne!(sig, webhook_signature(b"Jefe", 1_700_000_000, "e2", b"{}"), "bound to the event id");
        assert_ne!(sig, webhook_signature(b"Jeff", 1_700_000_000, "e1", b"{}"), "bound to the secret");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff_ms(1, 1000, 3_600_000), 1000);
        assert_eq!(backoff_ms(2, 1000, 3_600_000), 2000);
        assert_eq!(backoff_ms(5, 1000, 3_600_000), 16_000);
        assert_eq!(backoff_ms(30, 1000, 3_600_000), 3_600_000);
        assert_eq!(backoff_ms(i64::MAX, 1000, 3_600_000), 3_600_000);
        assert_eq!(backoff_ms(0, 1000, 3_600_000), 1000);
    }

    use super::*;

    #[test]
    fn base64url_round_trips_and_matches_rfc4648() {
        assert_eq!(b64url(b""), "");
        assert_eq!(b64url(b"f"), "Zg");
        assert_eq!(b64url(b"fo"), "Zm8");
        assert_eq!(b64url(b"foo"), "Zm9v");
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        for n in 0..40u8 {
            let v: Vec<u8> = (0..n).map(|i| i.wrapping_mul(37)).collect();
            assert_eq!(b64url_decode(&b64url(&v)).unwrap(), v);
        }
        assert!(b64url_decode("Zg=").is_none());
        assert!(b64url_decode("Z").is_none());
        assert!(b64url_decode("Zh").is_none(), "non-canonical trailing bits");
    }

    fn facts() -> VerificationFacts {
        VerificationFacts {
            status: PersonStatus::Active,
            name: Name { surname: "Nguyễn".into(), middle: "Văn".into(), given: "An".into() },
            birth_date: PartialDate::parse("1990-05-17").unwrap(),
            sex: Sex::Male,
        }
    }

    #[test]
    fn verification_compares_field_by_field() {
        let f = facts();
        let d = PartialDate::parse("1990-05-17").unwrap();
        let v = verify(Some(&f), "nguyễn  văn AN", &d, Some(Sex::Male));
        assert!(v.matched);
        assert_eq!((v.name, v.birth_date, v.sex), (FieldResult::Match, FieldResult::Match, FieldResult::Match));
        let v = verify(Some(&f), "Nguyen Van An", &d, None);
        assert!(!v.matched);
        assert_eq!((v.name, v.sex), (FieldResult::Partial, FieldResult::NotChecked));
        let v = verify(Some(&f), "Nguyễn Văn Anh", &PartialDate::parse("1990-05-18").unwrap(), Some(Sex::Female));
        assert_eq!((v.name, v.birth_date, v.sex), (FieldResult::NoMatch, FieldResult::NoMatch, FieldResult::NoMatch));
        let mut year_only = facts();
        year_only.birth_date = PartialDate::parse("1990").unwrap();
        assert_eq!(verify(Some(&year_only), "Nguyễn Văn An", &d, None).birth_date, FieldResult::Partial);
        let mut dead = facts();
        dead.status = PersonStatus::Dead;
        let v = verify(Some(&dead), "Nguyễn Văn An", &d, None);
        assert!(!v.matched);
        assert_eq!(v.person_status, Some(PersonStatus::Dead));
        let v = verify(None, "x", &d, None);
        assert_eq!((v.matched, v.personal_id, v.name), (false, FieldResult::NoMatch, FieldResult::NotChecked));
    }

    #[test]
    fn the_exact_name_form_is_clean_text_in_lower_case() {
        let decomposed: String = "Nguyễn Thị Thuỷ".nfd().collect();
        for s in ["  NGUYỄN\tvăn   Đức ", decomposed.as_str(), "Lê", "", " ", "Hoà\u{00a0}Bình", "ÁNH  dương"]
        {
            let built = text::clean(s).to_lowercase();
            assert_eq!(name_form(s).collect::<String>(), built, "{s:?}");
        }
        let f = facts();
        let d = PartialDate::parse("1990-05-17").unwrap();
        let nfd: String = "  Nguyễn Văn\tAn ".nfd().collect();
        assert_eq!(verify(Some(&f), &nfd, &d, None).name, FieldResult::Match, "decomposed, spaced input");
        assert_eq!(verify(Some(&f), "Nguyễn Văn", &d, None).name, FieldResult::NoMatch, "a word missing");
        assert_eq!(verify(Some(&f), "Nguyễn VănAn", &d, None).name, FieldResult::NoMatch, "words joined");
    }

    #[test]
    fn pseudonyms_differ_by_partner_and_are_stable() {
        let a = pseudonym(b"key of partner a", "001090012345");
        assert_eq!(a, pseudonym(b"key of partner a", "001090012345"));
        assert_ne!(a, pseudonym(b"key of partner b", "001090012345"));
        assert_ne!(a, pseudonym(b"key of partner a", "001090012346"));
        assert_eq!(a.len(), 43);
    }

    #[test]
    fn events_follow_scope() {
        assert!(EventKind::Death.in_scope(&[Field::Status]));
        assert!(!EventKind::Death.in_scope(&[Field::FullName]));
        assert!(EventKind::Move.in_scope(&[Field::CurrentResidence]));
        assert!(!EventKind::NameChange.in_scope(&[Field::BirthDate]));
        assert!(EventKind::Birth.in_scope(&[Field::BirthDate]));
        assert!(!EventKind::Birth.in_scope(&[Field::PersonalId, Field::FullName, Field::Status]));
    }

    #[test]
    fn a_registered_birth_is_an_event_when_the_child_gets_its_id() {
        let input: crate::PersonInput = serde_json::from_value(serde_json::json!({
            "name": {"surname": "Lê", "middle": "Minh", "given": "Khang"}, "birth_date": "2026-11-18",
            "sex": "male", "birth_registration_place": {"province_code": "01"}, "ethnicity": "01", "religion": "00",
            "nationalities": ["VNM"]}))
        .unwrap();
        let pending = Person::new_pending(input);
        let mut active = pending.clone();
        active.personal_id = Some(crate::PersonalId::parse("001226012345").unwrap());
        active.status = PersonStatus::Active;
        assert_eq!(events(&pending, &active, true), [EventKind::Birth]);
        assert!(events(&pending, &active, false).is_empty(), "an officer's record: no birth");
        let mut renamed = active.clone();
        renamed.record.name.given = "Khôi".into();
        assert_eq!(events(&active, &renamed, true), [EventKind::NameChange], "a birth is told once");
    }
}
