//! Helpers shared by the relay tests: a schema with the outbox tables and a
//! topic of the test's own, a reader that decodes every record of a topic
//! (on the shared [`TopicReader`]), hand-built messages carrying a per-key
//! sequence number, and the order and duplicate checks.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use outbox::kafka::{KafkaPublisher, decode_record};
use outbox::{Event, Message, MessageId, Payloads};
use outbox_diesel::schema::outbox_messages;
use outbox_diesel::{Outbox, Relay, RelayBuilder};
pub(crate) use outbox_tests::RunningRelay;
use outbox_tests::{TestDb, TestKafka, TopicReader, headers_of, relay_test_settings};
use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;
use serde_json::json;

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

    /// A relay on this schema with the test settings (see [`relay_test_settings`]).
    pub(crate) fn relay(&self) -> RelayBuilder<KafkaPublisher> {
        self.relay_with(publisher(self.kafka.brokers()))
    }

    pub(crate) fn relay_with(&self, publisher: KafkaPublisher) -> RelayBuilder<KafkaPublisher> {
        relay_test_settings(Relay::builder(self.db.url(), publisher))
    }

    /// The schema's URL with `application_name` set, so a test can find (and
    /// terminate) the sessions opened with it.
    pub(crate) fn url_named(&self, application_name: &str) -> String {
        format!("{}&application_name={application_name}", self.db.url())
    }

    /// A relay whose session is named `application_name`.
    pub(crate) fn relay_named(&self, application_name: &str) -> RelayBuilder<KafkaPublisher> {
        relay_test_settings(Relay::builder(
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
    .expect("a valid topic")
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

/// A record read back and decoded.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    pub(crate) message: Message,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Every header as sent, in order.
    pub(crate) headers: Vec<(String, String)>,
}

/// Reads every partition of a topic from its first offset (a
/// [`TopicReader`]), decoding each record.
pub(crate) struct Reader {
    records: TopicReader,
    /// Everything read so far, in the order read (offset order per partition).
    pub(crate) received: Vec<Received>,
}

impl Reader {
    pub(crate) fn new(kafka: &TestKafka, topic: &str) -> Self {
        Reader {
            records: TopicReader::from_start(kafka, topic),
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
        let Reader { records, received } = self;
        let topic = records.topic().to_owned();
        records
            .read_until(what, timeout, |records| {
                decode_new(&topic, records, received);
                done(received)
            })
            .await;
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
        self.records.read_rest(quiet).await;
        decode_new(
            self.records.topic(),
            &self.records.records,
            &mut self.received,
        );
    }

    /// The received messages of `ids`, in the order read.
    pub(crate) fn of(&self, ids: &[MessageId]) -> Vec<&Received> {
        let ids: HashSet<MessageId> = ids.iter().copied().collect();
        self.received
            .iter()
            .filter(|r| ids.contains(&r.message.id))
            .collect()
    }
}

/// Decodes the `records` of `topic` not yet in `received` onto it; fails the
/// test on one that does not decode.
fn decode_new(topic: &str, records: &[OwnedMessage], received: &mut Vec<Received>) {
    for record in &records[received.len()..] {
        let message = decode_record(record).unwrap_or_else(|e| {
            panic!(
                "record {}/{} of {topic} does not decode: {e}",
                record.partition(),
                record.offset(),
            )
        });
        received.push(Received {
            message,
            partition: record.partition(),
            offset: record.offset(),
            headers: headers_of(record),
        });
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
