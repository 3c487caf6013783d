//! The server's resolved configuration: flags checked and defaults filled in.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use capture_session_core::origin::Origin;
use capture_session_core::wire::Mode;

use crate::cli::{ServerArgs, SimArgs, StoreArgs};
use crate::crypto::Keyring;
use crate::limits::Limits;
use crate::secret::{ClientSecret, StoreUrl};

/// `--session-max` by default: 12 hours.
pub const DEFAULT_SESSION_MAX_SECS: u64 = 12 * 3600;
/// `--remember-max` by default: 30 days.
pub const DEFAULT_REMEMBER_MAX_SECS: u64 = 30 * 24 * 3600;

/// Why the flags cannot run a server.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required flag is missing.
    #[error("{0} is required (unless --simulate)")]
    Missing(&'static str),
    /// A flag has a bad value.
    #[error("invalid {flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// What is wrong (never the value of a secret).
        reason: String,
    },
}

/// An API client: id and secret.
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    /// `client_id`.
    pub id: String,
    /// `client_secret`.
    pub secret: ClientSecret,
}

/// Where sessions live.
#[derive(Clone, Debug)]
pub enum StoreConfig {
    /// In this process.
    Memory,
    /// In Redis (URL kept out of `Debug`: it may hold a password).
    Redis {
        /// `redis://...` or `rediss://...`.
        url: StoreUrl,
        /// Key prefix.
        prefix: String,
        /// PEM CA certificates for `rediss://` (`--redis-ca-file`).
        ca_pem: Option<Vec<u8>>,
    },
}

impl StoreConfig {
    /// Checks `--store`, `--redis-prefix` and `--redis-ca-file`.
    pub fn from_args(args: &StoreArgs) -> Result<StoreConfig, ConfigError> {
        let url = &args.store;
        match url.kind() {
            "memory" => {
                if args.redis_ca_file.is_some() {
                    return Err(ConfigError::Invalid {
                        flag: "--redis-ca-file",
                        reason: "only used with a rediss:// --store".into(),
                    });
                }
                Ok(StoreConfig::Memory)
            }
            kind @ ("redis" | "rediss") => {
                let ca_pem = match &args.redis_ca_file {
                    None => None,
                    Some(_) if kind == "redis" => {
                        return Err(ConfigError::Invalid {
                            flag: "--redis-ca-file",
                            reason: "only used with a rediss:// --store (TLS)".into(),
                        })
                    }
                    Some(path) => Some(std::fs::read(path).map_err(|e| ConfigError::Invalid {
                        flag: "--redis-ca-file",
                        reason: format!("cannot read {}: {e}", path.display()),
                    })?),
                };
                Ok(StoreConfig::Redis {
                    url: url.clone(),
                    prefix: args.redis_prefix.clone(),
                    ca_pem,
                })
            }
            _ => Err(ConfigError::Invalid {
                flag: "--store",
                reason: "expected `memory` or a redis:// or rediss:// URL".into(),
            }),
        }
    }
}

