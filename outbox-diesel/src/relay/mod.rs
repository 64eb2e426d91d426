//! The relay: publishes committed outbox rows to the broker, in row order per
//! key, and deletes each row once the broker has acknowledged it.
//!
//! One loop, one PostgreSQL session:
//!
//! 1. wait for `NOTIFY outbox_messages` (sent by the table's trigger at commit),
//!    the poll interval, or shutdown; go on at once while rows remain;
//! 2. read a batch of the oldest rows (of the shards this relay holds), skipping
//!    keys held back by a parked row and the rows already in flight;
//! 3. write the schema registry's id into each Avro value (resolved once per
//!    schema for the relay's run; see [`RelayBuilder::schema_registry`]; a row
//!    whose schema cannot be resolved yet is refused like a record the
//!    publisher refuses), then
//!    hand every record of the batch to the publisher at once; while the broker
//!    acknowledges it, read and send the next batches, up to a window of
//!    `batches_in_flight` (by default as many as [`DEFAULT_ROWS_IN_FLIGHT`]
//!    rows take, at least 2);
//! 4. delete exactly the acknowledged rows (with the next read, one statement);
//!    count an attempt and the error on the failed ones, parking those that can
//!    never be published.
//!
//! A key whose row fails is not sent further in that window: its later rows wait
//! for the retry, so they never overtake it. No cursor is kept: a read starts
//! from the oldest row, or after the rows known to be settled (the `Floor`: ids
//! no transaction still open can commit below), so a row with a lower id that
//! commits late is still sent, and before any row of its key that committed
//! after it. The floor assumes ids come from the table's sequence as created
//! (`bigserial`, no `CACHE` above 1).

mod headers;
mod schemas;
mod shards;
mod store;

#[doc(hidden)]
pub use headers::record_headers as __record_headers;

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures::StreamExt;
use futures::future::FutureExt;
use outbox::{OutgoingRecord, PublishError, Publisher};
use tracing::Instrument;

use crate::backoff::Backoff;
use crate::error::error_chain;
use crate::error::{Error, Result, mask_password};
use crate::pg::tables::{OUTBOX_TABLE_QUERY, OutboxTable};
use crate::registry::SchemaRegistry;
use schemas::Resolver;
use shards::Shards;
use store::Row;

/// The channel the table's trigger notifies.
pub const CHANNEL: &str = "outbox_messages";

/// Default rows per batch.
pub const DEFAULT_BATCH_SIZE: usize = 1000;
/// Default wait between reads when no `NOTIFY` arrives.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Default number of shards the key space is cut into (same on every relay of an outbox).
pub const DEFAULT_SHARDS: u32 = 64;
/// Default first backoff after a failure.
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(100);
/// Default longest backoff.
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(30);
/// Default time given to the batches in flight once shutdown is asked for.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How long a batch may wait for its acknowledgements before the relay says so
/// in its log (and again each time that much more has passed).
const STALL_WARNING: Duration = Duration::from_secs(30);
/// Default interval between checks of the share of shards.
pub const DEFAULT_REBALANCE_INTERVAL: Duration = Duration::from_secs(1);
/// Default number of batches sent and not yet acknowledged at once: the
/// least, raised for small batches to [`DEFAULT_ROWS_IN_FLIGHT`].
pub const DEFAULT_BATCHES_IN_FLIGHT: usize = 2;
/// Rows the default number of batches in flight covers at least: small
/// batches are acknowledged no faster than large ones, so more of them go
/// out at once (2 batches of 1,000 rows, 8 of 100). See
/// [`RelayBuilder::batches_in_flight`].
pub const DEFAULT_ROWS_IN_FLIGHT: usize = 800;
/// Default interval between updates of the gauges (rows waiting, lag, parked).
pub const DEFAULT_GAUGE_INTERVAL: Duration = Duration::from_secs(5);

/// Publishes committed outbox rows; see the [module documentation](self).
///
/// # Examples
///
/// ```no_run
/// use std::time::Duration;
/// use outbox::kafka::KafkaPublisher;
/// use outbox_diesel::Relay;
///
/// # async fn run() -> Result<(), outbox_diesel::Error> {
/// let publisher = KafkaPublisher::builder("127.0.0.1:59092").set("compression.type", "lz4").build()?;
/// let relay = Relay::builder("postgres://localhost/app", publisher)
///     .batch_size(500)
///     .poll_interval(Duration::from_millis(50))
///     .build()?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let running = tokio::spawn(relay.run(async { stopped.await.ok(); }));
/// // … later: finish the batch in flight, then return.
/// stop.send(()).ok();
/// let report = running.await.expect("the relay does not panic")?;
/// println!("published {}", report.published);
/// # Ok(()) }
/// ```
pub struct Relay<P> {
    database_url: String,
    publisher: Arc<P>,
    settings: Settings,
    /// Faults injected into publishes, when asked for and enabled.
    faults: Option<Arc<crate::fault_injection::Injector>>,
}

#[derive(Debug, Clone)]
struct Settings {
    batch_size: usize,
    poll_interval: Duration,
    shards: u32,
    backoff_base: Duration,
    backoff_cap: Duration,
    rebalance_interval: Duration,
    gauge_interval: Duration,
    /// `None`: the default for the batch size.
    batches_in_flight: Option<usize>,
    shutdown_grace: Duration,
    /// Metrics and health over HTTP, when asked for.
    observe: crate::serve::Observe,
    fault_injection: Option<crate::fault_injection::FaultInjection>,
    /// Where the ids of Avro values' schemas come from.
    schema_registry: Option<SchemaRegistry>,
    /// Register schemas the registry does not hold (else look them up only).
    auto_register: bool,
}

impl Settings {
    /// Batches sent and not yet acknowledged at once: the setting, or the
    /// default for the batch size.
    fn batches_in_flight(&self) -> usize {
        self.batches_in_flight.unwrap_or_else(|| {
            DEFAULT_ROWS_IN_FLIGHT
                .div_ceil(self.batch_size.max(1))
                .clamp(DEFAULT_BATCHES_IN_FLIGHT, 64)
        })
    }
}

/// Settings of a [`Relay`], each with a default.
#[must_use]
pub struct RelayBuilder<P> {
    database_url: String,
    publisher: Arc<P>,
    settings: Settings,
}

/// What a relay did until it stopped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RelayReport {
    /// Rows published and deleted.
    pub published: u64,
    /// Failed attempts recorded (a row retried three times counts three).
    pub failed_attempts: u64,
    /// Rows parked.
    pub parked: u64,
    /// Batches read that held at least one row.
    pub batches: u64,
}

