//! Operations on the outbox table, for operators and the `outbox` command line:
//! what is waiting ([`status`]), what is parked ([`parked`]), and sending parked
//! rows again ([`retry_parked`]) or giving up on them ([`discard_parked`]).
//!
//! A row is *parked* when the relay found it can never be published as it is
//! (a record too large, a topic that does not exist): it stays in
//! `outbox_messages` with `parked_at` and `last_error` set, and the later rows of
//! its topic and partition key wait behind it (they are *held back*) so that key
//! is never reordered. Fix the cause (create the topic, raise the broker's limit),
//! then retry the parked row; or discard it, and the rows behind it go on.
//!
//! Every function takes a synchronous Diesel connection whose `search_path` holds
//! the outbox tables.
//!
//! # Examples
//!
//! ```no_run
//! use diesel::{Connection, PgConnection};
//! use outbox_diesel::ops::{self, Selection};
//!
//! let mut conn = PgConnection::establish("postgres://localhost/app")?;
//! let status = ops::status(&mut conn)?;
//! println!("{} waiting, {} parked", status.waiting, status.parked);
//! for row in ops::parked(&mut conn, 10)? {
//!     println!("{} {} {:?}", row.id, row.topic, row.last_error);
//! }
//! let retried = ops::retry_parked(&mut conn, &Selection::All)?;
//! println!("retried {}", retried.count);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Text};
use serde::Serialize;

use crate::error::Result;
use crate::schema::outbox_messages;

/// What the outbox holds: the whole table, then each topic.
///
/// Serialized (`outbox status --json`) with these field names, which are stable:
///
/// ```json
/// {"waiting": 3, "parked": 1, "held_back": 1, "oldest_waiting_seconds": 2.5,
///  "topics": [{"topic": "accounts", "waiting": 2, "parked": 1, "held_back": 1,
///              "oldest_waiting_seconds": 2.5}, …]}
/// ```
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let status = outbox_diesel::ops::status(&mut conn)?;
/// if let Some(age) = status.oldest_waiting_seconds {
///     println!("the relay is {age:.1} s behind");
/// }
/// println!("{}", serde_json::to_string(&status).unwrap());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// Rows waiting for the relay (not parked), held back ones included.
    pub waiting: u64,
    /// Parked rows: the relay gave up on them until they are retried or discarded.
    pub parked: u64,
    /// Waiting rows the relay skips because an earlier row of their topic and
    /// partition key is parked.
    pub held_back: u64,
    /// Age of the oldest waiting row, in seconds (the relay's lag); `None` when
    /// nothing is waiting.
    pub oldest_waiting_seconds: Option<f64>,
    /// The same, per topic, by topic name.
    pub topics: Vec<TopicStatus>,
}

/// The rows of one topic; see [`Status`].
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// for topic in outbox_diesel::ops::status(&mut conn)?.topics {
///     println!("{}: {} waiting, {} parked", topic.topic, topic.waiting, topic.parked);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[non_exhaustive]
pub struct TopicStatus {
    /// The Kafka topic.
    pub topic: String,
    /// Rows waiting for the relay (not parked).
    pub waiting: u64,
    /// Parked rows.
    pub parked: u64,
    /// Waiting rows behind a parked row of their partition key.
    pub held_back: u64,
    /// Age of the topic's oldest waiting row, in seconds.
    pub oldest_waiting_seconds: Option<f64>,
}

/// A row of [`STATUS`].
#[derive(QueryableByName)]
struct TopicRow {
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = BigInt)]
    waiting: i64,
    #[diesel(sql_type = BigInt)]
    parked: i64,
    #[diesel(sql_type = BigInt)]
    held_back: i64,
    #[diesel(sql_type = Nullable<Double>)]
    oldest_waiting_seconds: Option<f64>,
}

