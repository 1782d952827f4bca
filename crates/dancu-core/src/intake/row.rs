//! One import row to a person record: columns mapped to fields by name, every cell normalized
//! with [`super::fields`] (legacy text encodings repaired on the way), the record validated.
//! Failures name the field, the value and the reason; repairs and doubtful conversions are
//! reported as notes. Pure and deterministic: the same row always gives the same record.

use std::collections::HashMap;

use serde::Deserialize;
use serde::de::value::{Error as DeError, StrDeserializer};
use time::Date;

use super::fields::{self, DateOptions, FieldProblem};
use super::linkage::{LinkRecord, Origin};
use super::vnenc;
use crate::id::PersonalId;
use crate::person::{
    Address, HeadRelationship, HouseholdLink, MaritalStatus, Name, Person, PersonInput, PersonStatus, Place, Relation,
    Relative,
};
use crate::reference::{self, MergeKind, Scheme};
use crate::text;

/// The fields an import file may hold (the column names of `dancu generate`, plus `full_name`
/// and `personal_id`). At least a name, the sex, the birth date and the birth registration
/// province are needed.
pub const FIELDS: &[&str] = &[
    "household",
    "relationship_to_head",
    "surname",
    "middle_name",
    "given_name",
    "full_name",
    "sex",
    "birth_date",
    "birth_registration_scheme",
    "birth_registration_province",
    "ethnicity",
    "religion",
    "nationality",
    "legacy_id",
    "personal_id",
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

/// Which column holds which field.
#[derive(Debug, Clone, Default)]
pub struct ColumnMap {
    /// Shared: each row's normalization takes a copy (a reference count, not the map). Looked up
    /// some thirty times a row: a fast hash of the field's name.
    index: std::sync::Arc<HashMap<&'static str, usize, foldhash::fast::FixedState>>,
}

impl ColumnMap {
    /// Maps a header: each column named by a field (or, through `mapping`, by the column name a
    /// field is given there) holds that field. Unknown columns are ignored. Errors name what is
    /// wrong (a mapping to a missing column, an unknown field, no name column…).
    pub fn new(header: &[String], mapping: &HashMap<String, String>) -> Result<ColumnMap, String> {
        let map = ColumnMap::for_linkage(header, mapping)?;
        let has = |f: &str| map.index.contains_key(f);
        for f in ["sex", "birth_date", "birth_registration_province"] {
            if !has(f) {
                return Err(format!("no {f} column (map it in the mapping file)"));
            }
        }
        Ok(map)
    }

    /// Like [`ColumnMap::new`] for linkage only (`dancu dedupe`): only the name columns are
    /// needed; a field without a column is missing on every row.
    pub fn for_linkage(header: &[String], mapping: &HashMap<String, String>) -> Result<ColumnMap, String> {
        let norm = |s: &str| text::fold(s.trim()).replace([' ', '-'], "_");
        let mut index = HashMap::default();
        for (field, column) in mapping {
            let Some(f) = FIELDS.iter().find(|f| **f == field.as_str()) else {
                return Err(format!("the mapping names an unknown field {field:?} (fields: {})", FIELDS.join(", ")));
            };
            let Some(i) = header.iter().position(|h| h.trim() == column.trim() || norm(h) == norm(column)) else {
                return Err(format!("the mapping maps {field:?} to column {column:?}, which the file does not have"));
            };
            index.insert(*f, i);
        }
        for (i, h) in header.iter().enumerate() {
            if let Some(f) = FIELDS.iter().find(|f| **f == norm(h)) {
                index.entry(*f).or_insert(i);
            }
        }
        let map = ColumnMap { index: std::sync::Arc::new(index) };
        let has = |f: &str| map.index.contains_key(f);
        if !(has("full_name") || has("surname") && has("given_name")) {
            return Err("no name columns: map full_name, or surname and given_name (middle_name optional)".into());
        }
        Ok(map)
    }

    fn cell<'a>(&self, row: &'a [String], field: &str) -> &'a str {
        self.index.get(field).and_then(|&i| row.get(i)).map_or("", |s| s.trim())
    }
}

/// A problem with one cell of a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellProblem {
    pub field: String,
    pub value: String,
    pub code: &'static str,
    pub reason: String,
}

