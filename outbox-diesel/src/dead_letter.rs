//! Dead-letter topics: the headers a dead-lettered record carries, and
//! [`replay`], which sends dead-lettered records back to their topic.
//!
//! With the *dead-letter* failure policy, a consumer that gives up on a record
//! publishes it unchanged (key, value, original headers) to `<topic>.dlq`
//! ([`DLQ_SUFFIX`]), adds the `outbox.dlq.*` headers below saying what failed,
//! where and when, and moves on. Once the cause is fixed, [`replay`] (or
//! `outbox dlq replay <topic>.dlq`) publishes those records to their topic again,
//! without the `outbox.dlq.*` headers; the consumer applies them then. A record
//! that had been applied after all is skipped by the consumer's inbox (same
//! message id), so replaying too much is harmless.
//!
//! | header | value |
//! |---|---|
//! | [`ERROR`] `outbox.dlq.error` | the error and its causes, as text |
//! | [`ERROR_KIND`] `outbox.dlq.error_kind` | `decode`, `handler`, `no_controller` or `unhandled_event` |
//! | [`TOPIC`] `outbox.dlq.topic` | the topic the record was read from |
//! | [`PARTITION`] `outbox.dlq.partition` | its partition |
//! | [`OFFSET`] `outbox.dlq.offset` | its offset |
//! | [`GROUP`] `outbox.dlq.group` | the consumer group that gave up |
//! | [`FAILED_AT`] `outbox.dlq.failed_at` | when, RFC 3339 in UTC |
//! | [`ATTEMPTS`] `outbox.dlq.attempts` | how many times it was tried |
//!
//! # Examples
//!
//! ```no_run
//! use outbox_diesel::dead_letter;
//!
//! # async fn f() -> Result<(), outbox_diesel::Error> {
//! let report = dead_letter::replay("127.0.0.1:59092", "orders.dlq", "outbox-dlq-replay", &[]).await?;
//! for (topic, count) in &report.topics {
//!     println!("{count} records back to {topic}");
//! }
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use outbox::kafka::{CHECK_TIMEOUT, Diagnostics, KafkaPublisher};
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::error::{Error, Result};

/// What a dead-letter topic's name adds to the topic it holds records of:
/// `orders` → `orders.dlq`.
///
/// # Examples
///
/// ```
/// use outbox_diesel::dead_letter::{DLQ_SUFFIX, dlq_topic};
///
/// assert_eq!(dlq_topic("orders"), format!("orders{DLQ_SUFFIX}"));
/// ```
pub const DLQ_SUFFIX: &str = ".dlq";

/// What every header added to a dead-lettered record starts with; [`replay`]
/// removes the headers that do.
///
/// # Examples
///
/// ```
/// use outbox_diesel::dead_letter::{ERROR, HEADER_PREFIX};
///
/// assert!(ERROR.starts_with(HEADER_PREFIX));
/// assert!(!"message_id".starts_with(HEADER_PREFIX));
/// ```
pub const HEADER_PREFIX: &str = "outbox.dlq.";

/// Header: the error and its causes, as text.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::ERROR, "outbox.dlq.error");
/// ```
pub const ERROR: &str = "outbox.dlq.error";

/// Header: what kind of failure, one of [`KIND_DECODE`], [`KIND_HANDLER`],
/// [`KIND_NO_CONTROLLER`], [`KIND_UNHANDLED_EVENT`].
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::ERROR_KIND, "outbox.dlq.error_kind");
/// ```
pub const ERROR_KIND: &str = "outbox.dlq.error_kind";

/// Header: the topic the record was read from; [`replay`] sends it back there.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::TOPIC, "outbox.dlq.topic");
/// ```
pub const TOPIC: &str = "outbox.dlq.topic";

/// Header: the partition the record was read from.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::PARTITION, "outbox.dlq.partition");
/// ```
pub const PARTITION: &str = "outbox.dlq.partition";

/// Header: the record's offset in that partition.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::OFFSET, "outbox.dlq.offset");
/// ```
pub const OFFSET: &str = "outbox.dlq.offset";

