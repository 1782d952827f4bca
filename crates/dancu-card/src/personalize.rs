//! Personalization: from a person's data to the chip's files (EF.COM, DG1, DG2, DG13, EF.SOD).

use dancu_core::person::{Address, Place, Relation};
use dancu_core::reference;
use dancu_core::{PartialDate, Person, PersonalId, Sex};
use time::Date;

use crate::CardError;
use crate::dg13::{Dg13, NO_EXPIRY};
use crate::lds::{self, DataGroup, FaceGender};
use crate::mrz::{self, MrzInput};
use crate::sod::DocumentSigner;

/// Everything printed on and encoded into one card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CardContent {
    pub personal_id: PersonalId,
    pub surname: String,
    /// Middle name(s), may be empty.
    pub middle: String,
    pub given: String,
    pub birth_date: PartialDate,
    pub sex: Sex,
    /// As printed: "Việt Nam".
    pub nationality: String,
    pub ethnicity: Option<String>,
    pub religion: Option<String>,
    pub hometown: Option<String>,
    pub residence: Option<String>,
    pub identifying_features: Option<String>,
    pub issue_date: Date,
    /// `None`: the card does not expire.
    pub expiry: Option<Date>,
    pub father: Option<String>,
    pub mother: Option<String>,
    pub spouse: Option<String>,
    pub legacy_id: Option<String>,
    pub card_serial: Option<String>,
    /// The face photo (JPEG), checked by [`crate::photo::check_face_photo`].
    pub photo_jpeg: Vec<u8>,
}

fn dmy(d: Date) -> String {
    format!("{:02}/{:02}/{:04}", d.day(), d.month() as u8, d.year())
}