/// Something the import did to a cell that the officer should know: a legacy encoding repaired,
/// a legacy commune converted, a part merge left for a human decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellNote {
    pub field: String,
    pub value: String,
    pub code: &'static str,
    pub reason: String,
}

/// A row made into a person (pending, or active when the row carried a personal ID).
#[derive(Debug, Clone)]
pub struct NormalizedRow {
    pub person: Person,
    pub notes: Vec<CellNote>,
}

/// A row read for linkage only ([`RowNormalizer::link_record`]).
#[derive(Debug, Clone)]
pub struct LenientRow {
    pub record: LinkRecord,
    pub notes: Vec<CellNote>,
    /// Why the import would refuse the row (empty when it would take it).
    pub problems: Vec<CellProblem>,
}

/// The unit an import belongs to: rows must live there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportUnit {
    /// The 2025 province.
    pub province: String,
    /// A 2025 commune (a commune unit), or none (a province unit).
    pub commune: Option<String>,
}

impl ImportUnit {
    /// From `commune:CODE` / `province:CODE` (2025 codes) or a bare 2025 commune (5 digits) or
    /// province (2 digits) code.
    pub fn parse(s: &str) -> Result<ImportUnit, String> {
        let (level, code) = match s.split_once(':') {
            Some((l, c)) => (l, c),
            None if s.len() == 2 => ("province", s),
            None => ("commune", s),
        };
        match level {
            "province" => reference::province(Scheme::Y2025, code)
                .map(|p| ImportUnit { province: p.code.clone(), commune: None })
                .ok_or_else(|| format!("{code:?} is not a province code of the 2025 list")),
            "commune" => reference::commune(Scheme::Y2025, code)
                .map(|c| ImportUnit { province: c.province_code.clone(), commune: Some(c.code.clone()) })
                .ok_or_else(|| format!("{code:?} is not a commune code of the 2025 list")),
            _ => Err(format!("{s:?}: the unit is commune:CODE or province:CODE (2025 codes)")),
        }
    }

    /// As an officer's unit code (`commune:00004`, `province:01`).
    pub fn code_str(&self) -> String {
        match &self.commune {
            Some(c) => format!("commune:{c}"),
            None => format!("province:{}", self.province),
        }
    }
}

/// A commune name without its kind (`Phường Ba Đình` → `badinh`).
fn commune_key(name: &str) -> String {
    let f = text::fold(&vnenc::repair(name.trim()).text);
    let rest = ["phuong ", "xa ", "thi tran ", "dac khu "].iter().find_map(|p| f.strip_prefix(p)).unwrap_or(&f);
    rest.chars().filter(|c| c.is_alphanumeric()).collect()
}

fn province_key(name: &str) -> String {
    let f = text::fold(&vnenc::repair(name.trim()).text);
    let rest = ["thanh pho ", "tinh ", "tp "].iter().find_map(|p| f.strip_prefix(p)).unwrap_or(&f);
    rest.chars().filter(|c| c.is_alphanumeric()).collect()
}

fn code_of(raw: &str, width: usize) -> Option<String> {
    let t = raw.trim();
    (!t.is_empty() && t.len() <= width && t.bytes().all(|b| b.is_ascii_digit())).then(|| format!("{t:0>width$}"))
}

fn scheme_of(raw: &str) -> Result<Option<Scheme>, FieldProblem> {
    match text::fold(raw.trim()).as_str() {
        "" => Ok(None),
        "2025" | "moi" | "new" => Ok(Some(Scheme::Y2025)),
        "legacy" | "cu" | "old" => Ok(Some(Scheme::Legacy)),
        _ => Err(FieldProblem::new("unknown_scheme", "the code list is 2025 or legacy")),
    }
}

/// A resolved residence commune and the note its conversion leaves.
type CommuneResult = Result<(Address, Option<CellNote>), FieldProblem>;

/// Turns rows into person records. Keeps lookup caches (one per thread).
#[derive(Debug, Clone)]
pub struct RowNormalizer {
    map: ColumnMap,
    unit: ImportUnit,
    today: Date,
    dates: DateOptions,
    /// Legacy provinces that formed the unit's province.
    legacy_provinces: Vec<&'static str>,
    communes: HashMap<(String, String), CommuneResult>,
    lookups: HashMap<(&'static str, String), Result<&'static str, FieldProblem>>,
}

impl RowNormalizer {
    /// `excel` reads 5-digit numbers in date cells as Excel serial dates.
    pub fn new(map: ColumnMap, unit: ImportUnit, today: Date, excel: bool) -> Self {
        let legacy_provinces = reference::legacy_provinces_of(&unit.province).to_vec();
        RowNormalizer {
            map,
            unit,
            today,
            dates: DateOptions { excel_serial: excel },
            legacy_provinces,
            communes: HashMap::new(),
            lookups: HashMap::new(),
        }
    }