/// Header: the consumer group that gave up on the record.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::GROUP, "outbox.dlq.group");
/// ```
pub const GROUP: &str = "outbox.dlq.group";

/// Header: when the record was dead-lettered, RFC 3339 in UTC.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::FAILED_AT, "outbox.dlq.failed_at");
/// ```
pub const FAILED_AT: &str = "outbox.dlq.failed_at";

/// Header: how many times the record was tried.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::ATTEMPTS, "outbox.dlq.attempts");
/// ```
pub const ATTEMPTS: &str = "outbox.dlq.attempts";

/// [`ERROR_KIND`]: the record could not be decoded (not JSON, a header missing,
/// an unknown version).
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::KIND_DECODE, "decode");
/// ```
pub const KIND_DECODE: &str = "decode";

/// [`ERROR_KIND`]: the controller's handling failed.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::KIND_HANDLER, "handler");
/// ```
pub const KIND_HANDLER: &str = "handler";

/// [`ERROR_KIND`]: no controller serves the record's `to`.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::KIND_NO_CONTROLLER, "no_controller");
/// ```
pub const KIND_NO_CONTROLLER: &str = "no_controller";

/// [`ERROR_KIND`]: the controller has no handler for the event and is strict.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::KIND_UNHANDLED_EVENT, "unhandled_event");
/// ```
pub const KIND_UNHANDLED_EVENT: &str = "unhandled_event";

/// The consumer group `outbox dlq replay` commits its offsets in, unless told
/// otherwise.
///
/// # Examples
///
/// ```
/// use outbox_diesel::dead_letter::{self, DEFAULT_REPLAY_GROUP};
///
/// # async fn f() -> Result<(), outbox_diesel::Error> {
/// dead_letter::replay("127.0.0.1:59092", "orders.dlq", DEFAULT_REPLAY_GROUP, &[]).await?;
/// # Ok(()) }
/// ```
pub const DEFAULT_REPLAY_GROUP: &str = "outbox-dlq-replay";

/// How long a Kafka request of [`replay`] may take (metadata, offsets, commits).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`replay`] waits for the next record of a partition it has not read
/// to its end before giving up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Records [`replay`] sends before it waits for their acknowledgements and
/// commits: an interrupted replay sends at most this many again.
const CHUNK: usize = 500;
/// How long a send may wait for room in the producer's queue.
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(30);

/// The dead-letter topic of `topic`: `topic` and [`DLQ_SUFFIX`].
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_diesel::dead_letter::dlq_topic("orders"), "orders.dlq");
/// ```
pub fn dlq_topic(topic: &str) -> String {
    format!("{topic}{DLQ_SUFFIX}")
}

/// A record's failure, for the headers of its dead letter (see
/// [`dead_letter_headers`]).
///
/// # Examples
///
/// ```
/// use outbox_diesel::dead_letter::{Failure, KIND_HANDLER};
///
/// let failure = Failure {
///     topic: "orders",
///     partition: 2,
///     offset: 17,
///     group: "billing",
///     kind: KIND_HANDLER,
///     error: "handler: invoice 42 has no customer",
///     attempts: 5,
/// };
/// assert_eq!(failure.attempts, 5);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure<'a> {
    /// The topic the record was read from.
    pub topic: &'a str,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// The consumer group.
    pub group: &'a str,
    /// What kind of failure: [`KIND_DECODE`], [`KIND_HANDLER`],
    /// [`KIND_NO_CONTROLLER`] or [`KIND_UNHANDLED_EVENT`].
    pub kind: &'static str,
    /// The error and its causes, as text.
    pub error: &'a str,
    /// How many times the record was tried.
    pub attempts: u32,
}

