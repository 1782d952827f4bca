//! Official reference data, embedded at compile time from the project's `data/` folder:
//! administrative units (2025 and legacy), the 2025 conversion table, ID province codes,
//! ethnic groups, religions and countries.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::LazyLock;

/// Which administrative-unit code list a code belongs to. Codes of the two lists overlap
/// (legacy commune 00004 is not 2025 commune 00004), so an address always names its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Scheme {
    /// Units in force since 1 July 2025 (province, commune).
    #[serde(rename = "2025")]
    Y2025,
    /// Units as of 4 January 2025 (province, district, commune), for records made before the reform.
    #[serde(rename = "legacy")]
    Legacy,
}

impl Scheme {
    pub fn code(self) -> &'static str {
        match self {
            Scheme::Y2025 => "2025",
            Scheme::Legacy => "legacy",
        }
    }
    pub fn from_code(s: &str) -> Option<Scheme> {
        match s {
            "2025" => Some(Scheme::Y2025),
            "legacy" => Some(Scheme::Legacy),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Province {
    pub code: String,
    pub name: String,
    pub scheme: Scheme,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct District {
    pub code: String,
    pub name: String,
    pub province_code: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Commune {
    pub code: String,
    pub name: String,
    /// xã, phường, đặc khu (2025); Xã, Phường, Thị trấn (legacy).
    pub kind: String,
    pub province_code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub district_code: Option<String>,
    pub scheme: Scheme,
}

/// How an old commune went into a new one on 1 July 2025.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MergeKind {
    /// The whole old commune became (part of) the new one: addresses move automatically.
    Whole,
    /// Only part of the old commune went into the new one: a person decides.
    Part,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Conversion {
    pub old_commune_code: String,
    /// The new commune's code in the 2025 list.
    pub new_commune_code: String,
    /// The code as printed in the conversion table (differs from `new_commune_code` in a few rows).
    pub listed_new_commune_code: String,
    pub new_province_code: String,
    /// The legacy province the old commune belonged to.
    pub old_province_code: String,
    pub kind: MergeKind,
    /// The official note, verbatim.
    pub note: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct IdProvince {
    /// The three-digit prefix of personal ID numbers.
    pub id_code: String,
    pub name: String,
    pub gso_code: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Ethnicity {
    pub code: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Religion {
    pub code: String,
    pub name: String,
    pub name_en: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Country {
    /// ISO 3166-1 alpha-3, or the ICAO 9303 codes XXA (stateless) and XXX (undetermined).
    pub code: String,
    pub name_vi: String,
    pub name_en: String,
}

pub const STATELESS: &str = "XXA";
pub const UNDETERMINED: &str = "XXX";
pub const VIETNAM: &str = "VNM";

fn rows(data: &'static str) -> impl Iterator<Item = csv::StringRecord> {
    csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(data.as_bytes())
        .into_records()
        .map(|r| r.expect("embedded reference CSV is well-formed"))
}

/// Name comparison key for administrative units: folded, dashes unified, spaces collapsed.
fn unit_name_key(name: &str) -> String {
    crate::text::fold(&name.replace(['–', '—'], "-")).replace(" - ", "-")
}

/// A field in its storage form (NFC, whitespace collapsed: the source has stray double spaces).
fn field(r: &csv::StringRecord, i: usize) -> String {
    crate::text::clean(r.get(i).unwrap_or_default())
}

struct Units {
    provinces_2025: Vec<Province>,
    provinces_legacy: Vec<Province>,
    districts: Vec<District>,
    communes_2025: Vec<Commune>,
    communes_legacy: Vec<Commune>,
    idx_2025: HashMap<String, usize>,
    idx_legacy: HashMap<String, usize>,
    conversions: Vec<Conversion>,
    conversions_by_old: HashMap<String, Vec<usize>>,
}

static UNITS: LazyLock<Units> = LazyLock::new(|| {
    let mut provinces_2025: Vec<Province> = Vec::new();
    let mut communes_2025 = Vec::new();
    for r in rows(include_str!("../../../data/admin-units-2025.csv")) {
        let pc = field(&r, 0);
        if !provinces_2025.iter().any(|p| p.code == pc) {
            provinces_2025.push(Province { code: pc.clone(), name: field(&r, 1), scheme: Scheme::Y2025 });
        }
        communes_2025.push(Commune {
            code: field(&r, 2),
            name: field(&r, 3),
            kind: field(&r, 4),
            province_code: pc,
            district_code: None,
            scheme: Scheme::Y2025,
        });
    }
    let mut provinces_legacy: Vec<Province> = Vec::new();
    let mut districts: Vec<District> = Vec::new();
    let mut communes_legacy = Vec::new();
    for r in rows(include_str!("../../../data/admin-units-legacy.csv")) {
        let pc = field(&r, 0);
        let dc = field(&r, 2);
        if !provinces_legacy.iter().rev().any(|p| p.code == pc) {
            provinces_legacy.push(Province { code: pc.clone(), name: field(&r, 1), scheme: Scheme::Legacy });
        }
        if !districts.iter().rev().any(|d| d.code == dc) {
            districts.push(District { code: dc.clone(), name: field(&r, 3), province_code: pc.clone() });
        }
        communes_legacy.push(Commune {
            code: field(&r, 4),
            name: field(&r, 5),
            kind: field(&r, 6),
            province_code: pc,
            district_code: Some(dc),
            scheme: Scheme::Legacy,
        });
    }
    provinces_2025.sort_by(|a, b| a.code.cmp(&b.code));
    provinces_legacy.sort_by(|a, b| a.code.cmp(&b.code));
    let idx_2025: HashMap<String, usize> = communes_2025.iter().enumerate().map(|(i, c)| (c.code.clone(), i)).collect();
    // The published conversion table names some new communes with a code that the 2025 list
    // gives to another commune (or to none); its names are the reliable part, so resolve by
    // (province, name) first and fall back to the listed code.
    let by_name: HashMap<(String, String), String> =
        communes_2025.iter().map(|c| ((c.province_code.clone(), unit_name_key(&c.name)), c.code.clone())).collect();
    let idx_legacy = communes_legacy.iter().enumerate().map(|(i, c)| (c.code.clone(), i)).collect();
    let mut conversions = Vec::new();
    let mut conversions_by_old: HashMap<String, Vec<usize>> = HashMap::new();
    for r in rows(include_str!("../../../data/admin-units-conversion-2025.csv")) {
        let note = crate::text::clean(&field(&r, 6));
        let folded = crate::text::fold(&note);
        let kind = if folded.contains("mot phan") || folded.contains("phan con lai") {
            MergeKind::Part
        } else {
            MergeKind::Whole
        };
        let listed = field(&r, 2);
        let new_commune_code =
            by_name.get(&(field(&r, 0), unit_name_key(&field(&r, 3)))).cloned().unwrap_or_else(|| listed.clone());
        let c = Conversion {
            old_commune_code: field(&r, 4),
            new_commune_code,
            listed_new_commune_code: listed,
            new_province_code: field(&r, 0),
            old_province_code: field(&r, 9),
            kind,
            note,
        };
        conversions_by_old.entry(c.old_commune_code.clone()).or_default().push(conversions.len());
        conversions.push(c);
    }
    Units {
        provinces_2025,
        provinces_legacy,
        districts,
        communes_2025,
        communes_legacy,
        idx_2025,
        idx_legacy,
        conversions,
        conversions_by_old,
    }
});

static ID_PROVINCES: LazyLock<Vec<IdProvince>> = LazyLock::new(|| {
    rows(include_str!("../../../data/id-province-codes.csv"))
        .map(|r| IdProvince { id_code: field(&r, 0), name: field(&r, 1), gso_code: field(&r, 2) })
        .collect()
});

static ETHNICITIES: LazyLock<Vec<Ethnicity>> = LazyLock::new(|| {
    rows(include_str!("../../../data/ethnic-groups.csv"))
        .map(|r| Ethnicity { code: field(&r, 0), name: field(&r, 1) })
        .collect()
});

static RELIGIONS: LazyLock<Vec<Religion>> = LazyLock::new(|| {
    rows(include_str!("../../../data/religions.csv"))
        .map(|r| Religion { code: field(&r, 0), name: field(&r, 1), name_en: field(&r, 2) })
        .collect()
});

static COUNTRIES: LazyLock<Vec<Country>> = LazyLock::new(|| {
    rows(include_str!("../../../data/countries.csv"))
        .map(|r| Country { code: field(&r, 0), name_vi: field(&r, 1), name_en: field(&r, 2) })
        .collect()
});

pub fn provinces(scheme: Scheme) -> &'static [Province] {
    match scheme {
        Scheme::Y2025 => &UNITS.provinces_2025,
        Scheme::Legacy => &UNITS.provinces_legacy,
    }
}

pub fn province(scheme: Scheme, code: &str) -> Option<&'static Province> {
    provinces(scheme).iter().find(|p| p.code == code)
}

pub fn districts() -> &'static [District] {
    &UNITS.districts
}

pub fn communes(scheme: Scheme) -> &'static [Commune] {
    match scheme {
        Scheme::Y2025 => &UNITS.communes_2025,
        Scheme::Legacy => &UNITS.communes_legacy,
    }
}

pub fn commune(scheme: Scheme, code: &str) -> Option<&'static Commune> {
    let (idx, list) = match scheme {
        Scheme::Y2025 => (&UNITS.idx_2025, &UNITS.communes_2025),
        Scheme::Legacy => (&UNITS.idx_legacy, &UNITS.communes_legacy),
    };
    idx.get(code).map(|&i| &list[i])
}

/// Where a legacy commune went on 1 July 2025 (several rows when it was split).
pub fn conversions_from(old_commune_code: &str) -> Vec<&'static Conversion> {
    UNITS
        .conversions_by_old
        .get(old_commune_code)
        .map(|v| v.iter().map(|&i| &UNITS.conversions[i]).collect())
        .unwrap_or_default()
}

static LEGACY_PROVINCES_OF: LazyLock<HashMap<String, Vec<&'static str>>> = LazyLock::new(|| {
    let mut map: HashMap<String, Vec<&'static str>> = HashMap::new();
    for c in &UNITS.conversions {
        map.entry(c.new_province_code.clone()).or_default().push(c.old_province_code.as_str());
    }
    for v in map.values_mut() {
        v.sort_unstable();
        v.dedup();
    }
    map
});

