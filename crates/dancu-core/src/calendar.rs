//! Working days: Việt Nam's public holidays (fixed solar dates and the lunar Tết and Hùng Kings'
//! day, computed for the Việt Nam time zone UTC+7), weekends, and configured changes (the
//! holiday schedule the Prime Minister announces each year: extra days off and make-up working
//! Saturdays). Statutory deadlines of residence procedures are counted in working days.
//!
//! Holidays (Labour Code 2019, Art. 112): 1 January; Tết Nguyên đán, 5 days (by default the
//! last day of the lunar year and the first four of the new one); Hùng Kings' commemoration,
//! 10th day of the 3rd lunar month; 30 April; 1 May; National Day 2 September and one day next
//! to it (by default 1 September). A holiday falling on a weekend gives a day off on the next
//! working day (Art. 112(3)).

use std::collections::{BTreeMap, BTreeSet};
use std::f64::consts::PI;
use time::{Date, Duration, Month, Weekday};

use crate::error::FieldError;

/// Việt Nam's time zone, in hours east of UTC: the lunar calendar's new moons are dated in it
/// (which is why Vietnamese and Chinese Tết differ in some years, e.g. 1985 and 2007).
pub const VIETNAM_TZ: f64 = 7.0;

/// A day of the Vietnamese lunar calendar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LunarDate {
    pub day: u32,
    pub month: u32,
    pub year: i32,
    /// The day lies in the year's leap (intercalary) month.
    pub leap: bool,
}

/// Lunar calendar computations (the astronomical algorithm published by Hồ Ngọc Đức, after
/// Jean Meeus' "Astronomical Algorithms": mean new moons with the main periodic terms, sun
/// longitude for the major terms; months start on the day of the new moon in UTC+7).
pub mod lunar {
    use super::*;

    fn int(x: f64) -> i64 {
        x.floor() as i64
    }

    /// Julian day number of a Gregorian date.
    pub fn jd_from_date(d: Date) -> i64 {
        d.to_julian_day() as i64
    }

    fn date_from_jd(jd: i64) -> Option<Date> {
        Date::from_julian_day(i32::try_from(jd).ok()?).ok()
    }

    /// Day number of the k-th new moon after 1900-01-01 in the given time zone.
    fn new_moon_day(k: i64, tz: f64) -> i64 {
        let k = k as f64;
        let t = k / 1236.85;
        let t2 = t * t;
        let t3 = t2 * t;
        let dr = PI / 180.0;
        let mut jd1 = 2415020.75933 + 29.53058868 * k + 0.0001178 * t2 - 0.000000155 * t3;
        jd1 += 0.00033 * ((166.56 + 132.87 * t - 0.009173 * t2) * dr).sin();
        let m = 359.2242 + 29.10535608 * k - 0.0000333 * t2 - 0.00000347 * t3;
        let mpr = 306.0253 + 385.81691806 * k + 0.0107306 * t2 + 0.00001236 * t3;
        let f = 21.2964 + 390.67050646 * k - 0.0016528 * t2 - 0.00000239 * t3;
        let mut c1 = (0.1734 - 0.000393 * t) * (m * dr).sin() + 0.0021 * (2.0 * dr * m).sin();
        c1 = c1 - 0.4068 * (mpr * dr).sin() + 0.0161 * (dr * 2.0 * mpr).sin();
        c1 -= 0.0004 * (dr * 3.0 * mpr).sin();
        c1 = c1 + 0.0104 * (dr * 2.0 * f).sin() - 0.0051 * (dr * (m + mpr)).sin();
        c1 = c1 - 0.0074 * (dr * (m - mpr)).sin() + 0.0004 * (dr * (2.0 * f + m)).sin();
        c1 = c1 - 0.0004 * (dr * (2.0 * f - m)).sin() - 0.0006 * (dr * (2.0 * f + mpr)).sin();
        c1 = c1 + 0.0010 * (dr * (2.0 * f - mpr)).sin() + 0.0005 * (dr * (2.0 * mpr + m)).sin();
        let deltat = if t < -11.0 {
            0.001 + 0.000839 * t + 0.0002261 * t2 - 0.00000845 * t3 - 0.000000081 * t * t3
        } else {
            -0.000278 + 0.000265 * t + 0.000262 * t2
        };
        int(jd1 + c1 - deltat + 0.5 + tz / 24.0)
    }