impl<P: Publisher> Relay<P> {
    /// Settings for a relay reading the outbox at `database_url` (a libpq URL; its
    /// `search_path` selects the schema) and publishing through `publisher`.
    pub fn builder(database_url: impl Into<String>, publisher: P) -> RelayBuilder<P> {
        RelayBuilder {
            database_url: database_url.into(),
            publisher: Arc::new(publisher),
            settings: Settings {
                batch_size: DEFAULT_BATCH_SIZE,
                poll_interval: DEFAULT_POLL_INTERVAL,
                shards: DEFAULT_SHARDS,
                backoff_base: DEFAULT_BACKOFF_BASE,
                backoff_cap: DEFAULT_BACKOFF_CAP,
                rebalance_interval: DEFAULT_REBALANCE_INTERVAL,
                gauge_interval: DEFAULT_GAUGE_INTERVAL,
                batches_in_flight: None,
                shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
                observe: crate::serve::Observe::default(),
                fault_injection: None,
                schema_registry: None,
                auto_register: true,
            },
        }
    }

    /// The publisher.
    pub fn publisher(&self) -> &P {
        &self.publisher
    }

    /// Checks both ends before [`run`](Self::run), to fail early with a clear
    /// error (the loop itself retries forever): connects to the database and
    /// looks for the outbox table, then asks the publisher whether its
    /// transport can be used ([`Publisher::check`]; for a
    /// [`KafkaPublisher`](outbox::kafka::KafkaPublisher), the brokers answer
    /// past TLS and the login within
    /// [`CHECK_TIMEOUT`](outbox::kafka::CHECK_TIMEOUT)).
    ///
    /// # Errors
    ///
    /// [`Error::Connection`] naming the URL (password masked) when PostgreSQL
    /// cannot be reached; [`Error::NotReady`] naming the database (password
    /// masked) and its `search_path` when `outbox_messages` is missing, saying
    /// to run `outbox migrations run`; [`Error::Database`] when the lookup
    /// fails; [`Error::Publish`] when the transport cannot be used (for Kafka:
    /// the brokers and the cause, e.g. `Kafka at host:9094: authentication
    /// failed …`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox::kafka::KafkaPublisher;
    /// use outbox_diesel::Relay;
    ///
    /// # async fn run() -> Result<(), outbox_diesel::Error> {
    /// let publisher = KafkaPublisher::new("127.0.0.1:59092")?;
    /// let relay = Relay::builder("postgres://localhost/app", publisher).build()?;
    /// relay.check().await?; // the database and the brokers, or why not
    /// relay.run(async { let _ = tokio::signal::ctrl_c().await; }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn check(&self) -> Result<()> {
        self.check_database().await?;
        let publisher = Arc::clone(&self.publisher);
        // Blocking: the Kafka check waits for the brokers on this thread.
        tokio::task::spawn_blocking(move || publisher.check(outbox::kafka::CHECK_TIMEOUT))
            .await
            .map_err(|error| Error::NotReady {
                what: "the relay's broker check did not finish".to_owned(),
                source: Some(Box::new(error)),
            })??;
        Ok(())
    }

    /// The database answers and has the outbox table in its `search_path`.
    async fn check_database(&self) -> Result<()> {
        let mut conn = connect(&self.database_url).await?;
        let table: OutboxTable =
            diesel_async::RunQueryDsl::get_result(diesel::sql_query(OUTBOX_TABLE_QUERY), &mut conn)
                .await?;
        match table.missing("outbox_messages", &mask_password(&self.database_url)) {
            Some(missing) => Err(Error::NotReady {
                what: missing,
                source: None,
            }),
            None => Ok(()),
        }
    }

    /// Runs until `shutdown` completes, then waits for the batches in flight
    /// (at most [`shutdown_grace`](RelayBuilder::shutdown_grace); rows still
    /// unacknowledged then stay in the table and are sent again by the next
    /// relay) and returns what it did. A lost database connection or a broker
    /// that is down is retried with backoff, forever; neither ends the loop.
    ///
    /// # Errors
    ///
    /// [`Error::Serve`] or [`Error::MetricsRecorder`] when the metrics server
    /// asked for with [`serve_metrics`](RelayBuilder::serve_metrics) cannot
    /// start. Other failures are logged, counted and retried.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<RelayReport> {
        let observed = self.settings.observe.start("relay").await?;
        let health = &observed.component;
        // Counted in the gauge until this run returns.
        let _injecting = self.faults.as_ref().map(|faults| faults.announce("relay"));
        let _probe = self.probe_kafka(health);
        let mut shutdown = Shutdown::new(shutdown);
        let mut report = RelayReport::default();
        let _gauges = AbortOnDrop(tokio::spawn(report_gauges(
            self.database_url.clone(),
            self.settings.gauge_interval,
        )));
        let mut backoff = Backoff::new(self.settings.backoff_base, self.settings.backoff_cap);
        // Schema ids never change: resolved once for the whole run, across sessions.
        let mut resolver = Resolver::new(
            self.settings.schema_registry.clone(),
            self.settings.auto_register,
        );
        let url = mask_password(&self.database_url);
        while !shutdown.requested() {
            let mut session = match Session::open(&self.database_url, &self.settings).await {
                Ok(session) => session,
                Err(error) => {
                    health.database_failed(error_chain(&error));
                    let delay = backoff.next_delay();
                    match &error {
                        Error::Connection { .. } => {
                            tracing::warn!(url, error = %error_chain(&error), ?delay, "relay: cannot connect to PostgreSQL; retrying");
                        }
                        // Connected, then failed: say whether the tables are missing.
                        _ => match self.check_database().await {
                            Err(missing @ Error::NotReady { .. }) => {
                                tracing::warn!(url, error = %missing, ?delay, "relay: outbox tables missing: run `outbox migrations run`; retrying");
                            }
                            _ => {
                                tracing::warn!(url, error = %error_chain(&error), ?delay, "relay: database error; retrying");
                            }
                        },
                    }
                    shutdown.sleep(delay).await;
                    continue;
                }
            };
            tracing::info!(url, "relay: connected");
            health.database_ok();
            match self
                .drive(
                    &mut session,
                    &mut shutdown,
                    &mut report,
                    &mut backoff,
                    &mut resolver,
                    health,
                )
                .await
            {
                Ok(()) => break,
                Err(error) => {
                    health.database_failed(format!("relay session at {url}: {error}"));
                    let delay = backoff.next_delay();
                    tracing::warn!(url, error = %error, ?delay, "relay: database error; reconnecting");
                    shutdown.sleep(delay).await;
                }
            }
        }
        tracing::info!(
            published = report.published,
            parked = report.parked,
            "relay: stopped"
        );
        Ok(report)
    }

    async fn drive(
        &self,
        session: &mut Session,
        shutdown: &mut Shutdown<'_>,
        report: &mut RelayReport,
        backoff: &mut Backoff,
        resolver: &mut Resolver,
        health: &crate::serve::Component,
    ) -> diesel::QueryResult<()> {
        let settings = &self.settings;
        let mut window = Window::default();
        loop {
            // Between windows nothing is in flight: the time to stop, rebalance,
            // and start again from the oldest row.
            window.close(&mut session.conn).await?;
            if shutdown.requested() {
                return Ok(());
            }
            if session.shards.rebalance_due() {
                session.shards.rebalance(&mut session.conn).await?;
                // Read from the oldest row again, with the shards now held.
                window.floor.reset();
            }
            if window.floor.cap.is_none() && session.shards.held() > 0 {
                let parked =
                    store::first_parked(&mut session.conn, session.shards.filter()).await?;
                window.floor.cap = Some(parked.map_or(i64::MAX, |id| id - 1));
            }
            let published = report.published;
            let ended = self
                .run_window(session, shutdown, &mut window, report, resolver)
                .await?;
            // A failure holds Kafka not ready (whatever the metadata probe
            // says) until a record goes through or none is left to send. An
            // injected failure says nothing about the broker: only the
            // progress made counts then.
            match &ended {
                WindowEnd::Failed(error) => health.publish_failed(format!("publishing: {error}")),
                WindowEnd::CaughtUp => health.publish_ok(),
                _ if report.published > published => health.publish_ok(),
                _ => {}
            }
            match ended {
                WindowEnd::CaughtUp => {
                    backoff.reset();
                    session
                        .wait_for_work(settings.poll_interval, shutdown)
                        .await?;
                }
                WindowEnd::Interrupted => backoff.reset(),
                WindowEnd::Parked => {}
                WindowEnd::Injected => {
                    // Retried like a transient failure, but after the first
                    // delay only: a fraction of injected failures must not
                    // slow the relay down to one window per backoff cap.
                    tracing::debug!(delay = ?settings.backoff_base, "relay: injected publish failures; retrying");
                    shutdown.sleep(settings.backoff_base).await;
                }
                WindowEnd::Failed(error) => {
                    // The broker is down or slow: the rows stay; wait, then retry.
                    let delay = backoff.next_delay();
                    tracing::warn!(%error, ?delay, "relay: publish failed; retrying");
                    shutdown.sleep(delay).await;
                }
                WindowEnd::SchemaWaiting(error) => {
                    // Avro rows wait for their schema ids (every other row
                    // went). Rows written meanwhile (JSON, other keys) go on
                    // the next notification, at most one pass a poll
                    // interval (each pass reads the waiting rows again); the
                    // registry is asked again on the resolver's own backoff.
                    let poll = settings.poll_interval;
                    let next = resolver
                        .next_attempt()
                        .map_or(poll, |at| at.saturating_duration_since(Instant::now()));
                    let delay = next.max(poll).min(schemas::REGISTRY_BACKOFF_CAP.max(poll));
                    tracing::debug!(%error, ?delay, "relay: Avro rows wait for their schema");
                    shutdown.sleep(poll).await;
                    if !shutdown.requested() {
                        session
                            .wait_for_work(delay.saturating_sub(poll), shutdown)
                            .await?;
                    }
                }
            }
        }
    }

    /// Sends batches, keeping up to `batches_in_flight` of them unacknowledged,
    /// reading each next batch from the oldest row not in the window, until the rows run out,
    /// a publish fails, a rebalance is due, or shutdown is asked for; then waits
    /// for the rest of the window.
    async fn run_window(
        &self,
        session: &mut Session,
        shutdown: &mut Shutdown<'_>,
        window: &mut Window<P::Ack>,
        report: &mut RelayReport,
        resolver: &mut Resolver,
    ) -> diesel::QueryResult<WindowEnd> {
        let limit = self.settings.batch_size as i64;
        let grace = self.settings.shutdown_grace;
        let mut shutdown_deadline = None;
        let mut reading = session.shards.held() > 0;
        let mut end = if reading {
            WindowEnd::Interrupted
        } else {
            WindowEnd::CaughtUp
        };
        // A row refused for its schema that may go later: the window goes on
        // reading (the other rows keep flowing), and ends waiting for it.
        let mut schema_waiting: Option<PublishError> = None;
        loop {
            let in_flight = self.settings.batches_in_flight();
            while reading && window.batches.len() < in_flight {
                if !window.batches.is_empty()
                    && (session.shards.rebalance_due() || shutdown.requested())
                {
                    reading = false;
                    break;
                }
                let next = window.next_read();
                let mut rows = store::delete_and_fetch(
                    &mut session.conn,
                    next.query(limit, session.shards.filter()),
                )
                .await?;
                if !window.read_done(&rows, limit) {
                    reading = false;
                    end = WindowEnd::CaughtUp;
                }
                if rows.is_empty() {
                    break;
                }
                let unresolved = resolver.resolve(&mut session.conn, &mut rows).await?;
                window.send(&*self.publisher, self.faults.as_deref(), rows, unresolved);
            }
            let Some(batch) = window.batches.pop_front() else {
                return Ok(match (end, schema_waiting) {
                    // A failure backs off; a rebalance or shutdown goes first.
                    (end @ (WindowEnd::Failed(_) | WindowEnd::Interrupted), _) | (end, None) => end,
                    (_, Some(error)) => WindowEnd::SchemaWaiting(error),
                });
            };
            let acknowledged = batch.acknowledged(window);
            let Some(outcome) = settle(acknowledged, shutdown, &mut shutdown_deadline, grace).await
            else {
                // Shutdown, and the broker did not answer within the grace:
                // the rows not acknowledged stay in the table.
                tracing::warn!(
                    batches = window.batches.len() + 1,
                    ?grace,
                    "relay: stopping with batches unacknowledged; their rows stay in the outbox and are sent again"
                );
                window.batches.clear();
                return Ok(WindowEnd::Interrupted);
            };
            report.batches += 1;
            report.published += outcome.acked as u64;
            if !outcome.schema_failed.is_empty() {
                // Refused for their schema: recorded, and the window reads on.
                let failures = record_failures(&mut session.conn, &outcome.schema_failed).await?;
                report.failed_attempts += outcome.schema_failed.len() as u64;
                report.parked += failures.parked;
                if let Some(error) = failures.first_retriable {
                    schema_waiting.get_or_insert(error);
                }
            }
            if outcome.failed.is_empty() {
                if !reading {
                    window.flush_deletes(&mut session.conn).await?;
                }
                continue;
            }
            // Stop reading: the window drains, then the failed rows are retried
            // first (or, parked, hold back their key).
            reading = false;
            window.flush_deletes(&mut session.conn).await?;
            let failures = record_failures(&mut session.conn, &outcome.failed).await?;
            report.failed_attempts += outcome.failed.len() as u64;
            report.parked += failures.parked;
            end = match (failures.first_retriable, end) {
                (Some(error), _) | (None, WindowEnd::Failed(error)) => WindowEnd::Failed(error),
                (None, _) if failures.injected => WindowEnd::Injected,
                (None, WindowEnd::Injected) => WindowEnd::Injected,
                (None, _) => WindowEnd::Parked,
            };
        }
    }
}

