//! What every contract request must carry, as extractors: the
//! `X-Capture-Session: 1` header and an allowed `Origin` ([`CheckedRequest`]),
//! a JSON content type at start ([`JsonContentType`]), the session cookie
//! ([`SessionCookie`]) and a body within the contract's 16 KiB
//! ([`LimitedBody`], with `DefaultBodyLimit` set on the routes).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use capture_session_core::origin::Origin;
use capture_session_core::wire::{ErrorCode, HEADER_NAME, HEADER_VALUE};

use crate::app::AppState;
use crate::error::ApiError;
use crate::secret::SessionId;

/// The page origins allowed to call the contract endpoints, compared as
/// browsers compare origins (core's [`Origin`]: scheme, host
/// case-insensitively, default ports elided).
#[derive(Clone, Debug, Default)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Origins as configured (each parses as an [`Origin`]); empty: a
    /// request's `Origin` must name the host its `Host` header names.
    pub fn new(origins: Vec<String>) -> Self {
        Self(origins)
    }

    /// The configured origins.
    pub fn list(&self) -> &[String] {
        &self.0
    }

    /// Whether a request from `origin` that names `host` may call.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let Some(origin) = Origin::parse(origin) else {
            return false;
        };
        let same = |candidate: &str| Origin::parse(candidate).is_some_and(|c| c.same(&origin));
        if self.0.is_empty() {
            // The Host header says nothing about the scheme: either will do.
            host.is_some_and(|h| {
                !h.contains(['/', '?', '#', '@'])
                    && (same(&format!("http://{h}")) || same(&format!("https://{h}")))
            })
        } else {
            self.0.iter().any(|allowed| same(allowed))
        }
    }
}

/// Proof that a request carries `X-Capture-Session: 1` (which also forces a
/// CORS preflight cross-origin) and, when the browser sends one, an allowed
/// `Origin`. Refused with `403 forbidden`.
#[derive(Debug, Clone, Copy)]
pub struct CheckedRequest;

impl FromRequestParts<AppState> for CheckedRequest {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &AppState) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        if headers.get(HEADER_NAME).map(HeaderValue::as_bytes) != Some(HEADER_VALUE.as_bytes()) {
            return Err(ApiError::forbidden(
                "the X-Capture-Session: 1 header is required",
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
            let allowed = origin
                .to_str()
                .is_ok_and(|o| app.allowed_origins.allows(o, host));
            if !allowed {
                return Err(ApiError::forbidden("origin not allowed"));
            }
        }
        Ok(CheckedRequest)
    }
}

/// A `Content-Type: application/json` request (`400 invalid_request`
/// otherwise).
#[derive(Debug, Clone, Copy)]
pub struct JsonContentType;

impl<S: Sync> FromRequestParts<S> for JsonContentType {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let is_json = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if is_json {
            Ok(JsonContentType)
        } else {
            Err(ApiError::invalid_request(
                "Content-Type must be application/json",
            ))
        }
    }
}

/// The session named by the request's cookie, if it has one of the shape we
/// issue.
#[derive(Debug, Clone)]
pub struct SessionCookie(pub Option<SessionId>);

impl SessionCookie {
    /// The session cookie among `headers`.
    pub fn find(app: &AppState, headers: &HeaderMap) -> SessionCookie {
        SessionCookie(
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().split_once('='))
                .find(|(name, _)| *name == app.cookie_name)
                .and_then(|(_, value)| SessionId::parse(value.trim())),
        )
    }
}

impl FromRequestParts<AppState> for SessionCookie {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(SessionCookie::find(app, &parts.headers))
    }
}

/// The request body, read up to the routes' `DefaultBodyLimit`; a larger one
/// is `413 payload_too_large`.
#[derive(Debug, Clone)]
pub struct LimitedBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for LimitedBody {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        Bytes::from_request(request, state)
            .await
            .map(LimitedBody)
            .map_err(|e| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        ErrorCode::PayloadTooLarge,
                        "request bodies are limited to 16 KiB",
                    )
                } else {
                    ApiError::invalid_request("the request body could not be read")
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_compare_as_browsers_compare_them() {
        let list = AllowedOrigins::new(vec!["https://www.example.com".into()]);
        assert!(list.allows("https://www.example.com", None));
        assert!(list.allows("https://WWW.example.com:443", None));
        assert!(!list.allows("http://www.example.com", None));
        assert!(!list.allows("https://www.example.com:8443", None));
        assert!(!list.allows("https://evil.example.com", None));
        assert!(!list.allows("null", None));

        let same_host = AllowedOrigins::default();
        assert!(same_host.allows("https://api.example.com", Some("api.example.com")));
        assert!(same_host.allows("http://127.0.0.1:8080", Some("127.0.0.1:8080")));
        assert!(same_host.allows("https://api.example.com", Some("API.example.com:443")));
        assert!(!same_host.allows("https://api.example.com", Some("other.example.com")));
        assert!(!same_host.allows("http://127.0.0.1:8080", Some("127.0.0.1:9090")));
        assert!(!same_host.allows("https://api.example.com", None));
        assert!(!same_host.allows("https://api.example.com", Some("api.example.com/x")));
        assert!(!same_host.allows("null", Some("api.example.com")));
    }
}