    /// The sun's longitude at the start of a day, as the index (0-11) of the 30° sector it is in.
    fn sun_longitude(jdn: i64, tz: f64) -> i64 {
        let t = (jdn as f64 - 2451545.5 - tz / 24.0) / 36525.0;
        let t2 = t * t;
        let dr = PI / 180.0;
        let m = 357.52910 + 35999.05030 * t - 0.0001559 * t2 - 0.00000048 * t * t2;
        let l0 = 280.46645 + 36000.76983 * t + 0.0003032 * t2;
        let mut dl = (1.914600 - 0.004817 * t - 0.000014 * t2) * (dr * m).sin();
        dl = dl + (0.019993 - 0.000101 * t) * (dr * 2.0 * m).sin() + 0.000290 * (dr * 3.0 * m).sin();
        let mut l = (l0 + dl) * dr;
        l -= PI * 2.0 * (l / (PI * 2.0)).floor();
        int(l / PI * 6.0)
    }

    /// Day number of the start of the 11th lunar month (the one holding the winter solstice)
    /// of a Gregorian year.
    fn lunar_month_11(year: i32, tz: f64) -> i64 {
        let dec31 = Date::from_calendar_date(year, Month::December, 31).map(jd_from_date).unwrap_or(0);
        let off = dec31 - 2415021;
        let k = int(off as f64 / 29.530588853);
        let nm = new_moon_day(k, tz);
        if sun_longitude(nm, tz) >= 9 { new_moon_day(k - 1, tz) } else { nm }
    }

    /// Offset of the leap month after the 11th month starting at `a11`.
    fn leap_month_offset(a11: i64, tz: f64) -> i64 {
        let k = int((a11 as f64 - 2415021.076998695) / 29.530588853 + 0.5);
        let mut i = 1;
        let mut arc = sun_longitude(new_moon_day(k + i, tz), tz);
        loop {
            let last = arc;
            i += 1;
            arc = sun_longitude(new_moon_day(k + i, tz), tz);
            if arc == last || i >= 14 {
                break;
            }
        }
        i - 1
    }

    /// The Gregorian date of a lunar date (None when it does not exist, e.g. a leap month the
    /// year does not have).
    pub fn to_solar(l: LunarDate, tz: f64) -> Option<Date> {
        if !(1..=30).contains(&l.day) || !(1..=12).contains(&l.month) {
            return None;
        }
        let (a11, b11) = if l.month < 11 {
            (lunar_month_11(l.year - 1, tz), lunar_month_11(l.year, tz))
        } else {
            (lunar_month_11(l.year, tz), lunar_month_11(l.year + 1, tz))
        };
        let k = int(0.5 + (a11 as f64 - 2415021.076998695) / 29.530588853);
        let mut off = l.month as i64 - 11;
        if off < 0 {
            off += 12;
        }
        if b11 - a11 > 365 {
            let leap_off = leap_month_offset(a11, tz);
            let mut leap_month = leap_off - 2;
            if leap_month < 0 {
                leap_month += 12;
            }
            if l.leap && l.month as i64 != leap_month {
                return None;
            } else if l.leap || off >= leap_off {
                off += 1;
            }
        } else if l.leap {
            return None;
        }
        let start = new_moon_day(k + off, tz);
        let next = new_moon_day(k + off + 1, tz);
        if start + l.day as i64 > next {
            return None; // day 30 of a 29-day month
        }
        date_from_jd(start + l.day as i64 - 1)
    }

    /// The lunar date of a Gregorian date.
    pub fn from_solar(d: Date, tz: f64) -> LunarDate {
        let day_number = jd_from_date(d);
        let k = int((day_number as f64 - 2415021.076998695) / 29.530588853);
        let mut month_start = new_moon_day(k + 1, tz);
        if month_start > day_number {
            month_start = new_moon_day(k, tz);
        }
        let mut a11 = lunar_month_11(d.year(), tz);
        let mut b11 = a11;
        let mut year;
        if a11 >= month_start {
            year = d.year();
            a11 = lunar_month_11(d.year() - 1, tz);
        } else {
            year = d.year() + 1;
            b11 = lunar_month_11(d.year() + 1, tz);
        }
        let day = (day_number - month_start + 1) as u32;
        let diff = int((month_start - a11) as f64 / 29.0);
        let mut leap = false;
        let mut month = diff + 11;
        if b11 - a11 > 365 {
            let leap_diff = leap_month_offset(a11, tz);
            if diff >= leap_diff {
                month = diff + 10;
                if diff == leap_diff {
                    leap = true;
                }
            }
        }
        if month > 12 {
            month -= 12;
        }
        if month >= 11 && diff < 4 {
            year -= 1;
        }
        LunarDate { day, month: month as u32, year, leap }
    }

