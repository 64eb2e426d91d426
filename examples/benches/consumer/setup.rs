//! Services: a schema per side (outbox's tables and the accounts table), the
//! preloaded topic, and cleaning up both.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use outbox::Outboxed;
use outbox::kafka::{PRODUCER_DEFAULTS, record_headers};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use crate::model::{self, Account};

pub(crate) const PARTITIONS: i32 = 4;
/// The topic every side reads.
pub(crate) const TOPIC: &str = Account::TOPIC;

// ------------------------------------------------------------------ database

pub(crate) fn pg(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} is not reachable: {e}; start it with `bash scripts/services.sh up`",
            outbox_diesel::mask_password(url)
        )
    })
}

/// Adds `options=-c search_path=<schema>` to a libpq URL (tokio-postgres reads it too).
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// A schema of this run, with outbox's tables and `bench_accounts`.
pub(crate) struct Schema {
    pub(crate) url: String,
}

/// Schemas made by this run; all dropped by [`Db::drop_all`].
pub(crate) struct Db {
    pub(crate) server_url: String,
    made: Mutex<Vec<String>>,
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    accounts: i64,
    #[diesel(sql_type = BigInt)]
    seq_sum: i64,
    #[diesel(sql_type = BigInt)]
    inbox: i64,
}

impl Db {
    pub(crate) fn new(server_url: &str) -> Db {
        Db {
            server_url: server_url.to_owned(),
            made: Mutex::new(Vec::new()),
        }
    }

    pub(crate) fn schema(&self, tag: &str) -> Schema {
        let mut made = self.made.lock().unwrap();
        let name = format!("outbox_bench_consumer_{}_{tag}", std::process::id());
        pg(&self.server_url)
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .expect("create schema");
        made.push(name.clone());
        let url = with_search_path(&self.server_url, &name);
        let mut conn = pg(&url);
        outbox_diesel::migrations::run(&mut conn).expect("outbox migrations");
        conn.batch_execute(model::CREATE_TABLE)
            .expect("create bench_accounts");
        Schema { url }
    }

    pub(crate) fn drop_all(&self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap());
        if let Ok(mut conn) = PgConnection::establish(&self.server_url) {
            for name in made {
                let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
            }
        }
    }
}

impl Schema {
    /// Empties the accounts table and the inbox before a run.
    pub(crate) fn truncate(&self) {
        pg(&self.url)
            .batch_execute("TRUNCATE bench_accounts, outbox_inbox")
            .expect("truncate");
    }

    /// Accounts, the sum of their `seq`, inbox rows.
    pub(crate) fn state(&self) -> (i64, i64, i64) {
        let row: Row = diesel::sql_query(
            "SELECT (SELECT count(*) FROM bench_accounts) AS accounts, \
                    (SELECT coalesce(sum(seq), 0)::bigint FROM bench_accounts) AS seq_sum, \
                    (SELECT count(*) FROM outbox_inbox) AS inbox",
        )
        .get_result(&mut pg(&self.url))
        .expect("read the outcome");
        (row.accounts, row.seq_sum, row.inbox)
    }
}

// ------------------------------------------------------------------ kafka

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("Kafka admin client")
}

fn probe(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("Kafka metadata client")
}

/// Partitions of `topic` with a leader (0: no such topic).
fn ready_partitions(brokers: &str, topic: &str) -> usize {
    probe(brokers)
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()
        .and_then(|m| {
            m.topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map(|t| t.partitions().iter().filter(|p| p.leader() >= 0).count())
        })
        .unwrap_or(0)
}

pub(crate) async fn delete_topic(brokers: &str, topic: &str) {
    if ready_partitions(brokers, topic) > 0 {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let _ = admin(brokers).delete_topics(&[topic], &options).await;
    }
}

/// Deletes `topic` if a previous run left it, creates it with [`PARTITIONS`]
/// partitions and waits until each has a leader.
pub(crate) async fn fresh_topic(brokers: &str, topic: &str) {
    delete_topic(brokers, topic).await;
    let admin = admin(brokers);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let created = match admin.create_topics([&new], &options).await {
            Ok(results) => results.into_iter().all(|r| r.is_ok()),
            Err(e) => panic!("Kafka at {brokers}: cannot create topic {topic}: {e}"),
        };
        if created {
            break;
        }
        // Still being deleted: try again.
        assert!(Instant::now() < deadline, "could not create topic {topic}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    while ready_partitions(brokers, topic) < PARTITIONS as usize {
        assert!(Instant::now() < deadline, "topic {topic} got no leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes the consumer groups of this run (they left when their consumer closed).
pub(crate) async fn delete_groups(brokers: &str, groups: &[String]) {
    if groups.is_empty() {
        return;
    }
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = admin(brokers).delete_groups(&names, &options).await;
}

#[derive(Default)]
struct Failures(AtomicU64);

impl ClientContext for Failures {}

impl ProducerContext for Failures {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if result.is_err() {
            self.0.fetch_add(1, Relaxed);
        }
    }
}

/// Produces messages `0..messages` to [`TOPIC`] (with outbox's producer
/// settings, as the relay would) and waits for every acknowledgement. Returns
/// the average record value and headers size.
pub(crate) fn preload(brokers: &str, messages: u64) -> (usize, usize) {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in PRODUCER_DEFAULTS {
        config.set(*key, *value);
    }
    config.set("linger.ms", "5");
    let producer: BaseProducer<Failures> = config
        .create_with_context(Failures::default())
        .expect("Kafka producer");
    let (mut value_bytes, mut header_bytes) = (0, 0);
    for seq in 0..messages as i64 {
        let encoded = model::record(seq);
        value_bytes += encoded.value.len();
        header_bytes += encoded
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>();
        let mut record = BaseRecord::to(TOPIC)
            .key(&encoded.key)
            .payload(&encoded.value)
            .headers(record_headers(&encoded));
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => panic!("preload: {e}"),
            }
        }
        if seq % 1_000 == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .expect("preload: flush");
    let failed = producer.context().0.load(Relaxed);
    assert_eq!(failed, 0, "preload: {failed} records not acknowledged");
    let n = messages.max(1) as usize;
    (value_bytes / n, header_bytes / n)
}

/// Records on [`TOPIC`], per partition.
pub(crate) fn partition_counts(brokers: &str) -> Vec<i64> {
    let probe = probe(brokers);
    (0..PARTITIONS)
        .map(|p| {
            let (low, high) = probe
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .collect()
}
