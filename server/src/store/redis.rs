//! The Redis store, for several server instances.
//!
//! Layout, with `P` = `--redis-prefix`:
//! - `P:session:K` (K = SHA-256 of the session id), a hash with an idle TTL:
//!   `g` the generation (readable by the scripts), `v` the record (encrypted
//!   with the configured key, see [`crate::crypto`]), `u` the user's index
//!   key; a session ended by an operator or a bound keeps only `r` (why) and
//!   its TTL, so that its next request learns `session_expired`.
//! - `P:user:H` (H = SHA-256 of the uuid), a sorted set of the user's
//!   session keys scored by their start time, cleaned when a session ends
//!   and, for sessions that idled out, at the user's next start.
//! - `P:lock:K`, the rotation lock: `SET NX PX` with a random nonce,
//!   released by a compare-and-delete script.
//!
//! Every write that depends on what is stored is one Lua script, so it is
//! atomic across instances. (The scripts touch keys they read from the
//! index: a single Redis or a primary with replicas, not Redis Cluster.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use sha2::{Digest, Sha256};

use super::{ttl_ms, EndReason, Loaded, SessionRecord, StoreError, StoreLimits, Update};
use crate::crypto::{is_sealed, Keyring};
use crate::secret::{hex, random_hex, StoreUrl};

/// Releases the lock only if it is still ours.
const UNLOCK_SCRIPT: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// Ends one session if it is live, keeping its TTL (a helper prepended to
/// the scripts that use it).
const END_FN: &str = r#"
local function end_session(sk, reason)
  if redis.call("HEXISTS", sk, "v") == 1 then
    redis.call("HDEL", sk, "v", "g", "u")
    redis.call("HSET", sk, "r", reason)
    return 1
  end
  return 0
end
"#;

/// KEYS: session, user index. ARGV: value, generation, ttl ms, created ms,
/// max per user (0: none), index ttl ms, session key prefix, member (K).
/// Writes the session, indexes it, drops index entries of sessions that no
/// longer live (all of them when bounded, else the oldest two: O(1) per
/// start), ends the oldest beyond the bound; returns how many it ended.
const CREATE_SCRIPT: &str = r#"
redis.call("DEL", KEYS[1])
redis.call("HSET", KEYS[1], "g", ARGV[2], "v", ARGV[1], "u", KEYS[2])
redis.call("PEXPIRE", KEYS[1], ARGV[3])
redis.call("ZADD", KEYS[2], ARGV[4], ARGV[8])
local max = tonumber(ARGV[5])
-- Bounded, the set stays short: prune all of it. Unbounded, the oldest two.
local last = -1
if max == 0 then last = 1 end
for _, m in ipairs(redis.call("ZRANGE", KEYS[2], 0, last)) do
  if redis.call("HEXISTS", ARGV[7] .. m, "v") == 0 then
    redis.call("ZREM", KEYS[2], m)
  end
end
local ended = 0
while max > 0 and redis.call("ZCARD", KEYS[2]) > max do
  local oldest = redis.call("ZRANGE", KEYS[2], 0, 1)
  local victim = oldest[1]
  if victim == ARGV[8] then victim = oldest[2] end
  redis.call("ZREM", KEYS[2], victim)
  ended = ended + end_session(ARGV[7] .. victim, "evicted")
end
if redis.call("PTTL", KEYS[2]) < tonumber(ARGV[6]) then
  redis.call("PEXPIRE", KEYS[2], ARGV[6])
end
return ended
"#;

/// KEYS: session. ARGV: expected generation, value, new generation, ttl ms
/// ("" keeps the TTL). 1 saved (and every note of a rotation in flight
/// dropped: they all started from an older generation), 0 gone, -1
/// generation changed, -2 revoked, -3 evicted.
const UPDATE_SCRIPT: &str = r#"
local s = redis.call("HMGET", KEYS[1], "g", "r")
if s[2] == "evicted" then return -3 end
if s[2] then return -2 end
if not s[1] then return 0 end
if s[1] ~= ARGV[1] then return -1 end
redis.call("HSET", KEYS[1], "g", ARGV[3], "v", ARGV[2])
if ARGV[4] ~= "" then redis.call("PEXPIRE", KEYS[1], ARGV[4]) end
for _, f in ipairs(redis.call("HKEYS", KEYS[1])) do
  if string.sub(f, 1, 2) == "p:" then redis.call("HDEL", KEYS[1], f) end
end
return 1
"#;

/// KEYS: session. ARGV: nonce, deadline ms. Notes a rotation in flight on a
/// live session (`p:<nonce>` = its deadline).
const BEGIN_SCRIPT: &str = r#"
if redis.call("HEXISTS", KEYS[1], "v") == 1 then
  redis.call("HSET", KEYS[1], "p:" .. ARGV[1], ARGV[2])
  return 1
end
return 0
"#;

