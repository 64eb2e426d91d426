//! The sides compared: the outbox consumer with a `#[message_controller]`
//! controller (batched, and one record per transaction), and a hand-written
//! rdkafka + diesel-async consumer, with and without the inbox. All decode
//! with `outbox::kafka::decode_record` and run the same upsert statement (the
//! macro's, written out in [`model::upsert`] for the hand-written side); the
//! sides differ only in what is around it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use outbox::{
    BoxFuture, Context, Controller, Event, GroupError, HandlerError, Message, message_controller,
};
use outbox_diesel::consumer::{Consumer, ConsumerReport, DEFAULT_CONCURRENCY, Pool, Projection};
use outbox_diesel::schema::outbox_inbox;
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{CommitMode, Consumer as _, DefaultConsumerContext, StreamConsumer};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::common::kafka::PARTITIONS;
use crate::measure::{self, Cpu, Ending, Timing};
use crate::model::{self, Account, bench_accounts};
use crate::setup::TOPIC;

/// Connections in every side's pool: the outbox consumer's default
/// concurrency, as its docs advise.
pub(crate) const POOL_SIZE: usize = DEFAULT_CONCURRENCY;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Side {
    /// (a) `outbox_diesel::consumer::Consumer`, pool from `consumer::pool`,
    /// batched apply ([`Tuning::batch`]).
    Outbox,
    /// (a) with `batch_size(1)`: one transaction per record.
    OutboxPerRecord,
    /// (b) hand-written, inbox insert and upsert in one transaction per record.
    Hand,
    /// (c) as (b) without the inbox insert.
    HandNoInbox,
    /// Diagnostic: (a) with a pool that does not ping a connection on checkout.
    OutboxFastPool,
    /// Diagnostic: (b) checking a connection out of the pool per record, as
    /// the outbox consumer does.
    HandPoolPerRecord,
    /// Diagnostic: (a) measured by `before_`/`after_` hooks, so one upsert
    /// per record (no groups), as before grouped upserts.
    OutboxHooks,
    /// (d) (a) as a projection rebuilt from the earliest records: positions
    /// in the database, no inbox, its reset truncating the table.
    ProjectionRebuild,
}

/// Every side: what `OUTBOX_BENCH_SIDES` names it, and what it is.
pub(crate) const SIDES: [(Side, &str, &str); 8] = [
    (
        Side::Outbox,
        "outbox",
        "outbox Consumer + #[message_controller] (pool: consumer::pool), batched apply",
    ),
    (
        Side::OutboxPerRecord,
        "outbox-per-record",
        "the same with batch_size(1): one transaction per record",
    ),
    (
        Side::Hand,
        "hand",
        "hand-written rdkafka + diesel-async, inbox + upsert",
    ),
    (
        Side::HandNoInbox,
        "hand-no-inbox",
        "hand-written, upsert only (no inbox)",
    ),
    (
        Side::OutboxFastPool,
        "outbox-fast-pool",
        "diagnostic: outbox Consumer, pool with RecyclingMethod::Fast",
    ),
    (
        Side::HandPoolPerRecord,
        "hand-pool-per-record",
        "diagnostic: hand-written, a pooled connection per record",
    ),
    (
        Side::OutboxHooks,
        "outbox-hooks",
        "diagnostic: batched, measured by before_/after_ hooks: one upsert per record, no groups",
    ),
    (
        Side::ProjectionRebuild,
        "projection-rebuild",
        "outbox Consumer as a Projection, rebuilt (reset, earliest to high watermarks), batched, no inbox",
    ),
];

impl Side {
    pub(crate) fn name(self) -> &'static str {
        SIDES.iter().find(|(s, _, _)| *s == self).unwrap().1
    }

    pub(crate) fn description(self) -> &'static str {
        SIDES.iter().find(|(s, _, _)| *s == self).unwrap().2
    }

    pub(crate) fn parse(name: &str) -> Option<Side> {
        SIDES
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(side, _, _)| *side)
    }

    /// Whether this side is the outbox consumer.
    pub(crate) fn is_outbox(self) -> bool {
        matches!(
            self,
            Side::Outbox
                | Side::OutboxPerRecord
                | Side::OutboxFastPool
                | Side::OutboxHooks
                | Side::ProjectionRebuild
        )
    }

    /// Whether this side writes the inbox.
    pub(crate) fn inbox(self) -> bool {
        !matches!(self, Side::HandNoInbox | Side::ProjectionRebuild)
    }
}

