//! The helper's one error type and its `Result` alias.
//!
//! Every variant has a stable [`Error::code`], which JavaScript callers see as
//! the `code` property of the `Error` the API throws or rejects with. Messages
//! are static text plus, at most, the name of a configuration key: never a
//! token, a URL with credentials, or anything else read from the page.

use capture_session_core::config::ConfigError;
use capture_session_core::engine::ApiError;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = core::result::Result<T, E>;

/// Everything that can go wrong in the browser layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A configuration value has the wrong type or an impossible value, or a
    /// backend URL points to an origin that is not allowed (the engine's
    /// validation, plus the type checks of the browser layer).
    Config(ConfigError),
    /// A JS API call got an argument it cannot use.
    InvalidArgument(&'static str),
    /// A session operation failed (`no_session`, `backend_unavailable`, ...).
    Api(ApiError),
    /// `localStorage` cannot be used (disabled, private mode, sandboxed frame).
    StorageUnavailable,
    /// `localStorage` refused a write (quota, or an exception of its own).
    StorageWrite,
}

impl From<ConfigError> for Error {
    fn from(e: ConfigError) -> Error {
        Error::Config(e)
    }
}

impl Error {
    /// The stable `code` JavaScript callers see.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Config(e) => e.code(),
            Error::InvalidArgument(_) => "invalid_argument",
            Error::Api(e) => e.code(),
            Error::StorageUnavailable => "storage_unavailable",
            Error::StorageWrite => "storage_write_failed",
        }
    }

    /// The message of the JavaScript `Error` (and this type's `Display`):
    /// each spelled once, here, and built without `format!`.
    pub fn message(&self) -> String {
        let mut m = String::from("capture-session: ");
        match self {
            Error::Config(e) => {
                m.push('`');
                m.push_str(e.field);
                m.push_str("` ");
                m.push_str(e.message());
            }
            Error::InvalidArgument(what) => m.push_str(what),
            Error::Api(e) => m.push_str(match e {
                ApiError::NoSession => "there is no session to refresh",
                ApiError::BackendUnavailable => "the backend could not refresh the session",
                ApiError::SessionEnded => "the session ended",
                ApiError::Detached => "the helper was detached",
            }),
            Error::StorageUnavailable => m.push_str("localStorage is unavailable"),
            Error::StorageWrite => m.push_str("localStorage refused a write"),
        }
        m
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;
    use capture_session_core::config::ConfigProblem;

    #[test]
    fn messages_name_the_key_and_codes_are_stable() {
        let e = Error::from(ConfigError::new(
            "retry.baseMs",
            ConfigProblem::NotANonNegativeInteger,
        ));
        assert_eq!(e.code(), "config_invalid");
        assert_eq!(
            e.message(),
            "capture-session: `retry.baseMs` must be a non-negative integer"
        );
        let o = Error::from(ConfigError::new(
            "refreshUrl",
            ConfigProblem::OriginNotAllowed,
        ));
        assert_eq!(o.code(), "origin_not_allowed");
        assert!(o.message().contains("`refreshUrl`"));
        assert_eq!(Error::Api(ApiError::NoSession).code(), "no_session");
        assert_eq!(
            Error::Api(ApiError::BackendUnavailable).code(),
            "backend_unavailable"
        );
    }
}
