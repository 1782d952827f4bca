//! Officers and their credentials: roles, units, password hashing (Argon2id), TOTP second
//! factor (RFC 6238), and session tokens. Pure computation: the caller supplies time and
//! randomness, the store keeps the results.

use serde::{Deserialize, Serialize};

/// What an officer may be entrusted with. One officer may hold several roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Thu thập: collects and corrects resident data.
    Collector,
    /// Verifies collected data.
    Verifier,
    /// Lãnh đạo: approves changes that need a second officer.
    Approver,
    /// Takes card applications.
    CardOperator,
    /// Runs card production.
    ProductionOperator,
    /// Registers partner agencies and their scopes.
    PartnerAdministrator,
    /// Reads the audit trail.
    Auditor,
    /// Manages officer accounts.
    SystemAdministrator,
}

impl Role {
    pub const ALL: [Role; 8] = [
        Role::Collector,
        Role::Verifier,
        Role::Approver,
        Role::CardOperator,
        Role::ProductionOperator,
        Role::PartnerAdministrator,
        Role::Auditor,
        Role::SystemAdministrator,
    ];

    pub fn code(self) -> &'static str {
        match self {
            Role::Collector => "collector",
            Role::Verifier => "verifier",
            Role::Approver => "approver",
            Role::CardOperator => "card_operator",
            Role::ProductionOperator => "production_operator",
            Role::PartnerAdministrator => "partner_administrator",
            Role::Auditor => "auditor",
            Role::SystemAdministrator => "system_administrator",
        }
    }

    pub fn from_code(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.code() == s)
    }

    /// Roles whose holders must use a second factor.
    pub fn requires_mfa(self) -> bool {
        matches!(self, Role::Approver | Role::Auditor | Role::SystemAdministrator)
    }

    pub fn vietnamese(self) -> &'static str {
        match self {
            Role::Collector => "Cán bộ thu thập",
            Role::Verifier => "Cán bộ kiểm tra",
            Role::Approver => "Lãnh đạo phê duyệt",
            Role::CardOperator => "Cán bộ cấp thẻ",
            Role::ProductionOperator => "Cán bộ sản xuất thẻ",
            Role::PartnerAdministrator => "Quản trị đối tác",
            Role::Auditor => "Kiểm toán viên",
            Role::SystemAdministrator => "Quản trị hệ thống",
        }
    }
}

/// The administrative level of a police unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UnitLevel {
    /// Bộ Công an (Cục C06): the whole country.
    Ministry,
    /// Công an tỉnh/thành phố.
    Province,
    /// Công an huyện (legacy, before 1 July 2025).
    District,
    /// Công an xã/phường/đặc khu.
    Commune,
}

// ---- passwords ---------------------------------------------------------------------------

/// Argon2id parameters after the OWASP Password Storage Cheat Sheet: 19 MiB, 2 passes, 1 lane.
pub fn argon2() -> argon2::Argon2<'static> {
    argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(19 * 1024, 2, 1, None).expect("valid Argon2 parameters"),
    )
}

/// Why a password is refused at enrolment.
pub fn password_problem(password: &str) -> Option<&'static str> {
    let n = password.chars().count();
    if n < 12 {
        Some("at least 12 characters")
    } else if n > 256 {
        Some("at most 256 characters")
    } else if password.chars().all(|c| c.is_ascii_digit()) {
        Some("not only digits")
    } else {
        None
    }
}

/// A PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`) for `password`, salted with `salt`
/// (16 random bytes from the caller).
pub fn hash_password(password: &str, salt: &[u8; 16]) -> String {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let salt = SaltString::encode_b64(salt).expect("16 bytes make a valid salt");
    argon2().hash_password(password.as_bytes(), &salt).expect("hashing a password").to_string()
}

/// Checks a password against a stored PHC string (constant time in the hash comparison).
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier};
    PasswordHash::new(phc).is_ok_and(|h| argon2().verify_password(password.as_bytes(), &h).is_ok())
}

// ---- TOTP (RFC 6238) -----------------------------------------------------------------------

/// RFC 4648 base32 without padding (what authenticator apps expect in otpauth URIs).
pub fn base32_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