/// One query, so the totals and the topics agree. A waiting row is held back
/// when a parked row of its topic and key precedes it (the relay's own rule);
/// the parked-rows index serves that lookup.
const STATUS: &str = "SELECT m.topic, \
       count(*) FILTER (WHERE m.parked_at IS NULL) AS waiting, \
       count(*) FILTER (WHERE m.parked_at IS NOT NULL) AS parked, \
       count(*) FILTER (WHERE m.parked_at IS NULL AND EXISTS ( \
           SELECT 1 FROM outbox_messages p \
           WHERE p.parked_at IS NOT NULL AND p.topic = m.topic \
             AND p.partition_key = m.partition_key AND p.id < m.id)) AS held_back, \
       extract(epoch FROM now() - min(m.created_at) FILTER (WHERE m.parked_at IS NULL))::float8 \
         AS oldest_waiting_seconds \
     FROM outbox_messages m \
     GROUP BY m.topic \
     ORDER BY m.topic";

/// Counts the waiting, parked and held-back rows, and the age of the oldest
/// waiting row, in all and per topic.
///
/// Counting reads the whole table: cheap when the relay keeps up (the table is
/// then nearly empty), a scan when millions of rows wait.
///
/// # Errors
///
/// [`Error::Database`](crate::Error::Database) when the query fails (for instance
/// when the migrations have not been run on this schema).
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let status = outbox_diesel::ops::status(&mut conn)?;
/// assert_eq!(status.waiting, status.topics.iter().map(|t| t.waiting).sum::<u64>());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn status(conn: &mut PgConnection) -> Result<Status> {
    let rows: Vec<TopicRow> = diesel::sql_query(STATUS).load(conn)?;
    // count(*) is never negative.
    let count = |n: i64| u64::try_from(n).unwrap_or_default();
    let topics: Vec<TopicStatus> = rows
        .into_iter()
        .map(|row| TopicStatus {
            topic: row.topic,
            waiting: count(row.waiting),
            parked: count(row.parked),
            held_back: count(row.held_back),
            oldest_waiting_seconds: row.oldest_waiting_seconds,
        })
        .collect();
    let mut status = Status::default();
    for topic in &topics {
        status.waiting += topic.waiting;
        status.parked += topic.parked;
        status.held_back += topic.held_back;
        status.oldest_waiting_seconds =
            match (status.oldest_waiting_seconds, topic.oldest_waiting_seconds) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
    }
    status.topics = topics;
    Ok(status)
}

/// A parked row, without its payload; see [`parked`].
///
/// Serialized (`outbox parked list --json`) with these field names, timestamps
/// in RFC 3339.
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// for row in outbox_diesel::ops::parked(&mut conn, 100)? {
///     println!("{} {}[{}] after {} attempts: {}", row.id, row.topic, row.partition_key,
///         row.attempts, row.last_error.as_deref().unwrap_or("-"));
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Queryable)]
#[non_exhaustive]
pub struct ParkedRow {
    /// The row's id (what [`Selection::Ids`] takes).
    pub id: i64,
    /// The message's id (its `message_id` header).
    pub message_id: uuid::Uuid,
    /// The Kafka topic.
    pub topic: String,
    /// The partition key (the record's key).
    pub partition_key: String,
    /// Failed attempts to publish it.
    pub attempts: i32,
    /// Why the last attempt failed, as the broker said it.
    pub last_error: Option<String>,
    /// When the relay parked it.
    pub parked_at: DateTime<Utc>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
    /// Size of the record's value, in bytes.
    pub payload_bytes: i64,
}

