//! The consumer: Kafka records applied exactly once, in order per partition,
//! through [`Controller`]s, in PostgreSQL transactions of their own.
//!
//! For each record: decode it, find the controller of its route (`to` header),
//! open a transaction, claim the message in `outbox_inbox` (already there: a
//! duplicate, skipped), run the controller, commit; only then store the
//! offset, which librdkafka commits in the background. A crash anywhere before
//! the commit re-delivers the record; one after it re-delivers a duplicate the
//! inbox skips.
//!
//! One task per partition applies its records in offset order: one at a time
//! when they arrive one by one, and when several are already waiting (a
//! backlog) up to [`batch_size`](ConsumerBuilder::batch_size) of them in one
//! transaction (one inbox statement, each record's controller in order, one
//! commit; a record that fails is found and meets its policy alone).
//! Partitions run concurrently, at most [`concurrency`](ConsumerBuilder::concurrency)
//! applying at once. A record that fails is retried with backoff, then its
//! controller's [`FailurePolicy`] applies: stop the partition (recorded in
//! `outbox_stopped_partitions`, resumed with [`Consumer::resume`] or
//! `outbox partitions resume`) or dead-letter it to `<topic>.dlq`.
//!
//! Avro records (`content-type: application/avro`) are read with their
//! writer's schema, fetched by the id in their frame from the
//! [schema registry](ConsumerBuilder::schema_registry) once per id and kept;
//! controllers read them as they read JSON ([`Message::read`](outbox::Message::read)).

mod apply;
mod batch;
mod check;
mod dispatch;
mod error_events;
mod inbox;
mod kafka;
mod policy;
mod positions;
mod projection;
mod report;
mod routes;
mod schemas;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel_async::AsyncPgConnection;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use outbox::Controller;
use outbox::kafka::{Diagnostics, Summarizer};
use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::producer::FutureProducer;
use tokio::sync::{Semaphore, mpsc, watch};

pub use policy::{FailurePolicy, OnFailure, Retry};
pub(crate) use projection::rebuild_bar;
pub use projection::{PartitionPosition, Projection, ProjectionStatus, ResetHook};
pub use report::ConsumerReport;

use self::dispatch::{Dispatcher, StoppedMap};
use self::kafka::{CONSUMER_DEFAULTS, CONSUMER_REQUIRED, ConsumeContext, Control, Tp};
use self::report::Counters;
use self::routes::Routes;
use self::schemas::WriterSchemas;
use crate::error::{Error, Result};
use crate::registry::SchemaRegistry;
use crate::stopped::{self, StoppedPartition};
use crate::{Outbox, mask_password};

/// A pool of diesel-async PostgreSQL connections (deadpool), as the consumer takes it.
pub type Pool = diesel_async::pooled_connection::deadpool::Pool<AsyncPgConnection>;

/// A [`Pool`] of at most `size` connections to `database_url`, over TLS as
/// its `sslmode` says (see [`establish`](crate::establish)).
///
/// Connections are recycled without a test query (diesel-async's
/// `RecyclingMethod::Fast`): the consumer checks one out per record, and a
/// `SELECT 1` each time would cost a round trip per record; a connection that
/// turns out closed is an error the consumer waits out and retries. A pool of
/// your own works too; give it the same recycling method.
///
/// # Errors
///
/// [`Error::Config`] when the pool cannot be built (a size of 0). Connections
/// are made on first use.
///
/// # Examples
///
/// ```
/// let pool = outbox_diesel::consumer::pool("postgres://localhost/app", 8)?;
/// assert_eq!(pool.status().max_size, 8);
/// # Ok::<(), outbox_diesel::Error>(())
/// ```
pub fn pool(database_url: &str, size: usize) -> Result<Pool> {
    if size == 0 {
        return Err(Error::Config {
            name: "pool",
            reason: "a pool needs at least one connection".to_owned(),
        });
    }
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    // libpq's `sslmode` and certificates; diesel-async's default connects without TLS.
    config.custom_setup = Box::new(crate::pg::connect::establish_setup);
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(size)
        .build()
        .map_err(|error| Error::Config {
            name: "pool",
            reason: format!("{} ({error})", mask_password(database_url)),
        })
}