impl<P: Publisher> Relay<P> {
    /// Checks the transport every [`PROBE_INTERVAL`](crate::serve::PROBE_INTERVAL)
    /// with [`Publisher::check`] (for a [`KafkaPublisher`](outbox::kafka::KafkaPublisher),
    /// a metadata request; a publisher without a check of its own counts as
    /// reached, and its state comes from its publishes).
    fn probe_kafka(&self, health: &crate::serve::Component) -> crate::serve::AbortOnDrop {
        let publisher = Arc::clone(&self.publisher);
        crate::serve::probe_kafka(
            move |timeout| publisher.check(timeout).map_err(|e| e.to_string()),
            health.clone(),
        )
    }
}

/// Waits for a batch's outcome. The producer never times a record out (see
/// [`PRODUCER_DEFAULTS`](outbox::kafka::PRODUCER_DEFAULTS)), so while the
/// broker is away this waits: it says so in the log every [`STALL_WARNING`],
/// and gives up `grace` after shutdown is asked for (`None`; the deadline is
/// shared by the batches of the window).
async fn settle(
    acknowledged: impl Future<Output = Outcome>,
    shutdown: &mut Shutdown<'_>,
    deadline: &mut Option<Instant>,
    grace: Duration,
) -> Option<Outcome> {
    let started = Instant::now();
    tokio::pin!(acknowledged);
    if deadline.is_none() {
        loop {
            tokio::select! {
                outcome = &mut acknowledged => return Some(outcome),
                () = shutdown.wait() => break,
                () = tokio::time::sleep(STALL_WARNING) => {
                    tracing::warn!(waited = ?started.elapsed(),
                        "relay: the broker has not acknowledged a batch yet; waiting for it");
                }
            }
        }
    }
    let deadline = *deadline.get_or_insert_with(|| Instant::now() + grace);
    tokio::time::timeout_at(deadline.into(), acknowledged)
        .await
        .ok()
}

