//! Demo and test controls of the contract endpoints (only with `--simulate`):
//! request counters and "take the backend down".

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use capture_session_core::wire::ErrorCode;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::error::ApiError;
use crate::request::SessionCookie;

/// A contract endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Endpoint {
    /// `/capture-session/start`.
    Start,
    /// `/capture-session/refresh`.
    Refresh,
    /// `/capture-session/end`.
    End,
}

/// How the backend misbehaves during an outage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutageMode {
    /// `503 unavailable` with `Retry-After`.
    #[serde(rename = "503")]
    Unavailable,
    /// `429 rate_limited` with `Retry-After`.
    #[serde(rename = "429")]
    RateLimited,
    /// A bare `500 Internal Server Error` (text, as a crashed backend sends).
    #[serde(rename = "500")]
    InternalError,
    /// `502 upstream_error`.
    #[serde(rename = "502")]
    UpstreamError,
    /// `401 session_expired`.
    #[serde(rename = "401")]
    SessionExpired,
    /// `200` with a body that is not JSON.
    #[serde(rename = "malformed")]
    Malformed,
    /// Answer normally after `delayMs`.
    #[serde(rename = "slow")]
    Slow,
    /// No outage.
    #[serde(rename = "off")]
    Off,
}

/// Body of `POST /capture-session/_admin/outage`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outage {
    /// What to do.
    pub mode: OutageMode,
    /// `Retry-After` seconds for 503 and 429 (default 5).
    #[serde(default = "default_retry_after")]
    pub retry_after: u64,
    /// Delay of `slow` in milliseconds (default 30000).
    #[serde(default = "default_delay")]
    pub delay_ms: u64,
    /// Affected endpoints (default all three).
    #[serde(default = "all_endpoints")]
    pub endpoints: Vec<Endpoint>,
    /// Number of requests affected before the outage ends by itself
    /// (default: until turned off).
    #[serde(default)]
    pub count: Option<u64>,
}

fn default_retry_after() -> u64 {
    5
}
fn default_delay() -> u64 {
    30_000
}
fn all_endpoints() -> Vec<Endpoint> {
    vec![Endpoint::Start, Endpoint::Refresh, Endpoint::End]
}

/// Counters reported by `GET /capture-session/_admin/stats`.
#[derive(Debug, Default)]
struct Counters {
    start: AtomicU64,
    refresh: AtomicU64,
    end: AtomicU64,
    rotations: AtomicU64,
}

/// Counters and the current outage.
#[derive(Debug, Default)]
pub struct AdminState {
    counters: Counters,
    outage: Mutex<Option<Outage>>,
}

