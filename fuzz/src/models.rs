//! Models derived with `#[derive(Outboxed)]`, using every field option: several
//! versions, renames (plain and per version), `since`/`until`, `skip`,
//! `default` and `default = path`, `with`, composite keys, `destroyed = "full"`.

use chrono::{DateTime, Utc};
use outbox::Outboxed;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Active,
    Suspended { reason: String },
}

/// The producer's account row (as in tests/tests/outboxed.rs).
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[diesel(table_name = crate::schema::accounts)]
#[outbox(topic = "accounts", versions = [1, 2])]
pub struct Account {
    pub id: i64,
    #[outbox(rename(v1 = "mail", v2 = "email"))]
    pub email: String,
    pub display_name: Option<String>,
    #[outbox(with = chrono::serde::ts_milliseconds)]
    pub created_at: DateTime<Utc>,
    pub status: Status,
    #[outbox(since = 2, default)]
    pub preferences: Value,
    #[outbox(until = 1, default)]
    pub legacy_flags: u32,
    #[outbox(skip)]
    pub password_hash: String,
}

/// An older consumer of the same messages: version 1 only.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "accounts", route = "accounts", versions = [1])]
pub struct AccountV1 {
    pub id: i64,
    #[outbox(rename = "mail")]
    pub email: String,
    pub display_name: Option<String>,
    #[outbox(with = chrono::serde::ts_milliseconds)]
    pub created_at: DateTime<Utc>,
    pub status: Status,
    pub legacy_flags: u32,
}

/// A composite key, sent in full on destroy.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[diesel(table_name = order_lines, primary_key(order_id, line))]
#[outbox(topic = "orders", destroyed = "full")]
pub struct OrderLine {
    pub order_id: i64,
    pub line: i16,
    pub sku: String,
    pub quantity: u32,
}

/// Three versions, a field living in the middle one, renames that win over a
/// plain rename, numbers of every kind, nested collections.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "catalog.products-v3", route = "products", versions = [1, 2, 3], partition_key = sku)]
pub struct Product {
    pub id: u64,
    pub sku: String,
    #[outbox(rename = "priceCents", rename(v1 = "price"))]
    pub price_cents: i64,
    #[outbox(since = 2, until = 2, default)]
    pub nickname: Option<String>,
    #[outbox(since = 2, default = default_locale)]
    pub locale: String,
    #[outbox(since = 3, default)]
    pub weight: f64,
    #[outbox(since = 3, default)]
    pub tags: Vec<String>,
    #[outbox(until = 2, default)]
    pub legacy: Option<u8>,
    pub dims: (u16, u16, u16),
    #[outbox(skip, default = default_locale)]
    pub cache: String,
}

fn default_locale() -> String {
    "en".into()
}

/// An account with Avro schemas (`#[outbox(avro)]`): a rename, fields added
/// and dropped, the mapped column types, and `avro_type` fields (an enum with
/// data, a `with` timestamp) that go through serde's JSON.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "identity.accounts-v2", route = "accounts", versions = [1, 2, 3], avro)]
pub struct AvroAccount {
    pub id: i64,
    #[outbox(rename(v1 = "mail"))]
    pub email: String,
    pub display_name: Option<String>,
    #[outbox(with = chrono::serde::ts_milliseconds, avro_type = "timestamp-millis")]
    pub created_at: DateTime<Utc>,
    #[outbox(avro_type = r#"["string", {"type": "map", "values": {"type": "record",
        "name": "Suspended", "fields": [{"name": "reason", "type": "string"}]}}]"#)]
    pub status: Status,
    #[outbox(since = 2, default = default_locale)]
    pub locale: String,
    #[outbox(since = 2, default)]
    pub tags: Vec<String>,
    #[outbox(until = 2, default)]
    pub legacy_flags: u32,
    #[outbox(since = 3, default)]
    pub last_login: Option<DateTime<Utc>>,
    pub preferences: Value,
    pub avatar: Option<Vec<u8>>,
    pub limits: std::collections::BTreeMap<String, i32>,
    pub birthday: Option<chrono::NaiveDate>,
    pub score: f64,
    #[outbox(skip)]
    pub password_hash: String,
}