    fn lookup(
        &mut self,
        what: &'static str,
        raw: &str,
        f: fn(&str) -> Result<&'static str, FieldProblem>,
    ) -> Result<&'static str, FieldProblem> {
        self.lookups.entry((what, raw.to_string())).or_insert_with(|| f(raw)).clone()
    }

    /// The residence commune: a code (2025 unless the scheme says legacy) or a name of the unit's
    /// province (2025 names first, then legacy names). Legacy communes go to their 2025 commune
    /// when merged whole; a part merge keeps the legacy code and is flagged.
    fn commune(&mut self, scheme: &str, raw: &str) -> CommuneResult {
        let k = (scheme.to_string(), raw.to_string());
        if let Some(r) = self.communes.get(&k) {
            return r.clone();
        }
        let r = self.resolve_commune(scheme, raw);
        self.communes.insert(k, r.clone());
        r
    }

    fn resolve_commune(&self, scheme: &str, raw: &str) -> CommuneResult {
        let scheme = scheme_of(scheme)?;
        let legacy_code = if let Some(code) = code_of(raw, 5) {
            match scheme.unwrap_or(Scheme::Y2025) {
                Scheme::Y2025 => {
                    let c = reference::commune(Scheme::Y2025, &code)
                        .ok_or_else(|| FieldProblem::new("unknown_commune", "not a commune code of the 2025 list"))?;
                    return self.inside(c.code.clone(), &c.province_code, None);
                }
                Scheme::Legacy => {
                    reference::commune(Scheme::Legacy, &code)
                        .ok_or_else(|| FieldProblem::new("unknown_commune", "not a commune code of the legacy list"))?;
                    code
                }
            }
        } else {
            let k = commune_key(raw);
            if k.is_empty() {
                return Err(FieldProblem::new("empty", "the cell is empty"));
            }
            if scheme != Some(Scheme::Legacy) {
                let found: Vec<_> = reference::communes(Scheme::Y2025)
                    .iter()
                    .filter(|c| c.province_code == self.unit.province && commune_key(&c.name) == k)
                    .collect();
                if let [c] = found.as_slice() {
                    return self.inside(c.code.clone(), &c.province_code, None);
                }
            }
            let found: Vec<_> = reference::communes(Scheme::Legacy)
                .iter()
                .filter(|c| self.legacy_provinces.contains(&c.province_code.as_str()) && commune_key(&c.name) == k)
                .collect();
            match found.as_slice() {
                [c] => c.code.clone(),
                [] => {
                    return Err(FieldProblem::new(
                        "unknown_commune",
                        "no commune of this name in the unit's province (2025 or legacy list)",
                    ));
                }
                many => {
                    return Err(FieldProblem::new(
                        "ambiguous_commune",
                        format!("{} legacy communes of the unit's province have this name: give the code", many.len()),
                    ));
                }
            }
        };
        let conversions = reference::conversions_from(&legacy_code);
        let whole = conversions.iter().find(|c| c.kind == MergeKind::Whole);
        match (whole, conversions.first()) {
            (Some(c), _) if conversions.len() == 1 => {
                let note = CellNote {
                    field: "residence_commune".into(),
                    value: raw.to_string(),
                    code: "legacy_commune_converted",
                    reason: format!(
                        "legacy commune {legacy_code} merged whole into 2025 commune {} ({}) / xã cũ đã nhập toàn bộ vào xã mới",
                        c.new_commune_code,
                        reference::commune(Scheme::Y2025, &c.new_commune_code).map_or("", |x| x.name.as_str())
                    ),
                };
                self.inside(c.new_commune_code.clone(), &c.new_province_code, Some(note))
            }
            (_, Some(first)) => {
                let targets: Vec<&str> = conversions.iter().map(|c| c.new_commune_code.as_str()).collect();
                let note = CellNote {
                    field: "residence_commune".into(),
                    value: raw.to_string(),
                    code: "part_merge",
                    reason: format!(
                        "legacy commune {legacy_code} was split between 2025 communes {}: kept on the legacy list, \
                         an officer must decide / xã cũ bị chia cho nhiều xã mới, cần cán bộ quyết định",
                        targets.join(", ")
                    ),
                };
                let province = first.new_province_code.clone();
                if province != self.unit.province {
                    return Err(outside());
                }
                if let Some(unit) = &self.unit.commune
                    && !targets.contains(&unit.as_str())
                {
                    return Err(outside());
                }
                Ok((Address { scheme: Scheme::Legacy, commune_code: legacy_code, detail: None }, Some(note)))
            }
            _ => Err(FieldProblem::new("unknown_commune", "the legacy commune is not in the 2025 conversion table")),
        }
    }

