//! Secrets at rest: small values (TOTP secrets) sealed with XChaCha20-Poly1305 under a 256-bit
//! key kept in a file (mode 0600) beside the other server keys. Each sealed value is bound to a
//! context (e.g. the officer's username), so a sealed value copied to another row does not open.

use std::path::Path;

use chacha20poly1305::aead::{Aead, Payload};
use chacha20poly1305::{Key, KeyInit, XChaCha20Poly1305, XNonce};

use crate::KeyError;

/// The format marker of sealed values.
const PREFIX: &str = "v1:";

/// A key that seals and opens small secrets.
pub struct SecretBox {
    cipher: XChaCha20Poly1305,
}

impl SecretBox {
    /// A new random key, held in memory only (tests, throwaway servers).
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_key(&key))
    }

    fn from_key(key: &[u8; 32]) -> Self {
        SecretBox { cipher: XChaCha20Poly1305::new(&Key::from(*key)) }
    }

    /// Loads the key file, or creates it (64 hex digits, mode 0600) when absent. Every server
    /// sharing one database must use the same file.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let err = |reason: String| KeyError::File { path: path.display().to_string(), reason };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let hex = text.trim();
                let bytes: Option<Vec<u8>> = (hex.len() == 64)
                    .then(|| (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect())
                    .flatten();
                let key: [u8; 32] = bytes
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| err("not a secrets key (64 hexadecimal digits)".into()))?;
                Ok(Self::from_key(&key))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                getrandom::fill(&mut key).map_err(|e| KeyError::Random(e.to_string()))?;
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
                }
                let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
                crate::write_private(path, format!("{hex}\n").as_bytes()).map_err(|e| err(e.to_string()))?;
                Ok(Self::from_key(&key))
            }
            Err(e) => Err(err(e.to_string())),
        }
    }

    /// Seals `secret` for `context`: `v1:` + hex of nonce and ciphertext.
    pub fn seal(&self, secret: &str, context: &str) -> Result<String, KeyError> {
        let mut nonce = [0u8; 24];
        getrandom::fill(&mut nonce).map_err(|e| KeyError::Random(e.to_string()))?;
        let ct = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: secret.as_bytes(), aad: context.as_bytes() })
            .map_err(|_| KeyError::Sign("sealing a secret failed".into()))?;
        let mut out = String::with_capacity(PREFIX.len() + 2 * (24 + ct.len()));
        out.push_str(PREFIX);
        for b in nonce.iter().chain(ct.iter()) {
            out.push_str(&format!("{b:02x}"));
        }
        Ok(out)
    }

    /// Opens a value sealed for `context`; `None` if it was not sealed by this key for it, or
    /// was altered.
    pub fn open(&self, sealed: &str, context: &str) -> Option<String> {
        let hex = sealed.strip_prefix(PREFIX)?;
        if hex.len() % 2 != 0 || hex.len() < 2 * (24 + 16) {
            return None;
        }
        let bytes: Vec<u8> = (0..hex.len() / 2)
            .map(|i| u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok())
            .collect::<Option<_>>()?;
        let (nonce, ct) = bytes.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().ok()?;
        let pt = self.cipher.decrypt(&XNonce::from(nonce), Payload { msg: ct, aad: context.as_bytes() }).ok()?;
        String::from_utf8(pt).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_open_only_with_the_key_and_context() {
        let a = SecretBox::generate().unwrap();
        let b = SecretBox::generate().unwrap();
        let sealed = a.seal("JBSWY3DPEHPK3PXP", "ca.hoankiem").unwrap();
        assert!(sealed.starts_with("v1:") && !sealed.contains("JBSWY3DPEHPK3PXP"));
        assert_eq!(a.open(&sealed, "ca.hoankiem").as_deref(), Some("JBSWY3DPEHPK3PXP"));
        assert_ne!(sealed, a.seal("JBSWY3DPEHPK3PXP", "ca.hoankiem").unwrap(), "a fresh nonce each time");
        assert_eq!(a.open(&sealed, "another.officer"), None, "bound to its row");
        assert_eq!(b.open(&sealed, "ca.hoankiem"), None, "another key");
        let mut altered = sealed.clone().into_bytes();
        let last = altered.len() - 1;
        altered[last] = if altered[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(a.open(std::str::from_utf8(&altered).unwrap(), "ca.hoankiem"), None);
        assert_eq!(a.open("JBSWY3DPEHPK3PXP", "ca.hoankiem"), None, "plain text is not accepted");
        assert_eq!(a.open("v1:zz", "x"), None);
    }

    #[test]
    fn the_key_file_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("dancu-secret-{}", std::process::id()));
        let path = dir.join("keys").join("secrets.key");
        let _ = std::fs::remove_dir_all(&dir);
        let a = SecretBox::load_or_create(&path).unwrap();
        let sealed = a.seal("s", "c").unwrap();
        let again = SecretBox::load_or_create(&path).unwrap();
        assert_eq!(again.open(&sealed, "c").as_deref(), Some("s"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&path, "not a key").unwrap();
        assert!(SecretBox::load_or_create(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
