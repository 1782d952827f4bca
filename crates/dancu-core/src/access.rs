//! Who may see and change whom: the areas a person lies in, the area a unit governs, which
//! fields are sensitive, and which changes need a second officer (maker-checker).
//!
//! Areas are tokens: `c:2025:00004` (a commune of the 2025 list), `c:legacy:00001` (a legacy
//! commune), `d:001` (a legacy district), `p:01` (a 2025 province). A person lies in every
//! area of each of their residences (permanent, temporary, current); a legacy address also lies
//! in the 2025 communes and provinces its commune went into, so that the police now
//! responsible see data not yet moved to the 2025 codes. A unit governs one token (the
//! ministry: everything), and an officer may act on a person when the person lies in it.

use serde::{Deserialize, Serialize};

use crate::auth::{Unit, UnitLevel};
use crate::person::{Address, Person, PersonInput, PersonStatus};
use crate::reference::{self, Scheme};

/// Extra rights beyond roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// May read sensitive fields (religion, blood type, identifying features / biometrics).
    SensitiveData,
}

impl Permission {
    pub const ALL: [Permission; 1] = [Permission::SensitiveData];

    pub fn code(self) -> &'static str {
        match self {
            Permission::SensitiveData => "sensitive_data",
        }
    }

    pub fn from_code(s: &str) -> Option<Permission> {
        Permission::ALL.into_iter().find(|p| p.code() == s)
    }

    pub fn vietnamese(self) -> &'static str {
        match self {
            Permission::SensitiveData => "Xem dữ liệu nhạy cảm",
        }
    }
}

/// Fields of the person record that only officers with [`Permission::SensitiveData`] read,
/// and only when they ask for them with a stated purpose.
pub const SENSITIVE_FIELDS: [&str; 3] = ["religion", "blood_type", "identifying_features"];

/// The area tokens an address lies in (appended to `out`).
pub fn address_areas(a: &Address, out: &mut Vec<String>) {
    match a.scheme {
        Scheme::Y2025 => {
            out.push(format!("c:2025:{}", a.commune_code));
            if let Some(c) = a.commune() {
                out.push(format!("p:{}", c.province_code));
            }
        }
        Scheme::Legacy => {
            out.push(format!("c:legacy:{}", a.commune_code));
            if let Some(d) = a.commune().and_then(|c| c.district_code.as_deref()) {
                out.push(format!("d:{d}"));
            }
            for conv in reference::conversions_from(&a.commune_code) {
                out.push(format!("c:2025:{}", conv.new_commune_code));
                out.push(format!("p:{}", conv.new_province_code));
            }
        }
    }
}

