//! Topics and consumer groups of the test's own.

use std::sync::Mutex;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{HOW_TO_START, kafka_brokers, names, reader};

/// How long to wait for the broker's answer to an admin request.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The test's Kafka: topics and group names unique to the test; the topics are
/// deleted when the value is dropped.
///
/// # Examples
///
/// ```no_run
/// let kafka = outbox_tests::TestKafka::new("orders_flow");
/// let topic = kafka.create_topic("orders", 4);
/// let producer: rdkafka::producer::FutureProducer = kafka.producer_config().create()?;
/// # Ok::<(), rdkafka::error::KafkaError>(())
/// ```
pub struct TestKafka {
    brokers: String,
    test_name: String,
    admin: AdminClient<DefaultClientContext>,
    topics: Mutex<Vec<String>>,
    groups: Mutex<Vec<String>>,
}

impl TestKafka {
    /// Connects to the brokers and checks that they answer.
    ///
    /// # Panics
    ///
    /// When Kafka is not reachable, with a message saying how to start it.
    pub fn new(test_name: &str) -> Self {
        Self::on_brokers(kafka_brokers(), test_name)
    }

    /// Like [`TestKafka::new`], on the brokers `brokers`.
    ///
    /// # Panics
    ///
    /// When they are not reachable, with a message saying how to start them.
    pub fn on_brokers(brokers: String, test_name: &str) -> Self {
        let probe: BaseConsumer = base_config(&brokers)
            .create()
            .unwrap_or_else(|e| panic!("bad Kafka configuration for {brokers}: {e}"));
        if let Err(e) = probe.fetch_metadata(None, Duration::from_secs(10)) {
            panic!("Kafka at {brokers} is not reachable: {e}; {HOW_TO_START}");
        }
        let admin = base_config(&brokers)
            .create()
            .unwrap_or_else(|e| panic!("could not create a Kafka admin client: {e}"));
        TestKafka {
            brokers,
            test_name: test_name.to_owned(),
            admin,
            topics: Mutex::new(Vec::new()),
            groups: Mutex::new(Vec::new()),
        }
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// A name unique to this test.
    pub fn unique_name(&self, what: &str) -> String {
        names::unique(what, &self.test_name)
    }

    /// A consumer group unique to this test, deleted (with its committed
    /// offsets) when `self` is dropped.
    pub fn group(&self, what: &str) -> String {
        let name = self.unique_name(what);
        self.groups.lock().unwrap().push(name.clone());
        name
    }

    /// Creates a topic unique to this test with `partitions` partitions and waits
    /// until the broker knows it. It is deleted when `self` is dropped.
    ///
    /// # Panics
    ///
    /// When the broker refuses or does not answer.
    pub fn create_topic(&self, what: &str, partitions: i32) -> String {
        let name = self.unique_name(what);
        self.create(&name, partitions);
        self.topics.lock().unwrap().push(name.clone());
        name
    }

    /// Creates the topic `name` (from [`unique_name`](Self::unique_name), for a
    /// topic that must not exist at first) like [`create_topic`](Self::create_topic):
    /// deleted when `self` is dropped.
    ///
    /// # Panics
    ///
    /// When the broker refuses or does not answer.
    pub fn create_topic_named(&self, name: &str, partitions: i32) {
        self.create(name, partitions);
        self.topics.lock().unwrap().push(name.to_owned());
    }

    /// Makes sure the topic `name` exists (creating it with `partitions`
    /// partitions if not) and has leaders. For models, whose topic is a constant
    /// shared by every run: it is not deleted, and readers must filter what they
    /// read by the ids they sent.
    ///
    /// # Panics
    ///
    /// When the broker refuses or does not answer.
    pub fn ensure_shared_topic(&self, name: &str, partitions: i32) {
        self.create(name, partitions);
    }

    fn create(&self, name: &str, partitions: i32) {
        let new_topic = NewTopic::new(name, partitions, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        let results = futures::executor::block_on(self.admin.create_topics([&new_topic], &options))
            .unwrap_or_else(|e| panic!("could not create topic {name}: {e}"));
        let mut existed = false;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => existed = true,
                Err((topic, code)) => panic!("could not create topic {topic}: {code}"),
            }
        }
        // A topic that existed keeps its own partition count.
        self.wait_for_partitions(name, (!existed).then_some(partitions));
    }