/// How long a connection may take to come out of the pool (made, if need be)
/// before the attempt counts as the database being unavailable.
pub(crate) const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled connection within [`CHECKOUT_TIMEOUT`]: a database that accepts
/// connections but never answers is an outage too, retried and logged, and
/// never a task waiting past shutdown.
pub(crate) async fn checkout(
    pool: &Pool,
) -> std::result::Result<diesel_async::pooled_connection::deadpool::Object<AsyncPgConnection>, String>
{
    match tokio::time::timeout(CHECKOUT_TIMEOUT, pool.get()).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(error)) => Err(crate::error::error_chain(&error)),
        Err(_) => Err(format!(
            "no connection from the pool within {CHECKOUT_TIMEOUT:?}"
        )),
    }
}

/// Default number of partitions applying at once.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default age after which inbox rows are deleted.
pub const DEFAULT_INBOX_RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Default time between two passes of the inbox retention task.
pub const DEFAULT_RETENTION_INTERVAL: Duration = Duration::from_secs(60);
/// Default time between two checks for resumed partitions.
pub const DEFAULT_RESUME_POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Default bytes of records read ahead per partition (keys and values).
pub const DEFAULT_PARTITION_BUFFER: usize = 4 * 1024 * 1024;
/// Default most records of one partition applied in one transaction.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// Applies Kafka records through controllers; see the [module](self) docs.
///
/// # Examples
///
/// ```no_run
/// # use outbox::{BoxFuture, Context, Controller, Event, HandlerError, Message};
/// # struct UsersController;
/// # impl Controller for UsersController {
/// #     fn route(&self) -> &str { "users" }
/// #     fn topics(&self) -> &[&str] { &["accounts"] }
/// #     fn handles(&self, _: &Event) -> bool { true }
/// #     fn handle<'a>(&'a self, _: &'a mut Context<'_>, _: &'a Message) -> BoxFuture<'a, Result<(), HandlerError>> { Box::pin(async { Ok(()) }) }
/// # }
/// use outbox_diesel::consumer::{self, Consumer, FailurePolicy};
///
/// # async fn run() -> Result<(), outbox_diesel::Error> {
/// let pool = consumer::pool("postgres://localhost/billing", 10)?;
/// let report = Consumer::builder("localhost:9092", "billing", pool)
///     .controller_with(UsersController, FailurePolicy::dead_letter())
///     .build()?
///     .run(async { tokio::signal::ctrl_c().await.ok(); })
///     .await?;
/// println!("{} applied, {} duplicates skipped", report.processed, report.duplicates);
/// # Ok(()) }
/// ```
pub struct Consumer {
    shared: Arc<Shared>,
    control: mpsc::UnboundedReceiver<Control>,
    revoked: kafka::RevokedFlags,
    settings: Settings,
    /// The consumer's Kafka settings, for [`Consumer::check`].
    kafka_config: ClientConfig,
}

/// What the partition tasks share.
pub(crate) struct Shared {
    pub(crate) consumer: StreamConsumer<ConsumeContext>,
    pub(crate) pool: Pool,
    pub(crate) routes: Routes,
    pub(crate) group: String,
    pub(crate) follow_ups: Outbox,
    pub(crate) dead_letters: FutureProducer<Diagnostics>,
    /// The consumer's own warnings (database or broker unavailable), repeats
    /// held back and counted.
    pub(crate) warnings: Summarizer,
    pub(crate) counters: Counters,
    pub(crate) permits: Semaphore,
    pub(crate) control: mpsc::UnboundedSender<Control>,
    /// Bytes queued for a partition task above which its partition is paused;
    /// it is resumed below half of it.
    pub(crate) partition_buffer: usize,
    /// Most records of one partition applied in one transaction.
    pub(crate) batch_size: usize,
    /// Faults injected into handler calls, when asked for and enabled.
    pub(crate) faults: Option<Arc<crate::fault_injection::Injector>>,
    /// The writer schemas of Avro records, by id.
    pub(crate) schemas: WriterSchemas,
    /// A projection (positions in the database) rather than an inbox consumer.
    pub(crate) projection: Option<projection::ProjectionSettings>,
}

#[derive(Debug, Clone)]
struct Settings {
    inbox_retention: Duration,
    retention_interval: Duration,
    resume_poll_interval: Duration,
    /// How errors name the database (password masked), when the user said.
    database_name: Option<String>,
    /// Metrics and health over HTTP, when asked for.
    observe: crate::serve::Observe,
    /// Positions in the database, and how to rebuild.
    projection: Option<Projection>,
}

