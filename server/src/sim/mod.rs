//! A simulator of Akamai Identity Cloud (Janrain Capture) good enough for the
//! demo and every test: the real paths, form-encoded parameters, Basic-auth
//! client checks, JSON shapes and error codes, plus fault injection.
//!
//! - `POST /oauth/auth_native_traditional`: sign-in for the Registration UI stand-in.
//! - `POST /oauth/token`: `authorization_code` and `refresh_token` grants.
//! - `POST /access/getAccessToken`: mint a token for a uuid (access_issuer client).
//! - `POST /entity`, `POST /entity.update`: read and change the user record.
//! - `/_admin/...`: faults, revocation, statistics (see server/README.md),
//!   answered only to a loopback Host with the `X-Sim-Admin-Secret` header.

mod api;
mod faults;
mod state;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub use faults::Fault;
pub use state::{SimConfig, Simulator};

/// The simulator's routes, Capture paths at the root (nest it under `/sim`
/// to share an origin with the demo site).
pub fn router(sim: Simulator) -> Router {
    let capture = Router::new()
        .route(
            "/oauth/auth_native_traditional",
            post(api::auth_native_traditional),
        )
        .route("/oauth/token", post(api::token))
        .route("/access/getAccessToken", post(api::get_access_token))
        .route("/entity", post(api::entity))
        .route("/entity.update", post(api::entity_update))
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            faults::inject,
        ));
    let admin = Router::new()
        .route(
            "/faults",
            get(faults::list).post(faults::add).delete(faults::clear),
        )
        .route("/revoke", post(api::revoke))
        .route("/users", get(api::users))
        .route("/users/delete", post(api::delete_user))
        .route("/client", post(api::client_access))
        .route("/stats", get(api::stats))
        .route("/stats/reset", post(api::reset_stats))
        .layer(axum::middleware::from_fn_with_state(
            sim.clone(),
            require_admin_secret,
        ))
        .layer(axum::middleware::from_fn(crate::admin::loopback_host_only));
    capture.nest("/_admin", admin).with_state(sim)
}

/// Routes of the contract's development admin (`--simulate` only) that act
/// on this simulator: `POST /capture-session/_admin/revoke`, the simulator's
/// token revocation (same body and reply as `/_admin/revoke`).
pub fn demo_routes(sim: Simulator) -> Router {
    Router::new()
        .route("/capture-session/_admin/revoke", post(api::revoke))
        .layer(axum::middleware::from_fn(crate::admin::loopback_host_only))
        .with_state(sim)
}

impl Simulator {
    /// A simulator with the given configuration.
    pub fn new(config: SimConfig) -> Self {
        Simulator {
            inner: Arc::new(state::SimInner::new(config)),
        }
    }

    /// What its admin routes require in `X-Sim-Admin-Secret`.
    fn admin_secret(&self) -> &str {
        self.inner.config.admin_secret.expose()
    }
}

/// The header the simulator's admin routes require, holding `--sim-admin-secret`.
pub const ADMIN_SECRET_HEADER: &str = "x-sim-admin-secret";

/// Middleware of the simulator's admin routes: `403` unless the request
/// carries the admin secret. A browser page cannot send a custom header to
/// another origin without a CORS preflight, which these routes never
/// answer, so another site cannot drive them through a visitor's browser
/// even on a loopback Host.
async fn require_admin_secret(
    State(sim): State<Simulator>,
    request: Request,
    next: Next,
) -> Response {
    let given = request
        .headers()
        .get(ADMIN_SECRET_HEADER)
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if crate::secret::equal_in_constant_time(given, sim.admin_secret().as_bytes()) {
        next.run(request).await
    } else {
        crate::admin::forbidden(
            "the simulator's admin routes need the X-Sim-Admin-Secret header (--sim-admin-secret)",
        )
    }
}
