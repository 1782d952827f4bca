//! Per-field normalizers for import rows. Each turns one raw cell into a domain value or a
//! [`FieldProblem`] (stable code + English reason); the caller adds line, field and value.

use std::fmt;

use time::{Date, Duration, Month};

use crate::date::{DateError, PartialDate};
use crate::error::FieldError;
use crate::id::{LegacyIdNumber, Sex};
use crate::intake::vnenc::{self, Encoding};
use crate::reference;
use crate::text;

/// What was wrong with one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldProblem {
    /// Stable machine-readable code, e.g. `invalid_date`.
    pub code: &'static str,
    /// Human-readable reason (English).
    pub reason: String,
}

impl FieldProblem {
    pub fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }

    /// The problem as a [`FieldError`] on `field`, carrying the offending value.
    pub fn into_field_error(self, field: impl Into<String>, value: &str) -> FieldError {
        FieldError::new(field, self.code, self.reason).with_value(value)
    }
}

impl fmt::Display for FieldProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.reason)
    }
}

impl std::error::Error for FieldProblem {}

fn empty() -> FieldProblem {
    FieldProblem::new("empty", "the cell is empty")
}

// ---------------------------------------------------------------------------------------------
// Dates

/// Options for [`date`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DateOptions {
    /// Read a bare number of 5 digits as an Excel serial day number (1900 date system,
    /// `36526` = 01/01/2000). Four digits are always a year.
    pub excel_serial: bool,
}

const DATE_FORMS: &str = "expected dd/mm/yyyy, d/m/yyyy, dd-mm-yyyy, dd.mm.yyyy, yyyy-mm-dd, mm/yyyy, yyyy-mm or yyyy";

/// A date in any of the forms of [`DATE_FORMS`]: full, month and year, or year only.
pub fn date(raw: &str, options: DateOptions) -> Result<PartialDate, FieldProblem> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(empty());
    }
    let format = || FieldProblem::new("invalid_date", format!("not a date: {DATE_FORMS}"));
    let parts: Vec<&str> = s.split(['/', '-', '.']).collect();
    if parts.iter().any(|p| p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return Err(format());
    }
    let num = |p: &str| p.parse::<u32>().map_err(|_| format());
    let year = |p: &str| -> Result<i32, FieldProblem> {
        if p.len() == 4 {
            Ok(num(p)? as i32)
        } else if p.len() == 2 {
            Err(FieldProblem::new("invalid_date", "two-digit year is ambiguous: write the year with 4 digits"))
        } else {
            Err(format())
        }
    };
    let day_month = |p: &str| if p.len() <= 2 { num(p) } else { Err(format()) };
    match parts.as_slice() {
        [y] if y.len() == 4 => year(y).and_then(|y| check(PartialDate::parse(&format!("{y:04}")))),
        [n] if options.excel_serial && n.len() == 5 => excel_serial(num(n)?),
        [n] if n.len() == 5 => Err(FieldProblem::new(
            "invalid_date",
            "a 5-digit number looks like an Excel serial date: export dates as text, or enable Excel serial dates",
        )),
        [y, m] if y.len() == 4 => {
            let (y, m) = (year(y)?, day_month(m)?);
            check(PartialDate::parse(&format!("{y:04}-{m:02}")))
        }
        [m, y] => {
            let (m, y) = (day_month(m)?, year(y)?);
            check(PartialDate::parse(&format!("{y:04}-{m:02}")))
        }
        [y, m, d] if y.len() == 4 => check(PartialDate::from_ymd(year(y)?, day_month(m)?, day_month(d)?)),
        [d, m, y] => check(PartialDate::from_ymd(year(y)?, day_month(m)?, day_month(d)?)),
        _ => Err(format()),
    }
}

fn check(r: Result<PartialDate, DateError>) -> Result<PartialDate, FieldProblem> {
    r.map_err(|e| match e {
        DateError::Year(_) => FieldProblem::new("date_out_of_range", e.to_string()),
        DateError::Format => FieldProblem::new("invalid_date", format!("not a date: {DATE_FORMS}")),
        _ => FieldProblem::new("invalid_date", e.to_string()),
    })
}

