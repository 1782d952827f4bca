//! Synthetic population generator: deterministic for a seed, streaming (one household in
//! memory at a time), realistic for Việt Nam — surname frequencies, middle names by sex,
//! an age pyramid, ethnicity and religion shares, households with heads and relationships,
//! residences over real communes, some year-only birth dates and some legacy CMND numbers.
//!
//! It is the data source of the demo and of every benchmark. Pure: no I/O (the caller writes).

pub mod duplicates;

use dancu_core::date::PartialDate;
use dancu_core::id::{LegacyIdNumber, Sex};
use dancu_core::person::{
    Address, HeadRelationship, HouseholdLink, MaritalStatus, Name, PersonInput, Place, Relation, Relative,
};
use dancu_core::reference::{self, Commune, Scheme};
use std::sync::LazyLock;
use time::{Date, Month};

/// xoshiro256** seeded through splitmix64: small, fast, and stable across versions
/// (a generator from a crate could change its stream between releases).
#[derive(Clone)]
pub struct Rng([u64; 4]);

impl Rng {
    pub fn new(seed: u64) -> Self {
        let mut x = seed;
        let mut next = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng([next(), next(), next(), next()])
    }

    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.0;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in 0..n (n > 0), by Lemire's multiply-shift (negligible bias for small n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// True with probability p.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    pub fn range(&mut self, lo: i64, hi_inclusive: i64) -> i64 {
        lo + self.below((hi_inclusive - lo + 1) as u64) as i64
    }
}

/// A weighted table sampled by binary search over cumulative weights.
pub struct Weighted<T> {
    items: Vec<T>,
    cumulative: Vec<u64>,
}

impl<T> Weighted<T> {
    pub fn new(pairs: impl IntoIterator<Item = (T, u64)>) -> Self {
        let mut items = Vec::new();
        let mut cumulative = Vec::new();
        let mut total = 0;
        for (t, w) in pairs {
            if w == 0 {
                continue;
            }
            total += w;
            items.push(t);
            cumulative.push(total);
        }
        assert!(total > 0, "a weighted table needs a positive weight");
        Weighted { items, cumulative }
    }