/// The first `limit` parked rows, by id (the order the relay would send them).
///
/// # Errors
///
/// [`Error::Database`](crate::Error::Database) when the query fails.
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let rows = outbox_diesel::ops::parked(&mut conn, 10)?;
/// assert!(rows.windows(2).all(|w| w[0].id < w[1].id));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn parked(conn: &mut PgConnection, limit: i64) -> Result<Vec<ParkedRow>> {
    use outbox_messages::dsl as m;
    let rows = m::outbox_messages
        .filter(m::parked_at.is_not_null())
        .order(m::id)
        .limit(limit)
        .select((
            m::id,
            m::message_id,
            m::topic,
            m::partition_key,
            m::attempts,
            m::last_error,
            m::parked_at.assume_not_null(),
            m::created_at,
            diesel::dsl::sql::<BigInt>("octet_length(payload)::bigint"),
        ))
        .load(conn)?;
    Ok(rows)
}

/// Which parked rows [`retry_parked`] and [`discard_parked`] act on.
///
/// # Examples
///
/// ```
/// use outbox_diesel::ops::Selection;
///
/// let some = Selection::Ids(vec![17, 18]);
/// let every = Selection::All;
/// assert_ne!(some, every);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every parked row.
    All,
    /// The rows with these ids (`id`, not `message_id`); each must be parked.
    Ids(Vec<i64>),
}

/// What [`retry_parked`] or [`discard_parked`] did.
///
/// Ids that name no parked row are not an error of the function (the parked
/// rows among the selection are still acted on, as `rm` removes the files that
/// exist); they are listed here, and [`is_complete`](Applied::is_complete) is
/// `false`. Callers should report them: the `outbox` command exits with an error
/// naming them.
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
/// use outbox_diesel::ops::{self, Selection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let applied = ops::retry_parked(&mut conn, &Selection::Ids(vec![17, 18]))?;
/// if !applied.is_complete() {
///     eprintln!("not parked: {:?}, not in the outbox: {:?}", applied.not_parked, applied.missing);
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
#[must_use = "ids that name no parked row are reported here, not as an error"]
pub struct Applied {
    /// Rows retried or discarded.
    pub count: usize,
    /// Ids asked for whose row is in the outbox but not parked (it is waiting for
    /// the relay); left as they are. Ascending.
    pub not_parked: Vec<i64>,
    /// Ids asked for that are not in the outbox (already published, discarded,
    /// or never there). Ascending.
    pub missing: Vec<i64>,
}

impl Applied {
    /// `true` when every id asked for named a parked row (always for
    /// [`Selection::All`]).
    ///
    /// # Examples
    ///
    /// ```
    /// assert!(outbox_diesel::ops::Applied::default().is_complete());
    /// ```
    pub fn is_complete(&self) -> bool {
        self.not_parked.is_empty() && self.missing.is_empty()
    }
}

/// Makes parked rows waiting again (`parked_at = NULL`), so the relay sends them
/// on its next batch, in id order with the rows held behind them. Their
/// `attempts` and `last_error` are kept, as a record of what happened.
///
/// Retry once the cause is fixed: a row parked for a missing topic parks again
/// at once if the topic is still missing.
///
/// # Errors
///
/// [`Error::Database`](crate::Error::Database) when a query fails; nothing is
/// changed then. Ids that name no parked row are reported in the [`Applied`].
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
/// use outbox_diesel::ops::{self, Selection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let applied = ops::retry_parked(&mut conn, &Selection::All)?;
/// println!("{} rows will be sent again", applied.count);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn retry_parked(conn: &mut PgConnection, selection: &Selection) -> Result<Applied> {
    use outbox_messages::dsl as m;
    conn.transaction(|conn| {
        let parked = m::outbox_messages.filter(m::parked_at.is_not_null());
        let none: Option<DateTime<Utc>> = None;
        match selection {
            Selection::All => {
                let count = diesel::update(parked)
                    .set(m::parked_at.eq(none))
                    .execute(conn)?;
                Ok(Applied {
                    count,
                    ..Applied::default()
                })
            }
            Selection::Ids(ids) => {
                let done: Vec<i64> = diesel::update(parked.filter(m::id.eq_any(ids)))
                    .set(m::parked_at.eq(none))
                    .returning(m::id)
                    .get_results(conn)?;
                not_done(conn, ids, &done)
            }
        }
    })
}

