//! Signing keys behind one interface. [`Signer`] is what the rest of dancu uses; the
//! [`SoftwareKey`] keeps an ECDSA P-256 key in a PKCS#8 PEM file (mode 0600) for development
//! and single-machine installs. [`pkcs11::Pkcs11Key`] (an HSM through PKCS#11; SoftHSM2 in
//! tests) is the production path and implements the same trait.
//!
//! Architecture invariant: private key material never leaves this crate (no getter returns it)
//! and is never logged.

pub mod pkcs11;

use std::path::Path;

mod secret;
pub use secret::SecretBox;

use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Something that signs with ECDSA P-256 / SHA-256.
pub trait Signer: Send + Sync {
    /// A short stable identifier: the first 16 hex digits of SHA-256 of the public key (SPKI DER).
    fn key_id(&self) -> &str;
    /// The public key as SubjectPublicKeyInfo DER.
    fn public_key_der(&self) -> &[u8];
    /// An ECDSA signature over SHA-256 of `message` as JOSE wants it (ES256, RFC 7518 §3.4):
    /// `r || s`, 64 bytes.
    fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], KeyError>;
    /// The same signature DER-encoded, as X.509 and CMS want it.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        raw_to_der(&self.sign_raw(message)?)
    }
}

/// The key id of a public key (SPKI DER).
pub fn key_id(spki_der: &[u8]) -> String {
    Sha256::digest(spki_der).iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Verifies a DER ECDSA P-256 signature with a public key given as SPKI DER.
pub fn verify(spki_der: &[u8], message: &[u8], signature_der: &[u8]) -> bool {
    let (Ok(key), Ok(sig)) = (VerifyingKey::from_public_key_der(spki_der), Signature::from_der(signature_der)) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// An ECDSA signature given as `r || s` (64 bytes) in DER, as X.509 and CMS want it.
pub fn raw_to_der(raw: &[u8]) -> Result<Vec<u8>, KeyError> {
    let sig = Signature::from_slice(raw).map_err(|e| KeyError::Sign(format!("not an r || s signature: {e}")))?;
    Ok(sig.to_der().as_bytes().to_vec())
}

/// Verifies an ES256 signature given as `r || s` (64 bytes) with a public key as SPKI DER.
pub fn verify_raw(spki_der: &[u8], message: &[u8], raw: &[u8]) -> bool {
    let (Ok(key), Ok(sig)) = (VerifyingKey::from_public_key_der(spki_der), Signature::from_slice(raw)) else {
        return false;
    };
    key.verify(message, &sig).is_ok()
}

/// A parsed P-256 public key, to verify many signatures without parsing the key each time.
#[derive(Clone, Debug)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    pub fn from_spki_der(spki_der: &[u8]) -> Option<Self> {
        VerifyingKey::from_public_key_der(spki_der).ok().map(PublicKey)
    }

    /// From PEM text ("PUBLIC KEY", SPKI); the reason when it is not a P-256 key.
    pub fn from_pem(pem: &str) -> Result<Self, String> {
        VerifyingKey::from_public_key_pem(pem.trim()).map(PublicKey).map_err(|e| format!("not a P-256 public key: {e}"))
    }

    /// Verifies an ES256 signature given as `r || s`.
    pub fn verify_raw(&self, message: &[u8], raw: &[u8]) -> bool {
        Signature::from_slice(raw).is_ok_and(|sig| self.0.verify(message, &sig).is_ok())
    }

    /// From a JWK's affine coordinates (x, y), 32 bytes each; `None` if not a point of P-256.
    pub fn from_coordinates(x: &[u8], y: &[u8]) -> Option<Self> {
        if x.len() != 32 || y.len() != 32 {
            return None;
        }
        let point = p256::EncodedPoint::from_affine_coordinates(x.into(), y.into(), false);
        VerifyingKey::from_encoded_point(&point).ok().map(PublicKey)
    }

    /// The key as PEM text ("PUBLIC KEY").
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).expect("a P-256 public key encodes")
    }

    pub fn spki_der(&self) -> Vec<u8> {
        self.0.to_public_key_der().expect("a P-256 public key encodes").as_bytes().to_vec()
    }

    /// The affine coordinates (x, y), 32 bytes each: a JWK's `x` and `y`.
    pub fn coordinates(&self) -> ([u8; 32], [u8; 32]) {
        let point = self.0.to_encoded_point(false);
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        x.copy_from_slice(point.x().expect("uncompressed point"));
        y.copy_from_slice(point.y().expect("uncompressed point"));
        (x, y)
    }
}

/// Reads a public key from a PEM file (SPKI, "PUBLIC KEY"); returns its DER.
pub fn read_public_key_pem(path: &Path) -> Result<Vec<u8>, KeyError> {
    let err = |reason: String| KeyError::File { path: path.display().to_string(), reason };
    let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let key = VerifyingKey::from_public_key_pem(&pem).map_err(|e| err(format!("not a P-256 public key: {e}")))?;
    Ok(key.to_public_key_der().map_err(|e| err(e.to_string()))?.as_bytes().to_vec())
}

