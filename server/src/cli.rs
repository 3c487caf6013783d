//! Command-line flags and their environment-variable fallbacks.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::crypto::KeyMaterial;
use crate::secret::{ClientSecret, StoreUrl};

/// Reference backend for capture-session: keeps Akamai Identity Cloud
/// (Janrain Capture) sessions alive for the browser helper.
///
/// Every flag can also be set through the environment variable shown.
/// `--simulate` runs the whole demo on one machine: the contract endpoints,
/// an Identity Cloud simulator under /sim, and the demo site from www/.
#[derive(Debug, Parser)]
#[command(
    name = "capture-session-server",
    version,
    about,
    long_about,
    after_help = "Logging: RUST_LOG sets the log filter (default: info), e.g. RUST_LOG=capture_session_server=debug. Logs never contain tokens, codes, session ids or secrets."
)]
pub struct Cli {
    /// Run something other than the server.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server flags (used when no subcommand is given).
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run only the Identity Cloud simulator, with the Capture paths at the
    /// root (`/oauth/token`, `/access/getAccessToken`, `/entity`, ...) and its
    /// admin endpoints under `/_admin`. Point a server at it with
    /// `--capture-url http://ADDR`.
    Simulator(SimulatorArgs),
    /// End every session of a user in the Redis store (the same `--store`,
    /// `--redis-prefix` and `--redis-ca-file` as the servers): each answers
    /// `401 session_expired` at its next request. Prints how many were ended.
    Revoke(RevokeArgs),
}

/// Flags of `revoke`.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The user whose sessions end.
    #[arg(long)]
    pub uuid: String,
    /// Where the sessions are.
    #[command(flatten)]
    pub redis: StoreArgs,
}

/// Where sessions live (shared by the server and `revoke`).
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Session store: `memory`, or a Redis URL (redis://[:PASSWORD@]host:port/db,
    /// or rediss:// for TLS; Redis 6.0 or later) to share sessions and
    /// rotation locks between several instances. Never logged.
    #[arg(
        long,
        env = "CAPTURE_SESSION_STORE",
        default_value = "memory",
        hide_env_values = true
    )]
    pub store: StoreUrl,

    /// Prefix of every Redis key this server writes.
    #[arg(
        long,
        env = "CAPTURE_SESSION_REDIS_PREFIX",
        default_value = "capture-session"
    )]
    pub redis_prefix: String,

    /// PEM file of the CA certificate(s) that sign the Redis server's
    /// certificate, for a rediss:// store whose certificate the system's
    /// trust store does not cover.
    #[arg(long, env = "CAPTURE_SESSION_REDIS_CA_FILE", value_name = "PEM")]
    pub redis_ca_file: Option<PathBuf>,
}

