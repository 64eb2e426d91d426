//! The Kafka side of the consumer: its settings, and the context through which
//! librdkafka tells the dispatcher about rebalances and lag (and, through
//! [`Diagnostics`], logs its errors and lines, summarised).

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use outbox::kafka::Diagnostics;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance};
use rdkafka::{ClientContext, Statistics, TopicPartitionList};
use tokio::sync::mpsc::UnboundedSender;

/// Settings the consumer starts from; `set` may override them.
pub(crate) const CONSUMER_DEFAULTS: &[(&str, &str)] = &[
    ("auto.offset.reset", "earliest"),
    ("statistics.interval.ms", "5000"),
    ("session.timeout.ms", "10000"),
];

/// Offsets are stored by the consumer after each commit to PostgreSQL, and
/// committed by librdkafka in the background; these two make that so, and
/// `set` may not override them.
pub(crate) const CONSUMER_REQUIRED: &[(&str, &str)] = &[
    ("enable.auto.commit", "true"),
    ("enable.auto.offset.store", "false"),
];

/// Settings copied from the consumer's to its dead-letter producer: where the
/// brokers are and how to reach them, and `message.max.bytes`, so that a
/// consumer set to read records larger than librdkafka's 1 MB default can
/// dead-letter them too (the producer refuses larger ones before sending).
pub(crate) fn shared_with_producer(key: &str) -> bool {
    key == "bootstrap.servers"
        || key == "client.id"
        || key == "message.max.bytes"
        || ["security.", "sasl.", "ssl."]
            .iter()
            .any(|prefix| key.starts_with(prefix))
}

/// A topic and partition.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Tp {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: i32,
}

impl Tp {
    pub(crate) fn new(topic: &str, partition: i32) -> Self {
        Tp {
            topic: Arc::from(topic),
            partition,
        }
    }

    pub(crate) fn list(&self) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        list.add_partition(&self.topic, self.partition);
        list
    }
}

impl fmt::Display for Tp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// What the partition tasks, librdkafka and the resume watcher tell the dispatcher.
#[derive(Debug)]
pub(crate) enum Control {
    /// Partitions assigned to this consumer.
    Assigned(Vec<Tp>),
    /// Partitions taken away.
    Revoked(Vec<Tp>),
    /// Task `task` stopped on the record at `offset` (stop row `stop_id`).
    Stop {
        tp: Tp,
        task: u64,
        stop_id: i64,
        offset: i64,
    },
    /// The stop `stop_id` was resumed: read again from `offset`.
    Resumed { tp: Tp, stop_id: i64, offset: i64 },
    /// Task `task` of a projection read its stored position: seek there
    /// (`None`: it has none, read on from the committed offset) and read.
    /// `seek` numbers the task's seeks: a retry of an earlier one is dropped.
    Seek {
        tp: Tp,
        task: u64,
        offset: Option<i64>,
        seek: u64,
    },
    /// A rebuild reset the projection's positions: every task reads its
    /// position again.
    Reposition,
    /// Task `task`'s queue drained below the low mark.
    Unblock { tp: Tp, task: u64 },
}

/// Per partition, whether its current task has lost it to a rebalance.
pub(crate) type RevokedFlags = Arc<Mutex<HashMap<Tp, Arc<AtomicBool>>>>;

/// The consumer's librdkafka context.
pub(crate) struct ConsumeContext {
    pub(crate) control: UnboundedSender<Control>,
    pub(crate) revoked: RevokedFlags,
    /// Errors and log lines: to `tracing`, repeats summarised, secrets masked.
    pub(crate) diagnostics: Diagnostics,
}

fn partitions(list: &TopicPartitionList) -> Vec<Tp> {
    list.elements()
        .iter()
        .map(|elem| Tp::new(elem.topic(), elem.partition()))
        .collect()
}

impl ClientContext for ConsumeContext {
    // Into `tracing` (rdkafka's default goes to the `log` crate): an
    // unreachable broker or a refused login shows where the service logs.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.diagnostics.record(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        self.diagnostics.log_line(level, facility, line);
    }

    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, stats) in &stats.partitions {
                // -1 is the internal "unassigned" partition; lag -1 means unknown.
                if *partition >= 0 && stats.consumer_lag >= 0 {
                    metrics::gauge!("outbox_consumer_lag",
                        "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(stats.consumer_lag as f64);
                }
            }
        }
    }
}

impl ConsumerContext for ConsumeContext {
    fn pre_rebalance(&self, _base_consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(list) = rebalance {
            let revoked = partitions(list);
            // Tasks of revoked partitions finish the record in hand and stop; a
            // record applied after this is a duplicate for the next owner, which
            // its inbox skips.
            if let Ok(mut flags) = self.revoked.lock() {
                for tp in &revoked {
                    if let Some(flag) = flags.remove(tp) {
                        flag.store(true, Ordering::SeqCst);
                    }
                }
            }
            // What was applied is committed before the partitions move: with
            // `enable.auto.commit`, librdkafka commits the stored offsets of
            // unassigned partitions itself.
            tracing::info!(partitions = ?revoked, "partitions revoked");
            let _ = self.control.send(Control::Revoked(revoked));
        }
    }

    fn post_rebalance(&self, _base_consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(list) => {
                let assigned = partitions(list);
                tracing::info!(partitions = ?assigned, "partitions assigned");
                let _ = self.control.send(Control::Assigned(assigned));
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}
