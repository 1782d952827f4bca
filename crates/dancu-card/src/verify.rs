//! Passive authentication (ICAO 9303 Part 11, 5.1): what any verifier checks on a chip.
//!
//! 1. The DS certificate in EF.SOD chains to a trusted CSCA and is valid; it is not on the CSCA's
//!    current CRL (two checks).
//! 2. The SignerInfo signature verifies over the DER of the signed attributes with the DS key;
//!    content-type is the LDS Security Object and message-digest is SHA-256 of the eContent.
//! 3. Every data group read hashes to its entry in the LDS Security Object.

use cms::cert::CertificateChoices;
use cms::signed_data::SignerIdentifier;
use const_oid::db::rfc5911::{ID_CONTENT_TYPE, ID_MESSAGE_DIGEST};
use der::Encode;
use der::asn1::{ObjectIdentifier, OctetString};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use x509_cert::Certificate;
use x509_cert::crl::CertificateList;

use crate::dg13::Dg13;
use crate::lds::{self, DataGroup};
use crate::mrz::{self, ParsedMrz};
use crate::pki::{self, ECDSA_WITH_SHA256};
use crate::sod::{self, LDS_SECURITY_OBJECT, SHA256};

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The outcome of passive authentication, with the decoded data.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
    pub ds_subject: Option<String>,
    pub mrz: Option<ParsedMrz>,
    pub mrz_text: Option<String>,
    pub dg13: Option<Dg13>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }
    fn push(&mut self, name: &'static str, result: Result<String, String>) -> bool {
        let ok = result.is_ok();
        let detail = result.unwrap_or_else(|e| e);
        self.checks.push(Check { name, ok, detail });
        ok
    }
}

