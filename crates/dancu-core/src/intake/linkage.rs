//! Record linkage: finding the records of one person within an import batch and against the
//! registry.
//!
//! The pipeline ([`link`]): each [`LinkRecord`] is prepared once ([`LinkFeatures`]: folded and
//! phonetic names, the 2025 communes its home commune maps to, normalized numbers);
//! [`blocking`](super::blocking) proposes candidate pairs; each pair gets a [`Comparison`] (one
//! level per [`Field`]); [`em`](super::em) estimates a Fellegi–Sunter model from those
//! comparisons and scores each pair into a [`Band`]; [`cluster`](super::cluster) groups the
//! `Link` pairs into people, refusing unions that would chain unrelated records.

use crate::date::PartialDate;
use crate::id::Sex;
use crate::person::{Address, Person, PersonInput, Relation};
use crate::reference::{self, Scheme};
use crate::text;

use super::blocking::{self, BlockingConfig, BlockingStats};
use super::cluster::{self, Refusal};
use super::em::{Band, EmConfig, Model, Thresholds};
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
}

impl LinkRecord {
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
/// the 2025 communes its home commune corresponds to.
#[derive(Debug, Clone)]
pub struct LinkFeatures {
    pub(crate) origin: Origin,
    pub(crate) family_f: String,
    pub(crate) given_f: String,
    pub(crate) full_f: String,
    pub(crate) family_k: String,
    pub(crate) middle_k: String,
    pub(crate) given_k: String,
    pub(crate) full_k: String,
    /// Phonetic syllable keys of the whole name, sorted (order-free comparison).
    pub(crate) sorted_k: Vec<String>,
    pub(crate) birth_date: Option<PartialDate>,
    pub(crate) sex: Option<Sex>,
    pub(crate) commune: Option<(Scheme, String)>,
    /// 2025 commune codes the home commune is (2025) or went into (legacy, through the conversion table).
    pub(crate) communes_2025: Vec<String>,
    pub(crate) province: Option<String>,
    pub(crate) legacy_id: Option<String>,
    pub(crate) phone: Option<String>,
    pub(crate) father: Option<(String, String)>,
    pub(crate) mother: Option<(String, String)>,
}

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
    pub fn new(r: &LinkRecord) -> Self {
        let family_f = text::fold(&r.family);
        let middle_f = text::fold(&r.middle);
        let given_f = text::fold(&r.given);
        let full_f = [family_f.as_str(), middle_f.as_str(), given_f.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let full_k = phonetic::name_key(&full_f);
        let mut sorted_k: Vec<String> = full_k.split(' ').filter(|s| !s.is_empty()).map(str::to_string).collect();
        sorted_k.sort_unstable();
        let commune = r.commune_key.as_deref().and_then(|k| {
            let (scheme, code) = k.split_once(':')?;
            Some((Scheme::from_code(scheme)?, code.to_string()))
        });
        let communes_2025 = match &commune {
            Some((Scheme::Y2025, code)) => vec![code.clone()],
            Some((Scheme::Legacy, code)) => {
                let mut v: Vec<String> =
                    reference::conversions_from(code).iter().map(|c| c.new_commune_code.clone()).collect();
                v.sort_unstable();
                v.dedup();
                v
            }
            None => Vec::new(),
        };
        let province = r.province_2025.clone().or_else(|| {
            communes_2025.first().and_then(|c| reference::commune(Scheme::Y2025, c)).map(|c| c.province_code.clone())
        });
        LinkFeatures {
            origin: r.origin,
            family_k: phonetic::name_key(&family_f),
            middle_k: phonetic::name_key(&middle_f),
            given_k: phonetic::name_key(&given_f),
            family_f,
            given_f,
            full_f,
            full_k,
            sorted_k,
            birth_date: r.birth_date,
            sex: r.sex,
            commune,
            communes_2025,
            province,
            legacy_id: r.legacy_id.as_deref().map(digits).filter(|d| !d.is_empty()),
            phone: r.phone.as_deref().and_then(normalize_phone),
            father: person_name(&r.father),
            mother: person_name(&r.mother),
        }
    }

    pub fn origin(&self) -> Origin {
        self.origin
    }
}

/// Jaro–Winkler similarity in [0, 1] (prefix scale 0.1, prefix up to 4 characters).
pub fn jaro_winkler(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    let range = (a.len().max(b.len()) / 2).saturating_sub(1);
    let mut a_hit = vec![false; a.len()];
    let mut b_hit = vec![false; b.len()];
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
    let prefix = a.iter().zip(&b).take(4).take_while(|(x, y)| x == y).count();
    jaro + prefix as f64 * 0.1 * (1.0 - jaro)
}

/// Names at or above this Jaro–Winkler similarity (folded) count as similar.
pub const NAME_SIMILARITY: f64 = 0.92;

/// A compared field. Each has a few levels, best agreement first; a field missing on either side
/// has no level and weighs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Name,
    BirthDate,
    Sex,
    Commune,
    LegacyId,
    Phone,
    Parents,
}