/// Everything the server needs, resolved.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Requested listen address (port may be 0).
    pub listen: SocketAddr,
    /// Run the simulator in-process and the admin endpoints.
    pub simulate: bool,
    /// Capture base URL; `None` with --simulate until the listener is bound.
    pub capture_url: Option<String>,
    /// Client for /access/getAccessToken.
    pub issuer_client: ClientCredentials,
    /// Client for /oauth/token.
    pub token_client: ClientCredentials,
    /// Entity type.
    pub type_name: String,
    /// `for_client_id` for /access/getAccessToken.
    pub for_client_id: Option<String>,
    /// Allowed page origins; empty means "same host as the request".
    pub allowed_origins: Vec<String>,
    /// Modes accepted at start.
    pub modes: Vec<Mode>,
    /// Session store.
    pub store: StoreConfig,
    /// Keys that encrypt the Redis store's values (`Debug` shows only ids).
    pub encryption: Option<Keyring>,
    /// `--allow-plaintext-store`.
    pub allow_plaintext_store: bool,
    /// `--reverify-interval`.
    pub reverify_interval: Duration,
    /// `--rotation-lock-ms` (development): overrides the computed lock hold.
    pub rotation_lock: Option<Duration>,
    /// `--max-sessions-per-user` (0: no bound).
    pub max_sessions_per_user: usize,
    /// Idle lifetime of a session.
    pub session_idle: Duration,
    /// Absolute lifetime of a session started without `keepMeLoggedIn`.
    pub session_max: Duration,
    /// Absolute lifetime of a session started with `keepMeLoggedIn: true`.
    pub remember_max: Duration,
    /// Lifetime assumed for tokens whose issuer does not say.
    pub token_lifetime: Duration,
    /// See `--reuse-window`.
    pub reuse_window: Duration,
    /// See `--min-token-life`.
    pub min_token_life: Duration,
    /// Per-call upstream timeout.
    pub upstream_timeout: Duration,
    /// Extra attempts after transient upstream failures.
    pub upstream_retries: u32,
    /// `Retry-After` for 503 answers.
    pub retry_after_secs: u64,
    /// Cookie without `Secure` / `__Host-`.
    pub insecure_cookies: bool,
    /// How long in-flight requests may run after SIGTERM / Ctrl-C.
    pub shutdown_timeout: Duration,
    /// Static directories: (www, pkg, dist), when static files are served.
    pub static_dirs: Option<StaticDirs>,
    /// Rate limits and timeouts.
    pub limits: Limits,
    /// The operations listener's address (`--ops-listen`).
    pub ops_listen: Option<SocketAddr>,
    /// Simulator behaviour (with --simulate).
    pub sim: SimArgs,
}

/// Directories of static files.
#[derive(Clone, Debug)]
pub struct StaticDirs {
    /// Served at `/`.
    pub www: PathBuf,
    /// Served at `/pkg/`.
    pub pkg: PathBuf,
    /// Served at `/dist/`.
    pub dist: PathBuf,
}

/// The repository root as seen at build time, else the current directory.
fn repo_dir(name: &str) -> PathBuf {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(name);
    if built.is_dir() {
        return built;
    }
    PathBuf::from(name)
}

