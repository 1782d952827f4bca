//! Citizens' own access: the login by personal ID and a one-time code (its limits), and the
//! OpenID Connect rules for e-government portals — a portal's registration, the scopes and the
//! claims each releases within the portal's field scopes, the subject identifier, PKCE (S256)
//! and the exact redirect-URI match. Pure: callers pass the time and the random numbers in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::error::FieldError;
use crate::person::Person;
use crate::sharing::{Field, Partner, b64url, pseudonym};

/// A one-time code lives this long.
pub const CODE_SECONDS: i64 = 300;
/// Wrong codes accepted per challenge before it is spent.
pub const CODE_ATTEMPTS: u32 = 5;
/// Codes sent to one personal ID per [`CHALLENGE_WINDOW_SECONDS`] (no flooding a phone).
pub const CHALLENGES_PER_WINDOW: u32 = 10;
pub const CHALLENGE_WINDOW_SECONDS: i64 = 900;
/// Wrong codes for one personal ID per [`FAILURE_WINDOW_SECONDS`] before no code is sent.
pub const FAILURES_PER_WINDOW: u32 = 10;
pub const FAILURE_WINDOW_SECONDS: i64 = 3600;
/// A citizen session ends this long after login.
pub const SESSION_SECONDS: i64 = 1800;
/// An OpenID Connect authorization code lives this long.
pub const AUTH_CODE_SECONDS: i64 = 60;
/// ID tokens and portal access tokens live this long.
pub const OIDC_TOKEN_SECONDS: i64 = 300;
/// A portal's refresh tokens work this long after the citizen logged in (rotation does not
/// extend it): a working day, as an officer's session.
pub const OIDC_REFRESH_SECONDS: i64 = 8 * 3600;

use crate::audit::to_hex as hex;

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex(&h.finalize())
}

/// The six-digit code of a random number (uniform: the caller redraws numbers ≥ 4,294,000,000).
pub fn code_from_random(r: u32) -> Option<String> {
    (r < 4_294_000_000).then(|| format!("{:06}", r % 1_000_000))
}

/// What is stored of a code: bound to its challenge, never the code itself.
pub fn code_hash(challenge: &str, code: &str) -> String {
    sha256_hex(&[b"dancu-citizen-code-v1", challenge.as_bytes(), code.trim().as_bytes()])
}

/// What login limits are counted under: a hash of the personal ID as typed (known or not).
pub fn login_key(personal_id: &str) -> String {
    sha256_hex(&[b"dancu-citizen-login-v1", personal_id.as_bytes()])
}

/// Tokens (citizen sessions, portal access tokens, authorization codes) are stored as SHA-256.
pub fn token_hash(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

// ---- OpenID Connect ----------------------------------------------------------------------------

/// How a portal authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// A JWT signed with the partner's registered key (RFC 7523), as partners do.
    PrivateKeyJwt,
    /// HTTP Basic with the client secret the registry issued.
    ClientSecretBasic,
}

impl ClientAuth {
    pub fn code(self) -> &'static str {
        match self {
            ClientAuth::PrivateKeyJwt => "private_key_jwt",
            ClientAuth::ClientSecretBasic => "client_secret_basic",
        }
    }
}

/// What `sub` a portal receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    /// A per-portal pseudonym (HMAC of the ID under the partner's key): unlinkable across portals.
    Pairwise,
    /// The personal ID itself (the registration must hold the `personal_id` field).
    PersonalId,
}

/// A portal's OpenID Connect registration (part of its partner registration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OidcClient {
    /// Where the portal may be sent back to, compared exactly.
    pub redirect_uris: Vec<String>,
    pub auth_method: ClientAuth,
    pub subject: SubjectKind,
    /// SHA-256 (hex) of the client secret (`client_secret_basic`); the secret is shown once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
}

/// Checks a registration against the partner's field scopes.
pub fn validate_client(c: &OidcClient, fields: &[Field]) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if c.redirect_uris.is_empty() || c.redirect_uris.len() > 10 {
        errs.push(FieldError::new("oidc.redirect_uris", "required", "1 to 10 redirect URIs"));
    }
    for (i, u) in c.redirect_uris.iter().enumerate() {
        if let Some(why) = redirect_uri_problem(u) {
            errs.push(FieldError::new(format!("oidc.redirect_uris[{i}]"), "invalid_uri", why).with_value(u));
        }
    }
    if c.subject == SubjectKind::PersonalId && !fields.contains(&Field::PersonalId) {
        errs.push(FieldError::new(
            "oidc.subject",
            "not_in_scope",
            "the personal ID as subject needs the personal_id field in the registration",
        ));
    }
    errs
}