/// Why a window of batches ended.
enum WindowEnd {
    /// Every row visible was sent: wait for a notification or the poll interval.
    CaughtUp,
    /// A rebalance or shutdown is due: go on at once.
    Interrupted,
    /// Rows were parked (and others may have gone): go on at once.
    Parked,
    /// A publish failed and may succeed later: back off.
    Failed(PublishError),
    /// Every row went but Avro rows whose schema id is not resolved yet:
    /// retry when the resolver asks the registry again.
    SchemaWaiting(PublishError),
    /// Publishes failed by fault injection only (and rows may have been
    /// parked): retry after the first backoff delay, without lengthening it.
    Injected,
}

/// Batches sent and not yet settled, oldest first.
struct Window<A> {
    batches: VecDeque<Batch<A>>,
    /// Acknowledged ids not yet deleted (deleted with the next read).
    to_delete: Vec<i64>,
    /// Keys a row was refused or failed for: their later rows are not sent in
    /// this window, and one acknowledged anyway is reported as overtaken.
    /// With each key, its lowest failed row id: only a later row of the key
    /// acknowledged is out of order (an earlier one in flight is not).
    failed_keys: HashMap<(String, String), i64>,
    /// The ids reads can skip; kept from one window to the next until a
    /// failure or a rebalance.
    floor: Floor,
}

/// What the next read deletes and skips.
struct NextRead {
    delete: Vec<i64>,
    after: i64,
    exclude: Vec<i64>,
    /// Whether a row of the shards held may be parked (see [`Floor::cap`]).
    parked: bool,
}

impl NextRead {
    fn query<'a>(
        &'a self,
        limit: i64,
        shards: Option<store::ShardFilter<'a>>,
    ) -> store::ReadBatch<'a> {
        store::ReadBatch {
            delete: &self.delete,
            after: self.after,
            exclude: &self.exclude,
            limit,
            shards,
            parked: self.parked,
        }
    }
}

impl<A> Default for Window<A> {
    fn default() -> Self {
        Window {
            batches: VecDeque::new(),
            to_delete: Vec::new(),
            failed_keys: HashMap::new(),
            floor: Floor::default(),
        }
    }
}

/// The ids at or below which no row is left to read: what lets a read start
/// after the rows already settled (sent, deleted, or in flight) instead of at
/// the oldest row, without a cursor's flaw (passing over a row whose lower id
/// commits late).
///
/// A read with snapshot `S` returning rows up to id `last` also samples the
/// sessions writing to the table (`W`, after `S` was taken). Ids up to `last`
/// were handed out before `S` (the sequence hands them out in order, and
/// `last` had committed); a transaction holding one of them and still open
/// after `S` held its write lock then (taken before `nextval`), so it is in
/// `W`. Once a later read's sample shows none of `W` (every one of them has
/// ended), every row up to `last` that will ever be visible is visible to the
/// reads after that one: the first of them that reads from the floor through
/// `last` has seen all there is, and the floor moves there. An empty `W`
/// settles at once, for the next read. The floor also stays below every row
/// parked when it started (`cap`): a parked row and the rows of its key behind
/// it are hidden from reads, and must be read again from there when it is
/// retried or discarded. Rows parked later are parked by this relay, whose
/// failures reset the floor; shards taken over reset it too (rebalance).
///
/// Between reads the floor lags one batch: a read still walks the batch
/// before it (in flight), not the deleted rows and older batches (PostgreSQL
/// walks the index entries of deleted rows until vacuum removes them).
#[derive(Debug, Default)]
struct Floor {
    /// Reads skip ids up to this one (0: from the oldest row).
    after: i64,
    /// The highest the floor may go: below the first parked row of the
    /// shards held when the floor started (`None`: not read yet, so the floor
    /// stays where it is).
    cap: Option<i64>,
    /// Ids up to this one are settled for the next read.
    settled: Option<i64>,
    /// A read's last id, with the writers it saw still to end.
    waiting: Option<(i64, Vec<String>)>,
}

impl Floor {
    /// Starts again from the oldest row.
    fn reset(&mut self) {
        *self = Floor::default();
    }

    /// After a read from `self.after` that returned rows up to `last` (and
    /// every one there was when it was not `full`), having seen `writers`.
    fn read(&mut self, last: i64, full: bool, writers: Option<&str>) {
        // This read saw every row up to `settled` that will ever be visible,
        // and read all of them from the floor through `last` (or through the
        // end, when it was not full).
        if let (Some(settled), Some(cap)) = (self.settled.take(), self.cap) {
            let covered = if full { last } else { i64::MAX };
            self.after = self.after.max(settled.min(covered).min(cap));
        }
        let writers: Vec<&str> = writers
            .map(|w| w.split(',').filter(|w| !w.is_empty()).collect())
            .unwrap_or_default();
        let mut settled = None;
        if let Some((through, earlier)) = &self.waiting
            && !earlier.iter().any(|w| writers.contains(&w.as_str()))
        {
            settled = Some(*through);
            self.waiting = None;
        }
        if writers.is_empty() {
            settled = Some(last);
        } else if self.waiting.is_none() {
            self.waiting = Some((last, writers.iter().map(|w| (*w).to_owned()).collect()));
        }
        self.settled = settled;
    }
}

/// One batch of rows handed to the publisher.
struct Batch<A> {
    rows: Vec<Row>,
    /// Row indexes sent, with their acknowledgements.
    pending: Vec<(usize, A)>,
    /// Row indexes refused at once, with why.
    refused: Vec<(usize, PublishError)>,
    /// The indexes among `refused` refused for their Avro schema, ascending.
    schema_refused: Vec<usize>,
    started: Instant,
}

/// What became of one batch.
struct Outcome {
    acked: usize,
    /// Failed rows: id and why.
    failed: Vec<(i64, PublishError)>,
    /// Rows refused for their Avro schema (not sent): id and why.
    schema_failed: Vec<(i64, PublishError)>,
}