impl Settings {
    /// Checks the flags and fills in defaults.
    pub fn from_args(args: ServerArgs) -> Result<Settings, ConfigError> {
        let simulate = args.simulate;
        let capture_url = match (&args.capture_url, simulate) {
            (Some(url), _) => Some(check_url(url)?),
            (None, true) => None,
            (None, false) => return Err(ConfigError::Missing("--capture-url")),
        };
        // Development switches stay in development: the simulator, its admin
        // and fault routes, and cookies without `Secure` run only against a
        // Capture server on this machine (the in-process simulator, or a
        // standalone one on loopback), never against a real tenant.
        let real_capture = capture_url.as_deref().is_some_and(|u| !url_is_loopback(u));
        if simulate && real_capture {
            return Err(ConfigError::Invalid {
                flag: "--simulate",
                reason: "development only: it cannot be used with a --capture-url off loopback (a real Identity Cloud tenant)".into(),
            });
        }
        if args.insecure_localhost_cookies && !simulate {
            return Err(ConfigError::Invalid {
                flag: "--insecure-localhost-cookies",
                reason:
                    "development only: allowed with --simulate (and no --capture-url off loopback)"
                        .into(),
            });
        }
        if args.rotation_lock_ms.is_some() && !simulate {
            return Err(ConfigError::Invalid {
                flag: "--rotation-lock-ms",
                reason: "development only: allowed with --simulate".into(),
            });
        }
        let issuer_client = match (args.issuer_client_id, args.issuer_client_secret) {
            (Some(id), Some(secret)) => ClientCredentials { id, secret },
            (None, None) if simulate && args.capture_url.is_none() => ClientCredentials {
                id: args.sim.sim_client_id.clone(),
                secret: args.sim.sim_client_secret.clone(),
            },
            (Some(_), None) => return Err(ConfigError::Missing("--issuer-client-secret")),
            _ => return Err(ConfigError::Missing("--issuer-client-id")),
        };
        let token_client = match (args.token_client_id, args.token_client_secret) {
            (Some(id), Some(secret)) => ClientCredentials { id, secret },
            (None, None) => issuer_client.clone(),
            (Some(_), None) => return Err(ConfigError::Missing("--token-client-secret")),
            (None, Some(_)) => return Err(ConfigError::Missing("--token-client-id")),
        };
        let mut modes = Vec::new();
        for m in &args.modes {
            let mode = Mode::parse(m.trim()).ok_or_else(|| ConfigError::Invalid {
                flag: "--modes",
                reason: format!("{m:?} is neither token nor code"),
            })?;
            if !modes.contains(&mode) {
                modes.push(mode);
            }
        }
        if modes.is_empty() {
            return Err(ConfigError::Invalid {
                flag: "--modes",
                reason: "no mode enabled".into(),
            });
        }
        let mut allowed_origins = Vec::new();
        for o in &args.allowed_origins {
            let o = o.trim().trim_end_matches('/');
            if o.is_empty() {
                continue;
            }
            // An origin alone: core's `Origin` parses it, and nothing follows
            // the authority.
            let well_formed = Origin::parse(o).is_some()
                && o.split_once("://")
                    .is_some_and(|(_, rest)| !rest.contains(['/', '?', '#']));
            if !well_formed {
                return Err(ConfigError::Invalid {
                    flag: "--allowed-origin",
                    reason: format!("{o:?} is not an origin like https://www.example.com"),
                });
            }
            allowed_origins.push(o.to_ascii_lowercase());
        }
        let store = StoreConfig::from_args(&args.redis)?;
        let encryption = match (&args.encryption_key_file, &args.encryption_key) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid {
                    flag: "--encryption-key-file",
                    reason: "give either it or CAPTURE_SESSION_ENCRYPTION_KEY, not both".into(),
                })
            }
            (Some(path), None) => {
                let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
                    flag: "--encryption-key-file",
                    reason: format!("cannot read {}: {e}", path.display()),
                })?;
                Some(Keyring::parse(&text).map_err(|e| ConfigError::Invalid {
                    flag: "--encryption-key-file",
                    reason: format!("{}: {e}", path.display()),
                })?)
            }
            (None, Some(material)) => {
                Some(
                    Keyring::parse(material.expose()).map_err(|e| ConfigError::Invalid {
                        flag: "CAPTURE_SESSION_ENCRYPTION_KEY",
                        reason: e.to_string(),
                    })?,
                )
            }
            (None, None) => None,
        };
        // Tokens in clear in a database other processes (and backups) can
        // read: only when the operator says so, or in development.
        if matches!(store, StoreConfig::Redis { .. })
            && encryption.is_none()
            && !args.allow_plaintext_store
            && !simulate
        {
            return Err(ConfigError::Invalid {
                flag: "--store",
                reason: "a Redis store needs --encryption-key-file (or CAPTURE_SESSION_ENCRYPTION_KEY) so that it does not hold tokens in clear; --allow-plaintext-store accepts that it does".into(),
            });
        }
        let loopback = args.listen.ip().is_loopback();
        if args.insecure_localhost_cookies && !loopback {
            return Err(ConfigError::Invalid {
                flag: "--insecure-localhost-cookies",
                reason: "only allowed when listening on a loopback address".into(),
            });
        }
        let positive = |flag: &'static str, v: u64| {
            if v == 0 {
                Err(ConfigError::Invalid {
                    flag,
                    reason: "must be at least 1".into(),
                })
            } else {
                Ok(v)
            }
        };
        let token_lifetime = match args.token_lifetime {
            Some(s) => positive("--token-lifetime", s)?,
            None if simulate => positive("--sim-token-lifetime", args.sim.sim_token_lifetime)?,
            None => 3600,
        };
        positive("--sim-token-lifetime", args.sim.sim_token_lifetime)?;
        // The old single lifetime applies to both kinds of session unless the
        // new flags say otherwise.
        let legacy = args
            .session_max_lifetime
            .map(|s| positive("--session-max-lifetime", s))
            .transpose()?;
        let session_max = match args.session_max {
            Some(s) => positive("--session-max", s)?,
            None => legacy.unwrap_or(DEFAULT_SESSION_MAX_SECS),
        };
        let remember_max = match args.remember_max {
            Some(s) => positive("--remember-max", s)?,
            None => legacy.unwrap_or(DEFAULT_REMEMBER_MAX_SECS),
        };
        positive("--sim-code-lifetime", args.sim.sim_code_lifetime)?;
        let static_dirs = (simulate || args.www.is_some()).then(|| StaticDirs {
            www: args.www.clone().unwrap_or_else(|| repo_dir("www")),
            pkg: args.pkg.clone().unwrap_or_else(|| repo_dir("pkg")),
            dist: args.dist.clone().unwrap_or_else(|| repo_dir("dist")),
        });
        Ok(Settings {
            listen: args.listen,
            simulate,
            capture_url,
            issuer_client,
            token_client,
            type_name: args.type_name,
            for_client_id: args.for_client_id,
            allowed_origins,
            modes,
            store,
            encryption,
            allow_plaintext_store: args.allow_plaintext_store,
            max_sessions_per_user: args.max_sessions_per_user,
            reverify_interval: Duration::from_secs(positive(
                "--reverify-interval",
                args.reverify_interval,
            )?),
            rotation_lock: args
                .rotation_lock_ms
                .map(|ms| positive("--rotation-lock-ms", ms).map(Duration::from_millis))
                .transpose()?,
            session_idle: Duration::from_secs(positive(
                "--session-idle-timeout",
                args.session_idle_timeout,
            )?),
            session_max: Duration::from_secs(session_max),
            remember_max: Duration::from_secs(remember_max),
            token_lifetime: Duration::from_secs(token_lifetime),
            reuse_window: Duration::from_secs(args.reuse_window),
            min_token_life: Duration::from_secs(args.min_token_life),
            upstream_timeout: Duration::from_millis(positive(
                "--upstream-timeout-ms",
                args.upstream_timeout_ms,
            )?),
            upstream_retries: args.upstream_retries.min(10),
            retry_after_secs: args.retry_after.max(1),
            insecure_cookies: args.insecure_localhost_cookies || (simulate && loopback),
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
            static_dirs,
            limits: Limits::from_args(&args.limits)?,
            ops_listen: check_ops_listen(args.ops_listen, args.listen)?,
            sim: args.sim,
        })
    }
}

