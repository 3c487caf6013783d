//! Where sessions live: in this process ([`memory`]) or in Redis ([`redis`]),
//! with a per-session rotation lock so that one refresh token is used once.

pub mod memory;
pub mod redis;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
}

impl SessionRecord {
    /// Seconds the current token still lives at `now_ms` (0 if expired).
    pub fn expires_in_secs(&self, now_ms: u64) -> u64 {
        self.token_expires_ms.saturating_sub(now_ms) / 1000
    }
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
    pub async fn load(&self, key: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self {
            SessionStore::Memory(s) => Ok(s.load(key)),
            SessionStore::Redis(s) => s.load(key).await,
        }
    }

    /// Writes a session that idles out after `ttl`. Callers write an existing
    /// session only while holding its rotation lock.
    pub async fn save(
        &self,
        key: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            SessionStore::Memory(s) => {
                s.save(key, record, ttl);
                Ok(())
            }
            SessionStore::Redis(s) => s.save(key, record, ttl).await,
        }
    }

    /// Rewrites a session only if it still exists (it may have ended while
    /// a rotation ran); returns whether it did. `ttl` sets a new idle
    /// deadline; `None` keeps the one the session has (a refresh that is not
    /// interactive must not keep an idle session alive).
    pub async fn update(
        &self,
        key: &str,
        record: &SessionRecord,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        match self {
            SessionStore::Memory(s) => Ok(s.update(key, record, ttl)),
            SessionStore::Redis(s) => s.update(key, record, ttl).await,
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
            SessionStore::Redis(s) => s.touch(key, ttl).await,
        }
    }

    /// Deletes a session (no error if it does not exist).
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        match self {
            SessionStore::Memory(s) => {
                s.delete(key);
                Ok(())
            }
            SessionStore::Redis(s) => s.delete(key).await,
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
}

/// Wall-clock now in unix milliseconds (shared meaning across instances).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
