//! Labelled duplicates for testing record linkage: copies of generated people re-recorded with
//! the errors of real intake — typos, lost accents, regional spellings, a swapped day and month,
//! a year-only date, a dropped middle name, the legacy code of the same commune, missing items.
//!
//! Uses its own random stream, so the people given in are never changed.

use dancu_core::date::PartialDate;
use dancu_core::person::{Name, PersonInput};
use dancu_core::reference::{self, MergeKind, Scheme};
use dancu_core::text;
use std::collections::HashMap;
use std::sync::LazyLock;
use time::Date;

use crate::Rng;

/// One record with the number of the person it describes (the index of the original).
#[derive(Debug, Clone)]
pub struct Labelled {
    pub entity: usize,
    /// False for the original record, true for an injected duplicate.
    pub duplicate: bool,
    pub person: PersonInput,
}

/// The people given, plus corrupted duplicates of a `share` of them (a tenth of those twice),
/// in a shuffled order. Holds every record: for large populations use [`Duplicator`], which
/// gives the same records in the same order one person at a time.
pub fn with_duplicates(people: Vec<PersonInput>, share: f64, seed: u64) -> Vec<Labelled> {
    let mut d = Duplicator::new(share, seed);
    let mut out: Vec<Labelled> = Vec::with_capacity(people.len() + (people.len() as f64 * share * 1.2) as usize);
    for (entity, person) in people.into_iter().enumerate() {
        d.records(entity, person, |l| out.push(l));
    }
    d.shuffle(&mut out);
    out
}

/// [`with_duplicates`] one person at a time: a caller keeps each record in whatever compact
/// form it writes (a CSV line), then shuffles them. The same seed gives the same records and
/// the same order as [`with_duplicates`].
pub struct Duplicator {
    rng: Rng,
    share: f64,
}

impl Duplicator {
    pub fn new(share: f64, seed: u64) -> Self {
        Duplicator { rng: Rng::new(seed), share }
    }

    /// Hands `person`'s records to `emit`: its duplicates (if it drew any), then itself.
    pub fn records(&mut self, entity: usize, person: PersonInput, mut emit: impl FnMut(Labelled)) {
        if self.rng.chance(self.share) {
            let copies = if self.rng.chance(0.1) { 2 } else { 1 };
            for _ in 0..copies {
                emit(Labelled { entity, duplicate: true, person: corrupt(&person, &mut self.rng) });
            }
        }
        emit(Labelled { entity, duplicate: false, person });
    }

    /// Shuffles every record emitted (or anything standing for them, in the same order): call once,
    /// after the last person.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        // Fisher–Yates
        for i in (1..items.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// A re-recording of `p` with one to three intake errors, and items a second source may lack.
pub fn corrupt(p: &PersonInput, rng: &mut Rng) -> PersonInput {
    let mut q = p.clone();
    let errors = 1 + rng.below(3);
    for _ in 0..errors {
        match rng.below(10) {
            0 | 1 => typo(&mut q.name, rng),
            2 => {
                q.name = Name {
                    surname: text::proper_case(&text::fold(&q.name.surname)),
                    middle: text::proper_case(&text::fold(&q.name.middle)),
                    given: text::proper_case(&text::fold(&q.name.given)),
                }
            }
            3 => spelling_variant(&mut q.name, rng),
            4 => q.name.middle.clear(),
            5 => q.birth_date = swap_day_month(q.birth_date).unwrap_or(q.birth_date),
            6 => q.birth_date = PartialDate::Year(q.birth_date.year()),
            7 => q.birth_date = date_typo(q.birth_date, rng),
            _ => {
                if let Some(a) = q.permanent_residence.as_mut()
                    && a.scheme == Scheme::Y2025
                    && let Some(olds) = LEGACY_OF.get(&a.commune_code)
                {
                    a.scheme = Scheme::Legacy;
                    a.commune_code = olds[rng.below(olds.len() as u64) as usize].to_string();
                }
            }
        }
    }
    if rng.chance(0.3) {
        q.phone = None;
    }
    if rng.chance(0.3) {
        q.relatives.clear();
    }
    if rng.chance(0.2) {
        q.legacy_id = None;
    }
    q
}

/// Legacy communes that went whole into each 2025 commune.
static LEGACY_OF: LazyLock<HashMap<String, Vec<&'static str>>> = LazyLock::new(|| {
    let mut map: HashMap<String, Vec<&'static str>> = HashMap::new();
    for c in reference::conversions() {
        if c.kind == MergeKind::Whole {
            map.entry(c.new_commune_code.clone()).or_default().push(c.old_commune_code.as_str());
        }
    }
    for v in map.values_mut() {
        v.sort_unstable();
    }
    map
});

