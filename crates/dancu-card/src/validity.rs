//! When a card expires, by the Law on Identification 2023 (Art. 21, 46) and the 2014 Law on
//! Citizen Identification (Art. 21).
//!
//! A card must be renewed when the holder reaches a milestone age: 14, 25, 40 and 60 (2014 law:
//! 25, 40, 60). A card issued within the 2 years before a milestone stays valid until the next
//! milestone. From 60 a card does not expire.
//!
//! Rules this module fixes where the law leaves the detail open (documented, tested):
//! - The card expires on the holder's birthday of the milestone age (the expiry printed on
//!   cards: born 05/01/1993 → valid until 05/01/2033).
//! - "Within 2 years before" is inclusive: issued on the day the holder turns milestone − 2
//!   counts as within.
//! - A holder born on 29 February reaches an age on 28 February in common years: the card
//!   expires no later than the real birthday.
//! - A birth date known only to the year (or month) counts from its earliest possible day
//!   (1 January, or the 1st of the month): the card never outlives the true milestone.

use dancu_core::PartialDate;
use serde::{Deserialize, Serialize};
use time::{Date, Month};

/// Which law the card was issued under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CardLaw {
    /// Căn cước công dân under the 2014 law (issued before 1 July 2024).
    Law2014,
    /// Thẻ căn cước under the Law on Identification 2023 (from 1 July 2024).
    Law2023,
}

impl CardLaw {
    /// The law in force on `issue_date`.
    pub fn on(issue_date: Date) -> CardLaw {
        if issue_date < Date::from_calendar_date(2024, Month::July, 1).expect("valid date") {
            CardLaw::Law2014
        } else {
            CardLaw::Law2023
        }
    }

    pub fn milestones(self) -> &'static [i32] {
        match self {
            CardLaw::Law2014 => &[25, 40, 60],
            CardLaw::Law2023 => &[14, 25, 40, 60],
        }
    }
}

/// The day a holder born on `birth` reaches `age` years (29 February → 28 February in common years).
pub fn anniversary(birth: &PartialDate, age: i32) -> Date {
    let b = birth.earliest();
    let year = b.year() + age;
    Date::from_calendar_date(year, b.month(), b.day())
        .or_else(|_| Date::from_calendar_date(year, b.month(), b.day() - 1))
        .expect("only 29 February can be missing from a year")
}

/// The age in whole years on `day`.
pub fn age_on(birth: &PartialDate, day: Date) -> i32 {
    let b = birth.earliest();
    let mut age = day.year() - b.year();
    if anniversary(birth, age) > day {
        age -= 1;
    }
    age
}

/// The expiry date of a card issued on `issue_date` to a holder born on `birth`, under `law`;
/// `None` when the card does not expire (issued at 58 or later: 60 is the last milestone).
pub fn expiry(birth: &PartialDate, issue_date: Date, law: CardLaw) -> Option<Date> {
    law.milestones()
        .iter()
        .map(|&m| (m, anniversary(birth, m)))
        // The next milestone the holder has not reached, unless the card is issued within
        // the 2 years before it: then that milestone is skipped.
        .find(|&(m, day)| day > issue_date && issue_date < anniversary(birth, m - 2))
        .map(|(_, day)| day)
}

