//! Projections: consumers whose position per partition lives in their own
//! database, moved in the transaction of what they apply, and rebuilt from
//! the earliest records on request.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::QueryResult;
use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl, SimpleAsyncConnection};
use outbox::BoxFuture;
use rdkafka::consumer::Consumer as _;
use tokio::sync::watch;

use super::positions::{self, Range};
use super::{Pool, Shared, checkout};
use crate::error::{Error, Result};
use crate::schema::outbox_projections as pr;

/// A user's reset of a projection's tables, run in the rebuild's transaction.
pub type ResetHook =
    Arc<dyn for<'c> Fn(&'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>> + Send + Sync>;

/// What a rebuild does first, in its transaction, in the order given.
#[derive(Clone)]
enum Reset {
    Sql(String),
    Hook(ResetHook),
}

/// Makes a consumer a projection (see
/// [`ConsumerBuilder::projection`](super::ConsumerBuilder::projection)): its
/// position in each partition lives in `outbox_projection_positions`, under
/// the consumer's group as the projection's name, moved in the transaction
/// of the records it applies. No inbox row is written.
///
/// A rebuild ([`Projection::request_rebuild`], `outbox projections rebuild
/// NAME`, or [`rebuild_at_start`](Self::rebuild_at_start)) runs the resets
/// given here, sets every partition back to its earliest record and re-applies
/// everything up to the high watermarks taken when it starts, with the
/// follow-ups of those records dropped (they were sent the first time) unless
/// [`follow_ups_in_rebuild`](Self::follow_ups_in_rebuild); then the consumer
/// goes on live.
///
/// # Examples
///
/// ```
/// use outbox_diesel::consumer::Projection;
///
/// let projection = Projection::new().reset_sql("TRUNCATE order_totals");
/// ```
#[derive(Clone, Default)]
pub struct Projection {
    resets: Vec<Reset>,
    follow_ups_in_rebuild: bool,
    rebuild_at_start: bool,
    progress: Option<bool>,
}

impl std::fmt::Debug for Projection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Projection")
            .field("resets", &self.resets.len())
            .field("follow_ups_in_rebuild", &self.follow_ups_in_rebuild)
            .field("rebuild_at_start", &self.rebuild_at_start)
            .finish()
    }
}

/// What the partition tasks need of the projection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProjectionSettings {
    pub(crate) follow_ups_in_rebuild: bool,
}

impl Projection {
    /// A projection with no reset (a rebuild then only re-applies: give a
    /// reset unless the controllers overwrite every row they own).
    pub fn new() -> Self {
        Self::default()
    }

    /// SQL run first by a rebuild, in its transaction (usually `TRUNCATE` of
    /// the projection's tables; several statements may be given, separated
    /// by `;`).
    ///
    /// # Examples
    ///
    /// ```
    /// # use outbox_diesel::consumer::Projection;
    /// let projection = Projection::new().reset_sql("TRUNCATE order_totals, customer_totals");
    /// ```
    pub fn reset_sql(mut self, sql: impl Into<String>) -> Self {
        self.resets.push(Reset::Sql(sql.into()));
        self
    }