/// The headers of a dead letter: the record's own headers first, unchanged and
/// in order, then the `outbox.dlq.*` headers describing `failure` (with
/// [`FAILED_AT`] now).
///
/// The record's headers are read through [`Headers`]. rdkafka's own types
/// (`OwnedHeaders`, `BorrowedHeaders`) panic there on a header name that is not
/// UTF-8, which any producer can write: the consumer does not read them this
/// way, it copies a record's headers byte for byte.
///
/// # Examples
///
/// ```
/// use outbox_diesel::dead_letter::{self, Failure};
/// use rdkafka::message::{Header, Headers, OwnedHeaders};
///
/// let original = OwnedHeaders::new().insert(Header { key: "message_id", value: Some("0190…") });
/// let failure = Failure { topic: "orders", partition: 2, offset: 17, group: "billing",
///     kind: dead_letter::KIND_HANDLER, error: "boom", attempts: 5 };
/// let headers = dead_letter::dead_letter_headers(Some(&original), &failure);
/// assert_eq!(headers.get(0).key, "message_id");
/// assert_eq!(headers.get(1).key, dead_letter::ERROR);
/// assert_eq!(headers.get(1).value, Some(&b"boom"[..]));
///
/// // A record without headers (pass the type of headers you would have had).
/// let headers = dead_letter::dead_letter_headers(None::<&OwnedHeaders>, &failure);
/// assert_eq!(headers.get(0).key, dead_letter::ERROR);
/// ```
pub fn dead_letter_headers<H: Headers>(
    original: Option<&H>,
    failure: &Failure<'_>,
) -> OwnedHeaders {
    let count = original.map_or(0, Headers::count);
    let mut headers = OwnedHeaders::new_with_capacity(count + FAILURE_HEADERS);
    if let Some(original) = original {
        for index in 0..count {
            if let Some(header) = original.try_get(index) {
                headers = headers.insert(header);
            }
        }
    }
    with_failure(headers, failure)
}

/// The consumer's [`dead_letter_headers`]: the record's headers copied byte for
/// byte by librdkafka (a name that is not UTF-8 included: the dead letter
/// keeps the record as it was read), then those of `failure`.
pub(crate) fn record_dead_letter_headers(
    original: Option<&OwnedHeaders>,
    failure: &Failure<'_>,
) -> OwnedHeaders {
    let headers = original.map_or_else(
        || OwnedHeaders::new_with_capacity(FAILURE_HEADERS),
        OwnedHeaders::clone,
    );
    with_failure(headers, failure)
}

/// How many headers [`with_failure`] adds.
const FAILURE_HEADERS: usize = 8;

/// `headers` and the `outbox.dlq.*` headers describing `failure`.
fn with_failure(mut headers: OwnedHeaders, failure: &Failure<'_>) -> OwnedHeaders {
    let failed_at = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let added: [(&str, String); FAILURE_HEADERS] = [
        (ERROR, failure.error.to_owned()),
        (ERROR_KIND, failure.kind.to_owned()),
        (TOPIC, failure.topic.to_owned()),
        (PARTITION, failure.partition.to_string()),
        (OFFSET, failure.offset.to_string()),
        (GROUP, failure.group.to_owned()),
        (FAILED_AT, failed_at),
        (ATTEMPTS, failure.attempts.to_string()),
    ];
    for (key, value) in &added {
        headers = headers.insert(Header {
            key,
            value: Some(value.as_bytes()),
        });
    }
    headers
}

/// The headers of `from` that `keep` accepts, in order. A header whose name is
/// not UTF-8 cannot be named to rdkafka: it is left out, with a warning.
fn copy_headers(from: Option<&OwnedHeaders>, keep: impl Fn(&str) -> bool) -> OwnedHeaders {
    let Some(from) = from else {
        return OwnedHeaders::new();
    };
    let mut headers = OwnedHeaders::new_with_capacity(from.count());
    for header in outbox::kafka::read_headers(from) {
        match header.utf8() {
            Ok(header) if keep(header.key) => headers = headers.insert(header),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "header left out of the copy"),
        }
    }
    headers
}