/// The next milestone age at which a holder of a card issued on `issue_date` must renew, if any.
pub fn next_milestone(birth: &PartialDate, issue_date: Date, law: CardLaw) -> Option<i32> {
    let e = expiry(birth, issue_date, law)?;
    law.milestones().iter().copied().find(|&m| anniversary(birth, m) == e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u8, day: u8) -> Date {
        Date::from_calendar_date(y, Month::try_from(m).unwrap(), day).unwrap()
    }
    fn full(y: i32, m: u8, day: u8) -> PartialDate {
        PartialDate::Full(d(y, m, day))
    }
    const LAW: CardLaw = CardLaw::Law2023;

    #[test]
    fn the_public_sample() {
        // Born 05/01/1993, card of 2021 (2014 law): valid until the 40th birthday.
        assert_eq!(expiry(&full(1993, 1, 5), d(2021, 4, 1), CardLaw::Law2014), Some(d(2033, 1, 5)));
    }

    #[test]
    fn every_milestone_edge() {
        let b = full(1990, 6, 15);
        // For each milestone m: issued the day before m-2 → expires at m; on the day of m-2 →
        // skips to the next; the day before m → next; on the day of m → next.
        let cases: &[(i32, Option<i32>, Option<i32>)] =
            &[(14, Some(14), Some(25)), (25, Some(25), Some(40)), (40, Some(40), Some(60))];
        for &(m, before_window, in_window) in cases {
            let edge = anniversary(&b, m - 2);
            let at = |age: Option<i32>| age.map(|a| anniversary(&b, a));
            assert_eq!(expiry(&b, edge.previous_day().unwrap(), LAW), at(before_window), "m={m} day before window");
            assert_eq!(expiry(&b, edge, LAW), at(in_window), "m={m} first day of window");
            let milestone = anniversary(&b, m);
            assert_eq!(expiry(&b, milestone.previous_day().unwrap(), LAW), at(in_window), "m={m} day before");
            assert_eq!(expiry(&b, milestone, LAW), at(in_window), "m={m} on the day");
        }
        // 60: issued the day before 58 → expires at 60; from 58 on → never.
        let w = anniversary(&b, 58);
        assert_eq!(expiry(&b, w.previous_day().unwrap(), LAW), Some(anniversary(&b, 60)));
        assert_eq!(expiry(&b, w, LAW), None);
        assert_eq!(expiry(&b, anniversary(&b, 60), LAW), None);
        assert_eq!(expiry(&b, d(2070, 1, 1), LAW), None);
        // A baby's card runs to 14.
        assert_eq!(expiry(&b, d(1990, 7, 1), LAW), Some(d(2004, 6, 15)));
        assert_eq!(next_milestone(&b, d(1990, 7, 1), LAW), Some(14));
    }

    #[test]
    fn the_2014_law_has_no_14() {
        let b = full(2000, 3, 10);
        assert_eq!(expiry(&b, d(2012, 1, 1), CardLaw::Law2014), Some(d(2025, 3, 10)));
        assert_eq!(expiry(&b, d(2012, 1, 1), CardLaw::Law2023), Some(d(2014, 3, 10)));
        assert_eq!(expiry(&b, d(2023, 3, 10), CardLaw::Law2014), Some(d(2040, 3, 10)));
        assert_eq!(CardLaw::on(d(2024, 6, 30)), CardLaw::Law2014);
        assert_eq!(CardLaw::on(d(2024, 7, 1)), CardLaw::Law2023);
    }

    #[test]
    fn leap_days() {
        let b = full(2000, 2, 29);
        assert_eq!(anniversary(&b, 14), d(2014, 2, 28));
        assert_eq!(anniversary(&b, 24), d(2024, 2, 29));
        assert_eq!(expiry(&b, d(2010, 5, 5), LAW), Some(d(2014, 2, 28)));
        // 23rd birthday (2023-02-28) opens the window for 25.
        assert_eq!(expiry(&b, d(2023, 2, 27), LAW), Some(d(2025, 2, 28)));
        assert_eq!(expiry(&b, d(2023, 2, 28), LAW), Some(d(2040, 2, 29)));
        assert_eq!(age_on(&b, d(2014, 2, 27)), 13);
        assert_eq!(age_on(&b, d(2014, 2, 28)), 14);
        assert_eq!(age_on(&b, d(2024, 2, 28)), 23);
        assert_eq!(age_on(&b, d(2024, 2, 29)), 24);
        // Issued on a leap day itself.
        let c = full(1990, 8, 1);
        assert_eq!(expiry(&c, d(2024, 2, 29), LAW), Some(d(2030, 8, 1)));
    }

    #[test]
    fn year_only_and_month_only_birth_dates() {
        let y = PartialDate::Year(1966);
        assert_eq!(expiry(&y, d(2003, 12, 31), LAW), Some(d(2006, 1, 1)));
        assert_eq!(expiry(&y, d(2004, 1, 1), LAW), Some(d(2026, 1, 1)));
        assert_eq!(expiry(&y, d(2006, 1, 1), LAW), Some(d(2026, 1, 1)));
        assert_eq!(expiry(&y, d(2024, 1, 1), LAW), None);
        assert_eq!(expiry(&y, d(2023, 12, 31), LAW), Some(d(2026, 1, 1)));
        let ym = PartialDate::YearMonth(1984, Month::November);
        assert_eq!(expiry(&ym, d(2022, 10, 31), LAW), Some(d(2024, 11, 1)));
        assert_eq!(expiry(&ym, d(2022, 11, 1), LAW), Some(d(2044, 11, 1)));
        assert_eq!(age_on(&ym, d(2024, 11, 1)), 40);
    }
}
