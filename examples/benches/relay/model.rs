//! The models: the backlog's orders, the latency part's pings, and the
//! enqueue part's users with their table.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use outbox::Outboxed;
use serde::{Deserialize, Serialize};

use crate::common::data::{self, KEYS};

mod schema {
    #![allow(missing_docs)] // diesel's `table!` output
    diesel::table! {
        bench_users (id) {
            id -> BigInt,
            email -> Text,
            name -> Text,
            locale -> Text,
            created_at -> Timestamptz,
        }
    }
}
pub(crate) use schema::bench_users;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    sku: String,
    qty: u32,
    price_cents: i64,
}

/// The backlog's messages: ~200 bytes of JSON, keyed by one of 1,000 customers.
#[derive(Debug, Clone, Outboxed)]
#[outbox(topic = "outbox_bench.orders", route = "orders", partition_key = customer_id)]
pub(crate) struct Order {
    id: i64,
    customer_id: i64,
    status: String,
    currency: String,
    total_cents: i64,
    lines: Vec<Line>,
    ship_to: String,
    placed_at: DateTime<Utc>,
}

/// Order `id`, of customer `id % KEYS`.
pub(crate) fn order(id: i64) -> Order {
    let customer_id = id % KEYS;
    Order {
        id,
        customer_id,
        status: "paid".into(),
        currency: "EUR".into(),
        total_cents: 4_990 + id % 10_000,
        lines: vec![
            Line {
                sku: format!("SKU-{:05}-A", id % 50_000),
                qty: 2,
                price_cents: 1_995,
            },
            Line {
                sku: format!("SKU-{:05}-B", (id * 7) % 50_000),
                qty: 1,
                price_cents: 1_000 + id % 1_000,
            },
        ],
        ship_to: data::address(customer_id),
        placed_at: data::timestamp(id),
    }
}

/// The `avro` part's messages: the same order in the Confluent wire format,
/// on a topic of its own.
#[derive(Debug, Clone, Outboxed)]
#[outbox(
    topic = "outbox_bench.orders-avro",
    route = "orders",
    partition_key = customer_id,
    format = "avro"
)]
pub(crate) struct AvroOrder {
    id: i64,
    customer_id: i64,
    status: String,
    currency: String,
    total_cents: i64,
    #[outbox(
        avro_type = r#"{"type": "array", "items": {"type": "record", "name": "Line",
        "fields": [{"name": "sku", "type": "string"}, {"name": "qty", "type": "long"},
                   {"name": "price_cents", "type": "long"}]}}"#
    )]
    lines: Vec<Line>,
    ship_to: String,
    placed_at: DateTime<Utc>,
}

/// [`order`] `id` as an [`AvroOrder`].
pub(crate) fn avro_order(id: i64) -> AvroOrder {
    let Order {
        id,
        customer_id,
        status,
        currency,
        total_cents,
        lines,
        ship_to,
        placed_at,
    } = order(id);
    AvroOrder {
        id,
        customer_id,
        status,
        currency,
        total_cents,
        lines,
        ship_to,
        placed_at,
    }
}

/// The latency part's messages, on a topic of their own.
#[derive(Debug, Clone, Outboxed)]
#[outbox(topic = "outbox_bench.pings", route = "pings", partition_key = key)]
pub(crate) struct Ping {
    pub(crate) id: i64,
    pub(crate) key: i64,
    pub(crate) note: String,
}

/// The enqueue part's business row (its messages are never relayed).
#[derive(Debug, Clone, Queryable, Outboxed)]
#[diesel(table_name = bench_users)]
#[outbox(topic = "outbox_bench.users")]
pub(crate) struct User {
    id: i64,
    email: String,
    name: String,
    locale: String,
    created_at: DateTime<Utc>,
}

/// A user row to insert (the id and time are the table's defaults).
#[derive(Insertable)]
#[diesel(table_name = bench_users)]
pub(crate) struct NewUser<'a> {
    pub(crate) email: &'a str,
    pub(crate) name: &'a str,
    pub(crate) locale: &'a str,
}