/// Builds a [`Consumer`]; from [`Consumer::builder`].
pub struct ConsumerBuilder {
    brokers: String,
    group: String,
    pool: Pool,
    controllers: Vec<(Arc<dyn Controller>, Option<FailurePolicy>)>,
    default_policy: FailurePolicy,
    ignore_unknown_routes: bool,
    producer_name: Option<String>,
    concurrency: usize,
    partition_buffer: usize,
    batch_size: usize,
    settings: Settings,
    kafka: Vec<(String, String)>,
    fault_injection: Option<crate::fault_injection::FaultInjection>,
    schema_registry: Option<SchemaRegistry>,
}

impl Consumer {
    /// A consumer in group `group` reading from `brokers`, applying on `pool`.
    pub fn builder(brokers: &str, group: &str, pool: Pool) -> ConsumerBuilder {
        ConsumerBuilder {
            brokers: brokers.to_owned(),
            group: group.to_owned(),
            pool,
            controllers: Vec::new(),
            default_policy: FailurePolicy::default(),
            ignore_unknown_routes: false,
            producer_name: None,
            concurrency: DEFAULT_CONCURRENCY,
            partition_buffer: DEFAULT_PARTITION_BUFFER,
            batch_size: DEFAULT_BATCH_SIZE,
            settings: Settings {
                inbox_retention: DEFAULT_INBOX_RETENTION,
                retention_interval: DEFAULT_RETENTION_INTERVAL,
                resume_poll_interval: DEFAULT_RESUME_POLL_INTERVAL,
                database_name: None,
                observe: crate::serve::Observe::default(),
                projection: None,
            },
            kafka: Vec::new(),
            fault_injection: None,
            schema_registry: None,
        }
    }

    /// Resumes partition `partition` of `topic` stopped in group `group`: a
    /// running consumer of the group reads it again from the record it stopped
    /// on (within its resume poll interval). Returns the stop, or `None` when
    /// the partition was not stopped.
    ///
    /// # Errors
    ///
    /// [`Error::Database`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(conn: &mut diesel_async::AsyncPgConnection) -> Result<(), outbox_diesel::Error> {
    /// if let Some(stop) = outbox_diesel::consumer::Consumer::resume(conn, "billing", "accounts", 2).await? {
    ///     println!("resuming at offset {} (stopped on: {})", stop.kafka_offset, stop.error);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn resume(
        conn: &mut AsyncPgConnection,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Result<Option<StoppedPartition>> {
        stopped::resume_async(conn, group, topic, partition).await
    }

