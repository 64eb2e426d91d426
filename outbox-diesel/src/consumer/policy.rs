//! What a consumer does with a record it cannot apply.

use std::time::Duration;

/// Retries of a failing record: `attempts` tries in all (the first included),
/// waiting from `base`, doubling, up to `cap` between them (with jitter).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use outbox_diesel::consumer::Retry;
///
/// let retry = Retry::new(3, Duration::from_millis(50), Duration::from_secs(1));
/// assert_eq!(retry.attempts(), 3);
/// assert_eq!(Retry::none().attempts(), 1);
/// assert_eq!(Retry::default(), Retry::new(5, Duration::from_millis(100), Duration::from_secs(10)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    attempts: u32,
    base: Duration,
    cap: Duration,
}

impl Retry {
    /// `attempts` tries in all (at least 1), backing off from `base` up to `cap`.
    pub fn new(attempts: u32, base: Duration, cap: Duration) -> Self {
        Retry {
            attempts: attempts.max(1),
            base,
            cap: cap.max(base),
        }
    }

    /// One try, no retry.
    pub fn none() -> Self {
        Self::new(1, Duration::ZERO, Duration::ZERO)
    }

    /// Tries in all, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The first wait.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The longest wait.
    pub fn cap(&self) -> Duration {
        self.cap
    }
}

impl Default for Retry {
    fn default() -> Self {
        Self::new(5, Duration::from_millis(100), Duration::from_secs(10))
    }
}

/// Where a record goes once its retries are spent (or at once, for an error
/// retries cannot fix: a record that does not decode, a permanent handler error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OnFailure {
    /// Pause the record's partition and record it in `outbox_stopped_partitions`;
    /// other partitions go on. `Consumer::resume` or `outbox partitions resume`
    /// restarts it from that record.
    StopPartition,
    /// Send the record, unchanged, to `<topic>.dlq` with the error in its
    /// headers, and go on. `outbox dlq replay` sends it back.
    DeadLetter,
}

/// Retry, then stop the partition (the default) or dead-letter the record.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use outbox_diesel::consumer::{FailurePolicy, OnFailure, Retry};
///
/// let policy = FailurePolicy::dead_letter().retry(Retry::new(3, Duration::from_millis(10), Duration::from_secs(1)));
/// assert_eq!(policy.on_failure(), OnFailure::DeadLetter);
/// assert_eq!(FailurePolicy::default(), FailurePolicy::stop());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailurePolicy {
    retry: Retry,
    on_failure: OnFailure,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            retry: Retry::default(),
            on_failure: OnFailure::StopPartition,
        }
    }
}

impl FailurePolicy {
    /// Retry, then stop the partition.
    pub fn stop() -> Self {
        Self::default()
    }

    /// Retry, then dead-letter the record.
    pub fn dead_letter() -> Self {
        FailurePolicy {
            retry: Retry::default(),
            on_failure: OnFailure::DeadLetter,
        }
    }

    /// The same policy with other retries.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = retry;
        self
    }

    /// Its retries.
    pub fn retries(&self) -> Retry {
        self.retry
    }

    /// What happens after them.
    pub fn on_failure(&self) -> OnFailure {
        self.on_failure
    }
}
