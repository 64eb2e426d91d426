//! The PostgreSQL side of `outbox`, on Diesel: migrations, enqueue (diesel and
//! diesel-async), the relay, the inbox and stopped partitions.
//!
//! Nothing is here yet: this crate fills in as those parts land. The message
//! types it builds on live in [`outbox`].

#![warn(missing_docs)]

pub use outbox;
