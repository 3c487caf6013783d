//! The backend contract (`docs/backend-contract.md`, `docs/openapi.yaml`):
//! request and reply bodies of `startUrl`, `refreshUrl` and `endUrl`.
//!
//! Both sides (de)serialise these with serde (feature `serde`): the reference
//! server through serde_json, the browser helper through serde-wasm-bindgen
//! (with `JSON.parse` and `JSON.stringify`, no JSON library in the wasm). The
//! helper reads token replies leniently, as [`RawTokenReply`] (every field a
//! [`JsonScalar`]) and error replies as [`RawErrorReply`], so that a wrong
//! reply becomes a [`MalformedReply`] instead of a serde error. Every wire name
//! is spelled once, here: in serde attributes, or in `as_str` for the enums
//! (whose serde impls use it).

use crate::token::{fingerprint, is_plausible_token, AccessToken, AuthorizationCode};

/// Header every helper request carries; the server refuses requests without it.
pub const HEADER_NAME: &str = "X-Capture-Session";
/// Value of [`HEADER_NAME`].
pub const HEADER_VALUE: &str = "1";
/// Largest request or reply body either side accepts, in bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// Largest `expiresIn` accepted from a backend: 24 hours.
pub const MAX_EXPIRES_IN_SECS: u64 = 24 * 60 * 60;

/// Integration mode (`janrain.settings.capture.responseType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// The widget hands the page an access token (`responseType: 'token'`).
    Token,
    /// The widget hands the page a one-time authorization code (`responseType: 'code'`).
    Code,
}

impl Mode {
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Token => "token",
            Mode::Code => "code",
        }
    }
    /// Parses the contract's spelling.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "token" => Some(Mode::Token),
            "code" => Some(Mode::Code),
            _ => None,
        }
    }
}

/// Body of a `startUrl` request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(tag = "mode", rename_all = "lowercase"))]
pub enum StartRequest {
    /// Token mode: the widget's token and the uuid it says it belongs to.
    Token {
        /// `userData.uuid` of the login event.
        uuid: String,
        /// The access token the widget received.
        #[cfg_attr(feature = "serde", serde(rename = "accessToken"))]
        access_token: AccessToken,
        /// The login event's `keepMeLoggedIn` (contract 1.1; absent = false):
        /// a persistent cookie and the long absolute lifetime when true.
        #[cfg_attr(feature = "serde", serde(rename = "keepMeLoggedIn", default))]
        keep_me_logged_in: bool,
    },
    /// Code mode: the one-time code to exchange at `/oauth/token`.
    Code {
        /// The widget's `authorizationCode`.
        #[cfg_attr(feature = "serde", serde(rename = "authorizationCode"))]
        authorization_code: AuthorizationCode,
        /// `janrain.settings.capture.redirectUri`, needed for the exchange.
        #[cfg_attr(feature = "serde", serde(rename = "redirectUri"))]
        redirect_uri: String,
        /// Whether the reply should carry the access token for a client-side session.
        #[cfg_attr(feature = "serde", serde(rename = "clientSession", default = "yes"))]
        client_session: bool,
        /// The login event's `keepMeLoggedIn` (contract 1.1; absent = false).
        #[cfg_attr(feature = "serde", serde(rename = "keepMeLoggedIn", default))]
        keep_me_logged_in: bool,
    },
}

impl StartRequest {
    /// The mode of this start.
    pub fn mode(&self) -> Mode {
        match self {
            StartRequest::Token { .. } => Mode::Token,
            StartRequest::Code { .. } => Mode::Code,
        }
    }
    /// Whether the user asked to stay signed in (`keepMeLoggedIn`).
    pub fn keep_me_logged_in(&self) -> bool {
        match self {
            StartRequest::Token {
                keep_me_logged_in, ..
            }
            | StartRequest::Code {
                keep_me_logged_in, ..
            } => *keep_me_logged_in,
        }
    }
}