/// What [`replay`] sent back.
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), outbox_diesel::Error> {
/// let report = outbox_diesel::dead_letter::replay("127.0.0.1:59092", "orders.dlq",
///     "outbox-dlq-replay", &[]).await?;
/// assert_eq!(report.replayed, report.topics.values().sum::<u64>());
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ReplayReport {
    /// The dead-letter topic read.
    pub dlq_topic: String,
    /// Records published again, in all.
    pub replayed: u64,
    /// Records published again, per topic they went to.
    pub topics: BTreeMap<String, u64>,
}

/// Sends the records of the dead-letter topic `dlq_topic` back to their topic.
///
/// Reads each partition of `dlq_topic` from the committed offsets of consumer
/// group `group` (from the start when it has none) up to the end it has when
/// the replay starts, so records dead-lettered during the replay wait for the
/// next one. Publishes each record to the topic of its [`TOPIC`] header (or,
/// without one, to `dlq_topic` minus [`DLQ_SUFFIX`]) with the same key and value
/// and its headers minus the `outbox.dlq.*` ones, on an idempotent producer
/// with the relay's partitioner (so a key goes to the partition it came from),
/// waits for the brokers' acknowledgements, and commits `group`'s offsets past
/// what was acknowledged, every few hundred records and at the end. A second
/// replay with the same group sends nothing new.
///
/// `settings` are librdkafka settings (`security.protocol`, `sasl.*`,
/// `compression.type`, …) applied to both the consumer and the producer after
/// the replay's own (a setting of one kind is ignored by the other).
///
/// Run it when no other consumer of `group` is running: the replay assigns
/// itself the partitions and commits without joining the group.
///
/// Starts by checking the brokers (as
/// [`KafkaPublisher::check_brokers`]): a refused login or TLS handshake, or
/// brokers that do not answer within [`CHECK_TIMEOUT`], end the replay before
/// it reads anything.
///
/// # Errors
///
/// - [`Error::KafkaConnect`] naming the brokers and the cause when they
///   cannot be used (refused login, untrusted certificate, wrong listener,
///   connection refused, unknown host);
/// - [`Error::KafkaClient`] when librdkafka refuses the consumer's settings,
///   or a file setting (`ssl.ca.location`, …) names a file that cannot be read;
/// - [`Error::Kafka`] when a read, send or commit fails;
/// - [`Error::Publish`] when librdkafka refuses the producer's settings;
/// - [`Error::DeadLetter`] when `dlq_topic` is not a topic name or does not
///   exist, or a record's [`TOPIC`] header is not a topic name, or a record has
///   none and `dlq_topic` does not end in [`DLQ_SUFFIX`].
///
/// What was acknowledged before an error is committed; a replay after the
/// error goes on from there (and may send again the records of the last
/// unfinished chunk, which the consumer's inbox skips).
///
/// # Examples
///
/// ```no_run
/// use outbox_diesel::dead_letter;
///
/// # async fn f() -> Result<(), outbox_diesel::Error> {
/// let settings = [("security.protocol".to_owned(), "ssl".to_owned())];
/// let report = dead_letter::replay("kafka:9093", "orders.dlq", "outbox-dlq-replay", &settings).await?;
/// println!("replayed {} records", report.replayed);
/// # Ok(()) }
/// ```
pub async fn replay(
    brokers: &str,
    dlq_topic: &str,
    group: &str,
    settings: &[(String, String)],
) -> Result<ReplayReport> {
    if !is_topic_name(dlq_topic) {
        return Err(Error::DeadLetter(format!(
            "{dlq_topic:?} is not a Kafka topic name"
        )));
    }
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true");
    // A command: a broker that does not answer fails the replay (the records
    // not acknowledged stay in the dead-letter topic) rather than hang it.
    let mut publisher = KafkaPublisher::builder(brokers)
        .client_name("dlq replay producer")
        .set("message.timeout.ms", "30000");
    for (key, value) in settings {
        config.set(key, value);
        publisher = publisher.set(key, value);
    }
    let (consumer, _): (StreamConsumer<Diagnostics>, _) =
        outbox::kafka::create_client(&mut config, "dlq replay consumer")?;
    let publisher = Arc::new(publisher.build()?);
    // The brokers first: a refused login or certificate ends the replay here,
    // with its cause, rather than as a timeout of the first request.
    blocking({
        let publisher = Arc::clone(&publisher);
        move || {
            publisher
                .check_brokers(CHECK_TIMEOUT)
                .map(drop)
                .map_err(Error::from)
        }
    })
    .await?;
    let consumer = Arc::new(consumer);

    let ranges = blocking({
        let (consumer, brokers, topic) =
            (consumer.clone(), brokers.to_owned(), dlq_topic.to_owned());
        move || ranges(&consumer, &brokers, &topic)
    })
    .await?;
    let mut replay = Replay {
        consumer,
        producer: publisher.producer(),
        dlq_topic,
        group,
        ranges,
        in_flight: Vec::new(),
        to_commit: BTreeMap::new(),
        report: ReplayReport {
            dlq_topic: dlq_topic.to_owned(),
            ..ReplayReport::default()
        },
    };
    if replay.ranges.is_empty() {
        return Ok(replay.report);
    }
    let mut assignment = TopicPartitionList::new();
    for (&partition, range) in &replay.ranges {
        assignment
            .add_partition_offset(dlq_topic, partition, Offset::Offset(range.next))
            .map_err(|source| kafka(format!("assigning {dlq_topic}[{partition}]"), source))?;
    }
    replay
        .consumer
        .assign(&assignment)
        .map_err(|source| kafka(format!("assigning the partitions of {dlq_topic}"), source))?;
    match replay.run().await {
        // Commit what was acknowledged before the error, then report the error.
        Err(error) => {
            let _ = replay.settle().await;
            Err(error)
        }
        Ok(()) => {
            replay.settle().await?;
            Ok(replay.report)
        }
    }
}

/// The offsets of one partition still to replay: from `next` up to `end`
/// (excluded).
#[derive(Debug, Clone, Copy)]
struct Range {
    next: i64,
    end: i64,
}

/// A replay in progress.
struct Replay<'a> {
    consumer: Arc<StreamConsumer<Diagnostics>>,
    producer: &'a FutureProducer<Diagnostics>,
    dlq_topic: &'a str,
    group: &'a str,
    /// The partitions not read to their end yet.
    ranges: HashMap<i32, Range>,
    /// Records sent and not acknowledged yet.
    in_flight: Vec<InFlight>,
    /// The offsets to commit (next to read, per partition) once `in_flight`
    /// is acknowledged.
    to_commit: BTreeMap<i32, i64>,
    report: ReplayReport,
}