impl<A: Future<Output = std::result::Result<outbox::Delivery, PublishError>>> Window<A> {
    /// Hands every row to the publisher at once, except rows of a key that
    /// failed earlier in this window (they stay in the table for the retry);
    /// `faults` may fail a row instead, as a refusal of the publisher.
    /// `unresolved` (indexes ascending) are refused for their schema: their
    /// keys fail as for a refusal of the publisher.
    fn send<P: Publisher<Ack = A>>(
        &mut self,
        publisher: &P,
        faults: Option<&crate::fault_injection::Injector>,
        rows: Vec<Row>,
        unresolved: Vec<(usize, PublishError)>,
    ) {
        let mut refused = Vec::new();
        let mut schema_refused = Vec::new();
        let mut unresolved = unresolved.into_iter().peekable();
        let mut pending = Vec::with_capacity(rows.len());
        let mut headers: Vec<(&str, &str)> = Vec::with_capacity(10);
        for (index, row) in rows.iter().enumerate() {
            let unresolved = unresolved.next_if(|(i, _)| *i == index);
            if !self.failed_keys.is_empty() && self.failed_keys.contains_key(&row.key()) {
                continue;
            }
            if let Some((_, error)) = unresolved {
                mark_failed(&mut self.failed_keys, row);
                schema_refused.push(index);
                refused.push((index, error));
                continue;
            }
            headers.clear();
            headers.extend(row.headers.pairs());
            let record = OutgoingRecord {
                topic: &row.topic,
                key: row.partition_key.as_bytes(),
                headers: &headers,
                value: &row.payload,
            };
            let injected =
                faults.and_then(|faults| faults.publish_fault(&row.topic, row.id, row.attempts));
            match injected.map_or_else(|| publisher.send(&record), Err) {
                Ok(ack) => pending.push((index, ack)),
                Err(error) => {
                    mark_failed(&mut self.failed_keys, row);
                    refused.push((index, error));
                }
            }
        }
        self.batches.push_back(Batch {
            rows,
            pending,
            refused,
            schema_refused,
            started: Instant::now(),
        });
    }

    /// The next read: it deletes the acknowledged rows and skips the rows in
    /// the window.
    fn next_read(&mut self) -> NextRead {
        let after = self.floor.after;
        let exclude = self.in_window(after);
        NextRead {
            delete: std::mem::take(&mut self.to_delete),
            after,
            exclude,
            // Known at the start of a window; only this relay parks rows of
            // its shards, and doing so resets the floor (`cap` unknown again).
            parked: self.floor.cap != Some(i64::MAX),
        }
    }

    /// Takes note of a read's rows (for the floor); whether it was full.
    fn read_done(&mut self, rows: &[Row], limit: i64) -> bool {
        let full = rows.len() as i64 == limit;
        if let Some(last) = rows.last() {
            // One row carries the writers seen (the first; any, to be safe).
            let writers = rows.iter().find_map(|row| row.writers.as_deref());
            self.floor.read(last.id, full, writers);
        }
        full
    }

    /// Ids above `after` the next read must skip: rows in flight, and
    /// acknowledged rows not yet deleted (the read's own delete does not hide
    /// them from its snapshot).
    fn in_window(&self, after: i64) -> Vec<i64> {
        let in_flight = self
            .batches
            .iter()
            .map(|batch| batch.rows.len())
            .sum::<usize>();
        let mut ids = Vec::with_capacity(in_flight + self.to_delete.len());
        ids.extend(
            self.batches
                .iter()
                .flat_map(|batch| batch.rows.iter().map(|row| row.id))
                .filter(|id| *id > after),
        );
        ids.extend(self.to_delete.iter().filter(|id| **id > after));
        ids
    }

    async fn flush_deletes(&mut self, conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        if !self.to_delete.is_empty() {
            store::delete(conn, &self.to_delete).await?;
            self.to_delete.clear();
        }
        Ok(())
    }

    /// Settles what is left and starts the next window from the oldest row.
    async fn close(&mut self, conn: &mut AsyncPgConnection) -> diesel::QueryResult<()> {
        debug_assert!(self.batches.is_empty());
        self.flush_deletes(conn).await?;
        if !self.failed_keys.is_empty() {
            // Failed rows stay, possibly below the floor: read them again.
            self.floor.reset();
            self.failed_keys.clear();
        }
        Ok(())
    }
}

impl<A: Future<Output = std::result::Result<outbox::Delivery, PublishError>>> Batch<A> {
    /// Waits for every acknowledgement; queues the acknowledged ids for deletion.
    async fn acknowledged(self, window: &mut Window<A>) -> Outcome {
        let span = tracing::info_span!(
            "outbox.relay.batch",
            rows = self.rows.len(),
            published = tracing::field::Empty,
            failed = tracing::field::Empty,
        );
        let Batch {
            rows,
            pending,
            refused,
            schema_refused,
            started,
        } = self;
        let (indexes, acks): (Vec<usize>, Vec<A>) = pending.into_iter().unzip();
        let results = futures::future::join_all(acks)
            .instrument(span.clone())
            .await;
        let mut failed: Vec<(usize, PublishError)> = refused;
        let before = window.to_delete.len();
        for (index, result) in indexes.into_iter().zip(results) {
            match result {
                Ok(_) => window.to_delete.push(rows[index].id),
                Err(error) => failed.push((index, error)),
            }
        }
        let acked = window.to_delete.len() - before;
        if !failed.is_empty() || !window.failed_keys.is_empty() {
            failed.sort_by_key(|(index, _)| *index);
            let acked_ids = &window.to_delete[before..];
            let _overtaken = mark_failed_keys(&rows, &failed, acked_ids, &mut window.failed_keys);
        }
        span.record("published", acked);
        span.record("failed", failed.len());
        tracing::debug!(parent: &span, ids = ?&window.to_delete[before..], "relay: acknowledged");
        metrics::histogram!("outbox_relay_batch_seconds").record(started.elapsed());
        metrics::counter!("outbox_relay_published_total").increment(acked as u64);
        let mut schema_failed = Vec::new();
        if !schema_refused.is_empty() {
            let (schema, other): (Vec<_>, Vec<_>) = failed
                .into_iter()
                .partition(|(index, _)| schema_refused.binary_search(index).is_ok());
            schema_failed = schema;
            failed = other;
        }
        let ids = |failed: Vec<(usize, PublishError)>| {
            failed
                .into_iter()
                .map(|(index, error)| (rows[index].id, error))
                .collect()
        };
        Outcome {
            acked,
            failed: ids(failed),
            schema_failed: ids(schema_failed),
        }
    }
}

