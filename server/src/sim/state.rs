//! The simulator's users and grants.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::faults::Fault;
use crate::cli::SimArgs;
use crate::secret::{hex, ClientSecret};

/// How the simulator behaves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Users: (email, password). The demo user is always there.
    pub users: Vec<(String, String)>,
    /// Access token lifetime.
    pub token_lifetime: Duration,
    /// Authorization code lifetime.
    pub code_lifetime: Duration,
    /// Login client accepted at sign-in.
    pub login_client_id: String,
    /// The access_issuer API client.
    pub client_id: String,
    /// Its secret.
    pub client_secret: ClientSecret,
    /// What the admin routes require in `X-Sim-Admin-Secret`.
    pub admin_secret: ClientSecret,
}

impl SimConfig {
    /// From the command line; `--sim-user` values are `EMAIL:PASSWORD`.
    pub fn from_args(args: &SimArgs) -> Result<Self, String> {
        let mut users = vec![("demo@example.com".to_owned(), "demo".to_owned())];
        for spec in &args.sim_users {
            let Some((email, password)) = spec.split_once(':') else {
                return Err("--sim-user expects EMAIL:PASSWORD".into());
            };
            let email = email.trim().to_ascii_lowercase();
            if email.is_empty() || !email.contains('@') || password.is_empty() {
                return Err("--sim-user expects EMAIL:PASSWORD with a non-empty password".into());
            }
            users.retain(|(e, _)| *e != email);
            users.push((email, password.to_owned()));
        }
        Ok(SimConfig {
            users,
            token_lifetime: Duration::from_secs(args.sim_token_lifetime.max(1)),
            code_lifetime: Duration::from_secs(args.sim_code_lifetime.max(1)),
            login_client_id: args.sim_login_client_id.clone(),
            client_id: args.sim_client_id.clone(),
            client_secret: args.sim_client_secret.clone(),
            // Not given (or empty): random, so nobody who did not choose it knows it.
            admin_secret: match &args.sim_admin_secret {
                Some(secret) if !secret.expose().is_empty() => secret.clone(),
                _ => ClientSecret::new(crate::secret::random_hex::<16>()),
            },
        })
    }
}

/// A handle on one simulator.
#[derive(Clone)]
pub struct Simulator {
    pub(super) inner: Arc<SimInner>,
}

pub(super) struct SimInner {
    pub config: SimConfig,
    pub data: Mutex<SimData>,
    pub faults: Mutex<Vec<Fault>>,
    pub stats: SimStats,
}

#[derive(Default)]
pub(super) struct SimStats {
    pub auth_native_traditional: AtomicU64,
    pub token_authorization_code: AtomicU64,
    pub token_refresh_token: AtomicU64,
    pub get_access_token: AtomicU64,
    pub entity: AtomicU64,
    pub entity_update: AtomicU64,
    pub faulted: AtomicU64,
    /// Refresh tokens refused (`invalid_grant`).
    pub invalid_grant: AtomicU64,
}

pub(super) struct User {
    pub email: String,
    pub password: String,
    pub uuid: String,
    pub attributes: Map<String, Value>,
}

pub(super) struct AccessGrant {
    pub uuid: String,
    pub expires: Instant,
    pub revoked: bool,
}

pub(super) struct CodeGrant {
    pub uuid: String,
    pub redirect_uri: String,
    pub expires: Instant,
}

pub(super) struct RefreshGrant {
    pub uuid: String,
    pub expires: Instant,
}

#[derive(Default)]
pub(super) struct SimData {
    pub users: Vec<User>,
    pub access: HashMap<String, AccessGrant>,
    pub codes: HashMap<String, CodeGrant>,
    pub refresh: HashMap<String, RefreshGrant>,
    /// Refresh tokens already used (bounded), to tell a replay from garbage.
    pub spent: std::collections::HashSet<String>,
    /// The API client may no longer act for users (`/_admin/client`).
    pub client_revoked: bool,
    issued: u64,
}

/// Refresh tokens live 30 days.
const REFRESH_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

impl SimInner {
    pub fn new(config: SimConfig) -> Self {
        let now = now_iso();
        let users = config
            .users
            .iter()
            .map(|(email, password)| {
                let uuid = uuid_for(email);
                let local = email.split('@').next().unwrap_or(email);
                let (given, family, display) = if email == "demo@example.com" {
                    ("Demo".to_owned(), "User".to_owned(), "Demo User".to_owned())
                } else {
                    (local.to_owned(), String::new(), local.to_owned())
                };
                let attributes = json!({
                    "uuid": uuid,
                    "email": email,
                    "displayName": display,
                    "givenName": given,
                    "familyName": family,
                    "created": now,
                    "lastUpdated": now,
                });
                User {
                    email: email.clone(),
                    password: password.clone(),
                    uuid,
                    attributes: attributes.as_object().cloned().unwrap_or_default(),
                }
            })
            .collect();
        SimInner {
            config,
            data: Mutex::new(SimData {
                users,
                ..SimData::default()
            }),
            faults: Mutex::new(Vec::new()),
            stats: SimStats::default(),
        }
    }

    pub fn data(&self) -> MutexGuard<'_, SimData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SimData {
    /// Drops expired grants now and then.
    fn sweep(&mut self) {
        self.issued += 1;
        if self.issued % 512 != 0 {
            return;
        }
        let now = Instant::now();
        // Keep expired access tokens a while so they answer 414, not "unknown".
        let grace = Duration::from_secs(3600);
        self.access.retain(|_, g| g.expires + grace > now);
        self.codes.retain(|_, g| g.expires > now);
        self.refresh.retain(|_, g| g.expires > now);
    }

    pub fn issue_access(&mut self, uuid: &str, lifetime: Duration) -> String {
        self.sweep();
        let token = crate::secret::random_hex::<16>();
        self.access.insert(
            token.clone(),
            AccessGrant {
                uuid: uuid.to_owned(),
                expires: Instant::now() + lifetime,
                revoked: false,
            },
        );
        token
    }

    pub fn issue_code(&mut self, uuid: &str, redirect_uri: &str, lifetime: Duration) -> String {
        self.sweep();
        let code = crate::secret::random_hex::<12>();
        self.codes.insert(
            code.clone(),
            CodeGrant {
                uuid: uuid.to_owned(),
                redirect_uri: redirect_uri.to_owned(),
                expires: Instant::now() + lifetime,
            },
        );
        code
    }

    pub fn issue_refresh(&mut self, uuid: &str) -> String {
        self.sweep();
        let token = crate::secret::random_hex::<20>();
        self.refresh.insert(
            token.clone(),
            RefreshGrant {
                uuid: uuid.to_owned(),
                expires: Instant::now() + REFRESH_LIFETIME,
            },
        );
        token
    }

    pub fn user_by_uuid(&mut self, uuid: &str) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.uuid == uuid)
    }
}

/// A stable uuid per email, so a restarted simulator knows the same users.
fn uuid_for(email: &str) -> String {
    let h = hex(&Sha256::digest(
        format!("capture-session-sim:{email}").as_bytes(),
    ));
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Now in Capture's timestamp format (`2016-03-29 00:24:21.123456 +0000`).
pub(super) fn now_iso() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.000000 +0000",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (Howard Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(16_889), (2016, 3, 29));
    }

    #[test]
    fn uuids_are_stable_and_uuid_shaped() {
        let u = uuid_for("demo@example.com");
        assert_eq!(u, uuid_for("demo@example.com"));
        assert_eq!(u.len(), 36);
        assert_ne!(u, uuid_for("other@example.com"));
    }
}