/// How the outbox sides are set up.
pub(crate) struct Tuning {
    /// librdkafka settings (`OUTBOX_BENCH_OUTBOX_SET`).
    pub(crate) settings: Vec<(String, String)>,
    /// The batched sides' `batch_size` (`OUTBOX_BENCH_BATCH`).
    pub(crate) batch: usize,
}

/// What one run of a side measured.
pub(crate) struct Run {
    pub(crate) timing: Timing,
    /// See [`Cpu::per_1k`].
    pub(crate) cpu: [f64; 4],
    pub(crate) ending: Ending,
    /// The outbox consumer's own count.
    pub(crate) report: Option<ConsumerReport>,
    /// From the target reached to the consumer closed.
    pub(crate) shutdown_secs: f64,
}

impl Run {
    pub(crate) fn rate(&self) -> f64 {
        self.timing.applied as f64 / self.timing.secs
    }
}

/// Runs `side` in consumer group `group` on the database at `url` until
/// `messages` records are applied (or nothing is for `stall`).
pub(crate) async fn run(
    side: Side,
    brokers: &str,
    url: &str,
    group: &str,
    messages: u64,
    stall: Duration,
    tuning: &Tuning,
) -> Run {
    measure::reset(messages);
    let end: Arc<Mutex<Option<(Ending, Cpu, Instant)>>> = Arc::default();
    let shutdown = {
        let end = Arc::clone(&end);
        async move {
            let ending = measure::target_reached(stall).await;
            *end.lock().unwrap() = Some((ending, Cpu::now(), Instant::now()));
        }
    };
    let cpu = Cpu::now();
    let start = Instant::now();
    let report = match side {
        Side::Outbox
        | Side::OutboxPerRecord
        | Side::OutboxFastPool
        | Side::OutboxHooks
        | Side::ProjectionRebuild => {
            let pool = match side {
                Side::OutboxFastPool => fast_pool(url),
                _ => default_pool(url),
            };
            let batch = match side {
                Side::OutboxPerRecord => 1,
                _ => tuning.batch,
            };
            let settings = &tuning.settings;
            let shape = Shape {
                grouped: side != Side::OutboxHooks,
                rebuilt: side == Side::ProjectionRebuild,
            };
            Some(outbox(brokers, group, pool, settings, batch, shape, shutdown).await)
        }
        Side::Hand | Side::HandNoInbox | Side::HandPoolPerRecord => {
            let mode = Mode {
                inbox: side.inbox(),
                connection_per_record: side == Side::HandPoolPerRecord,
            };
            hand_written(brokers, group, default_pool(url), mode, shutdown).await;
            None
        }
    };
    let closed = Instant::now();
    let timing = measure::timing(start);
    let (ending, cpu_end, reached) = end.lock().unwrap().take().expect("the run ended");
    Run {
        cpu: cpu.per_1k(&cpu_end, timing.applied),
        timing,
        ending,
        report,
        shutdown_secs: closed.duration_since(reached).as_secs_f64(),
    }
}

/// The pool a user gets from the convenience constructor (deadpool,
/// diesel-async's default `RecyclingMethod::Verified`).
pub(crate) fn default_pool(url: &str) -> Pool {
    outbox_diesel::consumer::pool(url, POOL_SIZE).expect("pool")
}

/// A pool that hands out connections without a test query.
fn fast_pool(url: &str) -> Pool {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager = AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(url, config);
    Pool::builder(manager)
        .max_size(POOL_SIZE)
        .build()
        .expect("pool")
}

// ------------------------------------------------------------------ (a) the outbox consumer

