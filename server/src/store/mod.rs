//! Where sessions live: in this process ([`memory`]) or in Redis ([`redis`]),
//! with a per-session rotation lock so that one refresh token is used once, a
//! compare-and-set on the session's generation so that a rotation that lost a
//! race never overwrites the winner, and an index by uuid (to end a user's
//! sessions, and to bound how many one user has).

pub mod memory;
pub mod redis;

use std::time::Duration;

use capture_session_core::wire::Mode;
use capture_session_core::{AccessToken, RefreshToken};
use serde::{Deserialize, Serialize};

/// One server session. `Debug` is safe: the tokens are redacted types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// How the session started.
    pub mode: Mode,
    /// The user.
    pub uuid: String,
    /// The current access token.
    pub access_token: AccessToken,
    /// Refresh token (code mode).
    pub refresh_token: Option<RefreshToken>,
    /// Whether the page keeps a client-side session (code mode).
    pub client_session: bool,
    /// When the current access token was received (unix ms).
    pub token_minted_ms: u64,
    /// When the current access token expires (unix ms).
    pub token_expires_ms: u64,
    /// Incremented at each rotation.
    pub generation: u64,
    /// When the session started (unix ms).
    pub created_ms: u64,
    /// Started with `keepMeLoggedIn: true`: the long absolute lifetime and a
    /// persistent cookie. (Absent in records written before contract 1.1.)
    #[serde(default)]
    pub keep_me_logged_in: bool,
    /// When Identity Cloud last confirmed the user (token mode; unix ms):
    /// the start, then each `--reverify-interval`. (Absent in older records:
    /// the next refresh re-verifies.)
    #[serde(default)]
    pub verified_ms: u64,
}

impl SessionRecord {
    /// Seconds the current token still lives at `now_ms` (0 if expired).
    pub fn expires_in_secs(&self, now_ms: u64) -> u64 {
        self.token_expires_ms.saturating_sub(now_ms) / 1000
    }
}

/// Why an operator or a bound ended a session before its user did: the
/// session's next request answers `401 session_expired` with this reason.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// `POST /revoke` or `capture-session-server revoke` ended every session
    /// of the user.
    Revoked,
    /// The user started more than `--max-sessions-per-user` sessions: the
    /// oldest ones were ended.
    Evicted,
}

impl EndReason {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Revoked => "revoked",
            EndReason::Evicted => "evicted",
        }
    }

    /// Reads a stored spelling (anything unknown counts as revoked).
    pub fn parse(s: &str) -> EndReason {
        match s {
            "evicted" => EndReason::Evicted,
            _ => EndReason::Revoked,
        }
    }

    /// The message of the `session_expired` answer.
    pub fn message(self) -> &'static str {
        match self {
            EndReason::Revoked => "the session was ended by the site's operator",
            EndReason::Evicted => {
                "the session was ended because its user started too many other sessions"
            }
        }
    }
}

/// What the store holds under a session key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Loaded {
    /// A live session.
    Live(SessionRecord),
    /// A session ended by an operator or a bound, not yet told to its page.
    Ended(EndReason),
}

/// What a conditional [`SessionStore::update`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Update {
    /// Written.
    Saved,
    /// The session no longer exists (ended or idled out): nothing written.
    Gone,
    /// An operator or a bound ended it: nothing written.
    Ended(EndReason),
    /// Its generation is no longer the one the rotation started from
    /// (another instance rotated meanwhile): nothing written.
    Conflict,
}

