//! A projection's positions: per partition, the first record not applied
//! yet, in `outbox_projection_positions`, moved by the transaction that
//! applies the records (a compare-and-set, so a second process holding the
//! partition for a moment applies nothing).

use diesel::OptionalExtension as _;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::schema::{outbox_projection_positions as pp, outbox_projections as pr};

/// Where a partition stands, as its task last read or moved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    /// The first record not applied yet; `None` when the projection has no
    /// row for the partition (it never applied a record of it).
    pub(crate) next: Option<i64>,
    /// A rebuild re-applies the records below it (follow-ups muted).
    pub(crate) replay_until: Option<i64>,
}

impl Position {
    /// Whether the record at `offset` is re-applied by a rebuild.
    pub(crate) fn replaying(&self, offset: i64) -> bool {
        self.replay_until.is_some_and(|until| offset < until)
    }
}

/// The partition's position, as stored.
pub(crate) async fn read(
    conn: &mut AsyncPgConnection,
    projection: &str,
    topic: &str,
    partition: i32,
) -> QueryResult<Position> {
    let row: Option<(i64, Option<i64>)> = pp::table
        .find((projection, topic, partition))
        .select((pp::next_offset, pp::replay_until))
        .first(conn)
        .await
        .optional()?;
    Ok(match row {
        Some((next, replay_until)) => Position {
            next: Some(next),
            replay_until,
        },
        None => Position {
            next: None,
            replay_until: None,
        },
    })
}

#[derive(QueryableByName)]
struct Claimed {
    #[diesel(sql_type = Nullable<BigInt>)]
    replay_until: Option<i64>,
}

/// Moves the partition from `expected` to `end` (one past the last record
/// applied) in the caller's transaction, and holds its row until the
/// transaction ends. `None` when the position is no longer `expected`
/// (another process moved it, or a rebuild reset it): nothing may be
/// applied then, the caller rolls back and reads the position again.
pub(crate) async fn advance(
    conn: &mut AsyncPgConnection,
    projection: &str,
    topic: &str,
    partition: i32,
    expected: Option<i64>,
    end: i64,
) -> QueryResult<Option<Position>> {
    let claimed: Option<Claimed> = match expected {
        Some(expected) => diesel::sql_query(
            "UPDATE outbox_projection_positions SET next_offset = $4, updated_at = now() \
             WHERE projection = $1 AND topic = $2 AND kafka_partition = $3 AND next_offset = $5 \
             RETURNING replay_until",
        )
        .bind::<Text, _>(projection)
        .bind::<Text, _>(topic)
        .bind::<Integer, _>(partition)
        .bind::<BigInt, _>(end)
        .bind::<BigInt, _>(expected)
        .get_result(conn)
        .await
        .optional()?,
        // The first record ever: whoever inserts the row first applies. The
        // projection's row is locked first, as a rebuild does: a rebuild
        // under way is waited for here, before this transaction holds
        // anything it would wait on (then its row makes this one moved).
        None => diesel::sql_query(
            "WITH projection AS (SELECT 1 FROM outbox_projections WHERE name = $1 FOR KEY SHARE) \
             INSERT INTO outbox_projection_positions (projection, topic, kafka_partition, next_offset) \
             SELECT $1, $2, $3, $4 FROM projection ON CONFLICT DO NOTHING RETURNING replay_until",
        )
        .bind::<Text, _>(projection)
        .bind::<Text, _>(topic)
        .bind::<Integer, _>(partition)
        .bind::<BigInt, _>(end)
        .get_result(conn)
        .await
        .optional()?,
    };
    Ok(claimed.map(|claimed| Position {
        next: Some(end),
        replay_until: claimed.replay_until,
    }))
}

