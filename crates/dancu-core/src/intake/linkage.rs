//! Record linkage: finding the records of one person within an import batch and against the
//! registry.
//!
//! The pipeline ([`link`]): each [`LinkRecord`] is prepared once ([`LinkFeatures`]: folded and
//! phonetic names, the 2025 communes its home commune maps to, normalized numbers);
//! [`blocking`](super::blocking) proposes candidate pairs; each pair gets a [`Comparison`] (one
//! level per [`Field`]); [`em`](super::em) estimates a Fellegi–Sunter model from those
//! comparisons and scores each pair into a [`Band`]; [`cluster`](super::cluster) groups the
//! `Link` pairs into people, refusing unions that would chain unrelated records.

use foldhash::{HashMap, HashMapExt};

use crate::date::PartialDate;
use crate::id::Sex;
use crate::person::{Address, Person, PersonInput, Relation};
use crate::reference::{self, Scheme};
use crate::text;

use super::blocking::{self, BlockingConfig, BlockingStats};
use super::cluster::{self, Refusal};
use super::em::{self, Adjustments, Band, EmConfig, Model, Thresholds};
use super::interner::{Interner, Strings, Sym, TableFull};
use super::{par, phonetic};

/// Where a record comes from. Registry records are taken as already deduplicated among themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A record of the import batch being checked.
    Batch,
    /// A record already in the registry.
    Registry,
}

/// The facts of a person that linkage compares. Names as recorded (any case, marks or none).
#[derive(Debug, Clone, PartialEq)]
pub struct LinkRecord {
    pub origin: Origin,
    pub family: String,
    pub middle: String,
    pub given: String,
    pub birth_date: Option<PartialDate>,
    pub sex: Option<Sex>,
    /// Home commune as `scheme:code` (`2025:00004`, `legacy:00016`).
    pub commune_key: Option<String>,
    /// The 2025 province of the home commune; derived from the commune when `None`.
    pub province_2025: Option<String>,
    /// Old CMND number (9 or 12 digits).
    pub legacy_id: Option<String>,
    pub father: Option<String>,
    pub mother: Option<String>,
    pub phone: Option<String>,
    /// The home address within the commune (house number, street, hamlet), as written.
    pub address: Option<String>,
}

impl LinkRecord {
    /// A record with nothing to compare (every field empty or missing).
    pub fn blank(origin: Origin) -> Self {
        LinkRecord {
            origin,
            family: String::new(),
            middle: String::new(),
            given: String::new(),
            birth_date: None,
            sex: None,
            commune_key: None,
            province_2025: None,
            legacy_id: None,
            father: None,
            mother: None,
            phone: None,
            address: None,
        }
    }

    /// The comparison record of a person's recorded items. Home: permanent, else current, else
    /// temporary residence.
    pub fn from_input(p: &PersonInput, origin: Origin) -> Self {
        let home = p.permanent_residence.as_ref().or(p.current_residence.as_ref()).or(p.temporary_residence.as_ref());
        let relative = |r: Relation| p.relatives.iter().find(|x| x.relation == r).map(|x| x.name.clone());
        LinkRecord {
            origin,
            family: p.name.surname.clone(),
            middle: p.name.middle.clone(),
            given: p.name.given.clone(),
            birth_date: Some(p.birth_date),
            sex: Some(p.sex),
            commune_key: home.map(Address::unit_key),
            province_2025: home.and_then(Address::province_2025),
            legacy_id: p.legacy_id.as_ref().map(|l| l.as_str().to_string()),
            father: relative(Relation::Father),
            mother: relative(Relation::Mother),
            phone: p.phone.clone(),
            address: home.and_then(|a| a.detail.clone()),
        }
    }

    /// The comparison record of a stored person (origin [`Origin::Registry`]).
    pub fn from_person(p: &Person) -> Self {
        Self::from_input(&p.record, Origin::Registry)
    }
}

impl From<&PersonInput> for LinkRecord {
    fn from(p: &PersonInput) -> Self {
        Self::from_input(p, Origin::Batch)
    }
}

impl From<&Person> for LinkRecord {
    fn from(p: &Person) -> Self {
        Self::from_person(p)
    }
}

/// A record prepared for comparison and blocking: folded and phonetic names, normalized numbers,
/// the 2025 communes its home commune corresponds to. Its strings are [`Sym`]s of the run's
/// [`Strings`] (4 bytes each; equal strings, equal numbers), so that tens of millions of records
/// fit in memory.
#[derive(Debug, Clone)]
pub struct LinkFeatures {
    pub(crate) origin: Origin,
    pub(crate) family_f: Sym,
    pub(crate) middle_f: Sym,
    pub(crate) given_f: Sym,
    pub(crate) full_f: Sym,
    pub(crate) family_k: Sym,
    pub(crate) middle_k: Sym,
    pub(crate) given_k: Sym,
    /// Phonetic syllable keys of the whole name, sorted, joined by spaces (order-free comparison).
    pub(crate) sorted_k: Sym,
    /// How many syllables `sorted_k` has (at most 255 counted).
    pub(crate) syllables: u8,
    pub(crate) birth_date: Option<PartialDate>,
    pub(crate) sex: Option<Sex>,
    pub(crate) commune: Option<(Scheme, Sym)>,
    /// 2025 commune codes the home commune is (2025) or went into (legacy, through the conversion table).
    pub(crate) communes_2025: Box<[Sym]>,
    /// The 2025 province code ([`Sym::EMPTY`] when unknown).
    pub(crate) province: Sym,
    pub(crate) legacy_id: Sym,
    pub(crate) phone: Sym,
    /// A parent's name: its phonetic key and its folded form.
    pub(crate) father: Option<(Sym, Sym)>,
    pub(crate) mother: Option<(Sym, Sym)>,
    /// The address within the commune, folded, punctuation as spaces.
    pub(crate) address_f: Sym,
    /// Its words and numbers in written order, each with its weight: the information it carries,
    /// `log2(records / records having it)` bits, set from the whole file when the run's records
    /// are all prepared ([`FeatureBuilder::finish`]; 1 until then).
    pub(crate) address_tokens: Box<[(Sym, f32)]>,
    /// The address's two most informative tokens that another record shares, each carrying at
    /// least [`RARE_ADDRESS_BITS`] (a street name, a postcode: few records have it), for blocking
    /// ([`Sym::EMPTY`] where there are fewer). A token no other record has (often a typo) pairs nothing.
    pub(crate) address_rare: [Sym; 2],
}

/// The information an address token must carry to block on it (8 bits: at most one record in 256 has it).
pub const RARE_ADDRESS_BITS: f32 = 8.0;

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// Phone numbers in national form: digits only, `84…` (country code) → `0…`.
fn normalize_phone(s: &str) -> Option<String> {
    let d = digits(s);
    let d = match d.strip_prefix("84") {
        Some(rest) if d.len() == 11 => format!("0{rest}"),
        _ => d,
    };
    (!d.is_empty()).then_some(d)
}

fn person_name(s: &Option<String>) -> Option<(String, String)> {
    let f = text::fold(s.as_deref()?);
    (!f.is_empty()).then(|| (phonetic::name_key(&f), f))
}

