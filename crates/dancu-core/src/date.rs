//! Partial dates: year only, month and year, or a full date (common for older people's birth dates).

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use time::{Date, Month};

/// A date that may be known only to the year or to the month.
///
/// Canonical text form (API, database): `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
/// Parsing also accepts the Vietnamese forms `MM/YYYY` and `DD/MM/YYYY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PartialDate {
    Year(i32),
    YearMonth(i32, Month),
    Full(Date),
}

/// Why a date string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    #[error("not a date: expected YYYY, YYYY-MM, YYYY-MM-DD, MM/YYYY or DD/MM/YYYY")]
    Format,
    #[error("year {0} is outside 1800..=2199")]
    Year(i32),
    #[error("month {0} does not exist")]
    Month(u32),
    #[error("day {day} does not exist in {month:02}/{year}")]
    Day { day: u32, month: u32, year: i32 },
}

impl PartialDate {
    pub const MIN_YEAR: i32 = 1800;
    pub const MAX_YEAR: i32 = 2199;

    pub fn year(&self) -> i32 {
        match *self {
            PartialDate::Year(y) | PartialDate::YearMonth(y, _) => y,
            PartialDate::Full(d) => d.year(),
        }
    }

    pub fn month(&self) -> Option<Month> {
        match *self {
            PartialDate::Year(_) => None,
            PartialDate::YearMonth(_, m) => Some(m),
            PartialDate::Full(d) => Some(d.month()),
        }
    }

    pub fn full(&self) -> Option<Date> {
        match *self {
            PartialDate::Full(d) => Some(d),
            _ => None,
        }
    }

    /// The earliest real day this partial date can stand for.
    pub fn earliest(&self) -> Date {
        match *self {
            PartialDate::Year(y) => Date::from_calendar_date(y, Month::January, 1).expect("valid year"),
            PartialDate::YearMonth(y, m) => Date::from_calendar_date(y, m, 1).expect("valid year"),
            PartialDate::Full(d) => d,
        }
    }

    /// True when every day this date can stand for lies after `today` (the date is certainly in the future).
    pub fn is_after(&self, today: Date) -> bool {
        self.earliest() > today
    }

    pub fn from_ymd(year: i32, month: u32, day: u32) -> Result<Self, DateError> {
        check_year(year)?;
        let m = month_of(month)?;
        Date::from_calendar_date(year, m, u8::try_from(day).unwrap_or(0))
            .map(PartialDate::Full)
            .map_err(|_| DateError::Day { day, month, year })
    }

    /// Parses the canonical and the Vietnamese forms.
    pub fn parse(s: &str) -> Result<Self, DateError> {
        let s = s.trim();
        let nums = |parts: &[&str]| -> Result<Vec<u32>, DateError> {
            parts
                .iter()
                .map(|p| {
                    if p.is_empty() || p.len() > 4 || !p.bytes().all(|b| b.is_ascii_digit()) {
                        Err(DateError::Format)
                    } else {
                        p.parse::<u32>().map_err(|_| DateError::Format)
                    }
                })
                .collect()
        };
        if s.contains('/') {
            let parts: Vec<&str> = s.split('/').collect();
            let n = nums(&parts)?;
            match (parts.as_slice(), n.as_slice()) {
                ([_, y], [m, yy]) if y.len() == 4 => {
                    let year = *yy as i32;
                    check_year(year)?;
                    Ok(PartialDate::YearMonth(year, month_of(*m)?))
                }
                ([_, _, y], [d, m, yy]) if y.len() == 4 => Self::from_ymd(*yy as i32, *m, *d),
                _ => Err(DateError::Format),
            }
        } else {
            let parts: Vec<&str> = s.split('-').collect();
            if parts[0].len() != 4 {
                return Err(DateError::Format);
            }
            let n = nums(&parts)?;
            match n.as_slice() {
                [y] => {
                    check_year(*y as i32)?;
                    Ok(PartialDate::Year(*y as i32))
                }
                [y, m] => {
                    check_year(*y as i32)?;
                    Ok(PartialDate::YearMonth(*y as i32, month_of(*m)?))
                }
                [y, m, d] => Self::from_ymd(*y as i32, *m, *d),
                _ => Err(DateError::Format),
            }
        }
    }

    /// Vietnamese display form: `dd/mm/yyyy`, `mm/yyyy` or `yyyy`.
    pub fn to_vietnamese(&self) -> String {
        match *self {
            PartialDate::Year(y) => format!("{y:04}"),
            PartialDate::YearMonth(y, m) => format!("{:02}/{y:04}", m as u8),
            PartialDate::Full(d) => {
                format!("{:02}/{:02}/{:04}", d.day(), d.month() as u8, d.year())
            }
        }
    }
}

fn check_year(y: i32) -> Result<(), DateError> {
    if (PartialDate::MIN_YEAR..=PartialDate::MAX_YEAR).contains(&y) { Ok(()) } else { Err(DateError::Year(y)) }
}

fn month_of(m: u32) -> Result<Month, DateError> {
    u8::try_from(m).ok().and_then(|m| Month::try_from(m).ok()).ok_or(DateError::Month(m))
}