    /// Mùng 1 Tết: the first day of the lunar year that begins in Gregorian year `year`.
    pub fn tet(year: i32) -> Option<Date> {
        to_solar(LunarDate { day: 1, month: 1, year, leap: false }, VIETNAM_TZ)
    }
}

/// Why a holiday is a day off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holiday {
    pub date: Date,
    /// Vietnamese name with English, e.g. "Tết Nguyên đán (Lunar New Year)".
    pub name: String,
}

/// A working-day calendar: weekends and holidays are not working days, except configured
/// make-up working days.
#[derive(Debug, Clone, Default)]
pub struct HolidayCalendar {
    holidays: BTreeMap<Date, String>,
    working_days: BTreeSet<Date>,
}

fn ymd(y: i32, m: Month, d: u8) -> Option<Date> {
    Date::from_calendar_date(y, m, d).ok()
}

fn is_weekend(d: Date) -> bool {
    matches!(d.weekday(), Weekday::Saturday | Weekday::Sunday)
}

impl HolidayCalendar {
    /// An empty calendar: only weekends are days off.
    pub fn weekends_only() -> Self {
        Self::default()
    }

    /// Việt Nam's statutory holidays for the given years (see the module documentation), with a
    /// compensating day off after each holiday that falls on a weekend.
    pub fn vietnam(years: std::ops::RangeInclusive<i32>) -> Self {
        let mut c = Self::default();
        for y in years {
            let mut days: Vec<(Date, &str)> = Vec::new();
            let fixed = [
                (Month::January, 1, "Tết Dương lịch (New Year's Day)"),
                (Month::April, 30, "Ngày Chiến thắng (Reunification Day)"),
                (Month::May, 1, "Ngày Quốc tế Lao động (International Workers' Day)"),
                (Month::September, 1, "Nghỉ lễ Quốc khánh (National Day holiday)"),
                (Month::September, 2, "Quốc khánh (National Day)"),
            ];
            for (m, d, name) in fixed {
                if let Some(date) = ymd(y, m, d) {
                    days.push((date, name));
                }
            }
            if let Some(tet) = lunar::tet(y) {
                for offset in -1..=3 {
                    days.push((tet + Duration::days(offset), "Tết Nguyên đán (Lunar New Year)"));
                }
            }
            if let Some(hung) = lunar::to_solar(LunarDate { day: 10, month: 3, year: y, leap: false }, VIETNAM_TZ) {
                days.push((hung, "Giỗ Tổ Hùng Vương (Hùng Kings' Commemoration)"));
            }
            for (d, name) in &days {
                c.holidays.insert(*d, (*name).to_string());
            }
            // Compensation: each holiday on a weekend gives the next day that is neither a
            // weekend nor a holiday.
            let mut sorted: Vec<&(Date, &str)> = days.iter().filter(|(d, _)| is_weekend(*d)).collect();
            sorted.sort();
            for (d, name) in sorted {
                let mut x = *d + Duration::days(1);
                while is_weekend(x) || c.holidays.contains_key(&x) {
                    x += Duration::days(1);
                }
                c.holidays.insert(x, format!("Nghỉ bù {name} (compensating day off)"));
            }
        }
        c
    }

    /// Adds a day off (an announced holiday schedule, an extra holiday).
    pub fn add_holiday(&mut self, date: Date, name: impl Into<String>) {
        self.working_days.remove(&date);
        self.holidays.insert(date, name.into());
    }

    /// Makes a day a working day (a make-up Saturday, or a default day off moved elsewhere).
    pub fn add_working_day(&mut self, date: Date) {
        self.holidays.remove(&date);
        self.working_days.insert(date);
    }