    /// A reset of your own, run by a rebuild in its transaction.
    ///
    /// # Examples
    ///
    /// ```
    /// # use outbox_diesel::consumer::Projection;
    /// use diesel_async::RunQueryDsl;
    ///
    /// let projection = Projection::new().reset_with(|conn| {
    ///     Box::pin(async move {
    ///         diesel::sql_query("DELETE FROM order_totals WHERE archived = false")
    ///             .execute(conn)
    ///             .await
    ///             .map(drop)
    ///     })
    /// });
    /// ```
    pub fn reset_with<F>(mut self, hook: F) -> Self
    where
        F: for<'c> Fn(&'c mut AsyncPgConnection) -> BoxFuture<'c, QueryResult<()>>
            + Send
            + Sync
            + 'static,
    {
        self.resets.push(Reset::Hook(Arc::new(hook)));
        self
    }

    /// Whether records re-applied by a rebuild enqueue their follow-ups
    /// (default `false`: they were sent when the records were first applied).
    pub fn follow_ups_in_rebuild(mut self, send: bool) -> Self {
        self.follow_ups_in_rebuild = send;
        self
    }

    /// Rebuilds when the consumer starts, as if requested: at every start,
    /// in every process of the projection (each truncates and replays). For
    /// a one-off run (a job, a benchmark); a service asks with
    /// [`request_rebuild`](Self::request_rebuild) or `outbox projections
    /// rebuild`, done once by whichever process takes it.
    pub fn rebuild_at_start(mut self) -> Self {
        self.rebuild_at_start = true;
        self
    }

    /// Whether a rebuild draws a progress bar on standard error (records,
    /// records/s, time left); default: when standard error is a terminal.
    /// Progress is also logged every 10 s.
    pub fn progress_bar(mut self, draw: bool) -> Self {
        self.progress = Some(draw);
        self
    }

    pub(crate) fn settings(&self) -> ProjectionSettings {
        ProjectionSettings {
            follow_ups_in_rebuild: self.follow_ups_in_rebuild,
        }
    }

    /// Asks for a rebuild of projection `name`: its consumers rebuild at
    /// their next start, or within their resume poll interval while running.
    /// Returns `false` when no projection of that name ever ran.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(conn: &mut diesel::PgConnection) -> outbox_diesel::Result<()> {
    /// use outbox_diesel::consumer::Projection;
    ///
    /// if !Projection::request_rebuild(conn, "order_totals")? {
    ///     eprintln!("no projection `order_totals` has run yet");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn request_rebuild(conn: &mut PgConnection, name: &str) -> Result<bool> {
        let updated = diesel::RunQueryDsl::execute(
            diesel::update(pr::table.find(name)).set(pr::rebuild_requested_at.eq(diesel::dsl::now)),
            conn,
        )?;
        Ok(updated == 1)
    }

    /// [`request_rebuild`](Self::request_rebuild) on an async connection.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(conn: &mut diesel_async::AsyncPgConnection) -> outbox_diesel::Result<()> {
    /// outbox_diesel::consumer::Projection::request_rebuild_async(conn, "order_totals").await?;
    /// # Ok(()) }
    /// ```
    pub async fn request_rebuild_async(conn: &mut AsyncPgConnection, name: &str) -> Result<bool> {
        let updated = diesel::update(pr::table.find(name))
            .set(pr::rebuild_requested_at.eq(diesel::dsl::now))
            .execute(conn)
            .await?;
        Ok(updated == 1)
    }
}

fn not_ready(reason: String) -> Error {
    Error::NotReady {
        what: format!("the projection's database cannot be reached: {reason}"),
        source: None,
    }
}

/// Registers the projection and rebuilds it when asked; called before the
/// consumer subscribes.
pub(crate) async fn start(
    shared: &Arc<Shared>,
    projection: &Projection,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let mut conn = checkout(&shared.pool).await.map_err(not_ready)?;
    let requested = positions::register(&mut conn, &shared.group, shared.routes.topics()).await?;
    drop(conn);
    if requested || projection.rebuild_at_start {
        rebuild(shared, projection, projection.rebuild_at_start, shutdown).await?;
    }
    Ok(())
}

/// While the consumer runs: rebuilds when one is requested, then has every
/// partition task read its position again (within `interval`); and has them
/// read it again when another process rebuilt the projection (its
/// `rebuilt_at` moved), so that idle partitions are replayed too.
pub(crate) async fn watch_requests(
    shared: Arc<Shared>,
    projection: Projection,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    type At = Option<chrono::DateTime<chrono::Utc>>;
    // `None` until first read.
    let mut seen: Option<At> = None;
    loop {
        let state = match checkout(&shared.pool).await {
            Ok(mut conn) => pr::table
                .find(&shared.group)
                .select((pr::rebuild_requested_at, pr::rebuilt_at))
                .first::<(At, At)>(&mut conn)
                .await
                .ok(),
            Err(_) => None,
        };
        if let Some((requested, rebuilt)) = state {
            if seen.is_some_and(|seen| seen != rebuilt) {
                tracing::info!(projection = %shared.group, "projection rebuilt by another process: reading the positions again");
                let _ = shared.control.send(super::kafka::Control::Reposition);
            }
            seen = Some(rebuilt);
            if requested.is_some() {
                match rebuild(&shared, &projection, false, shutdown.clone()).await {
                    Ok(true) => {
                        let _ = shared.control.send(super::kafka::Control::Reposition);
                        // Its own rebuild: not to be taken for another's.
                        seen = None;
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(projection = %shared.group, error = %crate::error::error_chain(&error),
                            "projection rebuild failed; trying again");
                    }
                }
            }
        }
        if !super::tick(interval, &mut shutdown).await {
            return;
        }
    }
}

