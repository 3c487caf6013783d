//! The in-process session store (the default): nothing to install.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::clock::Clock;

use super::{EndReason, Loaded, SessionRecord, StoreError, StoreLimits, Update};

enum Slot {
    Live(SessionRecord),
    Ended(EndReason),
}

struct Entry {
    slot: Slot,
    idle_deadline: Instant,
}

impl Entry {
    fn live(&self, now: Instant) -> Option<&SessionRecord> {
        match &self.slot {
            Slot::Live(r) if self.idle_deadline > now => Some(r),
            _ => None,
        }
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<String, Entry>,
    /// uuid -> (created_ms, key) of its sessions (some may have ended).
    by_user: HashMap<String, Vec<(u64, String)>>,
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    writes: u64,
}

impl Inner {
    /// Drops index entries of sessions that are no longer live.
    fn prune_user(&mut self, uuid: &str, now: Instant) {
        let sessions = &self.sessions;
        if let Some(list) = self.by_user.get_mut(uuid) {
            list.retain(|(_, k)| sessions.get(k).is_some_and(|e| e.live(now).is_some()));
            if list.is_empty() {
                self.by_user.remove(uuid);
            }
        }
    }

    fn sweep(&mut self, now: Instant) {
        self.sessions.retain(|_, e| e.idle_deadline > now);
        let sessions = &self.sessions;
        self.by_user.retain(|_, list| {
            list.retain(|(_, k)| sessions.get(k).is_some_and(|e| e.live(now).is_some()));
            !list.is_empty()
        });
    }

    /// Marks a live session ended (its idle deadline stays).
    fn end(&mut self, key: &str, reason: EndReason) -> bool {
        match self.sessions.get_mut(key) {
            Some(e) if matches!(e.slot, Slot::Live(_)) => {
                e.slot = Slot::Ended(reason);
                true
            }
            _ => false,
        }
    }
}

/// Sessions in a map; rotation locks are per-session async mutexes.
///
/// Values are kept as they are, not encrypted: they never leave the process.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    limits: StoreLimits,
    clock: Clock,
}

/// A held memory rotation lock.
pub struct MemoryLock {
    key: String,
    guard: OwnedMutexGuard<()>,
}

impl MemoryStore {
    /// An empty store on real time.
    pub fn new(limits: StoreLimits) -> Self {
        Self::with_clock(limits, Clock::real())
    }

