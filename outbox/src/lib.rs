//! Reliable event-driven services on PostgreSQL and Kafka: the runtime.
//!
//! A service writes business data and the messages that describe it in one
//! database transaction (the transactional outbox); a relay publishes those
//! messages to Kafka; consuming services apply each message exactly once, in
//! order per key, in their own transaction (the idempotent inbox).
//!
//! This crate holds what both sides share: [`Event`], [`MessageId`], the
//! [`Message`] envelope and its wire format, the [`Publisher`] seam and its
//! Kafka transport ([`kafka`], feature `kafka`, on by default), the consuming
//! side's [`Controller`] seam with its [`Context`] and [`HandlerError`]
//! (feature `diesel`, on by default), the macros, and the errors. The
//! PostgreSQL side (enqueue, relay, the consumer and its inbox) lives in
//! `outbox-diesel`.
//!
//! # Examples
//!
//! ```
//! use outbox::{Event, Message, Payloads};
//! use serde_json::json;
//!
//! let payloads = Payloads::new(1, json!({"id": 42}))?;
//! let message = Message::new(Event::Created, "accounts", "users", "accounts", "42", payloads)?;
//! let record = message.encode();
//! let headers = record.headers.iter().map(|(n, v)| (*n, Some(v.as_bytes())));
//! assert_eq!(Message::decode("accounts", Some(&record.key), headers, Some(&record.value))?, message);
//! # Ok::<(), outbox::Error>(())
//! ```

#![warn(missing_docs)]

pub mod avro;
#[cfg(feature = "diesel")]
mod controller;
mod error;
mod event;
mod message;
mod message_id;
mod outboxed;
mod partition;
mod publish;
mod trace;

#[cfg(feature = "kafka")]
pub mod kafka;

#[doc(hidden)]
pub mod __private {
    //! Not public API: what generated code uses.
    pub use crate::private::*;
}
mod private;

#[cfg(feature = "diesel")]
pub use controller::{
    BoxFuture, Context, Controller, FollowUps, GroupError, HandlerError, HandlerErrorKind,
    VersionOutcome,
};
pub use error::{DecodeError, Error, Result, Truncated};
pub use event::{Event, EventName};
pub use message::{
    CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, EncodedMessage, Message, Payloads, headers,
};
pub use message_id::MessageId;
pub use outboxed::{Format, Outboxed};
pub use partition::{kafka_partition, murmur2};
pub use publish::{Delivery, OutgoingRecord, PublishError, PublishErrorKind, Publisher};
pub use trace::TraceContext;

#[doc = include_str!("outboxed_derive.md")]
pub use outbox_derive::Outboxed;

#[cfg(feature = "diesel")]
#[doc = include_str!("message_controller.md")]
pub use outbox_derive::message_controller;
