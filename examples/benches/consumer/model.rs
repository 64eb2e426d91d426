//! The data: an account model, its table, the records on the topic, and the
//! decode and upsert of the hand-written side (the statement
//! `#[message_controller]` generates for the outbox side).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use outbox::{EncodedMessage, Event, Message, MessageId, Outboxed};

use crate::common::data::{self, KEYS};
/// The `from` of every record (the inbox's `source`).
pub(crate) const PRODUCER: &str = "accounts-service";

mod schema {
    #![allow(missing_docs)] // diesel's `table!` output
    diesel::table! {
        bench_accounts (id) {
            id -> BigInt,
            seq -> BigInt,
            email -> Text,
            name -> Text,
            plan -> Text,
            currency -> Text,
            balance_cents -> BigInt,
            address -> Text,
            updated_at -> Timestamptz,
        }
    }
}
pub(crate) use schema::bench_accounts;

/// The consuming side's table, made in each side's schema.
pub(crate) const CREATE_TABLE: &str = "CREATE TABLE bench_accounts (
    id            bigint      PRIMARY KEY,
    seq           bigint      NOT NULL,
    email         text        NOT NULL,
    name          text        NOT NULL,
    plan          text        NOT NULL,
    currency      text        NOT NULL,
    balance_cents bigint      NOT NULL,
    address       text        NOT NULL,
    updated_at    timestamptz NOT NULL
)";

/// ~210 bytes of JSON per payload.
#[derive(Debug, Clone, Outboxed, Insertable, AsChangeset)]
#[diesel(table_name = bench_accounts)]
#[outbox(topic = "outbox_bench.consumer_accounts", route = "accounts")]
pub(crate) struct Account {
    id: i64,
    /// The message's number: the table's final state tells whether each key's
    /// messages applied in order.
    seq: i64,
    email: String,
    name: String,
    plan: String,
    currency: String,
    balance_cents: i64,
    address: String,
    updated_at: DateTime<Utc>,
}

fn account(seq: i64) -> Account {
    let id = seq % KEYS;
    Account {
        id,
        seq,
        email: format!("customer-{id}@example.com"),
        name: format!("Customer number {id}"),
        plan: ["starter", "business", "enterprise"][(seq % 3) as usize].into(),
        currency: "EUR".into(),
        balance_cents: 100_000 + (seq * 37) % 1_000_000,
        address: data::address(id),
        updated_at: data::timestamp(seq),
    }
}

/// Message `seq` as a Kafka record (key, headers, value), as the relay would
/// send it: created for each account's first message, updated after.
pub(crate) fn record(seq: i64) -> EncodedMessage {
    let account = account(seq);
    let occurred_at = account.updated_at;
    encode(seq, &account, occurred_at)
}

/// Message `seq` as [`record`] makes it, with `occurred_at` set to
/// `produced` (the live part's send time, read back by the consumer's hook).
pub(crate) fn record_at(seq: i64, produced: DateTime<Utc>) -> EncodedMessage {
    encode(seq, &account(seq), produced)
}

fn encode(seq: i64, account: &Account, occurred_at: DateTime<Utc>) -> EncodedMessage {
    let event = if seq < KEYS {
        Event::Created
    } else {
        Event::Updated
    };
    Message::encode_model(
        account,
        &event,
        PRODUCER,
        MessageId::new(),
        occurred_at,
        None,
    )
    .expect("encode a bench message")
}

/// The size of one payload's JSON, for the report.
pub(crate) fn payload_size() -> usize {
    let payload = account(123_456).to_payload(&Event::Updated, 1).unwrap();
    serde_json::to_vec(&payload).unwrap().len()
}

/// The account a decoded message carries (the highest version both know).
pub(crate) fn decode_account(message: &Message) -> Result<Account, outbox::Error> {
    let (version, payload) = message.payload_for(Account::VERSIONS)?;
    Account::from_payload(&message.event, version, payload)
}

/// The apply's business statement: insert the account, or update it on a
/// primary-key conflict (what `#[message_controller]` runs for created and
/// updated).
pub(crate) async fn upsert(conn: &mut AsyncPgConnection, account: &Account) -> QueryResult<usize> {
    diesel::insert_into(bench_accounts::table)
        .values(account)
        .on_conflict(bench_accounts::id)
        .do_update()
        .set(account)
        .execute(conn)
        .await
}

/// What the table holds once `messages` applied in order: how many accounts,
/// and the sum of their `seq` (each account's last message).
pub(crate) fn expected_state(messages: u64) -> (i64, i64) {
    let n = messages as i64;
    let keys = KEYS.min(n);
    let sum = (0..keys).map(|k| k + (n - 1 - k) / KEYS * KEYS).sum();
    (keys, sum)
}