    /// Resumes partition `partition` of `topic` stopped in group `group` past
    /// the record it stopped on, recording `reason` with the stop: for a record
    /// no fix can make applicable. A running consumer of the group reads the
    /// partition again from the record after it (within its resume poll
    /// interval); one that takes the partition over later passes over the
    /// record. The record is never applied. Returns the stop (the skipped
    /// record's offset and message id, the reason), or `None` when the
    /// partition was not stopped. Once the cause of a failure is fixed,
    /// [`resume`](Self::resume) instead.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] (nothing written) when `reason` is empty or only
    /// whitespace; [`Error::Database`].
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(conn: &mut diesel_async::AsyncPgConnection) -> Result<(), outbox_diesel::Error> {
    /// let reason = "account 42 was deleted upstream: nothing to apply it to";
    /// if let Some(stop) = outbox_diesel::consumer::Consumer::skip(conn, "billing", "accounts", 2, reason).await? {
    ///     println!("skipped offset {} (message {:?}); reading again from {}",
    ///         stop.kafka_offset, stop.message_id, stop.resume_offset());
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn skip(
        conn: &mut AsyncPgConnection,
        group: &str,
        topic: &str,
        partition: i32,
        reason: &str,
    ) -> Result<Option<StoppedPartition>> {
        stopped::skip_async(conn, group, topic, partition, reason).await
    }

    /// The topics subscribed to.
    pub fn topics(&self) -> &[String] {
        self.shared.routes.topics()
    }

    /// Checks, before anything is consumed, that the consumer can work as
    /// configured, to fail early with the cause first (`run` starts with it):
    ///
    /// - a connection comes out of the pool (within 10 s), and the consumer's
    ///   tables (`outbox_inbox`, `outbox_stopped_partitions`, `outbox_messages`)
    ///   are in its `search_path`;
    /// - the brokers answer a metadata request (within
    ///   [`CHECK_TIMEOUT`](outbox::kafka::CHECK_TIMEOUT)), past TLS and the
    ///   login: a refused login or certificate fails at once;
    /// - the controllers' topics exist, unless the consumer may create them
    ///   (`set("allow.auto.create.topics", "true")`, on brokers that allow it).
    ///
    /// # Errors
    ///
    /// [`Error::NotReady`] naming the database (see
    /// [`database_name`](ConsumerBuilder::database_name)) and the driver's
    /// cause (a refused TLS session, an unknown host, …), or saying to run
    /// `outbox migrations run`, or naming the missing topics;
    /// [`Error::KafkaConnect`] naming the brokers and the cause (refused
    /// login, untrusted certificate, wrong listener, connection refused,
    /// unknown host).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(consumer: outbox_diesel::consumer::Consumer) {
    /// if let Err(error) = consumer.check().await {
    ///     eprintln!("the consumer cannot start: {error}");
    /// }
    /// # }
    /// ```
    pub async fn check(&self) -> Result<()> {
        check::database(&self.shared.pool, self.settings.database_name.as_deref()).await?;
        check::kafka(&self.kafka_config, self.topics()).await
    }

    /// Consumes until `shutdown` completes; then every partition task finishes
    /// the record in hand, what was applied is committed, and the counts are
    /// returned.
    ///
    /// Starts with [`check`](Self::check), and returns its error instead of
    /// joining the group: a consumer that cannot work as configured says so
    /// at once. Once started, failures of the database or broker are waited
    /// out and retried (logged, repeats summarised), not returned.
    ///
    /// # Errors
    ///
    /// Those of [`check`](Self::check); [`Error::Kafka`] when the
    /// subscription is refused; [`Error::Serve`] or [`Error::MetricsRecorder`]
    /// when the server asked for with [`serve_metrics`](ConsumerBuilder::serve_metrics)
    /// cannot start.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<ConsumerReport> {
        self.check().await?;
        let Consumer {
            shared,
            control,
            revoked,
            settings,
            kafka_config: _,
        } = self;
        let observed = settings.observe.start("consumer").await?;
        // Counted in the gauge until this run returns.
        let _injecting = shared
            .faults
            .as_ref()
            .map(|faults| faults.announce("consumer"));
        let _probes = crate::serve::probe_consumer(&shared, &observed.component);
        let (stop_tx, stop_rx) = watch::channel(false);
        if let Some(projection) = &settings.projection {
            projection::start(&shared, projection, stop_rx.clone())
                .await
                .inspect_err(|error| {
                    observed.component.failed(crate::error::error_chain(error));
                })?;
        }
        let topics: Vec<&str> = shared.routes.topics().iter().map(String::as_str).collect();
        shared.consumer.subscribe(&topics).map_err(|source| {
            let error = Error::Kafka {
                context: format!("subscribing to {}", topics.join(", ")),
                source,
            };
            // Its loop never ran: a failure, not a shutdown.
            observed.component.failed(crate::error::error_chain(&error));
            error
        })?;
        let stopped: StoppedMap = Arc::new(Mutex::new(HashMap::new()));
        let watcher = tokio::spawn(watch_resumed(
            Arc::clone(&shared),
            Arc::clone(&stopped),
            settings.resume_poll_interval,
            stop_rx.clone(),
        ));
        let rebuilds = settings.projection.clone().map(|projection| {
            tokio::spawn(projection::watch_requests(
                Arc::clone(&shared),
                projection,
                settings.resume_poll_interval,
                stop_rx.clone(),
            ))
        });
        let retention = tokio::spawn(expire_inbox(
            shared.pool.clone(),
            settings.inbox_retention,
            settings.retention_interval,
            stop_rx,
        ));
        Dispatcher::new(Arc::clone(&shared), control, revoked, stopped, stop_tx)
            .run(shutdown)
            .await;
        let _ = watcher.await;
        let _ = retention.await;
        if let Some(rebuilds) = rebuilds {
            let _ = rebuilds.await;
        }
        shared.consumer.unsubscribe();
        Ok(shared.counters.report())
    }
}

impl ConsumerBuilder {
    /// Adds a controller, with the builder's [`failure_policy`](Self::failure_policy).
    pub fn controller(mut self, controller: impl Controller) -> Self {
        self.controllers.push((Arc::new(controller), None));
        self
    }

    /// Adds a controller with a failure policy of its own.
    pub fn controller_with(mut self, controller: impl Controller, policy: FailurePolicy) -> Self {
        self.controllers.push((Arc::new(controller), Some(policy)));
        self
    }

    /// The policy of controllers added without one, and of records no
    /// controller serves (default: retry, then stop the partition).
    pub fn failure_policy(mut self, policy: FailurePolicy) -> Self {
        self.default_policy = policy;
        self
    }

