//! Reading a topic back: every record of every partition, as the broker holds it.

use std::time::Duration;

use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::TestKafka;

/// How long to wait for the broker's metadata and watermarks.
const METADATA_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the raw records of a topic, every partition, from where it was told
/// to start. Its partitions are assigned, not subscribed: there is no group
/// join to wait for, and it commits nothing.
///
/// While the broker is away (a test stopped it) it waits for it to come back;
/// any other Kafka error fails the test. Every read has a deadline, and fails
/// the test saying what it waited for.
///
/// # Examples
///
/// ```no_run
/// # async fn example() {
/// use std::time::Duration;
/// use outbox_tests::{TestKafka, TopicReader, header};
///
/// let kafka = TestKafka::new("reads_back");
/// let topic = kafka.create_topic("events", 4);
/// let mut reader = TopicReader::from_start(&kafka, &topic);
/// // ... send three records ...
/// reader
///     .read_until("three records", Duration::from_secs(60), |records| records.len() >= 3)
///     .await;
/// reader.read_rest(Duration::from_millis(500)).await; // and nothing more
/// assert_eq!(reader.records.len(), 3);
/// let from = header(&reader.records[0], "from");
/// # }
/// ```
pub struct TopicReader {
    consumer: StreamConsumer,
    topic: String,
    /// Everything read so far, in the order read (offset order per partition).
    pub records: Vec<OwnedMessage>,
}

impl TopicReader {
    /// From the first offset of each partition: everything the topic holds.
    ///
    /// # Panics
    ///
    /// When the topic has no partitions or the broker does not answer.
    pub fn from_start(kafka: &TestKafka, topic: &str) -> Self {
        Self::new(kafka, topic, |_| Offset::Beginning)
    }

    /// From the current end of each partition: only what is sent from now on.
    ///
    /// # Panics
    ///
    /// When the topic has no partitions or the broker does not answer.
    pub fn from_now(kafka: &TestKafka, topic: &str) -> Self {
        let ends = kafka.high_watermarks(topic);
        Self::new(kafka, topic, |partition| {
            Offset::Offset(ends[partition as usize])
        })
    }

    fn new(kafka: &TestKafka, topic: &str, start: impl Fn(i32) -> Offset) -> Self {
        let consumer: StreamConsumer = kafka
            .consumer_config(&kafka.unique_name("reader"))
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("create a Kafka consumer");
        let partitions = partition_count(&consumer, topic);
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions {
            assignment
                .add_partition_offset(topic, partition, start(partition))
                .expect("a valid offset");
        }
        consumer
            .assign(&assignment)
            .unwrap_or_else(|e| panic!("assign {topic}: {e}"));
        TopicReader {
            consumer,
            topic: topic.to_owned(),
            records: Vec::new(),
        }
    }

    /// The topic read.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Reads until `done(records)` holds (it is asked first, before any read).
    ///
    /// # Panics
    ///
    /// After `timeout`, naming `what` and how many records it read.
    pub async fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[OwnedMessage]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.records) {
            match tokio::time::timeout_at(deadline, self.next()).await {
                Ok(record) => self.records.push(record),
                Err(_) => panic!(
                    "timed out after {timeout:?} on topic {} waiting for {what}; read {} records",
                    self.topic,
                    self.records.len()
                ),
            }
        }
    }

    /// Reads whatever else arrives within `quiet` (the wait restarts after each record).
    pub async fn read_rest(&mut self, quiet: Duration) {
        while let Ok(record) = tokio::time::timeout(quiet, self.next()).await {
            self.records.push(record);
        }
    }

    async fn next(&self) -> OwnedMessage {
        let mut away = false;
        loop {
            match self.consumer.recv().await {
                Ok(record) => return record.detach(),
                // The broker is away (the outage test stops it): the consumer
                // reconnects on its own; anything else fails the test.
                Err(KafkaError::MessageConsumption(
                    code @ (RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure),
                )) => {
                    if !away {
                        eprintln!("reader of {}: {code}; waiting for the broker", self.topic);
                    }
                    away = true;
                }
                Err(e) => panic!("Kafka error while reading {}: {e}", self.topic),
            }
        }
    }
}

/// How many partitions `topic` has, as the broker says.
///
/// # Panics
///
/// When it has none or the broker does not answer.
pub(crate) fn partition_count(client: &impl Consumer, topic: &str) -> i32 {
    let metadata = client
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .unwrap_or_else(|e| panic!("no metadata for topic {topic}: {e}"));
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    assert!(partitions > 0, "topic {topic} has no partitions");
    partitions as i32
}

/// The value of the header `name` of `record`, as text (`None`: absent or
/// null). The first one, if the record has it more than once.
///
/// # Examples
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
///
/// let headers = OwnedHeaders::new().insert(Header { key: "from", value: Some("accounts") });
/// let record = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(headers));
/// assert_eq!(outbox_tests::header(&record, "from").as_deref(), Some("accounts"));
/// assert_eq!(outbox_tests::header(&record, "to"), None);
/// ```
pub fn header(record: &OwnedMessage, name: &str) -> Option<String> {
    record
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Every header of `record`, in order, as text (a null value as "").
///
/// # Examples
///
/// ```
/// use rdkafka::message::{Header, OwnedHeaders, OwnedMessage, Timestamp};
///
/// let headers = OwnedHeaders::new()
///     .insert(Header { key: "from", value: Some("accounts") })
///     .insert(Header::<&str> { key: "trace", value: None });
/// let record = OwnedMessage::new(None, None, "t".into(), Timestamp::NotAvailable, 0, 0, Some(headers));
/// assert_eq!(
///     outbox_tests::headers_of(&record),
///     [("from".to_owned(), "accounts".to_owned()), ("trace".to_owned(), String::new())]
/// );
/// ```
pub fn headers_of(record: &OwnedMessage) -> Vec<(String, String)> {
    record
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| {
                    let value = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                    (h.key.to_owned(), value.into_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}