impl LinkFeatures {
    /// The features of a record, its strings stored in `strings`.
    pub fn new(strings: &Interner, r: &LinkRecord) -> Self {
        let sym = |s: &str| strings.intern(s);
        let family_f = text::fold(&r.family);
        let middle_f = text::fold(&r.middle);
        let given_f = text::fold(&r.given);
        let full_f = [family_f.as_str(), middle_f.as_str(), given_f.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let full_k = phonetic::name_key(&full_f);
        let mut sorted_k: Vec<&str> = full_k.split(' ').filter(|s| !s.is_empty()).collect();
        sorted_k.sort_unstable();
        let commune = r.commune_key.as_deref().and_then(|k| {
            let (scheme, code) = k.split_once(':')?;
            Some((Scheme::from_code(scheme)?, code))
        });
        let communes_2025: Vec<&str> = match commune {
            Some((Scheme::Y2025, code)) => vec![code],
            Some((Scheme::Legacy, code)) => {
                let mut v: Vec<&str> =
                    reference::conversions_from(code).iter().map(|c| c.new_commune_code.as_str()).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            None => Vec::new(),
        };
        let province = match &r.province_2025 {
            Some(p) => sym(p),
            None => communes_2025
                .first()
                .and_then(|c| reference::commune(Scheme::Y2025, c))
                .map_or(Sym::EMPTY, |c| sym(&c.province_code)),
        };
        let address_f = r.address.as_deref().map(|a| {
            text::fold(a).split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ")
        });
        let address_tokens: Box<[(Sym, f32)]> =
            address_f.iter().flat_map(|a| a.split(' ')).filter(|t| !t.is_empty()).map(|t| (sym(t), 1.0)).collect();
        let name = |n: Option<(String, String)>| n.map(|(k, f)| (sym(&k), sym(&f)));
        LinkFeatures {
            origin: r.origin,
            family_k: sym(&phonetic::name_key(&family_f)),
            middle_k: sym(&phonetic::name_key(&middle_f)),
            given_k: sym(&phonetic::name_key(&given_f)),
            family_f: sym(&family_f),
            middle_f: sym(&middle_f),
            given_f: sym(&given_f),
            full_f: sym(&full_f),
            syllables: sorted_k.len().min(255) as u8,
            sorted_k: sym(&sorted_k.join(" ")),
            birth_date: r.birth_date,
            sex: r.sex,
            commune: commune.map(|(scheme, code)| (scheme, sym(code))),
            communes_2025: communes_2025.into_iter().map(sym).collect(),
            province,
            legacy_id: r.legacy_id.as_deref().map_or(Sym::EMPTY, |l| sym(&digits(l))),
            phone: r.phone.as_deref().and_then(normalize_phone).map_or(Sym::EMPTY, |p| sym(&p)),
            father: name(person_name(&r.father)),
            mother: name(person_name(&r.mother)),
            address_f: address_f.as_deref().map_or(Sym::EMPTY, sym),
            address_tokens,
            address_rare: [Sym::EMPTY; 2],
        }
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// The records of a linkage run prepared for comparison ([`LinkFeatures`]), with the table of
/// their strings; address tokens weighed from the whole run.
#[derive(Debug)]
pub struct Prepared {
    pub(crate) strings: Strings,
    pub(crate) records: Vec<LinkFeatures>,
}

impl Prepared {
    /// Prepares `records` (on all cores), records held in memory.
    ///
    /// # Panics
    /// If their distinct text exceeds the string table (16 GiB, more than the records themselves
    /// would take in memory); runs read from files go through [`FeatureBuilder`], which reports it.
    pub fn new(records: &[LinkRecord]) -> Self {
        let mut b = FeatureBuilder::new();
        b.extend(records);
        b.finish().expect("records held in memory fit the string table")
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Compares records `a` and `b` field by field.
    pub fn compare(&self, a: usize, b: usize) -> Comparison {
        compare(&self.strings, &self.records[a], &self.records[b])
    }

    /// The rare address tokens record `i` is blocked on (see [`LinkFeatures`]).
    pub fn address_rare(&self, i: usize) -> Vec<&str> {
        self.records[i].address_rare.iter().filter(|s| !s.is_empty()).map(|&s| self.strings.get(s)).collect()
    }
}

/// Prepares a run's records a part at a time, so that a caller reading a large file keeps only
/// the compact features of the rows read so far, not their linkage records.
#[derive(Default)]
pub struct FeatureBuilder {
    strings: Interner,
    records: Vec<LinkFeatures>,
}

impl FeatureBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Prepares `records` (on all cores) and appends them.
    pub fn extend(&mut self, records: &[LinkRecord]) {
        let strings = &self.strings;
        let prepared = par::map(records, |r| LinkFeatures::new(strings, r));
        self.records.extend(prepared);
    }

    /// Takes record `i` out of the comparison: it keeps its place (indexes do not move) but has
    /// nothing left to block on or compare.
    pub fn forget(&mut self, i: usize) {
        let blank = LinkRecord::blank(self.records[i].origin);
        self.records[i] = LinkFeatures::new(&self.strings, &blank);
    }

    /// The prepared run: the string table frozen, the address tokens weighed; refused when the
    /// records brought more distinct text than the table takes.
    pub fn finish(self) -> Result<Prepared, TableFull> {
        let mut p = Prepared { strings: self.strings.freeze()?, records: self.records };
        weigh_address_tokens(&mut p);
        Ok(p)
    }
}

/// `n` flags, all false: the first `n` of `stack` when they fit, else `heap` grown to `n`.
fn flags<'f, const N: usize>(n: usize, stack: &'f mut [bool; N], heap: &'f mut Vec<bool>) -> &'f mut [bool] {
    if n <= N {
        &mut stack[..n]
    } else {
        heap.resize(n, false);
        heap
    }
}

/// Jaro–Winkler similarity in [0, 1] (prefix scale 0.1, prefix up to 4 characters).
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    if a.is_ascii() && b.is_ascii() {
        jaro_winkler_of(a.as_bytes(), b.as_bytes())
    } else {
        let a: Vec<char> = a.chars().collect();
        let b: Vec<char> = b.chars().collect();
        jaro_winkler_of(&a, &b)
    }
}

/// Jaro–Winkler over characters (bytes of ASCII text, or `char`s).
fn jaro_winkler_of<T: PartialEq>(a: &[T], b: &[T]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let range = (a.len().max(b.len()) / 2).saturating_sub(1);
    // Names and address words are short: the hit flags fit on the stack.
    let (mut a_stack, mut b_stack) = ([false; 64], [false; 64]);
    let (mut a_heap, mut b_heap) = (Vec::new(), Vec::new());
    let a_hit = flags(a.len(), &mut a_stack, &mut a_heap);
    let b_hit = flags(b.len(), &mut b_stack, &mut b_heap);
    let mut matches = 0usize;
    for (i, ca) in a.iter().enumerate() {
        let hi = (i + range + 1).min(b.len());
        for j in i.saturating_sub(range)..hi {
            if !b_hit[j] && *ca == b[j] {
                a_hit[i] = true;
                b_hit[j] = true;
                matches += 1;
                break;
            }
        }
    }
    if matches == 0 {
        return 0.0;
    }
    let mut half_transpositions = 0usize;
    let mut k = 0;
    for (i, ca) in a.iter().enumerate() {
        if a_hit[i] {
            while !b_hit[k] {
                k += 1;
            }
            if *ca != b[k] {
                half_transpositions += 1;
            }
            k += 1;
        }
    }
    let m = matches as f64;
    let t = half_transpositions as f64 / 2.0;
    let jaro = (m / a.len() as f64 + m / b.len() as f64 + (m - t) / m) / 3.0;
    let prefix = a.iter().zip(b).take(4).take_while(|(x, y)| x == y).count();
    jaro + prefix as f64 * 0.1 * (1.0 - jaro)
}

/// Names at or above this Jaro–Winkler similarity (folded) count as similar.
pub const NAME_SIMILARITY: f64 = 0.92;

/// A compared field. Each has a few levels, best agreement first; a field missing on either side
/// has no level and weighs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    /// The family name (họ).
    Family,
    /// The middle name (tên đệm); missing when both sides have none.
    Middle,
    /// The given name (tên): what tells siblings apart.
    Given,
    BirthDate,
    Sex,
    Commune,
    /// The address within the commune (house number, street, hamlet).
    Address,
    LegacyId,
    Phone,
    Parents,
}

impl Field {
    pub const COUNT: usize = 10;
    pub const ALL: [Field; Field::COUNT] = [
        Field::Family,
        Field::Middle,
        Field::Given,
        Field::BirthDate,
        Field::Sex,
        Field::Commune,
        Field::Address,
        Field::LegacyId,
        Field::Phone,
        Field::Parents,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Field::Family => "family_name",
            Field::Middle => "middle_name",
            Field::Given => "given_name",
            Field::BirthDate => "birth_date",
            Field::Sex => "sex",
            Field::Commune => "commune",
            Field::Address => "address",
            Field::LegacyId => "legacy_id",
            Field::Phone => "phone",
            Field::Parents => "parents",
        }
    }

    /// Level codes, best agreement first (index = level number).
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Field::Family | Field::Given => &["exact", "phonetic", "typo", "different"],
            Field::Middle => &["exact", "phonetic", "one_missing", "different"],
            Field::BirthDate => &[
                "exact",
                "day_month_swapped",
                "one_digit",
                "same_month",
                "same_year",
                "year_apart",
                "two_digits",
                "different",
            ],
            Field::Sex => &["same", "different"],
            Field::Commune => &["same", "equivalent", "same_province", "different"],
            Field::Address => &["same", "similar", "partly", "different"],
            Field::LegacyId | Field::Phone => &["equal", "one_digit", "different"],
            Field::Parents => &["agree", "partly", "different"],
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Comparison levels of one name part (family, given).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameLevel {
    /// Equal after accent folding.
    Exact,
    /// Equal phonetic keys (regional or variant spelling: d/gi/r, ch/tr, s/x, final n/ng, i/y).
    Phonetic,
    /// One keyboard slip apart (a letter replaced, dropped, doubled, or two adjacent swapped),
    /// or Jaro–Winkler ≥ [`NAME_SIMILARITY`] for longer names. Siblings' names (An/Anh) can be
    /// this close too: the other fields decide.
    Typo,
    Different,
}

/// Middle name comparison levels (no level when neither side has one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MiddleLevel {
    Exact,
    /// Equal phonetic keys, or one slip apart.
    Phonetic,
    /// One side has no middle name (often dropped on forms).
    OneMissing,
    Different,
}

/// Birth date comparison levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateLevel {
    /// The same full date.
    Exact,
    /// Day and month swapped (05/03 vs 03/05), a level of its own.
    DayMonthSwapped,
    /// Full dates whose 8 digits differ in one place or by two adjacent digits swapped.
    OneDigit,
    /// Same month and year; days differ or one side lacks the day.
    SameMonth,
    /// Same year; at least one side lacks the month (year-only records).
    SameYear,
    /// Years one apart or one digit apart, day and month equal where both sides have them (a
    /// year typo, possibly on a year-only record).
    YearApart,
    /// Full dates two slips apart: two of their 8 digits differ, or one does once day and month
    /// are swapped (a second re-recording of a record that had one error already).
    TwoDigits,
    /// Anything further (a namesake born years earlier or later).
    Different,
}

/// Home commune comparison levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommuneLevel {
    /// Same scheme and code.
    Same,
    /// Legacy and 2025 codes of one place: the conversion table maps them to a common 2025 commune.
    Equivalent,
    /// Same 2025 province.
    SameProvince,
    Different,
}

/// Address (within the commune) comparison levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressLevel {
    /// The same words and numbers (folded).
    Same,
    /// Most of the information shared: the words and numbers the two addresses have in common,
    /// each weighted by how rare it is in the file, make at least two thirds of the information
    /// of both ([`address_similarity`]); or, for addresses of common words only, Jaro–Winkler ≥
    /// [`NAME_SIMILARITY`].
    Similar,
    /// At least a third of it shared (a house number and a street, a street and a postcode).
    Partly,
    Different,
}

