//! The PostgreSQL side of `outbox`, on Diesel: migrations, enqueue (diesel and
//! diesel-async), realtime messages, the relay that publishes to Kafka, and the
//! [`Consumer`] that applies messages exactly once through controllers (the
//! inbox, [stopped partitions](stopped), [dead letters](dead_letter)).
//!
//! ```text
//!  your transaction                          the relay (outbox relay, or Relay::run)
//!  ├─ INSERT INTO users …                    ├─ wakes on NOTIFY or every poll interval
//!  ├─ outbox.enqueue(conn, &user, Created)   ├─ reads a batch in id order, sends it all at once
//!  └─ COMMIT ── NOTIFY outbox_messages ───▶  └─ waits for Kafka's acks, deletes those rows
//!
//!  the consumer (Consumer::run), per record, in the consuming service's database
//!  ├─ BEGIN; INSERT INTO outbox_inbox (source, message_id) — already there: skip
//!  ├─ the controller: upsert / delete, hooks, follow-up messages
//!  └─ COMMIT; then the offset is stored and committed
//! ```
//!
//! # Examples
//!
//! ```no_run
//! use outbox::kafka::KafkaPublisher;
//! use outbox_diesel::Relay;
//!
//! # async fn run() -> Result<(), outbox_diesel::Error> {
//! let publisher = KafkaPublisher::new("127.0.0.1:59092")?;
//! let relay = Relay::builder("postgres://localhost/app", publisher).build()?;
//! relay.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
//! # Ok(()) }
//! ```

#![warn(missing_docs)]

mod backoff;
#[cfg(feature = "cli")]
pub mod cli;
pub mod consumer;
pub mod dead_letter;
mod error;
pub mod fault_injection;
pub mod group_reset;
pub mod migrations;
pub mod ops;
mod pg;
pub mod registry;
pub mod relay;
pub mod roles;
pub mod schema;
pub mod serve;
pub mod stopped;
pub mod topics;

pub use consumer::{
    Consumer, ConsumerBuilder, ConsumerReport, FailurePolicy, OnFailure, Pool, Retry, pool,
};
pub use error::{Error, Result, mask_password};
pub use outbox;
pub use pg::connect::{establish, establish_setup};
pub use pg::enqueue::Outbox;
pub use pg::realtime::{REALTIME_EVENT, Realtime, RealtimeMessage};
pub use pg::transaction::{NulInText, Pending, TransactionFn};
pub use relay::{Relay, RelayBuilder, RelayReport};
pub use stopped::StoppedPartition;
