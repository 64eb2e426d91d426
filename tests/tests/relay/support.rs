//! Helpers shared by the relay tests: a schema with the outbox tables and a
//! topic of the test's own, relays run as tasks, a reader that decodes every
//! record of a topic, hand-built messages carrying a per-key sequence number,
//! and the order and duplicate checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use outbox::kafka::{KafkaPublisher, decode_record};
use outbox::{Event, Message, MessageId, Payloads};
use outbox_diesel::schema::outbox_messages;
use outbox_diesel::{Outbox, Relay, RelayBuilder, RelayReport};
use outbox_tests::{TestDb, TestKafka};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Headers;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Message as _, Offset, TopicPartitionList};
use serde_json::json;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The producer name of the hand-built messages.
pub(crate) const PRODUCER: &str = "relay-tests";

/// Long enough for a first fetch on a fresh broker, a relay's backoff and a
/// large backlog on two shared cores.
pub(crate) const RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// A schema with the outbox tables, and a topic, both the test's own.
pub(crate) struct Env {
    pub(crate) db: TestDb,
    pub(crate) kafka: TestKafka,
    pub(crate) topic: String,
}

impl Env {
    /// A fresh schema (migrated) and a fresh topic with 4 partitions.
    pub(crate) fn new(test_name: &str) -> Self {
        let db = TestDb::new(test_name);
        let mut conn = db.connect();
        outbox_diesel::migrations::run(&mut conn).expect("the outbox migrations run");
        let kafka = TestKafka::new(test_name);
        let topic = kafka.create_topic("events", 4);
        Env { db, kafka, topic }
    }

    pub(crate) fn conn(&self) -> PgConnection {
        self.db.connect()
    }

    /// A relay on this schema with the test settings (see [`test_settings`]).
    pub(crate) fn relay(&self) -> RelayBuilder<KafkaPublisher> {
        self.relay_with(publisher(self.kafka.brokers()))
    }

    pub(crate) fn relay_with(&self, publisher: KafkaPublisher) -> RelayBuilder<KafkaPublisher> {
        test_settings(Relay::builder(self.db.url(), publisher))
    }

    /// The schema's URL with `application_name` set, so a test can find (and
    /// terminate) the sessions opened with it.
    pub(crate) fn url_named(&self, application_name: &str) -> String {
        format!("{}&application_name={application_name}", self.db.url())
    }

    /// A relay whose session is named `application_name`.
    pub(crate) fn relay_named(&self, application_name: &str) -> RelayBuilder<KafkaPublisher> {
        test_settings(Relay::builder(
            self.url_named(application_name),
            publisher(self.kafka.brokers()),
        ))
    }

    /// A reader of the test's topic from its first offset.
    pub(crate) fn reader(&self) -> Reader {
        Reader::new(&self.kafka, &self.topic)
    }

    /// A message of the test's topic: key `key`, sequence number `seq`.
    pub(crate) fn message(&self, key: &str, seq: u64) -> Message {
        message(&self.topic, key, seq)
    }
}

/// Short waits so the tests run fast: 50 ms poll, backoff from 50 ms to 2 s,
/// shares of shards checked every 200 ms.
pub(crate) fn test_settings<P: outbox::Publisher>(builder: RelayBuilder<P>) -> RelayBuilder<P> {
    builder
        .poll_interval(Duration::from_millis(50))
        .backoff(Duration::from_millis(50), Duration::from_secs(2))
        .rebalance_interval(Duration::from_millis(200))
}

pub(crate) fn publisher(brokers: &str) -> KafkaPublisher {
    KafkaPublisher::new(brokers).expect("the Kafka publisher accepts its settings")
}

/// A hand-built message with payload `{"key", "seq"}` (version 1).
pub(crate) fn message(topic: &str, key: &str, seq: u64) -> Message {
    Message::new(
        Event::Updated,
        PRODUCER,
        "steps",
        topic,
        key,
        Payloads::new(1, json!({"key": key, "seq": seq})).expect("version 1 is valid"),
    )
}

/// The sequence number a message of [`message`] carries.
pub(crate) fn seq_of(message: &Message) -> u64 {
    message
        .payloads
        .get(1)
        .and_then(|p| p["seq"].as_u64())
        .unwrap_or_else(|| panic!("message {} has no payload v1 with a seq", message.id))
}

/// Enqueues `messages` in one transaction; returns their ids.
pub(crate) fn enqueue(conn: &mut PgConnection, messages: &[Message]) -> Vec<MessageId> {
    let outbox = Outbox::new(PRODUCER);
    conn.transaction(|conn| {
        messages
            .iter()
            .map(|m| outbox.enqueue_message(conn, m))
            .collect::<outbox_diesel::Result<Vec<_>>>()
    })
    .expect("enqueue commits")
}