/// Identifier comparison levels (legacy ID number, phone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NumberLevel {
    Equal,
    /// Same length, one digit different or two adjacent digits swapped.
    OneDigit,
    Different,
}

/// Parents' names comparison levels. Siblings share their parents (and usually their commune),
/// so agreement counts as no evidence: only disagreement weighs (see [`super::em::Model::level_weight`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParentsLevel {
    /// Every parent named on both sides agrees.
    Agree,
    /// One agrees, the other does not.
    Partly,
    Different,
}

/// The comparison vector of a pair: one level number per [`Field`] (in [`Field::ALL`] order),
/// `None` when the field is missing on either side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comparison(pub [Option<u8>; Field::COUNT]);

impl Comparison {
    pub fn level(&self, field: Field) -> Option<u8> {
        self.0[field.index()]
    }
}

/// One edit apart (Damerau: a character replaced, inserted, deleted, or two adjacent swapped).
pub fn one_edit(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        one_edit_of(a.as_bytes(), b.as_bytes())
    } else {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        one_edit_of(&a, &b)
    }
}

/// [`one_edit`] over characters (bytes of ASCII text, or `char`s).
fn one_edit_of<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    let (short, long) = if a.len() <= b.len() { (a, b) } else { (b, a) };
    match long.len() - short.len() {
        0 => one_apart(a, b),
        1 => {
            let p = short.iter().zip(long.iter()).take_while(|(x, y)| x == y).count();
            short[p..] == long[p + 1..]
        }
        _ => false,
    }
}

/// Same length and exactly one position different, or two adjacent positions swapped.
fn one_apart<T: PartialEq>(a: &[T], b: &[T]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = (0..a.len()).filter(|&i| a[i] != b[i]);
    match (diff.next(), diff.next(), diff.next()) {
        (Some(_), None, _) => true,
        (Some(i), Some(j), None) => j == i + 1 && a[i] == b[j] && a[j] == b[i],
        _ => false,
    }
}

fn close(t: &Strings, (key_a, folded_a): (Sym, Sym), (key_b, folded_b): (Sym, Sym)) -> bool {
    if key_a == key_b {
        return true;
    }
    let (fa, fb) = (t.get(folded_a), t.get(folded_b));
    one_edit(fa, fb) || jaro_winkler(fa, fb) >= NAME_SIMILARITY
}

/// A name part as compared: its folded form and its phonetic key.
type NamePart = (Sym, Sym);

/// One name part: folded forms and phonetic keys.
fn name_part(t: &Strings, (fa, ka): NamePart, (fb, kb): NamePart) -> Option<NameLevel> {
    if fa.is_empty() || fb.is_empty() {
        return None;
    }
    Some(if fa == fb {
        NameLevel::Exact
    } else if ka == kb {
        NameLevel::Phonetic
    } else {
        let (fa, fb) = (t.get(fa), t.get(fb));
        if one_edit(fa, fb) || (fa.len().min(fb.len()) >= 5 && jaro_winkler(fa, fb) >= NAME_SIMILARITY) {
            NameLevel::Typo
        } else {
            NameLevel::Different
        }
    })
}

/// The family, middle and given name levels. Family and given names written in each other's
/// place (the same syllables in another order, or each close to the other's) count as phonetic
/// agreement.
pub fn compare_names(
    t: &Strings,
    a: &LinkFeatures,
    b: &LinkFeatures,
) -> (Option<NameLevel>, Option<MiddleLevel>, Option<NameLevel>) {
    let (a_family, a_given) = ((a.family_f, a.family_k), (a.given_f, a.given_k));
    let (b_family, b_given) = ((b.family_f, b.family_k), (b.given_f, b.given_k));
    let mut family = name_part(t, a_family, b_family);
    let mut given = name_part(t, a_given, b_given);
    let middle = match (a.middle_f.is_empty(), b.middle_f.is_empty()) {
        (true, true) => None,
        (true, false) | (false, true) => Some(MiddleLevel::OneMissing),
        _ if a.middle_f == b.middle_f => Some(MiddleLevel::Exact),
        _ if a.middle_k == b.middle_k || one_edit(t.get(a.middle_f), t.get(b.middle_f)) => Some(MiddleLevel::Phonetic),
        _ => Some(MiddleLevel::Different),
    };
    let reordered = family != Some(NameLevel::Exact) && a.sorted_k == b.sorted_k && a.syllables > 1;
    let crossed = family == Some(NameLevel::Different)
        && given == Some(NameLevel::Different)
        && name_part(t, a_family, b_given).is_some_and(|l| l != NameLevel::Different)
        && name_part(t, a_given, b_family).is_some_and(|l| l != NameLevel::Different);
    if reordered || crossed {
        family = Some(NameLevel::Phonetic);
        given = Some(NameLevel::Phonetic);
    } else if family == Some(NameLevel::Different) && given == Some(NameLevel::Different) {
        // One name moved to the other's place and the other replaced (columns shifted on a form):
        // the name that moved agrees, at the level of a slip; the replaced one stays different.
        let moved =
            |x: NamePart, y: NamePart| matches!(name_part(t, x, y), Some(NameLevel::Exact | NameLevel::Phonetic));
        if moved(a_family, b_given) || moved(a_given, b_family) {
            family = Some(NameLevel::Typo);
        }
    }
    (family, middle, given)
}

/// The digits of `yyyymmdd` (years 0–9999 as dates here are).
fn ymd_digits(d: time::Date) -> [u8; 8] {
    let mut out = [0u8; 8];
    out[..4].copy_from_slice(&year_digits(d.year()));
    for (i, v) in [(4, d.month() as u8), (6, d.day())] {
        out[i] = b'0' + v / 10;
        out[i + 1] = b'0' + v % 10;
    }
    out
}

/// The four digits of a year 0–9999.
fn year_digits(y: i32) -> [u8; 4] {
    let y = y.clamp(0, 9999) as u16;
    [y / 1000, y / 100 % 10, y / 10 % 10, y % 10].map(|d| b'0' + d as u8)
}

pub fn compare_dates(a: PartialDate, b: PartialDate) -> DateLevel {
    use PartialDate::Full;
    if let (Full(x), Full(y)) = (a, b) {
        if x == y {
            return DateLevel::Exact;
        }
        if x.year() == y.year() && x.day() == y.month() as u8 && x.month() as u8 == y.day() {
            return DateLevel::DayMonthSwapped;
        }
        if one_apart(&ymd_digits(x), &ymd_digits(y)) {
            return DateLevel::OneDigit;
        }
    }
    let months_agree = match (a.month(), b.month()) {
        (Some(x), Some(y)) => Some(x == y),
        _ => None,
    };
    let days_agree = match (a.full(), b.full()) {
        (Some(x), Some(y)) => x.day() == y.day() && x.month() == y.month(),
        _ => months_agree != Some(false),
    };
    let years_close = (a.year() - b.year()).abs() == 1 || one_apart(&year_digits(a.year()), &year_digits(b.year()));
    match (a.year() == b.year(), months_agree) {
        (true, Some(true)) => return DateLevel::SameMonth,
        (true, None) => return DateLevel::SameYear,
        (false, _) if years_close && days_agree => return DateLevel::YearApart,
        _ => {}
    }
    if let (Full(x), Full(y)) = (a, b) {
        let (dx, dy) = (ymd_digits(x), ymd_digits(y));
        let differing = (0..8).filter(|&i| dx[i] != dy[i]).count();
        let swapped = PartialDate::from_ymd(y.year(), u32::from(y.day()), y.month() as u32)
            .ok()
            .and_then(|s| s.full())
            .is_some_and(|s| one_apart(&dx, &ymd_digits(s)));
        if differing <= 2 || swapped {
            return DateLevel::TwoDigits;
        }
    }
    DateLevel::Different
}

pub fn compare_communes(a: &LinkFeatures, b: &LinkFeatures) -> Option<CommuneLevel> {
    let (ca, cb) = (a.commune.as_ref()?, b.commune.as_ref()?);
    Some(if ca == cb {
        CommuneLevel::Same
    } else if a.communes_2025.iter().any(|c| b.communes_2025.contains(c)) {
        CommuneLevel::Equivalent
    } else if !a.province.is_empty() && a.province == b.province {
        CommuneLevel::SameProvince
    } else {
        CommuneLevel::Different
    })
}

/// Two address tokens taken for one: equal; a word of 4 letters or more one slip from the other
/// (a letter replaced, dropped, added, or two adjacent swapped); a number of 4 digits or more
/// (a postcode, a long house number) with one digit mistyped or two adjacent swapped. Short
/// numbers must be equal: house 12 is not house 13.
fn tokens_agree(a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    let numeric = |t: &str| t.bytes().all(|c| c.is_ascii_digit());
    match (numeric(a), numeric(b)) {
        (true, true) => a.len() >= 4 && one_apart(a.as_bytes(), b.as_bytes()),
        (false, false) => a.len().min(b.len()) >= 4 && one_edit(a, b),
        _ => false,
    }
}

/// The share of two addresses' information they have in common, in [0, 1] (a weighted Dice
/// coefficient): Σ weights of the tokens matched on both sides / Σ weights of all tokens. Tokens
/// are matched one to one: equal first, then [`tokens_agree`], then a token against two adjacent
/// tokens of the other side written together ("lethbridge street" / "lethbridgestreet", also with
/// one slip). `None` when neither side carries any information (only words every record has).
pub fn address_similarity(a: &[(String, f32)], b: &[(String, f32)]) -> Option<f64> {
    similarity(a, b, String::as_str)
}