/// The legacy provinces (whole or in part) that make up a 2025 province.
pub fn legacy_provinces_of(province_2025: &str) -> &'static [&'static str] {
    LEGACY_PROVINCES_OF.get(province_2025).map(Vec::as_slice).unwrap_or(&[])
}

pub fn conversions() -> &'static [Conversion] {
    &UNITS.conversions
}

pub fn id_provinces() -> &'static [IdProvince] {
    &ID_PROVINCES
}

pub fn id_province(id_code: &str) -> Option<&'static IdProvince> {
    ID_PROVINCES.iter().find(|p| p.id_code == id_code)
}

/// The ID prefix for a province code (2025 province codes are all legacy codes too).
pub fn id_code_for_province(province_code: &str) -> Option<&'static IdProvince> {
    ID_PROVINCES.iter().find(|p| p.gso_code == province_code)
}

pub fn ethnicities() -> &'static [Ethnicity] {
    &ETHNICITIES
}
pub fn ethnicity(code: &str) -> Option<&'static Ethnicity> {
    ETHNICITIES.iter().find(|e| e.code == code)
}
pub fn religions() -> &'static [Religion] {
    &RELIGIONS
}
pub fn religion(code: &str) -> Option<&'static Religion> {
    RELIGIONS.iter().find(|e| e.code == code)
}
pub fn countries() -> &'static [Country] {
    &COUNTRIES
}
/// The countries by code: a person's nationalities and each of their places are checked against
/// some 250 codes, for every row of an import.
static COUNTRY_INDEX: LazyLock<HashMap<&'static str, usize>> =
    LazyLock::new(|| COUNTRIES.iter().enumerate().map(|(i, c)| (c.code.as_str(), i)).collect());