/// Rows in `outbox_messages`, parked or not.
pub(crate) fn count_rows(conn: &mut PgConnection) -> i64 {
    outbox_messages::table
        .count()
        .get_result(conn)
        .expect("count outbox_messages")
}

/// One row of `outbox_messages`, as the tests look at it.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct StoredRow {
    pub(crate) id: i64,
    pub(crate) message_id: uuid::Uuid,
    pub(crate) partition_key: String,
    pub(crate) attempts: i32,
    pub(crate) last_error: Option<String>,
    pub(crate) parked_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Every row, in id order.
pub(crate) fn stored_rows(conn: &mut PgConnection) -> Vec<StoredRow> {
    outbox_messages::table
        .order(outbox_messages::id)
        .select((
            outbox_messages::id,
            outbox_messages::message_id,
            outbox_messages::partition_key,
            outbox_messages::attempts,
            outbox_messages::last_error,
            outbox_messages::parked_at,
        ))
        .load(conn)
        .expect("read outbox_messages")
}

/// The bigserial id of the row of `message` (as the connection sees it).
pub(crate) fn row_id(conn: &mut PgConnection, message: MessageId) -> i64 {
    outbox_messages::table
        .filter(outbox_messages::message_id.eq(message.as_uuid()))
        .select(outbox_messages::id)
        .get_result(conn)
        .unwrap_or_else(|e| panic!("no row for message {message}: {e}"))
}

/// Waits until `done` holds, checking every 20 ms; fails after `timeout`
/// saying what it waited for.
pub(crate) async fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the outbox table of `conn` is empty.
pub(crate) async fn wait_until_empty(conn: &mut PgConnection, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = count_rows(conn);
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} rows still in outbox_messages after {timeout:?}; the first: {:?}",
            stored_rows(conn).into_iter().take(5).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A relay running as a task; stop it with [`RunningRelay::stop`] (finishes
/// the batch in flight) or [`RunningRelay::abort`]. Dropped, it is aborted.
pub(crate) struct RunningRelay {
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<outbox_diesel::Result<RelayReport>>>,
}

impl RunningRelay {
    pub(crate) fn spawn(relay: Relay<KafkaPublisher>) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(relay.run(async {
            stopped.await.ok();
        }));
        RunningRelay {
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the relay to stop and returns its report; fails the test if it
    /// panicked, returned an error or took longer than a minute.
    pub(crate) async fn stop(mut self) -> RelayReport {
        self.stop.take().expect("not stopped yet").send(()).ok();
        let task = self.task.take().expect("not stopped yet");
        match tokio::time::timeout(Duration::from_secs(60), task).await {
            Err(_) => panic!("the relay did not stop within 60 s of being asked to"),
            Ok(Err(join)) => panic!("the relay task failed: {join}"),
            Ok(Ok(Err(error))) => panic!("the relay returned an error: {error:?}"),
            Ok(Ok(Ok(report))) => report,
        }
    }

    /// Aborts the relay's task where it stands (as a crash of the task would)
    /// and waits until it is gone.
    pub(crate) async fn abort(mut self) {
        let task = self.task.take().expect("not stopped yet");
        task.abort();
        match task.await {
            Err(join) if join.is_cancelled() => {}
            Err(join) => panic!("the relay task failed: {join}"),
            Ok(result) => panic!("the relay stopped on its own before the abort: {result:?}"),
        }
    }

    /// Whether the task has ended (it never should before being stopped).
    pub(crate) fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for RunningRelay {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A record read back and decoded.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) message: Message,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Every header as sent, in order.
    pub(crate) headers: Vec<(String, String)>,
}

/// Reads every partition of a topic from its first offset, with a fresh group
/// (assigned, not subscribed: no group join to wait for), decoding each record.
pub(crate) struct Reader {
    consumer: StreamConsumer,
    topic: String,
    /// Everything read so far, in the order read (offset order per partition).
    pub(crate) received: Vec<Received>,
}

impl Reader {
    pub(crate) fn new(kafka: &TestKafka, topic: &str) -> Self {
        let consumer: StreamConsumer = kafka
            .consumer_config(&kafka.group("reader"))
            .set("fetch.wait.max.ms", "100")
            .create()
            .expect("create a Kafka consumer");
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("no metadata for topic {topic}: {e}"));
        let partitions = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic)
            .map_or(0, |t| t.partitions().len());
        assert!(partitions > 0, "topic {topic} has no partitions");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..partitions as i32 {
            assignment
                .add_partition_offset(topic, partition, Offset::Beginning)
                .expect("a valid offset");
        }
        consumer
            .assign(&assignment)
            .unwrap_or_else(|e| panic!("assign {topic}: {e}"));
        Reader {
            consumer,
            topic: topic.to_owned(),
            received: Vec::new(),
        }
    }

    /// Reads until `done(received)` holds; fails after `timeout` with `what`.
    pub(crate) async fn read_until(
        &mut self,
        what: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Received]) -> bool,
    ) {
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&self.received) {
            let next = tokio::time::timeout_at(deadline, self.next()).await;
            match next {
                Ok(record) => self.received.push(record),
                Err(_) => panic!(
                    "timed out after {timeout:?} on topic {} waiting for {what}; read {} records",
                    self.topic,
                    self.received.len()
                ),
            }
        }
    }

    /// Reads until every message of `ids` has arrived at least once.
    pub(crate) async fn read_ids(&mut self, ids: &[MessageId], timeout: Duration) {
        let wanted: HashSet<MessageId> = ids.iter().copied().collect();
        let mut seen: HashSet<MessageId> = HashSet::new();
        let mut checked = 0;
        let what = format!("{} messages", wanted.len());
        self.read_until(&what, timeout, |received| {
            for r in &received[checked..] {
                if wanted.contains(&r.message.id) {
                    seen.insert(r.message.id);
                }
            }
            checked = received.len();
            seen.len() == wanted.len()
        })
        .await;
    }

    /// Reads whatever else arrives within `quiet` (the wait restarts after each record).
    pub(crate) async fn read_rest(&mut self, quiet: Duration) {
        while let Ok(record) = tokio::time::timeout(quiet, self.next()).await {
            self.received.push(record);
        }
    }

    /// The received messages of `ids`, in the order read.
    pub(crate) fn of(&self, ids: &[MessageId]) -> Vec<&Received> {
        let ids: HashSet<MessageId> = ids.iter().copied().collect();
        self.received
            .iter()
            .filter(|r| ids.contains(&r.message.id))
            .collect()
    }

    async fn next(&self) -> Received {
        let mut away = false;
        let record = loop {
            match self.consumer.recv().await {
                Ok(record) => break record,
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
        };
        let message = decode_record(&record).unwrap_or_else(|e| {
            panic!(
                "record {}/{} of {} does not decode: {e}",
                record.partition(),
                record.offset(),
                self.topic
            )
        });
        let headers = record
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
            .unwrap_or_default();
        Received {
            message,
            partition: record.partition(),
            offset: record.offset(),
            headers,
        }
    }
}

