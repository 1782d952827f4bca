//! ECDSA P-256 keys held in a PKCS#11 token (an HSM; SoftHSM2 in tests and development).
//!
//! The private key is generated on the token as sensitive and non-extractable: it never
//! leaves it. Signing sends the SHA-256 digest to the token (CKM_ECDSA) and turns the raw
//! `r || s` it returns into the DER form the [`Signer`] trait promises.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use p256::ecdsa::Signature;
use p256::pkcs8::EncodePublicKey;
use sha2::{Digest, Sha256};

use crate::{KeyError, Signer, key_id};

/// DER of the OID prime256v1 (1.2.840.10045.3.1.7), the curve parameter of CKA_EC_PARAMS.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];

/// Where the PKCS#11 module is usually installed (Debian, Ubuntu, Fedora, from source).
pub const SOFTHSM_MODULE_PATHS: &[&str] = &[
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
];

/// The SoftHSM2 module on this machine, if installed.
pub fn find_softhsm() -> Option<PathBuf> {
    SOFTHSM_MODULE_PATHS.iter().map(PathBuf::from).find(|p| p.exists())
}

/// Which token to use and how to log in to it.
#[derive(Clone)]
pub struct TokenConfig {
    /// The PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label.
    pub token_label: String,
    /// The user PIN. Never logged, never printed.
    pub pin: String,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig").field("module", &self.module).field("token_label", &self.token_label).finish()
    }
}

fn ck(what: &str) -> impl Fn(CkError) -> KeyError + '_ {
    move |e| KeyError::Sign(format!("PKCS#11 {what}: {e}"))
}

/// One initialized context per module: C_Initialize may be called once per process.
fn context(module: &Path) -> Result<Pkcs11, KeyError> {
    static CONTEXTS: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    let mut map = CONTEXTS.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = map.get(module) {
        return Ok(c.clone());
    }
    let ctx = Pkcs11::new(module).map_err(|e| KeyError::File {
        path: module.display().to_string(),
        reason: format!("cannot load the PKCS#11 module: {e}"),
    })?;
    match ctx.initialize(CInitializeArgs::OsThreads) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(ck("C_Initialize")(e)),
    }
    map.insert(module.to_path_buf(), ctx.clone());
    Ok(ctx)
}

fn session(cfg: &TokenConfig) -> Result<Session, KeyError> {
    let ctx = context(&cfg.module)?;
    let slots = ctx.get_slots_with_token().map_err(ck("C_GetSlotList"))?;
    let slot = slots
        .into_iter()
        .find(|s| ctx.get_token_info(*s).is_ok_and(|t| t.label().trim_end() == cfg.token_label))
        .ok_or_else(|| KeyError::Sign(format!("no PKCS#11 token labelled {:?}", cfg.token_label)))?;
    let session = ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
    match session.login(UserType::User, Some(&AuthPin::new(cfg.pin.clone()))) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
            Err(KeyError::Sign(format!("PKCS#11 token {:?}: the PIN is wrong", cfg.token_label)))
        }
        Err(e) => Err(ck("C_Login")(e)),
    }
}

/// An ECDSA P-256 private key on a PKCS#11 token, found by its label.
pub struct Pkcs11Key {
    session: Mutex<Session>,
    key: ObjectHandle,
    spki: Vec<u8>,
    id: String,
    label: String,
}

impl std::fmt::Debug for Pkcs11Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Key").field("label", &self.label).field("key_id", &self.id).finish()
    }
}

impl Pkcs11Key {
    /// Opens the key pair labelled `key_label` on the token.
    pub fn open(cfg: &TokenConfig, key_label: &str) -> Result<Self, KeyError> {
        let session = session(cfg)?;
        let find = |class| {
            session
                .find_objects(&[Attribute::Class(class), Attribute::Label(key_label.as_bytes().to_vec())])
                .map_err(ck("C_FindObjects"))
        };
        let private = find(ObjectClass::PRIVATE_KEY)?;
        let public = find(ObjectClass::PUBLIC_KEY)?;
        let (Some(&key), Some(&public)) = (private.first(), public.first()) else {
            return Err(KeyError::Sign(format!("no key pair labelled {key_label:?} on token {:?}", cfg.token_label)));
        };
        Self::from_handles(session, key, public, key_label)
    }

    /// Generates a new key pair labelled `key_label` on the token (private key sensitive,
    /// not extractable). Refuses when the label is taken.
    pub fn generate(cfg: &TokenConfig, key_label: &str) -> Result<Self, KeyError> {
        let session = session(cfg)?;
        let taken =
            session.find_objects(&[Attribute::Label(key_label.as_bytes().to_vec())]).map_err(ck("C_FindObjects"))?;
        if !taken.is_empty() {
            return Err(KeyError::Sign(format!(
                "token {:?} already holds a key labelled {key_label:?}",
                cfg.token_label
            )));
        }
        let label = Attribute::Label(key_label.as_bytes().to_vec());
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
        let id = Attribute::Id(random.to_vec());
        let public_template = [
            Attribute::Token(true),
            Attribute::KeyType(KeyType::EC),
            Attribute::EcParams(P256_PARAMS.to_vec()),
            Attribute::Verify(true),
            label.clone(),
            id.clone(),
        ];
        let private_template = [
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            label,
            id,
        ];
        let (public, private) = session
            .generate_key_pair(&Mechanism::EccKeyPairGen, &public_template, &private_template)
            .map_err(ck("C_GenerateKeyPair"))?;
        Self::from_handles(session, private, public, key_label)
    }

    fn from_handles(session: Session, key: ObjectHandle, public: ObjectHandle, label: &str) -> Result<Self, KeyError> {
        let attrs = session.get_attributes(public, &[AttributeType::EcPoint]).map_err(ck("C_GetAttributeValue"))?;
        let point = attrs
            .into_iter()
            .find_map(|a| if let Attribute::EcPoint(p) = a { Some(p) } else { None })
            .ok_or_else(|| KeyError::Sign("the token gave no EC point for the public key".into()))?;
        // CKA_EC_POINT is the DER OCTET STRING around the SEC1 point (some tokens give the bare point).
        let sec1 = match point.as_slice() {
            [0x04, 0x41, rest @ ..] if rest.len() == 0x41 => rest,
            p => p,
        };
        let public = p256::PublicKey::from_sec1_bytes(sec1)
            .map_err(|_| KeyError::Sign(format!("key {label:?} is not a P-256 key")))?;
        let spki = public.to_public_key_der().map_err(|e| KeyError::Sign(e.to_string()))?.as_bytes().to_vec();
        let id = key_id(&spki);
        Ok(Pkcs11Key { session: Mutex::new(session), key, spki, id, label: label.to_string() })
    }

    pub fn label(&self) -> &str {
        &self.label
    }
}

impl Signer for Pkcs11Key {
    fn key_id(&self) -> &str {
        &self.id
    }
    fn public_key_der(&self) -> &[u8] {
        &self.spki
    }
    fn sign_raw(&self, message: &[u8]) -> Result<[u8; 64], KeyError> {
        let digest = Sha256::digest(message);
        let raw = {
            let session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            session.sign(&Mechanism::Ecdsa, self.key, &digest).map_err(ck("C_Sign"))?
        };
        let sig = Signature::from_slice(&raw).map_err(|e| KeyError::Sign(format!("the token's signature: {e}")))?;
        // Low-S form (verifiers accept both; one form is tidier).
        let sig = sig.normalize_s().unwrap_or(sig);
        Ok(sig.to_bytes().into())
    }
}
