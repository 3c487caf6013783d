//! The clock the handlers and the memory store read "now" from: real time,
//! moved forward by [`Clock::advance`] in tests, so that lifetime and idle
//! rules are tested by setting time instead of sleeping.
//!
//! Only the server's own arithmetic reads it (token ages, session lifetimes,
//! the memory store's idle deadlines). Redis expires keys in real time, and
//! the Identity Cloud simulator keeps real time too: an advanced clock is this
//! server's view, not the world's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Real time plus a shift that only grows. Clones share the shift, so a
/// test that advances its clock moves every server given a clone of it.
#[derive(Clone, Debug, Default)]
pub struct Clock {
    /// Milliseconds added to real time.
    shift_ms: Arc<AtomicU64>,
}

impl Clock {
    /// Real time (the default).
    pub fn real() -> Clock {
        Clock::default()
    }

    /// Moves this clock (and its clones) forward by `by`.
    pub fn advance(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.shift_ms
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| {
                Some(s.saturating_add(ms))
            })
            .ok();
    }

    fn shift(&self) -> Duration {
        Duration::from_millis(self.shift_ms.load(Ordering::Relaxed))
    }

    /// Wall-clock now in unix milliseconds (the meaning shared by instances).
    pub fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        real.saturating_add(self.shift_ms.load(Ordering::Relaxed))
    }

    /// Monotonic now, for deadlines inside this process.
    pub fn instant(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.shift()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_both_readings_and_every_clone() {
        let clock = Clock::real();
        let other = clock.clone();
        let (ms, instant) = (clock.now_ms(), clock.instant());
        other.advance(Duration::from_secs(3600));
        assert!(clock.now_ms() >= ms + 3_600_000);
        assert!(clock.instant() >= instant + Duration::from_secs(3600));
        // A fresh clock is real time.
        assert!(Clock::real().now_ms() < ms + 60_000);
    }
}
