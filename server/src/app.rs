//! Assembles the server: state, routes, listener.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, Method};
use axum::response::Response;
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use capture_session_core::wire::MAX_BODY_BYTES;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::admin::{self, AdminState};
use crate::capture::CaptureClient;
use crate::cli::StoreArgs;
use crate::clock::Clock;
use crate::contract;
use crate::limits::{self, ClientAddress, RateLimitLayer};
use crate::metrics::Metrics;
use crate::ops;
use crate::request::AllowedOrigins;
use crate::serve::serve_gracefully;
use crate::settings::{ConfigError, Settings, StaticDirs, StoreConfig};
use crate::sim::{self, SimConfig, Simulator};
use crate::store::memory::MemoryStore;
use crate::store::redis::{RedisOptions, RedisStore};
use crate::store::{SessionStore, StoreError, StoreLimits};

/// Name of the session cookie when served over HTTPS.
pub const SECURE_COOKIE_NAME: &str = "__Host-capture-session";
/// Name of the session cookie with `--insecure-localhost-cookies`.
pub const INSECURE_COOKIE_NAME: &str = "capture-session";

/// Shared state of the request handlers.
#[derive(Clone)]
pub struct AppState {
    /// Configuration.
    pub settings: Arc<Settings>,
    /// Sessions.
    pub store: SessionStore,
    /// Identity Cloud.
    pub capture: CaptureClient,
    /// Counters and simulated outages (the outage is read only by the
    /// `--simulate` middleware).
    pub admin: Arc<AdminState>,
    /// Allowed page origins; empty: same host as the request.
    pub allowed_origins: Arc<AllowedOrigins>,
    /// Where "now" comes from.
    pub clock: Clock,
    /// What the operations listener's `/metrics` reports.
    pub metrics: Metrics,
    /// The session cookie's name.
    pub cookie_name: &'static str,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Bad flags.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Could not listen.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The session store is unreachable.
    #[error("session store: {0}")]
    Store(#[from] StoreError),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Bounds of the store for these settings.
fn store_limits(settings: &Settings) -> StoreLimits {
    StoreLimits {
        max_sessions_per_user: settings.max_sessions_per_user,
        // No session outlives its absolute lifetime by more than a minute.
        index_ttl: settings.session_max.max(settings.remember_max) + Duration::from_secs(120),
    }
}

/// Connects the configured store.
async fn open_store(settings: &Settings, clock: &Clock) -> Result<SessionStore, StoreError> {
    let limits = store_limits(settings);
    Ok(match &settings.store {
        StoreConfig::Memory => SessionStore::Memory(MemoryStore::with_clock(limits, clock.clone())),
        StoreConfig::Redis {
            url,
            prefix,
            ca_pem,
        } => {
            if settings.encryption.is_none() {
                tracing::warn!(
                    "the Redis store holds sessions, tokens included, unencrypted: give --encryption-key-file"
                );
            }
            SessionStore::Redis(
                RedisStore::connect(RedisOptions {
                    url: url.clone(),
                    prefix: prefix.clone(),
                    ca_pem: ca_pem.clone(),
                    keys: settings.encryption.clone(),
                    allow_plaintext: settings.allow_plaintext_store,
                    limits,
                })
                .await?,
            )
        }
    })
}

/// `capture-session-server revoke`: ends every session of `uuid` in the
/// Redis store named by `args`; returns how many.
pub async fn revoke_in_store(args: &StoreArgs, uuid: &str) -> Result<usize, StartupError> {
    let StoreConfig::Redis {
        url,
        prefix,
        ca_pem,
    } = StoreConfig::from_args(args)?
    else {
        return Err(ConfigError::Invalid {
            flag: "--store",
            reason: "revoke needs the servers' Redis store (a memory store lives in its server: use POST /revoke on its operations listener)".into(),
        }
        .into());
    };
    let store = RedisStore::connect(RedisOptions {
        url,
        prefix,
        ca_pem,
        // Revoking reads no value.
        keys: None,
        allow_plaintext: false,
        limits: StoreLimits {
            max_sessions_per_user: 0,
            index_ttl: Duration::from_secs(60),
        },
    })
    .await?;
    Ok(SessionStore::Redis(store).revoke_user(uuid).await?)
}

/// A bound, not yet running server.
pub struct Server {
    listener: TcpListener,
    router: Router,
    local_addr: SocketAddr,
    shutdown_timeout: Duration,
    header_read_timeout: Duration,
    /// The operations listener and its routes (`--ops-listen`).
    ops: Option<(TcpListener, Router)>,
}

impl Server {
    /// Binds the listener, connects the store and builds the routes.
    pub async fn bind(settings: Settings) -> Result<Server, StartupError> {
        Server::bind_with_clock(settings, Clock::real()).await
    }

    /// [`Server::bind`] with the clock the handlers and the memory store
    /// read (tests advance it instead of sleeping).
    pub async fn bind_with_clock(
        mut settings: Settings,
        clock: Clock,
    ) -> Result<Server, StartupError> {
        let listener =
            TcpListener::bind(settings.listen)
                .await
                .map_err(|source| StartupError::Listen {
                    addr: settings.listen,
                    source,
                })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Listen {
                addr: settings.listen,
                source,
            })?;
        let simulator = if settings.simulate {
            let config =
                SimConfig::from_args(&settings.sim).map_err(|reason| ConfigError::Invalid {
                    flag: "--sim-user",
                    reason,
                })?;
            Some(Simulator::new(config))
        } else {
            None
        };
        let reach = if local_addr.ip().is_unspecified() {
            SocketAddr::from(([127, 0, 0, 1], local_addr.port()))
        } else {
            local_addr
        };
        let capture_url = match settings.capture_url.clone() {
            Some(url) => url,
            None => format!("http://{reach}/sim"),
        };
        settings.capture_url = Some(capture_url.clone());
        let mut allowed_origins = settings.allowed_origins.clone();
        if settings.simulate && allowed_origins.is_empty() && !local_addr.ip().is_unspecified() {
            allowed_origins.push(format!("http://{local_addr}"));
            if local_addr.ip().is_loopback() {
                allowed_origins.push(format!("http://localhost:{}", local_addr.port()));
            }
        }
        let store = open_store(&settings, &clock).await?;
        // Bound before anything else can fail half-way: a taken port is a
        // start-up error like the public one's.
        let ops_listener = match settings.ops_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| StartupError::Listen { addr, source })?,
            ),
            None => None,
        };
        let metrics = if ops_listener.is_some() {
            Metrics::on()
        } else {
            Metrics::off()
        };
        let capture = CaptureClient::new(capture_url, &settings, metrics.clone())?;
        let cookie_name = if settings.insecure_cookies {
            INSECURE_COOKIE_NAME
        } else {
            SECURE_COOKIE_NAME
        };
        let static_dirs = settings.static_dirs.clone();
        let simulate = settings.simulate;
        let shutdown_timeout = settings.shutdown_timeout;
        let header_read_timeout = settings.limits.header_read_timeout;
        let state = AppState {
            settings: Arc::new(settings),
            store,
            capture,
            admin: Arc::new(AdminState::default()),
            allowed_origins: Arc::new(AllowedOrigins::new(allowed_origins)),
            cookie_name,
            clock,
            metrics,
        };
        let ops = ops_listener.map(|l| (l, ops::router(state.clone())));
        let router = routes(state, simulator, static_dirs.as_ref(), simulate);
        Ok(Server {
            listener,
            router,
            local_addr,
            shutdown_timeout,
            header_read_timeout,
            ops,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The operations listener's address, when there is one.
    pub fn ops_addr(&self) -> Option<SocketAddr> {
        self.ops.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes, then stops accepting connections
    /// (on the operations listener too) and lets in-flight requests finish
    /// for up to `--shutdown-timeout`.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            // A dropped sender (the signal task ended) also means "stop".
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let public = serve_gracefully(
            self.listener,
            self.router,
            stopped(stop_rx.clone()),
            self.shutdown_timeout,
            self.header_read_timeout,
        );
        match self.ops {
            Some((listener, router)) => {
                let ops = serve_gracefully(
                    listener,
                    router,
                    stopped(stop_rx),
                    self.shutdown_timeout,
                    self.header_read_timeout,
                );
                let (public, ops) = tokio::join!(public, ops);
                public.and(ops)
            }
            None => public.await,
        }
    }

    /// Serves in a background task (tests); stop it with [`RunningServer::stop`].
    pub fn spawn(self) -> RunningServer {
        let (tx, rx) = oneshot::channel::<()>();
        let addr = self.local_addr;
        let ops_addr = self.ops_addr();
        let task = tokio::spawn(self.run(async {
            let _ = rx.await;
        }));
        RunningServer {
            addr,
            ops_addr,
            shutdown: Some(tx),
            task,
        }
    }
}

/// A server running in a background task.
pub struct RunningServer {
    addr: SocketAddr,
    ops_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// `http://ADDR{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
    /// `http://OPS_ADDR{path}` on the operations listener, if there is one.
    pub fn ops_url(&self, path: &str) -> Option<String> {
        self.ops_addr.map(|a| format!("http://{a}{path}"))
    }
    /// Stops accepting connections and waits for open ones to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if self.shutdown.is_some() {
            self.task.abort();
        }
    }
}