/// Flags of the server.
#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, env = "CAPTURE_SESSION_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Address of the operations listener: GET /metrics (Prometheus), GET
    /// /healthz, GET /readyz (the store answers), POST /revoke. Off unless
    /// given; never the --listen address. It has no authentication: keep it
    /// on loopback or a private network.
    #[arg(long, env = "CAPTURE_SESSION_OPS_LISTEN", value_name = "ADDR:PORT")]
    pub ops_listen: Option<SocketAddr>,

    /// Serve the demo: run the Identity Cloud simulator in-process under /sim
    /// (and use it as the Capture server), serve www/ at /, /pkg/ and /dist/,
    /// and enable the /capture-session/_admin endpoints (answered only to a
    /// loopback Host). On a loopback address this also turns on
    /// --insecure-localhost-cookies. Development only: refused with a
    /// --capture-url off loopback.
    #[arg(long, env = "CAPTURE_SESSION_SIMULATE")]
    pub simulate: bool,

    /// Capture server base URL, e.g. https://example.us.janraincapture.com
    /// (required unless --simulate). http:// only on a loopback host
    /// (127.0.0.0/8, ::1, localhost), e.g. a standalone simulator; with
    /// --simulate only such a loopback URL is allowed.
    #[arg(long, env = "CAPTURE_SESSION_CAPTURE_URL")]
    pub capture_url: Option<String>,

    /// API client id with the access_issuer feature: used for
    /// /access/getAccessToken (token mode) and, unless --token-client-id is
    /// given, for /oauth/token (code mode).
    #[arg(long, env = "CAPTURE_SESSION_ISSUER_CLIENT_ID")]
    pub issuer_client_id: Option<String>,

    /// Secret of --issuer-client-id.
    #[arg(
        long,
        env = "CAPTURE_SESSION_ISSUER_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub issuer_client_secret: Option<ClientSecret>,

    /// API client id for /oauth/token (code exchange and refresh_token grants);
    /// defaults to the issuer client.
    #[arg(long, env = "CAPTURE_SESSION_TOKEN_CLIENT_ID")]
    pub token_client_id: Option<String>,

    /// Secret of --token-client-id.
    #[arg(
        long,
        env = "CAPTURE_SESSION_TOKEN_CLIENT_SECRET",
        hide_env_values = true
    )]
    pub token_client_secret: Option<ClientSecret>,

    /// Capture entity type of users.
    #[arg(long, env = "CAPTURE_SESSION_TYPE_NAME", default_value = "user")]
    pub type_name: String,

    /// `for_client_id` sent to /access/getAccessToken (the login client the
    /// minted token is for), if the tenant needs it.
    #[arg(long, env = "CAPTURE_SESSION_FOR_CLIENT_ID")]
    pub for_client_id: Option<String>,

    /// Page origins allowed to call the contract endpoints (repeat or separate
    /// with commas), e.g. https://www.example.com. Requests whose Origin header
    /// is not listed get 403. Default: with --simulate, the listen origin;
    /// otherwise the origin must match the request's Host.
    #[arg(
        long = "allowed-origin",
        env = "CAPTURE_SESSION_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Integration modes this site accepts at start (token, code).
    #[arg(
        long,
        env = "CAPTURE_SESSION_MODES",
        value_delimiter = ',',
        default_value = "token,code"
    )]
    pub modes: Vec<String>,

    /// Session store flags.
    #[command(flatten)]
    pub redis: StoreArgs,

    /// File of session encryption keys, one `ID:BASE64KEY` per line (32
    /// random bytes, e.g. `openssl rand -base64 32`): the first encrypts new
    /// values, all decrypt (rotate by adding a new first line). Encrypts the
    /// Redis store's values (AES-256-GCM).
    #[arg(long, env = "CAPTURE_SESSION_ENCRYPTION_KEY_FILE", value_name = "PATH")]
    pub encryption_key_file: Option<PathBuf>,

    /// The same key lines in one value (comma-separated), instead of
    /// --encryption-key-file. Prefer the environment variable: a command
    /// line is visible to other users of the machine.
    #[arg(
        long,
        env = "CAPTURE_SESSION_ENCRYPTION_KEY",
        hide_env_values = true,
        value_name = "ID:BASE64KEY"
    )]
    pub encryption_key: Option<KeyMaterial>,

    /// Let a Redis store hold sessions (tokens included) unencrypted when no
    /// encryption key is given (refused otherwise, except with --simulate);
    /// with a key, also read values written before encryption was turned on.
    #[arg(long, env = "CAPTURE_SESSION_ALLOW_PLAINTEXT_STORE")]
    pub allow_plaintext_store: bool,

    /// Most live sessions one user (uuid) may have; starting one more ends
    /// the oldest (its next request answers 401 session_expired). 0: no bound.
    #[arg(
        long,
        env = "CAPTURE_SESSION_MAX_SESSIONS_PER_USER",
        default_value_t = 20
    )]
    pub max_sessions_per_user: usize,

    /// A session ends after this many seconds without an interactive
    /// refresh (or start): refreshes that say `"interactive": false` (a
    /// background tab's timers) do not extend it; contract 1.0 refreshes do.
    #[arg(long, env = "CAPTURE_SESSION_IDLE_TIMEOUT", default_value_t = 12 * 3600)]
    pub session_idle_timeout: u64,

    /// Absolute lifetime, in seconds, of a session started without
    /// `keepMeLoggedIn` (its cookie is a browser-session cookie): it ends this
    /// long after its start, however active. Default 43200 (12 hours).
    #[arg(long, env = "CAPTURE_SESSION_SESSION_MAX", value_name = "SECONDS")]
    pub session_max: Option<u64>,

    /// Absolute lifetime, in seconds, of a session started with
    /// `"keepMeLoggedIn": true`; its cookie is persistent (`Max-Age` = the
    /// time left). Default 2592000 (30 days).
    #[arg(long, env = "CAPTURE_SESSION_REMEMBER_MAX", value_name = "SECONDS")]
    pub remember_max: Option<u64>,

    /// Deprecated, from before `keepMeLoggedIn`: every session ends this many
    /// seconds after its start. Sets both --session-max and --remember-max,
    /// each unless given itself.
    #[arg(long, env = "CAPTURE_SESSION_MAX_LIFETIME", value_name = "SECONDS")]
    pub session_max_lifetime: Option<u64>,

    /// Lifetime assumed for access tokens whose issuer does not say
    /// (/access/getAccessToken, and tokens posted in token mode). Default
    /// 3600, or --sim-token-lifetime with --simulate.
    #[arg(long, env = "CAPTURE_SESSION_TOKEN_LIFETIME")]
    pub token_lifetime: Option<u64>,

    /// Contract 1.0 refreshes (bodies without `replace`) get the session's
    /// current token instead of a new one when that token is younger than
    /// this many seconds (capped at a tenth of its lifetime), so that tabs
    /// racing one expiry share one upstream call. Contract 1.1 refreshes
    /// decide by the `replace` fingerprint instead and ignore this window.
    #[arg(long, env = "CAPTURE_SESSION_REUSE_WINDOW", default_value_t = 10)]
    pub reuse_window: u64,

    /// A contract 1.1 refresh from a page that holds an older token (its
    /// `replace` names another token than the session's current one) gets the
    /// current token only while that has at least this many seconds left,
    /// capped at half the token's lifetime (and never under 1 s); otherwise a
    /// new token is minted.
    #[arg(long, env = "CAPTURE_SESSION_MIN_TOKEN_LIFE", default_value_t = 60)]
    pub min_token_life: u64,

    /// Timeout of each call to Identity Cloud, in milliseconds. A timeout is
    /// answered 503 with Retry-After at once (not retried), so keep it well
    /// under the helper's requestTimeoutMs (10000 by default).
    #[arg(
        long,
        env = "CAPTURE_SESSION_UPSTREAM_TIMEOUT_MS",
        default_value_t = 4000
    )]
    pub upstream_timeout_ms: u64,

    /// Extra attempts after a fast transient Identity Cloud failure (510,
    /// 5xx, dropped connection). Single-use grants (code exchange,
    /// refresh_token) are retried only when Capture surely did not use them
    /// (510, connection refused).
    #[arg(long, env = "CAPTURE_SESSION_UPSTREAM_RETRIES", default_value_t = 2)]
    pub upstream_retries: u32,

    /// Retry-After (seconds) sent with 503 when Identity Cloud is busy or slow.
    #[arg(long, env = "CAPTURE_SESSION_RETRY_AFTER", default_value_t = 2)]
    pub retry_after: u64,

    /// Token mode: a session's user is checked again at Identity Cloud
    /// (`/entity` by uuid with the API client) when a refresh needs a new
    /// token and this many seconds have passed since the last check; a user
    /// who no longer exists, or whom the client may no longer act for, ends
    /// the session (a failed or slow call does not: the next refresh checks
    /// again).
    #[arg(
        long,
        env = "CAPTURE_SESSION_REVERIFY_INTERVAL",
        default_value_t = 3600,
        value_name = "SECONDS"
    )]
    pub reverify_interval: u64,

    /// Development and tests: hold a rotation's lock this many milliseconds
    /// instead of its computed worst case (every Identity Cloud attempt timing
    /// out, plus backoff and store round trips), to exercise a lock that
    /// expires while its holder still waits. Refused without --simulate.
    #[arg(long, env = "CAPTURE_SESSION_ROTATION_LOCK_MS", value_name = "MS")]
    pub rotation_lock_ms: Option<u64>,

    /// Session cookie without `Secure` and without the `__Host-` prefix, for
    /// plain-http development on a loopback address only: refused unless
    /// --simulate is set (which implies it on a loopback address).
    #[arg(long, env = "CAPTURE_SESSION_INSECURE_LOCALHOST_COOKIES")]
    pub insecure_localhost_cookies: bool,

    /// On SIGTERM or Ctrl-C the server stops accepting connections and lets
    /// in-flight requests finish for up to this many seconds, then exits 0.
    #[arg(
        long,
        env = "CAPTURE_SESSION_SHUTDOWN_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub shutdown_timeout: u64,

    /// Directory served at / (with --simulate, or when given). Default: the
    /// repository's www/.
    #[arg(long, env = "CAPTURE_SESSION_WWW")]
    pub www: Option<PathBuf>,

    /// Directory served at /pkg/ (the helper's npm package). Default: the
    /// repository's pkg/.
    #[arg(long, env = "CAPTURE_SESSION_PKG")]
    pub pkg: Option<PathBuf>,

    /// Directory served at /dist/ (the helper's script-tag build). Default:
    /// the repository's dist/.
    #[arg(long, env = "CAPTURE_SESSION_DIST")]
    pub dist: Option<PathBuf>,

    /// Rate limits and timeouts.
    #[command(flatten)]
    pub limits: LimitArgs,

    /// Simulator flags (with --simulate).
    #[command(flatten)]
    pub sim: SimArgs,
}

