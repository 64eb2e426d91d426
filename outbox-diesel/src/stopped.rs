//! Stopped partitions: recorded when a consumer stops on a record it could not
//! apply, until an operator resumes them.
//!
//! With the *stop* failure policy (the default), a consumer that gives up on a
//! record pauses that record's partition and records the stop here: the group,
//! the topic and partition, the offset of the record, its message id (when it
//! could be decoded) and the error. The other partitions keep running. Once the
//! cause is fixed, [`resume`] (or `outbox partitions resume`, or
//! `Consumer::resume`) marks the stop resumed; a running consumer of the group
//! notices it within its poll interval and reads the partition again from the
//! recorded offset.
//!
//! A record no fix can make applicable (garbage, a message for a row that no
//! longer exists and never will) is skipped instead: [`skip`] (or `outbox
//! partitions skip`, or `Consumer::skip`) marks the stop resumed with the
//! reason, and the consumer reads the partition again from the record after
//! it ([`StoppedPartition::resume_offset`]). The skipped record is never
//! applied; the stop keeps its offset, message id and the reason.
//!
//! At most one stop per group, topic and partition is *active* (not resumed): a
//! unique partial index holds that rule, and [`record_async`] returns the active
//! stop when there is one. Resumed stops stay in the table as a history.
//!
//! The consumer uses the `*_async` functions (diesel-async); operators' tools use
//! [`list`], [`resume`] and [`skip`] on a synchronous Diesel connection. Each
//! query is built once and run by both.
//!
//! # Examples
//!
//! ```no_run
//! use diesel::{Connection, PgConnection};
//! use outbox_diesel::stopped;
//!
//! let mut conn = PgConnection::establish("postgres://localhost/app")?;
//! for stop in stopped::list(&mut conn, Some("billing"), false)? {
//!     println!("{}[{}] stopped at offset {}: {}", stop.topic, stop.kafka_partition,
//!         stop.kafka_offset, stop.error);
//! }
//! stopped::resume(&mut conn, "billing", "orders", 2)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use chrono::{DateTime, Utc};
use diesel::dsl::{self, AsSelect};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel_async::AsyncPgConnection;
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::schema::outbox_stopped_partitions;
use crate::schema::outbox_stopped_partitions::dsl as sp;

/// How many times [`record_async`] tries when the active stop it conflicted
/// with is resumed before it can be read (each try is an insert and a select).
const RECORD_ATTEMPTS: usize = 3;

/// A partition a consumer group stopped on a record: a row of
/// `outbox_stopped_partitions`.
///
/// Serialized (`outbox partitions list --json`) with these field names,
/// timestamps in RFC 3339.
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// for stop in outbox_diesel::stopped::list(&mut conn, None, true)? {
///     let state = match (stop.is_active(), &stop.skip_reason) {
///         (true, _) => "stopped".to_owned(),
///         (false, None) => "resumed".to_owned(),
///         (false, Some(reason)) => format!("skipped ({reason})"),
///     };
///     println!("{} {} {}[{}]@{} {state}", stop.id, stop.consumer_group, stop.topic,
///         stop.kafka_partition, stop.kafka_offset);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Serialize)]
#[diesel(table_name = outbox_stopped_partitions, check_for_backend(Pg))]
pub struct StoppedPartition {
    /// The row's id.
    pub id: i64,
    /// The consumer group (Kafka `group.id`) that stopped.
    pub consumer_group: String,
    /// The topic of the partition.
    pub topic: String,
    /// The partition.
    pub kafka_partition: i32,
    /// The offset of the record the consumer could not apply: where it reads
    /// again once resumed, unless the stop was skipped (see
    /// [`resume_offset`](Self::resume_offset)).
    pub kafka_offset: i64,
    /// The record's message id; `None` when the record could not be decoded.
    pub message_id: Option<Uuid>,
    /// Why the record could not be applied (the error and its causes).
    pub error: String,
    /// When the consumer stopped.
    pub stopped_at: DateTime<Utc>,
    /// When the stop was resumed; `None` while the partition is stopped.
    pub resumed_at: Option<DateTime<Utc>>,
    /// Why the stop was resumed past its record ([`skip`]): the record is never
    /// applied and the partition reads again from the one after it. `None`
    /// while the partition is stopped, and when it was resumed at the record
    /// ([`resume`]).
    pub skip_reason: Option<String>,
}