    pub fn pick(&self, rng: &mut Rng) -> &T {
        let total = *self.cumulative.last().expect("non-empty");
        let x = rng.below(total);
        let i = self.cumulative.partition_point(|&c| c <= x);
        &self.items[i]
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

fn csv_rows(data: &'static str) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(data.as_bytes()).into_records().map(|r| r.expect("embedded synth CSV")).collect()
}

struct Names {
    surnames: Weighted<String>,
    middle_m: Weighted<String>,
    middle_f: Weighted<String>,
    given_m: Weighted<String>,
    given_f: Weighted<String>,
}

static NAMES: LazyLock<Names> = LazyLock::new(|| {
    let surnames = Weighted::new(
        csv_rows(include_str!("../../../data/synth-surnames.csv"))
            .into_iter()
            .map(|r| (r[0].to_string(), r[1].parse::<u64>().expect("weight"))),
    );
    let rows = csv_rows(include_str!("../../../data/synth-names.csv"));
    let table = |kind: &str, sex: &str| {
        Weighted::new(
            rows.iter()
                .filter(|r| &r[0] == kind && (&r[1] == sex || &r[1] == "U"))
                .map(|r| (r[2].to_string(), r[3].parse::<u64>().expect("weight"))),
        )
    };
    Names {
        surnames,
        middle_m: table("middle", "M"),
        middle_f: table("middle", "F"),
        given_m: table("given", "M"),
        given_f: table("given", "F"),
    }
});

/// Việt Nam's population by 5-year age band (per mille, around 2024), 0-4 … 80+.
const AGE_PYRAMID: [(i64, u64); 17] = [
    (0, 72),
    (5, 80),
    (10, 76),
    (15, 69),
    (20, 69),
    (25, 75),
    (30, 81),
    (35, 80),
    (40, 74),
    (45, 68),
    (50, 61),
    (55, 55),
    (60, 47),
    (65, 36),
    (70, 24),
    (75, 14),
    (80, 19),
];

/// Ethnicity shares (per ten thousand, 2019 census) for the country as a whole.
const ETHNICITY: [(&str, u64); 13] = [
    ("01", 8532), // Kinh
    ("02", 192),  // Tày
    ("03", 187),  // Thái
    ("06", 153),  // Mường
    ("08", 145),  // Hmông
    ("05", 137),  // Khơ-me
    ("07", 112),  // Nùng
    ("09", 93),   // Dao
    ("04", 78),   // Hoa
    ("10", 53),   // Gia-rai
    ("12", 41),   // Ê-đê
    ("13", 30),   // Ba-na
    ("17", 18),   // Chăm
];

/// Religion shares (per ten thousand; believers registered with a recognised religion).
const RELIGION: [(&str, u64); 8] = [
    ("00", 8632), // none
    ("02", 611),  // Catholicism
    ("01", 486),  // Buddhism
    ("03", 100),  // Protestantism
    ("05", 100),  // Hòa Hảo
    ("04", 58),   // Cao Đài
    ("06", 8),    // Islam
    ("07", 5),    // Baha'i
];

/// What to generate.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// 2025 province codes to populate; empty = all 34.
    pub provinces: Vec<String>,
    /// "Today": ages are counted to this date.
    pub today: Date,
    /// Share of households (0-1) whose address is still on the legacy commune list (records
    /// made before the 2025 reform, not yet migrated): one of the old communes that went into the
    /// chosen 2025 commune, wholly or in part. 0 draws nothing: the stream is unchanged.
    pub legacy_share: f64,
}

/// One generated person with their household.
#[derive(Debug, Clone)]
pub struct SynthPerson {
    /// Household number, from 1, in generation order.
    pub household: u64,
    pub person: PersonInput,
}

struct Member {
    sex: Sex,
    age: i64,
    rel: HeadRelationship,
    surname: Option<String>,
}

/// The generator: an endless iterator of people, household by household.
pub struct Generator {
    rng: Rng,
    today: Date,
    communes: Weighted<&'static Commune>,
    ethnicity: Weighted<&'static str>,
    religion: Weighted<&'static str>,
    ages: Weighted<i64>,
    household: u64,
    pending: std::collections::VecDeque<PersonInput>,
    legacy_share: f64,
    /// 2025 commune code → the legacy communes that went into it (only when `legacy_share` > 0).
    legacy_of: std::collections::HashMap<&'static str, Vec<&'static str>>,
}

impl Generator {
    pub fn new(config: &Config) -> Result<Self, String> {
        for p in &config.provinces {
            if reference::province(Scheme::Y2025, p).is_none() {
                return Err(format!("province {p:?} is not a code of the 2025 list"));
            }
        }
        let communes = Weighted::new(
            reference::communes(Scheme::Y2025)
                .iter()
                .filter(|c| config.provinces.is_empty() || config.provinces.contains(&c.province_code))
                // wards (phường) are denser than rural communes
                .map(|c| (c, if c.kind.to_lowercase() == "phường" { 3 } else { 2 })),
        );
        Ok(Generator {
            rng: Rng::new(config.seed),
            today: config.today,
            communes,
            ethnicity: Weighted::new(ETHNICITY),
            religion: Weighted::new(RELIGION),
            ages: Weighted::new(AGE_PYRAMID),
            household: 0,
            pending: Default::default(),
            legacy_share: config.legacy_share,
            legacy_of: if config.legacy_share > 0.0 {
                let mut m: std::collections::HashMap<&'static str, Vec<&'static str>> = Default::default();
                // Only old communes the legacy list knows (the conversion table names a few it lacks).
                for c in reference::conversions()
                    .iter()
                    .filter(|c| reference::commune(Scheme::Legacy, &c.old_commune_code).is_some())
                {
                    m.entry(c.new_commune_code.as_str()).or_default().push(c.old_commune_code.as_str());
                }
                m
            } else {
                Default::default()
            },
        })
    }