/// How the contract names a token without revealing it: FNV-1a 32-bit over
/// the token's UTF-8 bytes, spelled as exactly 8 lowercase hex digits
/// (`"811c9dc5"` is the empty string's). The refresh body's `replace` field
/// carries the fingerprint of the token the page holds.
///
/// A fingerprint is not a secret (2^32 values cannot stand for a token), so
/// its `Debug` shows it.
///
/// ```
/// use capture_session_core::wire::Fingerprint;
/// let fp = Fingerprint::of("foobar");
/// assert_eq!(fp.to_hex(), "bf9cf968");
/// assert_eq!(Fingerprint::parse("bf9cf968"), Some(fp));
/// assert_eq!(Fingerprint::parse("BF9CF968"), None); // lowercase only
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(u32);

impl Fingerprint {
    /// The fingerprint of `token` (see [`crate::token::fingerprint`]).
    pub fn of(token: &str) -> Fingerprint {
        Fingerprint(fingerprint(token))
    }

    /// A fingerprint from its 32-bit value.
    pub const fn from_u32(value: u32) -> Fingerprint {
        Fingerprint(value)
    }

    /// The 32-bit value.
    pub const fn value(self) -> u32 {
        self.0
    }

    /// Parses the contract's spelling: exactly 8 lowercase hex digits,
    /// nothing else (no `0x`, no uppercase, no whitespace).
    pub fn parse(s: &str) -> Option<Fingerprint> {
        let bytes = s.as_bytes();
        if bytes.len() != 8 {
            return None;
        }
        let mut value = 0u32;
        for &b in bytes {
            let digit = match b {
                b'0'..=b'9' => b - b'0',
                b'a'..=b'f' => b - b'a' + 10,
                _ => return None,
            };
            value = (value << 4) | u32::from(digit);
        }
        Some(Fingerprint(value))
    }

    /// The contract's spelling, built without the formatting machinery (it
    /// costs kilobytes in the browser build).
    pub fn to_hex(self) -> String {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = String::with_capacity(8);
        for shift in (0..8).rev() {
            let nibble = (self.0 >> (shift * 4)) & 0xf;
            out.push(char::from(DIGITS[nibble as usize]));
        }
        out
    }
}

impl core::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl core::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Fingerprint(")?;
        f.write_str(&self.to_hex())?;
        f.write_str(")")
    }
}

#[cfg(feature = "serde")]
impl serde::Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

#[cfg(feature = "serde")]
impl<'de> serde::Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Hex;
        impl serde::de::Visitor<'_> for Hex {
            type Value = Fingerprint;
            fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str("a string of 8 lowercase hex digits")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Fingerprint, E> {
                // The message never repeats the value.
                Fingerprint::parse(v)
                    .ok_or_else(|| E::custom("expected a string of 8 lowercase hex digits"))
            }
        }
        d.deserialize_str(Hex)
    }
}

/// Body of a `refreshUrl` request. `{}` (or an empty body) is contract 1.0;
/// contract 1.1 adds the two optional fields. Unknown fields are ignored, so
/// later versions can add more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct RefreshRequest {
    /// The fingerprint of the token the page holds. It names the session's
    /// current token: mint a new one. It names another: the page is behind,
    /// hand it the current token while that is valid. Absent: contract 1.0
    /// (the server decides by the current token's age).
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )
    )]
    pub replace: Option<Fingerprint>,
    /// Whether the user viewed or used the page since the last refresh; only
    /// interactive refreshes extend the session's idle deadline. Absent
    /// (contract 1.0) counts as interactive.
    #[cfg_attr(
        feature = "serde",
        serde(
            default,
            skip_serializing_if = "Option::is_none",
            deserialize_with = "present"
        )
    )]
    pub interactive: Option<bool>,
}

impl RefreshRequest {
    /// Whether this refresh extends the session's idle deadline: unless it
    /// says `interactive: false`.
    pub fn extends_idle_deadline(&self) -> bool {
        self.interactive.unwrap_or(true)
    }
}

/// An optional field that, when present, must hold a value (`null` is not
/// "absent": `"replace": null` is a bad request).
#[cfg(feature = "serde")]
fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

#[cfg(feature = "serde")]
fn yes() -> bool {
    true
}

