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
    /// On the first row of a read only: the other sessions holding a write
    /// lock on the table when the read ran (their virtual transaction ids,
    /// sorted, comma-separated), `NULL` when none. See [`ReadBatch`].
    #[diesel(sql_type = Nullable<Text>)]
    pub(crate) writers: Option<String>,
    /// The `outbox_schemas` key of an Avro value whose frame still holds
    /// schema id 0 (the relay writes the registry's id in it before sending);
    /// `NULL` for a value sent as stored.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub(crate) value_schema: Option<i64>,
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
/// A read starts from the oldest row not known to be settled (`after`): a row
/// with a lower id that commits after higher ids were read is read before any
/// later row of its key, which committed after it. `NOT IN (SELECT unnest(..))`
/// makes PostgreSQL hash the excluded ids once per statement.
///
/// Written without a `parked_at IS NULL` filter on `m`, so the planner walks the
/// primary key in order and stops after `LIMIT` rows: the `NOT EXISTS` also
/// leaves out the parked row itself. Without `parked` (the relay knows no row
/// of its shards is parked) the `NOT EXISTS` is left out: a third of the
/// read's cost at 100 rows a batch.
///
/// `after` skips the ids the relay knows need no reading (see `Floor` in the
/// relay's module): 0 reads from the oldest row. For it, the first row also
/// carries the sessions that were writing to the table when the read ran
/// (`writers`: the holders of a RowExclusiveLock on it other than this
/// session, in `pg_locks`; an `INSERT` takes that lock before its `nextval`
/// and keeps it until its transaction ends).
///
/// A query type of its own rather than `sql_query`, so Diesel caches it as a
/// prepared statement: planning it for every batch costs as much as running it
/// on small batches.
pub(crate) struct ReadBatch<'a> {
    pub(crate) delete: &'a [i64],
    /// Read only ids above this one.
    pub(crate) after: i64,
    pub(crate) exclude: &'a [i64],
    pub(crate) limit: i64,
    pub(crate) shards: Option<ShardFilter<'a>>,
    /// Whether rows of the shards read may be parked: `false` (known that
    /// none is) leaves the `NOT EXISTS` out, a third of a small batch's read.
    pub(crate) parked: bool,
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
            ")) SELECT m.id, m.topic, m.partition_key, m.headers, m.payload, m.attempts, m.value_schema, \
               CASE WHEN row_number() OVER () = 1 THEN \
               (SELECT string_agg(l.virtualtransaction, ',' ORDER BY l.virtualtransaction) \
                  FROM pg_locks l \
                 WHERE l.locktype = 'relation' AND l.mode = 'RowExclusiveLock' \
                   AND l.relation = 'outbox_messages'::regclass \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND l.pid IS DISTINCT FROM pg_backend_pid()) END AS writers \
             FROM outbox_messages m WHERE m.id > ",
        );
        out.push_bind_param::<BigInt, _>(&self.after)?;
        out.push_sql(" AND m.id NOT IN (SELECT unnest(");
        out.push_bind_param::<Array<BigInt>, _>(&self.exclude)?;
        out.push_sql("))");
        if let Some(shards) = &self.shards {
            out.push_sql(" AND (hashtext(m.partition_key) & 2147483647) % ");
            out.push_bind_param::<Integer, _>(&shards.count)?;
            out.push_sql(" = ANY(");
            out.push_bind_param::<Array<Integer>, _>(&shards.held)?;
            out.push_sql(")");
        }
        if self.parked {
            out.push_sql(
                " AND NOT EXISTS (SELECT 1 FROM outbox_messages p \
                   WHERE p.parked_at IS NOT NULL AND p.topic = m.topic \
                     AND p.partition_key = m.partition_key AND p.id <= m.id)",
            );
        }
        out.push_sql(" ORDER BY m.id LIMIT ");
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

/// The lowest parked id of the shards read (all shards without a filter),
/// `None` when none is parked. One index probe per parked key (a skip scan of
/// the parked-rows index, whatever the planner's statistics say).
pub(crate) async fn first_parked(
    conn: &mut AsyncPgConnection,
    shards: Option<ShardFilter<'_>>,
) -> QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct First {
        #[diesel(sql_type = Nullable<BigInt>)]
        id: Option<i64>,
    }
    let (count, held): (i32, &[i32]) = shards.map_or((1, &[0]), |s| (s.count, s.held));
    let first = diesel::sql_query(
        "WITH RECURSIVE k AS ( \
           (SELECT topic, partition_key, id FROM outbox_messages \
             WHERE parked_at IS NOT NULL ORDER BY topic, partition_key, id LIMIT 1) \
           UNION ALL \
           SELECT n.topic, n.partition_key, n.id FROM k, LATERAL ( \
             SELECT p.topic, p.partition_key, p.id FROM outbox_messages p \
              WHERE p.parked_at IS NOT NULL \
                AND (p.topic, p.partition_key) > (k.topic, k.partition_key) \
              ORDER BY p.topic, p.partition_key, p.id LIMIT 1) n) \
         SELECT min(id) AS id FROM k \
          WHERE (hashtext(partition_key) & 2147483647) % $1 = ANY($2)",
    )
    .bind::<Integer, _>(count)
    .bind::<Array<Integer>, _>(held)
    .get_result::<First>(conn)
    .await?;
    Ok(first.id)
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