/// Refreshes the gauges every `interval` on a connection of its own: counting
/// the rows scans the table, which must not hold up the relay's own loop.
async fn report_gauges(url: String, interval: Duration) {
    let mut conn = None;
    loop {
        if conn.is_none() {
            conn = connect(&url).await.ok();
        }
        if let Some(c) = conn.as_mut() {
            match store::gauges(c).await {
                Ok(gauges) => {
                    metrics::gauge!("outbox_relay_rows_waiting").set(gauges.waiting as f64);
                    metrics::gauge!("outbox_relay_rows_parked").set(gauges.parked as f64);
                    metrics::gauge!("outbox_relay_lag_seconds")
                        .set(gauges.oldest_age_seconds.unwrap_or(0.0));
                }
                Err(error) => {
                    tracing::debug!(%error, "relay: could not read the gauges");
                    conn = None;
                }
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<P: Publisher> RelayBuilder<P> {
    /// Rows read and sent per batch (default 1000, at most 100,000).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.settings.batch_size = rows;
        self
    }

    /// Wait between reads when no `NOTIFY` arrives (default 100 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.settings.poll_interval = interval;
        self
    }

    /// Shards of the key space shared among relays (default 64, 1 to 4096).
    /// Every relay of one outbox must use the same number.
    pub fn shards(mut self, shards: u32) -> Self {
        self.settings.shards = shards;
        self
    }

    /// First and longest wait after a failure (defaults 100 ms and 30 s); each
    /// wait doubles, with jitter.
    pub fn backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.settings.backoff_base = base;
        self.settings.backoff_cap = cap;
        self
    }

    /// How often a relay checks its share of shards (default 1 s).
    pub fn rebalance_interval(mut self, interval: Duration) -> Self {
        self.settings.rebalance_interval = interval;
        self
    }

    /// How often the gauges (rows waiting, parked, lag) are refreshed, on a
    /// connection of their own (default 5 s).
    pub fn gauge_interval(mut self, interval: Duration) -> Self {
        self.settings.gauge_interval = interval;
        self
    }

    /// Batches sent before the oldest is acknowledged (1 to 64): while the
    /// broker acknowledges one batch, the next ones are read and sent. A relay
    /// stopped abruptly re-sends at most this many batches.
    ///
    /// Default: [`DEFAULT_BATCHES_IN_FLIGHT`] (2), or as many batches as
    /// [`DEFAULT_ROWS_IN_FLIGHT`] (800) rows take when that is more: 2 at the
    /// default batch size, 8 at 100 rows a batch, 64 at most. An
    /// acknowledgement takes a few milliseconds whatever the batch size, so
    /// small batches need more of them in flight to keep the broker busy;
    /// either way a relay stopped abruptly re-sends at most 2,000 rows at the
    /// default batch size, or about 800 rows at a smaller one.
    pub fn batches_in_flight(mut self, batches: usize) -> Self {
        self.settings.batches_in_flight = Some(batches);
        self
    }

    /// How long the batches in flight may take to be acknowledged once
    /// shutdown is asked for (default 10 s). The producer does not time
    /// records out, so with the broker away a relay would otherwise wait for
    /// it; past the grace it stops, and the rows not acknowledged stay in the
    /// table, to be sent again (a duplicate at most per row in flight).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use outbox::kafka::KafkaPublisher;
    /// # fn f(publisher: KafkaPublisher) -> Result<(), outbox_diesel::Error> {
    /// let relay = outbox_diesel::Relay::builder("postgres://localhost/app", publisher)
    ///     .shutdown_grace(std::time::Duration::from_secs(25)) // under a 30 s terminationGracePeriod
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.settings.shutdown_grace = grace;
        self
    }

    /// Serves `/metrics`, `/health/live` and `/health/ready` on `addr` while
    /// the relay runs (see [`serve`](crate::serve) for what each answers). To
    /// share one server with a consumer, use [`health`](Self::health) instead.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use outbox::kafka::KafkaPublisher;
    /// # fn f(publisher: KafkaPublisher) -> Result<(), outbox_diesel::Error> {
    /// let relay = outbox_diesel::Relay::builder("postgres://localhost/app", publisher)
    ///     .serve_metrics("0.0.0.0:9464".parse().unwrap())
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn serve_metrics(mut self, addr: std::net::SocketAddr) -> Self {
        self.settings.observe.serve(addr);
        self
    }

    /// Reports the relay's health in `health` (from a
    /// [`MetricsServer`](crate::serve::MetricsServer) of yours): PostgreSQL
    /// ready while its session is open, Kafka while the brokers answer and
    /// its publishes go through.
    pub fn health(mut self, health: crate::serve::Health) -> Self {
        self.settings.observe.health(health);
        self
    }

    /// Injects publish failures, for staging: active only when the process
    /// also runs with [`OUTBOX_FAULT_INJECTION=on`](crate::fault_injection::ENV_VAR)
    /// (read by [`build`](Self::build); without it, one warning and nothing
    /// injected). See [`fault_injection`](crate::fault_injection).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_diesel::fault_injection::FaultInjection;
    /// # use outbox::kafka::KafkaPublisher;
    /// # fn f(publisher: KafkaPublisher) -> Result<(), outbox_diesel::Error> {
    /// let relay = outbox_diesel::Relay::builder("postgres://localhost/app", publisher)
    ///     .fault_injection(FaultInjection::new().fail_publishes(0.05).protect("payments"))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn fault_injection(mut self, faults: crate::fault_injection::FaultInjection) -> Self {
        self.settings.fault_injection = Some(faults);
        self
    }

    /// The schema registry the ids of Avro values' schemas come from (models
    /// with `#[outbox(format = "avro")]`). Enqueue writes each value with
    /// schema id 0 and keeps its writer schema in `outbox_schemas`; the relay
    /// registers that schema under its subject (or looks it up, see
    /// [`auto_register`](Self::auto_register)) once per schema for its whole
    /// run, and writes the id into the value before sending it.
    ///
    /// Without a registry, JSON rows go as usual and Avro rows wait (not
    /// parked), their `last_error` saying to set one. While the registry is
    /// unreachable, slow, unavailable or refuses the relay's credentials, rows
    /// of schemas not resolved yet wait too (the registry is asked again
    /// after a backoff from 200 ms to 30 s); rows whose schema the registry
    /// refuses (incompatible with the subject's versions at its level, or
    /// invalid) are parked, the registry's reasons in `last_error`, to be
    /// released by `outbox parked retry` once the subject allows it. Rows of
    /// other keys, and of schemas already resolved, keep going; a key's later
    /// rows wait behind its refused one. Requests are counted in
    /// `outbox_schema_registry_requests_total{op="register"|"lookup",
    /// outcome="ok"|"error"}`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_diesel::registry::SchemaRegistry;
    /// # use outbox::kafka::KafkaPublisher;
    /// # fn f(publisher: KafkaPublisher) -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = SchemaRegistry::from_env()?; // SCHEMA_REGISTRY_URL, ...
    /// let relay = outbox_diesel::Relay::builder("postgres://localhost/app", publisher)
    ///     .schema_registry(registry)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn schema_registry(mut self, registry: SchemaRegistry) -> Self {
        self.settings.schema_registry = Some(registry);
        self
    }

    /// Whether the relay registers a schema its registry does not hold yet
    /// (`true`, the default, as Confluent's serializers do), or only looks it
    /// up (`false`: schemas are registered ahead by `outbox schemas register`
    /// or the team's pipeline, and the relay's credentials may be read-only).
    /// Looking up a schema that is not registered leaves its rows waiting (not
    /// parked), their `last_error` saying to run `outbox schemas register`;
    /// they go once it is registered.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_diesel::registry::SchemaRegistry;
    /// # use outbox::kafka::KafkaPublisher;
    /// # fn f(publisher: KafkaPublisher) -> Result<(), Box<dyn std::error::Error>> {
    /// let relay = outbox_diesel::Relay::builder("postgres://localhost/app", publisher)
    ///     .schema_registry(SchemaRegistry::from_env()?)
    ///     .auto_register(false) // registered by CI; the relay only reads
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn auto_register(mut self, auto_register: bool) -> Self {
        self.settings.auto_register = auto_register;
        self
    }

    /// Checks the settings.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the first setting out of range (a fault
    /// injection fraction outside 0.0 to 1.0 among them).
    pub fn build(self) -> Result<Relay<P>> {
        let s = &self.settings;
        let invalid = |name, reason: &str| {
            Err(Error::Config {
                name,
                reason: reason.to_owned(),
            })
        };
        if !(1..=100_000).contains(&s.batch_size) {
            return invalid("batch_size", "must be between 1 and 100000");
        }
        if !(1..=64).contains(&s.batches_in_flight()) {
            return invalid("batches_in_flight", "must be between 1 and 64");
        }
        if !(1..=4096).contains(&s.shards) {
            return invalid("shards", "must be between 1 and 4096");
        }
        if s.poll_interval.is_zero() {
            return invalid("poll_interval", "must be more than zero");
        }
        if s.backoff_base.is_zero() || s.backoff_cap < s.backoff_base {
            return invalid(
                "backoff",
                "base must be more than zero and cap at least base",
            );
        }
        if self.database_url.is_empty() {
            return invalid("database_url", "is empty");
        }
        let faults = s.fault_injection.as_ref();
        if let Some((name, reason)) = faults.and_then(|f| f.problems().into_iter().next()) {
            return invalid(name, &reason);
        }
        let faults = faults.and_then(|faults| faults.activate("relay"));
        Ok(Relay {
            database_url: self.database_url,
            publisher: self.publisher,
            settings: self.settings,
            faults,
        })
    }
}

