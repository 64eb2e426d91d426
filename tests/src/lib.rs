//! Test support for outbox's integration tests: the real PostgreSQL and Kafka
//! started by `scripts/services.sh up`, with each test isolated in its own
//! database schema and its own topics, so tests run in parallel and leave
//! nothing behind.
//!
//! A test whose service is not reachable fails with a message saying how to
//! start it; it is never skipped.
//!
//! # Examples
//!
//! ```no_run
//! use outbox_tests::{TestDb, TestKafka};
//!
//! let db = TestDb::new("my_test");          // a fresh schema, dropped at the end
//! let mut conn = db.connect();              // search_path is that schema
//! let kafka = TestKafka::new("my_test");
//! let topic = kafka.create_topic("events", 4); // deleted at the end
//! ```
//!
//! [`RunningRelay`] and [`RunningConsumer`] run the services as tasks;
//! [`TopicReader`] reads a topic back, record by record; [`process`] is the
//! plumbing of the child processes the crash tests kill (`src/bin`).

#![warn(missing_docs)]

mod accept;
pub mod broker;
mod db;
mod kafka;
pub mod logs;
mod names;
mod on_topic;
pub mod process;
mod reader;
pub mod registry;
pub mod registry_proxy;
mod running;
pub mod secure;
pub mod tcp_gate;

pub use accept::Accept;
pub use db::TestDb;
pub use kafka::TestKafka;
pub use on_topic::OnTopic;
pub use reader::{TopicReader, header, headers_of};
pub use registry::TestRegistry;
pub use running::{
    Running, RunningConsumer, RunningRelay, STOP_TIMEOUT, Shutdown, consumer_test_settings,
    relay_test_settings,
};

/// Where the services script starts PostgreSQL, unless `DATABASE_URL` says otherwise.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:54329/outbox_test";
/// Where the services script starts Kafka, unless `KAFKA_BROKERS` says otherwise.
pub const DEFAULT_KAFKA_BROKERS: &str = "127.0.0.1:59092";

/// How to start the services, for failure messages.
pub const HOW_TO_START: &str = "start the services with `scripts/services.sh up` \
     (or point DATABASE_URL / KAFKA_BROKERS at running servers)";

/// The PostgreSQL to test against: `DATABASE_URL`, or the services script's default.
///
/// # Examples
///
/// ```
/// assert!(outbox_tests::database_url().starts_with("postgres"));
/// ```
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// The Kafka brokers to test against: `KAFKA_BROKERS`, or the services script's default.
///
/// # Examples
///
/// ```
/// assert!(!outbox_tests::kafka_brokers().is_empty());
/// ```
pub fn kafka_brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_KAFKA_BROKERS.to_owned())
}
