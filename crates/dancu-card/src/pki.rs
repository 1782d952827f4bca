//! The card PKI: Country Signing CA (CSCA) and Document Signer (DS) certificates per the
//! ICAO 9303 Part 12 profiles, the CSCA's CRL, and checking a DS against them.
//!
//! Keys are [`dancu_keys::Signer`]s (software or PKCS#11): this module only builds and checks
//! the DER; private keys never pass through it.

use std::str::FromStr;
use std::time::Duration;

use const_oid::ObjectIdentifier;
use const_oid::db::rfc5280::{
    ID_CE_AUTHORITY_KEY_IDENTIFIER, ID_CE_BASIC_CONSTRAINTS, ID_CE_CRL_NUMBER, ID_CE_KEY_USAGE,
    ID_CE_PRIVATE_KEY_USAGE_PERIOD, ID_CE_SUBJECT_KEY_IDENTIFIER,
};
use dancu_keys::Signer;
use der::asn1::{BitString, GeneralizedTime, OctetString, Uint, UtcTime};
use der::{Decode, Encode};
use sha2::{Digest, Sha256};
use spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::certificate::{TbsCertificate, Version};
use x509_cert::crl::{CertificateList, RevokedCert, TbsCertList};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, CrlNumber, KeyUsage, KeyUsages, PrivateKeyUsagePeriod,
    SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::time::{Time, Validity};

use crate::CardError;

/// ecdsa-with-SHA256.
pub const ECDSA_WITH_SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.2");
/// ICAO documentTypeList extension (DS certificates).
pub const DOCUMENT_TYPE_LIST: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.136.1.1.6.2");

/// Validity periods of the profile (ICAO 9303 Part 12 leaves them to the issuing state).
///
/// The longest a card with an expiry can be valid is 22 years (issued at 38, within the 2-year
/// window before 40, valid until 60): a DS certificate outlives its key's last signature by that.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    pub csca_key_usage_days: i64,
    pub ds_key_usage_days: i64,
    pub longest_card_days: i64,
}

impl Default for Periods {
    fn default() -> Self {
        Periods { csca_key_usage_days: 5 * 365, ds_key_usage_days: 365, longest_card_days: 22 * 366 }
    }
}

impl Periods {
    pub fn ds_certificate_days(&self) -> i64 {
        self.ds_key_usage_days + self.longest_card_days
    }
    pub fn csca_certificate_days(&self) -> i64 {
        self.csca_key_usage_days + self.ds_certificate_days()
    }
}

fn der_err(what: &str) -> impl Fn(der::Error) -> CardError + '_ {
    move |e| CardError::Format(format!("{what}: {e}"))
}

/// An X.509 time: UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280 4.1.2.5).
pub fn x509_time(t: OffsetDateTime) -> Result<Time, CardError> {
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(t.unix_timestamp().max(0) as u64))
        .map_err(der_err("time"))?;
    if t.year() < 2050 {
        Ok(Time::UtcTime(UtcTime::from_date_time(dt).map_err(der_err("time"))?))
    } else {
        Ok(Time::GeneralTime(GeneralizedTime::from_date_time(dt)))
    }
}

fn generalized(t: OffsetDateTime) -> Result<GeneralizedTime, CardError> {
    let dt = der::DateTime::from_unix_duration(Duration::from_secs(t.unix_timestamp().max(0) as u64))
        .map_err(der_err("time"))?;
    Ok(GeneralizedTime::from_date_time(dt))
}

/// Seconds since the epoch of an X.509 time.
pub fn unix(t: &Time) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

fn generalized_unix(t: &GeneralizedTime) -> i64 {
    t.to_unix_duration().as_secs() as i64
}

fn ext(oid: ObjectIdentifier, critical: bool, value: &impl Encode) -> Result<Extension, CardError> {
    let bytes = value.to_der().map_err(der_err("extension"))?;
    Ok(Extension { extn_id: oid, critical, extn_value: OctetString::new(bytes).map_err(der_err("extension"))? })
}