/// The relay's PostgreSQL session: its connection, `LISTEN`ing, with its shards.
struct Session {
    conn: AsyncPgConnection,
    shards: Shards,
}

impl Session {
    async fn open(url: &str, settings: &Settings) -> Result<Self> {
        let mut conn = connect(url).await?;
        // The relay's statements are prepared once and planned generically; a
        // plan made while the table was small (a relay started on an empty
        // outbox) would delete acknowledged rows by a sequential scan, and keep
        // doing so as the table grows under load (hundreds of ms a batch).
        // Every statement here has an index path, so make the planner take it.
        conn.batch_execute(&format!("LISTEN {CHANNEL}; SET enable_seqscan = off"))
            .await?;
        let shards = Shards::join(&mut conn, settings.shards, settings.rebalance_interval).await?;
        Ok(Session { conn, shards })
    }

    /// Returns on a notification (one already received counts), after `poll`,
    /// or on shutdown.
    ///
    /// # Errors
    ///
    /// When the session has ended (its notifications with it, e.g. under
    /// `pg_terminate_backend`): the caller reconnects. Not left to the next
    /// query: a relay holding no shard makes none, and would come straight
    /// back here.
    async fn wait_for_work(
        &mut self,
        poll: Duration,
        shutdown: &mut Shutdown<'_>,
    ) -> diesel::QueryResult<()> {
        let mut notifications = std::pin::pin!(self.conn.notifications_stream());
        let mut pending = false;
        loop {
            // Polling the ended stream again would panic: return at its end.
            match notifications.next().now_or_never() {
                Some(Some(Ok(_))) => pending = true,
                Some(Some(Err(error))) => return Err(error),
                Some(None) => return Err(session_ended()),
                None => break,
            }
        }
        if pending {
            return Ok(());
        }
        tokio::select! {
            notification = notifications.next() => match notification {
                Some(Ok(_)) => Ok(()),
                Some(Err(error)) => Err(error),
                None => Err(session_ended()),
            },
            _ = tokio::time::sleep(poll) => Ok(()),
            _ = shutdown.wait() => Ok(()),
        }
    }
}

/// The error of a session whose notifications ended: its connection is gone.
fn session_ended() -> diesel::result::Error {
    diesel::result::Error::DatabaseError(
        diesel::result::DatabaseErrorKind::ClosedConnection,
        Box::new("the session listening for notifications ended".to_owned()),
    )
}

/// With libpq's `sslmode` and certificates (diesel-async's own `establish` has no TLS).
async fn connect(url: &str) -> Result<AsyncPgConnection> {
    crate::pg::connect::establish(url).await
}

/// Marks the keys of failed rows, and reports a row acknowledged after an
/// earlier row of its key failed: that key is out of order on the broker (a
/// broker-side rejection of one record while later ones were in flight).
/// Returns how many were.
fn mark_failed_keys(
    rows: &[Row],
    failed: &[(usize, PublishError)],
    acked: &[i64],
    failed_keys: &mut HashMap<(String, String), i64>,
) -> u64 {
    let mut overtaken = 0;
    let acked: HashSet<i64> = acked.iter().copied().collect();
    let mut failures = failed.iter().peekable();
    for (index, row) in rows.iter().enumerate() {
        if failures.peek().is_some_and(|(i, _)| *i == index) {
            failures.next();
            mark_failed(failed_keys, row);
        } else if acked.contains(&row.id)
            && failed_keys
                .get(&row.key())
                .is_some_and(|first_failed| *first_failed < row.id)
        {
            tracing::error!(id = row.id, topic = %row.topic, key = %row.partition_key,
                "relay: row acknowledged after an earlier row of its key failed; \
                 the key is out of order on the broker");
            metrics::counter!("outbox_relay_overtaken_total").increment(1);
            overtaken += 1;
        }
    }
    overtaken
}

/// Notes that `row` failed: its key's later rows wait.
fn mark_failed(failed_keys: &mut HashMap<(String, String), i64>, row: &Row) {
    failed_keys
        .entry(row.key())
        .and_modify(|first| *first = (*first).min(row.id))
        .or_insert(row.id);
}

/// What [`record_failures`] recorded.
struct Failures {
    parked: u64,
    /// The first retriable failure that was not injected.
    first_retriable: Option<PublishError>,
    /// Whether any failure was injected.
    injected: bool,
}

