//! dancu identity-card chip data and card rules.
//!
//! - [`mrz`]: the TD1 machine-readable zone in the Vietnamese layout, check digits.
//! - [`lds`], [`dg13`]: EF.COM, DG1, DG2 (ISO/IEC 19794-5 face record), DG13 (encoder and decoder).
//! - [`sod`]: EF.SOD, CMS SignedData over the LDS Security Object.
//! - [`pki`]: CSCA and Document Signer certificates (ICAO 9303 Part 12 profiles), the CRL.
//! - [`personalize`]: from a person to the chip's files; [`verify`]: passive authentication.
//! - [`validity`]: card expiry by the law (age milestones, the 2-year rule).
//! - [`photo`]: face photo and fingerprint image checks.
//!
//! Architecture invariant: pure. No file, network or clock access: callers pass "now" and the
//! signing keys ([`dancu_keys::Signer`], software or PKCS#11) in. Private keys never enter.

pub mod application;
pub mod dg13;
pub mod lds;
pub mod mrz;
pub mod personalize;
pub mod photo;
pub mod pki;
pub mod sod;
mod tlv;
pub mod validity;
pub mod verify;

pub use personalize::{CardContent, ChipFiles, personalize};
pub use sod::DocumentSigner;
/// The certificate types of the card PKI (for callers that pass them through).
pub use x509_cert::{Certificate, crl::CertificateList};

/// Why card data could not be built or read. Each names the field or structure at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CardError {
    #[error("{field} = {value:?}: {reason}")]
    Field { field: &'static str, value: String, reason: String },
    #[error("malformed {0}")]
    Format(String),
    #[error("key: {0}")]
    Key(String),
}
