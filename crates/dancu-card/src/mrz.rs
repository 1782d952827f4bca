//! The machine-readable zone, ICAO 9303 TD1 (3 × 30 characters), in the Vietnamese layout.
//!
//! Line 1: `ID` `VNM`, document number = the last 9 digits of the personal ID, its check digit,
//! the full 12-digit personal ID in the optional data (positions 16–27), `<<`, and at position
//! 30 the check digit of positions 16–27 (as on issued cards). Line 2: birth date, sex, expiry,
//! nationality, composite check digit. Line 3: the name, without diacritics.
//!
//! Rules this module fixes (and the verifier agrees with):
//! - A birth date known only to the year or month has its unknown parts filled with `<`
//!   (`85<<<<`), as ICAO 9303 Part 3 prescribes; `<` counts 0 in check digits.
//! - A card that does not expire (holder 60 or over) has expiry `<<<<<<` and check digit `<`.

use dancu_core::{PartialDate, PersonalId, Sex};
use time::Date;
use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

use crate::CardError;

pub const LINE: usize = 30;

/// The value of one MRZ character in check-digit arithmetic.
fn value(c: u8) -> Option<u32> {
    match c {
        b'0'..=b'9' => Some(u32::from(c - b'0')),
        b'A'..=b'Z' => Some(u32::from(c - b'A') + 10),
        b'<' => Some(0),
        _ => None,
    }
}

/// ICAO 9303 check digit: weights 7, 3, 1 repeating, sum mod 10.
pub fn check_digit(s: &str) -> Result<char, CardError> {
    let mut sum = 0u32;
    for (i, b) in s.bytes().enumerate() {
        let v = value(b).ok_or_else(|| CardError::Field {
            field: "mrz",
            value: s.to_string(),
            reason: format!("character {:?} is outside A-Z 0-9 <", b as char),
        })?;
        sum += v * [7, 3, 1][i % 3];
    }
    Ok(char::from(b'0' + (sum % 10) as u8))
}

/// A name in MRZ characters: diacritics stripped (NFD, combining marks dropped), Đ/đ → D,
/// upper case, words joined by `<`; apostrophes dropped, any other non-letter becomes `<`.
pub fn transliterate(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.nfd() {
        if is_combining_mark(c) || c == '\'' || c == '’' {
            continue;
        }
        match c {
            'đ' | 'Đ' => out.push('D'),
            c if c.is_ascii_alphabetic() => out.push(c.to_ascii_uppercase()),
            c if c.is_ascii_digit() => {}
            _ => {
                if !out.is_empty() && !out.ends_with('<') {
                    out.push('<')
                }
            }
        }
    }
    while out.ends_with('<') {
        out.pop();
    }
    out
}

/// The name line: `SURNAME<<GIVEN<NAMES`, `<`-padded to 30, cut at 30 when longer
/// (ICAO 9303 Part 3 4.6: secondary identifier truncated first, then the primary).
pub fn name_line(surname: &str, given_names: &str) -> Result<String, CardError> {
    let primary = transliterate(surname);
    let secondary = transliterate(given_names);
    if primary.is_empty() {
        return Err(CardError::Field {
            field: "surname",
            value: surname.to_string(),
            reason: "has no letters representable in the MRZ".into(),
        });
    }
    let mut line = primary;
    if !secondary.is_empty() {
        line.push_str("<<");
        line.push_str(&secondary);
    }
    line.truncate(LINE);
    while line.len() < LINE {
        line.push('<');
    }
    Ok(line)
}

/// YYMMDD of a (possibly partial) date, unknown parts `<`.
pub fn yymmdd_partial(d: &PartialDate) -> String {
    let yy = d.year().rem_euclid(100);
    match d {
        PartialDate::Year(_) => format!("{yy:02}<<<<"),
        PartialDate::YearMonth(_, m) => format!("{yy:02}{:02}<<", *m as u8),
        PartialDate::Full(d) => yymmdd(*d),
    }
}

pub fn yymmdd(d: Date) -> String {
    format!("{:02}{:02}{:02}", d.year().rem_euclid(100), d.month() as u8, d.day())
}

