//! The run's model and tables: the producer's items and its audit of what it
//! committed, the consumer's copy of the items and its applied log, and the
//! consumer's `#[message_controller]` that writes both.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text, Uuid};
use outbox::{Context, HandlerError, Outboxed, message_controller};

/// The producing service's name (`from` of every message).
pub(crate) const PRODUCER: &str = "chaos";
/// The producer's schema in the run's database.
pub(crate) const PRODUCER_SCHEMA: &str = "chaos_producer";
/// The consumer's schema in the run's database.
pub(crate) const CONSUMER_SCHEMA: &str = "chaos_consumer";

pub(crate) mod schema {
    #![allow(missing_docs)] // diesel's `table!` output
    diesel::table! {
        chaos_items (id) {
            id -> BigInt,
            seq -> BigInt,
            value -> Text,
        }
    }
}
use schema::chaos_items;

/// An item: `seq` is the per-key sequence of the change that produced this
/// state, taken under the key's lock, so per key it grows in commit order.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = chaos_items)]
#[outbox(topic = "outbox_chaos.items")]
pub(crate) struct Item {
    pub(crate) id: i64,
    pub(crate) seq: i64,
    pub(crate) value: String,
}

/// The producer's tables beside outbox's: the items, the per-key sequences
/// (never deleted, so a key destroyed and created again goes on counting),
/// and the audit of committed messages (written in the enqueue's transaction:
/// a row here is a message the producer committed, nothing else is).
pub(crate) const PRODUCER_TABLES: &str = "
    CREATE TABLE chaos_items (id bigint PRIMARY KEY, seq bigint NOT NULL, value text NOT NULL);
    CREATE TABLE chaos_key_seqs (id bigint PRIMARY KEY, seq bigint NOT NULL);
    CREATE TABLE chaos_committed (
        message_id uuid PRIMARY KEY,
        key bigint NOT NULL,
        seq bigint NOT NULL,
        event text NOT NULL,
        writer integer NOT NULL,
        committed_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE TABLE chaos_rolled_back (message_id uuid PRIMARY KEY, key bigint NOT NULL, seq bigint NOT NULL);
    CREATE TABLE chaos_faults (
        id bigint PRIMARY KEY,
        kind text NOT NULL,
        detail text NOT NULL,
        started_at timestamptz NOT NULL,
        ended_at timestamptz NOT NULL
    );
";

/// The consumer's tables beside outbox's (its inbox): its copy of the items
/// and the applied log, one row per apply that committed, in commit order
/// per key (each key's applies are sequential: one partition, one task).
pub(crate) const CONSUMER_TABLES: &str = "
    CREATE TABLE chaos_items (id bigint PRIMARY KEY, seq bigint NOT NULL, value text NOT NULL);
    CREATE TABLE chaos_applied (
        id bigserial PRIMARY KEY,
        message_id uuid NOT NULL,
        key bigint NOT NULL,
        seq bigint,
        event text NOT NULL,
        consumer text NOT NULL,
        kafka_partition integer NOT NULL,
        kafka_offset bigint NOT NULL,
        applied_at timestamptz NOT NULL DEFAULT clock_timestamp()
    );
    CREATE INDEX chaos_applied_message_id ON chaos_applied (message_id);
    CREATE INDEX chaos_applied_applied_at ON chaos_applied (applied_at);
";

/// The consumer's handling of items: the macro upserts and deletes; the
/// `after_` hooks log the apply in the same transaction.
pub(crate) struct Items {
    /// Names the consumer process in the applied log.
    pub(crate) consumer: String,
}

#[message_controller(model = Item, table = chaos_items)]
impl Items {
    async fn after_create(&self, ctx: &mut Context<'_>, item: &Item) -> Result<(), HandlerError> {
        self.log(ctx, item.id, Some(item.seq)).await
    }

    async fn after_update(&self, ctx: &mut Context<'_>, item: &Item) -> Result<(), HandlerError> {
        self.log(ctx, item.id, Some(item.seq)).await
    }

    async fn after_destroy(
        &self,
        ctx: &mut Context<'_>,
        key: &<Item as Outboxed>::Key,
    ) -> Result<(), HandlerError> {
        // A destroyed message carries the key only; the audit takes its
        // sequence from the producer's record of the message.
        self.log(ctx, *key, None).await
    }
}

impl Items {
    async fn log(
        &self,
        ctx: &mut Context<'_>,
        key: i64,
        seq: Option<i64>,
    ) -> Result<(), HandlerError> {
        let (message_id, event) = (ctx.message_id().as_uuid(), ctx.event().to_string());
        let (partition, offset) = (ctx.partition(), ctx.offset());
        diesel_async::RunQueryDsl::execute(
            diesel::sql_query(
                "INSERT INTO chaos_applied \
                 (message_id, key, seq, event, consumer, kafka_partition, kafka_offset) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind::<Uuid, _>(message_id)
            .bind::<BigInt, _>(key)
            .bind::<Nullable<BigInt>, _>(seq)
            .bind::<Text, _>(event)
            .bind::<Text, _>(&self.consumer)
            .bind::<Integer, _>(partition)
            .bind::<BigInt, _>(offset),
            ctx.conn(),
        )
        .await?;
        Ok(())
    }
}