/// What bounds the work one client, or all of them, can cause.
#[derive(Debug, Clone, Args)]
pub struct LimitArgs {
    /// Requests per second each client address may make to `start`, and
    /// separately to `refresh`, once its burst is spent; more get 429
    /// rate_limited with Retry-After. 0 turns the limits off.
    #[arg(
        long,
        env = "CAPTURE_SESSION_RATE_LIMIT_PER_SECOND",
        default_value_t = 5,
        value_name = "N"
    )]
    pub rate_limit_per_second: u32,

    /// Requests a client address may make at once to `start` (and to
    /// `refresh`) before --rate-limit-per-second applies.
    #[arg(
        long,
        env = "CAPTURE_SESSION_RATE_LIMIT_BURST",
        default_value_t = 50,
        value_name = "N"
    )]
    pub rate_limit_burst: u32,

    /// Proxies (an address or a CIDR range; repeat or separate with commas)
    /// whose X-Forwarded-For header names the client. Without it the client
    /// address is the connection's peer address.
    #[arg(
        long = "trusted-proxy",
        env = "CAPTURE_SESSION_TRUSTED_PROXIES",
        value_delimiter = ',',
        value_name = "ADDR[/PREFIX]"
    )]
    pub trusted_proxies: Vec<String>,

    /// Identity Cloud calls in flight at once, for the whole server; more
    /// wait (see --upstream-queue-timeout-ms).
    #[arg(
        long,
        env = "CAPTURE_SESSION_UPSTREAM_CONCURRENCY",
        default_value_t = 64,
        value_name = "N"
    )]
    pub upstream_concurrency: usize,

    /// How long a request waits for a free Identity Cloud call slot before
    /// it is answered 503 unavailable with Retry-After, in milliseconds.
    #[arg(
        long,
        env = "CAPTURE_SESSION_UPSTREAM_QUEUE_TIMEOUT_MS",
        default_value_t = 1000,
        value_name = "MS"
    )]
    pub upstream_queue_timeout_ms: u64,

    /// A connection that has not sent a request's complete headers this many
    /// seconds after it began is closed (slowloris).
    #[arg(
        long,
        env = "CAPTURE_SESSION_HEADER_READ_TIMEOUT",
        default_value_t = 10,
        value_name = "SECONDS"
    )]
    pub header_read_timeout: u64,

    /// A request not answered this many seconds after its headers arrived
    /// (a body sent slowly, say) is answered 503 unavailable; a rotation it
    /// started still completes (see docs/deploy.md).
    #[arg(
        long,
        env = "CAPTURE_SESSION_REQUEST_TIMEOUT",
        default_value_t = 60,
        value_name = "SECONDS"
    )]
    pub request_timeout: u64,
}