    /// A 2025 commune, if it lies in the import's unit.
    fn inside(&self, code: String, province: &str, note: Option<CellNote>) -> CommuneResult {
        if province != self.unit.province || self.unit.commune.as_ref().is_some_and(|c| *c != code) {
            return Err(outside());
        }
        Ok((Address { scheme: Scheme::Y2025, commune_code: code, detail: None }, note))
    }

    fn registration(&self, scheme: &str, raw: &str) -> Result<Place, FieldProblem> {
        let scheme = scheme_of(scheme)?;
        let find = |s: Scheme| -> Option<String> {
            if let Some(code) = code_of(raw, 2) {
                return reference::province(s, &code).map(|p| p.code.clone());
            }
            let k = province_key(raw);
            reference::provinces(s).iter().find(|p| province_key(&p.name) == k).map(|p| p.code.clone())
        };
        if raw.trim().is_empty() {
            return Err(FieldProblem::new("empty", "the cell is empty"));
        }
        let order: &[Scheme] = match scheme {
            Some(Scheme::Y2025) => &[Scheme::Y2025],
            Some(Scheme::Legacy) => &[Scheme::Legacy],
            None => &[Scheme::Legacy, Scheme::Y2025],
        };
        for s in order {
            if let Some(code) = find(*s) {
                return Ok(Place {
                    country: reference::VIETNAM.into(),
                    scheme: Some(*s),
                    province_code: Some(code),
                    commune_code: None,
                    detail: None,
                });
            }
        }
        Err(FieldProblem::new("unknown_province", "not a province code or name (legacy 63 or 2025 34 list)"))
    }