/// An ECDSA P-256 key held in memory, stored as a PKCS#8 PEM file. Signs with `ring` (P-256 in
/// constant-time assembly with precomputed tables: some 10× faster than the portable `p256`
/// arithmetic, which matters where every answer is signed); `p256` encodes and parses the keys.
pub struct SoftwareKey {
    signing: SigningKey,
    /// The same key in `ring`, signing `r || s` (JOSE); DER is made from it.
    fixed: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    spki: Vec<u8>,
    id: String,
}

impl SoftwareKey {
    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        loop {
            let mut bytes = [0u8; 32];
            getrandom::fill(&mut bytes).map_err(|e| KeyError::Random(e.to_string()))?;
            // A 32-byte string is a valid scalar except with negligible probability: retry then.
            if let Ok(k) = SigningKey::from_slice(&bytes) {
                return Ok(Self::from_signing(k));
            }
        }
    }

    fn from_signing(signing: SigningKey) -> Self {
        let spki = signing.verifying_key().to_public_key_der().expect("a P-256 public key encodes").as_bytes().to_vec();
        let id = key_id(&spki);
        let rng = ring::rand::SystemRandom::new();
        let fixed = ring::signature::EcdsaKeyPair::from_private_key_and_public_key(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &signing.to_bytes(),
            signing.verifying_key().to_encoded_point(false).as_bytes(),
            &rng,
        )
        .expect("a valid P-256 key pair is accepted");
        SoftwareKey { signing, fixed, rng, spki, id }
    }

    /// Loads the key at `path`, or creates one there (mode 0600, with a `.pub.pem` beside it
    /// holding the public key for verifiers).
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::File { path: path.display().to_string(), reason };
        if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
            let k = SigningKey::from_pkcs8_pem(&pem).map_err(|e| err(format!("not a PKCS#8 P-256 key: {e}")))?;
            return Ok(Self::from_signing(k));
        }
        let key = Self::generate()?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let pem = key.signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| err(e.to_string()))?;
        write_private(path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
        let public = key.signing.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| err(e.to_string()))?;
        std::fs::write(public_key_path(path), public).map_err(|e| err(e.to_string()))?;
        Ok(key)
    }
}

/// Where the public half of a key file is written.
pub fn public_key_path(private: &Path) -> std::path::PathBuf {
    let mut s = private.as_os_str().to_owned();
    s.push(".pub.pem");
    s.into()
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

impl Signer for SoftwareKey {
    fn key_id(&self) -> &str {
        &self.id
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let sig = self.fixed.sign(&self.rng, message).map_err(|_| KeyError::Sign("ECDSA signing failed".into()))?;
        sig.as_ref().try_into().map_err(|_| KeyError::Sign("not a 64-byte P-256 signature".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let k = SoftwareKey::generate().unwrap();
        let sig = k.sign(b"checkpoint").unwrap();
        assert!(verify(k.public_key_der(), b"checkpoint", &sig));
        assert!(!verify(k.public_key_der(), b"checkpoinT", &sig));
        let other = SoftwareKey::generate().unwrap();
        assert!(!verify(other.public_key_der(), b"checkpoint", &sig));
        assert!(!verify(k.public_key_der(), b"checkpoint", b"garbage"));
        // the DER signature's r || s
        let raw = Signature::from_der(&sig).unwrap().to_bytes();
        assert!(verify_raw(k.public_key_der(), b"checkpoint", &raw));
        let direct = k.sign_raw(b"checkpoint").unwrap();
        assert!(verify_raw(k.public_key_der(), b"checkpoint", &direct));
        assert!(!verify_raw(k.public_key_der(), b"checkpoinT", &direct));
        let public = PublicKey::from_spki_der(k.public_key_der()).unwrap();
        assert!(public.verify_raw(b"checkpoint", &raw));
        assert!(!public.verify_raw(b"checkpoinT", &raw));
        assert_eq!(public.spki_der(), k.public_key_der());
        let (x, y) = public.coordinates();
        assert_eq!(PublicKey::from_coordinates(&x, &y).unwrap().spki_der(), k.public_key_der());
        assert!(PublicKey::from_coordinates(&[1; 32], &[2; 32]).is_none());
        assert_eq!(k.key_id().len(), 16);
    }

    #[test]
    fn a_key_file_is_private_and_reloads() {
        let dir = std::env::temp_dir().join(format!("dancu-keys-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.pem");
        let a = SoftwareKey::load_or_create(&path).unwrap();
        let b = SoftwareKey::load_or_create(&path).unwrap();
        assert_eq!(a.key_id(), b.key_id());
        let sig = b.sign(b"m").unwrap();
        assert!(verify(a.public_key_der(), b"m", &sig));
        assert_eq!(read_public_key_pem(&public_key_path(&path)).unwrap(), a.public_key_der());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(dir.join("bad.pem"), "not a key").unwrap();
        assert!(SoftwareKey::load_or_create(&dir.join("bad.pem")).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