/// Excel's 1900 date system: serial 1 is 01/01/1900 and serial 60 the nonexistent 29/02/1900.
fn excel_serial(n: u32) -> Result<PartialDate, FieldProblem> {
    if n == 60 {
        return Err(FieldProblem::new("invalid_date", "Excel serial 60 is 29/02/1900, a day that does not exist"));
    }
    let base = Date::from_calendar_date(1899, Month::December, if n < 60 { 31 } else { 30 })
        .map_err(|_| FieldProblem::new("invalid_date", "Excel serial out of range"))?;
    let d = base
        .checked_add(Duration::days(i64::from(n)))
        .ok_or_else(|| FieldProblem::new("invalid_date", "Excel serial out of range"))?;
    check(PartialDate::from_ymd(d.year(), d.month() as u32, u32::from(d.day())))
}

// ---------------------------------------------------------------------------------------------
// Sex

/// Sex, from (case and accents ignored) `Nam`, `Nữ`/`Nu`, `M`, `F`, `Male`, `Female`,
/// `Nam giới`, `Nữ giới`. Numeric codes are refused: sources disagree (1/0, 1/2).
pub fn sex(raw: &str) -> Result<Sex, FieldProblem> {
    let key = text::fold(&vnenc::repair(raw.trim()).text);
    match key.as_str() {
        "" => Err(empty()),
        "nam" | "m" | "male" | "nam gioi" => Ok(Sex::Male),
        "nu" | "f" | "female" | "nu gioi" => Ok(Sex::Female),
        k if k.bytes().all(|b| b.is_ascii_digit()) => Err(FieldProblem::new(
            "invalid_sex",
            "numeric sex codes are ambiguous (1/0 or 1/2): map them to Nam/Nữ before import",
        )),
        _ => Err(FieldProblem::new("invalid_sex", "expected Nam or Nữ (also M/F, Male/Female)")),
    }
}

// ---------------------------------------------------------------------------------------------
// Phone numbers

/// The 2018 conversion of 11-digit mobile prefixes to 10-digit ones.
const OLD_MOBILE_PREFIXES: [(&str, &str); 21] = [
    ("0120", "070"),
    ("0121", "079"),
    ("0122", "077"),
    ("0126", "076"),
    ("0128", "078"),
    ("0123", "083"),
    ("0124", "084"),
    ("0125", "085"),
    ("0127", "081"),
    ("0129", "082"),
    ("0162", "032"),
    ("0163", "033"),
    ("0164", "034"),
    ("0165", "035"),
    ("0166", "036"),
    ("0167", "037"),
    ("0168", "038"),
    ("0169", "039"),
    ("0186", "056"),
    ("0188", "058"),
    ("0199", "059"),
];

