//! PostgreSQL code: connecting (with libpq's TLS settings), enqueue and realtime messages.

pub(crate) mod avro;
pub(crate) mod connect;
pub(crate) mod conninfo;
pub(crate) mod enqueue;
pub(crate) mod realtime;
pub(crate) mod tables;
mod tls;
pub(crate) mod transaction;