    /// Applies configuration lines `YYYY-MM-DD,holiday,Name` or `YYYY-MM-DD,working_day`
    /// (blank lines and `#` comments ignored). Errors name the line and the value.
    pub fn configure(&mut self, text: &str) -> Result<(), FieldError> {
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let field = format!("line {}", i + 1);
            let mut parts = line.splitn(3, ',').map(str::trim);
            let date_text = parts.next().unwrap_or_default();
            let date = crate::date::iso_date::parse(date_text)
                .ok_or_else(|| FieldError::new(&field, "invalid_date", "expected YYYY-MM-DD").with_value(date_text))?;
            match parts.next().unwrap_or_default() {
                "holiday" => {
                    let name = parts.next().filter(|n| !n.is_empty()).unwrap_or("Ngày nghỉ (day off)");
                    self.add_holiday(date, name);
                }
                "working_day" => self.add_working_day(date),
                other => {
                    return Err(
                        FieldError::new(&field, "invalid_kind", "expected holiday or working_day").with_value(other)
                    );
                }
            }
        }
        Ok(())
    }

    /// The holiday a date is, if any.
    pub fn holiday(&self, d: Date) -> Option<&str> {
        self.holidays.get(&d).map(String::as_str)
    }

    /// Holidays in a range, inclusive.
    pub fn holidays_between(&self, from: Date, to: Date) -> Vec<Holiday> {
        self.holidays.range(from..=to).map(|(d, n)| Holiday { date: *d, name: n.clone() }).collect()
    }

    pub fn is_working_day(&self, d: Date) -> bool {
        if self.working_days.contains(&d) {
            return true;
        }
        !is_weekend(d) && !self.holidays.contains_key(&d)
    }

    /// The first working day on or after `d`.
    pub fn next_working_day_from(&self, d: Date) -> Date {
        let mut x = d;
        while !self.is_working_day(x) {
            x += Duration::days(1);
        }
        x
    }

    /// The statutory deadline of an application submitted on `submitted`: an application
    /// submitted on a day off is received the next working day; the deadline is the `n`-th
    /// working day after the day of receipt (n = 0: the day of receipt itself).
    pub fn deadline(&self, submitted: Date, n: u32) -> Date {
        let mut x = self.next_working_day_from(submitted);
        for _ in 0..n {
            x = self.next_working_day_from(x + Duration::days(1));
        }
        x
    }

    /// Working days strictly after `from` up to and including `to` (0 when `to <= from`).
    pub fn working_days_between(&self, from: Date, to: Date) -> u32 {
        let mut n = 0;
        let mut x = from + Duration::days(1);
        while x <= to {
            if self.is_working_day(x) {
                n += 1;
            }
            x += Duration::days(1);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn tet_dates_in_vietnam() {
        // Mùng 1 Tết as published in Vietnamese calendars.
        let known = [
            (1985, date!(1985 - 01 - 21)), // China: 20 February (new moon on the other side of midnight)
            (2007, date!(2007 - 02 - 17)), // China: 18 February
            (2020, date!(2020 - 01 - 25)),
            (2021, date!(2021 - 02 - 12)),
            (2022, date!(2022 - 02 - 01)),
            (2023, date!(2023 - 01 - 22)),
            (2024, date!(2024 - 02 - 10)),
            (2025, date!(2025 - 01 - 29)),
            (2026, date!(2026 - 02 - 17)),
            (2027, date!(2027 - 02 - 06)),
            (2028, date!(2028 - 01 - 26)),
            (2029, date!(2029 - 02 - 13)),
            // The new moon falls at 23:07 on 2 February in Việt Nam (00:07 on the 3rd in China).
            (2030, date!(2030 - 02 - 02)),
        ];
        for (y, d) in known {
            assert_eq!(lunar::tet(y), Some(d), "Tết {y}");
        }
    }

    #[test]
    fn hung_kings_day() {
        for (y, d) in [
            (2023, date!(2023 - 04 - 29)),
            (2024, date!(2024 - 04 - 18)),
            (2025, date!(2025 - 04 - 07)),
            (2026, date!(2026 - 04 - 26)),
        ] {
            assert_eq!(lunar::to_solar(LunarDate { day: 10, month: 3, year: y, leap: false }, VIETNAM_TZ), Some(d));
        }
    }

    #[test]
    fn solar_to_lunar_round_trips() {
        // 2023 had a leap 2nd month (tháng 2 nhuận from 2023-03-22).
        let l = lunar::from_solar(date!(2023 - 03 - 22), VIETNAM_TZ);
        assert_eq!(l, LunarDate { day: 1, month: 2, year: 2023, leap: true });
        assert_eq!(lunar::to_solar(l, VIETNAM_TZ), Some(date!(2023 - 03 - 22)));
        let mut d = date!(2019 - 12 - 01);
        while d < date!(2031 - 01 - 01) {
            let l = lunar::from_solar(d, VIETNAM_TZ);
            assert_eq!(lunar::to_solar(l, VIETNAM_TZ), Some(d), "{d} -> {l:?}");
            d += Duration::days(1);
        }
        assert_eq!(lunar::to_solar(LunarDate { day: 1, month: 5, year: 2023, leap: true }, VIETNAM_TZ), None);
    }

    #[test]
    fn statutory_holidays_2025() {
        let c = HolidayCalendar::vietnam(2025..=2025);
        // Tết 2025: 28 January (30 Tết) to 1 February; 1 February is a Saturday, compensated Monday 3 February.
        for d in [date!(2025 - 01 - 28), date!(2025 - 01 - 29), date!(2025 - 01 - 31), date!(2025 - 02 - 03)] {
            assert!(!c.is_working_day(d), "{d}");
        }
        assert!(c.is_working_day(date!(2025 - 01 - 27)));
        assert!(c.is_working_day(date!(2025 - 02 - 04)));
        assert!(!c.is_working_day(date!(2025 - 04 - 07))); // Hùng Kings
        assert!(!c.is_working_day(date!(2025 - 04 - 30)));
        assert!(!c.is_working_day(date!(2025 - 05 - 01)));
        assert!(c.is_working_day(date!(2025 - 05 - 02)));
        assert!(!c.is_working_day(date!(2025 - 09 - 01)));
        assert!(!c.is_working_day(date!(2025 - 09 - 02)));
        assert!(c.holiday(date!(2025 - 01 - 01)).unwrap().contains("Tết Dương lịch"));
    }

    #[test]
    fn deadlines_skip_weekends() {
        let c = HolidayCalendar::vietnam(2026..=2026);
        // Friday 6 March 2026 + 3 WD = Wednesday 11 March.
        assert_eq!(c.deadline(date!(2026 - 03 - 06), 3), date!(2026 - 03 - 11));
        // Submitted on Saturday: received Monday 9 March, + 1 WD = Tuesday 10 March.
        assert_eq!(c.deadline(date!(2026 - 03 - 07), 1), date!(2026 - 03 - 10));
        // Immediate: the day of receipt.
        assert_eq!(c.deadline(date!(2026 - 03 - 08), 0), date!(2026 - 03 - 09));
    }

    #[test]
    fn deadlines_across_tet() {
        let c = HolidayCalendar::vietnam(2026..=2026);
        // Tết 2026: 16-20 February (Mon-Fri). Submitted Friday 13 February, 7 WD:
        // 23, 24, 25, 26, 27 February, 2, 3 March.
        assert_eq!(c.deadline(date!(2026 - 02 - 13), 7), date!(2026 - 03 - 03));
        assert_eq!(c.working_days_between(date!(2026 - 02 - 13), date!(2026 - 03 - 03)), 7);
        // 2025: 3 WD from Monday 27 January: 4, 5, 6 February (1 Feb Saturday holiday compensated on the 3rd).
        let c = HolidayCalendar::vietnam(2025..=2025);
        assert_eq!(c.deadline(date!(2025 - 01 - 27), 3), date!(2025 - 02 - 06));
    }

    #[test]
    fn weekend_holidays_are_compensated() {
        // 2 September 2023 was a Saturday: Monday 4 September off (1 September Friday also off).
        let c = HolidayCalendar::vietnam(2023..=2023);
        assert!(!c.is_working_day(date!(2023 - 09 - 01)));
        assert!(!c.is_working_day(date!(2023 - 09 - 04)));
        assert!(c.is_working_day(date!(2023 - 09 - 05)));
        assert!(c.holiday(date!(2023 - 09 - 04)).unwrap().starts_with("Nghỉ bù"));
    }

    #[test]
    fn configured_schedule_changes() {
        let mut c = HolidayCalendar::vietnam(2025..=2025);
        c.configure("# Tết 2025 as announced\n2025-01-27,holiday,Nghỉ Tết\n2025-02-08,working_day\n").unwrap();
        assert!(!c.is_working_day(date!(2025 - 01 - 27)));
        assert!(c.is_working_day(date!(2025 - 02 - 08)));
        let e = c.configure("2025-13-01,holiday").unwrap_err();
        assert_eq!(e.field, "line 1");
        assert_eq!(e.value.as_deref(), Some("2025-13-01"));
        let e = c.configure("\n2025-01-02,vacation").unwrap_err();
        assert_eq!(e.field, "line 2");
    }
}