/// Successful reply of `startUrl` and `refreshUrl`.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase"))]
pub struct TokenReply {
    /// The access token; `None` for a code-mode start with `clientSession: false`.
    pub access_token: Option<AccessToken>,
    /// Seconds the token lives from the moment the reply was sent.
    pub expires_in: u64,
    /// The user's uuid (start replies).
    #[cfg_attr(
        feature = "serde",
        serde(default, skip_serializing_if = "Option::is_none")
    )]
    pub uuid: Option<String>,
}

/// Error codes of the contract's error body `{"error": ..., "message": ...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 400: the body is wrong.
    InvalidRequest,
    /// 401: no server session.
    NoSession,
    /// 401: the server session (or its grant) expired.
    SessionExpired,
    /// 401: the token presented at start is not valid.
    InvalidToken,
    /// 403: missing header or origin not allowed.
    Forbidden,
    /// 413: body too large.
    PayloadTooLarge,
    /// 429: too many requests (with `Retry-After`).
    RateLimited,
    /// 502: Identity Cloud failed.
    UpstreamError,
    /// 503: temporarily unavailable (with `Retry-After`).
    Unavailable,
}

impl ErrorCode {
    /// Every code, in the contract's order.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::InvalidRequest,
        ErrorCode::NoSession,
        ErrorCode::SessionExpired,
        ErrorCode::InvalidToken,
        ErrorCode::Forbidden,
        ErrorCode::PayloadTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::UpstreamError,
        ErrorCode::Unavailable,
    ];
    /// Parses the contract's spelling.
    pub fn parse(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
    /// The contract's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::NoSession => "no_session",
            ErrorCode::SessionExpired => "session_expired",
            ErrorCode::InvalidToken => "invalid_token",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::UpstreamError => "upstream_error",
            ErrorCode::Unavailable => "unavailable",
        }
    }
    /// The HTTP status the server answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::InvalidRequest => 400,
            ErrorCode::NoSession | ErrorCode::SessionExpired | ErrorCode::InvalidToken => 401,
            ErrorCode::Forbidden => 403,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::UpstreamError => 502,
            ErrorCode::Unavailable => 503,
        }
    }
}

/// Error reply body.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ErrorReply {
    /// Stable code.
    pub error: ErrorCode,
    /// Human-readable explanation; never contains a secret.
    pub message: String,
}

/// An error reply as the browser helper reads it: only its `error`, which
/// may be anything (a code this version does not know is `None`).
#[derive(Clone, Debug, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default))]
pub struct RawErrorReply {
    /// `error`.
    pub error: JsonScalar,
}

impl RawErrorReply {
    /// The contract's code, if `error` is one.
    pub fn code(&self) -> Option<ErrorCode> {
        match &self.error {
            JsonScalar::String(s) => ErrorCode::parse(s),
            _ => None,
        }
    }
}

/// A JSON value as the browser helper sees one field of a parsed reply:
/// whatever its type, reading it cannot fail.
#[derive(Clone, PartialEq, Debug, Default)]
pub enum JsonScalar {
    /// The key is absent (or `undefined`).
    #[default]
    Missing,
    /// `null`.
    Null,
    /// A number.
    Number(f64),
    /// A string. (Its `Debug` is only ever used on non-secret fields.)
    String(String),
    /// Anything else (boolean, object, array).
    Other,
}

/// The fields of a 2xx reply body as read by the helper, before validation
/// (the names are [`TokenReply`]'s). Its `Debug` redacts `accessToken`.
#[derive(Clone, PartialEq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "camelCase", default))]
pub struct RawTokenReply {
    /// `accessToken`.
    pub access_token: JsonScalar,
    /// `expiresIn`.
    pub expires_in: JsonScalar,
    /// `uuid`.
    pub uuid: JsonScalar,
}

impl core::fmt::Debug for RawTokenReply {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let token = match &self.access_token {
            JsonScalar::String(_) => &"<redacted>" as &dyn core::fmt::Debug,
            other => other,
        };
        f.debug_struct("RawTokenReply")
            .field("access_token", token)
            .field("expires_in", &self.expires_in)
            .field("uuid", &self.uuid)
            .finish()
    }
}