/// What goes into the MRZ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MrzInput<'a> {
    pub personal_id: &'a PersonalId,
    pub surname: &'a str,
    /// Middle and given names, in order.
    pub given_names: &'a str,
    pub birth_date: PartialDate,
    pub sex: Sex,
    /// `None`: the card does not expire.
    pub expiry: Option<Date>,
}

/// The three lines of a TD1 MRZ.
pub fn encode(input: &MrzInput<'_>) -> Result<[String; 3], CardError> {
    let id = input.personal_id.as_str();
    let doc = &id[3..];
    let mut l1 = format!("IDVNM{doc}{}{id}<<", check_digit(doc)?);
    l1.push(check_digit(id)?);
    let birth = yymmdd_partial(&input.birth_date);
    let (expiry, expiry_cd) = match input.expiry {
        Some(d) => {
            let e = yymmdd(d);
            let cd = check_digit(&e)?;
            (e, cd)
        }
        None => ("<<<<<<".to_string(), '<'),
    };
    let sex = match input.sex {
        Sex::Male => 'M',
        Sex::Female => 'F',
    };
    let mut l2 = format!("{birth}{}{sex}{expiry}{expiry_cd}VNM{}", check_digit(&birth)?, "<".repeat(11));
    let composite = format!("{}{}{}{}", &l1[5..30], &l2[0..7], &l2[8..15], &l2[18..29]);
    l2.push(check_digit(&composite)?);
    let l3 = name_line(input.surname, input.given_names)?;
    debug_assert!(l1.len() == LINE && l2.len() == LINE && l3.len() == LINE);
    Ok([l1, l2, l3])
}

/// An MRZ read back, every check digit verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedMrz {
    pub document_number: String,
    pub personal_id: String,
    /// YYMMDD, `<` for unknown parts.
    pub birth_date: String,
    /// `M`, `F` or `<`.
    pub sex: char,
    /// YYMMDD, or `None` for a card that does not expire.
    pub expiry: Option<String>,
    pub nationality: String,
    pub surname: String,
    pub given_names: String,
}