pub fn country(code: &str) -> Option<&'static Country> {
    COUNTRY_INDEX.get(code).map(|&i| &COUNTRIES[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_match_the_official_lists() {
        assert_eq!(provinces(Scheme::Y2025).len(), 34);
        assert_eq!(communes(Scheme::Y2025).len(), 3321);
        assert_eq!(provinces(Scheme::Legacy).len(), 63);
        // The source README says 696 districts; the code list itself holds 691 distinct ones.
        assert_eq!(districts().len(), 691);
        assert_eq!(communes(Scheme::Legacy).len(), 10051);
        assert_eq!(id_provinces().len(), 63);
        assert_eq!(ethnicities().len(), 54);
        assert_eq!(religions().len(), 17);
        assert!(countries().len() >= 251);
        assert!(country(VIETNAM).is_some() && country(STATELESS).is_some() && country(UNDETERMINED).is_some());
        // The index finds each country by its code (codes are unique), and nothing else.
        assert!(countries().iter().all(|c| country(&c.code).is_some_and(|f| std::ptr::eq(f, c))));
        assert!(country("ZZZ").is_none() && country("vnm").is_none() && country("").is_none());
    }

    #[test]
    fn overlapping_codes_are_told_apart_by_scheme() {
        assert_eq!(commune(Scheme::Y2025, "00004").unwrap().name, "Phường Ba Đình");
        assert_eq!(commune(Scheme::Legacy, "00004").unwrap().name, "Phường Trúc Bạch");
        assert_eq!(commune(Scheme::Legacy, "00004").unwrap().district_code.as_deref(), Some("001"));
    }

    #[test]
    fn merged_provinces() {
        // Tuyên Quang (08) took in Hà Giang (02) in 2025.
        assert_eq!(legacy_provinces_of("08"), ["02", "08"]);
        assert_eq!(legacy_provinces_of("01"), ["01"]);
        assert!(legacy_provinces_of("02").is_empty(), "02 is not a 2025 province");
        let all: usize = provinces(Scheme::Y2025).iter().map(|p| legacy_provinces_of(&p.code).len()).sum();
        assert!(all >= 63, "{all}");
    }

    #[test]
    fn every_2025_province_has_an_id_prefix() {
        for p in provinces(Scheme::Y2025) {
            assert!(id_code_for_province(&p.code).is_some(), "{}", p.code);
        }
    }

    #[test]
    fn conversions_classify_whole_and_part() {
        let c = conversions_from("00004");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].kind, MergeKind::Whole);
        assert_eq!(c[0].new_commune_code, "00004");
        assert_eq!(conversions_from("00016")[0].kind, MergeKind::Part);
        let whole = conversions().iter().filter(|c| c.kind == MergeKind::Whole).count();
        let part = conversions().iter().filter(|c| c.kind == MergeKind::Part).count();
        assert!(whole > 9000 && part > 900, "whole {whole} part {part}");
        for c in conversions() {
            assert!(commune(Scheme::Y2025, &c.new_commune_code).is_some(), "new {}", c.new_commune_code);
        }
        // Cửa Nam is 00073 in the 2025 list; the conversion table prints 00082.
        let from_cua_nam = conversions_from("00073");
        assert_eq!(from_cua_nam.len(), 4);
        let cua_nam = from_cua_nam.iter().find(|c| c.listed_new_commune_code == "00082").unwrap();
        assert_eq!(cua_nam.new_commune_code, "00073");
    }
}