/// [`address_similarity`] of tokens of any kind, read as text by `text`.
/// Tokens equal as `T` must be equal as text and the reverse (strings, or numbers of one
/// [`Strings`] table): the first pass compares them without reading their text.
fn similarity<'t, T: PartialEq>(a: &'t [(T, f32)], b: &'t [(T, f32)], text: impl Fn(&'t T) -> &'t str) -> Option<f64> {
    let total: f64 = a.iter().chain(b).map(|(_, w)| f64::from(*w)).sum();
    if total <= 0.0 {
        return None;
    }
    // Which tokens are matched: on the stack for addresses of usual length.
    let (mut stack_a, mut stack_b) = ([false; 32], [false; 32]);
    let (mut heap_a, mut heap_b) = (Vec::new(), Vec::new());
    let used_a = flags(a.len(), &mut stack_a, &mut heap_a);
    let used_b = flags(b.len(), &mut stack_b, &mut heap_b);
    for (i, (ta, _)) in a.iter().enumerate() {
        if let Some(j) = (0..b.len()).find(|&j| !used_b[j] && *ta == b[j].0) {
            used_a[i] = true;
            used_b[j] = true;
        }
    }
    for (i, (ta, _)) in a.iter().enumerate() {
        if used_a[i] {
            continue;
        }
        let ta = text(ta);
        if let Some(j) = (0..b.len()).find(|&j| !used_b[j] && tokens_agree(ta, text(&b[j].0))) {
            used_a[i] = true;
            used_b[j] = true;
        }
    }
    // One token written as two adjacent ones of the other side (a space dropped or misplaced).
    let joined = |x: &'t [(T, f32)], y: &'t [(T, f32)], used_x: &mut [bool], used_y: &mut [bool]| {
        let mut joined = String::new();
        for (i, (tx, _)) in x.iter().enumerate() {
            let tx = text(tx);
            if used_x[i] || tx.len() < 6 {
                continue;
            }
            if let Some(j) = (0..y.len().saturating_sub(1)).find(|&j| {
                !used_y[j] && !used_y[j + 1] && {
                    joined.clear();
                    joined.push_str(text(&y[j].0));
                    joined.push_str(text(&y[j + 1].0));
                    tx == joined || one_edit(tx, &joined)
                }
            }) {
                used_x[i] = true;
                used_y[j] = true;
                used_y[j + 1] = true;
            }
        }
    };
    joined(a, b, used_a, used_b);
    joined(b, a, used_b, used_a);
    let shared: f64 = a
        .iter()
        .zip(used_a.iter())
        .chain(b.iter().zip(used_b.iter()))
        .filter(|(_, used)| **used)
        .map(|((_, w), _)| f64::from(*w))
        .sum();
    Some(shared / total)
}

pub fn compare_addresses(t: &Strings, a: &LinkFeatures, b: &LinkFeatures) -> Option<AddressLevel> {
    if a.address_f.is_empty() || b.address_f.is_empty() {
        return None;
    }
    Some(if a.address_f == b.address_f {
        AddressLevel::Same
    } else {
        match similarity(&a.address_tokens, &b.address_tokens, |&s| t.get(s)) {
            Some(s) if s >= 2.0 / 3.0 => AddressLevel::Similar,
            Some(s) if s >= 1.0 / 3.0 => AddressLevel::Partly,
            None if jaro_winkler(t.get(a.address_f), t.get(b.address_f)) >= NAME_SIMILARITY => AddressLevel::Similar,
            _ => AddressLevel::Different,
        }
    })
}

pub fn compare_numbers(a: &str, b: &str) -> NumberLevel {
    if a == b {
        NumberLevel::Equal
    } else if one_apart(a.as_bytes(), b.as_bytes()) {
        NumberLevel::OneDigit
    } else {
        NumberLevel::Different
    }
}

pub fn compare_parents(t: &Strings, a: &LinkFeatures, b: &LinkFeatures) -> Option<ParentsLevel> {
    let mut agree = 0;
    let mut differ = 0;
    for (x, y) in [(a.father, b.father), (a.mother, b.mother)] {
        if let (Some(x), Some(y)) = (x, y) {
            if close(t, x, y) {
                agree += 1;
            } else {
                differ += 1;
            }
        }
    }
    match (agree, differ) {
        (0, 0) => None,
        (_, 0) => Some(ParentsLevel::Agree),
        (0, _) => Some(ParentsLevel::Different),
        _ => Some(ParentsLevel::Partly),
    }
}

/// Compares two prepared records field by field.
pub fn compare(t: &Strings, a: &LinkFeatures, b: &LinkFeatures) -> Comparison {
    let both = |x: Sym, y: Sym| match (x.is_empty(), y.is_empty()) {
        (false, false) if x == y => Some(NumberLevel::Equal as u8),
        (false, false) => Some(compare_numbers(t.get(x), t.get(y)) as u8),
        _ => None,
    };
    let mut c = [None; Field::COUNT];
    let (family, middle, given) = compare_names(t, a, b);
    c[Field::Family.index()] = family.map(|l| l as u8);
    c[Field::Middle.index()] = middle.map(|l| l as u8);
    c[Field::Given.index()] = given.map(|l| l as u8);
    c[Field::BirthDate.index()] = match (a.birth_date, b.birth_date) {
        (Some(x), Some(y)) => Some(compare_dates(x, y) as u8),
        _ => None,
    };
    c[Field::Sex.index()] = match (a.sex, b.sex) {
        (Some(x), Some(y)) => Some(u8::from(x != y)),
        _ => None,
    };
    c[Field::Commune.index()] = compare_communes(a, b).map(|l| l as u8);
    c[Field::Address.index()] = compare_addresses(t, a, b).map(|l| l as u8);
    c[Field::LegacyId.index()] = both(a.legacy_id, b.legacy_id);
    c[Field::Phone.index()] = both(a.phone, b.phone);
    c[Field::Parents.index()] = compare_parents(t, a, b).map(|l| l as u8);
    Comparison(c)
}

/// Settings of the whole linkage run.
#[derive(Debug, Clone, Default)]
pub struct LinkConfig {
    pub blocking: BlockingConfig,
    pub em: EmConfig,
    pub thresholds: Thresholds,
    /// The largest group of records taken for one person (default 8): a `Link` that would make
    /// a larger cluster is sent to review instead.
    pub max_cluster: Option<usize>,
}

impl LinkConfig {
    pub const DEFAULT_MAX_CLUSTER: usize = 8;
}

/// A scored candidate pair (`a < b`, indexes into the input records).
#[derive(Debug, Clone)]
pub struct ScoredPair {
    pub a: usize,
    pub b: usize,
    pub comparison: Comparison,
    /// Term-frequency adjustments in bits per field (see [`TermFrequencies`]).
    pub adjustments: Adjustments,
    /// Match weight in bits (log2 of the likelihood ratio, with the prior odds and the adjustments).
    pub weight: f64,
    pub probability: f64,
    pub band: Band,
    /// Why a pair scored `Link` was sent to review by the clustering guard.
    pub refused: Option<Refusal>,
}

/// Everything a linkage run produced.
#[derive(Debug, Clone)]
pub struct LinkOutcome {
    pub blocking: BlockingStats,
    pub model: Model,
    /// Candidate pairs compared.
    pub candidates: usize,
    /// The candidate pairs scored `Link` or `Review` (the `Distinct` ones, nearly all, are not
    /// kept), in candidate order (by `a`, then `b`).
    pub pairs: Vec<ScoredPair>,
    /// Groups of two or more records taken for one person (sorted indexes, groups sorted).
    pub clusters: Vec<Vec<usize>>,
}

/// `count` pseudo-random pairs of distinct records among `n` (a fixed sequence: runs are reproducible).
fn background_pairs(n: usize, count: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut state: u64 = 0x5EED_0FD4_C000;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n.max(1) as u64) as usize
    };
    let count = if n < 2 { 0 } else { count };
    (0..count).map(move |_| {
        loop {
            let (a, b) = (next(), next());
            if a != b {
                break (a, b);
            }
        }
    })
}

/// How common each family name, given name and address is among the records, for term-frequency adjustment:
/// an exact agreement on a name shared by many (Nguyễn: about 38% of the population) says less
/// than one on a rare name. The adjustment of an exact level is `log2(u / f)` bits, `u` the
/// model's share of exact agreements among non-matches and `f` the name's share of records,
/// within ±[`TermFrequencies::MAX_ADJUSTMENT`].
#[derive(Debug, Clone, Default)]
pub struct TermFrequencies {
    family: Vec<f64>,
    given: Vec<f64>,
    address: Vec<f64>,
}

impl TermFrequencies {
    pub const MAX_ADJUSTMENT: f64 = 8.0;

    pub fn new(features: &[LinkFeatures]) -> Self {
        let shares = |part: fn(&LinkFeatures) -> Sym| -> Vec<f64> {
            let counts = TermCounts::new(features, part);
            features.iter().map(|f| counts.share(part(f))).collect()
        };
        TermFrequencies {
            family: shares(|f| f.family_f),
            given: shares(|f| f.given_f),
            address: shares(|f| f.address_f),
        }
    }

    /// The adjustments of a compared pair (record `a`'s names stand for both on exact levels),
    /// and the household rule of the address (below).
    pub fn adjustments(&self, model: &Model, a: usize, c: &Comparison) -> Adjustments {
        let exact = |field: Field, shares: &[f64]| {
            shares.get(a).map(|&share| Self::exact_adjustment(model.u[field.index()][0], share))
        };
        let household = |l: u8| Self::household_adjustment(model, l);
        let exacts = [(Field::Family, &self.family), (Field::Given, &self.given), (Field::Address, &self.address)]
            .map(|(field, shares)| exact(field, shares));
        Self::assemble(c, exacts, household)
    }