/// Deletes parked rows: they will never be published. The rows held behind
/// them go on with the relay's next batch.
///
/// # Errors
///
/// [`Error::Database`](crate::Error::Database) when a query fails; nothing is
/// deleted then. Ids that name no parked row are reported in the [`Applied`].
///
/// # Examples
///
/// ```no_run
/// use diesel::{Connection, PgConnection};
/// use outbox_diesel::ops::{self, Selection};
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let applied = ops::discard_parked(&mut conn, &Selection::Ids(vec![17]))?;
/// assert!(applied.is_complete(), "17 was not parked");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn discard_parked(conn: &mut PgConnection, selection: &Selection) -> Result<Applied> {
    use outbox_messages::dsl as m;
    conn.transaction(|conn| {
        let parked = m::outbox_messages.filter(m::parked_at.is_not_null());
        match selection {
            Selection::All => {
                let count = diesel::delete(parked).execute(conn)?;
                Ok(Applied {
                    count,
                    ..Applied::default()
                })
            }
            Selection::Ids(ids) => {
                let done: Vec<i64> = diesel::delete(parked.filter(m::id.eq_any(ids)))
                    .returning(m::id)
                    .get_results(conn)?;
                not_done(conn, ids, &done)
            }
        }
    })
}

/// Sorts the ids asked for but not acted on into rows that are there but not
/// parked, and ids that are not in the table.
fn not_done(conn: &mut PgConnection, asked: &[i64], done: &[i64]) -> Result<Applied> {
    use outbox_messages::dsl as m;
    let done_set: BTreeSet<i64> = done.iter().copied().collect();
    let rest: Vec<i64> = asked
        .iter()
        .copied()
        .collect::<BTreeSet<i64>>()
        .into_iter()
        .filter(|id| !done_set.contains(id))
        .collect();
    let present: BTreeSet<i64> = if rest.is_empty() {
        BTreeSet::new()
    } else {
        m::outbox_messages
            .filter(m::id.eq_any(&rest))
            .select(m::id)
            .load::<i64>(conn)?
            .into_iter()
            .collect()
    };
    let (not_parked, missing) = rest.into_iter().partition(|id| present.contains(id));
    Ok(Applied {
        count: done.len(),
        not_parked,
        missing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON field names are an interface (`outbox status --json`): pinned.
    #[test]
    fn status_json_field_names() {
        let status = Status {
            waiting: 3,
            parked: 1,
            held_back: 1,
            oldest_waiting_seconds: Some(2.5),
            topics: vec![TopicStatus {
                topic: "accounts".into(),
                waiting: 3,
                parked: 1,
                held_back: 1,
                oldest_waiting_seconds: None,
            }],
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"waiting":3,"parked":1,"held_back":1,"oldest_waiting_seconds":2.5,"topics":[{"topic":"accounts","waiting":3,"parked":1,"held_back":1,"oldest_waiting_seconds":null}]}"#
        );
    }

    #[test]
    fn parked_row_json_field_names() {
        let at = DateTime::parse_from_rfc3339("2026-11-24T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let row = ParkedRow {
            id: 7,
            message_id: uuid::Uuid::nil(),
            topic: "accounts".into(),
            partition_key: "42".into(),
            attempts: 1,
            last_error: Some("Broker: Message size too large".into()),
            parked_at: at,
            created_at: at,
            payload_bytes: 1234,
        };
        assert_eq!(
            serde_json::to_string(&row).unwrap(),
            r#"{"id":7,"message_id":"00000000-0000-0000-0000-000000000000","topic":"accounts","partition_key":"42","attempts":1,"last_error":"Broker: Message size too large","parked_at":"2026-11-24T10:00:00Z","created_at":"2026-11-24T10:00:00Z","payload_bytes":1234}"#
        );
    }
}