struct InFlight {
    ack: DeliveryFuture,
    topic: String,
    partition: i32,
    offset: i64,
}

impl Replay<'_> {
    /// Reads and sends until every partition is read to its end.
    async fn run(&mut self) -> Result<()> {
        while !self.ranges.is_empty() {
            let record = match tokio::time::timeout(IDLE_TIMEOUT, self.consumer.recv()).await {
                Err(_) => {
                    return Err(Error::DeadLetter(format!(
                        "no record from {} in {} s although partitions {:?} are not read \
                         to the end they had at the start",
                        self.dlq_topic,
                        IDLE_TIMEOUT.as_secs(),
                        self.ranges
                            .keys()
                            .collect::<std::collections::BTreeSet<_>>()
                    )));
                }
                Ok(Err(KafkaError::PartitionEOF(partition))) => {
                    self.ranges.remove(&partition);
                    continue;
                }
                Ok(Err(source)) => {
                    return Err(kafka(format!("reading {}", self.dlq_topic), source));
                }
                // Owned: nothing borrowed from the consumer is held across an await.
                Ok(Ok(record)) => record.detach(),
            };
            let partition = record.partition();
            let Some(range) = self.ranges.get_mut(&partition) else {
                continue;
            };
            if record.offset() >= range.end {
                // Dead-lettered after the replay started: for the next replay.
                self.ranges.remove(&partition);
                continue;
            }
            range.next = record.offset() + 1;
            let done = range.next >= range.end;
            self.send(&record).await?;
            if done {
                self.ranges.remove(&partition);
            }
            if self.in_flight.len() >= CHUNK {
                self.settle().await?;
            }
        }
        Ok(())
    }

    /// Publishes `record` to its topic, without the `outbox.dlq.*` headers.
    async fn send(&mut self, record: &OwnedMessage) -> Result<()> {
        let (partition, offset) = (record.partition(), record.offset());
        let topic = self.destination(record)?;
        let headers = copy_headers(record.headers(), |key| !key.starts_with(HEADER_PREFIX));
        let mut outgoing: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&topic).headers(headers);
        if let Some(key) = record.key() {
            outgoing = outgoing.key(key);
        }
        if let Some(value) = record.payload() {
            outgoing = outgoing.payload(value);
        }
        let mut waited = Duration::ZERO;
        let ack = loop {
            match self.producer.send_result(outgoing) {
                Ok(ack) => break ack,
                // The producer's queue is full: wait for deliveries to free room.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if waited < QUEUE_FULL_WAIT =>
                {
                    outgoing = back;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    waited += Duration::from_millis(5);
                }
                Err((source, _)) => {
                    return Err(kafka(self.sending(partition, offset, &topic), source));
                }
            }
        };
        self.in_flight.push(InFlight {
            ack,
            topic,
            partition,
            offset,
        });
        Ok(())
    }

    /// The topic `record` goes back to: its [`TOPIC`] header, or the
    /// dead-letter topic's name minus [`DLQ_SUFFIX`].
    fn destination(&self, record: &OwnedMessage) -> Result<String> {
        let at = || {
            format!(
                "the record at {}[{}] offset {}",
                self.dlq_topic,
                record.partition(),
                record.offset()
            )
        };
        let header = record.headers().and_then(|headers| {
            outbox::kafka::read_headers(headers)
                .find(|header| header.name == TOPIC.as_bytes())
                .map(|header| header.value.unwrap_or_default())
        });
        match header {
            Some(value) => match std::str::from_utf8(value) {
                Ok(topic) if is_topic_name(topic) => Ok(topic.to_owned()),
                _ => Err(Error::DeadLetter(format!(
                    "{} has an invalid `{TOPIC}` header: {:?}",
                    at(),
                    String::from_utf8_lossy(value)
                ))),
            },
            None => original_topic(self.dlq_topic)
                .map(str::to_owned)
                .ok_or_else(|| {
                    Error::DeadLetter(format!(
                        "{} has no `{TOPIC}` header and {} does not end in `{DLQ_SUFFIX}`: \
                         no topic to send it back to",
                        at(),
                        self.dlq_topic
                    ))
                }),
        }
    }

    /// Waits for the acknowledgement of every record in flight, then commits
    /// the offsets past them.
    async fn settle(&mut self) -> Result<()> {
        for sent in std::mem::take(&mut self.in_flight) {
            match sent.ack.await {
                Ok(Ok(_)) => {}
                Ok(Err((source, _))) => {
                    return Err(kafka(
                        self.sending(sent.partition, sent.offset, &sent.topic),
                        source,
                    ));
                }
                Err(_canceled) => {
                    return Err(kafka(
                        self.sending(sent.partition, sent.offset, &sent.topic),
                        KafkaError::Canceled,
                    ));
                }
            }
            *self.report.topics.entry(sent.topic).or_default() += 1;
            self.report.replayed += 1;
            // Acknowledged in send order: every earlier record of the partition is.
            self.to_commit.insert(sent.partition, sent.offset + 1);
        }
        if self.to_commit.is_empty() {
            return Ok(());
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, next) in std::mem::take(&mut self.to_commit) {
            offsets
                .add_partition_offset(self.dlq_topic, partition, Offset::Offset(next))
                .map_err(|source| kafka(format!("committing {}", self.dlq_topic), source))?;
        }
        let consumer = self.consumer.clone();
        let context = format!(
            "committing the offsets of group {} on {}",
            self.group, self.dlq_topic
        );
        blocking(move || {
            consumer
                .commit(&offsets, CommitMode::Sync)
                .map_err(|source| kafka(context, source))
        })
        .await
    }

    fn sending(&self, partition: i32, offset: i64, topic: &str) -> String {
        format!(
            "sending the record at {}[{partition}] offset {offset} back to {topic}",
            self.dlq_topic
        )
    }
}