/// A Vietnamese phone number in the canonical domestic form `0xxxxxxxxx` (mobile, 10 digits) or
/// `02xxxxxxxxx` (landline with its 2017 area code, 11 digits). Accepts `+84`/`0084`/`84` in front,
/// spaces, dots, dashes and brackets, and converts the pre-2018 11-digit mobile prefixes.
pub fn phone(raw: &str) -> Result<String, FieldProblem> {
    let s = raw.trim();
    if s.is_empty() {
        return Err(empty());
    }
    let mut digits = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '.' | '-' | '(' | ')' => {}
            '+' if i == 0 => {}
            '/' | ',' | ';' => {
                return Err(FieldProblem::new("invalid_phone", "more than one number in the cell: keep one"));
            }
            _ => {
                return Err(FieldProblem::new("invalid_phone", format!("{c:?} is not part of a phone number")));
            }
        }
    }
    let international = s.starts_with('+') || digits.starts_with("00");
    let national = if let Some(rest) = digits.strip_prefix("0084").or_else(|| digits.strip_prefix("84")) {
        if !international && digits.starts_with("84") && !(11..=12).contains(&digits.len()) {
            return Err(FieldProblem::new("invalid_phone", "a number starting 84 must have 11 or 12 digits"));
        }
        format!("0{rest}")
    } else if international {
        return Err(FieldProblem::new("invalid_phone", "not a Vietnamese number (country code is not +84)"));
    } else {
        digits
    };
    if !national.starts_with('0') {
        return Err(FieldProblem::new("invalid_phone", "a Vietnamese number starts with 0 or +84"));
    }
    match (national.len(), national.as_bytes().get(1)) {
        (10, Some(b'3' | b'5' | b'7' | b'8' | b'9')) => Ok(national),
        (11, Some(b'2')) => Ok(national),
        (11, Some(b'1')) => OLD_MOBILE_PREFIXES
            .iter()
            .find(|(old, _)| national.starts_with(old))
            .map(|(old, new)| format!("{new}{}", &national[old.len()..]))
            .ok_or_else(|| {
                FieldProblem::new(
                    "invalid_phone",
                    format!("the 11-digit mobile prefix {} has no 2018 conversion", &national[..4]),
                )
            }),
        (10, Some(b'2' | b'4' | b'6')) => Err(FieldProblem::new(
            "invalid_phone",
            "looks like a landline number before 2017: landlines now have 11 digits with a 02x area code",
        )),
        (n, _) => Err(FieldProblem::new(
            "invalid_phone",
            format!("{n} digits: a mobile number has 10 digits (03, 05, 07, 08, 09), a landline 11 (02x)"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Names

/// A cleaned name and the legacy form it was repaired from, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanName {
    pub text: String,
    pub repaired: Option<Encoding>,
}

/// A personal name: legacy encodings repaired, NFC, spaces collapsed. Names all in capitals or all
/// in lower case (or with a word in lower case) are put in proper case; otherwise the case is kept
/// (`H'Hen`, `McLean`).
pub fn name(raw: &str) -> Result<CleanName, FieldProblem> {
    let repaired = vnenc::repair(raw.trim());
    let cleaned = text::clean(&repaired.text);
    if cleaned.is_empty() {
        return Err(empty());
    }
    let has_upper = cleaned.chars().any(char::is_uppercase);
    let has_lower = cleaned.chars().any(char::is_lowercase);
    let words_capitalised = cleaned.split([' ', '-']).all(|w| w.chars().next().is_none_or(|c| !c.is_lowercase()));
    let text = if has_upper && has_lower && words_capitalised { cleaned } else { text::proper_case(&cleaned) };
    if !text::is_name_text(&text) {
        let bad: String =
            text.chars().filter(|c| !(c.is_alphabetic() || *c == ' ' || *c == '-' || *c == '\'')).take(5).collect();
        return Err(FieldProblem::new(
            "invalid_name",
            format!("a name holds only letters, spaces, hyphens and apostrophes; found {bad:?}"),
        ));
    }
    Ok(CleanName { text, repaired: repaired.applied })
}

// ---------------------------------------------------------------------------------------------
// Reference lookups

/// Comparison key: repaired, accents and case folded, everything but letters and digits dropped.
fn key(s: &str) -> String {
    text::fold(&vnenc::repair(s.trim()).text).chars().filter(|c| c.is_alphanumeric()).collect()
}

/// A two-digit code written with or without its leading zero.
fn two_digit_code(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty() && s.len() <= 2 && s.bytes().all(|b| b.is_ascii_digit())).then(|| format!("{s:0>2}"))
}

/// Ethnicity code (`01`-`54`) from its code (`1` or `01`) or name, with or without accents
/// (`Kinh`, `Ê-đê`, `Ede`, `Khơ me`).
pub fn ethnicity(raw: &str) -> Result<&'static str, FieldProblem> {
    if raw.trim().is_empty() {
        return Err(empty());
    }
    if let Some(e) = two_digit_code(raw).and_then(|c| reference::ethnicity(&c)) {
        return Ok(&e.code);
    }
    let k = key(raw);
    reference::ethnicities().iter().find(|e| key(&e.name) == k).map(|e| e.code.as_str()).ok_or_else(|| {
        FieldProblem::new(
            "unknown_ethnicity",
            "not one of the 54 ethnicity codes (01-54) or names of the official list",
        )
    })
}

/// Religion code (`00` none, `01`-`16`) from its code or its Vietnamese or English name.
/// `Không`, `Không tôn giáo`, `Không có` and `None` give `00`.
pub fn religion(raw: &str) -> Result<&'static str, FieldProblem> {
    if raw.trim().is_empty() {
        return Err(empty());
    }
    if let Some(r) = two_digit_code(raw).and_then(|c| reference::religion(&c)) {
        return Ok(&r.code);
    }
    let k = key(raw);
    let none = ["khongtongiao", "khongco", "khong", "none"].contains(&k.as_str());
    if let Some(r) = reference::religion("00").filter(|_| none) {
        return Ok(&r.code);
    }
    reference::religions()
        .iter()
        .find(|r| key(&r.name) == k || key(&r.name_en) == k)
        .map(|r| r.code.as_str())
        .ok_or_else(|| {
            FieldProblem::new("unknown_religion", "not a religion code (00 none, 01-16) or name of the official list")
        })
}