impl AdminState {
    /// Counts a request that reached an endpoint (before any check).
    pub fn count(&self, endpoint: Endpoint) {
        let c = match endpoint {
            Endpoint::Start => &self.counters.start,
            Endpoint::Refresh => &self.counters.refresh,
            Endpoint::End => &self.counters.end,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a new token minted upstream by a refresh.
    pub fn count_rotation(&self) {
        self.counters.rotations.fetch_add(1, Ordering::Relaxed);
    }

    /// The response an ongoing outage gives instead of the endpoint's own
    /// (`slow` waits, then lets the request through).
    pub async fn outage(&self, endpoint: Endpoint) -> Option<Response> {
        let outage = {
            let mut guard = self.outage.lock().unwrap_or_else(|p| p.into_inner());
            let current = guard.as_mut()?;
            if !current.endpoints.contains(&endpoint) {
                return None;
            }
            let taken = current.clone();
            if let Some(n) = current.count.as_mut() {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    *guard = None;
                }
            }
            taken
        };
        let retry = outage.retry_after.max(1);
        match outage.mode {
            OutageMode::Off => None,
            OutageMode::Slow => {
                tokio::time::sleep(Duration::from_millis(outage.delay_ms)).await;
                None
            }
            OutageMode::Unavailable => Some(
                ApiError::unavailable("backend taken down (simulated outage)", retry)
                    .into_response(),
            ),
            OutageMode::RateLimited => Some(
                ApiError {
                    code: ErrorCode::RateLimited,
                    message: "too many requests (simulated outage)".into(),
                    retry_after: Some(retry),
                }
                .into_response(),
            ),
            OutageMode::InternalError => {
                Some((StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response())
            }
            OutageMode::UpstreamError => {
                Some(ApiError::upstream("Identity Cloud failed (simulated outage)").into_response())
            }
            OutageMode::SessionExpired => Some(
                ApiError::session_expired("session expired (simulated outage)").into_response(),
            ),
            OutageMode::Malformed => {
                let mut r =
                    (StatusCode::OK, "<html><body>Bad gateway</body></html>").into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                Some(r)
            }
        }
    }
}

/// Middleware of the contract routes with `--simulate` only: counts every
/// request that reaches an endpoint (before any check) and answers for it
/// during a simulated outage. Production requests never pass here, so they
/// never take the outage's lock.
pub async fn count_and_outage(
    State(app): State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let endpoint = match request.uri().path().rsplit('/').next() {
        Some("start") => Endpoint::Start,
        Some("refresh") => Endpoint::Refresh,
        Some("end") => Endpoint::End,
        _ => return next.run(request).await,
    };
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    app.admin.count(endpoint);
    match app.admin.outage(endpoint).await {
        Some(response) => response,
        None => next.run(request).await,
    }
}

/// `GET /capture-session/_admin/stats`.
pub async fn stats(State(app): State<AppState>) -> Json<serde_json::Value> {
    let c = &app.admin.counters;
    Json(serde_json::json!({
        "start": c.start.load(Ordering::Relaxed),
        "refresh": c.refresh.load(Ordering::Relaxed),
        "end": c.end.load(Ordering::Relaxed),
        "rotations": c.rotations.load(Ordering::Relaxed),
        "sessions": app.store.count(),
        "storeUnreadable": app.store.unreadable(),
    }))
}

/// `POST /capture-session/_admin/stats/reset`.
pub async fn reset_stats(State(app): State<AppState>) -> StatusCode {
    let c = &app.admin.counters;
    for counter in [&c.start, &c.refresh, &c.end, &c.rotations] {
        counter.store(0, Ordering::Relaxed);
    }
    StatusCode::NO_CONTENT
}

/// `POST /capture-session/_admin/outage`.
pub async fn set_outage(
    State(app): State<AppState>,
    body: Result<Json<Outage>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let outage = match body {
        Ok(Json(o)) => o,
        Err(e) => return ApiError::invalid_request(e.body_text()).into_response(),
    };
    let mut guard = app.admin.outage.lock().unwrap_or_else(|p| p.into_inner());
    tracing::info!(mode = ?outage.mode, "simulated backend outage changed");
    *guard = (outage.mode != OutageMode::Off && outage.count != Some(0)).then(|| outage.clone());
    Json(outage).into_response()
}

/// `GET /capture-session/_admin/outage`.
pub async fn get_outage(State(app): State<AppState>) -> Json<Option<Outage>> {
    Json(
        app.admin
            .outage
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    )
}

/// `GET /capture-session/_admin/session`: whether the caller's cookie names a
/// live session, and its non-secret facts.
pub async fn session_info(
    State(app): State<AppState>,
    SessionCookie(id): SessionCookie,
) -> Response {
    let Some(id) = id else {
        return Json(serde_json::json!({"exists": false})).into_response();
    };
    match app.store.load(&id.store_key()).await {
        Ok(Some(crate::store::Loaded::Live(r))) => Json(serde_json::json!({
            "exists": true,
            "mode": r.mode.as_str(),
            "uuid": r.uuid,
            "clientSession": r.client_session,
            "hasRefreshToken": r.refresh_token.is_some(),
            "tokenExpiresAt": r.token_expires_ms,
            "tokenMintedAt": r.token_minted_ms,
            "generation": r.generation,
            "createdAt": r.created_ms,
            "keepMeLoggedIn": r.keep_me_logged_in,
        }))
        .into_response(),
        Ok(Some(crate::store::Loaded::Ended(reason))) => {
            Json(serde_json::json!({"exists": false, "ended": reason.as_str()})).into_response()
        }
        Ok(None) => Json(serde_json::json!({"exists": false})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "session store failed");
            ApiError::unavailable("session store unavailable", 1).into_response()
        }
    }
}

/// Middleware of every admin and fault route (the contract's `_admin` and the
/// simulator's): answers `403` unless the request's `Host` is loopback
/// (127.0.0.0/8, `::1`, `localhost`), so a page on another site cannot reach
/// them through DNS rebinding and a server listening on all interfaces does
/// not offer them to the network by name.
pub async fn loopback_host_only(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.as_str().to_owned()));
    if host
        .as_deref()
        .is_some_and(crate::settings::host_header_is_loopback)
    {
        next.run(request).await
    } else {
        forbidden("admin routes answer only on a loopback Host")
    }
}

/// The `403` of an admin route's guard: `{"error": "forbidden", "message": ...}`.
pub fn forbidden(message: &'static str) -> Response {
    (
        StatusCode::FORBIDDEN,
        Json(serde_json::json!({"error": "forbidden", "message": message})),
    )
        .into_response()
}