pub fn base32_decode(s: &str) -> Option<Vec<u8>> {
    let (mut buffer, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for c in s.chars().filter(|c| *c != '=' && *c != ' ') {
        let v = match c.to_ascii_uppercase() {
            c @ 'A'..='Z' => c as u32 - 'A' as u32,
            c @ '2'..='7' => c as u32 - '2' as u32 + 26,
            _ => return None,
        };
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

pub const TOTP_STEP: i64 = 30;

/// The 6-digit code for a time step (HOTP over the step counter, HMAC-SHA-1, RFC 4226 §5.3).
pub fn totp_code(secret: &[u8], step: i64) -> u32 {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(&step.to_be_bytes());
    let h = mac.finalize().into_bytes();
    let offset = (h[19] & 0x0f) as usize;
    let bin = (u32::from(h[offset] & 0x7f) << 24)
        | (u32::from(h[offset + 1]) << 16)
        | (u32::from(h[offset + 2]) << 8)
        | u32::from(h[offset + 3]);
    bin % 1_000_000
}

/// Checks a code at `unix_time`, allowing one step of clock drift either way. Returns the step
/// it matched, which the caller must store and refuse to accept again (no replay).
pub fn totp_check(secret: &[u8], code: &str, unix_time: i64, last_used_step: Option<i64>) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u32 = code.parse().ok()?;
    let now = unix_time.div_euclid(TOTP_STEP);
    (now - 1..=now + 1)
        .filter(|s| last_used_step.is_none_or(|last| *s > last))
        .find(|s| constant_time_eq(totp_code(secret, *s), n))
}

fn constant_time_eq(a: u32, b: u32) -> bool {
    (a ^ b) == 0
}

/// The otpauth:// URI an authenticator app enrols from (shown as text and as a QR code).
pub fn otpauth_uri(secret: &[u8], username: &str) -> String {
    let label: String =
        username.chars().filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_')).collect();
    format!(
        "otpauth://totp/dancu:{label}?secret={}&issuer=dancu&algorithm=SHA1&digits=6&period={TOTP_STEP}",
        base32_encode(secret)
    )
}

// ---- session tokens ------------------------------------------------------------------------

/// A bearer/session token as handed to the client (32 random bytes, hex) and the SHA-256 the
/// store keeps (a stolen database does not yield usable tokens).
pub fn token_from_random(bytes: &[u8; 32]) -> (String, String) {
    let token = crate::audit::to_hex(bytes);
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    use sha2::Digest;
    crate::audit::to_hex(&sha2::Sha256::digest(token.as_bytes()))
}

/// How a session reached the server: a browser cookie or an API client's bearer token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    Cookie,
    Bearer,
}

impl SessionKind {
    pub fn code(self) -> &'static str {
        match self {
            SessionKind::Cookie => "cookie",
            SessionKind::Bearer => "bearer",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        [SessionKind::Cookie, SessionKind::Bearer].into_iter().find(|k| k.code() == s)
    }
}

/// How far a session has come through login. Only `Complete` sessions may act; the others may
/// only finish logging in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStage {
    /// Password accepted; the second factor is still to be given.
    MfaRequired,
    /// Password accepted; the officer's role needs a second factor and none is enrolled yet.
    MfaEnrolmentRequired,
    Complete,
}

impl SessionStage {
    pub fn code(self) -> &'static str {
        match self {
            SessionStage::MfaRequired => "mfa_required",
            SessionStage::MfaEnrolmentRequired => "mfa_enrolment_required",
            SessionStage::Complete => "complete",
        }
    }
    pub fn from_code(s: &str) -> Option<Self> {
        [SessionStage::MfaRequired, SessionStage::MfaEnrolmentRequired, SessionStage::Complete]
            .into_iter()
            .find(|k| k.code() == s)
    }
}

/// Why a session no longer admits requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    Revoked,
    /// Unused for longer than the idle timeout.
    Idle,
    /// Older than the absolute lifetime.
    Expired,
}

/// Whether a session still admits a request at `now` (all times and the timeout in one unit,
/// e.g. Unix milliseconds).
pub fn session_end(revoked: bool, last_seen: i64, expires_at: i64, now: i64, idle_seconds: i64) -> Option<SessionEnd> {
    if revoked {
        Some(SessionEnd::Revoked)
    } else if now >= expires_at {
        Some(SessionEnd::Expired)
    } else if now - last_seen >= idle_seconds {
        Some(SessionEnd::Idle)
    } else {
        None
    }
}