fn routes(
    state: AppState,
    simulator: Option<Simulator>,
    static_dirs: Option<&StaticDirs>,
    simulate: bool,
) -> Router {
    let limits = state.settings.limits.clone();
    // Each of start and refresh has its own per-address bucket.
    let rate_limited = |endpoint: &'static str, route: MethodRouter<AppState>| {
        let clients = ClientAddress::new(&limits.trusted_proxies);
        let metrics = state.metrics.clone();
        match limits
            .rate
            .and_then(|rate| limits::rate_limit(rate, clients, endpoint, metrics))
        {
            Some(layer) => route.layer::<RateLimitLayer, _>(layer),
            None => route,
        }
    };
    let mut contract_routes = Router::new()
        .route(
            "/capture-session/start",
            rate_limited("start", post(contract::start)),
        )
        .route(
            "/capture-session/refresh",
            rate_limited("refresh", post(contract::refresh)),
        )
        .route("/capture-session/end", post(contract::end));
    if simulate {
        // Demo counters and simulated outages, in front of every check.
        contract_routes = contract_routes.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            admin::count_and_outage,
        ));
    }
    contract_routes = contract_routes
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            contract::observe,
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ));
    // A page on another allowed origin (same site, e.g. www. -> api.) calls
    // with credentials: answer its preflight and let it read the replies.
    if !state.allowed_origins.list().is_empty() {
        let allowed = Arc::clone(&state.allowed_origins);
        contract_routes = contract_routes.layer(
            CorsLayer::new()
                .allow_origin(AllowOrigin::predicate(move |origin, _| {
                    origin.to_str().is_ok_and(|o| allowed.allows(o, None))
                }))
                .allow_methods([Method::POST])
                .allow_headers(AllowHeaders::mirror_request())
                .allow_credentials(true)
                .max_age(Duration::from_secs(600)),
        );
    }
    let mut router = contract_routes.route("/healthz", get(healthz));
    if simulate {
        router = router
            .route("/capture-session/_admin/stats", get(admin::stats))
            .route(
                "/capture-session/_admin/stats/reset",
                post(admin::reset_stats),
            )
            .route(
                "/capture-session/_admin/outage",
                get(admin::get_outage).post(admin::set_outage),
            )
            .route("/capture-session/_admin/session", get(admin::session_info))
            .route_layer(axum::middleware::from_fn(admin::loopback_host_only));
    }
    let mut router = router.with_state(state);
    if let Some(sim) = simulator {
        // The demo page's "kill the token" button: the in-process simulator's
        // revocation, behind the same loopback-Host rule as the routes above
        // (the simulator's own admin routes also want its secret, which a
        // page does not have).
        router = router
            .merge(sim::demo_routes(sim.clone()))
            .nest("/sim", sim::router(sim));
    }
    if let Some(dirs) = static_dirs {
        let files = Router::new()
            .nest_service("/pkg", ServeDir::new(&dirs.pkg))
            .nest_service("/dist", ServeDir::new(&dirs.dist))
            .fallback_service(ServeDir::new(&dirs.www))
            .layer(axum::middleware::map_response(no_cache));
        router = router.merge(files);
    }
    router.layer(axum::middleware::from_fn_with_state(
        limits.request_timeout,
        limits::request_deadline,
    ))
}

/// Static files are revalidated on every load, so a rebuilt helper is picked up.
async fn no_cache(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-cache"));
    response
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"status": "ok"}))
}

/// Runs the standalone simulator (Capture paths at the root) until `shutdown`.
pub async fn run_simulator(
    listener: TcpListener,
    config: SimConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = sim::router(Simulator::new(config));
    serve_gracefully(
        listener,
        router,
        shutdown,
        SIMULATOR_SHUTDOWN_TIMEOUT,
        SIMULATOR_HEADER_READ_TIMEOUT,
    )
    .await
}

/// How long the standalone simulator lets in-flight requests run at shutdown.
const SIMULATOR_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the standalone simulator waits for a request's headers.
const SIMULATOR_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