/// Nationality code (ISO 3166-1 alpha-3, `XXA` stateless, `XXX` undetermined) from the code (any
/// case) or the Vietnamese or English country name (`Việt Nam`, `Viet Nam`, `Vietnam`).
pub fn nationality(raw: &str) -> Result<&'static str, FieldProblem> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(empty());
    }
    if let Some(c) = Some(t).filter(|t| t.len() == 3).and_then(|t| reference::country(&t.to_ascii_uppercase())) {
        return Ok(&c.code);
    }
    let k = key(t);
    reference::countries()
        .iter()
        .find(|c| key(&c.name_vi) == k || key(&c.name_en) == k)
        .map(|c| c.code.as_str())
        .ok_or_else(|| {
            FieldProblem::new(
                "unknown_nationality",
                "not an ISO 3166-1 alpha-3 code or country name of the official list",
            )
        })
}

// ---------------------------------------------------------------------------------------------
// Legacy ID-card numbers

/// A legacy identity-card (CMND) number: 9 or 12 digits; spaces, dots and dashes are dropped.
pub fn legacy_id(raw: &str) -> Result<LegacyIdNumber, FieldProblem> {
    let compact: String = raw.chars().filter(|c| !matches!(c, ' ' | '.' | '-')).collect();
    if compact.is_empty() {
        return Err(empty());
    }
    LegacyIdNumber::parse(&compact).map_err(|e| {
        let reason = match &e {
            crate::id::IdError::Length(n) => format!("a legacy ID-card number has 9 or 12 digits, this has {n}"),
            other => other.to_string(),
        };
        FieldProblem::new(e.code(), reason)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    fn full(y: i32, m: u32, d: u32) -> PartialDate {
        PartialDate::from_ymd(y, m, d).unwrap()
    }

    #[test]
    fn dates_in_every_form() {
        let o = DateOptions::default();
        for (raw, want) in [
            ("05/01/1990", full(1990, 1, 5)),
            ("5/1/1990", full(1990, 1, 5)),
            ("05-01-1990", full(1990, 1, 5)),
            ("05.01.1990", full(1990, 1, 5)),
            (" 1990-01-05 ", full(1990, 1, 5)),
            ("29/02/2000", full(2000, 2, 29)),
            ("05/1972", PartialDate::YearMonth(1972, Month::May)),
            ("5/1972", PartialDate::YearMonth(1972, Month::May)),
            ("1972-05", PartialDate::YearMonth(1972, Month::May)),
            ("1972/05", PartialDate::YearMonth(1972, Month::May)),
            ("1958", PartialDate::Year(1958)),
        ] {
            assert_eq!(date(raw, o), Ok(want), "{raw}");
        }
    }

    #[test]
    fn impossible_dates_say_why() {
        let o = DateOptions::default();
        let p = date("31/02/2001", o).unwrap_err();
        assert_eq!(p.code, "invalid_date");
        assert!(p.reason.contains("day 31 does not exist in 02/2001"), "{}", p.reason);
        assert!(date("29/02/1900", o).unwrap_err().reason.contains("day 29"));
        assert!(date("13/1990", o).unwrap_err().reason.contains("month 13"));
        assert!(date("01/13/1990", o).unwrap_err().reason.contains("month 13"));
        assert_eq!(date("1799", o).unwrap_err().code, "date_out_of_range");
        assert!(date("05/01/90", o).unwrap_err().reason.contains("two-digit year"));
        assert!(date("36526", o).unwrap_err().reason.contains("Excel"));
        assert_eq!(date("", o).unwrap_err().code, "empty");
        for bad in ["abc", "01//1990", "1.5.1990x", "05/01/1990/1", "123", "1990-001-01", "１９９０"] {
            assert_eq!(date(bad, o).unwrap_err().code, "invalid_date", "{bad}");
        }
    }

    #[test]
    fn excel_serial_dates() {
        let o = DateOptions { excel_serial: true };
        assert_eq!(date("36526", o), Ok(PartialDate::Full(date!(2000 - 01 - 01))));
        assert_eq!(date("25569", o), Ok(PartialDate::Full(date!(1970 - 01 - 01))));
        assert_eq!(date("59", o).unwrap_err().code, "invalid_date"); // not 5 digits: not a serial
        assert_eq!(date("1990", o), Ok(PartialDate::Year(1990)));
        assert_eq!(excel_serial(1), Ok(PartialDate::Full(date!(1900 - 01 - 01))));
        assert_eq!(excel_serial(61), Ok(PartialDate::Full(date!(1900 - 03 - 01))));
        assert!(excel_serial(60).is_err());
    }

    #[test]
    fn sex_values() {
        for m in ["Nam", "nam", "NAM", "M", "m", "Male", "Nam giới"] {
            assert_eq!(sex(m), Ok(Sex::Male), "{m}");
        }
        for f in ["Nữ", "nữ", "NỮ", "nu", "Nu", "F", "female", "N÷", "Nöõ"] {
            assert_eq!(sex(f), Ok(Sex::Female), "{f}");
        }
        assert!(sex("1").unwrap_err().reason.contains("ambiguous"));
        assert_eq!(sex("x").unwrap_err().code, "invalid_sex");
        assert_eq!(sex(" ").unwrap_err().code, "empty");
    }

    #[test]
    fn phone_numbers() {
        for (raw, want) in [
            ("+84 912 345 678", "0912345678"),
            ("0912345678", "0912345678"),
            ("84912345678", "0912345678"),
            ("0912.345.678", "0912345678"),
            ("0084 912-345-678", "0912345678"),
            ("01629123456", "0329123456"),
            ("+84 1629 123 456", "0329123456"),
            ("0120 123 4567", "0701234567"),
            ("0199 123 4567", "0591234567"),
            ("0123 456 7890", "0834567890"),
            ("(024) 3823 4567", "02438234567"),
            ("+84 28 3823 4567", "02838234567"),
        ] {
            assert_eq!(phone(raw), Ok(want.to_string()), "{raw}");
        }
        for (raw, why) in [
            ("+1 202 555 0100", "country code"),
            ("0912 345 67", "9 digits"),
            ("01301234567", "no 2018 conversion"),
            ("0438234567", "landline"),
            ("0912345678 / 0987654321", "more than one"),
            ("0912x45678", "not part of a phone number"),
            ("912345678", "starts with 0"),
            ("8491234567", "11 or 12 digits"),
        ] {
            let p = phone(raw).unwrap_err();
            assert_eq!(p.code, "invalid_phone");
            assert!(p.reason.contains(why), "{raw}: {}", p.reason);
        }
        assert_eq!(phone("").unwrap_err().code, "empty");
    }

    #[test]
    fn names_are_repaired_and_cased() {
        let n = name("  NGUYỄN   văn an ").unwrap();
        assert_eq!((n.text.as_str(), n.repaired), ("Nguyễn Văn An", None));
        let n = name("NguyÔn V¨n A").unwrap();
        assert_eq!((n.text.as_str(), n.repaired), ("Nguyễn Văn A", Some(Encoding::Tcvn3)));
        let n = name("NGUYÔN THÞ ¸NH").unwrap();
        assert_eq!((n.text.as_str(), n.repaired), ("Nguyễn Thị Ánh", Some(Encoding::Tcvn3)));
        let n = name("Nguyeenx Vawn Thij").unwrap();
        assert_eq!((n.text.as_str(), n.repaired), ("Nguyễn Văn Thị", Some(Encoding::Telex)));
        assert_eq!(name("H'Hen Niê").unwrap().text, "H'Hen Niê");
        assert_eq!(name("lee").unwrap().text, "Lee");
        assert_eq!(name("").unwrap_err().code, "empty");
        assert_eq!(name("An1").unwrap_err().code, "invalid_name");
        assert_eq!(name("<b>An</b>").unwrap_err().code, "invalid_name");
    }

    #[test]
    fn reference_lookups() {
        for (raw, want) in [("01", "01"), ("1", "01"), ("Kinh", "01"), ("kinh", "01"), ("Ê-đê", "12"), ("Ede", "12")]
        {
            assert_eq!(ethnicity(raw), Ok(want), "{raw}");
        }
        assert_eq!(ethnicity("khơ me"), Ok("05"));
        assert_eq!(ethnicity("Mêng"), Err(FieldProblem::new("unknown_ethnicity", ethnicity("x").unwrap_err().reason)));
        assert_eq!(ethnicity("55").unwrap_err().code, "unknown_ethnicity");
        assert_eq!(ethnicity("").unwrap_err().code, "empty");

        for (raw, want) in [("00", "00"), ("Không", "00"), ("không tôn giáo", "00"), ("2", "02"), ("Công giáo", "02")]
        {
            assert_eq!(religion(raw), Ok(want), "{raw}");
        }
        assert_eq!(religion("Buddhism"), Ok("01"));
        assert_eq!(religion("phat giao hoa hao"), Ok("05"));
        assert_eq!(religion("17").unwrap_err().code, "unknown_religion");

        for (raw, want) in
            [("VNM", "VNM"), ("vnm", "VNM"), ("Việt Nam", "VNM"), ("viet nam", "VNM"), ("Vietnam", "VNM")]
        {
            assert_eq!(nationality(raw), Ok(want), "{raw}");
        }
        assert_eq!(nationality("XXA"), Ok("XXA"));
        assert_eq!(nationality("Không quốc tịch"), Ok("XXA"));
        assert_eq!(nationality("Atlantis").unwrap_err().code, "unknown_nationality");
    }

    #[test]
    fn legacy_id_numbers() {
        assert_eq!(legacy_id("012 345 678").unwrap().as_str(), "012345678");
        assert_eq!(legacy_id("012.345.678.901").unwrap().as_str(), "012345678901");
        let p = legacy_id("01234567").unwrap_err();
        assert_eq!(p.code, "id_length");
        assert!(p.reason.contains("9 or 12 digits"));
        assert_eq!(legacy_id("01234567a").unwrap_err().code, "id_not_digit");
        assert_eq!(legacy_id("").unwrap_err().code, "empty");
    }

    #[test]
    fn problems_become_field_errors() {
        let e = date("31/02/2001", DateOptions::default()).unwrap_err().into_field_error("birth_date", "31/02/2001");
        assert_eq!((e.field.as_str(), e.code, e.value.as_deref()), ("birth_date", "invalid_date", Some("31/02/2001")));
    }

    proptest! {
        #[test]
        fn normalizers_never_panic(s in "\\PC{0,30}") {
            let _ = date(&s, DateOptions { excel_serial: true });
            let _ = sex(&s);
            let _ = phone(&s);
            let _ = name(&s);
            let _ = ethnicity(&s);
            let _ = religion(&s);
            let _ = nationality(&s);
            let _ = legacy_id(&s);
        }

        #[test]
        fn vietnamese_dates_round_trip(y in 1800i32..=2199, m in 1u32..=12, d in 1u32..=31) {
            if let Ok(pd) = PartialDate::from_ymd(y, m, d) {
                prop_assert_eq!(date(&pd.to_vietnamese(), DateOptions::default()), Ok(pd));
                prop_assert_eq!(date(&pd.to_string(), DateOptions::default()), Ok(pd));
            }
        }
    }
}