/// The operations listener may not share the public port: its routes would
/// be offered to the world.
fn check_ops_listen(
    ops: Option<SocketAddr>,
    public: SocketAddr,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(ops) = ops else {
        return Ok(None);
    };
    let overlap =
        ops.ip() == public.ip() || ops.ip().is_unspecified() || public.ip().is_unspecified();
    if ops.port() != 0 && ops.port() == public.port() && overlap {
        return Err(ConfigError::Invalid {
            flag: "--ops-listen",
            reason: "must differ from --listen: the operations routes are never served on the public port".into(),
        });
    }
    Ok(Some(ops))
}

fn check_url(url: &str) -> Result<String, ConfigError> {
    let trimmed = url.trim().trim_end_matches('/');
    match reqwest::Url::parse(trimmed) {
        Ok(u) if u.scheme() == "http" && u.host().is_some() && !host_is_loopback(&u) => {
            Err(ConfigError::Invalid {
                flag: "--capture-url",
                reason: "http:// is only allowed on a loopback host (127.0.0.0/8, ::1, localhost); use https://".into(),
            })
        }
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
            Ok(trimmed.to_owned())
        }
        _ => Err(ConfigError::Invalid {
            flag: "--capture-url",
            reason: "expected an http(s) URL such as https://example.us.janraincapture.com".into(),
        }),
    }
}