    /// Whether records whose route (`to` header) no controller of this
    /// consumer serves are acknowledged and counted
    /// (`outbox_consumer_ignored_total`) instead of failing under the
    /// [`failure_policy`](Self::failure_policy) (default: `false`, they fail).
    ///
    /// Failing is the default because such a record is never applied: when
    /// a controller was forgotten at deploy, a stopped partition keeps the
    /// record until it is added. Ignoring suits a consumer of a shared topic
    /// that serves only some of its routes, where a producer adding a model
    /// must not stop it; records of events a controller does not handle are
    /// ignored likewise (unless it is `strict`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use outbox::{Context, HandlerError, Outboxed, message_controller};
    /// # diesel::table! { users (id) { id -> BigInt, email -> Text } }
    /// # #[derive(diesel::Queryable, diesel::Selectable, diesel::Insertable, diesel::AsChangeset, Outboxed)]
    /// # #[diesel(table_name = users)]
    /// # #[outbox(topic = "accounts")]
    /// # struct User { id: i64, email: String }
    /// # struct Users;
    /// # #[message_controller(model = User, table = users)]
    /// # impl Users {}
    /// # fn f(pool: outbox_diesel::consumer::Pool) -> outbox_diesel::Result<()> {
    /// use outbox_diesel::Consumer;
    ///
    /// // `accounts` also carries routes this service does not care about.
    /// let consumer = Consumer::builder("localhost:9092", "billing", pool)
    ///     .controller(Users)
    ///     .ignore_unknown_routes(true)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn ignore_unknown_routes(mut self, ignore: bool) -> Self {
        self.ignore_unknown_routes = ignore;
        self
    }

    /// The `from` of follow-up messages enqueued through [`outbox::Context`]
    /// (default: the group).
    pub fn producer_name(mut self, name: impl Into<String>) -> Self {
        self.producer_name = Some(name.into());
        self
    }

    /// How many partitions may apply a record at once (default
    /// [`DEFAULT_CONCURRENCY`]); give the pool at least as many connections.
    pub fn concurrency(mut self, partitions: usize) -> Self {
        self.concurrency = partitions;
        self
    }

    /// Bytes of records (keys and values) read ahead for one partition before
    /// it is paused; reading resumes below half of it (default 4 MiB). Large
    /// enough that a partition never waits for librdkafka to fetch again.
    pub fn partition_buffer(mut self, bytes: usize) -> Self {
        self.partition_buffer = bytes;
        self
    }

    /// Most records of one partition applied in one transaction (default
    /// [`DEFAULT_BATCH_SIZE`]; 1 applies each record in a transaction of its
    /// own). A batch takes only records already read, never waiting for
    /// more, so live traffic keeps its latency; a backlog is applied with
    /// one inbox statement and one commit per batch. Each record's hooks
    /// still run in order inside the transaction. A record that fails rolls
    /// its batch back and is found: the records before it are applied again
    /// as a batch, it is retried alone under its failure policy, and the
    /// records after it follow.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(builder: outbox_diesel::ConsumerBuilder) -> Result<(), outbox_diesel::Error> {
    /// let consumer = builder.batch_size(500).build()?;
    /// # Ok(()) }
    /// ```
    pub fn batch_size(mut self, records: usize) -> Self {
        self.batch_size = records;
        self
    }

    /// Age after which inbox rows are deleted (default 7 days): longer than
    /// any re-delivery you expect (a replay from an old offset, a DLQ replay).
    pub fn inbox_retention(mut self, retention: Duration) -> Self {
        self.settings.inbox_retention = retention;
        self
    }

    /// Time between passes of the retention task (default 60 s).
    pub fn retention_interval(mut self, interval: Duration) -> Self {
        self.settings.retention_interval = interval;
        self
    }

    /// Makes the consumer a [`Projection`]: its position in each partition
    /// is kept in its own database (`outbox_projection_positions`, under the
    /// consumer's group as the projection's name), moved in the transaction
    /// of the records it applies, instead of an inbox row per message. On
    /// start, and whenever it is assigned a partition, it reads from the
    /// stored position (the group's committed offsets are only a hint), so a
    /// killed process resumes exactly where its last transaction left it.
    ///
    /// A projection applies each record once; a message the relay sent twice
    /// (at-least-once dispatch) is two records, both applied: write
    /// controllers whose effect does not change when a message is applied
    /// again (an upsert by key, a [per-key version](outbox::Outboxed::VERSION_FIELD)).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # fn f(builder: outbox_diesel::ConsumerBuilder) -> outbox_diesel::Result<()> {
    /// use outbox_diesel::consumer::Projection;
    ///
    /// let consumer = builder
    ///     .projection(Projection::new().reset_sql("TRUNCATE order_totals"))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn projection(mut self, projection: Projection) -> Self {
        self.settings.projection = Some(projection);
        self
    }

    /// Time between checks for resumed partitions (default 1 s).
    pub fn resume_poll_interval(mut self, interval: Duration) -> Self {
        self.settings.resume_poll_interval = interval;
        self
    }

    /// How errors name the consumer's database: give the URL the pool was
    /// made from (its password is masked). By default a database that cannot
    /// be reached is "the consumer's database", and one that can is named by
    /// what the server reports (user, address, database).
    pub fn database_name(mut self, url: &str) -> Self {
        self.settings.database_name = Some(mask_password(url));
        self
    }

    /// Serves `/metrics`, `/health/live` and `/health/ready` on `addr` while
    /// the consumer runs (see [`serve`](crate::serve)): ready while a pool
    /// checkout and a metadata request to the brokers succeed (checked every
    /// [`PROBE_INTERVAL`](crate::serve::PROBE_INTERVAL)). To share one server
    /// with a relay, use [`health`](Self::health) instead.
    pub fn serve_metrics(mut self, addr: std::net::SocketAddr) -> Self {
        self.settings.observe.serve(addr);
        self
    }

    /// Reports the consumer's health in `health` (from a
    /// [`MetricsServer`](crate::serve::MetricsServer) of yours).
    pub fn health(mut self, health: crate::serve::Health) -> Self {
        self.settings.observe.health(health);
        self
    }

    /// A librdkafka consumer setting (`auto.offset.reset` defaults to
    /// `earliest`). `enable.auto.commit` and `enable.auto.offset.store` are
    /// the consumer's own and cannot be set. Connection settings
    /// (`security.*`, `sasl.*`, `ssl.*`) and `message.max.bytes` (so records
    /// larger than 1 MB can be dead-lettered) also apply to the dead-letter producer.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.kafka.push((key.into(), value.into()));
        self
    }

    /// Injects faults into handler calls, for staging: active only when the
    /// process also runs with [`OUTBOX_FAULT_INJECTION=on`](crate::fault_injection::ENV_VAR)
    /// (read by [`build`](Self::build); without it, one warning and nothing
    /// injected). See [`fault_injection`](crate::fault_injection).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use outbox_diesel::fault_injection::FaultInjection;
    ///
    /// # fn f(builder: outbox_diesel::ConsumerBuilder) -> Result<(), outbox_diesel::Error> {
    /// let consumer = builder
    ///     .fault_injection(FaultInjection::new().fail_handlers(0.1).delay_handlers(0.1, Duration::from_millis(100)))
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn fault_injection(mut self, faults: crate::fault_injection::FaultInjection) -> Self {
        self.fault_injection = Some(faults);
        self
    }

    /// The schema registry that Avro records' writer schemas are fetched
    /// from, by the id in their frame (`GET /schemas/ids/{id}`).
    ///
    /// Each id is fetched once, when the first record naming it is met (one
    /// request, whichever partitions meet it at once), and kept for the
    /// consumer's life: an id never changes meaning. JSON records never need
    /// the registry.
    ///
    /// Without this setting, [`build`](Self::build) takes the registry of
    /// the environment when `SCHEMA_REGISTRY_URL` is set (and not empty):
    /// [`SchemaRegistry::from_env`], with its other `SCHEMA_REGISTRY_*`
    /// variables. With neither, an Avro record fails under its controller's
    /// failure policy, saying to set one.
    ///
    /// While the registry cannot answer (unreachable, too slow, 5xx or 429)
    /// or cannot be used as configured (credentials refused, certificate not
    /// trusted, a URL that is not a registry's API), a record needing a
    /// schema not fetched yet waits and is tried again with backoff: its
    /// partition neither stops nor dead-letters it, nor counts it as an
    /// attempt. The warning is logged once per outage. An id the registry
    /// does not know (404), or a schema that does not parse, fails the
    /// record under its controller's [`FailurePolicy`], the id named.
    ///
    /// Requests are counted in `outbox_schema_registry_requests_total{op="schema",
    /// outcome}` (`ok`, `not_found`, `unavailable`, `error`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// # fn f(builder: outbox_diesel::ConsumerBuilder) -> Result<(), Box<dyn std::error::Error>> {
    /// let registry = SchemaRegistry::builder("https://registry:8081")
    ///     .basic_auth("billing", "s3cret")
    ///     .build()?;
    /// let consumer = builder.schema_registry(registry).build()?;
    /// # Ok(()) }
    /// ```
    pub fn schema_registry(mut self, registry: SchemaRegistry) -> Self {
        self.schema_registry = Some(registry);
        self
    }

    /// Checks the settings and creates the Kafka clients (they connect on
    /// [`run`](Consumer::run)).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming every problem: no controller, two controllers
    /// on one route, a controller without topic, a concurrency of 0, a setting
    /// the consumer owns, a fault injection fraction outside 0.0 to 1.0,
    /// `SCHEMA_REGISTRY_*` variables that do not make a registry (when no
    /// [`schema_registry`](Self::schema_registry) is given);
    /// [`Error::KafkaClient`] when librdkafka refuses a
    /// setting or a file setting (`ssl.ca.location`, …) names a file that
    /// cannot be read.
    pub fn build(self) -> Result<Consumer> {
        let mut problems = Vec::new();
        let routes = Routes::new(
            self.controllers,
            self.default_policy,
            self.ignore_unknown_routes,
        )
        .map_err(|error| problems.push(error_reason(error)))
        .ok();
        if self.concurrency == 0 {
            problems.push("`concurrency` must be at least 1".to_owned());
        }
        if self.batch_size == 0 {
            problems.push("`batch_size` must be at least 1".to_owned());
        }
        if self.settings.retention_interval.is_zero()
            || self.settings.resume_poll_interval.is_zero()
        {
            problems.push(
                "`retention_interval` and `resume_poll_interval` must not be zero".to_owned(),
            );
        }
        for (key, _) in &self.kafka {
            if CONSUMER_REQUIRED.iter().any(|(owned, _)| owned == key) {
                problems.push(format!(
                    "`{key}` is set by the consumer (offsets are stored after each database commit)"
                ));
            }
            if key == "group.id" {
                problems.push(
                    "`group.id` is the builder's `group` (stops are recorded under it)".to_owned(),
                );
            }
        }
        if self.group.trim().is_empty() {
            problems.push("the consumer group must not be empty".to_owned());
        }
        if self.brokers.trim().is_empty() {
            problems.push("no Kafka brokers given".to_owned());
        }
        for (name, reason) in self.fault_injection.iter().flat_map(|f| f.problems()) {
            problems.push(format!("`{name}`: {reason}"));
        }
        let registry = match self.schema_registry {
            Some(registry) => Some(registry),
            None => SchemaRegistry::from_env_if_set()
                .map_err(|error| problems.push(error.to_string()))
                .ok()
                .flatten(),
        };
        let Some(routes) = routes.filter(|_| problems.is_empty()) else {
            return Err(Error::Config {
                name: "consumer",
                reason: problems.join("; "),
            });
        };
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", &self.group);
        for (key, value) in CONSUMER_DEFAULTS {
            config.set(*key, *value);
        }
        let mut producer_config = ClientConfig::new();
        producer_config.set("bootstrap.servers", &self.brokers);
        for (key, value) in outbox::kafka::PRODUCER_DEFAULTS {
            producer_config.set(*key, *value);
        }
        // Dead letters go one at a time, each awaited and retried by the
        // worker: a timeout reorders nothing here, and lets those retries
        // (and a shutdown) go on while the broker is away.
        producer_config.set("message.timeout.ms", "30000");
        for (key, value) in &self.kafka {
            config.set(key, value);
            if kafka::shared_with_producer(key) {
                producer_config.set(key, value);
            }
        }
        for (key, value) in CONSUMER_REQUIRED {
            config.set(*key, *value);
        }
        let (control_tx, control_rx) = mpsc::unbounded_channel();
        let revoked = kafka::RevokedFlags::default();
        let (consumer, _): (StreamConsumer<ConsumeContext>, _) =
            outbox::kafka::create_client_with(&mut config, "consumer", |diagnostics| {
                ConsumeContext {
                    control: control_tx.clone(),
                    revoked: Arc::clone(&revoked),
                    diagnostics,
                }
            })?;
        let (dead_letters, _): (FutureProducer<Diagnostics>, _) =
            outbox::kafka::create_client(&mut producer_config, "dead-letter producer")?;
        let producer_name = self.producer_name.unwrap_or_else(|| self.group.clone());
        let shared = Shared {
            consumer,
            pool: self.pool,
            routes,
            group: self.group,
            follow_ups: Outbox::new(producer_name),
            dead_letters,
            warnings: Summarizer::default(),
            counters: Counters::default(),
            permits: Semaphore::new(self.concurrency),
            control: control_tx,
            partition_buffer: self.partition_buffer.max(1),
            batch_size: self.batch_size,
            faults: self
                .fault_injection
                .and_then(|faults| faults.activate("consumer")),
            schemas: WriterSchemas::new(registry),
            projection: self.settings.projection.as_ref().map(Projection::settings),
        };
        Ok(Consumer {
            shared: Arc::new(shared),
            control: control_rx,
            revoked,
            settings: self.settings,
            kafka_config: config,
        })
    }
}

