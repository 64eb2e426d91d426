//! A Diesel model using every attribute builds without a warning.
#![deny(warnings)]

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use outbox::{Error, Event, Outboxed};
use serde_json::Value;

diesel::table! {
    users (tenant_id, id) {
        tenant_id -> BigInt,
        id -> BigInt,
        email -> Text,
        locale -> Text,
        nickname -> Nullable<Text>,
        created_at -> Timestamptz,
        password_hash -> Text,
    }
}

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Outboxed)]
#[diesel(table_name = users, primary_key(tenant_id, id), check_for_backend(diesel::pg::Pg))]
#[outbox(topic = "accounts", route = "users", versions = [1, 2, 3], destroyed = "keys")]
#[outbox(partition_key_with = tenant_key, crate = ::outbox)]
pub struct User {
    pub tenant_id: i64,
    pub id: i64,
    #[outbox(rename = "emailAddress", rename(v1 = "mail"))]
    pub email: String,
    #[outbox(since = 2, default = default_locale)]
    pub locale: String,
    #[outbox(until = 2, default)]
    pub nickname: Option<String>,
    #[outbox(with = chrono::serde::ts_milliseconds)]
    pub created_at: DateTime<Utc>,
    #[outbox(skip)]
    pub password_hash: String,
}

fn tenant_key(user: &User) -> String {
    format!("{}:{}", user.tenant_id, user.id)
}

fn default_locale() -> String {
    "en".to_owned()
}

#[derive(Outboxed)]
#[outbox(topic = "accounts", route = "audit", payload_with = audit_payload, partition_key = actor)]
pub struct Audit {
    pub id: i64,
    pub actor: String,
}

fn audit_payload(audit: &Audit, event: &Event, version: u32) -> Result<Value, Error> {
    Ok(serde_json::json!({"id": audit.id, "actor": audit.actor, "event": event.as_str(), "v": version}))
}

fn main() -> Result<(), Error> {
    let user = User {
        tenant_id: 1,
        id: 2,
        email: "a@example.com".into(),
        locale: "fr".into(),
        nickname: None,
        created_at: DateTime::from_timestamp_millis(0).unwrap(),
        password_hash: "x".into(),
    };
    assert_eq!(user.partition_key(), "1:2");
    let payload = user.to_payload(&Event::Updated, 3)?;
    assert_eq!(User::key_from_payload(3, &payload)?, (1, 2));
    let audit = Audit { id: 1, actor: "ada".into() };
    assert_eq!(audit.partition_key(), "ada");
    assert_eq!(audit.to_payload(&Event::Created, 1)?["v"], 1);
    Ok(())
}