/// Passive authentication of `ef_sod` and the data groups read (`(number, file)`), against the
/// trusted CSCA certificates and their CRLs, at `now`.
pub fn passive_authentication(
    ef_sod: &[u8],
    groups: &[(u8, &[u8])],
    cscas: &[Certificate],
    crls: &[CertificateList],
    now: OffsetDateTime,
) -> Report {
    let mut r = Report::default();
    let parsed = match sod::parse_sod(ef_sod) {
        Ok(p) => {
            r.push(
                "EF.SOD structure",
                Ok(format!("SignedData v3, LDS Security Object v0 with {} hashes", p.lds.hashes.len())),
            );
            p
        }
        Err(e) => {
            r.push("EF.SOD structure", Err(e.to_string()));
            return r;
        }
    };
    let signed = &parsed.signed;
    let Some(signer) = signed.signer_infos.0.iter().next().filter(|_| signed.signer_infos.0.len() == 1) else {
        r.push("SignerInfo", Err("EF.SOD must carry exactly one SignerInfo".into()));
        return r;
    };
    // The DS certificate named by the SignerInfo.
    let ds = signed.certificates.iter().flat_map(|s| s.0.iter()).find_map(|c| match (c, &signer.sid) {
        (CertificateChoices::Certificate(cert), SignerIdentifier::IssuerAndSerialNumber(id))
            if cert.tbs_certificate.issuer == id.issuer && cert.tbs_certificate.serial_number == id.serial_number =>
        {
            Some(cert)
        }
        _ => None,
    });
    let Some(ds) = ds else {
        r.push("DS certificate", Err("EF.SOD does not carry the certificate of its signer".into()));
        return r;
    };
    r.ds_subject = Some(ds.tbs_certificate.subject.to_string());
    // 1. Chain, then revocation (the CSCA's current CRL).
    let csca = cscas.iter().find(|c| c.tbs_certificate.subject == ds.tbs_certificate.issuer);
    let chain = match csca {
        None => Err(format!("no trusted CSCA named {}", ds.tbs_certificate.issuer)),
        Some(csca) => pki::check_csca(csca, now)
            .and_then(|_| pki::check_ds(ds, csca, None, now))
            .map(|_| format!("{} → {}", csca.tbs_certificate.subject, ds.tbs_certificate.subject)),
    };
    let chained = r.push("DS certificate chains to the CSCA and is valid", chain);
    let revocation = match csca {
        Some(csca) if chained => match crls.iter().find(|c| c.tbs_cert_list.issuer == csca.tbs_certificate.subject) {
            None => Err("no CRL of the CSCA was given: revocation cannot be checked".to_string()),
            Some(crl) => pki::check_ds(ds, csca, Some(crl), now)
                .map(|_| format!("not on the CSCA's CRL (number of entries: {})", revoked_count(crl))),
        },
        _ => Err("not checked: the DS certificate does not chain to a trusted CSCA".to_string()),
    };
    r.push("DS certificate not revoked (the CSCA's current CRL)", revocation);
    // 2. SignerInfo.
    let sig_check = (|| -> Result<String, String> {
        if signer.digest_alg.oid != SHA256 || signer.signature_algorithm.oid != ECDSA_WITH_SHA256 {
            return Err(format!(
                "algorithms {} / {} are not SHA-256 / ECDSA-SHA256",
                signer.digest_alg.oid, signer.signature_algorithm.oid
            ));
        }
        let attrs = signer.signed_attrs.as_ref().ok_or("no signed attributes")?;
        let value = |oid: ObjectIdentifier| attrs.iter().find(|a| a.oid == oid).and_then(|a| a.values.iter().next());
        let content_type: ObjectIdentifier =
            value(ID_CONTENT_TYPE).ok_or("no content-type attribute")?.decode_as().map_err(|e| e.to_string())?;
        if content_type != LDS_SECURITY_OBJECT {
            return Err(format!("content-type attribute is {content_type}"));
        }
        let md: OctetString =
            value(ID_MESSAGE_DIGEST).ok_or("no message-digest attribute")?.decode_as().map_err(|e| e.to_string())?;
        if md.as_bytes() != &Sha256::digest(&parsed.lds_der)[..] {
            return Err("message-digest does not match the LDS Security Object".into());
        }
        let der = attrs.to_der().map_err(|e| e.to_string())?;
        let key = ds.tbs_certificate.subject_public_key_info.to_der().map_err(|e| e.to_string())?;
        if !dancu_keys::verify(&key, &der, signer.signature.as_bytes()) {
            return Err("the signature does not verify with the DS key".into());
        }
        Ok("ECDSA P-256 / SHA-256 over the signed attributes; message-digest matches".into())
    })();
    r.push("SignerInfo signature", sig_check);
    // 3. Data-group hashes.
    if parsed.lds.hash_algorithm.oid != SHA256 {
        r.push("data-group hashes", Err(format!("hash algorithm {} is not SHA-256", parsed.lds.hash_algorithm.oid)));
        return r;
    }
    for (n, file) in groups {
        let name: &'static str = match n {
            1 => "DG1 hash",
            2 => "DG2 hash",
            13 => "DG13 hash",
            _ => "data-group hash",
        };
        let entry = parsed.lds.hashes.iter().find(|h| h.number == *n);
        let result = match entry {
            None => Err(format!("DG{n} is not listed in EF.SOD")),
            Some(h) if h.hash.as_bytes() == &Sha256::digest(file)[..] => Ok(format!("DG{n} matches")),
            Some(_) => Err(format!("DG{n} does not match its hash in EF.SOD: the file was changed")),
        };
        r.push(name, result);
    }
    // Decode what was read.
    if let Some((_, dg1)) = groups.iter().find(|(n, _)| *n == DataGroup::Dg1.number()) {
        match lds::parse_dg1(dg1).and_then(|t| mrz::parse(&t).map(|p| (t, p))) {
            Ok((t, p)) => {
                r.mrz_text = Some(
                    t.as_bytes()
                        .chunks(30)
                        .map(|c| String::from_utf8_lossy(c).into_owned())
                        .collect::<Vec<_>>()
                        .join("\n"),
                );
                r.push("MRZ check digits", Ok("all check digits are right".into()));
                r.mrz = Some(p);
            }
            Err(e) => {
                r.push("MRZ check digits", Err(e.to_string()));
            }
        }
    }
    if let Some((_, dg13)) = groups.iter().find(|(n, _)| *n == DataGroup::Dg13.number()) {
        match Dg13::decode(dg13) {
            Ok(d) => {
                let agree = r.mrz.as_ref().is_none_or(|m| m.personal_id == d.personal_id);
                r.push(
                    "DG13 decodes and agrees with DG1",
                    if agree {
                        Ok("personal ID numbers agree".into())
                    } else {
                        Err("DG1 and DG13 name different personal IDs".into())
                    },
                );
                r.dg13 = Some(d);
            }
            Err(e) => {
                r.push("DG13 decodes and agrees with DG1", Err(e.to_string()));
            }
        }
    }
    r
}

fn revoked_count(crl: &CertificateList) -> usize {
    crl.tbs_cert_list.revoked_certificates.as_ref().map_or(0, |v| v.len())
}

/// Reads the first certificate of a PEM or DER file's contents.
pub fn certificate_from_bytes(bytes: &[u8]) -> Result<Certificate, crate::CardError> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN CERTIFICATE-----") => {
            pki::parse_certificate(&pki::from_pem("CERTIFICATE", text)?)
        }
        _ => pki::parse_certificate(bytes),
    }
}

/// Reads a CRL from PEM or DER.
pub fn crl_from_bytes(bytes: &[u8]) -> Result<CertificateList, crate::CardError> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN X509 CRL-----") => pki::parse_crl(&pki::from_pem("X509 CRL", text)?),
        _ => pki::parse_crl(bytes),
    }
}