impl StoppedPartition {
    /// `true` while the partition is stopped (not resumed yet).
    ///
    /// # Examples
    ///
    /// ```
    /// # let stop = outbox_diesel::StoppedPartition {
    /// #     id: 1, consumer_group: "billing".into(), topic: "orders".into(), kafka_partition: 2,
    /// #     kafka_offset: 17, message_id: None, error: "boom".into(),
    /// #     stopped_at: chrono::Utc::now(), resumed_at: None, skip_reason: None };
    /// assert!(stop.is_active());
    /// ```
    pub fn is_active(&self) -> bool {
        self.resumed_at.is_none()
    }

    /// `true` when the stop was resumed past its record ([`skip`]): it has a
    /// skip reason.
    ///
    /// # Examples
    ///
    /// ```
    /// # let stop = outbox_diesel::StoppedPartition {
    /// #     id: 1, consumer_group: "billing".into(), topic: "orders".into(), kafka_partition: 2,
    /// #     kafka_offset: 17, message_id: None, error: "boom".into(),
    /// #     stopped_at: chrono::Utc::now(), resumed_at: Some(chrono::Utc::now()),
    /// #     skip_reason: Some("garbage".into()) };
    /// assert!(stop.is_skipped() && !stop.is_active());
    /// ```
    pub fn is_skipped(&self) -> bool {
        self.skip_reason.is_some()
    }

    /// The offset the partition reads again from once the stop is resumed: the
    /// stopped record's (`kafka_offset`), or the one after it
    /// (`kafka_offset + 1`) when the stop was skipped.
    ///
    /// # Examples
    ///
    /// ```
    /// # let stop = outbox_diesel::StoppedPartition {
    /// #     id: 1, consumer_group: "billing".into(), topic: "orders".into(), kafka_partition: 2,
    /// #     kafka_offset: 17, message_id: None, error: "boom".into(),
    /// #     stopped_at: chrono::Utc::now(), resumed_at: None, skip_reason: None };
    /// assert_eq!(stop.resume_offset(), 17);
    /// let skipped = outbox_diesel::StoppedPartition {
    ///     resumed_at: Some(chrono::Utc::now()),
    ///     skip_reason: Some("the invoice was deleted by hand".into()),
    ///     ..stop
    /// };
    /// assert_eq!(skipped.resume_offset(), 18);
    /// ```
    pub fn resume_offset(&self) -> i64 {
        if self.is_skipped() {
            self.kafka_offset + 1
        } else {
            self.kafka_offset
        }
    }
}

/// A stop to record with [`record_async`].
///
/// # Examples
///
/// ```
/// use outbox_diesel::stopped::NewStop;
///
/// let stop = NewStop {
///     consumer_group: "billing",
///     topic: "orders",
///     kafka_partition: 2,
///     kafka_offset: 17,
///     message_id: None, // the record could not be decoded
///     error: "decode: missing header `message_id`",
/// };
/// assert_eq!(stop.kafka_offset, 17);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Insertable)]
#[diesel(table_name = outbox_stopped_partitions, check_for_backend(Pg))]
pub struct NewStop<'a> {
    /// The consumer group.
    pub consumer_group: &'a str,
    /// The topic.
    pub topic: &'a str,
    /// The partition.
    pub kafka_partition: i32,
    /// The offset of the record that could not be applied.
    pub kafka_offset: i64,
    /// The record's message id, when it could be decoded.
    pub message_id: Option<Uuid>,
    /// The error, with its causes.
    pub error: &'a str,
}

/// The active (not resumed) stop of a group's partition: at most one row, by
/// the unique partial index.
#[dsl::auto_type(no_type_alias)]
fn active_query<'a>(group: &'a str, topic: &'a str, partition: i32) -> _ {
    let columns: AsSelect<StoppedPartition, Pg> = StoppedPartition::as_select();
    sp::outbox_stopped_partitions
        .filter(sp::consumer_group.eq(group))
        .filter(sp::topic.eq(topic))
        .filter(sp::kafka_partition.eq(partition))
        .filter(sp::resumed_at.is_null())
        .select(columns)
}