impl Field {
    pub const COUNT: usize = 7;
    pub const ALL: [Field; Field::COUNT] =
        [Field::Name, Field::BirthDate, Field::Sex, Field::Commune, Field::LegacyId, Field::Phone, Field::Parents];

    pub fn code(self) -> &'static str {
        match self {
            Field::Name => "name",
            Field::BirthDate => "birth_date",
            Field::Sex => "sex",
            Field::Commune => "commune",
            Field::LegacyId => "legacy_id",
            Field::Phone => "phone",
            Field::Parents => "parents",
        }
    }

    /// Level codes, best agreement first (index = level number).
    pub fn levels(self) -> &'static [&'static str] {
        match self {
            Field::Name => &["exact", "phonetic", "similar", "middle_or_order", "different"],
            Field::BirthDate => {
                &["exact", "day_month_swapped", "one_digit", "same_month", "same_year", "year_apart", "different"]
            }
            Field::Sex => &["same", "different"],
            Field::Commune => &["same", "equivalent", "same_province", "different"],
            Field::LegacyId | Field::Phone => &["equal", "one_digit", "different"],
            Field::Parents => &["agree", "partly", "different"],
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// Name comparison levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameLevel {
    /// Equal after accent folding.
    Exact,
    /// Equal phonetic keys (regional or variant spelling).
    Phonetic,
    /// Jaro–Winkler ≥ [`NAME_SIMILARITY`] on the folded full names (typos).
    Similar,
    /// Family and given names agree but the middle name is missing, added or different, or the
    /// same syllables stand in another order.
    MiddleOrOrder,
    Different,
}

/// Birth date comparison levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DateLevel {
    /// The same full date.
    Exact,
    /// Day and month swapped (05/03 vs 03/05).
    DayMonthSwapped,
    /// Full dates whose 8 digits differ in one place or by two adjacent digits swapped.
    OneDigit,
    /// Same month and year; days differ or one side lacks the day.
    SameMonth,
    /// Same year; at least one side lacks the month (year-only records).
    SameYear,
    /// Years one apart, day and month compatible where known.
    YearApart,
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

fn close(key_a: &str, key_b: &str, folded_a: &str, folded_b: &str) -> bool {
    key_a == key_b || jaro_winkler(folded_a, folded_b) >= NAME_SIMILARITY
}

pub fn compare_names(a: &LinkFeatures, b: &LinkFeatures) -> Option<NameLevel> {
    if a.full_f.is_empty() || b.full_f.is_empty() {
        return None;
    }
    Some(if a.full_f == b.full_f {
        NameLevel::Exact
    } else if a.full_k == b.full_k {
        NameLevel::Phonetic
    } else if jaro_winkler(&a.full_f, &b.full_f) >= NAME_SIMILARITY {
        NameLevel::Similar
    } else if (close(&a.family_k, &b.family_k, &a.family_f, &b.family_f)
        && close(&a.given_k, &b.given_k, &a.given_f, &b.given_f))
        || a.sorted_k == b.sorted_k
    {
        NameLevel::MiddleOrOrder
    } else {
        NameLevel::Different
    })
}

fn ymd_digits(d: time::Date) -> [u8; 8] {
    let s = format!("{:04}{:02}{:02}", d.year(), d.month() as u8, d.day());
    let mut out = [0u8; 8];
    out.copy_from_slice(&s.as_bytes()[..8]);
    out
}

/// Same length and one position different, or two adjacent positions swapped.
fn one_digit_apart(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff: Vec<usize> = (0..a.len()).filter(|&i| a[i] != b[i]).collect();
    match diff.as_slice() {
        [_] => true,
        [i, j] => *j == i + 1 && a[*i] == b[*j] && a[*j] == b[*i],
        _ => false,
    }
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
        if one_digit_apart(&ymd_digits(x), &ymd_digits(y)) {
            return DateLevel::OneDigit;
        }
    }
    let months_agree = match (a.month(), b.month()) {
        (Some(x), Some(y)) => Some(x == y),
        _ => None,
    };
    let days_agree = match (a.full(), b.full()) {
        (Some(x), Some(y)) => x.day() == y.day() && x.month() == y.month(),
        _ => true,
    };
    match ((a.year() - b.year()).abs(), months_agree) {
        (0, Some(true)) => DateLevel::SameMonth,
        (0, None) => DateLevel::SameYear,
        (1, Some(true)) | (1, None) if days_agree => DateLevel::YearApart,
        _ => DateLevel::Different,
    }
}

