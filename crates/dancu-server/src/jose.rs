//! The small part of JOSE that data sharing needs, written out: compact JWS with ES256
//! (RFC 7515, RFC 7518 §3.4) over the [`dancu_keys::Signer`] interface, detached payloads
//! (RFC 7515 Appendix F) for signed responses, JWTs (RFC 7519) as JSON claims, and the JWK of a
//! P-256 public key (RFC 7517/7518 §6.2). Only `alg` ES256 is accepted: no `none`, no HMAC.

use dancu_core::sharing::{b64url, b64url_decode, b64url_into};
use dancu_keys::{PublicKey, Signer};
use serde_json::{Value, json};

/// Why a compact JWS was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    #[error("not a compact JWS (three base64url parts separated by dots)")]
    Malformed,
    #[error("the header is not a JSON object")]
    Header,
    #[error("the algorithm must be ES256")]
    Algorithm,
    #[error("the signature does not verify")]
    Signature,
    #[error("the claims are not a JSON object")]
    Claims,
}

/// Signs `payload` as a compact JWS with ES256; `extra` adds members to the protected header
/// (besides `alg` and `kid`).
pub fn sign(signer: &dyn Signer, extra: &[(&str, Value)], payload: &[u8]) -> Result<String, dancu_keys::KeyError> {
    let input = signing_input(signer, extra, payload);
    let sig = signature(signer, input.as_bytes())?;
    Ok(format!("{input}.{sig}"))
}

/// A detached JWS of `payload` (RFC 7515 Appendix F): `header..signature`. The verifier puts
/// base64url(payload) between the dots.
pub fn sign_detached(
    signer: &dyn Signer,
    extra: &[(&str, Value)],
    payload: &[u8],
) -> Result<String, dancu_keys::KeyError> {
    let input = signing_input(signer, extra, payload);
    let sig = signature(signer, input.as_bytes())?;
    let header = input.split('.').next().expect("signing input has a header");
    Ok(format!("{header}..{sig}"))
}

fn signing_input(signer: &dyn Signer, extra: &[(&str, Value)], payload: &[u8]) -> String {
    // The protected header written out (no map to build): `alg` and `kid`, then `extra`.
    let mut header = String::with_capacity(64 + 32 * extra.len());
    header.push_str("{\"alg\":\"ES256\",\"kid\":");
    header.push_str(&Value::from(signer.key_id()).to_string());
    for (k, v) in extra {
        debug_assert!(*k != "alg" && *k != "kid", "the header's alg and kid are set here");
        header.push(',');
        header.push_str(&Value::from(*k).to_string());
        header.push(':');
        header.push_str(&v.to_string());
    }
    header.push('}');
    let mut input = String::with_capacity((header.len() + payload.len()).div_ceil(3) * 4 + 2);
    b64url_into(&mut input, header.as_bytes());
    input.push('.');
    b64url_into(&mut input, payload);
    input
}

fn signature(signer: &dyn Signer, input: &[u8]) -> Result<String, dancu_keys::KeyError> {
    Ok(b64url(&signer.sign_raw(input)?))
}

/// The parts of a compact JWS, decoded but not verified.
pub struct Parsed {
    pub header: serde_json::Map<String, Value>,
    pub payload: Vec<u8>,
    signing_input_len: usize,
    signature: Vec<u8>,
}

impl Parsed {
    /// The header's `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// Verifies the ES256 signature with `key` over the original signing input.
    pub fn verify(&self, token: &str, key: &PublicKey) -> Result<(), JwsError> {
        if key.verify_raw(&token.as_bytes()[..self.signing_input_len], &self.signature) {
            Ok(())
        } else {
            Err(JwsError::Signature)
        }
    }

    /// The payload as JWT claims.
    pub fn claims(&self) -> Result<serde_json::Map<String, Value>, JwsError> {
        match serde_json::from_slice::<Value>(&self.payload) {
            Ok(Value::Object(m)) => Ok(m),
            _ => Err(JwsError::Claims),
        }
    }
}

/// Splits and decodes a compact JWS; refuses any algorithm but ES256.
pub fn parse(token: &str) -> Result<Parsed, JwsError> {
    if token.len() > 8192 {
        return Err(JwsError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwsError::Malformed);
    };
    let header = match b64url_decode(h).map(|b| serde_json::from_slice::<Value>(&b)) {
        Some(Ok(Value::Object(m))) => m,
        Some(_) => return Err(JwsError::Header),
        None => return Err(JwsError::Malformed),
    };
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(JwsError::Algorithm);
    }
    if header.contains_key("crit") {
        // No extension is understood here (RFC 7515 §4.1.11).
        return Err(JwsError::Header);
    }
    let payload = b64url_decode(p).ok_or(JwsError::Malformed)?;
    let signature = b64url_decode(s).ok_or(JwsError::Malformed)?;
    if signature.len() != 64 {
        return Err(JwsError::Signature);
    }
    Ok(Parsed { header, payload, signing_input_len: h.len() + 1 + p.len(), signature })
}

/// The public JWK of a P-256 key (for the JWKS document).
pub fn jwk(key: &PublicKey, kid: &str) -> Value {
    let (x, y) = key.coordinates();
    json!({"kty": "EC", "crv": "P-256", "x": b64url(&x), "y": b64url(&y), "kid": kid, "use": "sig", "alg": "ES256"})
}

#[cfg(test)]
mod tests {
    use super::*;
    use dancu_keys::SoftwareKey;

    #[test]
    fn signs_and_verifies_compact_and_detached() {
        let k = SoftwareKey::generate().unwrap();
        let public = PublicKey::from_spki_der(k.public_key_der()).unwrap();
        let t = sign(&k, &[("typ", json!("JWT"))], br#"{"sub":"bank-a"}"#).unwrap();
        let p = parse(&t).unwrap();
        p.verify(&t, &public).unwrap();
        assert_eq!(p.kid(), Some(k.key_id()));
        assert_eq!(p.claims().unwrap()["sub"], "bank-a");
        // Any change to the payload breaks the signature.
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = b64url(br#"{"sub":"bank-b"}"#);
        parts[1] = &forged;
        let forged = parts.join(".");
        assert_eq!(parse(&forged).unwrap().verify(&forged, &public), Err(JwsError::Signature));
        // Detached: the receiver puts the body back between the dots.
        let d = sign_detached(&k, &[], b"body bytes").unwrap();
        let (h, s) = d.split_once("..").unwrap();
        let whole = format!("{h}.{}.{s}", b64url(b"body bytes"));
        parse(&whole).unwrap().verify(&whole, &public).unwrap();
        let jwk = jwk(&public, k.key_id());
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(b64url_decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn refuses_other_algorithms_and_garbage() {
        let none = format!("{}.{}.", b64url(br#"{"alg":"none"}"#), b64url(b"{}"));
        assert!(matches!(parse(&none), Err(JwsError::Algorithm)));
        let hs = format!("{}.{}.{}", b64url(br#"{"alg":"HS256"}"#), b64url(b"{}"), b64url(&[0; 32]));
        assert!(matches!(parse(&hs), Err(JwsError::Algorithm)));
        assert!(matches!(parse("a.b"), Err(JwsError::Malformed)));
        assert!(matches!(parse("!!.b.c"), Err(JwsError::Malformed)));
        let short = format!("{}.{}.{}", b64url(br#"{"alg":"ES256"}"#), b64url(b"{}"), b64url(&[0; 10]));
        assert!(matches!(parse(&short), Err(JwsError::Signature)));
    }
}