fn part<'a>(name: &'a mut Name, rng: &mut Rng) -> &'a mut String {
    match rng.below(4) {
        0 => &mut name.surname,
        1 if !name.middle.is_empty() => &mut name.middle,
        _ => &mut name.given,
    }
}

/// One keyboard slip: a letter replaced, dropped, doubled or swapped with the next.
fn typo(name: &mut Name, rng: &mut Rng) {
    let s = part(name, rng);
    let mut chars: Vec<char> = s.chars().collect();
    if chars.len() < 2 {
        return;
    }
    let i = 1 + rng.below(chars.len() as u64 - 1) as usize;
    match rng.below(4) {
        0 => chars[i] = b"aehinotu"[rng.below(8) as usize] as char,
        1 if chars.len() > 3 => {
            chars.remove(i);
        }
        2 => chars.insert(i, chars[i]),
        _ if i + 1 < chars.len() => chars.swap(i, i + 1),
        _ => chars[i] = b"aehinotu"[rng.below(8) as usize] as char,
    }
    *s = chars.into_iter().collect();
}

/// A regional or variant spelling of one name part (d/gi, tr/ch, s/x, final n/ng, i/y).
fn spelling_variant(name: &mut Name, rng: &mut Rng) {
    const SWAPS: [(&str, &str); 10] = [
        ("Gi", "D"),
        ("D", "Gi"),
        ("Tr", "Ch"),
        ("Ch", "Tr"),
        ("X", "S"),
        ("S", "X"),
        ("R", "D"),
        ("Ng", "Ngh"),
        ("Qu", "Q"),
        ("Ph", "F"),
    ];
    for _ in 0..3 {
        let s = part(name, rng);
        for (from, to) in SWAPS {
            if let Some(rest) = s.strip_prefix(from)
                && !(from == "D" && rest.starts_with('i'))
            {
                *s = format!("{to}{rest}");
                return;
            }
        }
        if let Some(stem) = s.strip_suffix("ng") {
            *s = format!("{stem}n");
            return;
        }
        if s.ends_with('y') && s.chars().count() <= 3 {
            s.pop();
            s.push('i');
            return;
        }
    }
}

fn swap_day_month(d: PartialDate) -> Option<PartialDate> {
    let full = d.full()?;
    let (day, month) = (full.day(), full.month() as u8);
    if day > 12 || day == month {
        return None;
    }
    PartialDate::from_ymd(full.year(), u32::from(day), u32::from(month)).ok()
}

/// One digit of the day or of the year's last digit mistyped (full dates only).
fn date_typo(d: PartialDate, rng: &mut Rng) -> PartialDate {
    let Some(full) = d.full() else { return d };
    for _ in 0..8 {
        let (mut y, m, mut day) = (full.year(), full.month() as u32, u32::from(full.day()));
        if rng.chance(0.5) {
            day = day / 10 * 10 + rng.below(10) as u32;
        } else {
            y = y / 10 * 10 + rng.below(10) as i32;
        }
        if let Ok(t) = Date::from_calendar_date(y, full.month(), day as u8)
            && t != full
            && let Ok(pd) = PartialDate::from_ymd(y, m, day)
        {
            return pd;
        }
    }
    d
}