fn place_text(p: &Place) -> Option<String> {
    let commune = p.scheme.zip(p.commune_code.as_deref()).and_then(|(s, c)| reference::commune(s, c));
    let province = p
        .scheme
        .zip(p.province_code.as_deref().or(commune.map(|c| c.province_code.as_str())))
        .and_then(|(s, c)| reference::province(s, c));
    let mut parts: Vec<String> = Vec::new();
    if let Some(d) = &p.detail {
        parts.push(d.clone());
    }
    if let Some(c) = commune {
        parts.push(c.name.clone());
    }
    if let Some(pr) = province {
        parts.push(pr.name.clone());
    }
    if p.country != reference::VIETNAM {
        parts.push(reference::country(&p.country).map(|c| c.name_vi.clone()).unwrap_or_else(|| p.country.clone()));
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn address_text(a: &Address) -> String {
    let mut parts: Vec<String> = a.detail.iter().cloned().collect();
    if let Some(c) = a.commune() {
        parts.push(c.name.clone());
        if let Some(p) = reference::province(a.scheme, &c.province_code) {
            parts.push(p.name.clone());
        }
    } else {
        parts.push(format!("{}:{}", a.scheme.code(), a.commune_code));
    }
    parts.join(", ")
}

impl CardContent {
    /// The card of a registered person (who must have a personal ID), issued on `issue_date`.
    pub fn from_person(
        person: &Person,
        issue_date: Date,
        expiry: Option<Date>,
        card_serial: Option<String>,
        photo_jpeg: Vec<u8>,
    ) -> Result<CardContent, CardError> {
        let personal_id = person.personal_id.ok_or_else(|| CardError::Field {
            field: "personal_id",
            value: String::new(),
            reason: "the person has no personal ID yet: a card can only be issued to a registered person".into(),
        })?;
        let r = &person.record;
        let relative = |rel: Relation| r.relatives.iter().find(|x| x.relation == rel).map(|x| x.name.clone());
        let nationality = r
            .nationalities
            .first()
            .map(|c| reference::country(c).map(|c| c.name_vi.clone()).unwrap_or_else(|| c.clone()))
            .unwrap_or_else(|| "Việt Nam".into());
        Ok(CardContent {
            personal_id,
            surname: r.name.surname.clone(),
            middle: r.name.middle.clone(),
            given: r.name.given.clone(),
            birth_date: r.birth_date,
            sex: r.sex,
            nationality,
            ethnicity: reference::ethnicity(&r.ethnicity).map(|e| e.name.clone()),
            religion: reference::religion(&r.religion).map(|e| e.name.clone()),
            hometown: r.hometown.as_ref().and_then(place_text),
            residence: r.permanent_residence.as_ref().or(r.current_residence.as_ref()).map(address_text),
            identifying_features: r.identifying_features.clone(),
            issue_date,
            expiry,
            father: relative(Relation::Father),
            mother: relative(Relation::Mother),
            spouse: relative(Relation::Spouse),
            legacy_id: r.legacy_id.as_ref().map(|l| l.as_str().to_string()),
            card_serial,
            photo_jpeg,
        })
    }

    pub fn full_name(&self) -> String {
        [self.surname.as_str(), self.middle.as_str(), self.given.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub fn mrz(&self) -> Result<[String; 3], CardError> {
        let given = [self.middle.as_str(), self.given.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        mrz::encode(&MrzInput {
            personal_id: &self.personal_id,
            surname: &self.surname,
            given_names: &given,
            birth_date: self.birth_date,
            sex: self.sex,
            expiry: self.expiry,
        })
    }

    pub fn dg13(&self) -> Dg13 {
        Dg13 {
            personal_id: self.personal_id.as_str().to_string(),
            full_name: self.full_name(),
            birth_date: self.birth_date.to_vietnamese(),
            sex: self.sex.vietnamese().to_string(),
            nationality: self.nationality.clone(),
            ethnicity: self.ethnicity.clone(),
            religion: self.religion.clone(),
            hometown: self.hometown.clone(),
            residence: self.residence.clone(),
            identifying_features: self.identifying_features.clone(),
            issue_date: dmy(self.issue_date),
            expiry_date: self.expiry.map(dmy).unwrap_or_else(|| NO_EXPIRY.to_string()),
            father: self.father.clone(),
            mother: self.mother.clone(),
            spouse: self.spouse.clone(),
            legacy_id: self.legacy_id.clone(),
            card_serial: self.card_serial.clone(),
        }
    }
}

/// The files of one personalized chip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChipFiles {
    pub mrz: [String; 3],
    pub ef_com: Vec<u8>,
    pub dg1: Vec<u8>,
    pub dg2: Vec<u8>,
    pub dg13: Vec<u8>,
    pub ef_sod: Vec<u8>,
}

impl ChipFiles {
    /// The files with their on-disk names (see `dancu card verify`).
    pub fn named(&self) -> Vec<(String, &[u8])> {
        vec![
            ("ef_com.bin".into(), self.ef_com.as_slice()),
            (DataGroup::Dg1.file_name(), self.dg1.as_slice()),
            (DataGroup::Dg2.file_name(), self.dg2.as_slice()),
            (DataGroup::Dg13.file_name(), self.dg13.as_slice()),
            ("ef_sod.bin".into(), self.ef_sod.as_slice()),
        ]
    }
}

/// Builds every file of the chip and signs EF.SOD with `signer` (which must be within its
/// key usage period at `now`).
pub fn personalize(
    card: &CardContent,
    signer: &DocumentSigner,
    now: time::OffsetDateTime,
) -> Result<ChipFiles, CardError> {
    signer.check_usable(now)?;
    let mrz = card.mrz()?;
    let dg1 = lds::dg1(&mrz);
    let gender = match card.sex {
        Sex::Male => FaceGender::Male,
        Sex::Female => FaceGender::Female,
    };
    let dg2 = lds::dg2(&card.photo_jpeg, gender)?;
    let dg13 = card.dg13().encode();
    let ef_com = lds::ef_com(&DataGroup::ALL);
    let ef_sod = signer.sign_sod(&[(1, &dg1), (2, &dg2), (13, &dg13)])?;
    Ok(ChipFiles { mrz, ef_com, dg1, dg2, dg13, ef_sod })
}