/// Whether a (checked) URL's host is this machine.
fn url_is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| host_is_loopback(&u))
}

fn host_is_loopback(url: &reqwest::Url) -> bool {
    // `host_str` is normalized (IPv4 in dotted form, IPv6 in brackets).
    url.host_str().is_some_and(host_header_is_loopback)
}

/// Whether a `Host` header value (`name[:port]`, `[v6]:port`) names this
/// machine: 127.0.0.0/8, `::1` or `localhost`.
pub fn host_header_is_loopback(host: &str) -> bool {
    let host = host.trim();
    let name = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, _)) => v6,
            None => return false,
        }
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::{CommandFactory, Parser};

    fn settings(flags: &[&str]) -> Result<Settings, ConfigError> {
        let mut argv = vec!["capture-session-server", "--simulate"];
        argv.extend_from_slice(flags);
        Settings::from_args(Cli::try_parse_from(argv).expect("flags parse").server)
    }

    fn lifetimes(flags: &[&str]) -> (u64, u64) {
        let s = settings(flags).expect("valid flags");
        (s.session_max.as_secs(), s.remember_max.as_secs())
    }

    #[test]
    fn session_lifetimes_default_to_12_hours_and_30_days() {
        assert_eq!(lifetimes(&[]), (12 * 3600, 30 * 24 * 3600));
        let s = settings(&[]).unwrap();
        assert_eq!(s.min_token_life, Duration::from_secs(60));
        assert_eq!(s.reuse_window, Duration::from_secs(10));
        assert_eq!(
            lifetimes(&["--session-max", "5", "--remember-max", "9"]),
            (5, 9)
        );
    }

    #[test]
    fn the_old_max_lifetime_flag_sets_both_lifetimes_unless_they_are_given() {
        assert_eq!(lifetimes(&["--session-max-lifetime", "100"]), (100, 100));
        assert_eq!(
            lifetimes(&["--session-max-lifetime", "100", "--remember-max", "5000"]),
            (100, 5000)
        );
        assert_eq!(
            lifetimes(&["--session-max-lifetime", "100", "--session-max", "7"]),
            (7, 100)
        );
        for flags in [
            ["--session-max-lifetime", "0"],
            ["--session-max", "0"],
            ["--remember-max", "0"],
        ] {
            let err = settings(&flags).expect_err("zero refused");
            assert!(err.to_string().contains(flags[0]), "{err}");
        }
    }

    #[test]
    fn every_lifetime_flag_has_its_environment_variable() {
        let command = Cli::command();
        let env = |id: &str| {
            command
                .get_arguments()
                .find(|a| a.get_id() == id)
                .and_then(|a| a.get_env())
                .and_then(|e| e.to_str())
                .map(str::to_owned)
        };
        for (id, var) in [
            ("session_max", "CAPTURE_SESSION_SESSION_MAX"),
            ("remember_max", "CAPTURE_SESSION_REMEMBER_MAX"),
            ("session_max_lifetime", "CAPTURE_SESSION_MAX_LIFETIME"),
            ("session_idle_timeout", "CAPTURE_SESSION_IDLE_TIMEOUT"),
            ("min_token_life", "CAPTURE_SESSION_MIN_TOKEN_LIFE"),
            ("reuse_window", "CAPTURE_SESSION_REUSE_WINDOW"),
        ] {
            assert_eq!(env(id).as_deref(), Some(var), "{id}");
        }
    }
}