/// Lockout after repeated failures: none for the first 5, then 1, 2, 4 … minutes, at most 1 hour.
pub fn lockout_seconds(consecutive_failures: u32) -> i64 {
    if consecutive_failures < 5 { 0 } else { (60i64 << (consecutive_failures - 5).min(6)).min(3600) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc6238_test_vectors() {
        // RFC 6238 Appendix B, SHA-1 secret "12345678901234567890"; the RFC prints 8 digits,
        // the last 6 of which are the 6-digit code.
        let secret = b"12345678901234567890";
        for (t, code) in
            [(59, 287082), (1111111109, 81804), (1111111111, 50471), (1234567890, 5924), (2000000000, 279037)]
        {
            assert_eq!(totp_code(secret, t / TOTP_STEP), code, "t={t}");
        }
    }

    #[test]
    fn totp_window_and_replay() {
        let secret = b"12345678901234567890";
        let t = 1_111_111_111;
        let step = t / TOTP_STEP;
        let code = format!("{:06}", totp_code(secret, step));
        assert_eq!(totp_check(secret, &code, t, None), Some(step));
        assert_eq!(totp_check(secret, &code, t + 30, None), Some(step), "one step of drift");
        assert_eq!(totp_check(secret, &code, t + 90, None), None, "too old");
        assert_eq!(totp_check(secret, &code, t, Some(step)), None, "replayed");
        assert_eq!(totp_check(secret, "12345", t, None), None);
        assert_eq!(totp_check(secret, "abcdef", t, None), None);
    }

    #[test]
    fn base32_round_trips() {
        assert_eq!(base32_encode(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32_decode("MZXW6YTBOI").unwrap(), b"foobar");
        assert_eq!(base32_decode("mzxw6ytboi======").unwrap(), b"foobar");
        assert!(base32_decode("MZ1W").is_none());
        let secret = [7u8; 20];
        assert_eq!(base32_decode(&base32_encode(&secret)).unwrap(), secret);
        assert!(otpauth_uri(&secret, "ca.hoankiem/an").starts_with("otpauth://totp/dancu:ca.hoankieman?secret="));
    }

    #[test]
    fn passwords_hash_with_argon2id() {
        let phc = hash_password("một mật khẩu dài", &[1u8; 16]);
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify_password("một mật khẩu dài", &phc));
        assert!(!verify_password("một mật khẩu dai", &phc));
        assert!(!verify_password("x", "not a hash"));
        assert_ne!(phc, hash_password("một mật khẩu dài", &[2u8; 16]), "salted");
        assert_eq!(password_problem("short"), Some("at least 12 characters"));
        assert_eq!(password_problem("123456789012"), Some("not only digits"));
        assert_eq!(password_problem("correct horse battery"), None);
    }

    #[test]
    fn tokens_and_lockout() {
        let (token, hash) = token_from_random(&[9u8; 32]);
        assert_eq!(token.len(), 64);
        assert_eq!(token_hash(&token), hash);
        assert_ne!(token, hash);
        assert_eq!(lockout_seconds(4), 0);
        assert_eq!(lockout_seconds(5), 60);
        assert_eq!(lockout_seconds(6), 120);
        assert_eq!(lockout_seconds(50), 3600);
    }

    #[test]
    fn session_timeouts() {
        assert_eq!(session_end(false, 100, 1000, 200, 600), None);
        assert_eq!(session_end(true, 100, 1000, 200, 600), Some(SessionEnd::Revoked));
        assert_eq!(session_end(false, 100, 1000, 700, 600), Some(SessionEnd::Idle));
        assert_eq!(session_end(false, 990, 1000, 1000, 600), Some(SessionEnd::Expired));
        for k in [SessionKind::Cookie, SessionKind::Bearer] {
            assert_eq!(SessionKind::from_code(k.code()), Some(k));
        }
    }

    #[test]
    fn roles() {
        for r in Role::ALL {
            assert_eq!(Role::from_code(r.code()), Some(r));
        }
        assert!(
            Role::Approver.requires_mfa() && Role::Auditor.requires_mfa() && Role::SystemAdministrator.requires_mfa()
        );
        assert!(!Role::Collector.requires_mfa());
    }
}

// ---- officers ------------------------------------------------------------------------------

/// The police unit an officer belongs to: its level and its code (`C06` for the ministry, a
/// province or commune code of the 2025 list, or a legacy district/commune code, `legacy:`-prefixed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Unit {
    pub level: UnitLevel,
    pub code: String,
}

