//! Exponential backoff with full jitter
//! (<https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/>):
//! the wait before retry `n` is uniform in `[0, min(max, base * 2^(n-1))]`,
//! so that tabs and browsers that failed together do not retry together.

use crate::config::RetryPolicy;

/// A tiny deterministic PRNG (xorshift64*), enough for jitter and cheap in wasm.
/// Seeded by the browser layer (e.g. from `Math.random()`), by tests with a constant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Jitter(u64);

impl Jitter {
    /// A generator from a seed (0 is replaced by a fixed non-zero constant).
    pub fn new(seed: u64) -> Jitter {
        Jitter(if seed == 0 {
            0x9E37_79B9_7F4A_7C15
        } else {
            seed
        })
    }

    /// The next pseudo-random value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform-ish in `0..=max`.
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

impl RetryPolicy {
    /// The largest wait before the retry that follows failed attempt `attempt` (1-based).
    pub fn window_ms(&self, attempt: u32) -> u64 {
        let shift = attempt.saturating_sub(1).min(62);
        self.base_ms.saturating_mul(1u64 << shift).min(self.max_ms)
    }

    /// The wait before the next attempt: full jitter over [`window_ms`](Self::window_ms),
    /// never shorter than the server's `Retry-After`, which is believed up to
    /// `retry.maxMs` (a backend cannot park the helper for days).
    pub fn delay_ms(&self, attempt: u32, retry_after_ms: Option<u64>, jitter: &mut Jitter) -> u64 {
        let d = jitter.up_to(self.window_ms(attempt));
        d.max(retry_after_ms.unwrap_or(0).min(self.max_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_double_up_to_the_cap() {
        let p = RetryPolicy::default();
        let w: Vec<u64> = (1..=8).map(|n| p.window_ms(n)).collect();
        assert_eq!(w, [1000, 2000, 4000, 8000, 16000, 32000, 60000, 60000]);
        assert_eq!(p.window_ms(1000), 60000);
    }

    #[test]
    fn delays_are_jittered_within_the_window_and_respect_retry_after() {
        let p = RetryPolicy::default();
        let mut j = Jitter::new(42);
        let delays: Vec<u64> = (0..200).map(|_| p.delay_ms(3, None, &mut j)).collect();
        assert!(delays.iter().all(|&d| d <= 4000));
        let distinct: std::collections::BTreeSet<_> = delays.iter().collect();
        assert!(distinct.len() > 100, "jitter should spread delays");
        assert!((0..200).all(|_| p.delay_ms(1, Some(30_000), &mut j) >= 30_000));
        // Retry-After is capped at maxMs.
        assert!((0..200).all(|_| p.delay_ms(1, Some(u64::MAX), &mut j) <= p.max_ms));
    }
}