    fn age_in(&mut self, lo: i64, hi: i64) -> i64 {
        // Sample the pyramid, rejecting outside [lo, hi] (bounded tries, then uniform).
        for _ in 0..32 {
            let band = *self.ages.pick(&mut self.rng);
            let age = band + self.rng.range(0, if band == 80 { 19 } else { 4 });
            if (lo..=hi).contains(&age) {
                return age;
            }
        }
        self.rng.range(lo, hi.max(lo))
    }

    fn birth_date(&mut self, age: i64) -> PartialDate {
        let year = self.today.year() - age as i32 - if self.rng.chance(0.5) { 1 } else { 0 };
        let year = year.min(self.today.year());
        // Older people are often recorded with the year only.
        if age >= 60 && self.rng.chance(0.08) {
            return PartialDate::Year(year);
        }
        if age >= 50 && self.rng.chance(0.02) {
            let m = Month::try_from(self.rng.range(1, 12) as u8).expect("month");
            return PartialDate::YearMonth(year, m);
        }
        loop {
            let m = Month::try_from(self.rng.range(1, 12) as u8).expect("month");
            let d = self.rng.range(1, 31) as u8;
            if let Ok(date) = Date::from_calendar_date(year, m, d)
                && date <= self.today
            {
                return PartialDate::Full(date);
            }
        }
    }

    fn name(&mut self, sex: Sex, surname: Option<&str>) -> Name {
        let names = &*NAMES;
        let surname = surname.map(str::to_string).unwrap_or_else(|| names.surnames.pick(&mut self.rng).clone());
        let (middle, given) = match sex {
            Sex::Male => (names.middle_m.pick(&mut self.rng).clone(), names.given_m.pick(&mut self.rng).clone()),
            Sex::Female => (names.middle_f.pick(&mut self.rng).clone(), names.given_f.pick(&mut self.rng).clone()),
        };
        Name { surname, middle, given }
    }

    fn household_members(&mut self) -> Vec<Member> {
        let mut m = Vec::new();
        let head_sex = if self.rng.chance(0.72) { Sex::Male } else { Sex::Female };
        let head_age = self.age_in(22, 90);
        m.push(Member { sex: head_sex, age: head_age, rel: HeadRelationship::Head, surname: None });
        let married = head_age >= 22 && self.rng.chance(if head_age > 75 { 0.5 } else { 0.82 });
        if married {
            let other = if head_sex == Sex::Male { Sex::Female } else { Sex::Male };
            let age = (head_age + self.rng.range(-6, 4)).clamp(18, 95);
            m.push(Member { sex: other, age, rel: HeadRelationship::Spouse, surname: None });
        }
        let max_child_age = head_age - 20;
        if max_child_age >= 0 {
            let children = [0, 1, 1, 2, 2, 2, 3, 3, 4][self.rng.below(9) as usize];
            for _ in 0..children {
                // The child's age follows the pyramid; a parent too young for it has no such child.
                let age = self.age_in(0, 45);
                if age > max_child_age {
                    continue;
                }
                let sex = if self.rng.chance(0.512) { Sex::Male } else { Sex::Female };
                m.push(Member { sex, age, rel: HeadRelationship::Child, surname: None });
            }
        }
        if head_age < 55 && self.rng.chance(0.18) {
            let age = (head_age + self.rng.range(22, 35)).min(100);
            let sex = if self.rng.chance(0.6) { Sex::Female } else { Sex::Male };
            m.push(Member { sex, age, rel: HeadRelationship::Parent, surname: None });
        }
        if head_age > 55 && self.rng.chance(0.2) {
            for _ in 0..self.rng.range(1, 2) {
                let age = self.age_in(0, (head_age - 40).min(20));
                let sex = if self.rng.chance(0.512) { Sex::Male } else { Sex::Female };
                m.push(Member { sex, age, rel: HeadRelationship::Grandchild, surname: None });
            }
        }
        m
    }