/// Why a redirect URI cannot be registered: absolute `https` (or `http` on the loopback host
/// for development), no fragment, at most 500 characters.
pub fn redirect_uri_problem(u: &str) -> Option<&'static str> {
    if u.len() > 500 || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Some("at most 500 characters, no spaces");
    }
    if u.contains('#') {
        return Some("a redirect URI has no fragment");
    }
    let rest = if let Some(r) = u.strip_prefix("https://") {
        r
    } else if let Some(r) = u.strip_prefix("http://") {
        let host = r.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map_or(host, |(h, _)| h);
        if !matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Some("https, or http on the loopback host (127.0.0.1, localhost) for development");
        }
        r
    } else {
        return Some("an absolute https URI");
    };
    if rest.split(['/', '?']).next().unwrap_or("").is_empty() {
        return Some("the URI has no host");
    }
    None
}

/// The scopes a portal may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    OpenId,
    /// name, family_name, middle_name, given_name, birthdate, gender
    Profile,
    /// address (the permanent residence)
    Address,
    /// personal_id: the 12-digit number
    PersonalId,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::OpenId, Scope::Profile, Scope::Address, Scope::PersonalId];

    pub fn code(self) -> &'static str {
        match self {
            Scope::OpenId => "openid",
            Scope::Profile => "profile",
            Scope::Address => "address",
            Scope::PersonalId => "personal_id",
        }
    }

    pub fn from_code(s: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|x| x.code() == s)
    }

    /// Vietnamese description shown to the citizen.
    pub fn vietnamese(self) -> &'static str {
        match self {
            Scope::OpenId => "Mã định danh đăng nhập của bạn tại cổng này",
            Scope::Profile => "Họ tên, ngày sinh, giới tính",
            Scope::Address => "Nơi thường trú",
            Scope::PersonalId => "Số định danh cá nhân",
        }
    }
}

/// The fields a scope's claims come from.
pub fn scope_fields(s: Scope) -> &'static [Field] {
    match s {
        Scope::OpenId => &[],
        Scope::Profile => &[Field::FullName, Field::BirthDate, Field::Sex],
        Scope::Address => &[Field::PermanentResidence],
        Scope::PersonalId => &[Field::PersonalId],
    }
}

/// Parses a `scope` parameter: `openid` is required, every scope must be known and the
/// portal's registration must hold at least one field the scope releases. Sorted, each once.
pub fn parse_scopes(scope: &str, fields: &[Field]) -> Result<Vec<Scope>, String> {
    let mut out = Vec::new();
    for code in scope.split_whitespace() {
        let Some(s) = Scope::from_code(code) else { return Err(format!("unknown scope {code:?}")) };
        if s != Scope::OpenId && !scope_fields(s).iter().any(|f| fields.contains(f)) {
            return Err(format!("the portal's registration does not allow the scope {code:?}"));
        }
        out.push(s);
    }
    out.sort();
    out.dedup();
    if !out.contains(&Scope::OpenId) {
        return Err("the scope must include openid".into());
    }
    Ok(out)
}

pub fn scopes_string(scopes: &[Scope]) -> String {
    scopes.iter().map(|s| s.code()).collect::<Vec<_>>().join(" ")
}

/// The subject identifier of a person for a portal (`pseudonym_key`: the partner's key).
pub fn subject(client: &OidcClient, pseudonym_key: &[u8], personal_id: &str) -> String {
    match client.subject {
        SubjectKind::PersonalId => personal_id.to_string(),
        SubjectKind::Pairwise => pseudonym(pseudonym_key, personal_id),
    }
}

/// The claims a portal receives about a person for the granted scopes: only those of fields in
/// the portal's registration (`sub` is added by the caller).
pub fn claims(person: &Person, scopes: &[Scope], partner: &Partner) -> Map<String, Value> {
    let mut out = Map::new();
    let r = &person.record;
    let sees = |f: Field| partner.sees(f);
    if scopes.contains(&Scope::Profile) {
        if sees(Field::FullName) {
            out.insert("name".into(), json!(r.name.full()));
            out.insert("family_name".into(), json!(r.name.surname));
            if !r.name.middle.is_empty() {
                out.insert("middle_name".into(), json!(r.name.middle));
            }
            out.insert("given_name".into(), json!(r.name.given));
        }
        if sees(Field::BirthDate) {
            out.insert("birthdate".into(), json!(r.birth_date.to_string()));
        }
        if sees(Field::Sex) {
            out.insert("gender".into(), json!(r.sex));
        }
    }
    if scopes.contains(&Scope::Address)
        && sees(Field::PermanentResidence)
        && let Some(a) = &r.permanent_residence
    {
        let mut parts: Vec<String> = a.detail.iter().cloned().collect();
        let mut region = None;
        if let Some(c) = a.commune() {
            parts.push(c.name.clone());
            if let Some(p) = crate::reference::province(a.scheme, &c.province_code) {
                parts.push(p.name.clone());
                region = Some(p.name.clone());
            }
        }
        let mut addr = Map::new();
        addr.insert("formatted".into(), json!(parts.join(", ")));
        if let Some(c) = a.commune() {
            addr.insert("locality".into(), json!(c.name));
        }
        if let Some(p) = region {
            addr.insert("region".into(), json!(p));
        }
        addr.insert("country".into(), json!("VN"));
        out.insert("address".into(), Value::Object(addr));
    }
    if scopes.contains(&Scope::PersonalId)
        && sees(Field::PersonalId)
        && let Some(id) = person.personal_id
    {
        out.insert("personal_id".into(), json!(id.as_str()));
    }
    out
}

