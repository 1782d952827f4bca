//! The 12-digit personal identification number (Decree 137/2015, Circular 07/2016/TT-BCA)
//! and the legacy ID-card (CMND) numbers.
//!
//! `PPP G YY RRRRRR`: PPP = province of birth registration ("0" + GSO code of the legacy
//! province), G = century and sex, YY = last two digits of the birth year, RRRRRR = random.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

use crate::reference;

/// Sex as the law records it (it decides the century digit of the personal ID).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Male,
    Female,
}

impl Sex {
    pub fn vietnamese(self) -> &'static str {
        match self {
            Sex::Male => "Nam",
            Sex::Female => "Nữ",
        }
    }
    pub fn code(self) -> &'static str {
        match self {
            Sex::Male => "male",
            Sex::Female => "female",
        }
    }
    pub fn from_code(s: &str) -> Option<Sex> {
        match s {
            "male" => Some(Sex::Male),
            "female" => Some(Sex::Female),
            _ => None,
        }
    }
}

/// Why a personal ID number was rejected: which part is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("a personal ID number has 12 digits, this has {0} characters")]
    Length(usize),
    #[error("character {position} is {found:?}, only digits 0-9 are allowed")]
    NotDigit { position: usize, found: char },
    #[error("digits 1-3 ({0}) are not the code of a province of birth registration")]
    UnknownProvince(String),
    #[error("digit 4 (century/sex) is {digit}: it means {meaning}, but the person is {actual}")]
    CenturySexMismatch { digit: u8, meaning: String, actual: String },
    #[error("digits 5-6 ({found:02}) must be the last two digits of the birth year {year}")]
    YearMismatch { found: u8, year: i32 },
    #[error("digits 1-3 ({found}) must be the code of the province of birth registration {expected}")]
    ProvinceMismatch { found: String, expected: String },
    #[error("birth year {0} cannot be encoded: the rule covers 1900-2399")]
    YearOutOfRange(i32),
    #[error("serial {0} is not below 1000000")]
    Serial(u32),
}

impl IdError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            IdError::Length(_) => "id_length",
            IdError::NotDigit { .. } => "id_not_digit",
            IdError::UnknownProvince(_) => "id_unknown_province",
            IdError::CenturySexMismatch { .. } => "id_century_sex_mismatch",
            IdError::YearMismatch { .. } => "id_year_mismatch",
            IdError::ProvinceMismatch { .. } => "id_province_mismatch",
            IdError::YearOutOfRange(_) => "id_year_out_of_range",
            IdError::Serial(_) => "id_serial",
        }
    }
}

/// A valid 12-digit personal identification number. It can only be built valid.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PersonalId([u8; 12]);

impl PersonalId {
    /// Parses and checks the shape and the province prefix against the legal table.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::parse_with(s, |p| reference::id_province(p).is_some())
    }

    /// Like [`PersonalId::parse`], with a caller-supplied table of valid prefixes
    /// (e.g. the legacy provinces plus configured country codes for births registered abroad).
    pub fn parse_with(s: &str, known_prefix: impl Fn(&str) -> bool) -> Result<Self, IdError> {
        let n = s.chars().count();
        if n != 12 {
            return Err(IdError::Length(n));
        }
        let mut out = [0u8; 12];
        for (i, c) in s.chars().enumerate() {
            if !c.is_ascii_digit() {
                return Err(IdError::NotDigit { position: i + 1, found: c });
            }
            out[i] = c as u8;
        }
        let id = PersonalId(out);
        if !known_prefix(id.province_code()) {
            return Err(IdError::UnknownProvince(id.province_code().to_string()));
        }
        Ok(id)
    }

    /// Builds a number from its parts. `serial` is the random part, below 1,000,000.
    pub fn from_parts(province_code: &str, sex: Sex, birth_year: i32, serial: u32) -> Result<Self, IdError> {
        if reference::id_province(province_code).is_none() {
            return Err(IdError::UnknownProvince(province_code.to_string()));
        }
        if serial >= 1_000_000 {
            return Err(IdError::Serial(serial));
        }
        let g = century_digit(sex, birth_year)?;
        let s = format!("{province_code}{g}{:02}{serial:06}", birth_year.rem_euclid(100));
        Self::parse(&s)
    }

    pub fn as_str(&self) -> &str {
        // SAFETY-free: every byte is an ASCII digit by construction.
        std::str::from_utf8(&self.0).expect("ASCII digits")
    }

    /// Digits 1-3: the province of birth registration.
    pub fn province_code(&self) -> &str {
        &self.as_str()[0..3]
    }

    pub fn century_digit(&self) -> u8 {
        self.0[3] - b'0'
    }

    pub fn sex(&self) -> Sex {
        if self.century_digit().is_multiple_of(2) { Sex::Male } else { Sex::Female }
    }

    /// The full birth year the number encodes.
    pub fn birth_year(&self) -> i32 {
        let yy = ((self.0[4] - b'0') * 10 + (self.0[5] - b'0')) as i32;
        1900 + 100 * (self.century_digit() / 2) as i32 + yy
    }

    /// Digits 7-12: the random part.
    pub fn serial(&self) -> u32 {
        self.as_str()[6..].parse().expect("digits")
    }

    /// Checks that the number agrees with the person's sex and birth year.
    pub fn check_matches(&self, sex: Sex, birth_year: i32) -> Result<(), IdError> {
        let g = self.century_digit();
        if self.sex() != sex || !(1900..2400).contains(&birth_year) || (birth_year - 1900) / 100 != (g / 2) as i32 {
            let from = 1900 + 100 * (g / 2) as i32;
            return Err(IdError::CenturySexMismatch {
                digit: g,
                meaning: format!("{} born {from}-{}", self.sex().code(), from + 99),
                actual: format!("{} born {birth_year}", sex.code()),
            });
        }
        let yy = (self.0[4] - b'0') * 10 + (self.0[5] - b'0');
        if i32::from(yy) != birth_year.rem_euclid(100) {
            return Err(IdError::YearMismatch { found: yy, year: birth_year });
        }
        Ok(())
    }
}

