//! The contract's error replies (`{"error": "<code>", "message": "..."}`).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use capture_session_core::wire::{ErrorCode, ErrorReply};

/// An error answered to the browser helper. Its message is static or built
/// from non-secret facts only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} ({message})", code.as_str())]
pub struct ApiError {
    /// Stable code, which fixes the HTTP status.
    pub code: ErrorCode,
    /// Human-readable explanation.
    pub message: String,
    /// Seconds for the `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
}

/// Result alias of the contract handlers.
pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// An error without `Retry-After`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// `400 invalid_request`.
    pub fn invalid_request(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidRequest, message)
    }
    /// `401 no_session`.
    pub fn no_session() -> Self {
        Self::new(ErrorCode::NoSession, "there is no session")
    }
    /// `401 session_expired`.
    pub fn session_expired(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::SessionExpired, message)
    }
    /// `401 invalid_token`.
    pub fn invalid_token(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidToken, message)
    }
    /// `403 forbidden`.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }
    /// `502 upstream_error`.
    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::UpstreamError, message)
    }
    /// `503 unavailable` with `Retry-After`.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        Self {
            code: ErrorCode::Unavailable,
            message: message.into(),
            retry_after: Some(retry_after_secs.max(1)),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry_after = self.retry_after;
        let mut response = (
            status,
            Json(ErrorReply {
                error: self.code,
                message: self.message.clone(),
            }),
        )
            .into_response();
        // For the middleware that logs refusals (`contract::log_refusals`).
        response.extensions_mut().insert(self);
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}
