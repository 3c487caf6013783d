//! Credentials as types that cannot leak: their `Debug` and `Display` are redacted.

use core::fmt;

macro_rules! secret {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value. Validation, where there is any, happens elsewhere.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            /// The secret itself, for the one place that must send or store it.
            pub fn expose(&self) -> &str {
                &self.0
            }
            /// Consumes the wrapper and returns the secret.
            pub fn into_inner(self) -> String {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($label, "(<redacted>)"))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }

        #[cfg(feature = "serde")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        #[cfg(feature = "serde")]
        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                String::deserialize(d).map(Self)
            }
        }
    };
}

secret!(
    /// A Capture access token (`janrainCaptureToken`).
    AccessToken,
    "AccessToken"
);
secret!(
    /// A one-time OAuth authorization code from the Registration UI in code mode.
    AuthorizationCode,
    "AuthorizationCode"
);
secret!(
    /// A Capture OAuth refresh token (server side only).
    RefreshToken,
    "RefreshToken"
);

/// Largest access token accepted from anywhere (storage, widget, backend).
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Whether `raw` has the shape of a token we are willing to store and send:
/// non-empty, printable ASCII without spaces, at most [`MAX_TOKEN_BYTES`].
pub fn is_plausible_token(raw: &str) -> bool {
    !raw.is_empty() && raw.len() <= MAX_TOKEN_BYTES && raw.bytes().all(|b| b.is_ascii_graphic())
}

/// A 32-bit FNV-1a hash of a token: tells two tokens apart without revealing
/// either. Tabs use it to say which token a message is about (same-origin code
/// that could read the message can read localStorage, which holds the token
/// itself, anyway).
pub fn fingerprint(token: &str) -> u32 {
    token.bytes().fold(0x811c_9dc5, |h: u32, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let t = AccessToken::new("s3cr3t-token-value");
        assert_eq!(format!("{t:?}"), "AccessToken(<redacted>)");
        assert_eq!(format!("{t}"), "<redacted>");
        assert!(!format!("{:?}", Some(t.clone())).contains("s3cr3t"));
        assert_eq!(t.expose(), "s3cr3t-token-value");
    }

    #[test]
    fn fingerprints_are_fnv1a() {
        // The FNV-1a test vectors.
        assert_eq!(fingerprint(""), 0x811c_9dc5);
        assert_eq!(fingerprint("a"), 0xe40c_292c);
        assert_eq!(fingerprint("foobar"), 0xbf9c_f968);
    }

    #[test]
    fn plausible_tokens() {
        assert!(is_plausible_token("abc123_-.~"));
        assert!(!is_plausible_token(""));
        assert!(!is_plausible_token("has space"));
        assert!(!is_plausible_token("nul\0"));
        assert!(!is_plausible_token("é"));
        assert!(!is_plausible_token(&"a".repeat(MAX_TOKEN_BYTES + 1)));
    }
}
