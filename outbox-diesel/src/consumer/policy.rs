//! What a consumer does with a record it cannot apply.

use std::sync::Arc;
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
    /// Enqueue an error event (`error.<event>`) about the record in the
    /// consumer's outbox, to the topic of
    /// [`FailurePolicy::error_event`], and go on.
    ErrorEvent,
}

/// Retry, then stop the partition (the default), dead-letter the record, or
/// publish an error event about it.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailurePolicy {
    retry: Retry,
    on_failure: OnFailure,
    error_topic: Option<Arc<str>>,
}

impl Default for FailurePolicy {
    fn default() -> Self {
        FailurePolicy {
            retry: Retry::default(),
            on_failure: OnFailure::StopPartition,
            error_topic: None,
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
            error_topic: None,
        }
    }

    /// Retry, then enqueue an error event about the record in the consumer's
    /// own outbox (its relay publishes it to `topic`), and go on.
    ///
    /// The event is `error.<the record's event>` (`error.created`, …;
    /// `error.unreadable` for a record that does not decode), on the
    /// record's route and key, from the consumer's
    /// [`producer_name`](super::ConsumerBuilder::producer_name), with a JSON
    /// payload (version 1): `message_id`, `event`, `route`, `key`, `topic`,
    /// `partition`, `offset`, `group`, `kind` (`handler`, `decode`,
    /// `no_controller`, `unhandled_event`), `error`, `attempts`. It is
    /// written in one transaction with the record's inbox row (or a
    /// projection's position), so a record re-delivered after a crash gets
    /// no second error event. Other services handle it with an ordinary
    /// custom event handler, `#[on("error.created")]`. A rebuild re-applying
    /// records does not publish them again, unless the projection sends
    /// [follow-ups in rebuilds](super::Projection::follow_ups_in_rebuild).
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::consumer::{FailurePolicy, OnFailure};
    ///
    /// let policy = FailurePolicy::error_event("billing.errors");
    /// assert_eq!(policy.on_failure(), OnFailure::ErrorEvent);
    /// assert_eq!(policy.error_topic(), Some("billing.errors"));
    /// ```
    pub fn error_event(topic: impl Into<String>) -> Self {
        FailurePolicy {
            retry: Retry::default(),
            on_failure: OnFailure::ErrorEvent,
            error_topic: Some(Arc::from(topic.into())),
        }
    }

    /// The topic of the error events, under [`OnFailure::ErrorEvent`].
    pub fn error_topic(&self) -> Option<&str> {
        self.error_topic.as_deref()
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