/// Resets the projection and its positions in one transaction, then follows
/// the replay's progress in the background until it catches up. Unless
/// `forced`, only while a rebuild is requested (another process may have
/// done it): `false` when nothing was done.
pub(crate) async fn rebuild(
    shared: &Arc<Shared>,
    projection: &Projection,
    forced: bool,
    shutdown: watch::Receiver<bool>,
) -> Result<bool> {
    let ranges = watermarks(shared).await?;
    let total: i64 = ranges.iter().map(|r| r.high - r.low).sum();
    let mut conn = checkout(&shared.pool).await.map_err(not_ready)?;
    let name = shared.group.clone();
    let done = conn
        .transaction::<_, diesel::result::Error, _>(async |conn| {
            if !positions::lock_requested(conn, &name).await? && !forced {
                return Ok(false);
            }
            let cleared = positions::clear(conn, &name).await?;
            for reset in &projection.resets {
                match reset {
                    Reset::Sql(sql) => conn.batch_execute(sql).await?,
                    Reset::Hook(hook) => hook(conn).await?,
                }
            }
            positions::start_replay(conn, &name, &ranges, &cleared).await?;
            Ok(true)
        })
        .await?;
    if !done {
        return Ok(false);
    }
    tracing::info!(projection = %name, partitions = ranges.len(), records = total,
        "projection reset; re-applying from the earliest records");
    metrics::counter!("outbox_projection_rebuilds_total").increment(1);
    let draw = projection
        .progress
        .unwrap_or_else(|| std::io::IsTerminal::is_terminal(&std::io::stderr()));
    tokio::spawn(follow(shared.pool.clone(), name, total, draw, shutdown));
    Ok(true)
}

/// Every partition of the projection's topics, with its low and high
/// watermarks now.
async fn watermarks(shared: &Arc<Shared>) -> Result<Vec<Range>> {
    let shared = Arc::clone(shared);
    tokio::task::spawn_blocking(move || {
        let timeout = Duration::from_secs(10);
        let mut ranges = Vec::new();
        for topic in shared.routes.topics() {
            let kafka = |source| Error::Kafka {
                context: format!("reading the partitions of {topic} for a rebuild"),
                source,
            };
            let metadata = shared
                .consumer
                .fetch_metadata(Some(topic), timeout)
                .map_err(kafka)?;
            let meta = metadata
                .topics()
                .iter()
                .find(|meta| meta.name() == topic)
                .filter(|meta| meta.error().is_none() && !meta.partitions().is_empty())
                .ok_or_else(|| Error::NotReady {
                    what: format!(
                        "no partitions of {topic} at Kafka: a rebuild needs every topic the \
                         projection reads (nothing was reset)"
                    ),
                    source: None,
                })?;
            {
                for partition in meta.partitions() {
                    let (low, high) = shared
                        .consumer
                        .fetch_watermarks(topic, partition.id(), timeout)
                        .map_err(kafka)?;
                    ranges.push(Range {
                        topic: topic.clone(),
                        partition: partition.id(),
                        low,
                        high,
                    });
                }
            }
        }
        Ok(ranges)
    })
    .await
    .map_err(|error| Error::NotReady {
        what: format!("reading the watermarks for a rebuild: {error}"),
        source: None,
    })?
}

/// The bar of a rebuild of `name` re-applying `total` records (records,
/// records/s, time left), as the consumer and `projections rebuild --wait`
/// draw it.
pub(crate) fn rebuild_bar(name: &str, total: i64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{prefix} [{bar:30}] {human_pos}/{human_len} records, {per_sec}, {eta} left",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar.set_prefix(format!("rebuilding {name}"));
    bar
}