/// Whether `name` can be a Kafka topic's name: 1 to 249 ASCII letters, digits,
/// `.`, `_` and `-`, not `.` or `..`.
fn is_topic_name(name: &str) -> bool {
    (1..=249).contains(&name.len())
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// `dlq_topic` minus [`DLQ_SUFFIX`], when it ends with it (and is more than it).
fn original_topic(dlq_topic: &str) -> Option<&str> {
    dlq_topic
        .strip_suffix(DLQ_SUFFIX)
        .filter(|topic| !topic.is_empty())
}

/// The partitions of `topic` with records past `consumer`'s group's committed
/// offsets, and where each starts and ends.
fn ranges(
    consumer: &StreamConsumer<Diagnostics>,
    brokers: &str,
    topic: &str,
) -> Result<HashMap<i32, Range>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .map_err(|source| kafka(format!("Kafka at {brokers} is not reachable"), source))?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    let partitions: Vec<i32> = match found.map(|t| (t.error().map(RDKafkaErrorCode::from), t)) {
        Some((None, found)) if !found.partitions().is_empty() => {
            found.partitions().iter().map(|p| p.id()).collect()
        }
        Some((Some(code), _)) if code != RDKafkaErrorCode::UnknownTopicOrPartition => {
            return Err(kafka(
                format!("reading the metadata of {topic}"),
                KafkaError::MetadataFetch(code),
            ));
        }
        _ => return Err(Error::DeadLetter(format!("no topic {topic} at {brokers}"))),
    };
    let mut asked = TopicPartitionList::new();
    for &partition in &partitions {
        asked.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(asked, REQUEST_TIMEOUT)
        .map_err(|source| kafka(format!("reading the committed offsets of {topic}"), source))?;
    let mut ranges = HashMap::new();
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map_err(|source| {
                kafka(
                    format!("reading the offsets of {topic}[{partition}]"),
                    source,
                )
            })?;
        let start = match committed
            .find_partition(topic, partition)
            .map(|p| p.offset())
        {
            Some(Offset::Offset(offset)) => offset.max(low),
            _ => low,
        };
        if start < high {
            ranges.insert(
                partition,
                Range {
                    next: start,
                    end: high,
                },
            );
        }
    }
    Ok(ranges)
}

