//! EF.SOD: a CMS SignedData (RFC 5652) over the LDS Security Object (ICAO 9303 Part 10 4.6.2),
//! SHA-256 with ECDSA P-256, signed by the Document Signer whose certificate it carries.

use cms::cert::{CertificateChoices, IssuerAndSerialNumber};
use cms::content_info::{CmsVersion, ContentInfo};
use cms::signed_data::{
    CertificateSet, EncapsulatedContentInfo, SignedData, SignerIdentifier, SignerInfo, SignerInfos,
};
use const_oid::ObjectIdentifier;
use const_oid::db::rfc5911::{ID_CONTENT_TYPE, ID_MESSAGE_DIGEST, ID_SIGNED_DATA};
use dancu_keys::Signer;
use der::asn1::{Any, OctetString, SetOfVec};
use der::{Decode, Encode, Sequence};
use sha2::{Digest, Sha256};
use spki::AlgorithmIdentifierOwned;
use x509_cert::Certificate;
use x509_cert::attr::Attribute;

use crate::CardError;
use crate::pki::ECDSA_WITH_SHA256;
use crate::tlv;

/// id-icao-mrtd-security-ldsSecurityObject.
pub const LDS_SECURITY_OBJECT: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.23.136.1.1.1");
/// id-sha256.
pub const SHA256: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.101.3.4.2.1");

/// DataGroupHash ::= SEQUENCE { dataGroupNumber, dataGroupHashValue }.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct DataGroupHash {
    pub number: u8,
    pub hash: OctetString,
}

/// LDSSecurityObject ::= SEQUENCE { version (0), hashAlgorithm, dataGroupHashValues }.
#[derive(Debug, Clone, PartialEq, Eq, Sequence)]
pub struct LdsSecurityObject {
    pub version: u8,
    pub hash_algorithm: AlgorithmIdentifierOwned,
    pub hashes: Vec<DataGroupHash>,
}

fn der_err(what: &'static str) -> impl Fn(der::Error) -> CardError {
    move |e| CardError::Format(format!("{what}: {e}"))
}

fn sha256_alg() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned { oid: SHA256, parameters: None }
}

/// The LDS Security Object over `(number, whole DG file)` pairs.
pub fn lds_security_object(groups: &[(u8, &[u8])]) -> Result<Vec<u8>, CardError> {
    let hashes = groups
        .iter()
        .map(|(n, file)| {
            Ok(DataGroupHash {
                number: *n,
                hash: OctetString::new(Sha256::digest(file).to_vec()).map_err(der_err("hash"))?,
            })
        })
        .collect::<Result<Vec<_>, CardError>>()?;
    LdsSecurityObject { version: 0, hash_algorithm: sha256_alg(), hashes }
        .to_der()
        .map_err(der_err("LDS security object"))
}

/// A Document Signer ready to sign: its key and certificate (checked to belong together).
pub struct DocumentSigner {
    key: Box<dyn Signer>,
    certificate: Certificate,
    sid: SignerIdentifier,
    certificates: CertificateSet,
}

