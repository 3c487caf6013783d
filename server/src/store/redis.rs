//! The Redis session store, for several server instances: sessions are JSON
//! values with an idle TTL, and the rotation lock is `SET NX PX` with a random
//! nonce, released by a compare-and-delete script.

use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::{SessionRecord, StoreError};
use crate::secret::random_hex;

/// Releases the lock only if it is still ours.
const UNLOCK_SCRIPT: &str = r#"
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
"#;

/// Sessions in Redis.
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    unlock: redis::Script,
}

/// A held Redis rotation lock.
pub struct RedisLock {
    key: String,
    nonce: String,
}

impl RedisStore {
    /// Connects (and checks the connection with `PING`).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)?;
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
        Ok(Self {
            conn,
            prefix: prefix.to_owned(),
            unlock: redis::Script::new(UNLOCK_SCRIPT),
        })
    }

    fn session_key(&self, key: &str) -> String {
        format!("{}:session:{key}", self.prefix)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:lock:{key}", self.prefix)
    }

    pub(super) async fn load(&self, key: &str) -> Result<Option<SessionRecord>, StoreError> {
        let mut conn = self.conn.clone();
        let raw: Option<Vec<u8>> = conn.get(self.session_key(key)).await?;
        match raw {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    pub(super) async fn save(
        &self,
        key: &str,
        record: &SessionRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let value = serde_json::to_vec(record)?;
        let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let () = conn.pset_ex(self.session_key(key), value, ms).await?;
        Ok(())
    }

    pub(super) async fn update(
        &self,
        key: &str,
        record: &SessionRecord,
        ttl: Option<Duration>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.conn.clone();
        let value = serde_json::to_vec(record)?;
        let mut set = redis::cmd("SET");
        set.arg(self.session_key(key)).arg(value);
        match ttl {
            Some(ttl) => {
                let ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
                set.arg("PX").arg(ms);
            }
            // Redis 6.0 and later.
            None => {
                set.arg("KEEPTTL");
            }
        }
        let written: Option<String> = set.arg("XX").query_async(&mut conn).await?;
        Ok(written.is_some())
    }

    pub(super) async fn touch(&self, key: &str, ttl: Duration) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX).max(1);
        let _: bool = conn.pexpire(self.session_key(key), ms).await?;
        Ok(())
    }

    pub(super) async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let mut conn = self.conn.clone();
        let _: i64 = conn.del(self.session_key(key)).await?;
        Ok(())
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
        let hold_ms = u64::try_from(hold.as_millis()).unwrap_or(u64::MAX).max(1);
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
            .unlock
            .key(&lock.key)
            .arg(&lock.nonce)
            .invoke_async(&mut conn)
            .await?;
        Ok(())
    }
}