/// How many times each message id was received.
pub(crate) fn id_counts(received: &[Received]) -> HashMap<MessageId, usize> {
    let mut counts = HashMap::new();
    for r in received {
        *counts.entry(r.message.id).or_insert(0) += 1;
    }
    counts
}

/// Checks per-key order on the records as a deduplicating consumer sees them
/// (each id's first arrival): per key, the sequence numbers strictly increase.
/// Also checks that a key stays on one partition. Returns the deduplicated
/// sequence numbers per key.
pub(crate) fn assert_key_order(received: &[&Received]) -> BTreeMap<String, Vec<u64>> {
    let mut seen = HashSet::new();
    let mut per_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut partition_of: HashMap<&str, i32> = HashMap::new();
    for r in received {
        let key = r.message.partition_key.as_str();
        let partition = *partition_of.entry(key).or_insert(r.partition);
        assert_eq!(
            partition, r.partition,
            "key {key} went to partitions {partition} and {}",
            r.partition
        );
        if !seen.insert(r.message.id) {
            continue;
        }
        let seq = seq_of(&r.message);
        let seqs = per_key.entry(key.to_owned()).or_default();
        if let Some(&last) = seqs.last() {
            assert!(
                seq > last,
                "key {key}: #{seq} arrived after #{last} (partition {}, offset {}); order so far {:?}",
                r.partition,
                r.offset,
                &seqs[seqs.len().saturating_sub(10)..]
            );
        }
        seqs.push(seq);
    }
    per_key
}

/// Runs `f` on a blocking thread (sync Diesel work that must not stall the
/// runtime the relays run on).
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// A small deterministic generator (xorshift64*), so the tests need no
/// randomness crate; the seed is printed by the tests that use it.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    pub(crate) fn seed_from_clock() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

#[derive(QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(crate) count: i64,
}

/// Terminates the sessions whose `application_name` is `name`; returns how many.
pub(crate) fn terminate_sessions(conn: &mut PgConnection, name: &str) -> i64 {
    diesel::sql_query(
        "SELECT count(pg_terminate_backend(pid)) AS count FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind::<Text, _>(name)
    .get_result::<Count>(conn)
    .expect("pg_terminate_backend")
    .count
}

/// The backend pids of the sessions named `name`.
pub(crate) fn session_pids(conn: &mut PgConnection, name: &str) -> Vec<i32> {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
        .bind::<Text, _>(name)
        .load::<Pid>(conn)
        .expect("read pg_stat_activity")
        .into_iter()
        .map(|p| p.pid)
        .collect()
}