    /// The linkage record of a row, for linkage without import (`dancu dedupe`). A row the import
    /// takes gives the very record the import links ([`LinkRecord::from_input`]); a row it would
    /// refuse still takes part with what it has: a cell that is empty, has no column or does not
    /// read is missing (it weighs nothing), never a disagreement. `Ok` carries the row's notes
    /// and, for a row the import would refuse, its problems; `Err` is a row without a usable name.
    pub fn link_record(&mut self, cells: &[String]) -> Result<LenientRow, Vec<CellProblem>> {
        let problems = match self.normalize(cells) {
            Ok(row) => {
                let record = LinkRecord::from_input(&row.person.record, Origin::Batch);
                return Ok(LenientRow { record, notes: row.notes, problems: Vec::new() });
            }
            Err(problems) => problems,
        };
        let map = self.map.clone();
        let cell = |f: &str| map.cell(cells, f).to_string();
        let mut notes = Vec::new();
        let mut bad = Vec::new();
        let full = cell("full_name");
        let (family, middle, given) =
            if map.index.contains_key("surname") && !cell("surname").is_empty() || full.is_empty() {
                let mut part = |f: &str| name_part(&mut bad, f, &cell(f), &mut notes, false).unwrap_or_default();
                (part("surname"), part("middle_name"), part("given_name"))
            } else {
                let n = name_part(&mut bad, "full_name", &full, &mut notes, false).unwrap_or_default();
                let words: Vec<&str> = n.split(' ').filter(|w| !w.is_empty()).collect();
                match words.as_slice() {
                    [] => Default::default(),
                    [one] => (String::new(), String::new(), one.to_string()),
                    [first, mid @ .., last] => (first.to_string(), mid.join(" "), last.to_string()),
                }
            };
        let date_raw = cell("birth_date");
        // yyyymmdd, as many systems export dates.
        let compact = (date_raw.len() == 8 && date_raw.bytes().all(|b| b.is_ascii_digit()))
            .then(|| format!("{}-{}-{}", &date_raw[..4], &date_raw[4..6], &date_raw[6..]));
        let birth_date = fields::date(compact.as_deref().unwrap_or(&date_raw), self.dates).ok();
        let sex = fields::sex(&cell("sex")).ok();
        let legacy_raw = cell("legacy_id");
        let legacy_digits: String = legacy_raw.chars().filter(|c| !matches!(c, ' ' | '.' | '-')).collect();
        // Any number of an identity document serves for linkage, checked or not.
        let legacy_id = fields::legacy_id(&legacy_raw).map(|l| l.as_str().to_string()).ok().or_else(|| {
            (legacy_digits.len() >= 5 && legacy_digits.bytes().all(|b| b.is_ascii_digit())).then_some(legacy_digits)
        });
        let phone = fields::phone(&cell("phone")).ok();
        let commune_raw = cell("residence_commune");
        let home = if commune_raw.is_empty() {
            self.unit.commune.as_ref().map(|c| Address { scheme: Scheme::Y2025, commune_code: c.clone(), detail: None })
        } else {
            self.commune(&cell("residence_scheme"), &commune_raw).ok().map(|(a, note)| {
                notes.extend(note);
                a
            })
        };
        let detail = text::clean(&vnenc::repair(&cell("residence_detail")).text);
        let relative = |f: &str| {
            let n = text::clean(&vnenc::repair(&cell(f)).text);
            (!n.is_empty()).then_some(n)
        };
        // A record without a name can still be found through its other facts, given two of them
        // that identify (a full birth date, an identity number, a phone number, an address).
        let identifying =
            [birth_date.is_some_and(|d| d.full().is_some()), legacy_id.is_some(), phone.is_some(), !detail.is_empty()];
        if family.is_empty() && given.is_empty() && identifying.iter().filter(|x| **x).count() < 2 {
            return Err(problems);
        }
        let record = LinkRecord {
            origin: Origin::Batch,
            family,
            middle,
            given,
            birth_date,
            sex,
            commune_key: home.as_ref().map(Address::unit_key),
            province_2025: home.as_ref().and_then(Address::province_2025),
            legacy_id,
            father: relative("father_name"),
            mother: relative("mother_name"),
            phone,
            address: (!detail.is_empty()).then_some(detail),
        };
        Ok(LenientRow { record, notes, problems })
    }