    fn next_household(&mut self) {
        self.household += 1;
        let commune = *self.communes.pick(&mut self.rng);
        let ethnicity = *self.ethnicity.pick(&mut self.rng);
        let religion = *self.religion.pick(&mut self.rng);
        let legacy_provinces = reference::legacy_provinces_of(&commune.province_code);
        let mut members = self.household_members();
        // Family names: children take the father's; the spouse keeps their own.
        let head_name = self.name(members[0].sex, None);
        let spouse_name = members.iter().position(|x| x.rel == HeadRelationship::Spouse).map(|i| {
            let sex = members[i].sex;
            self.name(sex, None)
        });
        let father_surname = if members[0].sex == Sex::Male {
            head_name.surname.clone()
        } else {
            spouse_name.as_ref().map(|n| n.surname.clone()).unwrap_or_else(|| head_name.surname.clone())
        };
        for mb in members.iter_mut() {
            if matches!(mb.rel, HeadRelationship::Child | HeadRelationship::Grandchild) {
                mb.surname = Some(father_surname.clone());
            }
        }
        let is_ward = commune.kind.to_lowercase() == "phường";
        let detail = if is_ward {
            format!("Số {}, Tổ dân phố {}", self.rng.range(1, 300), self.rng.range(1, 40))
        } else {
            format!("Thôn {}", self.rng.range(1, 25))
        };
        let file_number = format!("{}{:09}", commune.province_code, self.household);
        let mut address = Address { scheme: Scheme::Y2025, commune_code: commune.code.clone(), detail: Some(detail) };
        if self.legacy_share > 0.0
            && self.rng.chance(self.legacy_share)
            && let Some(olds) = self.legacy_of.get(commune.code.as_str())
        {
            address.scheme = Scheme::Legacy;
            address.commune_code = olds[self.rng.below(olds.len() as u64) as usize].to_string();
        }
        let head_full = head_name.full();
        let father_name =
            if members[0].sex == Sex::Male { Some(head_full.clone()) } else { spouse_name.as_ref().map(Name::full) };
        let mother_name =
            if members[0].sex == Sex::Female { Some(head_full.clone()) } else { spouse_name.as_ref().map(Name::full) };
        for (i, mb) in members.iter().enumerate() {
            let name = match mb.rel {
                HeadRelationship::Head => head_name.clone(),
                HeadRelationship::Spouse => spouse_name.clone().expect("spouse named"),
                _ => self.name(mb.sex, mb.surname.as_deref()),
            };
            let birth_date = self.birth_date(mb.age);
            let born_before_reform = birth_date.year() < 2025;
            // Birth registered in the home province (a legacy one for older people), sometimes elsewhere.
            let registration = if self.rng.chance(0.85) {
                if born_before_reform {
                    let p = legacy_provinces[self.rng.below(legacy_provinces.len() as u64) as usize];
                    Place {
                        country: "VNM".into(),
                        scheme: Some(Scheme::Legacy),
                        province_code: Some(p.into()),
                        commune_code: None,
                        detail: None,
                    }
                } else {
                    Place {
                        country: "VNM".into(),
                        scheme: Some(Scheme::Y2025),
                        province_code: Some(commune.province_code.clone()),
                        commune_code: None,
                        detail: None,
                    }
                }
            } else {
                let all = reference::provinces(Scheme::Legacy);
                let p = &all[self.rng.below(all.len() as u64) as usize];
                Place {
                    country: "VNM".into(),
                    scheme: Some(Scheme::Legacy),
                    province_code: Some(p.code.clone()),
                    commune_code: None,
                    detail: None,
                }
            };
            let mut relatives = Vec::new();
            if matches!(mb.rel, HeadRelationship::Child) {
                if let Some(f) = &father_name {
                    relatives.push(Relative {
                        relation: Relation::Father,
                        name: f.clone(),
                        personal_id: None,
                        legacy_id: None,
                        nationalities: vec!["VNM".into()],
                    });
                }
                if let Some(mo) = &mother_name {
                    relatives.push(Relative {
                        relation: Relation::Mother,
                        name: mo.clone(),
                        personal_id: None,
                        legacy_id: None,
                        nationalities: vec!["VNM".into()],
                    });
                }
            }
            if i < 2 && members.len() > 1 && members[1].rel == HeadRelationship::Spouse {
                let other =
                    if i == 0 { spouse_name.as_ref().map(Name::full).expect("spouse") } else { head_full.clone() };
                relatives.push(Relative {
                    relation: Relation::Spouse,
                    name: other,
                    personal_id: None,
                    legacy_id: None,
                    nationalities: vec!["VNM".into()],
                });
            }
            let marital_status = match mb.rel {
                HeadRelationship::Head | HeadRelationship::Spouse
                    if members.iter().any(|x| x.rel == HeadRelationship::Spouse) =>
                {
                    Some(MaritalStatus::Married)
                }
                _ if mb.age < 18 => None,
                HeadRelationship::Parent | HeadRelationship::Head if mb.age > 65 => Some(MaritalStatus::Widowed),
                _ if self.rng.chance(0.05) => Some(MaritalStatus::Divorced),
                _ => Some(MaritalStatus::Single),
            };
            // Old 9-digit CMND numbers for many adults who had one before 2021.
            let legacy_id = if mb.age >= 24 && self.rng.chance(0.35) {
                LegacyIdNumber::parse(&format!("{:09}", self.rng.below(1_000_000_000))).ok()
            } else {
                None
            };
            let phone = (mb.age >= 16 && self.rng.chance(0.75)).then(|| {
                const PREFIXES: [&str; 30] = [
                    "090", "091", "093", "094", "096", "097", "098", "032", "033", "034", "035", "036", "037", "038",
                    "039", "070", "076", "077", "078", "079", "081", "082", "083", "084", "085", "086", "088", "089",
                    "056", "058",
                ];
                let prefix = PREFIXES[self.rng.below(PREFIXES.len() as u64) as usize];
                format!("{prefix}{:07}", self.rng.below(10_000_000))
            });
            let person = PersonInput {
                name,
                other_names: Vec::new(),
                birth_date,
                sex: mb.sex,
                birth_place: None,
                birth_registration_place: registration,
                hometown: None,
                ethnicity: ethnicity.to_string(),
                religion: if mb.age < 10 && self.rng.chance(0.3) { "00".into() } else { religion.to_string() },
                nationalities: vec!["VNM".into()],
                blood_type: None,
                legacy_id,
                previous_documents: Vec::new(),
                relatives,
                permanent_residence: Some(address.clone()),
                temporary_residence: None,
                current_residence: None,
                temporary_absence: None,
                residence_file_number: Some(file_number.clone()),
                marital_status,
                household: Some(HouseholdLink {
                    relationship_to_head: mb.rel,
                    head_name: head_full.clone(),
                    head_personal_id: None,
                }),
                occupation: None,
                identifying_features: None,
                phone,
                email: None,
            };
            self.pending.push_back(person);
        }
    }
}

impl Iterator for Generator {
    type Item = SynthPerson;