/// Parses 90 MRZ characters (with or without line breaks) and verifies every check digit.
pub fn parse(text: &str) -> Result<ParsedMrz, CardError> {
    let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let bad = |reason: String| CardError::Field { field: "mrz", value: flat.clone(), reason };
    if flat.len() != 3 * LINE || !flat.bytes().all(|b| value(b).is_some()) {
        return Err(bad(format!("a TD1 MRZ has 90 characters A-Z 0-9 <, this has {}", flat.chars().count())));
    }
    let (l1, rest) = flat.split_at(LINE);
    let (l2, l3) = rest.split_at(LINE);
    if &l1[0..5] != "IDVNM" {
        return Err(bad(format!("line 1 starts {:?}, not IDVNM", &l1[0..5])));
    }
    let check = |what: &str, data: &str, cd: char| -> Result<(), CardError> {
        let want = check_digit(data)?;
        if want != cd {
            return Err(bad(format!("check digit of the {what} is {cd}, should be {want}")));
        }
        Ok(())
    };
    let cd = |s: &str, i: usize| s.as_bytes()[i] as char;
    check("document number", &l1[5..14], cd(l1, 14))?;
    check("personal ID (line 1, 16-27)", &l1[15..27], cd(l1, 29))?;
    if !l1[15..27].ends_with(&l1[5..14]) {
        return Err(bad("the document number is not the last 9 digits of the personal ID".into()));
    }
    check("birth date", &l2[0..6], cd(l2, 6))?;
    let expiry = if &l2[8..15] == "<<<<<<<" {
        None
    } else {
        check("expiry date", &l2[8..14], cd(l2, 14))?;
        Some(l2[8..14].to_string())
    };
    let composite = format!("{}{}{}{}", &l1[5..30], &l2[0..7], &l2[8..15], &l2[18..29]);
    check("composite", &composite, cd(l2, 29))?;
    let (surname, given) = l3.split_once("<<").unwrap_or((l3, ""));
    let words = |s: &str| s.split('<').filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    Ok(ParsedMrz {
        document_number: l1[5..14].to_string(),
        personal_id: l1[15..27].to_string(),
        birth_date: l2[0..6].to_string(),
        sex: cd(l2, 7),
        expiry,
        nationality: l2[15..18].to_string(),
        surname: words(surname),
        given_names: words(given),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_public_sample_checks() {
        let sample = "IDVNM0930470641001093047064<<2\n9301054M3301052VNM<<<<<<<<<<<8\nUNG<<HOANG<HIEP<<<<<<<<<<<<<<<";
        let p = parse(sample).unwrap();
        assert_eq!(p.personal_id, "001093047064");
        assert_eq!(p.expiry.as_deref(), Some("330105"));
        assert_eq!((p.surname.as_str(), p.given_names.as_str()), ("UNG", "HOANG HIEP"));
        // And we produce exactly it.
        let id = PersonalId::parse("001093047064").unwrap();
        let lines = encode(&MrzInput {
            personal_id: &id,
            surname: "Ưng",
            given_names: "Hoàng Hiệp",
            birth_date: PartialDate::from_ymd(1993, 1, 5).unwrap(),
            sex: Sex::Male,
            expiry: Some(Date::from_calendar_date(2033, time::Month::January, 5).unwrap()),
        })
        .unwrap();
        assert_eq!(lines.join("\n"), sample);
    }

    #[test]
    fn check_digits_follow_icao() {
        // ICAO 9303 Part 3 worked example.
        assert_eq!(check_digit("520727").unwrap(), '3');
        assert_eq!(check_digit("AB2134<<<").unwrap(), '5');
        assert!(check_digit("ab").is_err());
    }

    #[test]
    fn names_lose_diacritics_and_dj() {
        assert_eq!(transliterate("Đặng Thị Ngọc Ánh"), "DANG<THI<NGOC<ANH");
        assert_eq!(transliterate("đỗ"), "DO");
        assert_eq!(transliterate("Nguyễn-Phước  Ư'ng"), "NGUYEN<PHUOC<UNG");
        let line = name_line("Tôn Nữ", "Thị Hoàng Phương Thảo Nguyên Khánh Linh").unwrap();
        assert_eq!(line.len(), 30);
        assert!(line.starts_with("TON<NU<<THI<HOANG"));
        assert!(name_line("--", "An").is_err());
    }

    #[test]
    fn partial_birth_dates_and_no_expiry() {
        let id = PersonalId::parse("001058012345").unwrap();
        let lines = encode(&MrzInput {
            personal_id: &id,
            surname: "Lê",
            given_names: "Văn Tám",
            birth_date: PartialDate::Year(1958),
            sex: Sex::Male,
            expiry: None,
        })
        .unwrap();
        assert!(lines[1].starts_with("58<<<<"));
        assert_eq!(&lines[1][8..15], "<<<<<<<");
        let p = parse(&lines.concat()).unwrap();
        assert_eq!(p.expiry, None);
        assert_eq!(p.birth_date, "58<<<<");
    }

    #[test]
    fn any_changed_character_is_caught() {
        let id = PersonalId::parse("079203001234").unwrap();
        let lines = encode(&MrzInput {
            personal_id: &id,
            surname: "Trần",
            given_names: "Bảo Ngọc",
            birth_date: PartialDate::from_ymd(2003, 2, 28).unwrap(),
            sex: Sex::Female,
            expiry: Some(Date::from_calendar_date(2028, time::Month::February, 28).unwrap()),
        })
        .unwrap();
        let flat = lines.concat();
        // Every digit of the checked fields on lines 1-2 is covered by a check digit.
        for i in (5..14).chain(15..27).chain(30..36).chain(38..44) {
            let mut b = flat.clone().into_bytes();
            b[i] = if b[i] == b'9' { b'0' } else { b[i] + 1 };
            assert!(parse(std::str::from_utf8(&b).unwrap()).is_err(), "change at {i} went unnoticed");
        }
    }
}