impl Unit {
    /// Parses `ministry`, `province:01`, `commune:00004`, `district:001` (legacy) or
    /// `commune:legacy:00001`; checks the code against the reference lists.
    pub fn parse(s: &str) -> Result<Unit, String> {
        use crate::reference::{self, Scheme};
        let (level, code) = s.split_once(':').unwrap_or((s, ""));
        let unit = match level {
            "ministry" => Unit { level: UnitLevel::Ministry, code: "C06".into() },
            "province" if reference::province(Scheme::Y2025, code).is_some() => {
                Unit { level: UnitLevel::Province, code: code.into() }
            }
            "district" if reference::districts().iter().any(|d| d.code == code) => {
                Unit { level: UnitLevel::District, code: format!("legacy:{code}") }
            }
            "commune" => match code.strip_prefix("legacy:") {
                Some(c) if reference::commune(Scheme::Legacy, c).is_some() => {
                    Unit { level: UnitLevel::Commune, code: code.into() }
                }
                None if reference::commune(Scheme::Y2025, code).is_some() => {
                    Unit { level: UnitLevel::Commune, code: code.into() }
                }
                _ => return Err(format!("{code:?} is not a commune code (2025 list, or legacy:CODE)")),
            },
            "province" | "district" => return Err(format!("{code:?} is not a {level} code")),
            _ => return Err(format!("{s:?}: the unit is ministry, province:CODE, district:CODE or commune:CODE")),
        };
        Ok(unit)
    }

    pub fn code_str(&self) -> String {
        let level = match self.level {
            UnitLevel::Ministry => return "ministry".into(),
            UnitLevel::Province => "province",
            UnitLevel::District => "district",
            UnitLevel::Commune => "commune",
        };
        let code = if self.level == UnitLevel::District { self.code.trim_start_matches("legacy:") } else { &self.code };
        format!("{level}:{code}")
    }
}

/// An officer account as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Officer {
    /// Login name: 3-64 of a-z, 0-9, `.`, `_`, `-`.
    pub username: String,
    pub display_name: String,
    pub unit: Unit,
    pub roles: Vec<Role>,
    /// Rights beyond the roles (e.g. reading sensitive fields).
    pub permissions: Vec<crate::access::Permission>,
    /// Argon2id PHC string.
    pub password_hash: String,
    /// TOTP secret (base32), once enrolled.
    pub totp_secret: Option<String>,
    pub totp_last_step: Option<i64>,
    /// A TOTP secret (base32) being enrolled: replaces `totp_secret` once a code from it is confirmed.
    pub totp_pending: Option<String>,
    pub failed_logins: u32,
    /// RFC 3339 UTC.
    pub locked_until: Option<String>,
    pub active: bool,
}

impl Officer {
    pub fn has_role(&self, r: Role) -> bool {
        self.roles.contains(&r)
    }
    pub fn has_permission(&self, p: crate::access::Permission) -> bool {
        self.permissions.contains(&p)
    }
    /// Whether logging in needs a second factor: a role that requires it, or one enrolled.
    pub fn needs_mfa(&self) -> bool {
        self.totp_secret.is_some() || self.roles.iter().any(|r| r.requires_mfa())
    }
}

pub fn username_problem(u: &str) -> Option<&'static str> {
    if !(3..=64).contains(&u.len()) {
        Some("3 to 64 characters")
    } else if !u.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')) {
        Some("only a-z, 0-9, '.', '_' and '-'")
    } else {
        None
    }
}

#[cfg(test)]
mod officer_tests {
    use super::*;

    #[test]
    fn units_parse_against_the_reference_lists() {
        assert_eq!(Unit::parse("ministry").unwrap().code, "C06");
        assert_eq!(Unit::parse("province:01").unwrap(), Unit { level: UnitLevel::Province, code: "01".into() });
        assert!(Unit::parse("province:02").is_err(), "Hà Giang is not a 2025 province");
        assert_eq!(Unit::parse("commune:00004").unwrap().level, UnitLevel::Commune);
        assert_eq!(Unit::parse("commune:legacy:00001").unwrap().code, "legacy:00001");
        assert_eq!(Unit::parse("district:001").unwrap().code, "legacy:001");
        assert!(Unit::parse("commune:99999").is_err());
        assert!(Unit::parse("village:1").is_err());
        for s in ["ministry", "province:01", "district:001", "commune:00004", "commune:legacy:00001"] {
            assert_eq!(Unit::parse(s).unwrap().code_str(), s);
        }
    }

    #[test]
    fn usernames() {
        assert_eq!(username_problem("ca.hoankiem-01"), None);
        assert!(username_problem("ab").is_some());
        assert!(username_problem("Admin").is_some());
        assert!(username_problem("an toàn").is_some());
    }
}
