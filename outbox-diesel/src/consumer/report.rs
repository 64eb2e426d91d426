//! What a consumer did: counters for its report and the `metrics` facade.

use std::sync::atomic::{AtomicU64, Ordering};

/// What one [`Consumer::run`](super::Consumer::run) did, counted per record.
///
/// # Examples
///
/// ```
/// let report = outbox_diesel::consumer::ConsumerReport::default();
/// assert_eq!(report.processed + report.duplicates, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ConsumerReport {
    /// Applied and committed.
    pub processed: u64,
    /// Already in the inbox: skipped.
    pub duplicates: u64,
    /// No handling for their event (not `strict`): acknowledged.
    pub ignored: u64,
    /// Refused by a hook: rolled back, acknowledged.
    pub refused: u64,
    /// Failed their last attempt (then stopped or dead-lettered).
    pub failed: u64,
    /// Attempts after a failure.
    pub retries: u64,
    /// Sent to a dead-letter topic.
    pub dead_lettered: u64,
    /// Partitions stopped.
    pub stopped: u64,
    /// Error events enqueued about records that failed (the
    /// [error-event policy](super::FailurePolicy::error_event)).
    pub error_events: u64,
    /// Older than their key's row ([per-key versions](outbox::Outboxed::version)):
    /// acknowledged, nothing written.
    pub stale: u64,
    /// Applied more than one version past their key's row, under the gap
    /// policy `accept`.
    pub gaps: u64,
}

/// One counter per outcome, shared by the partition tasks.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    processed: AtomicU64,
    duplicates: AtomicU64,
    ignored: AtomicU64,
    refused: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    dead_lettered: AtomicU64,
    stopped: AtomicU64,
    error_events: AtomicU64,
    stale: AtomicU64,
    gaps: AtomicU64,
}

/// An outcome worth counting.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Outcome {
    Processed,
    Duplicate,
    Ignored,
    Refused,
    Failed,
    Retry,
    DeadLettered,
    Stopped,
    ErrorEvent,
    Stale,
    Gap,
}

impl Counters {
    /// Counts `outcome` of a record of `topic`, here and in `metrics`.
    pub(crate) fn count(&self, outcome: Outcome, topic: &str) {
        let (counter, metric) = match outcome {
            Outcome::Processed => (&self.processed, "outbox_consumer_processed_total"),
            Outcome::Duplicate => (&self.duplicates, "outbox_consumer_duplicates_total"),
            Outcome::Ignored => (&self.ignored, "outbox_consumer_ignored_total"),
            Outcome::Refused => (&self.refused, "outbox_consumer_refused_total"),
            Outcome::Failed => (&self.failed, "outbox_consumer_failed_total"),
            Outcome::Retry => (&self.retries, "outbox_consumer_retries_total"),
            Outcome::DeadLettered => (&self.dead_lettered, "outbox_consumer_dead_lettered_total"),
            Outcome::Stopped => (&self.stopped, "outbox_consumer_stopped_total"),
            Outcome::ErrorEvent => (&self.error_events, "outbox_consumer_error_events_total"),
            Outcome::Stale => (&self.stale, "outbox_consumer_stale_total"),
            Outcome::Gap => (&self.gaps, "outbox_consumer_gaps_total"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(metric, "topic" => topic.to_owned()).increment(1);
    }

    pub(crate) fn report(&self) -> ConsumerReport {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ConsumerReport {
            processed: get(&self.processed),
            duplicates: get(&self.duplicates),
            ignored: get(&self.ignored),
            refused: get(&self.refused),
            failed: get(&self.failed),
            retries: get(&self.retries),
            dead_lettered: get(&self.dead_lettered),
            stopped: get(&self.stopped),
            error_events: get(&self.error_events),
            stale: get(&self.stale),
            gaps: get(&self.gaps),
        }
    }
}