/// Upserts accounts on created and updated (and deletes them on destroyed),
/// as `#[message_controller]` writes it. The hooks only measure: the
/// `before_` one starts the clock and counts idle partitions, as the
/// hand-written side does before its upsert; the `after_` one notes when the
/// record was handled (the live part's latency; nothing otherwise).
struct AccountsController;

#[message_controller(model = Account, table = bench_accounts)]
impl AccountsController {
    async fn before_update(
        &self,
        ctx: &mut Context<'_>,
        account: Account,
    ) -> Result<Account, HandlerError> {
        measure::started(ctx.partition());
        Ok(account)
    }

    async fn after_update(
        &self,
        ctx: &mut Context<'_>,
        _account: &Account,
    ) -> Result<(), HandlerError> {
        measure::handled(ctx.offset(), ctx.occurred_at());
        Ok(())
    }
}

/// The generated controller without hooks: created and updated go in groups
/// (one multi-row upsert for consecutive records of a batch).
struct AccountsGrouped;

#[message_controller(model = Account, table = bench_accounts)]
impl AccountsGrouped {}

/// [`AccountsGrouped`], measured around its calls as [`AccountsController`]'s
/// hooks measure: the clock starts before the upserts, each record is noted
/// handled after them (live part). A group has no offsets: records are
/// numbered in the order handled (the benchmark never rolls a batch back).
struct Measured(AccountsGrouped);

/// The order in which records were handled, for [`measure::handled`].
static HANDLED: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

fn next_handled() -> i64 {
    HANDLED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl Controller for Measured {
    fn route(&self) -> &str {
        self.0.route()
    }

    fn topics(&self) -> &[&str] {
        self.0.topics()
    }

    fn handles(&self, event: &Event) -> bool {
        self.0.handles(event)
    }

    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context<'_>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            measure::started(ctx.partition());
            self.0.handle(ctx, message).await?;
            measure::handled(next_handled(), ctx.occurred_at());
            Ok(())
        })
    }

    fn groups(&self, event: &Event) -> bool {
        self.0.groups(event)
    }

    fn handle_group<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        messages: &'a [&'a Message],
    ) -> BoxFuture<'a, Result<(), GroupError>> {
        Box::pin(async move {
            for message in messages {
                let key = message.partition_key.as_bytes();
                measure::started(outbox::kafka_partition(key, PARTITIONS as u32) as i32);
            }
            self.0.handle_group(conn, messages).await?;
            for message in messages {
                measure::handled(next_handled(), message.occurred_at);
            }
            Ok(())
        })
    }
}

/// How an outbox side's consumer is made.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    /// With [`Measured`] (upserts in groups), else with
    /// [`AccountsController`] (its hooks: one upsert per record).
    pub(crate) grouped: bool,
    /// A projection rebuilt at start (positions in the database, no inbox).
    pub(crate) rebuilt: bool,
}

/// Runs the outbox consumer, applying up to `batch` records per transaction,
/// until `shutdown`, as `shape` says.
pub(crate) async fn outbox(
    brokers: &str,
    group: &str,
    pool: Pool,
    settings: &[(String, String)],
    batch: usize,
    shape: Shape,
    shutdown: impl Future<Output = ()> + Send,
) -> ConsumerReport {
    let mut builder = Consumer::builder(brokers, group, pool);
    if shape.rebuilt {
        builder = builder.projection(
            Projection::new()
                .reset_sql("TRUNCATE bench_accounts")
                .rebuild_at_start()
                .progress_bar(false),
        );
    }
    let builder = if shape.grouped {
        builder.controller(Measured(AccountsGrouped))
    } else {
        builder.controller(AccountsController)
    };
    let mut builder = builder.batch_size(batch);
    for (key, value) in settings {
        builder = builder.set(key, value);
    }
    builder
        .build()
        .expect("build the outbox consumer")
        .run(shutdown)
        .await
        .expect("run the outbox consumer")
}

// ------------------------------------------------------------------ (b), (c) hand-written

