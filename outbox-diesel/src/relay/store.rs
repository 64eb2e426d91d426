//! The relay's queries on `outbox_messages`.

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Double, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::outbox_messages;

/// A row as the relay sends it.
#[derive(QueryableByName)]
pub(crate) struct Row {
    #[diesel(sql_type = BigInt)]
    pub(crate) id: i64,
    #[diesel(sql_type = Text)]
    pub(crate) topic: String,
    #[diesel(sql_type = Text)]
    pub(crate) partition_key: String,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) headers: Vec<String>,
    #[diesel(sql_type = Bytea)]
    pub(crate) payload: Vec<u8>,
}

/// The oldest rows not parked, skipping every row behind a parked row of the
/// same topic and key (those wait until the parked row is retried or discarded).
/// Row order is id order: the order of enqueue within a transaction, and of
/// commit for transactions a lock on the same business row orders.
const FETCH: &str = "SELECT m.id, m.topic, m.partition_key, m.headers, m.payload \
     FROM outbox_messages m \
     WHERE m.parked_at IS NULL \
       AND NOT EXISTS (SELECT 1 FROM outbox_messages p \
                       WHERE p.parked_at IS NOT NULL AND p.topic = m.topic \
                         AND p.partition_key = m.partition_key AND p.id < m.id) \
     ORDER BY m.id LIMIT $1";

/// The same, for the shards of the key space this relay holds.
const FETCH_SHARDS: &str = "SELECT m.id, m.topic, m.partition_key, m.headers, m.payload \
     FROM outbox_messages m \
     WHERE m.parked_at IS NULL \
       AND (hashtext(m.partition_key) & 2147483647) % $2 = ANY($3) \
       AND NOT EXISTS (SELECT 1 FROM outbox_messages p \
                       WHERE p.parked_at IS NOT NULL AND p.topic = m.topic \
                         AND p.partition_key = m.partition_key AND p.id < m.id) \
     ORDER BY m.id LIMIT $1";

/// Which shards to read: `None` when this relay holds them all.
pub(crate) struct ShardFilter<'a> {
    pub(crate) count: i32,
    pub(crate) held: &'a [i32],
}

pub(crate) async fn fetch(
    conn: &mut AsyncPgConnection,
    limit: i64,
    shards: Option<ShardFilter<'_>>,
) -> QueryResult<Vec<Row>> {
    match shards {
        None => {
            diesel::sql_query(FETCH)
                .bind::<BigInt, _>(limit)
                .load(conn)
                .await
        }
        Some(filter) => {
            diesel::sql_query(FETCH_SHARDS)
                .bind::<BigInt, _>(limit)
                .bind::<Integer, _>(filter.count)
                .bind::<Array<Integer>, _>(filter.held)
                .load(conn)
                .await
        }
    }
}

/// Deletes the rows the broker acknowledged.
pub(crate) async fn delete(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(outbox_messages::table.filter(outbox_messages::id.eq_any(ids)))
        .execute(conn)
        .await
}

/// Counts an attempt on each row with its error; `park` sets them aside.
pub(crate) async fn record_failure(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
    error: &str,
    park: bool,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE outbox_messages SET attempts = attempts + 1, last_error = $2, \
         parked_at = CASE WHEN $3 THEN now() ELSE parked_at END \
         WHERE id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Text, _>(error)
    .bind::<Bool, _>(park)
    .execute(conn)
    .await
}

/// What the relay's gauges report.
#[derive(QueryableByName, Debug, Clone, Copy, PartialEq)]
pub(crate) struct Gauges {
    /// Rows waiting to be sent (not parked).
    #[diesel(sql_type = BigInt)]
    pub(crate) waiting: i64,
    /// Parked rows.
    #[diesel(sql_type = BigInt)]
    pub(crate) parked: i64,
    /// Age of the oldest waiting row, in seconds.
    #[diesel(sql_type = Nullable<Double>)]
    pub(crate) oldest_age_seconds: Option<f64>,
}

pub(crate) async fn gauges(conn: &mut AsyncPgConnection) -> QueryResult<Gauges> {
    diesel::sql_query(
        "SELECT count(*) FILTER (WHERE parked_at IS NULL) AS waiting, \
                count(*) FILTER (WHERE parked_at IS NOT NULL) AS parked, \
                extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL))::float8 \
                  AS oldest_age_seconds \
         FROM outbox_messages",
    )
    .get_result(conn)
    .await
}
