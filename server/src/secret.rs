//! Server-side secrets that must never be printed: client secrets and session
//! ids, plus the random generator every id and token comes from.

use core::fmt;

use sha2::{Digest, Sha256};

/// An API client secret. `Debug` and `Display` are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSecret(String);

impl ClientSecret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The secret itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSecret(<redacted>)")
    }
}

impl fmt::Display for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl std::str::FromStr for ClientSecret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// The `--store` value: `memory`, or a Redis URL, which may hold a password.
/// `Debug` and `Display` never show a URL.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreUrl(String);

impl StoreUrl {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    /// The value itself, for the one place that connects.
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// `memory`, `redis` or `rediss` (or `unknown`): what logs may say.
    pub fn kind(&self) -> &'static str {
        match self.0.split_once("://") {
            None if self.0 == "memory" => "memory",
            Some(("redis", _)) => "redis",
            Some(("rediss", _)) => "rediss",
            _ => "unknown",
        }
    }
}

impl fmt::Debug for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            "memory" => f.write_str("StoreUrl(memory)"),
            kind => write!(f, "StoreUrl({kind}://<redacted>)"),
        }
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::str::FromStr for StoreUrl {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// The opaque session id carried by the session cookie. Redacted when printed.
///
/// Stores never see it: they are keyed by [`SessionId::store_key`], a SHA-256
/// of the id, so a dump of Redis keys does not hand out live cookies.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    /// A fresh id: 256 random bits, base64url without padding (43 characters).
    pub fn generate() -> Self {
        use base64::Engine as _;
        let bytes = random_bytes::<32>();
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
    }

    /// Accepts a cookie value only if it has the shape of an id we issued.
    pub fn parse(raw: &str) -> Option<Self> {
        let ok = raw.len() == 43
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(raw.to_owned()))
    }

    /// The cookie value.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key under which stores keep this session (hex SHA-256 of the id).
    pub fn store_key(&self) -> String {
        hex(&Sha256::digest(self.0.as_bytes()))
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(<redacted>)")
    }
}

/// `N` bytes from the operating system's random generator.
///
/// # Panics
/// When the OS generator fails, which leaves nothing safe to do.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system random generator failed");
    buf
}

/// A random token of `2 * N` lowercase hex characters.
pub fn random_hex<const N: usize>() -> String {
    hex(&random_bytes::<N>())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// Whether `a` and `b` are equal, in time that depends only on their lengths
/// (for comparing a presented secret with the real one).
pub fn equal_in_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_random_and_redacted() {
        let a = SessionId::generate();
        let b = SessionId::generate();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.expose()), Some(a.clone()));
        assert!(!format!("{a:?}").contains(a.expose()));
        assert_eq!(a.store_key().len(), 64);
        assert_ne!(a.store_key(), a.expose());
    }

    #[test]
    fn session_id_parse_rejects_other_shapes() {
        assert!(SessionId::parse("").is_none());
        assert!(SessionId::parse(&"a".repeat(42)).is_none());
        assert!(SessionId::parse(&format!("{}=", "a".repeat(42))).is_none());
    }

    #[test]
    fn store_urls_are_redacted() {
        let u = StoreUrl::new("rediss://user:hunter2@redis.example:6380/0");
        let shown = format!("{u:?} {u}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("redis.example"),
            "{shown}"
        );
        assert!(shown.contains("rediss"), "{shown}");
        assert_eq!(format!("{:?}", StoreUrl::new("memory")), "StoreUrl(memory)");
    }

    #[test]
    fn client_secret_is_redacted() {
        let s = ClientSecret::new("hunter2");
        assert!(!format!("{s:?}{s}").contains("hunter2"));
    }
}