/// Key identifier: the first 20 bytes of SHA-256 of the subjectPublicKey bits (RFC 7093, method 1).
pub fn key_identifier(spki: &SubjectPublicKeyInfoOwned) -> Vec<u8> {
    Sha256::digest(spki.subject_public_key.raw_bytes())[..20].to_vec()
}

fn ecdsa_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA256, parameters: None }
}

fn serial(n: u64) -> Result<SerialNumber, CardError> {
    // Positive, minimal: a leading 0x01 keeps the INTEGER positive and of fixed length.
    let mut bytes = vec![0x01];
    bytes.extend_from_slice(&n.to_be_bytes());
    SerialNumber::new(&bytes).map_err(der_err("serial number"))
}

/// The serial number written by [`serial`] back to its number.
pub fn serial_value(s: &SerialNumber) -> Option<u64> {
    let b = s.as_bytes();
    (b.len() == 9 && b[0] == 1).then(|| u64::from_be_bytes(b[1..9].try_into().expect("8 bytes")))
}

fn name(s: &str) -> Result<Name, CardError> {
    Name::from_str(s).map_err(|e| CardError::Field { field: "name", value: s.to_string(), reason: e.to_string() })
}

/// The CSCA's distinguished name.
pub fn csca_name() -> &'static str {
    "CN=CSCA Viet Nam,O=Ministry of Public Security,C=VN"
}

/// A DS's distinguished name: numbered, so that each rotation is a new subject.
pub fn ds_name(number: u64) -> String {
    format!("CN=Document Signer {number:04},OU=Identity Card Production Centre,O=Ministry of Public Security,C=VN")
}

fn sign_tbs(tbs: TbsCertificate, key: &dyn Signer) -> Result<Certificate, CardError> {
    let der = tbs.to_der().map_err(der_err("certificate"))?;
    let sig = key.sign(&der).map_err(|e| CardError::Key(e.to_string()))?;
    Ok(Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(&sig).map_err(der_err("signature"))?,
    })
}