/// The stop with this id.
#[dsl::auto_type(no_type_alias)]
fn by_id_query(id: i64) -> _ {
    let columns: AsSelect<StoppedPartition, Pg> = StoppedPartition::as_select();
    sp::outbox_stopped_partitions
        .filter(sp::id.eq(id))
        .select(columns)
}

/// Marks the active stop of a group's partition resumed, returning it.
#[dsl::auto_type(no_type_alias)]
fn resume_query<'a>(group: &'a str, topic: &'a str, partition: i32) -> _ {
    let columns: AsSelect<StoppedPartition, Pg> = StoppedPartition::as_select();
    let target: dsl::update<sp::outbox_stopped_partitions> =
        diesel::update(sp::outbox_stopped_partitions);
    target
        .filter(sp::consumer_group.eq(group))
        .filter(sp::topic.eq(topic))
        .filter(sp::kafka_partition.eq(partition))
        .filter(sp::resumed_at.is_null())
        .set(sp::resumed_at.eq(dsl::now))
        .returning(columns)
}

/// Marks the active stop of a group's partition resumed past its record, with
/// `reason`, returning it.
#[dsl::auto_type(no_type_alias)]
fn skip_query<'a>(group: &'a str, topic: &'a str, partition: i32, reason: &'a str) -> _ {
    let columns: AsSelect<StoppedPartition, Pg> = StoppedPartition::as_select();
    let target: dsl::update<sp::outbox_stopped_partitions> =
        diesel::update(sp::outbox_stopped_partitions);
    target
        .filter(sp::consumer_group.eq(group))
        .filter(sp::topic.eq(topic))
        .filter(sp::kafka_partition.eq(partition))
        .filter(sp::resumed_at.is_null())
        .set((sp::resumed_at.eq(dsl::now), sp::skip_reason.eq(reason)))
        .returning(columns)
}

/// `reason` trimmed, or the error that refuses it when nothing is left.
fn skip_reason(reason: &str) -> Result<&str> {
    let reason = reason.trim();
    if reason.is_empty() {
        return Err(Error::Config {
            name: "skip reason",
            reason: "empty: say why the record can never be applied (it is kept with the stop)"
                .to_owned(),
        });
    }
    Ok(reason)
}

/// Records that `stop.consumer_group` stopped `stop.topic`'s partition
/// `stop.kafka_partition` at `stop.kafka_offset`, and returns the row.
///
/// If the partition already has an active stop (another consumer of the group
/// recorded it first, or this one before a restart), that stop is returned
/// unchanged and `stop` is not written: the offset to resume from is the first
/// one recorded. Safe against concurrent callers (`INSERT … ON CONFLICT DO
/// NOTHING` on the unique partial index, then a read of the active row).
///
/// Call it outside the apply transaction (which rolled back), or inside one of
/// your own: it commits or rolls back with it.
///
/// # Errors
///
/// [`Error::Database`] when a query fails (for instance when the
/// migrations have not been run).
///
/// # Examples
///
/// ```no_run
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
/// use outbox_diesel::stopped::{self, NewStop};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
/// let stop = NewStop {
///     consumer_group: "billing",
///     topic: "orders",
///     kafka_partition: 2,
///     kafka_offset: 17,
///     message_id: Some(uuid::Uuid::now_v7()),
///     error: "handler: invoice 42 has no customer",
/// };
/// let recorded = stopped::record_async(&mut conn, &stop).await?;
/// // A second stop of the same partition returns the first one.
/// let again = stopped::record_async(&mut conn, &NewStop { kafka_offset: 18, ..stop }).await?;
/// assert_eq!(again, recorded);
/// # Ok(()) }
/// ```
pub async fn record_async(
    conn: &mut AsyncPgConnection,
    stop: &NewStop<'_>,
) -> Result<StoppedPartition> {
    for _ in 0..RECORD_ATTEMPTS {
        // Skips only a conflict with the active stop (the unique partial index):
        // no row comes back then.
        let insert = diesel::insert_into(sp::outbox_stopped_partitions)
            .values(stop)
            .on_conflict((sp::consumer_group, sp::topic, sp::kafka_partition))
            .filter_target(sp::resumed_at.is_null())
            .do_nothing()
            .returning(StoppedPartition::as_returning());
        let inserted = diesel_async::RunQueryDsl::get_result(insert, conn)
            .await
            .optional()?;
        if let Some(row) = inserted {
            return Ok(row);
        }
        // An active stop exists. Read it; it may have been resumed in between,
        // in which case the insert goes through on the next try.
        let active =
            active_async(conn, stop.consumer_group, stop.topic, stop.kafka_partition).await?;
        if let Some(row) = active {
            return Ok(row);
        }
    }
    // Only under contention (the stop resumed between each insert and read), or
    // in a REPEATABLE READ transaction that cannot see the conflicting row: a
    // serialization failure, which a caller retrying transactions retries.
    let message = format!(
        "could not record the stop of {}[{}] for group {}: its active stop kept \
         conflicting but could not be read ({RECORD_ATTEMPTS} attempts)",
        stop.topic, stop.kafka_partition, stop.consumer_group
    );
    Err(Error::Database(diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::SerializationFailure,
        Box::new(message),
    )))
}