/// The area tokens of a set of residences, sorted, without repeats.
pub fn residence_areas<'a>(residences: impl IntoIterator<Item = &'a Address>) -> Vec<String> {
    let mut out = Vec::new();
    for a in residences {
        address_areas(a, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

impl PersonInput {
    /// The residences that place a person in an area: permanent, temporary, current.
    pub fn residences(&self) -> impl Iterator<Item = &Address> {
        [&self.permanent_residence, &self.temporary_residence, &self.current_residence].into_iter().flatten()
    }
}

impl Person {
    /// Every area this person lies in (see the module documentation).
    pub fn areas(&self) -> Vec<String> {
        residence_areas(self.record.residences())
    }
}

impl Unit {
    /// The area this unit governs; `None` for the ministry (the whole country).
    pub fn area(&self) -> Option<String> {
        match self.level {
            UnitLevel::Ministry => None,
            UnitLevel::Province => Some(format!("p:{}", self.code)),
            UnitLevel::District => Some(format!("d:{}", self.code.trim_start_matches("legacy:"))),
            UnitLevel::Commune => Some(match self.code.strip_prefix("legacy:") {
                Some(c) => format!("c:legacy:{c}"),
                None => format!("c:2025:{}", self.code),
            }),
        }
    }

    /// Whether a person with these areas lies in this unit's area.
    pub fn governs(&self, person_areas: &[String]) -> bool {
        match self.area() {
            None => true,
            Some(a) => person_areas.contains(&a),
        }
    }

    /// Whether `other` is this unit or lies within it (same or higher area).
    pub fn contains(&self, other: &Unit) -> bool {
        if self == other {
            return true;
        }
        match (self.level, other.level) {
            (UnitLevel::Ministry, _) => true,
            (UnitLevel::Province, UnitLevel::District) => {
                let code = other.code.trim_start_matches("legacy:");
                reference::districts().iter().any(|d| {
                    d.code == code && reference::legacy_provinces_of(&self.code).contains(&d.province_code.as_str())
                })
            }
            (UnitLevel::Province, UnitLevel::Commune) => other.communes_area_tokens().contains(&self.area_token()),
            (UnitLevel::District, UnitLevel::Commune) => other.communes_area_tokens().contains(&self.area_token()),
            _ => false,
        }
    }

    fn area_token(&self) -> String {
        self.area().unwrap_or_default()
    }

    /// The areas a commune unit's own commune lies in.
    fn communes_area_tokens(&self) -> Vec<String> {
        let address = match self.code.strip_prefix("legacy:") {
            Some(c) => Address { scheme: Scheme::Legacy, commune_code: c.into(), detail: None },
            None => Address { scheme: Scheme::Y2025, commune_code: self.code.clone(), detail: None },
        };
        residence_areas([&address])
    }
}

/// A change that must be approved by a second officer before it takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Guarded {
    Name,
    BirthDate,
    Sex,
    Nationality,
    Death,
    /// A new personal ID replacing the current one (its digits contradict a corrected record).
    IdReestablishment,
    /// Marital status from a civil-status event (marriage, divorce) of the civil registration
    /// system: applied once an officer approves. (Officers' own edits of it are not guarded.)
    MaritalStatus,
}

impl Guarded {
    pub fn code(self) -> &'static str {
        match self {
            Guarded::Name => "name",
            Guarded::BirthDate => "birth_date",
            Guarded::Sex => "sex",
            Guarded::Nationality => "nationality",
            Guarded::Death => "death",
            Guarded::IdReestablishment => "id_reestablishment",
            Guarded::MaritalStatus => "marital_status",
        }
    }

    pub fn vietnamese(self) -> &'static str {
        match self {
            Guarded::Name => "họ, chữ đệm và tên",
            Guarded::BirthDate => "ngày, tháng, năm sinh",
            Guarded::Sex => "giới tính",
            Guarded::Nationality => "quốc tịch",
            Guarded::Death => "khai tử",
            Guarded::IdReestablishment => "xác lập lại số định danh cá nhân",
            Guarded::MaritalStatus => "tình trạng hôn nhân",
        }
    }
}

/// What in a change of `before` into (`after`, new status) needs a second officer's approval.
/// A record not yet active (no personal ID) is still being collected: it changes freely.
pub fn guarded_changes(
    before: &Person,
    after: &PersonInput,
    new_status: Option<PersonStatus>,
    reestablish_id: bool,
) -> Vec<Guarded> {
    if before.personal_id.is_none() {
        return Vec::new();
    }
    let b = &before.record;
    let mut g = Vec::new();
    if b.name != after.name {
        g.push(Guarded::Name);
    }
    if b.birth_date != after.birth_date {
        g.push(Guarded::BirthDate);
    }
    if b.sex != after.sex {
        g.push(Guarded::Sex);
    }
    let mut n1 = b.nationalities.clone();
    let mut n2 = after.nationalities.clone();
    n1.sort();
    n2.sort();
    if n1 != n2 {
        g.push(Guarded::Nationality);
    }
    if new_status == Some(PersonStatus::Dead) && before.status != PersonStatus::Dead {
        g.push(Guarded::Death);
    }
    if reestablish_id {
        g.push(Guarded::IdReestablishment);
    }
    g
}

