//! The inbox: one row per applied message, so a re-delivery is a no-op.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::outbox_inbox;

/// Where a message was read: what its inbox row records.
pub(crate) struct Received<'a> {
    pub(crate) source: &'a str,
    pub(crate) message_id: uuid::Uuid,
    pub(crate) topic: &'a str,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
}

/// Inserts the message's row; `false` when it was already there (a duplicate).
/// A concurrent apply of the same message waits on this row until the other
/// transaction ends, then sees the conflict.
pub(crate) async fn claim(
    conn: &mut AsyncPgConnection,
    received: &Received<'_>,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(outbox_inbox::table)
        .values((
            outbox_inbox::source.eq(received.source),
            outbox_inbox::message_id.eq(received.message_id),
            outbox_inbox::topic.eq(received.topic),
            outbox_inbox::kafka_partition.eq(received.partition),
            outbox_inbox::kafka_offset.eq(received.offset),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}

/// Rows deleted per statement by the retention task: small, so it never holds
/// many locks or a long transaction.
pub(crate) const RETENTION_BATCH: i64 = 1_000;

/// Deletes up to [`RETENTION_BATCH`] rows processed more than `retention` ago;
/// returns how many.
pub(crate) async fn delete_expired(
    conn: &mut AsyncPgConnection,
    retention: Duration,
) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM outbox_inbox WHERE ctid = ANY(ARRAY( \
             SELECT ctid FROM outbox_inbox \
             WHERE processed_at < now() - make_interval(secs => $1) \
             LIMIT $2))",
    )
    .bind::<diesel::sql_types::Double, _>(retention.as_secs_f64())
    .bind::<diesel::sql_types::BigInt, _>(RETENTION_BATCH)
    .execute(conn)
    .await
}