    /// Normalizes one row (`cells` in file column order).
    pub fn normalize(&mut self, cells: &[String]) -> Result<NormalizedRow, Vec<CellProblem>> {
        let mut problems = Vec::new();
        let mut notes = Vec::new();
        let map = self.map.clone();
        let cell = |f: &str| map.cell(cells, f).to_string();
        // Name
        let full = cell("full_name");
        let name = if self.map.index.contains_key("surname") && !cell("surname").is_empty() || full.is_empty() {
            let s = name_part(&mut problems, "surname", &cell("surname"), &mut notes, true);
            let m = name_part(&mut problems, "middle_name", &cell("middle_name"), &mut notes, false);
            let g = name_part(&mut problems, "given_name", &cell("given_name"), &mut notes, true);
            match (s, m, g) {
                (Some(surname), Some(middle), Some(given)) => Some(Name { surname, middle, given }),
                _ => None,
            }
        } else {
            name_part(&mut problems, "full_name", &full, &mut notes, true).and_then(|n| {
                let words: Vec<&str> = n.split(' ').collect();
                if words.len() < 2 {
                    problems.push(CellProblem {
                        field: "full_name".into(),
                        value: full.clone(),
                        code: "incomplete_name",
                        reason: "a full name has at least a family name and a given name".into(),
                    });
                    return None;
                }
                Some(Name {
                    surname: words[0].to_string(),
                    middle: words[1..words.len() - 1].join(" "),
                    given: words[words.len() - 1].to_string(),
                })
            })
        };
        let sex_raw = cell("sex");
        let sex = fields::sex(&sex_raw).map_err(|p| push(&mut problems, "sex", &sex_raw, p)).ok();
        let date_raw = cell("birth_date");
        let birth_date =
            fields::date(&date_raw, self.dates).map_err(|p| push(&mut problems, "birth_date", &date_raw, p)).ok();
        let reg_raw = cell("birth_registration_province");
        let registration = self
            .registration(&cell("birth_registration_scheme"), &reg_raw)
            .map_err(|p| push(&mut problems, "birth_registration_province", &reg_raw, p))
            .ok();
        let eth_raw = cell("ethnicity");
        let ethnicity = if eth_raw.is_empty() {
            push(&mut problems, "ethnicity", "", FieldProblem::new("empty", "the cell is empty"));
            None
        } else {
            self.lookup("ethnicity", &eth_raw, fields::ethnicity)
                .map_err(|p| push(&mut problems, "ethnicity", &eth_raw, p))
                .ok()
        };
        let rel_raw = cell("religion");
        let religion = if rel_raw.is_empty() {
            Some("00")
        } else {
            self.lookup("religion", &rel_raw, fields::religion)
                .map_err(|p| push(&mut problems, "religion", &rel_raw, p))
                .ok()
        };
        let nat_raw = cell("nationality");
        let mut nationalities = Vec::new();
        if nat_raw.is_empty() {
            nationalities.push(reference::VIETNAM.to_string());
        } else {
            for part in nat_raw.split([';', ',']).map(str::trim).filter(|p| !p.is_empty()) {
                match self.lookup("nationality", part, fields::nationality) {
                    Ok(c) => nationalities.push(c.to_string()),
                    Err(p) => push(&mut problems, "nationality", part, p),
                }
            }
        }
        let legacy_raw = cell("legacy_id");
        let legacy_id = if legacy_raw.is_empty() {
            None
        } else {
            fields::legacy_id(&legacy_raw).map_err(|p| push(&mut problems, "legacy_id", &legacy_raw, p)).ok()
        };
        let pid_raw = cell("personal_id");
        let personal_id = if pid_raw.is_empty() {
            None
        } else {
            PersonalId::parse(&pid_raw.replace([' ', '.'], ""))
                .map_err(|e| push(&mut problems, "personal_id", &pid_raw, FieldProblem::new(e.code(), e.to_string())))
                .ok()
        };
        let phone_raw = cell("phone");
        let phone = if phone_raw.is_empty() {
            None
        } else {
            fields::phone(&phone_raw).map_err(|p| push(&mut problems, "phone", &phone_raw, p)).ok()
        };
        // Residence
        let commune_raw = cell("residence_commune");
        let residence = if commune_raw.is_empty() {
            match &self.unit.commune {
                Some(c) => Some(Address { scheme: Scheme::Y2025, commune_code: c.clone(), detail: None }),
                None => {
                    push(
                        &mut problems,
                        "residence_commune",
                        "",
                        FieldProblem::new("empty", "the residence commune is needed for a province-level import"),
                    );
                    None
                }
            }
        } else {
            match self.commune(&cell("residence_scheme"), &commune_raw) {
                Ok((a, note)) => {
                    notes.extend(note);
                    Some(a)
                }
                Err(p) => {
                    push(&mut problems, "residence_commune", &commune_raw, p);
                    None
                }
            }
        };
        let residence = residence.map(|mut a| {
            let d = text::clean(&vnenc::repair(&cell("residence_detail")).text);
            a.detail = (!d.is_empty()).then_some(d);
            a
        });
        let marital_raw = cell("marital_status");
        let marital_status = if marital_raw.is_empty() {
            None
        } else {
            MaritalStatus::deserialize(StrDeserializer::<DeError>::new(&marital_raw))
                .map_err(|_| {
                    push(
                        &mut problems,
                        "marital_status",
                        &marital_raw,
                        FieldProblem::new("unknown_marital_status", "single, married, divorced or widowed"),
                    )
                })
                .ok()
        };
        let rel_head_raw = cell("relationship_to_head");
        let head_raw = cell("head_name");
        let household = if rel_head_raw.is_empty() {
            None
        } else {
            let rel = HeadRelationship::deserialize(StrDeserializer::<DeError>::new(&rel_head_raw))
                .map_err(|_| {
                    push(
                        &mut problems,
                        "relationship_to_head",
                        &rel_head_raw,
                        FieldProblem::new(
                            "unknown_relationship",
                            "head, spouse, child, parent, grandchild, grandparent, sibling, child_in_law, \
                             other_relative or not_related",
                        ),
                    )
                })
                .ok();
            let head = if head_raw.is_empty() {
                name.as_ref().filter(|_| rel == Some(HeadRelationship::Head)).map(Name::full)
            } else {
                name_part(&mut problems, "head_name", &head_raw, &mut notes, true)
            };
            match (rel, head) {
                (Some(relationship_to_head), Some(head_name)) => {
                    Some(HouseholdLink { relationship_to_head, head_name, head_personal_id: None })
                }
                (Some(_), None) if head_raw.is_empty() => {
                    push(
                        &mut problems,
                        "head_name",
                        "",
                        FieldProblem::new("empty", "the household head's name is needed"),
                    );
                    None
                }
                _ => None,
            }
        };
        let mut relatives = Vec::new();
        for (field, relation) in
            [("father_name", Relation::Father), ("mother_name", Relation::Mother), ("spouse_name", Relation::Spouse)]
        {
            let raw = cell(field);
            if !raw.is_empty()
                && let Some(n) = name_part(&mut problems, field, &raw, &mut notes, true)
            {
                relatives.push(Relative {
                    relation,
                    name: n,
                    personal_id: None,
                    legacy_id: None,
                    nationalities: vec![],
                });
            }
        }
        let file_number = cell("residence_file_number");
        let (Some(name), Some(sex), Some(birth_date), Some(registration), Some(ethnicity), Some(religion)) =
            (name, sex, birth_date, registration, ethnicity, religion)
        else {
            return Err(problems);
        };
        if !problems.is_empty() {
            return Err(problems);
        }
        let input = PersonInput {
            name,
            other_names: Vec::new(),
            birth_date,
            sex,
            birth_place: None,
            birth_registration_place: registration,
            hometown: None,
            ethnicity: ethnicity.to_string(),
            religion: religion.to_string(),
            nationalities,
            blood_type: None,
            legacy_id,
            previous_documents: Vec::new(),
            relatives,
            permanent_residence: residence,
            temporary_residence: None,
            current_residence: None,
            temporary_absence: None,
            residence_file_number: (!file_number.is_empty()).then_some(file_number),
            marital_status,
            household,
            occupation: None,
            identifying_features: None,
            phone,
            email: None,
        };
        let input = input.validate(self.today).map_err(|e| {
            e.0.into_iter()
                .map(|f| CellProblem {
                    value: f.value.clone().unwrap_or_default(),
                    field: f.field,
                    code: f.code,
                    reason: f.reason,
                })
                .collect::<Vec<_>>()
        })?;
        let mut person = Person::new_pending(input);
        if let Some(id) = personal_id {
            if let Err(e) = id.check_matches(person.record.sex, person.record.birth_date.year()) {
                return Err(vec![CellProblem {
                    field: "personal_id".into(),
                    value: pid_raw,
                    code: e.code(),
                    reason: format!("{e}: the number contradicts the row's sex or birth year"),
                }]);
            }
            person.personal_id = Some(id);
            person.status = PersonStatus::Active;
        }
        Ok(NormalizedRow { person, notes })
    }
}

