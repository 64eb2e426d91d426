//! PostgreSQL code: enqueue and realtime messages.

pub(crate) mod enqueue;
pub(crate) mod realtime;
