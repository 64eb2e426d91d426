//! What the relay and consumer benchmarks share: their settings from the
//! environment, the services they run on (a PostgreSQL schema per side with
//! outbox's tables, fresh Kafka topics) and cleaning them up, CPU read from
//! `/proc`, a `metrics` recorder that sees only some counters, and the
//! statistics and printing of the figures.
//!
//! Each benchmark includes this module with `#[path]` and uses its share.

pub(crate) mod cpu;
pub(crate) mod data;
pub(crate) mod db;
pub(crate) mod env;
pub(crate) mod kafka;
pub(crate) mod recorder;
pub(crate) mod report;
pub(crate) mod results;
pub(crate) mod stats;

/// The multi-threaded runtime the services' clients and the code under test run on.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