/// Shows a rebuild's progress (a bar on a terminal, a log line every 10 s)
/// from the stored positions, until it catches up or the consumer stops.
async fn follow(
    pool: Pool,
    name: String,
    total: i64,
    draw: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let bar = if draw {
        rebuild_bar(&name, total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut logged = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = shutdown.wait_for(|stop| *stop) => {
                bar.abandon();
                return;
            }
        }
        let Ok(mut conn) = checkout(&pool).await else {
            continue;
        };
        let Ok(behind) = positions::rebuild_left(&mut conn, &name).await else {
            continue;
        };
        let applied = (total - behind).max(0);
        bar.set_position(applied as u64);
        let elapsed = started.elapsed().as_secs_f64().max(1e-3);
        if behind == 0 {
            bar.finish();
            tracing::info!(projection = %name, records = total,
                seconds = elapsed, per_second = (total as f64 / elapsed).round(),
                "projection rebuilt: caught up with the records of its start; live from here");
            return;
        }
        if logged.elapsed() >= Duration::from_secs(10) {
            logged = Instant::now();
            tracing::info!(projection = %name, applied, total,
                per_second = (applied as f64 / elapsed).round(), "projection rebuild");
        }
    }
}

/// A projection as the database holds it: what `outbox projections list`
/// shows.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProjectionStatus {
    /// Its name (its consumer group).
    pub name: String,
    /// The topics it reads.
    pub topics: Vec<String>,
    /// When a rebuild was asked for that no consumer has started yet.
    pub rebuild_requested_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When its last rebuild reset it.
    pub rebuilt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where each partition stands, by topic and partition.
    pub partitions: Vec<PartitionPosition>,
}

/// One partition of a [`ProjectionStatus`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionPosition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The first record not applied yet.
    pub next_offset: i64,
    /// While a rebuild re-applies: the end of what it re-applies.
    pub replay_until: Option<i64>,
    /// When the position last moved.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl PartitionPosition {
    /// Records a rebuild still has to re-apply in this partition.
    pub fn replay_left(&self) -> i64 {
        self.replay_until
            .map_or(0, |until| (until - self.next_offset).max(0))
    }
}

impl Projection {
    /// Every projection that has run, by name, with its positions.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(conn: &mut diesel::PgConnection) -> outbox_diesel::Result<()> {
    /// for projection in outbox_diesel::consumer::Projection::list(conn)? {
    ///     let left: i64 = projection.partitions.iter().map(|p| p.replay_left()).sum();
    ///     println!("{}: {} partitions, {left} records left to rebuild", projection.name, projection.partitions.len());
    /// }
    /// # Ok(()) }
    /// ```
    pub fn list(conn: &mut PgConnection) -> Result<Vec<ProjectionStatus>> {
        use crate::schema::outbox_projection_positions as pp;
        type Row = (
            String,
            Vec<String>,
            Option<chrono::DateTime<chrono::Utc>>,
            Option<chrono::DateTime<chrono::Utc>>,
        );
        type PositionRow = (
            String,
            String,
            i32,
            i64,
            Option<i64>,
            chrono::DateTime<chrono::Utc>,
        );
        let projections: Vec<Row> = diesel::RunQueryDsl::load(
            pr::table.order(pr::name).select((
                pr::name,
                pr::topics,
                pr::rebuild_requested_at,
                pr::rebuilt_at,
            )),
            conn,
        )?;
        let rows: Vec<PositionRow> = diesel::RunQueryDsl::load(
            pp::table
                .order((pp::projection, pp::topic, pp::kafka_partition))
                .select((
                    pp::projection,
                    pp::topic,
                    pp::kafka_partition,
                    pp::next_offset,
                    pp::replay_until,
                    pp::updated_at,
                )),
            conn,
        )?;
        let mut positions: Vec<(String, PartitionPosition)> = rows
            .into_iter()
            .map(
                |(name, topic, partition, next_offset, replay_until, updated_at)| {
                    (
                        name,
                        PartitionPosition {
                            topic,
                            partition,
                            next_offset,
                            replay_until,
                            updated_at,
                        },
                    )
                },
            )
            .collect();
        Ok(projections
            .into_iter()
            .map(|(name, topics, rebuild_requested_at, rebuilt_at)| {
                let partitions = positions
                    .extract_if(.., |(owner, _)| *owner == name)
                    .map(|(_, position)| position)
                    .collect();
                ProjectionStatus {
                    name,
                    topics,
                    rebuild_requested_at,
                    rebuilt_at,
                    partitions,
                }
            })
            .collect())
    }
}