#[derive(Debug, Clone, Copy)]
struct Mode {
    inbox: bool,
    connection_per_record: bool,
}

/// A consumer as one would write it without outbox: one task per partition,
/// each reading its own partition queue (rdkafka's `split_partition_queue`,
/// so a partition with a backlog never holds the others up and records are
/// not copied), applying one record at a time in one transaction, then
/// storing its offset, which librdkafka auto-commits. Same librdkafka settings
/// as the outbox consumer. No retries, rebalance or failure handling: there
/// are none in this benchmark.
async fn hand_written(
    brokers: &str,
    group: &str,
    pool: Pool,
    mode: Mode,
    shutdown: impl Future<Output = ()> + Send,
) {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .create()
        .expect("Kafka consumer");
    let consumer = Arc::new(consumer);
    let metadata = consumer
        .fetch_metadata(Some(TOPIC), Duration::from_secs(10))
        .expect("topic metadata");
    let partitions = metadata.topics()[0].partitions().len() as i32;
    let (stop, stopped) = watch::channel(false);
    let mut tasks = JoinSet::new();
    for partition in 0..partitions {
        let queue = consumer
            .split_partition_queue(TOPIC, partition)
            .expect("partition queue");
        tasks.spawn(partition_task(
            Arc::clone(&consumer),
            queue,
            pool.clone(),
            mode,
            stopped.clone(),
        ));
    }
    consumer.subscribe(&[TOPIC]).expect("subscribe");
    // The main queue serves the group's events; records come through the
    // partition queues.
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            event = consumer.recv() => match event {
                Ok(record) => panic!("record on the main queue: {record:?}"),
                Err(error) => eprintln!("hand-written consumer: {error}"),
            },
        }
    }
    let _ = stop.send(true);
    while let Some(task) = tasks.join_next().await {
        task.expect("partition task");
    }
    let _ = consumer.commit_consumer_state(CommitMode::Sync);
}

async fn partition_task(
    consumer: Arc<StreamConsumer>,
    queue: StreamPartitionQueue<DefaultConsumerContext>,
    pool: Pool,
    mode: Mode,
    mut stopped: watch::Receiver<bool>,
) {
    let mut held = match mode.connection_per_record {
        false => Some(pool.get().await.expect("connection")),
        true => None,
    };
    loop {
        let record = tokio::select! {
            biased;
            _ = stopped.wait_for(|stop| *stop) => return,
            record = queue.recv() => record.expect("consume"),
        };
        let message = outbox::kafka::decode_record(&record).expect("decode");
        let account = model::decode_account(&message).expect("payload");
        let mut checked_out;
        let conn: &mut AsyncPgConnection = match &mut held {
            Some(conn) => conn,
            None => {
                checked_out = pool.get().await.expect("connection");
                &mut checked_out
            }
        };
        let (partition, offset) = (record.partition(), record.offset());
        let applied = conn
            .transaction(async |conn| {
                if mode.inbox && !claim(conn, &message, partition, offset).await? {
                    return Ok(false);
                }
                measure::started(partition);
                model::upsert(conn, &account).await?;
                Ok::<_, diesel::result::Error>(true)
            })
            .await
            .expect("apply");
        consumer
            .store_offset(TOPIC, partition, offset)
            .expect("store offset");
        if applied {
            measure::applied(1);
        }
    }
}

/// The inbox row, as the outbox consumer writes it: `false` when it was
/// already there (a duplicate).
async fn claim(
    conn: &mut AsyncPgConnection,
    message: &Message,
    partition: i32,
    offset: i64,
) -> QueryResult<bool> {
    let inserted = diesel::insert_into(outbox_inbox::table)
        .values((
            outbox_inbox::source.eq(&message.from),
            outbox_inbox::message_id.eq(message.id.as_uuid()),
            outbox_inbox::topic.eq(&message.topic),
            outbox_inbox::kafka_partition.eq(partition),
            outbox_inbox::kafka_offset.eq(offset),
        ))
        .on_conflict_do_nothing()
        .execute(conn)
        .await?;
    Ok(inserted == 1)
}