    /// An exact agreement's adjustment: `log2(u / share)` bits within the bounds.
    fn exact_adjustment(u: f64, share: f64) -> f64 {
        (u / share.max(1e-6)).log2().clamp(-Self::MAX_ADJUSTMENT, Self::MAX_ADJUSTMENT)
    }

    /// An address that agrees within agreeing communes: its level's weight taken back.
    fn household_adjustment(model: &Model, level: u8) -> f64 {
        -model.level_weight(Field::Address, level).max(0.0)
    }

    /// The adjustments of a pair from record `a`'s exact-agreement adjustments of family name,
    /// given name and address, and the household rule's value of an address level.
    fn assemble(c: &Comparison, exact: [Option<f64>; 3], household: impl Fn(u8) -> f64) -> Adjustments {
        let mut adj = [0.0; Field::COUNT];
        // Level 0 is the exact agreement of each.
        for (field, value) in [Field::Family, Field::Given, Field::Address].into_iter().zip(exact) {
            if c.level(field) == Some(0)
                && let Some(v) = value
            {
                adj[field.index()] = v;
            }
        }
        // An address lies within its commune: when the communes agree, the same address adds a
        // household's agreement, not a person's (siblings share it), so only a different address weighs.
        if matches!(c.level(Field::Commune), Some(x) if x <= CommuneLevel::Equivalent as u8)
            && let Some(l) = c.level(Field::Address)
            && l != AddressLevel::Different as u8
        {
            adj[Field::Address.index()] = household(l);
        }
        adj
    }
}

/// How many records hold each string of one part (family name, given name, address): a count
/// per string number (the interner's numbers are dense), the empty string's apart.
struct TermCounts {
    by_sym: Vec<u32>,
    empty: u32,
    /// Records whose part is not empty (at least 1).
    total: f64,
}

impl TermCounts {
    fn new(features: &[LinkFeatures], part: fn(&LinkFeatures) -> Sym) -> Self {
        let len = features.iter().map(part).filter(|s| !s.is_empty()).map(|s| s.raw() as usize + 1).max();
        let mut counts = TermCounts { by_sym: vec![0; len.unwrap_or(0)], empty: 0, total: 0.0 };
        for f in features {
            match part(f) {
                s if s.is_empty() => counts.empty += 1,
                s => counts.by_sym[s.raw() as usize] += 1,
            }
        }
        counts.total = (features.len() - counts.empty as usize).max(1) as f64;
        counts
    }

    /// The share of records holding `s` (the empty string's share of the non-empty ones for an empty part).
    fn share(&self, s: Sym) -> f64 {
        let count = if s.is_empty() { self.empty } else { self.by_sym[s.raw() as usize] };
        f64::from(count) / self.total
    }
}

/// [`TermFrequencies`] under one model: every record's adjustments computed once (scoring
/// millions of pairs then looks them up instead of taking a logarithm per field and pair), the
/// same values as [`TermFrequencies::adjustments`].
#[derive(Debug, Clone)]
pub struct ModelAdjustments {
    family: Vec<f64>,
    given: Vec<f64>,
    address: Vec<f64>,
    household: Vec<f64>,
}

impl ModelAdjustments {
    /// The adjustments without every record's shares first: one part at a time from its counts
    /// (at 10 million records the shares would be another 270 MB beside the adjustments).
    pub fn new(features: &[LinkFeatures], model: &Model) -> Self {
        let per_record = |field: Field, part: fn(&LinkFeatures) -> Sym| -> Vec<f64> {
            let (counts, u) = (TermCounts::new(features, part), model.u[field.index()][0]);
            par::map(features, |f| TermFrequencies::exact_adjustment(u, counts.share(part(f))))
        };
        let levels = Field::Address.levels().len() as u8;
        ModelAdjustments {
            family: per_record(Field::Family, |f| f.family_f),
            given: per_record(Field::Given, |f| f.given_f),
            address: per_record(Field::Address, |f| f.address_f),
            household: (0..levels).map(|l| TermFrequencies::household_adjustment(model, l)).collect(),
        }
    }

    /// [`TermFrequencies::adjustments`] of a pair, looked up.
    pub fn adjustments(&self, a: usize, c: &Comparison) -> Adjustments {
        let exact = [&self.family, &self.given, &self.address].map(|v| v.get(a).copied());
        TermFrequencies::assemble(c, exact, |l| self.household[l as usize])
    }
}

/// Weighs each address token by the information it carries in this file, `log2(n / df)` bits
/// (`n` records with an address, `df` of them having the token): the words nearly every record
/// has ("số", "tổ", "thôn", "đường", a state) weigh nearly nothing, a street name or a postcode
/// few share weighs much, a house number in between.
fn weigh_address_tokens(p: &mut Prepared) {
    let mut df: HashMap<Sym, u32> = HashMap::new();
    let mut n = 0u32;
    let mut seen: Vec<Sym> = Vec::new();
    for f in &p.records {
        if f.address_tokens.is_empty() {
            continue;
        }
        n += 1;
        seen.clear();
        seen.extend(f.address_tokens.iter().map(|(t, _)| *t));
        seen.sort_unstable_by_key(|s| s.raw());
        seen.dedup();
        for t in &seen {
            *df.entry(*t).or_default() += 1;
        }
    }
    let strings = &p.strings;
    for f in &mut p.records {
        for (t, w) in &mut f.address_tokens {
            *w = (f64::from(n) / f64::from(df[t])).log2() as f32;
        }
        let mut rare: Vec<(&str, Sym, f32)> = f
            .address_tokens
            .iter()
            .filter(|(t, w)| *w >= RARE_ADDRESS_BITS && df[t] >= 2)
            .map(|&(t, w)| (strings.get(t), t, w))
            .collect();
        rare.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(b.0)));
        rare.dedup_by(|a, b| a.1 == b.1);
        f.address_rare = [Sym::EMPTY; 2];
        for (slot, (_, t, _)) in f.address_rare.iter_mut().zip(rare) {
            *slot = t;
        }
    }
}

/// The most records one linkage run takes (blocking packs a pair of record numbers and its
/// rules into 64 bits: [`blocking::max_records`]).
pub fn max_link_records() -> usize {
    blocking::max_records(blocking::default_rules().len())
}

/// Runs blocking, model estimation, scoring and clustering over `records`.
pub fn link(records: &[LinkRecord], config: &LinkConfig) -> LinkOutcome {
    link_prepared(&Prepared::new(records), config)
}

/// The pattern number of each candidate pair, in pair order: two bytes a number while the
/// distinct patterns are at most 65,536 (a linkage has a few thousand), four once there are more.
/// At 10 million records (221 million pairs) the two bytes are 440 MB less at the linkage's peak.
enum PatternIds {
    Narrow(Vec<u16>),
    Wide(Vec<u32>),
}

impl PatternIds {
    fn with_capacity(n: usize) -> Self {
        PatternIds::Narrow(Vec::with_capacity(n))
    }

    fn push(&mut self, id: u32) {
        match self {
            PatternIds::Narrow(ids) => match u16::try_from(id) {
                Ok(id) => ids.push(id),
                Err(_) => {
                    let mut wide = Vec::with_capacity(ids.capacity());
                    wide.extend(ids.iter().map(|&x| u32::from(x)));
                    wide.push(id);
                    *self = PatternIds::Wide(wide);
                }
            },
            PatternIds::Wide(ids) => ids.push(id),
        }
    }

    fn get(&self, i: usize) -> usize {
        match self {
            PatternIds::Narrow(ids) => usize::from(ids[i]),
            PatternIds::Wide(ids) => ids[i] as usize,
        }
    }

    fn len(&self) -> usize {
        match self {
            PatternIds::Narrow(ids) => ids.len(),
            PatternIds::Wide(ids) => ids.len(),
        }
    }

    fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }
}