/// The century/sex digit: 0/1 for 1900-1999 male/female, 2/3 for 2000-2099, 4/5, 6/7, 8/9 after.
pub fn century_digit(sex: Sex, birth_year: i32) -> Result<u8, IdError> {
    if !(1900..2400).contains(&birth_year) {
        return Err(IdError::YearOutOfRange(birth_year));
    }
    let base = ((birth_year - 1900) / 100) as u8 * 2;
    Ok(base + if sex == Sex::Female { 1 } else { 0 })
}

/// Draws a uniform serial in 0..1,000,000 from a source of uniform 32-bit random numbers
/// (rejection sampling, so no serial is more likely than another).
pub fn random_serial(mut draw: impl FnMut() -> u32) -> u32 {
    const LIMIT: u32 = u32::MAX - (u32::MAX % 1_000_000) - 1; // largest multiple of 10^6, minus one
    loop {
        let x = draw();
        if x <= LIMIT {
            return x % 1_000_000;
        }
    }
}

impl fmt::Display for PersonalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
impl fmt::Debug for PersonalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PersonalId({})", self.as_str())
    }
}
impl FromStr for PersonalId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}
impl Serialize for PersonalId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
impl<'de> Deserialize<'de> for PersonalId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PersonalId::parse(&s).map_err(|e| serde::de::Error::custom(format!("{e}: {s:?}")))
    }
}
impl utoipa::PartialSchema for PersonalId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\d{12}$"))
            .description(Some("12-digit personal identification number PPP G YY RRRRRR"))
            .examples(["001090123456"])
            .into()
    }
}
impl utoipa::ToSchema for PersonalId {}

/// An old identity-card (CMND) number: 9 digits, or the 12-digit CMND issued 2012-2016.
/// Kept on the record as a legacy identifier; never a personal ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LegacyIdNumber(String);

impl LegacyIdNumber {
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let n = s.chars().count();
        if n != 9 && n != 12 {
            return Err(IdError::Length(n));
        }
        if let Some((i, c)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii_digit()) {
            return Err(IdError::NotDigit { position: i + 1, found: c });
        }
        Ok(LegacyIdNumber(s.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl fmt::Display for LegacyIdNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl Serialize for LegacyIdNumber {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}
impl<'de> Deserialize<'de> for LegacyIdNumber {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LegacyIdNumber::parse(&s).map_err(|e| serde::de::Error::custom(format!("legacy ID number: {e}: {s:?}")))
    }
}
impl utoipa::PartialSchema for LegacyIdNumber {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^(\d{9}|\d{12})$"))
            .description(Some("Legacy identity-card (CMND) number, 9 or 12 digits"))
            .into()
    }
}
impl utoipa::ToSchema for LegacyIdNumber {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_valid_number() {
        let id = PersonalId::parse("001090123456").unwrap();
        assert_eq!(id.province_code(), "001");
        assert_eq!(id.sex(), Sex::Male);
        assert_eq!(id.birth_year(), 1990);
        assert_eq!(id.serial(), 123456);
        let id = PersonalId::parse("079305000001").unwrap();
        assert_eq!(id.sex(), Sex::Female);
        assert_eq!(id.birth_year(), 2005);
    }