/// Waits `interval`; `false` when shutdown comes first.
async fn tick(interval: Duration, shutdown: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(interval) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}

/// Polls the stops of this consumer's stopped partitions; tells the
/// dispatcher when one is resumed.
async fn watch_resumed(
    shared: Arc<Shared>,
    stopped: StoppedMap,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if !tick(interval, &mut shutdown).await {
            return;
        }
        let watched: Vec<(Tp, (i64, i64))> = match stopped.lock() {
            Ok(stopped) => stopped
                .iter()
                .map(|(tp, stop)| (tp.clone(), *stop))
                .collect(),
            Err(_) => return,
        };
        if watched.is_empty() {
            continue;
        }
        let mut conn = match checkout(&shared.pool).await {
            Ok(conn) => conn,
            Err(error) => {
                if let Some(repeats) = shared.warnings.admit(&format!("resume check|{error}")) {
                    tracing::warn!(%error, "resume check: database unavailable{repeats}");
                }
                continue;
            }
        };
        for (tp, (stop_id, offset)) in watched {
            match stopped::by_id_async(&mut conn, stop_id).await {
                Ok(Some(stop)) if stop.resumed_at.is_none() => {}
                // Resumed (at the record, or past it when skipped), or its row
                // deleted by hand (at the record): read again.
                Ok(found) => {
                    let offset = found.map_or(offset, |stop| stop.resume_offset());
                    let _ = shared.control.send(Control::Resumed {
                        tp,
                        stop_id,
                        offset,
                    });
                }
                Err(error) => {
                    let error = crate::error::error_chain(&error);
                    if let Some(repeats) = shared.warnings.admit(&format!("resume check|{error}")) {
                        tracing::warn!(%error, "resume check failed{repeats}");
                    }
                }
            }
        }
    }
}