/// [`link`] of records already prepared (see [`FeatureBuilder`]).
pub fn link_prepared(prepared: &Prepared, config: &LinkConfig) -> LinkOutcome {
    let (strings, features) = (&prepared.strings, &prepared.records);
    let compare = |a: usize, b: usize| compare(strings, &features[a], &features[b]);
    let rules = blocking::default_rules();
    let candidates = blocking::candidates(prepared, &rules, &config.blocking);
    // Each candidate pair's comparison, kept as the index of its pattern among the distinct
    // ones (a few thousand): 2 bytes a pair instead of a whole comparison; compared a chunk at a time.
    let (mut distinct, mut pattern_of) = (Vec::<Comparison>::new(), PatternIds::with_capacity(candidates.len()));
    let mut index: HashMap<Comparison, u32> = HashMap::new();
    for chunk in candidates.packed().chunks(1 << 20) {
        for c in par::map(chunk, |&x| {
            let (a, b) = candidates.unpack(x);
            compare(a as usize, b as usize)
        }) {
            let id = *index.entry(c).or_insert_with(|| {
                distinct.push(c);
                (distinct.len() - 1) as u32
            });
            pattern_of.push(id);
        }
    }
    drop(index);
    // The patterns of the pairs `take` selects, with their counts.
    let counted = |take: &dyn Fn(usize) -> bool| {
        let mut counts = vec![0.0f64; distinct.len()];
        for (i, p) in pattern_of.iter().enumerate() {
            if take(i) {
                counts[p] += 1.0;
            }
        }
        em::patterns(distinct.iter().zip(counts).filter(|(_, n)| *n > 0.0).map(|(c, n)| (*c, n)))
    };
    let background: Vec<Comparison> =
        background_pairs(features.len(), config.em.background_pairs).map(|(a, b)| compare(a, b)).collect();
    let all = counted(&|_| true);
    let model = if background.is_empty() {
        Model::estimate_patterns(&all, &background, &config.em)
    } else {
        // A training rule's pairs are those of the candidates it proposed, already compared.
        let sessions = blocking::TRAINING.iter().filter_map(|(name, ignored)| {
            let rule = rules.iter().position(|r| r.name == *name)?;
            Some((counted(&|i| candidates.proposed_by(i, rule)), ignored.to_vec()))
        });
        Model::estimate_in_sessions(sessions, &all, candidates.stats.uncompared as f64, &background, &config.em)
    };
    let tf = ModelAdjustments::new(features, &model);
    let score = |a: usize, b: usize| {
        let c = compare(a, b);
        model.match_weight_adjusted(&c, &tf.adjustments(a, &c))
    };
    // Each distinct pattern's weight before adjustments, computed once (the same sum as
    // `match_weight_adjusted`: the pattern's weight, then the adjustments of the fields present).
    let base: Vec<f64> = distinct.iter().map(|c| model.match_weight(c)).collect();
    let score_pair = |i: usize| {
        let (a, b) = candidates.pair(i);
        let p = pattern_of.get(i);
        let c = &distinct[p];
        let adjustments = tf.adjustments(a as usize, c);
        let extra: f64 = c.0.iter().zip(&adjustments).filter(|(l, _)| l.is_some()).map(|(_, a)| a).sum();
        let weight = base[p] + extra;
        let band = config.thresholds.band(weight);
        (band != Band::Distinct).then(|| ScoredPair {
            a: a as usize,
            b: b as usize,
            comparison: *c,
            adjustments,
            weight,
            probability: Model::probability_of(weight),
            band,
            refused: None,
        })
    };
    // Scored on all cores, in some 8,192 ranges of pairs (enough for `par::map` to share them
    // out), kept in candidate order.
    let n = candidates.len();
    let step = n.div_ceil(8192).max(1);
    let ranges: Vec<std::ops::Range<usize>> = (0..n).step_by(step).map(|start| start..(start + step).min(n)).collect();
    let scored = par::map(&ranges, |r| r.clone().filter_map(score_pair).collect::<Vec<_>>());
    let mut pairs: Vec<ScoredPair> = Vec::with_capacity(scored.iter().map(Vec::len).sum());
    pairs.extend(scored.into_iter().flatten());
    drop(pattern_of);
    let link_index: Vec<usize> =
        pairs.iter().enumerate().filter(|(_, p)| p.band == Band::Link).map(|(i, _)| i).collect();
    let links: Vec<(usize, usize, f64)> =
        link_index.iter().map(|&i| (pairs[i].a, pairs[i].b, pairs[i].weight)).collect();
    let clustering = cluster::cluster(
        features.len(),
        &links,
        config.max_cluster.unwrap_or(LinkConfig::DEFAULT_MAX_CLUSTER),
        cluster::Guard {
            contradiction: config.thresholds.contradiction,
            support: config.thresholds.review,
            veto: config.thresholds.veto,
        },
        score,
    );
    for (link, reason) in clustering.refused {
        let p = &mut pairs[link_index[link]];
        p.band = Band::Review;
        p.refused = Some(reason);
    }
    LinkOutcome {
        candidates: candidates.len(),
        blocking: candidates.stats,
        model,
        pairs,
        clusters: clustering.clusters,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::Month;

    fn record(family: &str, middle: &str, given: &str, date: &str, commune: &str) -> LinkRecord {
        LinkRecord {
            origin: Origin::Batch,
            family: family.into(),
            middle: middle.into(),
            given: given.into(),
            birth_date: Some(PartialDate::parse(date).unwrap()),
            sex: Some(Sex::Female),
            commune_key: Some(commune.into()),
            ..LinkRecord::blank(Origin::Batch)
        }
    }

    type Levels = (Option<NameLevel>, Option<MiddleLevel>, Option<NameLevel>);

    fn names(a: (&str, &str, &str), b: (&str, &str, &str)) -> Levels {
        let p =
            Prepared::new(&[record(a.0, a.1, a.2, "1990", "2025:00004"), record(b.0, b.1, b.2, "1990", "2025:00004")]);
        compare_names(&p.strings, &p.records[0], &p.records[1])
    }

    #[test]
    fn pattern_numbers_widen_past_two_bytes_and_keep_every_number() {
        let numbers: Vec<u32> = (0..70_000u32).map(|i| (i * 7919) % 70_001).collect();
        let mut ids = PatternIds::with_capacity(4);
        for (i, &n) in numbers.iter().enumerate() {
            ids.push(n);
            assert_eq!(matches!(ids, PatternIds::Narrow(_)), numbers[..=i].iter().all(|&x| x <= 0xFFFF), "after {i}");
        }
        assert!(matches!(ids, PatternIds::Wide(_)));
        assert_eq!(ids.iter().collect::<Vec<_>>(), numbers.iter().map(|&n| n as usize).collect::<Vec<_>>());
    }

    #[test]
    fn jaro_winkler_reference_values() {
        let close = |a: &str, b: &str, want: f64| {
            let got = jaro_winkler(a, b);
            assert!((got - want).abs() < 0.001, "{a}/{b}: {got}");
        };
        close("martha", "marhta", 0.961);
        close("dwayne", "duane", 0.840);
        close("dixon", "dicksonx", 0.813);
        close("abc", "abc", 1.0);
        close("abc", "xyz", 0.0);
        close("", "", 1.0);
    }

    #[test]
    fn name_levels() {
        use NameLevel::*;
        let e = Some(MiddleLevel::Exact);
        assert_eq!(names(("Nguyễn", "Thị", "Hoà"), ("NGUYEN", "THI", "HÒA")), (Some(Exact), e, Some(Exact)));
        assert_eq!(
            names(("Trần", "Xuân", "Giang"), ("Chần", "Suân", "Dang")),
            (Some(Phonetic), Some(MiddleLevel::Phonetic), Some(Phonetic))
        );
        assert_eq!(names(("Nguyễn", "Văn", "Thắng"), ("Nguyễn", "Văn", "Thăngg")), (Some(Exact), e, Some(Typo)));
        assert_eq!(names(("Nguyễn", "Văn", "Thắng"), ("Nguyễn", "Văn", "Tháng")), (Some(Exact), e, Some(Exact)));
        assert_eq!(
            names(("Lê", "Thị Thu", "Hà"), ("Lê", "", "Hà")),
            (Some(Exact), Some(MiddleLevel::OneMissing), Some(Exact))
        );
        // Family and given names in each other's place.
        assert_eq!(names(("Lê", "Thu", "Hà"), ("Hà", "Thu", "Lê")), (Some(Phonetic), e, Some(Phonetic)));
        // One moved to the other's place, the other replaced: the one that moved counts as a slip.
        assert_eq!(names(("Lê", "Thu", "Hà"), ("Hà", "Thu", "Mai")), (Some(Typo), e, Some(Different)));
        assert_eq!(names(("mason", "", "harrison"), ("harrison", "", "wheatley")), (Some(Typo), None, Some(Different)));
        assert_eq!(names(("Lê", "Thu", "Hà"), ("Phạm", "Thu", "Lê")), (Some(Typo), e, Some(Different)));
        assert_eq!(
            names(("Lê", "Văn", "Hùng"), ("Phạm", "Thị", "Lan")),
            (Some(Different), Some(MiddleLevel::Different), Some(Different))
        );
        assert_eq!(names(("", "", ""), ("Phạm", "Thị", "Lan")), (None, Some(MiddleLevel::OneMissing), None));
        // No middle name on either side: missing, not agreement.
        assert_eq!(names(("Lê", "", "Hà"), ("Lê", "", "Hà")).1, None);
        // Siblings: the given name tells them apart even when the rest of the name is the same.
        assert_eq!(names(("Nguyễn", "Thị", "Lan"), ("Nguyễn", "Thị", "Hoa")).2, Some(Different));
        assert_eq!(names(("Nguyễn", "Văn", "An"), ("Nguyễn", "Văn", "Anh")).2, Some(Typo));
    }

    #[test]
    fn date_levels() {
        use DateLevel::*;
        let d = |a: &str, b: &str| compare_dates(PartialDate::parse(a).unwrap(), PartialDate::parse(b).unwrap());
        assert_eq!(d("1990-03-05", "1990-03-05"), Exact);
        assert_eq!(d("1990-03-05", "1990-05-03"), DayMonthSwapped);
        assert_eq!(d("1990-03-05", "1990-03-08"), OneDigit);
        assert_eq!(d("1990-03-05", "1909-03-05"), OneDigit);
        assert_eq!(d("1990-03-05", "1990-03-27"), SameMonth);
        assert_eq!(d("1990-03", "1990-03-25"), SameMonth);
        assert_eq!(d("1990", "1990-03-25"), SameYear);
        assert_eq!(d("1990", "1990"), SameYear);
        assert_eq!(d("1989-12-31", "1990-12-31"), YearApart);
        assert_eq!(d("1990", "1991-12-31"), YearApart);
        // A year typo on a year-only record.
        assert_eq!(d("1998", "1990-02-15"), YearApart);
        assert_eq!(d("1990-04-05", "1990-11-21"), Different);
        assert_eq!(d("1990", "1985"), Different);
        // Two slips: a swapped day and month plus a mistyped digit; two digits mistyped.
        assert_eq!(d("1981-07-03", "1981-03-08"), TwoDigits);
        assert_eq!(d("1987-11-12", "1984-12-11"), TwoDigits);
        assert_eq!(d("1970-01-19", "1976-01-17"), TwoDigits);
        // A namesake born decades apart.
        assert_eq!(d("1966-11-16", "2003-06-24"), Different);
        assert_eq!(PartialDate::parse("1990-03").unwrap().month(), Some(Month::March));
    }

    #[test]
    fn numbers_and_phones() {
        assert_eq!(compare_numbers("012345678", "012345678"), NumberLevel::Equal);
        assert_eq!(compare_numbers("012345678", "012345679"), NumberLevel::OneDigit);
        assert_eq!(compare_numbers("012345678", "012354678"), NumberLevel::OneDigit);
        assert_eq!(compare_numbers("012345678", "0123456789"), NumberLevel::Different);
        assert_eq!(compare_numbers("012345678", "876543210"), NumberLevel::Different);
        assert_eq!(normalize_phone("+84 912 345 678").as_deref(), Some("0912345678"));
        assert_eq!(normalize_phone("0912.345.678").as_deref(), Some("0912345678"));
        assert_eq!(normalize_phone("-"), None);
    }

    fn tokens(address: &str, weights: &[(&str, f32)]) -> Vec<(String, f32)> {
        let mut r = record("Lê", "", "Hà", "1990", "2025:00004");
        r.address = Some(address.into());
        let p = Prepared::new(&[r]);
        p.records[0]
            .address_tokens
            .iter()
            .map(|&(t, _)| {
                let t = p.strings.get(t);
                (t.to_string(), weights.iter().find(|(x, _)| *x == t).map_or(1.0, |x| x.1))
            })
            .collect()
    }

    #[test]
    fn address_tokens_agree_through_slips_and_joined_words() {
        assert!(tokens_agree("lethbridge", "lethbridbe"));
        assert!(tokens_agree("colebatch", "colebatc"));
        assert!(tokens_agree("2767", "2776"));
        // Short words and short numbers must be equal: house 12 is not house 13.
        assert!(!tokens_agree("12", "13"));
        assert!(!tokens_agree("pho", "phu"));
        assert!(!tokens_agree("2767", "2700"));
        let same = |a: &str, b: &str| address_similarity(&tokens(a, &[]), &tokens(b, &[])).unwrap();
        assert_eq!(same("8 lethbridge street 2767", "8 lethbridbe street 2767"), 1.0);
        // A space dropped, or a space misplaced with a slip.
        assert_eq!(same("7 cope place dover", "7 copeplace dover"), 1.0);
        assert_eq!(same("7 cope place dover", "7 copeplcae dover"), 1.0);
        assert_eq!(same("Số 12, Tổ dân phố 5", "Số 13, Tổ dân phố 5"), 10.0 / 12.0);
        assert_eq!(same("Thôn 3", "Xóm Bãi"), 0.0);
    }

    #[test]
    fn address_information_is_weighted_by_rarity() {
        // Sharing the words every record has says little; sharing the rare street and postcode
        // says much, even when the house number and the suburb differ.
        let w = [("street", 0.2), ("nsw", 0.3), ("8", 4.0), ("9", 4.0), ("lethbridge", 12.0), ("2767", 10.0)];
        let w =
            [&w[..], &[("winston", 9.0), ("toowoomba", 9.0), ("hills", 5.0), ("dover", 9.0), ("2000", 10.0)]].concat();
        let sim = |a: &str, b: &str| address_similarity(&tokens(a, &w), &tokens(b, &w)).unwrap();
        let rare = sim("8 lethbridge street winston hills 2767 nsw", "9 lethbridge street toowoomba 2767 nsw");
        let common = sim("8 lethbridge street winston hills 2767 nsw", "9 dover street toowoomba 2000 nsw");
        assert!(rare > 0.4 && rare < 2.0 / 3.0, "{rare}");
        assert!(common < 0.05, "{common}");
        // Without information on either side, no similarity: the whole strings decide.
        assert_eq!(address_similarity(&tokens("street nsw", &[("street", 0.0), ("nsw", 0.0)]), &[]), None);
        let level = |a: &str, b: &str| {
            let with = |address: &str| {
                let mut r = record("Lê", "", "Hà", "1990", "2025:00004");
                r.address = Some(address.into());
                r
            };
            let mut p = Prepared::new(&[with(a), with(b)]);
            let strings = &p.strings;
            for f in &mut p.records {
                for (t, weight) in f.address_tokens.iter_mut() {
                    *weight = w.iter().find(|(x, _)| *x == strings.get(*t)).map_or(1.0, |x| x.1);
                }
            }
            compare_addresses(&p.strings, &p.records[0], &p.records[1])
        };
        assert_eq!(level("8 lethbridge street 2767 nsw", "8 lethbridge street 2767 nsw"), Some(AddressLevel::Same));
        assert_eq!(level("8 lethbridge street 2767 nsw", "8 lethbridbe st 2767"), Some(AddressLevel::Similar));
        assert_eq!(level("8 lethbridge street 2767 nsw", "9 lethbridge street 2000 nsw"), Some(AddressLevel::Partly));
        assert_eq!(level("8 lethbridge street 2767 nsw", "8 dover street 2000 nsw"), Some(AddressLevel::Different));
    }

    #[test]
    fn address_weights_come_from_the_file() {
        // Neighbours of one commune, each in one of four hamlets.
        let hamlets = |n: usize| -> Vec<LinkRecord> {
            (0..n)
                .map(|i| {
                    let mut r = record("Lê", "", "Hà", "1990", "2025:00004");
                    r.address = Some(format!("Thôn {}", i % 4));
                    r
                })
                .collect()
        };
        let mut records = hamlets(64);
        records[0].address = Some("Thôn 0, Bãi Sậy".into());
        let p = Prepared::new(&records);
        let weight =
            |i: usize, t: &str| p.records[i].address_tokens.iter().find(|x| p.strings.get(x.0) == t).unwrap().1;
        // In every record: nothing; in a quarter: 2 bits; in one of 64: 6 bits.
        assert_eq!(weight(1, "thon"), 0.0);
        assert_eq!(weight(1, "1"), 2.0);
        assert_eq!(weight(0, "bai"), 6.0);
        // Blocking takes the rare tokens another record shares: none here (6 bits at most).
        assert!((0..p.len()).all(|i| p.address_rare(i).is_empty()));
        let mut records = hamlets(1024);
        records[0].address = Some("Thôn 0, Bãi Sậy, Xóm Đình".into());
        records[1].address = Some("Thôn 1, Bãi Sậy".into());
        records[2].address = Some("Xom Dinh, Bãi Sậy".into());
        records[3].address = Some("Thôn 3, Bãi Sậyy".into());
        let p = Prepared::new(&records);
        // "xom" and "dinh": 9 bits (2 of 1024), "say" 8.4 bits (3 of 1024), "bai" 8 bits (4 of
        // 1024); "sayy", a typo no other record has, pairs nothing.
        assert_eq!(p.address_rare(0), ["dinh", "xom"]);
        assert_eq!(p.address_rare(1), ["say", "bai"]);
        assert_eq!(p.address_rare(3), ["bai"]);
        assert!(p.address_rare(4).is_empty());
    }

    /// A record with a family name slip, no date and a mistyped identity number shares only its
    /// given name and its rare address words with the original: the name + address word pass pairs them.
    #[test]
    fn a_rare_address_word_and_a_name_make_a_candidate_pair() {
        let mut records: Vec<LinkRecord> = (0..600)
            .map(|i| {
                let mut r =
                    record(["smith", "jones", "brown"][i % 3], "", ["mia", "liam", "ava", "noah"][i % 4], "1990", "");
                r.birth_date = PartialDate::parse(&format!("{}-01-{:02}", 1940 + i % 60, i % 28 + 1)).ok();
                r.commune_key = None;
                r.sex = None;
                r.legacy_id = Some(format!("{}", 5_000_000 + i * 7));
                r.address = Some(format!("{} street{} suburb{} {} nsw", i % 90 + 1, i % 50, i % 30, 1000 + i % 40));
                r
            })
            .collect();
        let mut original = record("flatman", "", "casey", "1993-10-02", "2025:00004");
        original.commune_key = None;
        original.sex = None;
        original.legacy_id = Some("9564208".into());
        original.address = Some("3 wyselaskie circuit mentone 7250 vic".into());
        let mut copy = original.clone();
        copy.family = "flatan".into();
        copy.birth_date = None;
        copy.legacy_id = Some("9564028".into());
        copy.address = Some("3 wyselaskie circuit mentone 7205 vic".into());
        records.push(original);
        records.push(copy);
        let (a, b) = (records.len() as u32 - 2, records.len() as u32 - 1);
        let features = Prepared::new(&records);
        assert_eq!(features.address_rare(a as usize), ["circuit", "mentone"]);
        let config = BlockingConfig::default();
        let rules = blocking::default_rules();
        let all = blocking::candidates(&features, &rules, &config);
        let found: Vec<(u32, u32)> = all.pairs().collect();
        assert!(found.contains(&(a, b)));
        // The rules each pair is recorded with are exactly the rules that find it alone (the
        // training sessions take their pairs from there).
        for (number, rule) in rules.iter().enumerate() {
            let alone: Vec<(u32, u32)> =
                blocking::candidates(&features, std::slice::from_ref(rule), &config).pairs().collect();
            let recorded: Vec<(u32, u32)> =
                (0..found.len()).filter(|&i| all.proposed_by(i, number)).map(|i| found[i]).collect();
            assert_eq!(recorded, alone, "{}", rule.name);
        }
        let without: Vec<_> = rules.iter().filter(|r| r.name != "name+address word").copied().collect();
        assert!(!blocking::candidates(&features, &without, &config).pairs().any(|p| p == (a, b)));
        // Compared, the address agrees (the postcode with two digits swapped, "vic" common).
        let c = features.compare(a as usize, b as usize);
        assert_eq!(c.level(Field::Address), Some(AddressLevel::Similar as u8));
    }

    #[test]
    fn legacy_and_2025_communes_are_equivalent() {
        // Legacy Trúc Bạch (00004) went whole into 2025 Ba Đình (00004); legacy 00001 is elsewhere in Hà Nội.
        let c = |a: &str, b: &str| {
            let p = Prepared::new(&[record("Lê", "", "Hà", "1990", a), record("Lê", "", "Hà", "1990", b)]);
            compare_communes(&p.records[0], &p.records[1])
        };
        assert_eq!(c("2025:00004", "2025:00004"), Some(CommuneLevel::Same));
        assert_eq!(c("legacy:00004", "2025:00004"), Some(CommuneLevel::Equivalent));
        let other = reference::conversions_from("00001")[0].new_commune_code.clone();
        let same_province = if other == "00004" { "2025:00008".to_string() } else { format!("2025:{other}") };
        assert_eq!(c(&same_province, "2025:00004"), Some(CommuneLevel::SameProvince));
        let hcmc = reference::communes(Scheme::Y2025).iter().find(|x| x.province_code == "79").unwrap();
        assert_eq!(c(&format!("2025:{}", hcmc.code), "legacy:00004"), Some(CommuneLevel::Different));
        let p = Prepared::new(&[record("Lê", "", "Hà", "1990", "legacy:00004")]);
        assert_eq!(p.strings.get(p.records[0].province), "01");
    }

    #[test]
    fn link_finds_a_duplicate_and_explains_it() {
        let mut records = Vec::new();
        let given = ["An", "Bình", "Chi", "Dũng", "Em", "Phúc", "Giao", "Hạnh", "Khoa", "Lâm", "Mai", "Nam"];
        for (i, g) in given.iter().enumerate() {
            for year in 1950..1990 {
                let date = format!("{year}-{:02}-{:02}", i + 1, (year % 28) + 1);
                records.push(record("Nguyễn", "Văn", g, &date, "2025:00004"));
            }
        }
        // Bình, born 1960-02-01, recorded again without accents or middle name, day and month
        // swapped, under the legacy code of the same commune.
        let original = 40 + 10;
        assert_eq!(records[original].birth_date, Some(PartialDate::parse("1960-02-01").unwrap()));
        records.push(record("Nguyen", "", "Binh", "1960-01-02", "legacy:00004"));
        let out = link(&records, &LinkConfig::default());
        // Prepared a part at a time, as an import does while reading (the parts' strings arrive in
        // another order, the address words are weighed over the whole run): the same linkage.
        let mut parts = FeatureBuilder::new();
        for part in records.chunks(100) {
            parts.extend(part);
        }
        let in_parts = link_prepared(&parts.finish().unwrap(), &LinkConfig::default());
        assert_eq!((in_parts.candidates, &in_parts.clusters), (out.candidates, &out.clusters), "the same linkage");
        assert_eq!(
            in_parts.pairs.iter().map(|p| (p.a, p.b, p.weight)).collect::<Vec<_>>(),
            out.pairs.iter().map(|p| (p.a, p.b, p.weight)).collect::<Vec<_>>()
        );
        let pair = out.pairs.iter().find(|p| p.a == original && p.b == records.len() - 1);
        let pair = pair.expect("the duplicate is a candidate");
        assert_ne!(pair.band, Band::Distinct, "{pair:?}");
        let e = out.model.explain(&pair.comparison, &pair.adjustments, &Thresholds::default());
        assert_eq!(e.fields[0].level, Some("exact"));
        assert_eq!(e.fields[1].level, Some("one_missing"));
        assert_eq!(e.fields[2].level, Some("exact"));
        assert_eq!(e.fields[3].level, Some("day_month_swapped"));
        assert_eq!(e.fields[5].level, Some("equivalent"));
    }

    #[test]
    fn missing_fields_weigh_nothing() {
        let full = record("Trần", "Văn", "Hùng", "1975-06-20", "2025:00004");
        let mut bare = full.clone();
        bare.birth_date = None;
        bare.sex = None;
        bare.commune_key = None;
        bare.middle.clear();
        let c = Prepared::new(&[full.clone(), bare]).compare(0, 1);
        assert_eq!(c.level(Field::Family), Some(NameLevel::Exact as u8));
        assert_eq!(c.level(Field::Middle), Some(MiddleLevel::OneMissing as u8));
        for f in [Field::BirthDate, Field::Sex, Field::Commune, Field::Address, Field::LegacyId, Field::Phone] {
            assert_eq!(c.level(f), None, "{f:?}");
        }
        let model = Model::starting();
        let e = model.explain(&c, &[0.0; Field::COUNT], &Thresholds::default());
        let missing: f64 = e.fields.iter().filter(|f| f.level.is_none()).map(|f| f.weight).sum();
        assert_eq!(missing, 0.0);
        // A missing date costs nothing, a different one costs.
        let mut other = full.clone();
        other.birth_date = Some(PartialDate::parse("1942-01-01").unwrap());
        let differs = Prepared::new(&[full, other]).compare(0, 1);
        assert_eq!(differs.level(Field::BirthDate), Some(DateLevel::Different as u8));
        assert!(model.level_weight(Field::BirthDate, DateLevel::Different as u8) < 0.0);
    }

    /// Households of siblings (one family name, one commune, one address, the same parents; some
    /// twins born the same day), a few of them recorded twice with intake errors: every duplicate
    /// is linked to its original and no two siblings are linked.
    #[test]
    fn siblings_stay_apart_and_their_duplicates_are_linked() {
        let families = ["Nguyễn", "Nguyễn", "Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Vũ", "Đặng", "Bùi"];
        let given = ["An", "Anh", "Bình", "Chi", "Dũng", "Giang", "Hà", "Hải", "Hoa", "Lan", "Linh", "Long", "Minh"];
        let mut records = Vec::new();
        let mut person = Vec::new();
        for h in 0..400usize {
            let family = families[h % families.len()];
            let commune = format!("2025:{}", ["00004", "00008", "00025"][h % 3]);
            let address = format!("Số {}, Tổ dân phố {}", h / 3 + 1, h % 7 + 1);
            for k in 0..3usize {
                let g = given[(h * 5 + k * 4) % given.len()];
                // The third child of every fourth household is the second's twin.
                let year = if k == 2 && h % 4 == 0 { 1990 + h % 20 + 1 } else { 1990 + h % 20 + k };
                let date = format!("{year}-{:02}-{:02}", (h + 1) % 12 + 1, (h * 7) % 27 + 1);
                let mut r = record(family, "Văn", g, &date, &commune);
                r.address = Some(address.clone());
                r.father = Some(format!("{family} Văn Cha{h}"));
                r.mother = Some(format!("Lê Thị Mẹ{h}"));
                records.push(r);
                person.push(h * 3 + k);
            }
        }
        let originals = records.len();
        for i in (0..originals).step_by(7) {
            let mut d = records[i].clone();
            match i % 3 {
                0 => d.middle.clear(),
                1 => {
                    d.family = text::fold(&d.family);
                    d.given = text::fold(&d.given);
                }
                _ => {
                    let full = d.birth_date.and_then(|x| x.full()).unwrap();
                    d.birth_date = Some(PartialDate::Year(full.year()));
                }
            }
            d.father = None;
            records.push(d);
            person.push(person[i]);
        }
        let out = link(&records, &LinkConfig::default());
        // Pairs are scored from per-record tables and per-pattern weights: the same adjustments
        // and weights as computed pair by pair (the household rule and exact names both occur here).
        let prepared = Prepared::new(&records);
        let tf = TermFrequencies::new(&prepared.records);
        let mut household = 0;
        for pair in &out.pairs {
            let adjustments = tf.adjustments(&out.model, pair.a, &pair.comparison);
            assert_eq!(pair.adjustments, adjustments, "{pair:?}");
            assert_eq!(pair.weight, out.model.match_weight_adjusted(&pair.comparison, &adjustments));
            household += usize::from(adjustments[Field::Address.index()] < 0.0);
        }
        assert!(household > 0 && out.pairs.iter().any(|p| p.adjustments[Field::Given.index()] != 0.0));
        let mut cluster_of: Vec<usize> = (0..records.len()).collect();
        for c in &out.clusters {
            for &i in c {
                cluster_of[i] = c[0];
            }
            let people: std::collections::HashSet<usize> = c.iter().map(|&i| person[i]).collect();
            assert_eq!(people.len(), 1, "siblings linked: {:?}", c.iter().map(|&i| &records[i]).collect::<Vec<_>>());
        }
        for d in originals..records.len() {
            let original = (0..originals).find(|&i| person[i] == person[d]).unwrap();
            if matches!(records[d].birth_date, Some(PartialDate::Year(_))) {
                // A year-only date could be a sibling's: linked, or left to an officer.
                let pair = out.pairs.iter().find(|p| p.a == original && p.b == d).expect("a candidate");
                assert_ne!(pair.band, Band::Distinct, "{pair:?}");
            } else {
                assert_eq!(cluster_of[d], cluster_of[original], "duplicate {:?} not linked", records[d]);
            }
        }
    }
}