/// Bounds every store applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most live sessions per uuid (`--max-sessions-per-user`); 0: no bound.
    pub max_sessions_per_user: usize,
    /// How long the per-user index outlives its last write: the longest
    /// session lifetime and a margin.
    pub index_ttl: Duration,
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis failed (the message names no key and no value).
    #[error("redis: {0}")]
    Redis(#[from] ::redis::RedisError),
    /// A stored record could not be read back.
    #[error("stored session is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// A stored record could not be decrypted.
    #[error("stored session cannot be decrypted: {0}")]
    Undecryptable(#[from] crate::crypto::OpenError),
    /// An encrypted record, and no key configured.
    #[error("stored session is encrypted, but no encryption key is configured")]
    NoKey,
    /// A plaintext record while encryption is on.
    #[error("stored session is not encrypted; it is read only with --allow-plaintext-store (while migrating)")]
    Unencrypted,
    /// Redis did not answer at startup.
    #[error("redis did not answer within 5 s")]
    ConnectTimeout,
    /// Another request held the rotation lock for too long.
    #[error("timed out waiting for the session's rotation lock")]
    LockTimeout,
}

/// A held per-session rotation lock; give it back with [`SessionStore::unlock`].
#[must_use = "release the lock with SessionStore::unlock"]
pub enum RotationLock {
    /// Memory store: the session's mutex.
    Memory(memory::MemoryLock),
    /// Redis store: the lock key and our nonce.
    Redis(redis::RedisLock),
}

/// The configured store.
#[derive(Clone)]
pub enum SessionStore {
    /// In this process.
    Memory(memory::MemoryStore),
    /// Shared through Redis.
    Redis(redis::RedisStore),
}

impl SessionStore {
    /// The session stored under `key`, if it exists and has not idled out.
    pub async fn load(&self, key: &str) -> Result<Option<Loaded>, StoreError> {
        match self {
            SessionStore::Memory(s) => Ok(s.load(key)),
            SessionStore::Redis(s) => again(|| s.load(key)).await,
        }
    }

    /// Writes a new session that idles out after `ttl`, indexed by its uuid;
    /// when the uuid then has more than `--max-sessions-per-user` live
    /// sessions, the oldest are ended ([`EndReason::Evicted`]). Returns how
    /// many were.
    pub async fn create(
        &self,
        key: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        match self {
            SessionStore::Memory(s) => Ok(s.create(key, record, ttl)),
            SessionStore::Redis(s) => again(|| s.create(key, record, ttl)).await,
        }
    }

    /// Rewrites a session only if it still exists, is live, and still has
    /// generation `expected` (the one the rotation started from): a
    /// compare-and-set, so that a rotation that lost a race (another
    /// instance rotated meanwhile) or outlived an `end` writes nothing.
    /// `ttl` sets a new idle deadline; `None` keeps the one the session has
    /// (a refresh that is not interactive must not keep an idle session
    /// alive).
    pub async fn update(
        &self,
        key: &str,
        record: &SessionRecord,
        expected: u64,
        ttl: Option<Duration>,
    ) -> Result<Update, StoreError> {
        match self {
            SessionStore::Memory(s) => Ok(s.update(key, record, expected, ttl)),
            SessionStore::Redis(s) => again(|| s.update(key, record, expected, ttl)).await,
        }
    }

    /// Extends a session's idle deadline without rewriting it (so a touch can
    /// never undo a concurrent rotation).
    pub async fn touch(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        match self {
            SessionStore::Memory(s) => {
                s.touch(key, ttl);
                Ok(())
            }
            SessionStore::Redis(s) => again(|| s.touch(key, ttl)).await,
        }
    }

    /// Deletes a session and its index entry (no error if it does not exist).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            SessionStore::Memory(s) => {
                s.delete(key);
                Ok(())
            }
            SessionStore::Redis(s) => again(|| s.delete(key)).await,
        }
    }

    /// Whether the store answers (Redis: `PING`; memory: always).
    pub async fn ping(&self) -> Result<(), StoreError> {
        match self {
            SessionStore::Memory(_) => Ok(()),
            SessionStore::Redis(s) => s.ping().await,
        }
    }

    /// Ends every live session of `uuid` ([`EndReason::Revoked`]); returns
    /// how many.
    pub async fn revoke_user(&self, uuid: &str) -> Result<usize, StoreError> {
        match self {
            SessionStore::Memory(s) => Ok(s.revoke_user(uuid)),
            SessionStore::Redis(s) => again(|| s.revoke_user(uuid)).await,
        }
    }

    /// Notes that a rotation which spends the session's single-use grant is
    /// in flight until `deadline_ms` (unix ms), under `nonce`. With Redis a
    /// rotation can outlive its lock (a paused or slow instance): a later
    /// one that finds the grant already spent then knows to wait for it
    /// rather than end the session. (Memory locks do not expire: no-op.)
    pub async fn begin_rotation(
        &self,
        key: &str,
        nonce: &str,
        deadline_ms: u64,
    ) -> Result<(), StoreError> {
        match self {
            SessionStore::Memory(_) => Ok(()),
            SessionStore::Redis(s) => again(|| s.begin_rotation(key, nonce, deadline_ms)).await,
        }
    }

    /// Drops the note of [`SessionStore::begin_rotation`] (a save drops
    /// every note by itself).
    pub async fn end_rotation(&self, key: &str, nonce: &str) -> Result<(), StoreError> {
        match self {
            SessionStore::Memory(_) => Ok(()),
            SessionStore::Redis(s) => again(|| s.end_rotation(key, nonce)).await,
        }
    }

    /// The rotations noted in flight on a session: (nonce, deadline ms).
    pub async fn rotations_in_flight(&self, key: &str) -> Result<Vec<(String, u64)>, StoreError> {
        match self {
            SessionStore::Memory(_) => Ok(Vec::new()),
            SessionStore::Redis(s) => again(|| s.rotations_in_flight(key)).await,
        }
    }

    /// Waits up to `wait` for the session's rotation lock; the lock is held
    /// at most `hold` (Redis expires it if this process dies).
    pub async fn lock(
        &self,
        key: &str,
        hold: Duration,
        wait: Duration,
    ) -> Result<RotationLock, StoreError> {
        match self {
            SessionStore::Memory(s) => s.lock(key, wait).await.map(RotationLock::Memory),
            SessionStore::Redis(s) => s.lock(key, hold, wait).await.map(RotationLock::Redis),
        }
    }

    /// Releases a rotation lock.
    pub async fn unlock(&self, lock: RotationLock) -> Result<(), StoreError> {
        match (self, lock) {
            (SessionStore::Memory(s), RotationLock::Memory(l)) => {
                s.unlock(l);
                Ok(())
            }
            (SessionStore::Redis(s), RotationLock::Redis(l)) => s.unlock(l).await,
            // A lock from another store cannot exist: stores are never swapped.
            (_, RotationLock::Memory(_)) | (_, RotationLock::Redis(_)) => Ok(()),
        }
    }

    /// Number of live sessions, where cheap to know (memory store).
    pub fn count(&self) -> Option<usize> {
        match self {
            SessionStore::Memory(s) => Some(s.count()),
            SessionStore::Redis(_) => None,
        }
    }

    /// Stored values this process could not decrypt (or read at all) since
    /// it started.
    pub fn unreadable(&self) -> u64 {
        match self {
            SessionStore::Memory(_) => 0,
            SessionStore::Redis(s) => s.unreadable(),
        }
    }
}

/// Runs a Redis operation, and once more if the connection turned out to
/// be broken (Redis restarted, a proxy dropped it): the connection manager
/// reconnects for the second try. Used only for operations that are safe to
/// repeat (a repeated compare-and-set answers `Conflict`, whose handling
/// reads the session again); never for the lock.
async fn again<T, F, Fut>(op: F) -> Result<T, StoreError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    match op().await {
        Err(StoreError::Redis(e)) if e.is_connection_dropped() || e.is_io_error() => {
            tracing::debug!(error = %e, "redis connection broken; trying once more");
            op().await
        }
        other => other,
    }
}

/// Milliseconds of a duration, saturating, at least 1 (for `PX`, `PEXPIRE`).
pub(crate) fn ttl_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}