pub fn compare_communes(a: &LinkFeatures, b: &LinkFeatures) -> Option<CommuneLevel> {
    let (ca, cb) = (a.commune.as_ref()?, b.commune.as_ref()?);
    Some(if ca == cb {
        CommuneLevel::Same
    } else if a.communes_2025.iter().any(|c| b.communes_2025.contains(c)) {
        CommuneLevel::Equivalent
    } else if a.province.is_some() && a.province == b.province {
        CommuneLevel::SameProvince
    } else {
        CommuneLevel::Different
    })
}

pub fn compare_numbers(a: &str, b: &str) -> NumberLevel {
    if a == b {
        NumberLevel::Equal
    } else if one_digit_apart(a.as_bytes(), b.as_bytes()) {
        NumberLevel::OneDigit
    } else {
        NumberLevel::Different
    }
}

pub fn compare_parents(a: &LinkFeatures, b: &LinkFeatures) -> Option<ParentsLevel> {
    let mut agree = 0;
    let mut differ = 0;
    for (x, y) in [(&a.father, &b.father), (&a.mother, &b.mother)] {
        if let (Some((kx, fx)), Some((ky, fy))) = (x, y) {
            if close(kx, ky, fx, fy) {
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
pub fn compare(a: &LinkFeatures, b: &LinkFeatures) -> Comparison {
    let both = |x: &Option<String>, y: &Option<String>| match (x, y) {
        (Some(x), Some(y)) => Some(compare_numbers(x, y) as u8),
        _ => None,
    };
    let mut c = [None; Field::COUNT];
    c[Field::Name.index()] = compare_names(a, b).map(|l| l as u8);
    c[Field::BirthDate.index()] = match (a.birth_date, b.birth_date) {
        (Some(x), Some(y)) => Some(compare_dates(x, y) as u8),
        _ => None,
    };
    c[Field::Sex.index()] = match (a.sex, b.sex) {
        (Some(x), Some(y)) => Some(u8::from(x != y)),
        _ => None,
    };
    c[Field::Commune.index()] = compare_communes(a, b).map(|l| l as u8);
    c[Field::LegacyId.index()] = both(&a.legacy_id, &b.legacy_id);
    c[Field::Phone.index()] = both(&a.phone, &b.phone);
    c[Field::Parents.index()] = compare_parents(a, b).map(|l| l as u8);
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
    /// Match weight in bits (log2 of the likelihood ratio, with the prior odds).
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
    /// Every candidate pair, in candidate order (by `a`, then `b`).
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

/// Runs blocking, model estimation, scoring and clustering over `records`.
pub fn link(records: &[LinkRecord], config: &LinkConfig) -> LinkOutcome {
    let features: Vec<LinkFeatures> = par::map(records, LinkFeatures::new);
    let candidates = blocking::candidates(&features, &blocking::default_rules(), &config.blocking);
    let compare_all = |pairs: &[(u32, u32)]| -> Vec<Comparison> {
        par::map(pairs, |&(a, b)| compare(&features[a as usize], &features[b as usize]))
    };
    let comparisons: Vec<Comparison> = compare_all(&candidates.pairs);
    let background: Vec<Comparison> = background_pairs(records.len(), config.em.background_pairs)
        .map(|(a, b)| compare(&features[a], &features[b]))
        .collect();
    let model = if background.is_empty() {
        Model::estimate(&comparisons, &background, &config.em)
    } else {
        let rules = blocking::default_rules();
        let sessions: Vec<(Vec<Comparison>, Vec<Field>)> = blocking::TRAINING
            .iter()
            .filter_map(|(name, ignored)| {
                let rule = rules.iter().find(|r| r.name == *name)?;
                let pairs = blocking::candidates(&features, std::slice::from_ref(rule), &config.blocking).pairs;
                let compared = compare_all(&pairs);
                Some((compared, ignored.to_vec()))
            })
            .collect();
        Model::estimate_in_sessions(&sessions, &comparisons, &background, &config.em)
    };
    let mut pairs: Vec<ScoredPair> = candidates
        .pairs
        .iter()
        .zip(&comparisons)
        .map(|(&(a, b), c)| {
            let weight = model.match_weight(c);
            let probability = Model::probability_of(weight);
            ScoredPair {
                a: a as usize,
                b: b as usize,
                comparison: *c,
                weight,
                probability,
                band: config.thresholds.band(weight),
                refused: None,
            }
        })
        .collect();
    let link_index: Vec<usize> =
        pairs.iter().enumerate().filter(|(_, p)| p.band == Band::Link).map(|(i, _)| i).collect();
    let links: Vec<(usize, usize, f64)> =
        link_index.iter().map(|&i| (pairs[i].a, pairs[i].b, pairs[i].weight)).collect();
    let clustering = cluster::cluster(
        records.len(),
        &links,
        config.max_cluster.unwrap_or(LinkConfig::DEFAULT_MAX_CLUSTER),
        |a, b| config.thresholds.band(model.match_weight(&compare(&features[a], &features[b]))) == Band::Distinct,
    );
    for (link, reason) in clustering.refused {
        let p = &mut pairs[link_index[link]];
        p.band = Band::Review;
        p.refused = Some(reason);
    }
    LinkOutcome { blocking: candidates.stats, model, pairs, clusters: clustering.clusters }
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
            province_2025: None,
            legacy_id: None,
            father: None,
            mother: None,
            phone: None,
        }
    }

    fn names(a: (&str, &str, &str), b: (&str, &str, &str)) -> Option<NameLevel> {
        let fa = LinkFeatures::new(&record(a.0, a.1, a.2, "1990", "2025:00004"));
        let fb = LinkFeatures::new(&record(b.0, b.1, b.2, "1990", "2025:00004"));
        compare_names(&fa, &fb)
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
        assert_eq!(names(("Nguyễn", "Thị", "Hoà"), ("NGUYEN", "THI", "HÒA")), Some(Exact));
        assert_eq!(names(("Trần", "Xuân", "Giang"), ("Chần", "Suân", "Dang")), Some(Phonetic));
        assert_eq!(names(("Nguyễn", "Văn", "Thắng"), ("Nguyễn", "Văn", "Thăngg")), Some(Similar));
        assert_eq!(names(("Lê", "Thị Thu", "Hà"), ("Lê", "", "Hà")), Some(MiddleOrOrder));
        assert_eq!(names(("Lê", "Thu", "Hà"), ("Hà", "Thu", "Lê")), Some(MiddleOrOrder));
        assert_eq!(names(("Lê", "Văn", "Hùng"), ("Phạm", "Thị", "Lan")), Some(Different));
        assert_eq!(names(("", "", ""), ("Phạm", "Thị", "Lan")), None);
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
        assert_eq!(d("1990-04-05", "1990-11-21"), Different);
        assert_eq!(d("1990", "1993"), Different);
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

    #[test]
    fn legacy_and_2025_communes_are_equivalent() {
        // Legacy Trúc Bạch (00004) went whole into 2025 Ba Đình (00004); legacy 00001 is elsewhere in Hà Nội.
        let c = |key: &str| LinkFeatures::new(&record("Lê", "", "Hà", "1990", key));
        assert_eq!(compare_communes(&c("2025:00004"), &c("2025:00004")), Some(CommuneLevel::Same));
        assert_eq!(compare_communes(&c("legacy:00004"), &c("2025:00004")), Some(CommuneLevel::Equivalent));
        let other = reference::conversions_from("00001")[0].new_commune_code.clone();
        let same_province = if other == "00004" { "2025:00008".to_string() } else { format!("2025:{other}") };
        assert_eq!(compare_communes(&c(&same_province), &c("2025:00004")), Some(CommuneLevel::SameProvince));
        let hcmc = reference::communes(Scheme::Y2025).iter().find(|x| x.province_code == "79").unwrap();
        assert_eq!(
            compare_communes(&c(&format!("2025:{}", hcmc.code)), &c("legacy:00004")),
            Some(CommuneLevel::Different)
        );
        assert_eq!(c("legacy:00004").province.as_deref(), Some("01"));
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
        let pair = out.pairs.iter().find(|p| p.a == original && p.b == records.len() - 1);
        let pair = pair.expect("the duplicate is a candidate");
        assert_ne!(pair.band, Band::Distinct, "{pair:?}");
        let e = out.model.explain(&pair.comparison, &Thresholds::default());
        assert_eq!(e.fields[0].level, Some("middle_or_order"));
        assert_eq!(e.fields[3].level, Some("equivalent"));
    }
}