fn push(problems: &mut Vec<CellProblem>, field: &str, value: &str, p: FieldProblem) {
    problems.push(CellProblem { field: field.into(), value: value.into(), code: p.code, reason: p.reason });
}

/// One name cell (an empty optional one is an empty string).
fn name_part(
    problems: &mut Vec<CellProblem>,
    field: &str,
    raw: &str,
    notes: &mut Vec<CellNote>,
    required: bool,
) -> Option<String> {
    if raw.is_empty() && !required {
        return Some(String::new());
    }
    match fields::name(raw) {
        Ok(n) => {
            if let Some(enc) = n.repaired {
                notes.push(repaired(field, raw, enc));
            }
            Some(n.text)
        }
        Err(p) => {
            push(problems, field, raw, p);
            None
        }
    }
}

fn outside() -> FieldProblem {
    FieldProblem::new("outside_unit", "the commune does not lie in the import's unit / xã không thuộc đơn vị nhập liệu")
}

fn repaired(field: &str, raw: &str, enc: vnenc::Encoding) -> CellNote {
    CellNote {
        field: field.into(),
        value: raw.into(),
        code: "encoding_repaired",
        reason: format!("converted from {} / đã chuyển từ {}", enc.code(), enc.vietnamese()),
    }
}

/// Reads a mapping file: CSV lines `field,column` (a header line `field,column` is skipped).
pub fn parse_mapping(text: &str) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim().trim_start_matches('\u{feff}');
        if line.is_empty() || line.starts_with('#') || (i == 0 && line.eq_ignore_ascii_case("field,column")) {
            continue;
        }
        let Some((field, column)) = line.split_once(',') else {
            return Err(format!("mapping line {}: expected field,column", i + 1));
        };
        let column = column.trim().trim_matches('"');
        out.insert(field.trim().to_string(), column.to_string());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    fn normalizer(header: &[&str], unit: &str) -> RowNormalizer {
        let header: Vec<String> = header.iter().map(|s| s.to_string()).collect();
        let map = ColumnMap::new(&header, &HashMap::new()).unwrap();
        RowNormalizer::new(map, ImportUnit::parse(unit).unwrap(), date!(2026 - 01 - 01), false)
    }

    fn row(cells: &[&str]) -> Vec<String> {
        cells.iter().map(|s| s.to_string()).collect()
    }

    const HEADER: &[&str] =
        &["full_name", "sex", "birth_date", "birth_registration_province", "ethnicity", "residence_commune", "phone"];

    #[test]
    fn a_messy_row_is_normalized_and_its_repairs_reported() {
        let mut n = normalizer(HEADER, "province:01");
        // TCVN3 mojibake of "Nguyễn Văn An", a Vietnamese date, a commune by legacy name.
        let out = n
            .normalize(&row(&[
                &vnenc::encode_tcvn3("Nguyễn Văn An", false),
                "Nam",
                "05/03/1990",
                "Hà Nội",
                "Kinh",
                "Phường Trúc Bạch",
                "0912 345 678",
            ]))
            .unwrap();
        let r = &out.person.record;
        assert_eq!((r.name.surname.as_str(), r.name.middle.as_str(), r.name.given.as_str()), ("Nguyễn", "Văn", "An"));
        assert_eq!(r.birth_date.to_string(), "1990-03-05");
        let home = r.permanent_residence.as_ref().unwrap();
        assert_eq!((home.scheme, home.commune_code.as_str()), (Scheme::Y2025, "00004"));
        assert!(out.notes.iter().any(|n| n.code == "encoding_repaired" && n.field == "full_name"));
        assert!(out.notes.iter().any(|n| n.code == "legacy_commune_converted"));
    }

    #[test]
    fn bad_cells_are_named_and_nothing_panics() {
        let mut n = normalizer(HEADER, "commune:00004");
        let problems =
            n.normalize(&row(&["Lê", "x", "31/02/1990", "Atlantis", "Martian", "Phường Hoàn Kiếm", "12"])).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        for f in
            ["full_name", "sex", "birth_date", "birth_registration_province", "ethnicity", "residence_commune", "phone"]
        {
            assert!(fields.contains(&f), "{f} missing in {problems:?}");
        }
        assert!(problems.iter().any(|p| p.code == "outside_unit"));
        // short rows and empty rows are refused, not a panic
        assert!(n.normalize(&row(&[])).is_err());
    }

    #[test]
    fn mapping_files_rename_columns() {
        let header = row(&["Họ và tên", "Giới tính", "Ngày sinh", "Nơi ĐK khai sinh", "Dân tộc"]);
        let mapping = parse_mapping(
            "field,column\nfull_name,Họ và tên\nsex,Giới tính\nbirth_date,Ngày sinh\nbirth_registration_province,Nơi ĐK khai sinh\nethnicity,Dân tộc\n",
        )
        .unwrap();
        let map = ColumnMap::new(&header, &mapping).unwrap();
        let mut n = RowNormalizer::new(map, ImportUnit::parse("commune:00004").unwrap(), date!(2026 - 01 - 01), false);
        let out = n.normalize(&row(&["TRẦN THỊ BÌNH", "nữ", "1975", "01", "01"])).unwrap();
        assert_eq!(out.person.record.name.full(), "Trần Thị Bình");
        assert!(ColumnMap::new(&header, &HashMap::from([("nonsense".into(), "x".into())])).is_err());
        assert!(ColumnMap::new(&row(&["a"]), &HashMap::new()).is_err());
    }
}
