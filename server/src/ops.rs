//! The operations listener (`--ops-listen`, off by default, never the public
//! port): `GET /metrics` (Prometheus text format), `GET /healthz` (the
//! process is alive), `GET /readyz` (the store answers) and `POST /revoke`
//! (end every session of a user).
//!
//! It has no authentication of its own: bind it to loopback or a private
//! network only (see docs/deploy.md).

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::app::AppState;

/// How long `/readyz` waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The operations routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/revoke", post(revoke))
        .with_state(state)
}

/// `GET /metrics`.
async fn metrics(State(app): State<AppState>) -> Response {
    let mut response = app.metrics.render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// `GET /healthz`: answers while the process runs.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: `200` when the session store answers (Redis: `PING`)
/// within 2 s, else `503`.
async fn readyz(State(app): State<AppState>) -> Response {
    match tokio::time::timeout(READY_TIMEOUT, app.store.ping()).await {
        Ok(Ok(())) => Json(json!({"status": "ready"})).into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "not ready: the session store failed");
            not_ready("the session store failed")
        }
        Err(_) => {
            tracing::warn!("not ready: the session store did not answer within 2 s");
            not_ready("the session store did not answer in time")
        }
    }
}

fn not_ready(why: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({"status": "unavailable", "message": why})),
    )
        .into_response()
}

/// Body of `POST /revoke`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Revoke {
    /// The user whose sessions end.
    uuid: String,
}

/// `POST /revoke {"uuid": "..."}`: ends every live session of the user
/// (each answers `401 session_expired` at its next request); answers
/// `{"ended": N}`.
async fn revoke(
    State(app): State<AppState>,
    body: Result<Json<Revoke>, JsonRejection>,
) -> Response {
    let Ok(Json(Revoke { uuid })) = body else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "message": "expected {\"uuid\": \"...\"}"})),
        )
            .into_response();
    };
    if !crate::contract::plausible_uuid(&uuid) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_request", "message": "uuid is not a plausible uuid"})),
        )
            .into_response();
    }
    match app.store.revoke_user(&uuid).await {
        Ok(ended) => {
            tracing::info!(ended, "an operator ended a user's sessions");
            app.metrics
                .sessions_ended("revoked", u64::try_from(ended).unwrap_or(u64::MAX));
            Json(json!({"ended": ended})).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "revoke: the session store failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"error": "unavailable", "message": "session store unavailable"})),
            )
                .into_response()
        }
    }
}
