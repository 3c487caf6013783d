//! Fault injection: latency, HTTP errors, `stat: error` codes and dropped
//! connections, for the next requests to matching simulator paths.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};

use super::api::{admin_error, capture_error, Answer};
use super::state::Simulator;

/// One fault rule (body of `POST /_admin/faults`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fault {
    /// Only requests whose path ends with this (e.g. `/oauth/token`); all
    /// Capture paths when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Delay before answering (or failing), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    /// Delay after the endpoint did its work (a slow reply to a request
    /// Capture has already acted on), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_after_ms: Option<u64>,
    /// Answer with this HTTP status (with `statError`: a Capture error body;
    /// alone: a plain-text error page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// With `httpStatus`: a `Retry-After` header of this many seconds (as a
    /// rate-limited Capture sends with 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Answer `stat: error` with this Capture code (414, 510, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stat_error: Option<u32>,
    /// Break the connection instead of answering.
    #[serde(default)]
    pub drop_connection: bool,
    /// Number of requests affected (default: until cleared).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
}

/// Middleware in front of the Capture endpoints.
pub async fn inject(State(sim): State<Simulator>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let fault = {
        let mut faults = sim.inner.faults.lock().unwrap_or_else(|p| p.into_inner());
        let index = faults.iter().position(|f| {
            f.path.as_deref().is_none_or(|p| path.ends_with(p)) && f.count != Some(0)
        });
        index.map(|i| {
            let taken = faults[i].clone();
            if let Some(n) = faults[i].count.as_mut() {
                *n -= 1;
                if *n == 0 {
                    faults.remove(i);
                }
            }
            taken
        })
    };
    let Some(fault) = fault else {
        return next.run(request).await;
    };
    sim.inner.stats.faulted.fetch_add(1, Ordering::Relaxed);
    if let Some(ms) = fault.latency_ms {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    if fault.drop_connection {
        // A body that fails makes the HTTP server abort the connection.
        let stream = futures_util::stream::once(async {
            Err::<Bytes, std::io::Error>(std::io::Error::other("simulated dropped connection"))
        });
        return Response::new(Body::from_stream(stream));
    }
    let status = fault.http_status.and_then(|s| StatusCode::from_u16(s).ok());
    let mut response = match (fault.stat_error, status) {
        (Some(code), status) => {
            capture_error(status.unwrap_or(StatusCode::OK), code, "simulated failure")
        }
        (None, Some(status)) => (status, "simulated HTTP error").into_response(),
        (None, None) => {
            let response = next.run(request).await;
            if let Some(ms) = fault.latency_after_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            response
        }
    };
    if let Some(secs) = fault.retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// `POST /_admin/faults`: add a rule; answers the rules now active.
pub async fn add(State(sim): State<Simulator>, body: Result<Json<Fault>, JsonRejection>) -> Answer {
    let Json(fault) = body.map_err(|e| admin_error(StatusCode::BAD_REQUEST, &e.body_text()))?;
    if fault.latency_ms.is_none()
        && fault.latency_after_ms.is_none()
        && fault.http_status.is_none()
        && fault.stat_error.is_none()
        && !fault.drop_connection
    {
        return Err(admin_error(
            StatusCode::BAD_REQUEST,
            "a fault needs latencyMs, latencyAfterMs, httpStatus, statError or dropConnection",
        ));
    }
    if fault.retry_after.is_some() && fault.http_status.is_none() {
        return Err(admin_error(
            StatusCode::BAD_REQUEST,
            "retryAfter goes with httpStatus",
        ));
    }
    if fault.http_status.is_some_and(|s| !(200..=599).contains(&s)) {
        return Err(admin_error(
            StatusCode::BAD_REQUEST,
            "httpStatus must be between 200 and 599",
        ));
    }
    let mut faults = sim.inner.faults.lock().unwrap_or_else(|p| p.into_inner());
    faults.push(fault);
    tracing::info!(rules = faults.len(), "simulator fault added");
    Ok((StatusCode::CREATED, Json(faults.clone())).into_response())
}

/// `GET /_admin/faults`.
pub async fn list(State(sim): State<Simulator>) -> Json<Vec<Fault>> {
    Json(
        sim.inner
            .faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone(),
    )
}

/// `DELETE /_admin/faults`: clear every rule.
pub async fn clear(State(sim): State<Simulator>) -> StatusCode {
    sim.inner
        .faults
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clear();
    StatusCode::NO_CONTENT
}