impl DocumentSigner {
    pub fn new(key: Box<dyn Signer>, certificate: Certificate) -> Result<Self, CardError> {
        let spki = certificate.tbs_certificate.subject_public_key_info.to_der().map_err(der_err("DS certificate"))?;
        if spki != key.public_key_der() {
            return Err(CardError::Key("the DS key does not match the DS certificate".into()));
        }
        let sid = SignerIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
            issuer: certificate.tbs_certificate.issuer.clone(),
            serial_number: certificate.tbs_certificate.serial_number.clone(),
        });
        let certificates = CertificateSet(
            SetOfVec::try_from(vec![CertificateChoices::Certificate(certificate.clone())])
                .map_err(der_err("certificates"))?,
        );
        Ok(DocumentSigner { key, certificate, sid, certificates })
    }

    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// Refuses when the DS key is outside its privateKeyUsagePeriod at `now`.
    pub fn check_usable(&self, now: time::OffsetDateTime) -> Result<(), CardError> {
        crate::pki::check_key_usable(&self.certificate, now, "Document Signer")
    }

    /// EF.SOD (`77` + ContentInfo DER) over the given data-group files.
    pub fn sign_sod(&self, groups: &[(u8, &[u8])]) -> Result<Vec<u8>, CardError> {
        let lds = lds_security_object(groups)?;
        let digest = Sha256::digest(&lds);
        let attr = |oid: ObjectIdentifier, value: Any| -> Result<Attribute, CardError> {
            Ok(Attribute { oid, values: SetOfVec::try_from(vec![value]).map_err(der_err("attribute"))? })
        };
        let signed_attrs = SetOfVec::try_from(vec![
            attr(ID_CONTENT_TYPE, Any::encode_from(&LDS_SECURITY_OBJECT).map_err(der_err("content type"))?)?,
            attr(
                ID_MESSAGE_DIGEST,
                Any::encode_from(&OctetString::new(digest.to_vec()).map_err(der_err("digest"))?)
                    .map_err(der_err("message digest"))?,
            )?,
        ])
        .map_err(der_err("signed attributes"))?;
        let to_sign = signed_attrs.to_der().map_err(der_err("signed attributes"))?;
        let signature = self.key.sign(&to_sign).map_err(|e| CardError::Key(e.to_string()))?;
        let signer = SignerInfo {
            version: CmsVersion::V1,
            sid: self.sid.clone(),
            digest_alg: sha256_alg(),
            signed_attrs: Some(signed_attrs),
            signature_algorithm: AlgorithmIdentifierOwned { oid: ECDSA_WITH_SHA256, parameters: None },
            signature: OctetString::new(signature).map_err(der_err("signature"))?,
            unsigned_attrs: None,
        };
        let signed = SignedData {
            version: CmsVersion::V3,
            digest_algorithms: SetOfVec::try_from(vec![sha256_alg()]).map_err(der_err("digest algorithms"))?,
            encap_content_info: EncapsulatedContentInfo {
                econtent_type: LDS_SECURITY_OBJECT,
                econtent: Some(
                    Any::encode_from(&OctetString::new(lds).map_err(der_err("content"))?)
                        .map_err(der_err("content"))?,
                ),
            },
            certificates: Some(self.certificates.clone()),
            crls: None,
            signer_infos: SignerInfos(SetOfVec::try_from(vec![signer]).map_err(der_err("signer infos"))?),
        };
        let info = ContentInfo {
            content_type: ID_SIGNED_DATA,
            content: Any::encode_from(&signed).map_err(der_err("SignedData"))?,
        };
        Ok(tlv::tlv(0x77, &info.to_der().map_err(der_err("ContentInfo"))?))
    }
}

/// EF.SOD taken apart: the SignedData, the LDS Security Object and its raw DER.
pub struct ParsedSod {
    pub signed: SignedData,
    pub lds_der: Vec<u8>,
    pub lds: LdsSecurityObject,
}

/// Parses EF.SOD (with its `77` wrapper).
pub fn parse_sod(bytes: &[u8]) -> Result<ParsedSod, CardError> {
    let (ci, used) = tlv::expect(bytes, 0x77, "EF.SOD")?;
    if used != bytes.len() {
        return Err(CardError::Format("EF.SOD: bytes after the end of the object".into()));
    }
    let info = ContentInfo::from_der(ci).map_err(der_err("EF.SOD ContentInfo"))?;
    if info.content_type != ID_SIGNED_DATA {
        return Err(CardError::Format(format!("EF.SOD: content type {} is not SignedData", info.content_type)));
    }
    let signed: SignedData = info.content.decode_as().map_err(der_err("EF.SOD SignedData"))?;
    if signed.encap_content_info.econtent_type != LDS_SECURITY_OBJECT {
        return Err(CardError::Format("EF.SOD: the signed content is not an LDS Security Object".into()));
    }
    let econtent = signed
        .encap_content_info
        .econtent
        .as_ref()
        .ok_or_else(|| CardError::Format("EF.SOD: no signed content".into()))?;
    let octets: OctetString = econtent.decode_as().map_err(der_err("EF.SOD content"))?;
    let lds_der = octets.as_bytes().to_vec();
    let lds = LdsSecurityObject::from_der(&lds_der).map_err(der_err("LDS Security Object"))?;
    // The profile, strictly: versions, the one digest algorithm, DER throughout (so that no byte
    // outside the signatures can change unnoticed either).
    let strict = |ok: bool, what: &str| if ok { Ok(()) } else { Err(CardError::Format(format!("EF.SOD: {what}"))) };
    strict(signed.version == CmsVersion::V3, "SignedData version is not 3")?;
    strict(signed.signer_infos.0.iter().all(|s| s.version == CmsVersion::V1), "SignerInfo version is not 1")?;
    strict(signed.digest_algorithms.iter().map(|a| a.oid).eq([SHA256]), "digest algorithms are not exactly SHA-256")?;
    strict(lds.version == 0, "LDS Security Object version is not 0")?;
    strict(info.to_der().is_ok_and(|d| d == ci), "not DER-encoded")?;
    Ok(ParsedSod { signed, lds_der, lds })
}