/// Why a 2xx reply was not accepted. Never carries the token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MalformedReply {
    /// The body is not a JSON object.
    NotJson,
    /// `accessToken` is missing or not a string (and null was not allowed).
    MissingToken,
    /// `accessToken` is not printable ASCII or longer than 4 KiB.
    BadToken,
    /// `expiresIn` is missing, not a number, not positive, or over 24 hours.
    BadExpiresIn,
}

impl MalformedReply {
    /// A static explanation, safe for events and logs.
    pub fn message(self) -> &'static str {
        match self {
            MalformedReply::NotJson => "backend reply is not a JSON object",
            MalformedReply::MissingToken => "backend reply has no accessToken",
            MalformedReply::BadToken => "backend reply has an implausible accessToken",
            MalformedReply::BadExpiresIn => "backend reply has no valid expiresIn",
        }
    }
}

impl RawTokenReply {
    /// Validates the raw fields. `allow_null_token` is true only for a code-mode
    /// start with `clientSession: false`.
    pub fn validate(self, allow_null_token: bool) -> Result<TokenReply, MalformedReply> {
        let access_token = match self.access_token {
            JsonScalar::String(s) if is_plausible_token(&s) => Some(AccessToken::new(s)),
            JsonScalar::String(_) => return Err(MalformedReply::BadToken),
            JsonScalar::Null if allow_null_token => None,
            _ => return Err(MalformedReply::MissingToken),
        };
        let expires_in = match self.expires_in {
            JsonScalar::Number(n)
                if n.is_finite() && n >= 1.0 && n <= MAX_EXPIRES_IN_SECS as f64 =>
            {
                n as u64
            }
            _ => return Err(MalformedReply::BadExpiresIn),
        };
        let uuid = match self.uuid {
            JsonScalar::String(s) if !s.is_empty() => Some(s),
            _ => None,
        };
        Ok(TokenReply {
            access_token,
            expires_in,
            uuid,
        })
    }
}

/// serde for the enums spelled by `as_str` / `parse`, and for [`JsonScalar`].
#[cfg(feature = "serde")]
mod serde_impls {
    use super::{ErrorCode, JsonScalar, Mode};
    use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
    use serde::{Serialize, Serializer};

    /// A string that must be one of `parse`'s.
    struct Named<T>(fn(&str) -> Option<T>, &'static str);

    impl<T> Visitor<'_> for Named<T> {
        type Value = T;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str(self.1)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            (self.0)(v).ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }

    macro_rules! by_name {
        ($ty:ty, $what:literal) => {
            impl Serialize for $ty {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.serialize_str(self.as_str())
                }
            }
            impl<'de> Deserialize<'de> for $ty {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    d.deserialize_str(Named(<$ty>::parse, $what))
                }
            }
        };
    }
    by_name!(Mode, "\"token\" or \"code\"");
    by_name!(ErrorCode, "one of the contract's error codes");

    impl<'de> Deserialize<'de> for JsonScalar {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(Scalar)
        }
    }

    /// Any JSON value, kept when it is a number or a string.
    struct Scalar;

    impl<'de> Visitor<'de> for Scalar {
        type Value = JsonScalar;
        fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_bool<E>(self, _: bool) -> Result<JsonScalar, E> {
            Ok(JsonScalar::Other)
        }
        fn visit_i64<E>(self, v: i64) -> Result<JsonScalar, E> {
            Ok(JsonScalar::Number(v as f64))
        }
        fn visit_u64<E>(self, v: u64) -> Result<JsonScalar, E> {
            Ok(JsonScalar::Number(v as f64))
        }
        fn visit_f64<E>(self, v: f64) -> Result<JsonScalar, E> {
            Ok(JsonScalar::Number(v))
        }
        fn visit_str<E>(self, v: &str) -> Result<JsonScalar, E> {
            Ok(JsonScalar::String(v.into()))
        }
        fn visit_string<E>(self, v: String) -> Result<JsonScalar, E> {
            Ok(JsonScalar::String(v))
        }
        fn visit_unit<E>(self) -> Result<JsonScalar, E> {
            Ok(JsonScalar::Null)
        }
        fn visit_none<E>(self) -> Result<JsonScalar, E> {
            Ok(JsonScalar::Null)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<JsonScalar, D::Error> {
            d.deserialize_any(Scalar)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<JsonScalar, A::Error> {
            while seq.next_element::<de::IgnoredAny>()?.is_some() {}
            Ok(JsonScalar::Other)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<JsonScalar, A::Error> {
            while map
                .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
                .is_some()
            {}
            Ok(JsonScalar::Other)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(token: JsonScalar, exp: JsonScalar) -> RawTokenReply {
        RawTokenReply {
            access_token: token,
            expires_in: exp,
            uuid: JsonScalar::Missing,
        }
    }

    #[test]
    fn accepts_a_good_reply() {
        let r = raw(JsonScalar::String("tok".into()), JsonScalar::Number(3600.0))
            .validate(false)
            .expect("valid");
        assert_eq!(r.expires_in, 3600);
        assert_eq!(
            r.access_token.map(AccessToken::into_inner).as_deref(),
            Some("tok")
        );
    }

    #[test]
    fn rejects_malformed_replies() {
        use JsonScalar::*;
        let cases = [
            (Missing, Number(3600.0), MalformedReply::MissingToken),
            (Null, Number(3600.0), MalformedReply::MissingToken),
            (
                String("a b".into()),
                Number(3600.0),
                MalformedReply::BadToken,
            ),
            (
                String("x".repeat(4097)),
                Number(3600.0),
                MalformedReply::BadToken,
            ),
            (
                String("t".into()),
                Number(0.0),
                MalformedReply::BadExpiresIn,
            ),
            (
                String("t".into()),
                Number(-5.0),
                MalformedReply::BadExpiresIn,
            ),
            (
                String("t".into()),
                Number(86401.0),
                MalformedReply::BadExpiresIn,
            ),
            (
                String("t".into()),
                Number(f64::NAN),
                MalformedReply::BadExpiresIn,
            ),
            (
                String("t".into()),
                String("3600".into()),
                MalformedReply::BadExpiresIn,
            ),
        ];
        for (t, e, want) in cases {
            assert_eq!(raw(t, e).validate(false), Err(want));
        }
    }

    #[test]
    fn fingerprints_spell_as_8_lowercase_hex_digits() {
        assert_eq!(Fingerprint::of("").to_hex(), "811c9dc5");
        assert_eq!(Fingerprint::of("a").to_hex(), "e40c292c");
        assert_eq!(Fingerprint::from_u32(0x0000_00ab).to_hex(), "000000ab");
        assert_eq!(Fingerprint::from_u32(0x0000_00ab).to_string(), "000000ab");
        assert_eq!(
            format!("{:?}", Fingerprint::from_u32(1)),
            "Fingerprint(00000001)"
        );
        for v in [0, 1, 0xdead_beef, u32::MAX, 0x8000_0000] {
            let fp = Fingerprint::from_u32(v);
            assert_eq!(Fingerprint::parse(&fp.to_hex()), Some(fp));
        }
        for bad in [
            "",
            "811c9dc",
            "811c9dc50",
            "811C9DC5",
            "0x811c9d",
            " 811c9dc5",
            "811c9dc5 ",
            "811c9dcg",
            "８１１c9dc5",
            "-11c9dc5",
            "+11c9dc5",
        ] {
            assert_eq!(Fingerprint::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn refresh_requests_extend_the_idle_deadline_unless_not_interactive() {
        let absent = RefreshRequest::default();
        assert!(absent.extends_idle_deadline());
        let yes = RefreshRequest {
            interactive: Some(true),
            ..absent
        };
        assert!(yes.extends_idle_deadline());
        let no = RefreshRequest {
            interactive: Some(false),
            ..absent
        };
        assert!(!no.extends_idle_deadline());
    }

    #[test]
    fn null_token_only_when_allowed() {
        let r = raw(JsonScalar::Null, JsonScalar::Number(60.0)).validate(true);
        assert_eq!(r.map(|r| r.access_token), Ok(None));
    }
}