/// KEYS: session. ARGV: member (K). Deletes it and its index entry.
const DELETE_SCRIPT: &str = r#"
local u = redis.call("HGET", KEYS[1], "u")
redis.call("DEL", KEYS[1])
if u then redis.call("ZREM", u, ARGV[1]) end
return 1
"#;

/// KEYS: user index. ARGV: session key prefix. Ends every live session of
/// the user; returns how many.
const REVOKE_SCRIPT: &str = r#"
local ended = 0
for _, m in ipairs(redis.call("ZRANGE", KEYS[1], 0, -1)) do
  ended = ended + end_session(ARGV[1] .. m, "revoked")
end
redis.call("DEL", KEYS[1])
return ended
"#;

/// How to reach Redis, and how values are written.
#[derive(Clone, Debug)]
pub struct RedisOptions {
    /// `redis://` or `rediss://` URL (redacted in `Debug`).
    pub url: StoreUrl,
    /// Key prefix.
    pub prefix: String,
    /// PEM CA certificates to trust for `rediss://` instead of the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// Encrypt values with these keys (`None`: plaintext JSON).
    pub keys: Option<Keyring>,
    /// Read plaintext values although keys are configured (migration).
    pub allow_plaintext: bool,
    /// Bounds.
    pub limits: StoreLimits,
}

/// Sessions in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    shared: Arc<Shared>,
}

/// What every clone of the store shares.
struct Shared {
    prefix: String,
    keys: Option<Keyring>,
    allow_plaintext: bool,
    limits: StoreLimits,
    unlock: redis::Script,
    create: redis::Script,
    update: redis::Script,
    delete: redis::Script,
    revoke: redis::Script,
    begin: redis::Script,
    unreadable: AtomicU64,
}

/// A held Redis rotation lock.
pub struct RedisLock {
    key: String,
    nonce: String,
}

/// What an update script answered.
fn update_outcome(code: i64) -> Update {
    match code {
        1 => Update::Saved,
        -1 => Update::Conflict,
        -2 => Update::Ended(EndReason::Revoked),
        -3 => Update::Ended(EndReason::Evicted),
        _ => Update::Gone,
    }
}