/// The active (not resumed) stop of `group`'s partition `partition` of
/// `topic`, if there is one.
///
/// # Errors
///
/// [`Error::Database`] when the query fails.
///
/// # Examples
///
/// ```no_run
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
/// if let Some(stop) = outbox_diesel::stopped::active_async(&mut conn, "billing", "orders", 2).await? {
///     println!("stopped at offset {}: {}", stop.kafka_offset, stop.error);
/// }
/// # Ok(()) }
/// ```
pub async fn active_async(
    conn: &mut AsyncPgConnection,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<StoppedPartition>> {
    let row = diesel_async::RunQueryDsl::get_result(active_query(group, topic, partition), conn)
        .await
        .optional()?;
    Ok(row)
}

/// The stop with id `id` (active or resumed), if there is one. A consumer
/// polls its own stops this way to learn when they are resumed.
///
/// # Errors
///
/// [`Error::Database`] when the query fails.
///
/// # Examples
///
/// ```no_run
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
///
/// # async fn f(id: i64) -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
/// match outbox_diesel::stopped::by_id_async(&mut conn, id).await? {
///     Some(stop) if stop.is_active() => println!("still stopped"),
///     Some(stop) => println!("resume from offset {}", stop.resume_offset()),
///     None => println!("no such stop"),
/// }
/// # Ok(()) }
/// ```
pub async fn by_id_async(
    conn: &mut AsyncPgConnection,
    id: i64,
) -> Result<Option<StoppedPartition>> {
    let row = diesel_async::RunQueryDsl::get_result(by_id_query(id), conn)
        .await
        .optional()?;
    Ok(row)
}

/// Marks the active stop of `group`'s partition `partition` of `topic`
/// resumed (`resumed_at = now()`) and returns it; `None` when the partition has
/// no active stop. A running consumer of the group then reads the partition
/// again from the stop's offset.
///
/// # Errors
///
/// [`Error::Database`] when the query fails.
///
/// # Examples
///
/// ```no_run
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
/// match outbox_diesel::stopped::resume_async(&mut conn, "billing", "orders", 2).await? {
///     Some(stop) => println!("resumes from offset {}", stop.kafka_offset),
///     None => println!("orders[2] was not stopped"),
/// }
/// # Ok(()) }
/// ```
pub async fn resume_async(
    conn: &mut AsyncPgConnection,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<StoppedPartition>> {
    let row = diesel_async::RunQueryDsl::get_result(resume_query(group, topic, partition), conn)
        .await
        .optional()?;
    Ok(row)
}

/// Marks the active stop of `group`'s partition `partition` of `topic` resumed
/// past its record, with `reason` (trimmed), and returns it; `None` when the
/// partition has no active stop. A running consumer of the group then reads the
/// partition again from the record after it
/// ([`resume_offset`](StoppedPartition::resume_offset)): the stopped record is
/// never applied. For a record no fix can make applicable; once the cause of
/// the failure is fixed, [`resume_async`] instead.
///
/// A consumer that takes the partition over later (the skip made while none
/// ran, or the skipped record the last before a restart) reads from the
/// group's committed offset, which may still be the skipped record's: it
/// passes over it ([`skipped_async`]).
///
/// # Errors
///
/// [`Error::Config`] (nothing written) when `reason` is empty or only
/// whitespace; [`Error::Database`] when the query fails.
///
/// # Examples
///
/// ```no_run
/// use diesel_async::{AsyncConnection, AsyncPgConnection};
///
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
/// let reason = "invoice 42 was deleted by hand: nothing to apply it to";
/// match outbox_diesel::stopped::skip_async(&mut conn, "billing", "orders", 2, reason).await? {
///     Some(stop) => println!(
///         "skipped offset {} (message {:?}); reads again from {}",
///         stop.kafka_offset, stop.message_id, stop.resume_offset()
///     ),
///     None => println!("orders[2] was not stopped"),
/// }
/// # Ok(()) }
/// ```
pub async fn skip_async(
    conn: &mut AsyncPgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    reason: &str,
) -> Result<Option<StoppedPartition>> {
    let reason = skip_reason(reason)?;
    let query = skip_query(group, topic, partition, reason);
    let row = diesel_async::RunQueryDsl::get_result(query, conn)
        .await
        .optional()?;
    Ok(row)
}

/// The offsets of the records skipped in partition `partition` of `topic`
/// for group `group` (`outbox partitions skip`), with their message ids when
/// known. A consumer taking the partition over reads from the group's
/// committed offset, which may still be a skipped record's (skipped while
/// no consumer held the partition, or the last record before a restart): it
/// acknowledges such a record without applying it.
///
/// # Errors
///
/// [`Error::Database`] when the query fails.
///
/// # Examples
///
/// ```no_run
/// # async fn f(conn: &mut diesel_async::AsyncPgConnection) -> outbox_diesel::Result<()> {
/// for (offset, message_id) in outbox_diesel::stopped::skipped_async(conn, "billing", "accounts", 2).await? {
///     println!("offset {offset} skipped (message {message_id:?})");
/// }
/// # Ok(()) }
/// ```
pub async fn skipped_async(
    conn: &mut AsyncPgConnection,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Vec<(i64, Option<uuid::Uuid>)>> {
    let query = sp::outbox_stopped_partitions
        .filter(sp::consumer_group.eq(group))
        .filter(sp::topic.eq(topic))
        .filter(sp::kafka_partition.eq(partition))
        .filter(sp::skip_reason.is_not_null())
        .select((sp::kafka_offset, sp::message_id));
    Ok(diesel_async::RunQueryDsl::load(query, conn).await?)
}

/// Marks stop `id` resumed if it is still active; `true` when it was. For a
/// consumer that recorded a stop and lost the partition meanwhile.
///
/// # Errors
///
/// [`Error::Database`] when the update fails.
///
/// # Examples
///
/// ```no_run
/// # async fn f(conn: &mut diesel_async::AsyncPgConnection) -> outbox_diesel::Result<()> {
/// let withdrawn = outbox_diesel::stopped::resume_by_id_async(conn, 7).await?;
/// # Ok(()) }
/// ```
pub async fn resume_by_id_async(conn: &mut AsyncPgConnection, id: i64) -> Result<bool> {
    let updated = diesel_async::RunQueryDsl::execute(
        diesel::update(sp::outbox_stopped_partitions)
            .filter(sp::id.eq(id))
            .filter(sp::resumed_at.is_null())
            .set(sp::resumed_at.eq(dsl::now)),
        conn,
    )
    .await?;
    Ok(updated == 1)
}

/// The stops, by id (the order they were recorded): the active ones, and the
/// resumed ones too when `include_resumed`; those of `group` only when it is
/// given.
///
/// # Errors
///
/// [`Error::Database`] when the query fails.
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let active = outbox_diesel::stopped::list(&mut conn, Some("billing"), false)?;
/// assert!(active.iter().all(|stop| stop.is_active() && stop.consumer_group == "billing"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn list(
    conn: &mut PgConnection,
    group: Option<&str>,
    include_resumed: bool,
) -> Result<Vec<StoppedPartition>> {
    let mut query = sp::outbox_stopped_partitions
        .select(StoppedPartition::as_select())
        .order(sp::id)
        .into_boxed();
    if let Some(group) = group {
        query = query.filter(sp::consumer_group.eq(group));
    }
    if !include_resumed {
        query = query.filter(sp::resumed_at.is_null());
    }
    Ok(diesel::RunQueryDsl::load(query, conn)?)
}

/// [`resume_async`] on a synchronous connection: marks the active stop of
/// `group`'s partition `partition` of `topic` resumed and returns it; `None`
/// when there is none.
///
/// # Errors
///
/// [`Error::Database`] when the query fails.
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// if outbox_diesel::stopped::resume(&mut conn, "billing", "orders", 2)?.is_none() {
///     eprintln!("orders[2] was not stopped for billing");
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn resume(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<StoppedPartition>> {
    let row =
        diesel::RunQueryDsl::get_result(resume_query(group, topic, partition), conn).optional()?;
    Ok(row)
}

/// [`skip_async`] on a synchronous connection: marks the active stop of
/// `group`'s partition `partition` of `topic` resumed past its record, with
/// `reason` (trimmed), and returns it; `None` when there is none.
///
/// # Errors
///
/// [`Error::Config`] (nothing written) when `reason` is empty or only
/// whitespace; [`Error::Database`] when the query fails.
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let reason = "not JSON: written by hand with kcat";
/// if let Some(stop) = outbox_diesel::stopped::skip(&mut conn, "billing", "orders", 2, reason)? {
///     assert_eq!(stop.resume_offset(), stop.kafka_offset + 1);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn skip(
    conn: &mut PgConnection,
    group: &str,
    topic: &str,
    partition: i32,
    reason: &str,
) -> Result<Option<StoppedPartition>> {
    let reason = skip_reason(reason)?;
    let query = skip_query(group, topic, partition, reason);
    let row = diesel::RunQueryDsl::get_result(query, conn).optional()?;
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sql(query: &impl diesel::query_builder::QueryFragment<Pg>) -> String {
        diesel::debug_query::<Pg, _>(query).to_string()
    }

    #[test]
    fn resume_touches_only_the_active_stop() {
        let text = sql(&resume_query("g", "t", 1));
        assert!(
            text.starts_with(
                "UPDATE \"outbox_stopped_partitions\" SET \"resumed_at\" = CURRENT_TIMESTAMP WHERE"
            ),
            "{text}"
        );
        assert!(text.contains("\"resumed_at\" IS NULL"), "{text}");
        assert!(text.contains("RETURNING"), "{text}");
    }

    #[test]
    fn skip_touches_only_the_active_stop_and_keeps_the_reason() {
        let text = sql(&skip_query("g", "t", 1, "garbage"));
        assert!(
            text.starts_with(
                "UPDATE \"outbox_stopped_partitions\" SET \"resumed_at\" = CURRENT_TIMESTAMP, \
                 \"skip_reason\" = $1 WHERE"
            ),
            "{text}"
        );
        assert!(text.contains("\"resumed_at\" IS NULL"), "{text}");
        assert!(text.contains("RETURNING"), "{text}");
        assert!(text.contains("\"garbage\""), "the reason is bound: {text}");
    }

    #[test]
    fn a_skip_needs_a_reason() {
        assert_eq!(skip_reason("  garbage\n").unwrap(), "garbage");
        for blank in ["", " ", "\t\n"] {
            let error = skip_reason(blank).unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::Config {
                        name: "skip reason",
                        ..
                    }
                ),
                "{error:?}"
            );
            assert_eq!(
                error.to_string(),
                "invalid setting `skip reason`: empty: say why the record can never be applied \
                 (it is kept with the stop)"
            );
        }
    }

    #[test]
    fn a_skipped_stop_resumes_after_its_record() {
        let stop = StoppedPartition {
            id: 1,
            consumer_group: "g".into(),
            topic: "t".into(),
            kafka_partition: 0,
            kafka_offset: 41,
            message_id: None,
            error: "boom".into(),
            stopped_at: Utc::now(),
            resumed_at: None,
            skip_reason: None,
        };
        assert_eq!((stop.resume_offset(), stop.is_skipped()), (41, false));
        let resumed = StoppedPartition {
            resumed_at: Some(Utc::now()),
            ..stop.clone()
        };
        assert_eq!(resumed.resume_offset(), 41);
        let skipped = StoppedPartition {
            skip_reason: Some("garbage".into()),
            ..resumed
        };
        assert_eq!((skipped.resume_offset(), skipped.is_skipped()), (42, true));
    }
}
