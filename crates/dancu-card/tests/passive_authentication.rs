//! Personalization and passive authentication end to end, with our verifier.

mod common;

use common::*;
use dancu_card::dg13::Dg13;
use dancu_card::lds;
use dancu_card::pki::{Periods, Revocation};
use dancu_card::verify::passive_authentication;
use dancu_card::{CardError, personalize};

#[test]
fn a_personalized_card_passes_and_decodes() {
    let p = pki();
    let files = personalize(&card(), &p.signer, p.now).unwrap();
    let r = passive_authentication(
        &files.ef_sod,
        &groups(&files),
        std::slice::from_ref(&p.csca),
        std::slice::from_ref(&p.crl),
        p.now,
    );
    assert!(r.passed(), "{:#?}", r.checks);
    assert_eq!(r.mrz.as_ref().unwrap().personal_id, "001093047064");
    assert_eq!(r.dg13.as_ref().unwrap(), &card().dg13());
    assert_eq!(Dg13::decode(&files.dg13).unwrap().full_name, "Ưng Hoàng Hiệp");
    assert_eq!(lds::parse_dg2(&files.dg2).unwrap(), FACE);
    assert_eq!(lds::parse_ef_com(&files.ef_com).unwrap(), lds::DataGroup::ALL.to_vec());
    assert_eq!(files.mrz[0], "IDVNM0930470641001093047064<<2");
}

#[test]
fn any_changed_byte_of_a_data_group_fails() {
    let p = pki();
    let files = personalize(&card(), &p.signer, p.now).unwrap();
    for (n, file) in groups(&files) {
        for i in (0..file.len()).step_by(1 + file.len() / 97) {
            let mut changed = file.to_vec();
            changed[i] ^= 0x01;
            let mut g = groups(&files);
            g.retain(|(m, _)| *m != n);
            g.push((n, &changed));
            let r = passive_authentication(
                &files.ef_sod,
                &g,
                std::slice::from_ref(&p.csca),
                std::slice::from_ref(&p.crl),
                p.now,
            );
            assert!(!r.passed(), "DG{n} byte {i} changed unnoticed");
        }
    }
}

#[test]
fn any_changed_byte_of_the_sod_fails() {
    let p = pki();
    let files = personalize(&card(), &p.signer, p.now).unwrap();
    for i in 0..files.ef_sod.len() {
        let mut sod = files.ef_sod.clone();
        sod[i] ^= 0x01;
        let r = passive_authentication(
            &sod,
            &groups(&files),
            std::slice::from_ref(&p.csca),
            std::slice::from_ref(&p.crl),
            p.now,
        );
        assert!(!r.passed(), "EF.SOD byte {i} changed unnoticed");
    }
}

#[test]
fn a_revoked_or_foreign_ds_fails() {
    let p = pki_with(Periods::default(), &[Revocation { serial: 2, at: now() }], 2);
    let files = personalize(&card(), &p.signer, p.now).unwrap();
    let r = passive_authentication(
        &files.ef_sod,
        &groups(&files),
        std::slice::from_ref(&p.csca),
        std::slice::from_ref(&p.crl),
        p.now,
    );
    assert!(!r.passed());
    assert!(r.checks.iter().any(|c| !c.ok && c.detail.contains("revoked")), "{:#?}", r.checks);
    // Another country's CSCA with the same name does not verify this DS.
    let other = pki();
    let r = passive_authentication(
        &files.ef_sod,
        &groups(&files),
        std::slice::from_ref(&other.csca),
        std::slice::from_ref(&other.crl),
        p.now,
    );
    assert!(!r.passed());
    // No CRL: revocation cannot be checked, so it does not pass.
    let r = passive_authentication(&files.ef_sod, &groups(&files), std::slice::from_ref(&p.csca), &[], p.now);
    assert!(!r.passed());
}

#[test]
fn a_ds_key_past_its_usage_period_does_not_sign() {
    let p = pki_with(Periods { ds_key_usage_days: 30, ..Periods::default() }, &[], 2);
    let later = p.now + time::Duration::days(31);
    let e = personalize(&card(), &p.signer, later).unwrap_err();
    assert!(matches!(&e, CardError::Key(m) if m.contains("usage period ended")), "{e}");
    // Within the period it signs.
    assert!(personalize(&card(), &p.signer, p.now + time::Duration::days(29)).is_ok());
}

#[test]
fn a_bad_photo_is_refused_by_name() {
    let p = pki();
    let mut c = card();
    c.photo_jpeg = b"GIF89a not a jpeg".to_vec();
    let e = personalize(&c, &p.signer, p.now).unwrap_err().to_string();
    assert!(e.starts_with("photo") && e.contains("not a JPEG"), "{e}");
}

#[test]
fn a_card_without_expiry_verifies() {
    let p = pki();
    let mut c = card();
    c.birth_date = dancu_core::PartialDate::Year(1950);
    c.personal_id = dancu_core::PersonalId::parse("001050047064").unwrap();
    c.expiry = None;
    let files = personalize(&c, &p.signer, p.now).unwrap();
    let r = passive_authentication(
        &files.ef_sod,
        &groups(&files),
        std::slice::from_ref(&p.csca),
        std::slice::from_ref(&p.crl),
        p.now,
    );
    assert!(r.passed(), "{:#?}", r.checks);
    assert_eq!(r.dg13.unwrap().expiry_date, dancu_card::dg13::NO_EXPIRY);
    assert_eq!(r.mrz.unwrap().expiry, None);
}