    /// Waits until `topic` has `partitions` partitions with leaders (any number
    /// of them, at least one, when `None`).
    fn wait_for_partitions(&self, topic: &str, partitions: Option<i32>) {
        let probe: BaseConsumer = base_config(&self.brokers).create().expect("probe consumer");
        let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
        loop {
            let known = probe
                .fetch_metadata(Some(topic), Duration::from_secs(5))
                .ok()
                .and_then(|m| {
                    m.topics()
                        .iter()
                        .find(|t| t.name() == topic && t.error().is_none())
                        .map(|t| t.partitions().iter().filter(|p| p.leader() >= 0).count())
                });
            let ready = match (known, partitions) {
                (Some(n), Some(want)) => n == want as usize,
                (Some(n), None) => n > 0,
                (None, _) => false,
            };
            if ready {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "topic {topic} did not get {partitions:?} partitions with leaders in {ADMIN_TIMEOUT:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The high watermark of each partition of `topic`, by partition: the
    /// offset its next record will get (how many it has held).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let kafka = outbox_tests::TestKafka::new("watermarks");
    /// let topic = kafka.create_topic("events", 4);
    /// assert_eq!(kafka.high_watermarks(&topic), [0, 0, 0, 0]);
    /// ```
    ///
    /// # Panics
    ///
    /// When the topic has no partitions or the broker does not answer.
    pub fn high_watermarks(&self, topic: &str) -> Vec<i64> {
        let probe: BaseConsumer = base_config(&self.brokers).create().expect("probe consumer");
        (0..reader::partition_count(&probe, topic))
            .map(|partition| {
                probe
                    .fetch_watermarks(topic, partition, ADMIN_TIMEOUT)
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{partition}: {e}"))
                    .1
            })
            .collect()
    }

    /// A producer configuration as the relay uses it: idempotent, `acks=all`,
    /// and the Java client's partitioner (`murmur2_random`).
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = base_config(&self.brokers);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000");
        config
    }

    /// A consumer configuration for `group`: manual offset commits, reading from
    /// the earliest offset when the group has none.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = base_config(&self.brokers);
        config
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("enable.partition.eof", "false");
        config
    }
}

impl Drop for TestKafka {
    fn drop(&mut self) {
        let take = |list: &Mutex<Vec<String>>| {
            std::mem::take(&mut *list.lock().unwrap_or_else(|e| e.into_inner()))
        };
        let (groups, topics) = (take(&self.groups), take(&self.topics));
        let options = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
        // The admin client's own thread drives these futures; blocking here is fine.
        // A group whose members have left is empty and can go; its offsets go with it.
        if !groups.is_empty() {
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            match futures::executor::block_on(self.admin.delete_groups(&names, &options)) {
                Ok(results) => {
                    for (group, code) in results.into_iter().filter_map(Result::err) {
                        if code != RDKafkaErrorCode::GroupIdNotFound {
                            eprintln!("warning: could not delete test group {group}: {code}");
                        }
                    }
                }
                Err(e) => eprintln!("warning: could not delete test groups {names:?}: {e}"),
            }
        }
        if !topics.is_empty() {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            if let Err(e) = futures::executor::block_on(self.admin.delete_topics(&names, &options))
            {
                eprintln!("warning: could not delete test topics {names:?}: {e}");
            }
        }
    }
}

fn base_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("log_level", "4");
    config
}

#[cfg(test)]
mod tests {
    #[test]
    fn unreachable_broker_fails_and_says_how_to_start_it() {
        let panic = std::panic::catch_unwind(|| {
            super::TestKafka::on_brokers("127.0.0.1:1".into(), "unreachable")
        });
        let message = *panic.err().unwrap().downcast::<String>().unwrap();
        assert!(
            message.starts_with("Kafka at 127.0.0.1:1 is not reachable"),
            "{message}"
        );
        assert!(message.contains("scripts/services.sh up"), "{message}");
    }
}
