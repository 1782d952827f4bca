//! Shared fixtures: a CSCA, a DS, a CRL and a card, with software keys.

#![allow(dead_code)]

use dancu_card::pki::{self, Periods, Revocation};
use dancu_card::{CardContent, DocumentSigner};
use dancu_core::{PartialDate, PersonalId, Sex};
use dancu_keys::{Signer, SoftwareKey};
use time::{Date, Month, OffsetDateTime};
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

pub const FACE: &[u8] = include_bytes!("../../testdata/face.jpg");

pub struct Pki {
    pub csca_key: SoftwareKey,
    pub csca: Certificate,
    pub ds: Certificate,
    pub crl: CertificateList,
    pub signer: DocumentSigner,
    pub now: OffsetDateTime,
}

pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc().replace_nanosecond(0).unwrap()
}

pub fn pki_with(periods: Periods, revoked: &[Revocation], ds_serial: u64) -> Pki {
    let now = now();
    let csca_key = SoftwareKey::generate().unwrap();
    let csca = pki::csca_certificate(&csca_key, 1, now, &periods).unwrap();
    let ds_key = SoftwareKey::generate().unwrap();
    let ds = pki::ds_certificate(&csca, &csca_key, ds_key.public_key_der(), 1, ds_serial, now, &periods).unwrap();
    let crl = pki::crl(&csca, &csca_key, 1, revoked, now, 30).unwrap();
    let signer = DocumentSigner::new(Box::new(ds_key), ds.clone()).unwrap();
    Pki { csca_key, csca, ds, crl, signer, now }
}

pub fn pki() -> Pki {
    pki_with(Periods::default(), &[], 2)
}

pub fn card() -> CardContent {
    CardContent {
        personal_id: PersonalId::parse("001093047064").unwrap(),
        surname: "Ưng".into(),
        middle: "Hoàng".into(),
        given: "Hiệp".into(),
        birth_date: PartialDate::from_ymd(1993, 1, 5).unwrap(),
        sex: Sex::Male,
        nationality: "Việt Nam".into(),
        ethnicity: Some("Kinh".into()),
        religion: Some("Không".into()),
        hometown: Some("Xã Đông Anh, Thành phố Hà Nội".into()),
        residence: Some("Số 12 ngõ 34 phố Đội Cấn, Phường Ba Đình, Thành phố Hà Nội".into()),
        identifying_features: Some("Nốt ruồi C:1cm trên trước mày trái".into()),
        issue_date: Date::from_calendar_date(2025, Month::March, 3).unwrap(),
        expiry: Some(Date::from_calendar_date(2033, Month::January, 5).unwrap()),
        father: Some("Ưng Văn Hải".into()),
        mother: Some("Đỗ Thị Lụa".into()),
        spouse: None,
        legacy_id: Some("013456789".into()),
        card_serial: Some("0000A1B2C3D4E5F6".into()),
        photo_jpeg: FACE.to_vec(),
    }
}

/// Whether an external tool is there; when it is not, a local run skips and CI fails.
pub fn tool(cmd: &str, args: &[&str]) -> bool {
    let ok = std::process::Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var("CI").as_deref() == Ok("true") {
        panic!("{cmd} is required in CI ({cmd} {}) and is missing", args.join(" "));
    }
    if !ok {
        eprintln!("skipped: {cmd} is not installed");
    }
    ok
}

pub fn groups(files: &dancu_card::ChipFiles) -> Vec<(u8, &[u8])> {
    vec![(1, files.dg1.as_slice()), (2, files.dg2.as_slice()), (13, files.dg13.as_slice())]
}