impl fmt::Display for PartialDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            PartialDate::Year(y) => write!(f, "{y:04}"),
            PartialDate::YearMonth(y, m) => write!(f, "{y:04}-{:02}", m as u8),
            PartialDate::Full(d) => {
                write!(f, "{:04}-{:02}-{:02}", d.year(), d.month() as u8, d.day())
            }
        }
    }
}

impl Serialize for PartialDate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PartialDate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PartialDate::parse(&s).map_err(|e| serde::de::Error::custom(format!("{e}: {s:?}")))
    }
}

impl utoipa::PartialSchema for PartialDate {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(r"^\d{4}(-\d{2}(-\d{2})?)?$"))
            .description(Some("Partial date: YYYY, YYYY-MM or YYYY-MM-DD (MM/YYYY and DD/MM/YYYY accepted on input)"))
            .examples(["1958", "1972-05", "1990-12-31"])
            .into()
    }
}
impl utoipa::ToSchema for PartialDate {}

/// Serde helpers for a full `time::Date` in `YYYY-MM-DD` form.
pub mod iso_date {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::Date;
    use time::macros::format_description;

    const FMT: &[time::format_description::BorrowedFormatItem<'static>] = format_description!("[year]-[month]-[day]");

    pub fn serialize<S: Serializer>(d: &Date, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&d.format(FMT).map_err(serde::ser::Error::custom)?)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Date, D::Error> {
        let s = String::deserialize(d)?;
        Date::parse(&s, FMT).map_err(|_| serde::de::Error::custom(format!("not a date YYYY-MM-DD: {s:?}")))
    }
    pub fn parse(s: &str) -> Option<Date> {
        Date::parse(s, FMT).ok()
    }
    pub fn format(d: Date) -> String {
        d.format(FMT).unwrap_or_default()
    }

    pub mod option {
        use super::*;
        pub fn serialize<S: Serializer>(d: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Date>, D::Error> {
            let s = Option::<String>::deserialize(d)?;
            match s {
                None => Ok(None),
                Some(s) => Date::parse(&s, FMT)
                    .map(Some)
                    .map_err(|_| serde::de::Error::custom(format!("not a date YYYY-MM-DD: {s:?}"))),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use time::macros::date;

    #[test]
    fn parses_every_form() {
        assert_eq!(PartialDate::parse("1958").unwrap(), PartialDate::Year(1958));
        assert_eq!(PartialDate::parse("1972-05").unwrap(), PartialDate::YearMonth(1972, Month::May));
        assert_eq!(PartialDate::parse("05/1972").unwrap(), PartialDate::YearMonth(1972, Month::May));
        assert_eq!(PartialDate::parse("1990-12-31").unwrap(), PartialDate::Full(date!(1990 - 12 - 31)));
        assert_eq!(PartialDate::parse("31/12/1990").unwrap(), PartialDate::Full(date!(1990 - 12 - 31)));
        assert_eq!(PartialDate::parse("2000-02-29").unwrap(), PartialDate::Full(date!(2000 - 02 - 29)));
    }

    #[test]
    fn rejects_impossible_dates_with_reason() {
        assert_eq!(PartialDate::parse("1900-02-29"), Err(DateError::Day { day: 29, month: 2, year: 1900 }));
        assert_eq!(PartialDate::parse("31/04/2001"), Err(DateError::Day { day: 31, month: 4, year: 2001 }));
        assert_eq!(PartialDate::parse("2001-13"), Err(DateError::Month(13)));
        assert_eq!(PartialDate::parse("00/2001"), Err(DateError::Month(0)));
        assert_eq!(PartialDate::parse("1799"), Err(DateError::Year(1799)));
        for bad in ["", "19", "abcd", "2001-1-1x", "1/1/01", "2001--01", "+200", "2001-01-01-01", "１９９０"] {
            assert!(PartialDate::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn future_check_uses_earliest_day() {
        let today = date!(2026 - 11 - 29);
        assert!(!PartialDate::Year(2026).is_after(today));
        assert!(PartialDate::Year(2027).is_after(today));
        assert!(PartialDate::YearMonth(2026, Month::December).is_after(today));
        assert!(!PartialDate::Full(today).is_after(today));
    }

    #[test]
    fn vietnamese_display() {
        assert_eq!(PartialDate::parse("1990-01-05").unwrap().to_vietnamese(), "05/01/1990");
        assert_eq!(PartialDate::parse("1972-05").unwrap().to_vietnamese(), "05/1972");
    }

    proptest! {
        #[test]
        fn display_round_trips(y in 1800i32..=2199, m in 1u32..=12, d in 1u32..=31) {
            for pd in [PartialDate::parse(&format!("{y:04}")).unwrap(),
                       PartialDate::parse(&format!("{y:04}-{m:02}")).unwrap()] {
                prop_assert_eq!(PartialDate::parse(&pd.to_string()).unwrap(), pd);
                prop_assert_eq!(PartialDate::parse(&pd.to_vietnamese()).unwrap(), pd);
            }
            if let Ok(pd) = PartialDate::from_ymd(y, m, d) {
                prop_assert_eq!(PartialDate::parse(&pd.to_string()).unwrap(), pd);
                prop_assert_eq!(PartialDate::parse(&pd.to_vietnamese()).unwrap(), pd);
            }
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,20}") {
            let _ = PartialDate::parse(&s);
        }
    }
}