/// Checks a PKCE code verifier (RFC 7636 §4.1: 43–128 unreserved characters) against the
/// S256 challenge given at authorization.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let ok = (43..=128).contains(&verifier.len())
        && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    ok && pkce_challenge(verifier) == challenge
}

/// The S256 code challenge of a verifier: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

/// A code challenge as given at authorization: base64url of 32 bytes (a SHA-256).
pub fn challenge_problem(challenge: &str) -> Option<&'static str> {
    (challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
        .then_some("code_challenge must be the base64url SHA-256 of the verifier (43 characters)")
}

/// Whether `uri` is exactly one of the registered redirect URIs (no prefix, no normalisation).
pub fn redirect_registered(c: &OidcClient, uri: &str) -> bool {
    c.redirect_uris.iter().any(|r| r == uri)
}

/// The name of a police unit as a citizen reads it in their access log (from the unit code an
/// audit entry records: `ministry`, `province:01`, `commune:00004`, `commune:legacy:…`).
pub fn unit_name(unit: &str) -> String {
    use crate::reference::{self, Scheme};
    let (level, code) = unit.split_once(':').unwrap_or((unit, ""));
    match level {
        "ministry" => "Bộ Công an (C06)".to_string(),
        "province" => match reference::province(Scheme::Y2025, code) {
            Some(p) => format!("Công an {}", p.name),
            None => format!("Công an tỉnh ({code})"),
        },
        "district" => format!("Công an cấp huyện ({code})"),
        "commune" => {
            let c = match code.strip_prefix("legacy:") {
                Some(old) => reference::commune(Scheme::Legacy, old),
                None => reference::commune(Scheme::Y2025, code),
            };
            match c {
                Some(c) => format!("Công an {} {}", c.kind.to_lowercase(), c.name),
                None => format!("Công an cấp xã ({code})"),
            }
        }
        _ => unit.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_s256_follows_rfc7636_appendix_b() {
        // The example of RFC 7636 Appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(challenge_problem(challenge).is_none());
        assert!(!pkce_matches("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXx", challenge));
        assert!(!pkce_matches("short", challenge));
        assert!(challenge_problem("plain-challenge").is_some());
    }

    #[test]
    fn redirect_uris_are_absolute_https_or_loopback_and_match_exactly() {
        assert!(redirect_uri_problem("https://dichvucong.gov.vn/cb").is_none());
        assert!(redirect_uri_problem("http://127.0.0.1:9000/cb").is_none());
        assert!(redirect_uri_problem("http://evil.example/cb").is_some());
        assert!(redirect_uri_problem("https://x.vn/cb#frag").is_some());
        assert!(redirect_uri_problem("/relative").is_some());
        assert!(redirect_uri_problem("https:///nohost").is_some());
        let c = OidcClient {
            redirect_uris: vec!["https://dichvucong.gov.vn/cb".into()],
            auth_method: ClientAuth::ClientSecretBasic,
            subject: SubjectKind::Pairwise,
            secret_sha256: None,
        };
        assert!(redirect_registered(&c, "https://dichvucong.gov.vn/cb"));
        assert!(!redirect_registered(&c, "https://dichvucong.gov.vn/cb/"));
        assert!(!redirect_registered(&c, "https://dichvucong.gov.vn/cb?x=1"));
        assert!(!redirect_registered(&c, "HTTPS://dichvucong.gov.vn/cb"));
    }

    #[test]
    fn scopes_need_openid_and_a_registered_field() {
        let fields = [Field::FullName, Field::BirthDate];
        assert_eq!(parse_scopes("profile openid", &fields).unwrap(), [Scope::OpenId, Scope::Profile]);
        assert!(parse_scopes("profile", &fields).unwrap_err().contains("openid"));
        assert!(parse_scopes("openid address", &fields).unwrap_err().contains("address"));
        assert!(parse_scopes("openid email", &fields).unwrap_err().contains("unknown"));
        assert_eq!(scopes_string(&parse_scopes("openid openid", &fields).unwrap()), "openid");
    }

    #[test]
    fn codes_are_six_digits_and_stored_bound_to_their_challenge() {
        assert_eq!(code_from_random(42).unwrap(), "000042");
        assert_eq!(code_from_random(4_293_999_999).unwrap(), "999999");
        assert!(code_from_random(4_294_000_000).is_none());
        assert_ne!(code_hash("a", "123456"), code_hash("b", "123456"));
        assert_eq!(code_hash("a", " 123456 "), code_hash("a", "123456"));
        assert_ne!(login_key("001090000001"), login_key("001090000002"));
    }

    #[test]
    fn units_are_named_for_citizens() {
        assert_eq!(unit_name("ministry"), "Bộ Công an (C06)");
        assert!(unit_name("province:01").starts_with("Công an "), "{}", unit_name("province:01"));
        assert!(unit_name("commune:00004").contains("Ba Đình"), "{}", unit_name("commune:00004"));
    }
}