    /// An empty store whose idle deadlines follow `clock`.
    pub fn with_clock(limits: StoreLimits, clock: Clock) -> Self {
        Self {
            inner: Arc::default(),
            limits,
            clock,
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn load(&self, key: &str) -> Option<Loaded> {
        let mut inner = self.inner();
        let now = self.clock.instant();
        match inner.sessions.get(key) {
            Some(e) if e.idle_deadline > now => Some(match &e.slot {
                Slot::Live(r) => Loaded::Live(r.clone()),
                Slot::Ended(reason) => Loaded::Ended(*reason),
            }),
            Some(_) => {
                inner.sessions.remove(key);
                None
            }
            None => None,
        }
    }

    pub(super) fn create(&self, key: &str, record: &SessionRecord, ttl: Duration) -> usize {
        let mut inner = self.inner();
        let now = self.clock.instant();
        inner.writes += 1;
        if inner.writes % 1024 == 0 {
            inner.sweep(now);
        }
        inner.sessions.insert(
            key.to_owned(),
            Entry {
                slot: Slot::Live(record.clone()),
                idle_deadline: now + ttl,
            },
        );
        let max = self.limits.max_sessions_per_user;
        // Bounded, a user's list stays short: prune it at each start.
        // Unbounded, ends and the periodic sweep keep it.
        if max > 0 {
            inner.prune_user(&record.uuid, now);
        }
        let list = inner.by_user.entry(record.uuid.clone()).or_default();
        list.push((record.created_ms, key.to_owned()));
        let mut evicted = Vec::new();
        while max > 0 && list.len() > max {
            // The oldest other than the one just written.
            let Some(i) = list
                .iter()
                .enumerate()
                .filter(|(_, (_, k))| k != key)
                .min_by_key(|(_, (created, _))| *created)
                .map(|(i, _)| i)
            else {
                break;
            };
            evicted.push(list.remove(i).1);
        }
        for k in &evicted {
            inner.end(k, EndReason::Evicted);
        }
        evicted.len()
    }

    pub(super) fn update(
        &self,
        key: &str,
        record: &SessionRecord,
        expected: u64,
        ttl: Option<Duration>,
    ) -> Update {
        let mut inner = self.inner();
        let now = self.clock.instant();
        match inner.sessions.get_mut(key) {
            Some(e) if e.idle_deadline > now => match &mut e.slot {
                Slot::Ended(reason) => Update::Ended(*reason),
                Slot::Live(current) if current.generation != expected => Update::Conflict,
                Slot::Live(current) => {
                    *current = record.clone();
                    if let Some(ttl) = ttl {
                        e.idle_deadline = now + ttl;
                    }
                    Update::Saved
                }
            },
            _ => Update::Gone,
        }
    }

    pub(super) fn touch(&self, key: &str, ttl: Duration) {
        if let Some(e) = self.inner().sessions.get_mut(key) {
            e.idle_deadline = self.clock.instant() + ttl;
        }
    }

    pub(super) fn delete(&self, key: &str) {
        let mut inner = self.inner();
        if let Some(Entry {
            slot: Slot::Live(record),
            ..
        }) = inner.sessions.remove(key)
        {
            if let Some(list) = inner.by_user.get_mut(&record.uuid) {
                list.retain(|(_, k)| k != key);
                if list.is_empty() {
                    inner.by_user.remove(&record.uuid);
                }
            }
        }
    }

    pub(super) fn revoke_user(&self, uuid: &str) -> usize {
        let mut inner = self.inner();
        let list = inner.by_user.remove(uuid).unwrap_or_default();
        let now = self.clock.instant();
        let mut ended = 0;
        for (_, k) in &list {
            let live = inner.sessions.get(k).is_some_and(|e| e.live(now).is_some());
            if live && inner.end(k, EndReason::Revoked) {
                ended += 1;
            }
        }
        ended
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
        let now = self.clock.instant();
        self.inner()
            .sessions
            .values()
            .filter(|e| e.live(now).is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use capture_session_core::wire::Mode;
    use capture_session_core::AccessToken;

    fn record(uuid: &str, created_ms: u64) -> SessionRecord {
        SessionRecord {
            mode: Mode::Token,
            uuid: uuid.into(),
            access_token: AccessToken::new("token-token-token"),
            refresh_token: None,
            client_session: true,
            token_minted_ms: created_ms,
            token_expires_ms: created_ms + 3_600_000,
            generation: 0,
            created_ms,
            keep_me_logged_in: false,
            verified_ms: created_ms,
        }
    }

    fn bounded(max: usize) -> MemoryStore {
        MemoryStore::new(StoreLimits {
            max_sessions_per_user: max,
            index_ttl: Duration::from_secs(60),
        })
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn the_bound_counts_live_sessions_and_ends_the_oldest() {
        let store = bounded(2);
        assert_eq!(store.create("a", &record("u", 1), HOUR), 0);
        assert_eq!(store.create("b", &record("u", 2), HOUR), 0);
        assert_eq!(store.create("other", &record("v", 3), HOUR), 0, "per user");
        // An ended session frees its place, wherever it is in the list.
        store.delete("b");
        assert_eq!(store.create("c", &record("u", 4), HOUR), 0);
        assert_eq!(store.create("d", &record("u", 5), HOUR), 1);
        assert_eq!(store.load("a"), Some(Loaded::Ended(EndReason::Evicted)));
        for live in ["c", "d", "other"] {
            assert!(matches!(store.load(live), Some(Loaded::Live(_))), "{live}");
        }
        assert_eq!(store.count(), 3);
    }

    #[test]
    fn revoking_ends_the_users_live_sessions_only() {
        let store = bounded(0);
        for (k, u) in [("a", "u"), ("b", "u"), ("c", "v")] {
            store.create(k, &record(u, 1), HOUR);
        }
        store.delete("b");
        assert_eq!(store.revoke_user("u"), 1);
        assert_eq!(store.revoke_user("u"), 0, "already done");
        assert_eq!(store.load("a"), Some(Loaded::Ended(EndReason::Revoked)));
        assert_eq!(store.load("b"), None);
        assert!(matches!(store.load("c"), Some(Loaded::Live(_))));
        // An ended session is never written back, and an end removes it.
        let mut r = record("u", 1);
        r.generation = 1;
        assert_eq!(
            store.update("a", &r, 0, None),
            Update::Ended(EndReason::Revoked)
        );
        store.delete("a");
        assert_eq!(store.update("a", &r, 0, None), Update::Gone);
    }

    #[test]
    fn a_save_is_conditional_on_the_generation() {
        let store = bounded(0);
        store.create("k", &record("u", 1), HOUR);
        let mut next = record("u", 1);
        next.generation = 1;
        assert_eq!(store.update("k", &next, 0, None), Update::Saved);
        // A second rotation that also started from generation 0 lost.
        let mut late = record("u", 1);
        late.generation = 1;
        late.access_token = AccessToken::new("late-late-late-late");
        assert_eq!(store.update("k", &late, 0, None), Update::Conflict);
        assert_eq!(store.load("k"), Some(Loaded::Live(next)));
    }

    #[tokio::test]
    async fn the_rotation_lock_is_exclusive_and_forgotten_when_free() {
        let store = MemoryStore::new(StoreLimits {
            max_sessions_per_user: 0,
            index_ttl: Duration::from_secs(60),
        });
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