impl RedisStore {
    /// Connects (and checks the connection with `PING`).
    pub async fn connect(options: RedisOptions) -> Result<Self, StoreError> {
        let url = options.url.expose();
        let client = match &options.ca_pem {
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.clone()),
                },
            )?,
            None => redis::Client::open(url)?,
        };
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(2))
            .set_response_timeout(Duration::from_secs(2))
            .set_max_delay(1000)
            .set_number_of_retries(3);
        // Fail fast at startup: a wrong URL should not look like a hang.
        let connect = async {
            let mut conn = ConnectionManager::new_with_config(client, config).await?;
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok::<_, StoreError>(conn)
        };
        let conn = tokio::time::timeout(Duration::from_secs(5), connect)
            .await
            .map_err(|_| StoreError::ConnectTimeout)??;
        let script = |body: &str| redis::Script::new(&format!("{END_FN}{body}"));
        Ok(Self {
            conn,
            shared: Arc::new(Shared {
                prefix: options.prefix,
                keys: options.keys,
                allow_plaintext: options.allow_plaintext,
                limits: options.limits,
                unlock: redis::Script::new(UNLOCK_SCRIPT),
                create: script(CREATE_SCRIPT),
                update: redis::Script::new(UPDATE_SCRIPT),
                delete: redis::Script::new(DELETE_SCRIPT),
                revoke: script(REVOKE_SCRIPT),
                begin: redis::Script::new(BEGIN_SCRIPT),
                unreadable: AtomicU64::new(0),
            }),
        })
    }

    fn session_prefix(&self) -> String {
        format!("{}:session:", self.shared.prefix)
    }

    fn session_key(&self, key: &str) -> String {
        format!("{}:session:{key}", self.shared.prefix)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:lock:{key}", self.shared.prefix)
    }

    /// The index of a user: keyed by a hash, so keys do not list uuids.
    fn user_key(&self, uuid: &str) -> String {
        format!(
            "{}:user:{}",
            self.shared.prefix,
            hex(&Sha256::digest(uuid.as_bytes()))
        )
    }

    /// The stored form of a record: encrypted for `key` when keys are set.
    fn encode(&self, key: &str, record: &SessionRecord) -> Result<Vec<u8>, StoreError> {
        let json = serde_json::to_vec(record)?;
        Ok(match &self.shared.keys {
            Some(keys) => keys.seal(key.as_bytes(), &json),
            None => json,
        })
    }

    fn decode(&self, key: &str, value: &[u8]) -> Result<SessionRecord, StoreError> {
        let json = match (&self.shared.keys, is_sealed(value)) {
            (Some(keys), true) => keys.open(key.as_bytes(), value)?,
            (None, true) => return Err(StoreError::NoKey),
            (Some(_), false) if !self.shared.allow_plaintext => {
                return Err(StoreError::Unencrypted)
            }
            (_, false) => value.to_vec(),
        };
        Ok(serde_json::from_slice(&json)?)
    }

    /// `PING`.
    pub(super) async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    /// Stored values that could not be read since start.
    pub fn unreadable(&self) -> u64 {
        self.shared.unreadable.load(Ordering::Relaxed)
    }

    pub(super) async fn load(&self, key: &str) -> Result<Option<Loaded>, StoreError> {
        let mut conn = self.conn.clone();
        let (value, ended): (Option<Vec<u8>>, Option<String>) = redis::cmd("HMGET")
            .arg(self.session_key(key))
            .arg("v")
            .arg("r")
            .query_async(&mut conn)
            .await?;
        if let Some(reason) = ended {
            return Ok(Some(Loaded::Ended(EndReason::parse(&reason))));
        }
        let Some(value) = value else {
            return Ok(None);
        };
        match self.decode(key, &value) {
            Ok(record) => Ok(Some(Loaded::Live(record))),
            Err(e) => {
                self.shared.unreadable.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    pub(super) async fn create(
        &self,
        key: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let value = self.encode(key, record)?;
        let ended: i64 = self
            .shared
            .create
            .key(self.session_key(key))
            .key(self.user_key(&record.uuid))
            .arg(value)
            .arg(record.generation)
            .arg(ttl_ms(ttl))
            .arg(record.created_ms)
            .arg(self.shared.limits.max_sessions_per_user)
            .arg(ttl_ms(self.shared.limits.index_ttl))
            .arg(self.session_prefix())
            .arg(key)
            .invoke_async(&mut conn)
            .await?;
        Ok(usize::try_from(ended).unwrap_or(0))
    }

    pub(super) async fn update(
        &self,
        key: &str,
        record: &SessionRecord,
        expected: u64,
        ttl: Option<Duration>,
    ) -> Result<Update, StoreError> {
        let mut conn = self.conn.clone();
        let value = self.encode(key, record)?;
        let ttl = ttl.map_or(String::new(), |t| ttl_ms(t).to_string());
        let code: i64 = self
            .shared
            .update
            .key(self.session_key(key))
            .arg(expected)
            .arg(value)
            .arg(record.generation)
            .arg(ttl)
            .invoke_async(&mut conn)
            .await?;
        Ok(update_outcome(code))
    }

    pub(super) async fn touch(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let ms = i64::try_from(ttl_ms(ttl)).unwrap_or(i64::MAX);
        let _: bool = conn.pexpire(self.session_key(key), ms).await?;
        Ok(())
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .shared
            .delete
            .key(self.session_key(key))
            .arg(key)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn revoke_user(&self, uuid: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn.clone();
        let ended: i64 = self
            .shared
            .revoke
            .key(self.user_key(uuid))
            .arg(self.session_prefix())
            .invoke_async(&mut conn)
            .await?;
        Ok(usize::try_from(ended).unwrap_or(0))
    }

    pub(super) async fn begin_rotation(
        &self,
        key: &str,
        nonce: &str,
        deadline_ms: u64,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .shared
            .begin
            .key(self.session_key(key))
            .arg(nonce)
            .arg(deadline_ms)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }

    pub(super) async fn end_rotation(&self, key: &str, nonce: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn
            .hdel(self.session_key(key), format!("p:{nonce}"))
            .await?;
        Ok(())
    }

    pub(super) async fn rotations_in_flight(
        &self,
        key: &str,
    ) -> Result<Vec<(String, u64)>, StoreError> {
        let mut conn = self.conn.clone();
        let fields: Vec<(String, Vec<u8>)> = conn.hgetall(self.session_key(key)).await?;
        Ok(fields
            .into_iter()
            .filter_map(|(f, v)| {
                let nonce = f.strip_prefix("p:")?.to_owned();
                let deadline = std::str::from_utf8(&v).ok()?.parse().ok()?;
                Some((nonce, deadline))
            })
            .collect())
    }

    pub(super) async fn lock(
        &self,
        key: &str,
        hold: Duration,
        wait: Duration,
    ) -> Result<RedisLock, StoreError> {
        let mut conn = self.conn.clone();
        let lock_key = self.lock_key(key);
        let nonce = random_hex::<16>();
        let hold_ms = ttl_ms(hold);
        let deadline = tokio::time::Instant::now() + wait;
        let mut pause = Duration::from_millis(2);
        loop {
            let acquired: Option<String> = redis::cmd("SET")
                .arg(&lock_key)
                .arg(&nonce)
                .arg("NX")
                .arg("PX")
                .arg(hold_ms)
                .query_async(&mut conn)
                .await?;
            if acquired.is_some() {
                return Ok(RedisLock {
                    key: lock_key,
                    nonce,
                });
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(StoreError::LockTimeout);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(25));
        }
    }

    pub(super) async fn unlock(&self, lock: RedisLock) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = self
            .shared
            .unlock
            .key(&lock.key)
            .arg(&lock.nonce)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
