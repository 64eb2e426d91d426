//! Kafka: fresh topics and their cleanup, and a producer that counts its
//! acknowledgements.

use std::sync::Condvar;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use outbox::kafka::PRODUCER_DEFAULTS;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DeliveryResult, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

/// Partitions of every topic the benchmarks make.
pub(crate) const PARTITIONS: i32 = 4;

const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("Kafka admin client")
}

/// A client for metadata and watermarks.
pub(crate) fn probe(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("Kafka metadata client")
}

/// How many partitions `topic` has, and how many of them have a leader (0, 0:
/// no such topic).
fn partitions(probe: &BaseConsumer, topic: &str) -> (usize, usize) {
    probe
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()
        .and_then(|metadata| {
            let topic = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())?;
            let led = topic.partitions().iter().filter(|p| p.leader() >= 0);
            Some((topic.partitions().len(), led.count()))
        })
        .unwrap_or((0, 0))
}

/// Deletes `topic` if it exists.
pub(crate) async fn delete_topic(brokers: &str, topic: &str) {
    if partitions(&probe(brokers), topic).0 > 0 {
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
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
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
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
    let probe = probe(brokers);
    let ready = (PARTITIONS as usize, PARTITIONS as usize);
    while partitions(&probe, topic) != ready {
        assert!(Instant::now() < deadline, "topic {topic} got no leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Deletes consumer groups (they left when their consumer closed).
pub(crate) async fn delete_groups(brokers: &str, groups: &[String]) {
    if groups.is_empty() {
        return;
    }
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let _ = admin(brokers).delete_groups(&names, &options).await;
}

/// A producer's settings as outbox's relay has them ([`PRODUCER_DEFAULTS`]).
pub(crate) fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in PRODUCER_DEFAULTS {
        config.set(*key, *value);
    }
    config
}

/// Counts a producer's deliveries, and the failed ones among them; wakes a
/// waiter when a count is reached.
#[derive(Default)]
pub(crate) struct Counting {
    delivered: AtomicU64,
    errors: AtomicU64,
    target: AtomicU64,
    lock: Mutex<()>,
    reached: Condvar,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if result.is_err() {
            self.errors.fetch_add(1, Relaxed);
        }
        let delivered = self.delivered.fetch_add(1, Relaxed) + 1;
        if delivered >= self.target.load(Relaxed) {
            let _guard = self.lock.lock().unwrap();
            self.reached.notify_all();
        }
    }
}

impl Counting {
    /// Waits until `count` records were delivered (acknowledged or failed);
    /// panics after `timeout`.
    pub(crate) fn wait_for(&self, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.target.store(count, Relaxed);
        let mut guard = self.lock.lock().unwrap();
        while self.delivered.load(Relaxed) < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "producer: {} of {count} records delivered after {timeout:?}",
                self.delivered.load(Relaxed)
            );
            guard = self.reached.wait_timeout(guard, left).unwrap().0;
        }
    }

    /// Deliveries that failed.
    pub(crate) fn errors(&self) -> u64 {
        self.errors.load(Relaxed)
    }
}

/// Hands `record` to `producer`, waiting while its queue is full.
pub(crate) fn send<K, P>(producer: &ThreadedProducer<Counting>, mut record: BaseRecord<'_, K, P>)
where
    K: ToBytes + ?Sized,
    P: ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => panic!("producer: {e}"),
        }
    }
}