/// Registers the projection (its topics), and says whether a rebuild was
/// requested for it.
pub(crate) async fn register(
    conn: &mut AsyncPgConnection,
    projection: &str,
    topics: &[String],
) -> QueryResult<bool> {
    let requested: Option<chrono::DateTime<chrono::Utc>> = diesel::insert_into(pr::table)
        .values((pr::name.eq(projection), pr::topics.eq(topics)))
        .on_conflict(pr::name)
        .do_update()
        .set(pr::topics.eq(topics))
        .returning(pr::rebuild_requested_at)
        .get_result(conn)
        .await?;
    Ok(requested.is_some())
}

/// One partition's range at the start of a rebuild.
#[derive(Debug, Clone)]
pub(crate) struct Range {
    pub(crate) topic: String,
    pub(crate) partition: i32,
    pub(crate) low: i64,
    pub(crate) high: i64,
}

/// Locks the projection's row to the end of the caller's transaction, and
/// says whether a rebuild is requested: a second process rebuilding at once
/// waits, then finds the request cleared.
pub(crate) async fn lock_requested(
    conn: &mut AsyncPgConnection,
    projection: &str,
) -> QueryResult<bool> {
    let requested: Option<chrono::DateTime<chrono::Utc>> = pr::table
        .find(projection)
        .select(pr::rebuild_requested_at)
        .for_update()
        .first(conn)
        .await?;
    Ok(requested.is_some())
}

/// In the caller's transaction (after [`lock_requested`], before the user's
/// reset): deletes the projection's positions. First, so that the applies in
/// flight finish before the reset locks their tables (an apply holds its
/// position's row, then writes the tables: the other order deadlocks), and
/// the applies after it find their position gone.
/// Returns the positions deleted.
pub(crate) async fn clear(
    conn: &mut AsyncPgConnection,
    projection: &str,
) -> QueryResult<Vec<(String, i32, i64)>> {
    diesel::delete(pp::table.filter(pp::projection.eq(projection)))
        .returning((pp::topic, pp::kafka_partition, pp::next_offset))
        .get_results(conn)
        .await
}

/// In the caller's transaction (after [`clear`] and the user's reset): every
/// partition of the projection back to its earliest record, re-applied
/// quietly up to the high watermark taken at the start, or to where it
/// stood (`cleared`) if records were applied past that since; the request
/// cleared.
pub(crate) async fn start_replay(
    conn: &mut AsyncPgConnection,
    projection: &str,
    ranges: &[Range],
    cleared: &[(String, i32, i64)],
) -> QueryResult<()> {
    let stood = |range: &Range| {
        cleared
            .iter()
            .find(|(topic, partition, _)| *topic == range.topic && *partition == range.partition)
            .map_or(range.high, |(_, _, next)| range.high.max(*next))
    };
    let rows: Vec<_> = ranges
        .iter()
        .map(|range| {
            (
                pp::projection.eq(projection),
                pp::topic.eq(&range.topic),
                pp::kafka_partition.eq(range.partition),
                pp::next_offset.eq(range.low),
                pp::replay_until.eq(Some(stood(range))),
            )
        })
        .collect();
    diesel::insert_into(pp::table)
        .values(rows)
        .execute(conn)
        .await?;
    diesel::update(pr::table.find(projection))
        .set((
            pr::rebuild_requested_at.eq(None::<chrono::DateTime<chrono::Utc>>),
            pr::rebuilt_at.eq(diesel::dsl::now),
        ))
        .execute(conn)
        .await?;
    Ok(())
}

/// Records a rebuild still has to re-apply, from the stored positions (0:
/// caught up).
pub(crate) async fn rebuild_left(
    conn: &mut AsyncPgConnection,
    projection: &str,
) -> QueryResult<i64> {
    let rows: Vec<(i64, Option<i64>)> = pp::table
        .filter(pp::projection.eq(projection))
        .select((pp::next_offset, pp::replay_until))
        .load(conn)
        .await?;
    Ok(rows
        .iter()
        .map(|(next, until)| until.map_or(0, |until| (until - next).max(0)))
        .sum())
}