/// Deletes inbox rows older than `retention`, in small batches, every `interval`.
async fn expire_inbox(
    pool: Pool,
    retention: Duration,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if !tick(interval, &mut shutdown).await {
            return;
        }
        let mut conn = match checkout(&pool).await {
            Ok(conn) => conn,
            Err(error) => {
                tracing::warn!(%error, "inbox retention: database unavailable");
                continue;
            }
        };
        loop {
            match inbox::delete_expired(&mut conn, retention).await {
                Ok(deleted) => {
                    metrics::counter!("outbox_consumer_inbox_expired_total")
                        .increment(deleted as u64);
                    if (deleted as i64) < inbox::RETENTION_BATCH || *shutdown.borrow() {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "inbox retention failed");
                    break;
                }
            }
        }
    }
}

/// The reason of a configuration error, to report it beside the others.
fn error_reason(error: Error) -> String {
    match error {
        Error::Config { reason, .. } => reason,
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_needs_a_connection() {
        let error = pool("postgres://localhost/app", 0).err().expect("refused");
        assert_eq!(
            error.to_string(),
            "invalid setting `pool`: a pool needs at least one connection"
        );
    }

    #[tokio::test]
    async fn build_reports_every_problem_at_once() {
        let pool = pool("postgres://localhost/app", 1).unwrap();
        let error = Consumer::builder(" ", "", pool)
            .concurrency(0)
            .batch_size(0)
            .retention_interval(Duration::ZERO)
            .set("enable.auto.commit", "false")
            .set("group.id", "other")
            .build()
            .err()
            .expect("refused");
        let text = error.to_string();
        for problem in [
            "at least one controller",
            "`concurrency` must be at least 1",
            "`batch_size` must be at least 1",
            "must not be zero",
            "`enable.auto.commit` is set by the consumer",
            "`group.id` is the builder's `group`",
            "the consumer group must not be empty",
            "no Kafka brokers given",
        ] {
            assert!(text.contains(problem), "{problem:?} missing from {text:?}");
        }
    }
}