/// Flags of the standalone simulator.
#[derive(Debug, Clone, Args)]
pub struct SimulatorArgs {
    /// Address to listen on.
    #[arg(
        long,
        env = "CAPTURE_SESSION_SIM_LISTEN",
        default_value = "127.0.0.1:8081"
    )]
    pub listen: SocketAddr,
    /// Simulator behaviour.
    #[command(flatten)]
    pub sim: SimArgs,
}

/// How the Identity Cloud simulator behaves.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// Extra simulator user (repeatable), besides demo@example.com / demo.
    #[arg(
        long = "sim-user",
        env = "CAPTURE_SESSION_SIM_USERS",
        value_delimiter = ',',
        value_name = "EMAIL:PASSWORD"
    )]
    pub sim_users: Vec<String>,

    /// Lifetime of the simulator's access tokens, in seconds.
    #[arg(
        long = "sim-token-lifetime",
        env = "CAPTURE_SESSION_SIM_TOKEN_LIFETIME",
        default_value_t = 3600
    )]
    pub sim_token_lifetime: u64,

    /// Lifetime of the simulator's authorization codes, in seconds.
    #[arg(
        long = "sim-code-lifetime",
        env = "CAPTURE_SESSION_SIM_CODE_LIFETIME",
        default_value_t = 30
    )]
    pub sim_code_lifetime: u64,

    /// Login client id the simulator accepts at /oauth/auth_native_traditional.
    #[arg(
        long = "sim-login-client-id",
        env = "CAPTURE_SESSION_SIM_LOGIN_CLIENT_ID",
        default_value = "capture-session-demo"
    )]
    pub sim_login_client_id: String,

    /// The simulator's access_issuer API client id (what the server uses by
    /// default with --simulate).
    #[arg(
        long = "sim-client-id",
        env = "CAPTURE_SESSION_SIM_CLIENT_ID",
        default_value = "capture-session-server"
    )]
    pub sim_client_id: String,

    /// Secret of --sim-client-id.
    #[arg(
        long = "sim-client-secret",
        env = "CAPTURE_SESSION_SIM_CLIENT_SECRET",
        default_value = "simulator-secret",
        hide_env_values = true
    )]
    pub sim_client_secret: ClientSecret,

    /// Secret the simulator's admin routes (`/_admin/*` of the standalone
    /// simulator, `/sim/_admin/*` with --simulate) require in the
    /// `X-Sim-Admin-Secret` header, besides a loopback Host. Default: a
    /// random one per process, so only a caller that chose it can use them
    /// (with --simulate the demo page reaches what it needs through
    /// /capture-session/_admin/revoke instead).
    #[arg(
        long = "sim-admin-secret",
        env = "CAPTURE_SESSION_SIM_ADMIN_SECRET",
        hide_env_values = true
    )]
    pub sim_admin_secret: Option<ClientSecret>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn flags_are_consistent() {
        Cli::command().debug_assert();
    }
}