    #[test]
    fn each_part_is_checked_with_a_reason() {
        assert_eq!(PersonalId::parse("00109012345"), Err(IdError::Length(11)));
        assert_eq!(PersonalId::parse("0010901234567"), Err(IdError::Length(13)));
        assert_eq!(PersonalId::parse("00109012345a"), Err(IdError::NotDigit { position: 12, found: 'a' }));
        assert_eq!(PersonalId::parse(" 01090123456"), Err(IdError::NotDigit { position: 1, found: ' ' }));
        // 003 is not a province code (Hà Giang is 002, Cao Bằng 004)
        assert_eq!(PersonalId::parse("003090123456"), Err(IdError::UnknownProvince("003".into())));
        assert_eq!(PersonalId::parse("100090123456"), Err(IdError::UnknownProvince("100".into())));
        // every one of the 63 legacy prefixes is accepted
        for p in reference::id_provinces() {
            assert!(PersonalId::parse(&format!("{}090123456", p.id_code)).is_ok());
        }
    }

    #[test]
    fn century_and_sex_digit() {
        assert_eq!(century_digit(Sex::Male, 1900), Ok(0));
        assert_eq!(century_digit(Sex::Female, 1999), Ok(1));
        assert_eq!(century_digit(Sex::Male, 2000), Ok(2));
        assert_eq!(century_digit(Sex::Female, 2099), Ok(3));
        assert_eq!(century_digit(Sex::Male, 2100), Ok(4));
        assert_eq!(century_digit(Sex::Female, 2199), Ok(5));
        assert_eq!(century_digit(Sex::Male, 2200), Ok(6));
        assert_eq!(century_digit(Sex::Female, 2399), Ok(9));
        assert_eq!(century_digit(Sex::Male, 1899), Err(IdError::YearOutOfRange(1899)));
        assert_eq!(century_digit(Sex::Male, 2400), Err(IdError::YearOutOfRange(2400)));
    }

    #[test]
    fn mismatches_are_named() {
        let id = PersonalId::parse("001090123456").unwrap();
        assert!(id.check_matches(Sex::Male, 1990).is_ok());
        assert!(matches!(id.check_matches(Sex::Female, 1990), Err(IdError::CenturySexMismatch { digit: 0, .. })));
        assert!(matches!(id.check_matches(Sex::Male, 2090), Err(IdError::CenturySexMismatch { .. })));
        assert_eq!(id.check_matches(Sex::Male, 1991), Err(IdError::YearMismatch { found: 90, year: 1991 }));
    }

    #[test]
    fn from_parts_rejects_bad_parts() {
        assert_eq!(PersonalId::from_parts("003", Sex::Male, 1990, 1), Err(IdError::UnknownProvince("003".into())));
        assert_eq!(PersonalId::from_parts("001", Sex::Male, 1990, 1_000_000), Err(IdError::Serial(1_000_000)));
        assert_eq!(PersonalId::from_parts("001", Sex::Male, 1850, 1), Err(IdError::YearOutOfRange(1850)));
        assert_eq!(PersonalId::from_parts("001", Sex::Female, 2003, 42).unwrap().as_str(), "001303000042");
    }

    #[test]
    fn legacy_numbers() {
        assert!(LegacyIdNumber::parse("012345678").is_ok());
        assert!(LegacyIdNumber::parse("012345678901").is_ok());
        assert_eq!(LegacyIdNumber::parse("12345678"), Err(IdError::Length(8)));
        assert_eq!(LegacyIdNumber::parse("01234567x"), Err(IdError::NotDigit { position: 9, found: 'x' }));
    }

    #[test]
    fn random_serial_rejects_the_biased_tail() {
        let mut draws = vec![u32::MAX, u32::MAX - 1, 1_234_567].into_iter();
        assert_eq!(random_serial(|| draws.next().unwrap()), 234_567);
    }

    proptest! {
        #[test]
        fn from_parts_round_trips(pi in 0usize..63, female: bool, year in 1900i32..2400, serial in 0u32..1_000_000) {
            let p = &reference::id_provinces()[pi];
            let sex = if female { Sex::Female } else { Sex::Male };
            let id = PersonalId::from_parts(&p.id_code, sex, year, serial).unwrap();
            prop_assert_eq!(id.province_code(), p.id_code.as_str());
            prop_assert_eq!(id.sex(), sex);
            prop_assert_eq!(id.birth_year(), year);
            prop_assert_eq!(id.serial(), serial);
            prop_assert!(id.check_matches(sex, year).is_ok());
            prop_assert_eq!(PersonalId::parse(id.as_str()).unwrap(), id);
            let other = if female { Sex::Male } else { Sex::Female };
            prop_assert!(id.check_matches(other, year).is_err());
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,15}") {
            let _ = PersonalId::parse(&s);
            let _ = LegacyIdNumber::parse(&s);
        }

        #[test]
        fn serial_is_in_range(x in 0u32..=4_293_999_999) {
            prop_assert_eq!(random_serial(|| x), x % 1_000_000);
        }
    }
}
