//! Exponential backoff with jitter, capped.

use std::time::Duration;

/// Doubles from `base` up to `cap`; each delay is drawn from its upper half, so
/// relays that failed together do not retry together.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    failures: u32,
}

impl Backoff {
    pub(crate) fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base,
            cap,
            failures: 0,
        }
    }

    /// The delay before the next attempt; each call counts one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let exponential = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        let half = exponential / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub(crate) fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<Duration> = (0..8).map(|_| backoff.next_delay()).collect();
        for (i, delay) in delays.iter().enumerate() {
            let full = Duration::from_millis(100 << i).min(Duration::from_secs(1));
            assert!(
                *delay >= full / 2 && *delay <= full,
                "{i}: {delay:?} vs {full:?}"
            );
        }
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
