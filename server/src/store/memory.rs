//! The in-process session store (the default): nothing to install.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use super::{SessionRecord, StoreError};

struct Entry {
    record: SessionRecord,
    idle_deadline: Instant,
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Entry>,
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    writes: u64,
}

/// Sessions in a map; rotation locks are per-session async mutexes.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
}

/// A held memory rotation lock.
pub struct MemoryLock {
    key: String,
    guard: OwnedMutexGuard<()>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn load(&self, key: &str) -> Option<SessionRecord> {
        let mut inner = self.inner();
        let now = Instant::now();
        match inner.sessions.get(key) {
            Some(e) if e.idle_deadline > now => Some(e.record.clone()),
            Some(_) => {
                inner.sessions.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn save(&self, key: &str, record: &SessionRecord, ttl: Duration) {
        let mut inner = self.inner();
        let now = Instant::now();
        inner.writes += 1;
        if inner.writes % 1024 == 0 {
            inner.sessions.retain(|_, e| e.idle_deadline > now);
        }
        inner.sessions.insert(
            key.to_owned(),
            Entry {
                record: record.clone(),
                idle_deadline: now + ttl,
            },
        );
    }

    pub(super) fn update(&self, key: &str, record: &SessionRecord, ttl: Option<Duration>) -> bool {
        let mut inner = self.inner();
        let now = Instant::now();
        match inner.sessions.get_mut(key) {
            Some(e) if e.idle_deadline > now => {
                e.record = record.clone();
                if let Some(ttl) = ttl {
                    e.idle_deadline = now + ttl;
                }
                true
            }
            _ => false,
        }
    }

    pub(super) fn touch(&self, key: &str, ttl: Duration) {
        if let Some(e) = self.inner().sessions.get_mut(key) {
            e.idle_deadline = Instant::now() + ttl;
        }
    }

    pub(super) fn delete(&self, key: &str) {
        self.inner().sessions.remove(key);
    }

    pub(super) async fn lock(&self, key: &str, wait: Duration) -> Result<MemoryLock, StoreError> {
        let mutex = self
            .inner()
            .locks
            .entry(key.to_owned())
            .or_default()
            .clone();
        match tokio::time::timeout(wait, mutex.lock_owned()).await {
            Ok(guard) => Ok(MemoryLock {
                key: key.to_owned(),
                guard,
            }),
            Err(_) => {
                self.forget_idle_lock(key);
                Err(StoreError::LockTimeout)
            }
        }
    }

    /// Drops a session's mutex once nobody holds or awaits it (only the map
    /// still has it).
    fn forget_idle_lock(&self, key: &str) {
        let mut inner = self.inner();
        if inner
            .locks
            .get(key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            inner.locks.remove(key);
        }
    }

    pub(super) fn unlock(&self, lock: MemoryLock) {
        let MemoryLock { key, guard } = lock;
        drop(guard);
        self.forget_idle_lock(&key);
    }

    pub(super) fn count(&self) -> usize {
        let now = Instant::now();
        self.inner()
            .sessions
            .values()
            .filter(|e| e.idle_deadline > now)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_rotation_lock_is_exclusive_and_forgotten_when_free() {
        let store = MemoryStore::new();
        let first = store
            .lock("k", Duration::from_secs(1))
            .await
            .expect("free lock");
        // A second taker waits, and gives up after its wait.
        let second = store.lock("k", Duration::from_millis(50)).await;
        assert!(matches!(second, Err(StoreError::LockTimeout)));
        // Another session's lock is independent.
        let other = store
            .lock("other", Duration::from_millis(50))
            .await
            .expect("other session");
        store.unlock(other);
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move { store.lock("k", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "still held");
        store.unlock(first);
        let second = waiter.await.expect("task").expect("lock after release");
        store.unlock(second);
        assert!(
            store.inner().locks.is_empty(),
            "no mutex kept for idle sessions"
        );
    }
}