    fn next(&mut self) -> Option<SynthPerson> {
        if self.pending.is_empty() {
            self.next_household();
        }
        self.pending.pop_front().map(|person| SynthPerson { household: self.household, person })
    }
}

/// Column names of the CSV the generator writes (one row per person).
pub const CSV_HEADER: &[&str] = &[
    "household",
    "relationship_to_head",
    "surname",
    "middle_name",
    "given_name",
    "sex",
    "birth_date",
    "birth_registration_scheme",
    "birth_registration_province",
    "ethnicity",
    "religion",
    "nationality",
    "legacy_id",
    "residence_scheme",
    "residence_commune",
    "residence_detail",
    "residence_file_number",
    "marital_status",
    "head_name",
    "father_name",
    "mother_name",
    "spouse_name",
    "phone",
];

fn code<T: serde::Serialize>(v: &T) -> String {
    // Enum codes through their serde names (snake_case), without quotes.
    let quoted = serde_json::to_string(v).unwrap_or_default();
    quoted.trim_matches('"').to_string()
}

impl SynthPerson {
    /// The CSV row, in [`CSV_HEADER`] order.
    pub fn csv_row(&self) -> Vec<String> {
        let p = &self.person;
        let rel =
            |r: Relation| p.relatives.iter().find(|x| x.relation == r).map(|x| x.name.clone()).unwrap_or_default();
        let res = p.permanent_residence.as_ref();
        vec![
            self.household.to_string(),
            p.household.as_ref().map(|h| code(&h.relationship_to_head)).unwrap_or_default(),
            p.name.surname.clone(),
            p.name.middle.clone(),
            p.name.given.clone(),
            p.sex.code().to_string(),
            p.birth_date.to_string(),
            p.birth_registration_place.scheme.map(|s| s.code().to_string()).unwrap_or_default(),
            p.birth_registration_place.province_code.clone().unwrap_or_default(),
            p.ethnicity.clone(),
            p.religion.clone(),
            p.nationalities.join(";"),
            p.legacy_id.as_ref().map(|l| l.to_string()).unwrap_or_default(),
            res.map(|a| a.scheme.code().to_string()).unwrap_or_default(),
            res.map(|a| a.commune_code.clone()).unwrap_or_default(),
            res.and_then(|a| a.detail.clone()).unwrap_or_default(),
            p.residence_file_number.clone().unwrap_or_default(),
            p.marital_status.as_ref().map(code).unwrap_or_default(),
            p.household.as_ref().map(|h| h.head_name.clone()).unwrap_or_default(),
            rel(Relation::Father),
            rel(Relation::Mother),
            rel(Relation::Spouse),
            p.phone.clone().unwrap_or_default(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn config(seed: u64) -> Config {
        Config { seed, provinces: vec![], today: date!(2026 - 11 - 29), legacy_share: 0.0 }
    }

    #[test]
    fn deterministic_for_a_seed() {
        let a: Vec<_> = Generator::new(&config(7)).unwrap().take(500).map(|p| p.csv_row()).collect();
        let b: Vec<_> = Generator::new(&config(7)).unwrap().take(500).map(|p| p.csv_row()).collect();
        let c: Vec<_> = Generator::new(&config(8)).unwrap().take(500).map(|p| p.csv_row()).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn every_generated_record_is_valid() {
        for p in Generator::new(&config(1)).unwrap().take(5000) {
            let v = p.person.clone().validate(date!(2026 - 11 - 29));
            assert!(v.is_ok(), "{:?}: {:?}", p.person, v.err());
            let person = dancu_core::Person::new_pending(p.person);
            assert!(person.id_prefix().is_some());
        }
    }

    #[test]
    fn shares_look_like_vietnam() {
        let n = 40_000;
        let people: Vec<_> = Generator::new(&config(2)).unwrap().take(n).collect();
        let share = |f: &dyn Fn(&SynthPerson) -> bool| people.iter().filter(|p| f(p)).count() as f64 / n as f64;
        let nguyen = share(&|p| p.person.name.surname == "Nguyễn");
        assert!((0.34..0.42).contains(&nguyen), "Nguyễn {nguyen}");
        let tran = share(&|p| p.person.name.surname == "Trần");
        assert!((0.08..0.14).contains(&tran), "Trần {tran}");
        let kinh = share(&|p| p.person.ethnicity == "01");
        assert!((0.80..0.90).contains(&kinh), "Kinh {kinh}");
        let none = share(&|p| p.person.religion == "00");
        assert!((0.80..0.92).contains(&none), "no religion {none}");
        let male = share(&|p| p.person.sex == Sex::Male);
        assert!((0.46..0.54).contains(&male), "male {male}");
        let children = share(&|p| p.person.birth_date.year() > 2026 - 15);
        assert!((0.17..0.30).contains(&children), "under 15 {children}");
        let old = share(&|p| p.person.birth_date.year() <= 2026 - 65);
        assert!((0.05..0.14).contains(&old), "65+ {old}");
        let year_only = share(&|p| matches!(p.person.birth_date, PartialDate::Year(_)));
        assert!(year_only > 0.002, "year-only {year_only}");
        let cmnd = share(&|p| p.person.legacy_id.is_some());
        assert!(cmnd > 0.1, "legacy CMND {cmnd}");
        let van = share(&|p| p.person.sex == Sex::Male && p.person.name.middle == "Văn");
        assert!(van > 0.1, "Văn {van}");
        let thi = share(&|p| p.person.sex == Sex::Female && p.person.name.middle == "Thị");
        assert!(thi > 0.1, "Thị {thi}");
        let given: std::collections::HashSet<_> = people.iter().map(|p| p.person.name.given.clone()).collect();
        assert!(given.len() > 200, "{} given names", given.len());
    }

    #[test]
    fn age_pyramid_follows_vietnam() {
        let people: Vec<_> = Generator::new(&config(5)).unwrap().take(40_000).collect();
        let mut bands = [0usize; 17];
        for p in &people {
            let age = (2026 - p.person.birth_date.year()).max(0) as usize;
            bands[(age / 5).min(16)] += 1;
        }
        for (i, b) in bands.iter().enumerate() {
            let got = *b as f64 / people.len() as f64 * 100.0;
            let want = AGE_PYRAMID[i].1 as f64 / 10.0;
            assert!((got - want).abs() < 2.5, "ages {}-{}: {got:.1}% (Việt Nam {want:.1}%)", i * 5, i * 5 + 4);
        }
    }

    #[test]
    fn households_have_one_head_and_consistent_names() {
        let people: Vec<_> = Generator::new(&config(3)).unwrap().take(3000).collect();
        let mut by_household: std::collections::BTreeMap<u64, Vec<&SynthPerson>> = Default::default();
        for p in &people {
            by_household.entry(p.household).or_default().push(p);
        }
        for (_, members) in by_household.iter().take(by_household.len() - 1) {
            let heads: Vec<_> = members
                .iter()
                .filter(|m| m.person.household.as_ref().unwrap().relationship_to_head == HeadRelationship::Head)
                .collect();
            assert_eq!(heads.len(), 1);
            let head = heads[0];
            for m in members {
                assert_eq!(m.person.household.as_ref().unwrap().head_name, head.person.name.full());
                assert_eq!(m.person.permanent_residence, head.person.permanent_residence);
                if m.person.household.as_ref().unwrap().relationship_to_head == HeadRelationship::Child {
                    assert!(m.person.birth_date.year() >= head.person.birth_date.year() + 18);
                }
            }
        }
    }

    #[test]
    fn restricted_to_provinces() {
        let cfg = Config { provinces: vec!["01".into(), "15".into()], ..config(4) };
        for p in Generator::new(&cfg).unwrap().take(2000) {
            let a = p.person.permanent_residence.unwrap();
            let prov = a.province_2025().unwrap();
            assert!(prov == "01" || prov == "15", "{prov}");
        }
        assert!(Generator::new(&Config { provinces: vec!["02".into()], ..config(4) }).is_err());
    }

    #[test]
    fn legacy_addresses_on_request() {
        let people: Vec<_> = Generator::new(&Config { legacy_share: 0.5, ..config(9) }).unwrap().take(2000).collect();
        let legacy =
            people.iter().filter(|p| p.person.permanent_residence.as_ref().unwrap().scheme == Scheme::Legacy).count();
        assert!((600..1400).contains(&legacy), "{legacy}");
        for p in &people {
            let a = p.person.permanent_residence.as_ref().unwrap();
            assert!(a.commune().is_some(), "{a:?}");
        }
    }
}