/// Counts an attempt and the error on each failed row; parks those that can
/// never be published. One update per distinct error: a batch usually fails
/// for one reason. An injected failure leaves a real earlier error in the
/// row's `last_error` (it writes its own only on a row with none).
async fn record_failures(
    conn: &mut AsyncPgConnection,
    failed: &[(i64, PublishError)],
) -> diesel::QueryResult<Failures> {
    let mut groups: Vec<(&PublishError, Vec<i64>)> = Vec::new();
    for (id, error) in failed {
        match groups.iter_mut().find(|(e, _)| *e == error) {
            Some((_, ids)) => ids.push(*id),
            None => groups.push((error, vec![*id])),
        }
    }
    let mut result = Failures {
        parked: 0,
        first_retriable: None,
        injected: false,
    };
    for (error, ids) in groups {
        let park = error.is_permanent();
        let injected = crate::fault_injection::is_injected(error);
        if park {
            result.parked += ids.len() as u64;
            tracing::error!(ids = ?ids, %error, "relay: parked rows that can never be published");
        } else if injected {
            result.injected = true;
        } else if result.first_retriable.is_none() {
            result.first_retriable = Some(error.clone());
        }
        let failure = store::Failure {
            error: &error.to_string(),
            park,
            keep_error: injected,
        };
        store::record_failure(conn, &ids, failure).await?;
    }
    metrics::counter!("outbox_relay_failed_total").increment(failed.len() as u64);
    metrics::counter!("outbox_relay_parked_total").increment(result.parked);
    Ok(result)
}

/// The caller's shutdown signal, polled at the relay's waiting points only.
struct Shutdown<'a> {
    signal: Pin<Box<dyn Future<Output = ()> + Send + 'a>>,
    requested: bool,
}

impl<'a> Shutdown<'a> {
    fn new(signal: impl Future<Output = ()> + Send + 'a) -> Self {
        Shutdown {
            signal: Box::pin(signal),
            requested: false,
        }
    }

    fn requested(&mut self) -> bool {
        if !self.requested && (&mut self.signal).now_or_never().is_some() {
            self.requested = true;
        }
        self.requested
    }

    /// Completes when shutdown is requested (at once if it was).
    async fn wait(&mut self) {
        if !self.requested {
            (&mut self.signal).await;
            self.requested = true;
        }
    }

    /// Sleeps for `delay`, or less if shutdown is requested.
    async fn sleep(&mut self, delay: Duration) {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.wait() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A floor whose cap is known (nothing parked).
    fn floor() -> Floor {
        Floor {
            cap: Some(i64::MAX),
            ..Floor::default()
        }
    }

    #[test]
    fn without_writers_the_floor_follows_one_read_behind() {
        let mut f = floor();
        f.read(1000, true, None);
        assert_eq!(f.after, 0, "the first read settles its rows for the next");
        f.read(2000, true, None);
        assert_eq!(f.after, 1000);
        f.read(3000, true, None);
        assert_eq!(f.after, 2000);
        // A read that was not full read everything above the floor.
        f.read(3500, false, None);
        assert_eq!(f.after, 3000);
    }

    #[test]
    fn the_floor_waits_until_every_writer_seen_has_ended() {
        let mut f = floor();
        f.read(1000, true, Some("3/7,4/2"));
        f.read(2000, true, Some("4/2,5/1"));
        assert_eq!(f.after, 0);
        // 4/2 was still open at the second read: nothing settled yet.
        f.read(3000, true, Some("5/1"));
        assert_eq!(f.after, 0, "settled only for the reads after this one");
        f.read(4000, true, Some("5/1"));
        assert_eq!(f.after, 1000, "the writers of the first read had ended");
        f.read(5000, true, None);
        assert_eq!(f.after, 1000, "5/1 (seen by the third read) ended just now");
        f.read(6000, true, None);
        assert_eq!(f.after, 5000, "no writer at the fifth read");
    }

    #[test]
    fn the_floor_stays_below_parked_rows_and_does_not_move_before_they_are_known() {
        let mut f = Floor::default();
        f.read(1000, true, None);
        f.read(2000, true, None);
        assert_eq!(f.after, 0, "the first parked row is not known yet");
        let mut f = Floor {
            cap: Some(1499),
            ..Floor::default()
        };
        for last in [1000, 2000, 3000, 4000] {
            f.read(last, true, None);
        }
        assert_eq!(f.after, 1499);
        f.reset();
        assert_eq!((f.after, f.cap, f.settled), (0, None, None));
    }

    #[test]
    fn a_read_short_of_the_settled_ids_moves_the_floor_to_its_last_row() {
        let mut f = floor();
        f.read(1000, false, None);
        // The next read (say, another window) stops at 600: only that far.
        f.read(600, true, None);
        assert_eq!(f.after, 600);
    }

    #[test]
    fn small_batches_get_more_in_flight_by_default() {
        let settings = |batch_size, batches_in_flight| Settings {
            batch_size,
            batches_in_flight,
            ..Relay::builder("postgres://x", NoPublisher).settings
        };
        assert_eq!(settings(1000, None).batches_in_flight(), 2);
        assert_eq!(settings(400, None).batches_in_flight(), 2);
        assert_eq!(settings(100, None).batches_in_flight(), 8);
        assert_eq!(settings(1, None).batches_in_flight(), 64);
        assert_eq!(settings(100, Some(1)).batches_in_flight(), 1);
    }

    type Ack = std::future::Ready<std::result::Result<outbox::Delivery, PublishError>>;

    fn row(id: i64, key: &str) -> Row {
        Row {
            id,
            topic: "t".into(),
            partition_key: key.into(),
            headers: headers::Headers::parse(vec![0; 12]).expect("an empty array"),
            payload: Vec::new(),
            attempts: 0,
            writers: None,
            value_schema: None,
        }
    }

    #[test]
    fn only_a_later_row_of_a_failed_key_acknowledged_is_out_of_order() {
        let refused = || PublishError::retriable("refused");
        // Row 5 of key a failed when sent (a later batch); rows 3 (earlier,
        // still in flight then) and 7 (later) of the same key are acknowledged.
        let mut failed_keys = HashMap::new();
        mark_failed(&mut failed_keys, &row(5, "a"));
        let rows = [row(3, "a"), row(7, "a"), row(8, "b")];
        let overtaken = mark_failed_keys(&rows, &[], &[3, 7, 8], &mut failed_keys);
        assert_eq!(overtaken, 1, "row 7 only");

        // A failure in the batch itself marks its key from that row on.
        let mut failed_keys = HashMap::new();
        let rows = [row(1, "a"), row(2, "a"), row(3, "a")];
        let overtaken = mark_failed_keys(&rows, &[(1, refused())], &[1, 3], &mut failed_keys);
        assert_eq!(
            (overtaken, failed_keys.get(&row(0, "a").key())),
            (1, Some(&2))
        );
    }

    #[test]
    fn reads_leave_out_the_parked_check_only_when_no_row_is_parked() {
        let mut window = Window::<Ack>::default();
        assert!(window.next_read().parked, "not looked up yet");
        window.floor.cap = Some(i64::MAX);
        assert!(!window.next_read().parked, "none parked");
        window.floor.cap = Some(41);
        assert!(window.next_read().parked, "row 42 parked");
        window.floor.reset();
        assert!(window.next_read().parked, "after a reset");
    }

    struct NoPublisher;

    impl Publisher for NoPublisher {
        type Ack = Ack;

        fn send(&self, _: &OutgoingRecord<'_>) -> std::result::Result<Self::Ack, PublishError> {
            Err(PublishError::retriable("not sending"))
        }

        fn flush(&self, _: Duration) -> std::result::Result<(), PublishError> {
            Ok(())
        }
    }
}