/// The self-signed CSCA certificate: CA:true pathlen 0, keyCertSign + cRLSign (critical),
/// SKI = AKI, privateKeyUsagePeriod.
pub fn csca_certificate(
    key: &dyn Signer,
    serial_no: u64,
    now: OffsetDateTime,
    periods: &Periods,
) -> Result<Certificate, CardError> {
    let spki = SubjectPublicKeyInfoOwned::from_der(key.public_key_der()).map_err(der_err("CSCA public key"))?;
    let kid = key_identifier(&spki);
    let subject = name(csca_name())?;
    let usage_end = now + time::Duration::days(periods.csca_key_usage_days);
    let extensions = vec![
        ext(ID_CE_BASIC_CONSTRAINTS, true, &BasicConstraints { ca: true, path_len_constraint: Some(0) })?,
        ext(ID_CE_KEY_USAGE, true, &KeyUsage(KeyUsages::KeyCertSign | KeyUsages::CRLSign))?,
        ext(
            ID_CE_SUBJECT_KEY_IDENTIFIER,
            false,
            &SubjectKeyIdentifier(OctetString::new(kid.clone()).map_err(der_err("SKI"))?),
        )?,
        ext(
            ID_CE_AUTHORITY_KEY_IDENTIFIER,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(kid).map_err(der_err("AKI"))?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?,
        ext(
            ID_CE_PRIVATE_KEY_USAGE_PERIOD,
            false,
            &PrivateKeyUsagePeriod { not_before: Some(generalized(now)?), not_after: Some(generalized(usage_end)?) },
        )?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: serial(serial_no)?,
        signature: ecdsa_sha256(),
        issuer: subject.clone(),
        validity: Validity {
            not_before: x509_time(now)?,
            not_after: x509_time(now + time::Duration::days(periods.csca_certificate_days()))?,
        },
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign_tbs(tbs, key)
}

/// A DS certificate for `ds_public_spki` signed by the CSCA: digitalSignature (critical),
/// AKI/SKI, privateKeyUsagePeriod, documentTypeList ["ID"].
pub fn ds_certificate(
    csca: &Certificate,
    csca_key: &dyn Signer,
    ds_public_spki: &[u8],
    number: u64,
    serial_no: u64,
    now: OffsetDateTime,
    periods: &Periods,
) -> Result<Certificate, CardError> {
    let csca_spki = &csca.tbs_certificate.subject_public_key_info;
    if csca_spki.to_der().map_err(der_err("CSCA key"))? != csca_key.public_key_der() {
        return Err(CardError::Key("the CSCA key given does not match the CSCA certificate".into()));
    }
    let spki = SubjectPublicKeyInfoOwned::from_der(ds_public_spki).map_err(der_err("DS public key"))?;
    // documentTypeList: SEQUENCE { version INTEGER 0, SET OF PrintableString { "ID" } }.
    let doc_types = der::asn1::Any::from_der(&[0x30, 0x09, 0x02, 0x01, 0x00, 0x31, 0x04, 0x13, 0x02, b'I', b'D'])
        .map_err(der_err("documentTypeList"))?;
    let usage_end = now + time::Duration::days(periods.ds_key_usage_days);
    let extensions = vec![
        ext(ID_CE_KEY_USAGE, true, &KeyUsage(KeyUsages::DigitalSignature.into()))?,
        ext(
            ID_CE_AUTHORITY_KEY_IDENTIFIER,
            false,
            &AuthorityKeyIdentifier {
                key_identifier: Some(OctetString::new(key_identifier(csca_spki)).map_err(der_err("AKI"))?),
                authority_cert_issuer: None,
                authority_cert_serial_number: None,
            },
        )?,
        ext(
            ID_CE_SUBJECT_KEY_IDENTIFIER,
            false,
            &SubjectKeyIdentifier(OctetString::new(key_identifier(&spki)).map_err(der_err("SKI"))?),
        )?,
        ext(
            ID_CE_PRIVATE_KEY_USAGE_PERIOD,
            false,
            &PrivateKeyUsagePeriod { not_before: Some(generalized(now)?), not_after: Some(generalized(usage_end)?) },
        )?,
        ext(DOCUMENT_TYPE_LIST, false, &doc_types)?,
    ];
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: serial(serial_no)?,
        signature: ecdsa_sha256(),
        issuer: csca.tbs_certificate.subject.clone(),
        validity: Validity {
            not_before: x509_time(now)?,
            not_after: x509_time(now + time::Duration::days(periods.ds_certificate_days()))?,
        },
        subject: name(&ds_name(number))?,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    sign_tbs(tbs, csca_key)
}

/// A revoked certificate: its serial number and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    pub serial: u64,
    pub at: OffsetDateTime,
}

/// The CSCA's CRL (v2, AKI and CRL number), valid from `now` for `days`.
pub fn crl(
    csca: &Certificate,
    csca_key: &dyn Signer,
    number: u64,
    revoked: &[Revocation],
    now: OffsetDateTime,
    days: i64,
) -> Result<CertificateList, CardError> {
    let revoked_certificates = revoked
        .iter()
        .map(|r| {
            Ok(RevokedCert {
                serial_number: serial(r.serial)?,
                revocation_date: x509_time(r.at)?,
                crl_entry_extensions: None,
            })
        })
        .collect::<Result<Vec<_>, CardError>>()?;
    let aki = AuthorityKeyIdentifier {
        key_identifier: Some(
            OctetString::new(key_identifier(&csca.tbs_certificate.subject_public_key_info)).map_err(der_err("AKI"))?,
        ),
        authority_cert_issuer: None,
        authority_cert_serial_number: None,
    };
    let tbs = TbsCertList {
        version: Version::V2,
        signature: ecdsa_sha256(),
        issuer: csca.tbs_certificate.subject.clone(),
        this_update: x509_time(now)?,
        next_update: Some(x509_time(now + time::Duration::days(days))?),
        revoked_certificates: (!revoked_certificates.is_empty()).then_some(revoked_certificates),
        crl_extensions: Some(vec![
            ext(ID_CE_AUTHORITY_KEY_IDENTIFIER, false, &aki)?,
            ext(ID_CE_CRL_NUMBER, false, &CrlNumber(Uint::new(&number.to_be_bytes()).map_err(der_err("CRL number"))?))?,
        ]),
    };
    let der = tbs.to_der().map_err(der_err("CRL"))?;
    let sig = csca_key.sign(&der).map_err(|e| CardError::Key(e.to_string()))?;
    Ok(CertificateList {
        tbs_cert_list: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(&sig).map_err(der_err("signature"))?,
    })
}

fn extension(cert: &Certificate, oid: ObjectIdentifier) -> Option<&Extension> {
    cert.tbs_certificate.extensions.as_ref()?.iter().find(|e| e.extn_id == oid)
}

/// The privateKeyUsagePeriod of a certificate as (not before, not after), seconds since the epoch.
pub fn key_usage_period(cert: &Certificate) -> Option<(Option<i64>, Option<i64>)> {
    let e = extension(cert, ID_CE_PRIVATE_KEY_USAGE_PERIOD)?;
    let p = PrivateKeyUsagePeriod::from_der(e.extn_value.as_bytes()).ok()?;
    Some((p.not_before.as_ref().map(generalized_unix), p.not_after.as_ref().map(generalized_unix)))
}

/// Refuses to sign with a key outside its certificate's privateKeyUsagePeriod.
pub fn check_key_usable(cert: &Certificate, now: OffsetDateTime, what: &str) -> Result<(), CardError> {
    let t = now.unix_timestamp();
    let (from, to) = key_usage_period(cert)
        .ok_or_else(|| CardError::Key(format!("the {what} certificate has no privateKeyUsagePeriod")))?;
    let fmt = |s: i64| OffsetDateTime::from_unix_timestamp(s).map(|d| d.date().to_string()).unwrap_or_default();
    if let Some(to) = to.filter(|to| t > *to) {
        return Err(CardError::Key(format!(
            "the {what} key's usage period ended on {}: rotate it (dancu pki rotate-ds) before signing",
            fmt(to)
        )));
    }
    if let Some(from) = from.filter(|from| t < *from) {
        return Err(CardError::Key(format!("the {what} key's usage period starts on {}", fmt(from))));
    }
    Ok(())
}

fn key_usage(cert: &Certificate) -> Option<KeyUsage> {
    KeyUsage::from_der(extension(cert, ID_CE_KEY_USAGE)?.extn_value.as_bytes()).ok()
}

/// Whether `cert`'s signature verifies with `issuer`'s public key.
pub fn signed_by(cert: &Certificate, issuer: &Certificate) -> bool {
    let (Ok(tbs), Ok(key)) = (cert.tbs_certificate.to_der(), issuer.tbs_certificate.subject_public_key_info.to_der())
    else {
        return false;
    };
    cert.signature_algorithm.oid == ECDSA_WITH_SHA256
        && cert.signature.as_bytes().is_some_and(|sig| dancu_keys::verify(&key, &tbs, sig))
}

fn within(validity: &Validity, t: i64) -> bool {
    unix(&validity.not_before) <= t && t <= unix(&validity.not_after)
}

/// Checks a CSCA certificate: self-signed, a CA that signs certificates and CRLs, valid at `now`.
pub fn check_csca(csca: &Certificate, now: OffsetDateTime) -> Result<(), String> {
    if csca.tbs_certificate.issuer != csca.tbs_certificate.subject || !signed_by(csca, csca) {
        return Err("the CSCA certificate is not validly self-signed".into());
    }
    let bc =
        extension(csca, ID_CE_BASIC_CONSTRAINTS).and_then(|e| BasicConstraints::from_der(e.extn_value.as_bytes()).ok());
    if !bc.is_some_and(|b| b.ca) {
        return Err("the CSCA certificate is not a CA (basicConstraints)".into());
    }
    if !key_usage(csca).is_some_and(|k| k.key_cert_sign() && k.crl_sign()) {
        return Err("the CSCA certificate may not sign certificates and CRLs (keyUsage)".into());
    }
    if !within(&csca.tbs_certificate.validity, now.unix_timestamp()) {
        return Err("the CSCA certificate is not valid now".into());
    }
    Ok(())
}

/// Checks a DS certificate against its CSCA (and the CSCA's CRL when given) at `now`.
pub fn check_ds(
    ds: &Certificate,
    csca: &Certificate,
    crl: Option<&CertificateList>,
    now: OffsetDateTime,
) -> Result<(), String> {
    if ds.tbs_certificate.issuer != csca.tbs_certificate.subject {
        return Err("the DS certificate was not issued by this CSCA (issuer differs)".into());
    }
    if !signed_by(ds, csca) {
        return Err("the DS certificate's signature does not verify with the CSCA's key".into());
    }
    if !within(&ds.tbs_certificate.validity, now.unix_timestamp()) {
        return Err("the DS certificate is not valid now".into());
    }
    if !key_usage(ds).is_some_and(|k| k.digital_signature()) {
        return Err("the DS certificate does not allow digitalSignature (keyUsage)".into());
    }
    if let Some(crl) = crl {
        check_crl(crl, csca, now)?;
        let revoked = crl.tbs_cert_list.revoked_certificates.iter().flatten();
        if revoked.into_iter().any(|r| r.serial_number == ds.tbs_certificate.serial_number) {
            return Err("the DS certificate is revoked (on the CSCA's CRL)".into());
        }
    }
    Ok(())
}

/// Checks a CRL: issued and signed by the CSCA, and current at `now`.
pub fn check_crl(crl: &CertificateList, csca: &Certificate, now: OffsetDateTime) -> Result<(), String> {
    let tbs = &crl.tbs_cert_list;
    if tbs.issuer != csca.tbs_certificate.subject {
        return Err("the CRL was not issued by this CSCA".into());
    }
    let (Ok(der), Ok(key)) = (tbs.to_der(), csca.tbs_certificate.subject_public_key_info.to_der()) else {
        return Err("the CRL does not re-encode".into());
    };
    if !crl.signature.as_bytes().is_some_and(|sig| dancu_keys::verify(&key, &der, sig)) {
        return Err("the CRL's signature does not verify with the CSCA's key".into());
    }
    let t = now.unix_timestamp();
    if unix(&tbs.this_update) > t {
        return Err("the CRL is dated in the future".into());
    }
    if tbs.next_update.as_ref().is_some_and(|n| unix(n) < t) {
        return Err("the CRL is out of date (past its nextUpdate): publish a new one (dancu pki crl)".into());
    }
    Ok(())
}

/// PEM of a DER certificate or CRL.
pub fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// DER from PEM (the first block with `label`).
pub fn from_pem(label: &str, text: &str) -> Result<Vec<u8>, CardError> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start =
        text.find(&begin).ok_or_else(|| CardError::Format(format!("no {label} in the PEM text")))? + begin.len();
    let stop = text[start..].find(&end).ok_or_else(|| CardError::Format(format!("unterminated {label} PEM")))? + start;
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text[start..stop].bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(CardError::Format(format!("{label} PEM: {:?} is not base64", c as char))),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Ok(out)
}

/// Parses a DER certificate.
pub fn parse_certificate(der: &[u8]) -> Result<Certificate, CardError> {
    Certificate::from_der(der).map_err(der_err("certificate"))
}

/// Parses a DER CRL.
pub fn parse_crl(der: &[u8]) -> Result<CertificateList, CardError> {
    CertificateList::from_der(der).map_err(der_err("CRL"))
}
