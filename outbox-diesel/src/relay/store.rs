//! The relay's queries on `outbox_messages`.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::Untyped;
use diesel::sql_types::{Array, BigInt, Bool, Bytea, Double, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::relay::headers::Headers;
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
    pub(crate) headers: Headers,
    #[diesel(sql_type = Bytea)]
    pub(crate) payload: Vec<u8>,
    /// Failed attempts so far (fault injection draws on them).
    #[diesel(sql_type = Integer)]
    pub(crate) attempts: i32,
}

impl Row {
    /// The ordering key: topic and partition key.
    pub(crate) fn key(&self) -> (String, String) {
        (self.topic.clone(), self.partition_key.clone())
    }
}

/// Deletes acknowledged rows, then reads up to `limit` of the oldest rows that
/// are not in `exclude` (the rows this relay has in flight, or acknowledged and
/// being deleted by this very statement), neither parked nor behind a parked row
/// of the same topic and key (those wait until the parked row is retried or
/// discarded); with `shards`, only rows of the shards held. One statement, one
/// round trip.
///
/// Every read starts from the oldest row: a row with a lower id that commits
/// after higher ids were read is read before any later row of its key, which
/// committed after it. `NOT IN (SELECT unnest(..))` makes PostgreSQL hash the
/// excluded ids once per statement.
///
/// Written without a `parked_at IS NULL` filter on `m`, so the planner walks the
/// primary key in order and stops after `LIMIT` rows.
///
/// A query type of its own rather than `sql_query`, so Diesel caches it as a
/// prepared statement: planning it for every batch costs as much as running it
/// on small batches.
pub(crate) struct ReadBatch<'a> {
    pub(crate) delete: &'a [i64],
    pub(crate) exclude: &'a [i64],
    pub(crate) limit: i64,
    pub(crate) shards: Option<ShardFilter<'a>>,
}

/// Which shards to read: `None` when this relay holds them all.
pub(crate) struct ShardFilter<'a> {
    pub(crate) count: i32,
    pub(crate) held: &'a [i32],
}

impl QueryId for ReadBatch<'_> {
    type QueryId = ();
    // The SQL differs with and without shards: cache by the SQL text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for ReadBatch<'_> {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for ReadBatch<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH acknowledged AS (DELETE FROM outbox_messages WHERE id = ANY(");
        out.push_bind_param::<Array<BigInt>, _>(&self.delete)?;
        out.push_sql(
            ")) SELECT m.id, m.topic, m.partition_key, m.headers, m.payload, m.attempts \
             FROM outbox_messages m WHERE m.id NOT IN (SELECT unnest(",
        );
        out.push_bind_param::<Array<BigInt>, _>(&self.exclude)?;
        out.push_sql("))");
        if let Some(shards) = &self.shards {
            out.push_sql(" AND (hashtext(m.partition_key) & 2147483647) % ");
            out.push_bind_param::<Integer, _>(&shards.count)?;
            out.push_sql(" = ANY(");
            out.push_bind_param::<Array<Integer>, _>(&shards.held)?;
            out.push_sql(")");
        }
        out.push_sql(
            " AND NOT EXISTS (SELECT 1 FROM outbox_messages p \
               WHERE p.parked_at IS NOT NULL AND p.topic = m.topic \
                 AND p.partition_key = m.partition_key AND p.id <= m.id) \
             ORDER BY m.id LIMIT ",
        );
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        Ok(())
    }
}

/// Runs a [`ReadBatch`].
pub(crate) async fn delete_and_fetch(
    conn: &mut AsyncPgConnection,
    read: ReadBatch<'_>,
) -> QueryResult<Vec<Row>> {
    read.load(conn).await
}

/// Deletes the rows the broker acknowledged.
pub(crate) async fn delete(conn: &mut AsyncPgConnection, ids: &[i64]) -> QueryResult<usize> {
    diesel::delete(outbox_messages::table.filter(outbox_messages::id.eq_any(ids)))
        .execute(conn)
        .await
}

/// A failure to record on rows.
pub(crate) struct Failure<'a> {
    pub(crate) error: &'a str,
    /// Set the rows aside.
    pub(crate) park: bool,
    /// Keep an error already recorded (`error` only fills an empty one).
    pub(crate) keep_error: bool,
}

/// Counts an attempt on each row with its error.
pub(crate) async fn record_failure(
    conn: &mut AsyncPgConnection,
    ids: &[i64],
    failure: Failure<'_>,
) -> QueryResult<usize> {
    diesel::sql_query(
        "UPDATE outbox_messages SET attempts = attempts + 1, \
         last_error = CASE WHEN $4 THEN coalesce(last_error, $2) ELSE $2 END, \
         parked_at = CASE WHEN $3 THEN now() ELSE parked_at END \
         WHERE id = ANY($1)",
    )
    .bind::<Array<BigInt>, _>(ids)
    .bind::<Text, _>(failure.error)
    .bind::<Bool, _>(failure.park)
    .bind::<Bool, _>(failure.keep_error)
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