/// Runs a blocking librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(call)
        .await
        .unwrap_or_else(|e| Err(Error::DeadLetter(format!("a Kafka request failed: {e}"))))
}

fn kafka(context: String, source: KafkaError) -> Error {
    Error::Kafka { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dlq_topic_names_its_topic() {
        assert_eq!(dlq_topic("orders"), "orders.dlq");
        assert_eq!(original_topic("orders.dlq"), Some("orders"));
        assert_eq!(original_topic("a.b.dlq"), Some("a.b"));
        assert_eq!(original_topic(".dlq"), None);
        assert_eq!(original_topic("orders"), None);
    }

    #[test]
    fn topic_names_are_what_kafka_accepts() {
        assert!(is_topic_name("orders.dlq"));
        assert!(is_topic_name("a_b-C.9"));
        assert!(!is_topic_name(""));
        assert!(!is_topic_name(".."));
        assert!(!is_topic_name("a b"));
        assert!(!is_topic_name("a\0b"));
        assert!(!is_topic_name(&"a".repeat(250)));
    }

    /// The replay can run on a multi-threaded runtime's tasks.
    #[test]
    fn replay_is_send() {
        fn send<T: Send>(_: &T) {}
        send(&replay("b:9092", "t.dlq", DEFAULT_REPLAY_GROUP, &[]));
    }

    #[test]
    fn header_names_share_the_prefix() {
        for name in [
            ERROR, ERROR_KIND, TOPIC, PARTITION, OFFSET, GROUP, FAILED_AT, ATTEMPTS,
        ] {
            assert!(name.starts_with(HEADER_PREFIX), "{name}");
        }
    }
}