/// Why an officer may not decide a change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecideRefusal {
    NotAnApprover,
    /// Maker and checker must be two officers.
    OwnRequest,
    /// The approver's unit must be the requester's or one above it.
    LowerUnit,
}

/// Whether `approver` may approve or reject a request made by `requested_by` of `requested_unit`
/// (the person's area is checked separately, like every access to a person).
pub fn may_decide(
    approver: &crate::auth::Officer,
    requested_by: &str,
    requested_unit: &Unit,
) -> Result<(), DecideRefusal> {
    if !approver.has_role(crate::auth::Role::Approver) {
        Err(DecideRefusal::NotAnApprover)
    } else if approver.username == requested_by {
        Err(DecideRefusal::OwnRequest)
    } else if !approver.unit.contains(requested_unit) {
        Err(DecideRefusal::LowerUnit)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(scheme: Scheme, code: &str) -> Address {
        Address { scheme, commune_code: code.into(), detail: None }
    }

    #[test]
    fn areas_of_2025_and_legacy_addresses() {
        let c = reference::communes(Scheme::Y2025).first().expect("2025 communes");
        let areas = residence_areas([&a(Scheme::Y2025, &c.code)]);
        assert_eq!(areas, vec![format!("c:2025:{}", c.code), format!("p:{}", c.province_code)]);

        let old = reference::communes(Scheme::Legacy)
            .iter()
            .find(|c| !reference::conversions_from(&c.code).is_empty())
            .expect("a converted legacy commune");
        let conv = reference::conversions_from(&old.code)[0];
        let areas = residence_areas([&a(Scheme::Legacy, &old.code)]);
        assert!(areas.contains(&format!("c:legacy:{}", old.code)));
        assert!(areas.contains(&format!("d:{}", old.district_code.as_deref().unwrap())));
        assert!(areas.contains(&format!("c:2025:{}", conv.new_commune_code)), "the police now responsible see it");
        assert!(areas.contains(&format!("p:{}", conv.new_province_code)));
    }

    #[test]
    fn units_govern_their_area_only() {
        let c = reference::communes(Scheme::Y2025).first().unwrap();
        let other = reference::communes(Scheme::Y2025).iter().find(|o| o.province_code != c.province_code).unwrap();
        let person = residence_areas([&a(Scheme::Y2025, &c.code)]);
        let commune = Unit::parse(&format!("commune:{}", c.code)).unwrap();
        let province = Unit::parse(&format!("province:{}", c.province_code)).unwrap();
        let elsewhere = Unit::parse(&format!("province:{}", other.province_code)).unwrap();
        let other_commune = Unit::parse(&format!("commune:{}", other.code)).unwrap();
        assert!(Unit::parse("ministry").unwrap().governs(&person));
        assert!(province.governs(&person) && commune.governs(&person));
        assert!(!elsewhere.governs(&person) && !other_commune.governs(&person));
        assert!(province.contains(&commune) && !commune.contains(&province));
        assert!(!elsewhere.contains(&commune));
        assert!(Unit::parse("ministry").unwrap().contains(&elsewhere));
        assert!(commune.contains(&commune));
    }

    #[test]
    fn legacy_districts_lie_in_their_2025_province() {
        let old = reference::communes(Scheme::Legacy)
            .iter()
            .find(|c| c.district_code.is_some() && !reference::conversions_from(&c.code).is_empty())
            .unwrap();
        let d = Unit::parse(&format!("district:{}", old.district_code.as_deref().unwrap())).unwrap();
        let p =
            Unit::parse(&format!("province:{}", reference::conversions_from(&old.code)[0].new_province_code)).unwrap();
        assert!(p.contains(&d), "{p:?} should contain {d:?}");
        assert!(d.contains(&Unit::parse(&format!("commune:legacy:{}", old.code)).unwrap()));
        assert!(d.governs(&residence_areas([&a(Scheme::Legacy, &old.code)])));
    }

    #[test]
    fn permissions_round_trip() {
        for p in Permission::ALL {
            assert_eq!(Permission::from_code(p.code()), Some(p));
        }
    }
}
