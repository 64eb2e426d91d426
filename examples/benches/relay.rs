//! The relay and enqueue against their limits, in one command, on the real
//! PostgreSQL and Kafka of `scripts/services.sh` (or `DATABASE_URL` / `KAFKA_BROKERS`).
//!
//! ```sh
//! cargo bench -p outbox-examples --bench relay                 # every part
//! cargo bench -p outbox-examples --bench relay -- drain memory # some parts
//! OUTBOX_BENCH_ROWS=50000 OUTBOX_BENCH_ROUNDS=2 cargo bench -p outbox-examples --bench relay
//! ```
//!
//! Parts (all by default; `OUTBOX_BENCH_PARTS=drain,live` works too):
//!
//! - `drain`: a backlog of `OUTBOX_BENCH_ROWS` rows (default 200,000; a 278-byte
//!   JSON payload in a ~470-byte envelope, 1,000 keys), written by
//!   `Outbox::enqueue_all` into a fresh schema and `ANALYZE`d (as autovacuum does
//!   after a burst; `OUTBOX_BENCH_ANALYZE=0` leaves the table without statistics
//!   and autovacuum off), drained by a `Relay` to a fresh 4-partition topic, at
//!   each batch size of `OUTBOX_BENCH_BATCHES` (default `100,1000`). Each round,
//!   in this order: raw produce of the same records from memory (a
//!   `ThreadedProducer` with `PRODUCER_DEFAULTS`, until all are acknowledged),
//!   the same in lockstep (a batch sent, all its acks awaited, the next one),
//!   the same with `OUTBOX_BENCH_RAW_IN_FLIGHT` (4) batches in flight, the relay,
//!   and the relay with a publisher that acknowledges at once (its database side
//!   alone). `OUTBOX_BENCH_ROUNDS` rounds (default 3) alternate the sides, so a
//!   busy machine slows them alike; fills are not timed; a relay run stops at
//!   `OUTBOX_BENCH_RUN_LIMIT` seconds (60). Where the time goes: CPU seconds of
//!   this process's threads (tokio workers, librdkafka), of the relay's
//!   PostgreSQL backend (found by `application_name`) and of the broker, from
//!   `/proc`; the time inside the publisher's `send`; and, apart, what a keyset
//!   read and the relay's delete cost on the same backlog.
//! - `memory`: the relay alone in a child process (this binary re-executed)
//!   drains the backlog at batch 1000; its `VmHWM` is the figure.
//! - `live`: writers enqueue `OUTBOX_BENCH_LIVE_RATE` msg/s (default 20,000) in
//!   transactions of 10 for `OUTBOX_BENCH_LIVE_SECS` (15) while the relay runs
//!   with its defaults: its sustained rate, the commit → ack lag, the CPU used.
//! - `enqueue`: a transaction inserting a user row and enqueueing its message,
//!   against the same transaction without the enqueue (and, as a diagnostic,
//!   with the `NOTIFY` trigger disabled), at 1 and 8 clients, interleaved rounds.
//! - `latency`: one message per transaction at `OUTBOX_BENCH_LATENCY_RATE`
//!   msg/s (1,000) for `OUTBOX_BENCH_LATENCY_SECS` (10), relay with its defaults
//!   (NOTIFY, 100 ms poll): commit → acknowledged (seen by the relay) and commit
//!   → consumed (a consumer on the topic; adds the fetch).
//!
//! The relay runs in this process (but for `memory`), instrumented from the
//! outside only: a metrics recorder sees its counters and batch histogram, and
//! a wrapper around its publisher times each `send` (two clock reads per
//! record). Ends with a summary table (figures, ratios, targets). Schemas and
//! topics it made are dropped at the end.

use std::collections::HashMap;
use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Barrier, Condvar, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bytea, Text, Untyped};
use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};
use outbox::kafka::{KafkaPublisher, PRODUCER_DEFAULTS};
use outbox::{Delivery, Event, MessageId, Outboxed, OutgoingRecord, PublishError, Publisher};
use outbox_diesel::{Outbox, Relay, RelayReport};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Header, Headers, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message as _, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:54329/outbox_test";
const DEFAULT_BROKERS: &str = "127.0.0.1:59092";
const PARTITIONS: i32 = 4;
const KEYS: i64 = 1000;
/// Messages per `enqueue_all` transaction when filling a backlog.
const FILL_CHUNK: usize = 10_000;
/// A relay that publishes nothing for this long is reported as hung.
const STALL: Duration = Duration::from_secs(30);

// ------------------------------------------------------------------ models

mod schema {
    #![allow(missing_docs)] // diesel's `table!` output
    diesel::table! {
        bench_users (id) {
            id -> BigInt,
            email -> Text,
            name -> Text,
            locale -> Text,
            created_at -> Timestamptz,
        }
    }
}
use schema::bench_users;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Line {
    sku: String,
    qty: u32,
    price_cents: i64,
}

/// The backlog's messages: ~200 bytes of JSON, keyed by one of 1,000 customers.
#[derive(Debug, Clone, Outboxed)]
#[outbox(topic = "outbox_bench.orders", route = "orders", partition_key = customer_id)]
struct Order {
    id: i64,
    customer_id: i64,
    status: String,
    currency: String,
    total_cents: i64,
    lines: Vec<Line>,
    ship_to: String,
    placed_at: DateTime<Utc>,
}

fn order(id: i64) -> Order {
    let customer_id = id % KEYS;
    Order {
        id,
        customer_id,
        status: "paid".into(),
        currency: "EUR".into(),
        total_cents: 4_990 + id % 10_000,
        lines: vec![
            Line {
                sku: format!("SKU-{:05}-A", id % 50_000),
                qty: 2,
                price_cents: 1_995,
            },
            Line {
                sku: format!("SKU-{:05}-B", (id * 7) % 50_000),
                qty: 1,
                price_cents: 1_000 + id % 1_000,
            },
        ],
        ship_to: format!("{} Rue de la Paix, 75002 Paris, FR", customer_id),
        placed_at: Utc.with_ymd_and_hms(2026, 11, 24, 9, 30, 0).unwrap()
            + chrono::Duration::milliseconds(id),
    }
}

/// The latency part's messages, on a topic of their own.
#[derive(Debug, Clone, Outboxed)]
#[outbox(topic = "outbox_bench.pings", route = "pings", partition_key = key)]
struct Ping {
    id: i64,
    key: i64,
    note: String,
}

/// The enqueue part's business row (its messages are never relayed).
#[derive(Debug, Clone, Queryable, Outboxed)]
#[diesel(table_name = bench_users)]
#[outbox(topic = "outbox_bench.users")]
struct User {
    id: i64,
    email: String,
    name: String,
    locale: String,
    created_at: DateTime<Utc>,
}

#[derive(Insertable)]
#[diesel(table_name = bench_users)]
struct NewUser<'a> {
    email: &'a str,
    name: &'a str,
    locale: &'a str,
}

// ------------------------------------------------------------------ settings

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Drain,
    Memory,
    Live,
    Enqueue,
    Latency,
}

const ALL_PARTS: [(Part, &str); 5] = [
    (Part::Drain, "drain"),
    (Part::Memory, "memory"),
    (Part::Live, "live"),
    (Part::Enqueue, "enqueue"),
    (Part::Latency, "latency"),
];

struct Config {
    server_url: String,
    brokers: String,
    rows: usize,
    rounds: usize,
    batches: Vec<usize>,
    parts: Vec<Part>,
    live_rate: u64,
    live_secs: f64,
    latency_rate: u64,
    latency_secs: f64,
    raw_in_flight: usize,
    analyze: bool,
    run_limit: f64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a valid value")),
        Err(_) => default,
    }
}

impl Config {
    fn new(args: &[String]) -> Self {
        let mut parts = Vec::new();
        let named = args.iter().filter(|a| !a.starts_with('-')).cloned().chain(
            std::env::var("OUTBOX_BENCH_PARTS")
                .ok()
                .into_iter()
                .flat_map(|v| v.split(',').map(str::to_owned).collect::<Vec<_>>()),
        );
        for name in named {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            match ALL_PARTS.iter().find(|(_, n)| *n == name) {
                Some((part, _)) => parts.push(*part),
                None => {
                    panic!("unknown part `{name}`; parts: drain, memory, live, enqueue, latency")
                }
            }
        }
        if parts.is_empty() {
            parts = ALL_PARTS.iter().map(|(p, _)| *p).collect();
        }
        let batches = std::env::var("OUTBOX_BENCH_BATCHES")
            .unwrap_or_else(|_| "100,1000".into())
            .split(',')
            .map(|b| {
                b.trim()
                    .parse()
                    .expect("OUTBOX_BENCH_BATCHES: sizes like 100,1000")
            })
            .collect();
        Config {
            server_url: std::env::var("DATABASE_URL")
                .unwrap_or_else(|_| DEFAULT_DATABASE_URL.into()),
            brokers: std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_BROKERS.into()),
            rows: env_or("OUTBOX_BENCH_ROWS", 200_000usize).max(1),
            rounds: env_or("OUTBOX_BENCH_ROUNDS", 3usize).max(1),
            batches,
            parts,
            live_rate: env_or("OUTBOX_BENCH_LIVE_RATE", 20_000u64).max(1),
            live_secs: env_or("OUTBOX_BENCH_LIVE_SECS", 15.0f64),
            latency_rate: env_or("OUTBOX_BENCH_LATENCY_RATE", 1_000u64).max(1),
            latency_secs: env_or("OUTBOX_BENCH_LATENCY_SECS", 10.0f64),
            raw_in_flight: env_or("OUTBOX_BENCH_RAW_IN_FLIGHT", 4usize).max(1),
            analyze: env_or("OUTBOX_BENCH_ANALYZE", 1u8) != 0,
            run_limit: env_or("OUTBOX_BENCH_RUN_LIMIT", 60.0f64),
        }
    }

    fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}

// ------------------------------------------------------------------ instrumentation

/// What the relay under test did, seen from outside it: its metrics (through a
/// recorder) and its publisher (through [`Instrumented`]). One relay runs at a
/// time. Nothing here depends on how the relay loop is organised.
struct Stats {
    base: Instant,
    published: AtomicU64,
    failed: AtomicU64,
    target: AtomicU64,
    /// When `published` reached `target` (ns since `base`; 0: not yet).
    reached_at: AtomicU64,
    first_send: AtomicU64,
    sends: AtomicU64,
    send_ns: AtomicU64,
    batches: AtomicU64,
    batch_ns: AtomicU64,
    track_ids: AtomicBool,
    acks: Mutex<Vec<(MessageId, Instant)>>,
}

static STATS: LazyLock<Stats> = LazyLock::new(|| Stats {
    base: Instant::now(),
    published: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    target: AtomicU64::new(u64::MAX),
    reached_at: AtomicU64::new(0),
    first_send: AtomicU64::new(0),
    sends: AtomicU64::new(0),
    send_ns: AtomicU64::new(0),
    batches: AtomicU64::new(0),
    batch_ns: AtomicU64::new(0),
    track_ids: AtomicBool::new(false),
    acks: Mutex::new(Vec::new()),
});

fn now_ns() -> u64 {
    STATS.base.elapsed().as_nanos() as u64 + 1
}

fn instant_of(ns: u64) -> Instant {
    STATS.base + Duration::from_nanos(ns)
}

fn reset_stats(target: u64, track_ids: bool) {
    let s = &*STATS;
    for a in [
        &s.published,
        &s.failed,
        &s.reached_at,
        &s.first_send,
        &s.sends,
        &s.send_ns,
        &s.batches,
        &s.batch_ns,
    ] {
        a.store(0, Relaxed);
    }
    s.target.store(target, Relaxed);
    s.track_ids.store(track_ids, Relaxed);
    s.acks.lock().unwrap().clear();
}

struct PublishedCounter;
impl CounterFn for PublishedCounter {
    fn increment(&self, value: u64) {
        let s = &*STATS;
        let total = s.published.fetch_add(value, Relaxed) + value;
        if total >= s.target.load(Relaxed) {
            let _ = s.reached_at.compare_exchange(0, now_ns(), Relaxed, Relaxed);
        }
    }
    fn absolute(&self, _value: u64) {}
}

struct FailedCounter;
impl CounterFn for FailedCounter {
    fn increment(&self, value: u64) {
        STATS.failed.fetch_add(value, Relaxed);
    }
    fn absolute(&self, _value: u64) {}
}

/// `outbox_relay_batch_seconds`: how many batches, and their summed duration.
struct BatchHistogram;
impl HistogramFn for BatchHistogram {
    fn record(&self, value: f64) {
        STATS.batches.fetch_add(1, Relaxed);
        STATS.batch_ns.fetch_add((value * 1e9) as u64, Relaxed);
    }
}

static PUBLISHED: LazyLock<Arc<PublishedCounter>> = LazyLock::new(|| Arc::new(PublishedCounter));
static FAILED: LazyLock<Arc<FailedCounter>> = LazyLock::new(|| Arc::new(FailedCounter));
static BATCH: LazyLock<Arc<BatchHistogram>> = LazyLock::new(|| Arc::new(BatchHistogram));

/// Sees the relay's counters and its batch histogram; ignores the rest.
struct BenchRecorder;

impl Recorder for BenchRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match key.name() {
            "outbox_relay_published_total" => Counter::from_arc(PUBLISHED.clone()),
            "outbox_relay_failed_total" => Counter::from_arc(FAILED.clone()),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        match key.name() {
            "outbox_relay_batch_seconds" => Histogram::from_arc(BATCH.clone()),
            _ => Histogram::noop(),
        }
    }
}

/// A publisher timing each `send` of the publisher it wraps (two clock reads
/// and three relaxed atomics per record) and, when asked, recording when each
/// message id was acknowledged.
struct Instrumented<P>(P);

struct InstrumentedAck<A> {
    inner: A,
    id: Option<MessageId>,
}

impl<A> Future for InstrumentedAck<A>
where
    A: Future<Output = Result<Delivery, PublishError>> + Unpin,
{
    type Output = A::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll(cx);
        if let (Poll::Ready(Ok(_)), Some(id)) = (&result, this.id) {
            STATS.acks.lock().unwrap().push((id, Instant::now()));
        }
        result
    }
}

impl<P> Publisher for Instrumented<P>
where
    P: Publisher,
    P::Ack: Unpin,
{
    type Ack = InstrumentedAck<P::Ack>;

    fn send(&self, record: &OutgoingRecord<'_>) -> Result<Self::Ack, PublishError> {
        let s = &*STATS;
        let started = now_ns();
        let _ = s.first_send.compare_exchange(0, started, Relaxed, Relaxed);
        let id = if s.track_ids.load(Relaxed) {
            record
                .headers
                .iter()
                .find(|(name, _)| *name == "message_id")
                .and_then(|(_, value)| MessageId::parse(value).ok())
        } else {
            None
        };
        let inner = self.0.send(record)?;
        s.send_ns.fetch_add(now_ns() - started, Relaxed);
        s.sends.fetch_add(1, Relaxed);
        Ok(InstrumentedAck { inner, id })
    }

    fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.0.flush(timeout)
    }
}

/// Acknowledges every record at once: the relay's database work alone.
struct NullPublisher;

impl Publisher for NullPublisher {
    type Ack = std::future::Ready<Result<Delivery, PublishError>>;

    fn send(&self, _record: &OutgoingRecord<'_>) -> Result<Self::Ack, PublishError> {
        Ok(std::future::ready(Ok(Delivery {
            partition: 0,
            offset: 0,
        })))
    }

    fn flush(&self, _timeout: Duration) -> Result<(), PublishError> {
        Ok(())
    }
}

fn vm_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

// ------------------------------------------------------------------ CPU accounting

/// Linux's `USER_HZ` (clock ticks in `/proc/*/stat`), 100 on every x86 build.
const TICKS: f64 = 100.0;

/// CPU seconds (user + system) of a process or thread from its `stat` file.
fn stat_cpu(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

/// The Kafka broker's process, when it runs on this machine.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.find_map(|entry| {
        let entry = entry.ok()?;
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        let cmdline = String::from_utf8_lossy(&cmdline);
        (cmdline.starts_with("java") || cmdline.contains("/java"))
            .then_some(())
            .filter(|()| cmdline.contains("kafka.Kafka"))
            .map(|()| pid)
    })
}

/// Thread groups of this process, by thread name.
const GROUPS: [&str; 4] = [
    "tokio workers",
    "librdkafka",
    "rdkafka poller",
    "other threads",
];

fn group_of(thread: &str) -> usize {
    if thread.starts_with("tokio-r") {
        0
    } else if thread.starts_with("rdk:") {
        1
    } else if thread.starts_with("producer pollin") {
        2
    } else {
        3
    }
}

/// CPU used so far by this process's threads, the broker and the machine.
#[derive(Clone, Default)]
struct CpuSnapshot {
    threads: HashMap<u32, (usize, f64)>,
    broker: Option<f64>,
    machine_busy: f64,
    machine_total: f64,
}

fn cpu_snapshot(broker: Option<u32>) -> CpuSnapshot {
    let mut threads = HashMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if let Some(cpu) = stat_cpu(&format!("/proc/self/task/{tid}/stat")) {
                threads.insert(tid, (group_of(name.trim()), cpu));
            }
        }
    }
    let (mut busy, mut total) = (0.0, 0.0);
    if let Some(line) = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
    {
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|f| f.parse().ok())
            .collect();
        if v.len() >= 8 {
            busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICKS;
            total = busy + (v[3] + v[4]) / TICKS;
        }
    }
    CpuSnapshot {
        threads,
        broker: broker.and_then(|pid| stat_cpu(&format!("/proc/{pid}/stat"))),
        machine_busy: busy,
        machine_total: total,
    }
}

/// CPU seconds spent between two snapshots.
#[derive(Clone, Debug, Default)]
struct CpuUse {
    /// This process, by [`GROUPS`].
    groups: [f64; 4],
    /// The relay's PostgreSQL backend (its whole life: one relay session).
    backend: f64,
    broker: f64,
    machine_busy: f64,
    machine_total: f64,
}

impl CpuUse {
    fn between(before: &CpuSnapshot, after: &CpuSnapshot, backend: Option<f64>) -> Self {
        let mut groups = [0.0; 4];
        for (tid, (group, cpu)) in &after.threads {
            let earlier = before.threads.get(tid).map_or(0.0, |(_, c)| *c);
            groups[*group] += (cpu - earlier).max(0.0);
        }
        CpuUse {
            groups,
            backend: backend.unwrap_or(0.0),
            broker: match (before.broker, after.broker) {
                (Some(b), Some(a)) => a - b,
                _ => f64::NAN,
            },
            machine_busy: after.machine_busy - before.machine_busy,
            machine_total: after.machine_total - before.machine_total,
        }
    }

    fn process(&self) -> f64 {
        self.groups.iter().sum()
    }

    /// Milliseconds of CPU per 1,000 messages of this process, the backend, the broker.
    fn per_1k(&self, messages: usize) -> [f64; 3] {
        let k = messages as f64 / 1000.0;
        [
            self.process() / k * 1e3,
            self.backend / k * 1e3,
            self.broker / k * 1e3,
        ]
    }

    fn describe(&self, messages: usize) -> String {
        let k = messages as f64 / 1000.0;
        let [process, backend, broker] = self.per_1k(messages);
        let groups: Vec<String> = GROUPS
            .iter()
            .zip(self.groups)
            .filter(|(_, s)| *s > 0.0)
            .map(|(name, s)| format!("{name} {:.1}", s / k * 1e3))
            .collect();
        let busy = if self.machine_total > 0.0 {
            self.machine_busy / self.machine_total * 100.0
        } else {
            f64::NAN
        };
        format!(
            "CPU ms per 1k msgs: process {process:.1} ({}), PG backend {backend:.1}, broker {broker:.1}; machine busy {busy:.0}%",
            groups.join(", ")
        )
    }
}

// ------------------------------------------------------------------ database

fn pg(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} is not reachable: {e}; start it with `bash scripts/services.sh up`",
            outbox_diesel::mask_password(url)
        )
    })
}

/// Adds `options=-c search_path=<schema>` to a libpq URL (tokio-postgres reads it too).
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

struct Schema {
    name: String,
    url: String,
}

/// Schemas made by this run; all dropped by [`Db::drop_all`].
struct Db {
    server_url: String,
    made: Mutex<Vec<String>>,
}

impl Db {
    /// A fresh schema with outbox's tables.
    fn schema(&self, tag: &str) -> Schema {
        let mut made = self.made.lock().unwrap();
        let name = format!("outbox_bench_{}_{}_{tag}", std::process::id(), made.len());
        pg(&self.server_url)
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .expect("create schema");
        made.push(name.clone());
        let url = with_search_path(&self.server_url, &name);
        outbox_diesel::migrations::run(&mut pg(&url)).expect("outbox migrations");
        Schema { name, url }
    }

    fn drop_schema(&self, schema: &Schema) {
        let _ = pg(&self.server_url).batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            schema.name
        ));
    }

    fn drop_all(&self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap());
        if let Ok(mut conn) = PgConnection::establish(&self.server_url) {
            for name in made {
                let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
            }
        }
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count_rows(url: &str) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM outbox_messages")
        .get_result::<Count>(&mut pg(url))
        .map(|c| c.n)
        .unwrap_or(-1)
}

/// Writes `rows` order messages with `enqueue_all`, `FILL_CHUNK` per transaction,
/// from two connections at once. Returns the time taken.
fn fill(url: &str, rows: usize) -> Duration {
    let outbox = Outbox::new("orders-service");
    let start = Instant::now();
    let half = rows.div_ceil(2);
    std::thread::scope(|scope| {
        for (from, to) in [(0, half), (half, rows)] {
            let outbox = &outbox;
            scope.spawn(move || {
                let mut conn = pg(url);
                let mut at = from;
                while at < to {
                    let end = (at + FILL_CHUNK).min(to);
                    let orders: Vec<Order> = (at..end).map(|i| order(i as i64 + 1)).collect();
                    conn.transaction(|conn| outbox.enqueue_all(conn, &orders, Event::Created))
                        .expect("fill the outbox");
                    at = end;
                }
            });
        }
    });
    start.elapsed()
}

/// Fills a backlog of `rows` with [`fill`]; then gives the planner statistics,
/// as autovacuum does soon after a burst (the default), or, with `analyze`
/// false (`OUTBOX_BENCH_ANALYZE=0`), leaves the table without any and
/// autovacuum off, as a table that never had enough rows to be analyzed.
/// Returns the fill's msg/s.
fn backlog(url: &str, rows: usize, analyze: bool) -> f64 {
    let mut conn = pg(url);
    if !analyze {
        conn.batch_execute("ALTER TABLE outbox_messages SET (autovacuum_enabled = off)")
            .expect("autovacuum off");
    }
    let rate = rows as f64 / fill(url, rows).as_secs_f64();
    if analyze {
        conn.batch_execute("ANALYZE outbox_messages")
            .expect("analyze");
    }
    rate
}

/// A record as the relay sends it, held in memory for the raw producer.
#[derive(QueryableByName)]
struct RawRecord {
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Text)]
    partition_key: String,
    #[diesel(sql_type = Array<Text>)]
    headers: Vec<String>,
    #[diesel(sql_type = Bytea)]
    payload: Vec<u8>,
}

fn load_records(url: &str) -> Vec<RawRecord> {
    diesel::sql_query(
        "SELECT topic, partition_key, headers, payload FROM outbox_messages ORDER BY id",
    )
    .load(&mut pg(url))
    .expect("load the backlog")
}

// ------------------------------------------------------------------ kafka

fn admin(brokers: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("Kafka admin client")
}

fn probe(brokers: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("Kafka metadata client")
}

fn topic_exists(brokers: &str, topic: &str) -> bool {
    probe(brokers)
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .map(|m| {
            m.topics()
                .iter()
                .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        })
        .unwrap_or(false)
}

async fn delete_topic(admin: &AdminClient<DefaultClientContext>, topic: &str) {
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = admin.delete_topics(&[topic], &options).await;
}

/// Deletes `topic` if a previous run left it, creates it with `PARTITIONS`
/// partitions and waits until each has a leader.
async fn fresh_topic(brokers: &str, topic: &str) {
    let admin = admin(brokers);
    if topic_exists(brokers, topic) {
        delete_topic(&admin, topic).await;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let new = NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1));
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let result = admin.create_topics([&new], &options).await;
        let created = match result {
            Ok(results) => results.into_iter().all(|r| r.is_ok()),
            Err(e) => panic!("Kafka at {brokers}: cannot create topic {topic}: {e}"),
        };
        if created {
            break;
        }
        // Still being deleted: try again.
        assert!(Instant::now() < deadline, "could not create topic {topic}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let probe = probe(brokers);
    loop {
        let ready = probe
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .ok()
            .and_then(|m| {
                m.topics().iter().find(|t| t.name() == topic).map(|t| {
                    t.error().is_none()
                        && t.partitions().len() == PARTITIONS as usize
                        && t.partitions().iter().all(|p| p.leader() >= 0)
                })
            })
            .unwrap_or(false);
        if ready {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} got no leaders");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn producer_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    for (key, value) in PRODUCER_DEFAULTS {
        config.set(*key, *value);
    }
    config
}

/// Counts deliveries; wakes a waiter when a target count is reached.
#[derive(Default)]
struct Counting {
    delivered: AtomicU64,
    errors: AtomicU64,
    target: AtomicU64,
    lock: Mutex<()>,
    reached: Condvar,
}

impl ClientContext for Counting {}

impl ProducerContext for Counting {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _opaque: ()) {
        if result.is_err() {
            self.errors.fetch_add(1, Relaxed);
        }
        let delivered = self.delivered.fetch_add(1, Relaxed) + 1;
        if delivered >= self.target.load(Relaxed) {
            let _guard = self.lock.lock().unwrap();
            self.reached.notify_all();
        }
    }
}

impl Counting {
    fn wait_for(&self, count: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        self.target.store(count, Relaxed);
        let mut guard = self.lock.lock().unwrap();
        while self.delivered.load(Relaxed) < count {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "raw producer: {} of {count} delivered after {timeout:?}",
                self.delivered.load(Relaxed)
            );
            guard = self.reached.wait_timeout(guard, left).unwrap().0;
        }
    }
}

fn raw_send(producer: &ThreadedProducer<Counting>, record: &RawRecord) {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() / 2);
    for pair in record.headers.chunks_exact(2) {
        headers = headers.insert(Header {
            key: &pair[0],
            value: Some(pair[1].as_bytes()),
        });
    }
    let mut base = BaseRecord::to(&record.topic)
        .key(record.partition_key.as_bytes())
        .payload(&record.payload)
        .headers(headers);
    loop {
        match producer.send(base) {
            Ok(()) => return,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                base = back;
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((e, _)) => panic!("raw producer: {e}"),
        }
    }
}

struct RawRun {
    secs: f64,
    send_secs: f64,
    cpu: CpuUse,
}

/// How the raw producer paces itself.
#[derive(Clone, Copy)]
enum Pace {
    /// Everything at once, then wait for all acks.
    AllAtOnce,
    /// Batches of `batch`, at most `in_flight` of them unacknowledged (1: lockstep).
    Window { batch: usize, in_flight: usize },
}

/// Sends `records` with a fresh producer (connected and warmed by one record first).
fn raw_produce(brokers: &str, records: &[RawRecord], pace: Pace, broker: Option<u32>) -> RawRun {
    let producer: ThreadedProducer<Counting> = producer_config(brokers)
        .create_with_context(Counting::default())
        .expect("raw producer");
    let ctx = producer.context().clone();
    raw_send(&producer, &records[0]);
    ctx.wait_for(1, Duration::from_secs(30));
    let (batch, in_flight) = match pace {
        Pace::AllAtOnce => (records.len(), 1),
        Pace::Window { batch, in_flight } => (batch, in_flight),
    };
    let mut sent = 1;
    let mut send_time = Duration::ZERO;
    let cpu_before = cpu_snapshot(broker);
    let start = Instant::now();
    for chunk in records.chunks(batch) {
        let t = Instant::now();
        for record in chunk {
            raw_send(&producer, record);
        }
        send_time += t.elapsed();
        sent += chunk.len() as u64;
        let allowed = ((in_flight - 1) * batch) as u64;
        ctx.wait_for(sent.saturating_sub(allowed), Duration::from_secs(120));
    }
    ctx.wait_for(sent, Duration::from_secs(300));
    let secs = start.elapsed().as_secs_f64();
    let cpu = CpuUse::between(&cpu_before, &cpu_snapshot(broker), None);
    let errors = ctx.errors.load(Relaxed);
    assert_eq!(errors, 0, "raw producer: {errors} records failed");
    RawRun {
        secs,
        send_secs: send_time.as_secs_f64(),
        cpu,
    }
}

/// A `KafkaPublisher` as the relay gets it, connected: one record sent and acknowledged.
async fn kafka_publisher(brokers: &str, topic: &str) -> KafkaPublisher {
    let publisher = KafkaPublisher::new(brokers).expect("Kafka publisher");
    let headers: [(&str, &str); 0] = [];
    let warm = OutgoingRecord {
        topic,
        key: b"warmup",
        headers: &headers,
        value: b"{}",
    };
    publisher
        .send(&warm)
        .expect("send a warm-up record")
        .await
        .expect("warm-up record acknowledged");
    publisher
}

// ------------------------------------------------------------------ relay runs

struct DrainRun {
    secs: f64,
    published: u64,
    /// Stopped at the time limit before the backlog was drained.
    capped: bool,
    /// From `run` to the first record handed to the publisher.
    startup: f64,
    batches: u64,
    /// Mean of `outbox_relay_batch_seconds`.
    batch_mean: f64,
    /// Time inside the publisher's `send`, per record.
    send_us: f64,
    cpu: CpuUse,
    report: Option<RelayReport>,
    left: i64,
    problem: Option<String>,
}

impl DrainRun {
    fn rate(&self) -> f64 {
        self.published as f64 / self.secs
    }

    fn describe(&self) -> String {
        let capped = if self.capped {
            format!(" CAPPED: {} rows in", group(self.published as f64))
        } else {
            String::new()
        };
        format!(
            "{capped}{:.2} s, {} batches (mean outbox_relay_batch_seconds {:.2} ms), start-up {:.0} ms, send {:.2} us/record\n      {}",
            self.secs,
            self.batches,
            self.batch_mean * 1e3,
            self.startup * 1e3,
            self.send_us,
            self.cpu.describe(self.published as usize)
        )
    }
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// The PostgreSQL backend serving the session named `application`.
fn backend_pid(server_url: &str, application: &str) -> Option<u32> {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE application_name = $1 LIMIT 1")
        .bind::<Text, _>(application)
        .get_result::<Pid>(&mut pg(server_url))
        .ok()
        .map(|p| p.pid as u32)
}

/// Runs a relay on the schema at `url` until it has published `rows` rows (or
/// `limit` has passed); the time is from `run` to the published counter
/// reaching `rows`.
async fn relay_drain<P>(
    url: &str,
    publisher: P,
    batch: usize,
    rows: u64,
    broker: Option<u32>,
    limit: Duration,
) -> DrainRun
where
    P: Publisher,
    P::Ack: Unpin,
{
    reset_stats(rows, false);
    let application = format!(
        "outbox_bench_{}_{}",
        std::process::id(),
        RUNS.fetch_add(1, Relaxed)
    );
    let relay_url = format!("{url}&application_name={application}");
    let relay = Relay::builder(relay_url, Instrumented(publisher))
        .batch_size(batch)
        .build()
        .expect("relay settings");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let cpu_before = cpu_snapshot(broker);
    let start = Instant::now();
    let start_ns = now_ns();
    let running = tokio::spawn(relay.run(async move {
        stopped.await.ok();
    }));
    let mut problem = None;
    let mut last = 0;
    let mut last_change = Instant::now();
    let mut backend = None;
    let mut lookups = 0;
    let mut capped = false;
    loop {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let published = STATS.published.load(Relaxed);
        // Once the relay has a session, find its backend (a few tries at most).
        if backend.is_none() && published > 0 && lookups < 5 {
            lookups += 1;
            let (url, application) = (url.to_owned(), application.clone());
            backend = tokio::task::spawn_blocking(move || backend_pid(&url, &application))
                .await
                .ok()
                .flatten();
        }
        if published >= rows {
            break;
        }
        if start.elapsed() > limit {
            capped = true;
            break;
        }
        if running.is_finished() {
            problem = Some(format!(
                "the relay stopped by itself after {published} rows"
            ));
            break;
        }
        if published != last {
            last = published;
            last_change = Instant::now();
        } else if last_change.elapsed() > STALL {
            problem = Some(format!(
                "hung: {published} of {rows} rows published, nothing for {STALL:?} ({} failed attempts)",
                STATS.failed.load(Relaxed)
            ));
            break;
        }
    }
    let backend_cpu = backend.and_then(|pid| stat_cpu(&format!("/proc/{pid}/stat")));
    let cpu = CpuUse::between(&cpu_before, &cpu_snapshot(broker), backend_cpu);
    let reached = STATS.reached_at.load(Relaxed);
    let secs = if reached == 0 {
        start.elapsed().as_secs_f64()
    } else {
        instant_of(reached).duration_since(start).as_secs_f64()
    };
    let s = &*STATS;
    let published = s.published.load(Relaxed).min(rows);
    let batches = s.batches.load(Relaxed);
    let first_send = s.first_send.load(Relaxed);
    let startup = first_send.saturating_sub(start_ns) as f64 / 1e9;
    let batch_mean = s.batch_ns.load(Relaxed) as f64 / 1e9 / batches.max(1) as f64;
    let send_us = s.send_ns.load(Relaxed) as f64 / 1e3 / s.sends.load(Relaxed).max(1) as f64;
    let _ = stop.send(());
    let report = match tokio::time::timeout(Duration::from_secs(60), running).await {
        Ok(Ok(Ok(report))) => Some(report),
        Ok(Ok(Err(e))) => {
            problem.get_or_insert(format!("the relay returned an error: {e}"));
            None
        }
        Ok(Err(e)) => {
            problem.get_or_insert(format!("the relay panicked: {e}"));
            None
        }
        Err(_) => {
            problem.get_or_insert("the relay did not stop within 60 s of shutdown".into());
            None
        }
    };
    let url = url.to_owned();
    let left = tokio::task::spawn_blocking(move || count_rows(&url))
        .await
        .unwrap_or(-1);
    if problem.is_none() && !capped {
        if left != 0 {
            problem = Some(format!(
                "{left} rows left in the table after {rows} were counted published"
            ));
        } else if let Some(r) = &report
            && r.published != rows
        {
            problem = Some(format!(
                "report says {} published, expected {rows}",
                r.published
            ));
        }
    }
    DrainRun {
        secs,
        published,
        capped,
        startup,
        batches,
        batch_mean,
        send_us,
        cpu,
        report,
        left,
        problem,
    }
}

// ------------------------------------------------------------------ the relay's SQL, apart

/// A reference read for the SQL diagnostic: the relay's columns and parked-key
/// filter, walking the primary key after the last id read (keyset), the least
/// a read of these rows can cost. A query type of its own, so Diesel caches
/// its prepared statement as it does the relay's.
struct FetchAfter {
    after: i64,
    limit: i64,
    /// Without the `NOT EXISTS` on parked rows (to see what it costs).
    plain: bool,
}

/// A read from the oldest row (as the relay reads when it starts from the
/// oldest): what it costs on a table with many deleted rows (`EXPLAIN ANALYZE`).
const READ_FROM_OLDEST: &str = "SELECT m.id, m.topic, m.partition_key, m.headers, m.payload \
     FROM outbox_messages m WHERE m.id > 0 \
       AND NOT EXISTS (SELECT 1 FROM outbox_messages p \
                       WHERE p.parked_at IS NOT NULL AND p.topic = m.topic \
                         AND p.partition_key = m.partition_key AND p.id <= m.id) \
     ORDER BY m.id LIMIT 1000";

impl QueryId for FetchAfter {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for FetchAfter {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for FetchAfter {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT m.id, m.topic, m.partition_key, m.headers, m.payload \
             FROM outbox_messages m WHERE m.id > ",
        );
        out.push_bind_param::<BigInt, _>(&self.after)?;
        if !self.plain {
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

/// A row as the relay reads it.
#[derive(QueryableByName)]
#[allow(dead_code)] // read to pay for decoding, as the relay does
struct RelayRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Text)]
    partition_key: String,
    #[diesel(sql_type = Array<Text>)]
    headers: Vec<String>,
    #[diesel(sql_type = Bytea)]
    payload: Vec<u8>,
}

/// Wall, PostgreSQL backend and client CPU, in ms per 1,000 rows, of one statement kind.
#[derive(Debug, Clone, Copy)]
struct SqlCost {
    wall: f64,
    backend: f64,
    client: f64,
}

/// Walks a backlog with the reference read (once untimed, once timed, once
/// timed without the `NOT EXISTS`), then deletes it batch by batch with the
/// relay's delete (`id = ANY($1)`), on one diesel-async connection: what a
/// read and a delete cost at least, apart.
async fn sql_split(url: &str, rows: usize, batch: usize) -> [SqlCost; 3] {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl as Async};
    use outbox_diesel::schema::outbox_messages;
    let application = format!("outbox_bench_{}_sql", std::process::id());
    let mut conn = AsyncPgConnection::establish(&format!("{url}&application_name={application}"))
        .await
        .expect("connect");
    let backend = {
        let (url, application) = (url.to_owned(), application.clone());
        tokio::task::spawn_blocking(move || backend_pid(&url, &application))
            .await
            .ok()
            .flatten()
    };
    let backend_cpu = || backend.and_then(|pid| stat_cpu(&format!("/proc/{pid}/stat")));
    let measure = |before: (Instant, CpuSnapshot, Option<f64>)| {
        let cpu = CpuUse::between(&before.1, &cpu_snapshot(None), None);
        let k = rows as f64 / 1000.0;
        SqlCost {
            wall: before.0.elapsed().as_secs_f64() / k * 1e3,
            backend: backend_cpu()
                .zip(before.2)
                .map_or(f64::NAN, |(a, b)| (a - b) / k * 1e3),
            client: cpu.process() / k * 1e3,
        }
    };
    let mut ids: Vec<Vec<i64>> = Vec::new();
    let mut costs = Vec::new();
    for (walk, plain) in [(0, false), (1, false), (2, true)] {
        let start = (Instant::now(), cpu_snapshot(None), backend_cpu());
        let mut after = 0;
        loop {
            let query = FetchAfter {
                after,
                limit: batch as i64,
                plain,
            };
            let read: Vec<RelayRow> = Async::load(query, &mut conn).await.expect("fetch");
            let Some(last) = read.last() else { break };
            after = last.id;
            if walk == 0 {
                ids.push(read.iter().map(|r| r.id).collect());
            }
        }
        if walk > 0 {
            costs.push(measure(start));
        }
    }
    let start = (Instant::now(), cpu_snapshot(None), backend_cpu());
    for chunk in &ids {
        let delete =
            diesel::delete(outbox_messages::table.filter(outbox_messages::id.eq_any(chunk)));
        Async::execute(delete, &mut conn).await.expect("delete");
    }
    let delete = measure(start);
    [costs[0], costs[1], delete]
}

/// What a read from the oldest row costs right now (`EXPLAIN ANALYZE`), and how
/// many dead rows the table holds.
fn read_probe(url: &str) -> String {
    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let mut conn = pg(url);
    let plan: Vec<Plan> =
        diesel::sql_query(format!("EXPLAIN (ANALYZE, BUFFERS) {READ_FROM_OLDEST}"))
            .load(&mut conn)
            .unwrap_or_default();
    let buffers = plan
        .iter()
        .find(|p| p.line.trim_start().starts_with("Buffers:"))
        .map_or("?", |p| p.line.trim());
    let time = plan
        .iter()
        .find(|p| p.line.starts_with("Execution Time"))
        .map_or("?", |p| p.line.trim());
    let dead = diesel::sql_query(
        "SELECT coalesce(n_dead_tup, 0) AS n FROM pg_stat_user_tables \
         WHERE relid = 'outbox_messages'::regclass",
    )
    .get_result::<Count>(&mut conn)
    .map_or(-1, |c| c.n);
    let heap = diesel::sql_query("SELECT pg_relation_size('outbox_messages') AS n")
        .get_result::<Count>(&mut conn)
        .map_or(-1, |c| c.n);
    // The relay's gauge query (every 5 s, on its own session, between batches).
    let gauges = Instant::now();
    let _ = conn.batch_execute(
        "SELECT count(*) FILTER (WHERE parked_at IS NULL), count(*) FILTER (WHERE parked_at IS NOT NULL), \
         extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL))::float8 \
         FROM outbox_messages",
    );
    format!(
        "{time}, {buffers}; dead rows (pg_stat) {dead}, heap {:.0} MB; \
         the relay's gauge query (a seq scan) takes {:.1} ms",
        heap as f64 / 1e6,
        gauges.elapsed().as_secs_f64() * 1e3
    )
}

// ------------------------------------------------------------------ statistics

fn median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn best(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn group(n: f64) -> String {
    if !n.is_finite() {
        return "n/a".into();
    }
    let digits = format!("{:.0}", n.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0.0 { format!("-{out}") } else { out }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// One line of the final summary.
struct Figure {
    name: String,
    value: String,
    target: String,
    verdict: Option<bool>,
}

#[derive(Default)]
struct Summary {
    figures: Vec<Figure>,
    problems: Vec<String>,
}

impl Summary {
    fn add(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.figures.push(Figure {
            name: name.into(),
            value: value.into(),
            target: String::new(),
            verdict: None,
        });
    }

    fn check(
        &mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        target: impl Into<String>,
        pass: bool,
    ) {
        self.figures.push(Figure {
            name: name.into(),
            value: value.into(),
            target: target.into(),
            verdict: Some(pass),
        });
    }

    fn print(&self) {
        let width = self
            .figures
            .iter()
            .map(|f| f.name.chars().count())
            .max()
            .unwrap_or(0);
        let value_width = self
            .figures
            .iter()
            .map(|f| f.value.chars().count())
            .max()
            .unwrap_or(0);
        println!(
            "\n==================== summary (load average now {}) ====================",
            load_average()
        );
        for f in &self.figures {
            let verdict = match f.verdict {
                Some(true) => "PASS",
                Some(false) => "MISS",
                None => "",
            };
            println!(
                "  {:<width$}  {:>value_width$}  {:<26} {verdict}",
                f.name, f.value, f.target
            );
        }
        if !self.problems.is_empty() {
            println!("\nproblems seen:");
            for p in &self.problems {
                println!("  - {p}");
            }
        }
    }
}

// ------------------------------------------------------------------ the parts

struct Bench {
    config: Config,
    db: Db,
    runtime: tokio::runtime::Runtime,
    summary: Summary,
    broker: Option<u32>,
}

/// One drain round's figures: msg/s of each side, and the runs themselves.
struct DrainRound {
    raw: RawRun,
    lockstep: RawRun,
    window: RawRun,
    relay: DrainRun,
    null: DrainRun,
}

impl Bench {
    fn rate(&self, secs: f64) -> f64 {
        self.config.rows as f64 / secs
    }

    /// Warms the broker (a fresh one is ~2x slower) and reports the record size.
    fn warm_up(&mut self) {
        let schema = self.db.schema("warm");
        let rows = self.config.rows.min(100_000);
        fill(&schema.url, rows);
        let records = load_records(&schema.url);
        let value: usize = records.iter().map(|r| r.payload.len()).sum();
        let headers: usize = records
            .iter()
            .map(|r| r.headers.iter().map(String::len).sum::<usize>())
            .sum();
        let payload = serde_json::to_vec(&order(123_456).to_payload(&Event::Created, 1).unwrap())
            .unwrap()
            .len();
        println!(
            "records: model payload {payload} B of JSON, record value (envelope) {} B, headers {} B, key 1..3 B; {KEYS} keys",
            value / records.len(),
            headers / records.len()
        );
        let t = Instant::now();
        for _ in 0..2 {
            raw_produce(&self.config.brokers, &records, Pace::AllAtOnce, self.broker);
        }
        println!(
            "broker warmed up: {} records in {:.1} s",
            group(2.0 * records.len() as f64),
            t.elapsed().as_secs_f64()
        );
        self.db.drop_schema(&schema);
    }

    fn drain_round(&mut self, batch: usize, fills: &mut Vec<f64>) -> DrainRound {
        let rows = self.config.rows;
        let brokers = self.config.brokers.clone();
        let kafka_schema = self.db.schema("k");
        let null_schema = self.db.schema("n");
        fills.push(backlog(&kafka_schema.url, rows, self.config.analyze));
        fills.push(backlog(&null_schema.url, rows, self.config.analyze));
        let records = load_records(&kafka_schema.url);
        assert_eq!(records.len(), rows);
        let in_flight = self.config.raw_in_flight;
        let limit = Duration::from_secs_f64(self.config.run_limit);
        let raw = raw_produce(&brokers, &records, Pace::AllAtOnce, self.broker);
        let lockstep = raw_produce(
            &brokers,
            &records,
            Pace::Window {
                batch,
                in_flight: 1,
            },
            self.broker,
        );
        let window = raw_produce(
            &brokers,
            &records,
            Pace::Window { batch, in_flight },
            self.broker,
        );
        drop(records);
        let broker = self.broker;
        let relay = self.runtime.block_on(async {
            let publisher = kafka_publisher(&brokers, Order::TOPIC).await;
            relay_drain(
                &kafka_schema.url,
                publisher,
                batch,
                rows as u64,
                broker,
                limit,
            )
            .await
        });
        let null = self.runtime.block_on(relay_drain(
            &null_schema.url,
            NullPublisher,
            batch,
            rows as u64,
            broker,
            limit,
        ));
        self.db.drop_schema(&kafka_schema);
        self.db.drop_schema(&null_schema);
        DrainRound {
            raw,
            lockstep,
            window,
            relay,
            null,
        }
    }

    fn drain(&mut self) {
        let rows = self.config.rows;
        let batches = self.config.batches.clone();
        let in_flight = self.config.raw_in_flight;
        let mut series: Vec<Vec<DrainRound>> = batches.iter().map(|_| Vec::new()).collect();
        let mut fills = Vec::new();
        println!(
            "\n== drain: {} rows{}, batches {batches:?}, {} rounds; each: raw all at once, raw lockstep, raw {in_flight} batches in flight, relay, relay without Kafka ==",
            group(rows as f64),
            if self.config.analyze {
                " (ANALYZEd after the fill)"
            } else {
                " (never ANALYZEd, autovacuum off)"
            },
            self.config.rounds
        );
        for round in 1..=self.config.rounds {
            for (b, &batch) in batches.iter().enumerate() {
                let r = self.drain_round(batch, &mut fills);
                println!(
                    "round {round} batch {batch}: raw {}/s | lockstep {}/s | {in_flight} in flight {}/s | relay {}/s | relay without Kafka {}/s | relay/raw {:.3}",
                    group(self.rate(r.raw.secs)),
                    group(self.rate(r.lockstep.secs)),
                    group(self.rate(r.window.secs)),
                    group(r.relay.rate()),
                    group(r.null.rate()),
                    r.relay.rate() / self.rate(r.raw.secs)
                );
                println!(
                    "    raw:    send {:.2} us/record (lockstep); {}",
                    r.lockstep.send_secs / rows as f64 * 1e6,
                    r.raw.cpu.describe(rows)
                );
                println!("    relay:  {}", r.relay.describe());
                println!("    no Kafka: {}", r.null.describe());
                for (what, run) in [("relay", &r.relay), ("relay without Kafka", &r.null)] {
                    if run.capped {
                        self.summary.problems.push(format!(
                            "drain round {round}, {what}, batch {batch}: stopped at the {} s limit \
                             (OUTBOX_BENCH_RUN_LIMIT) after {} of {} rows",
                            self.config.run_limit,
                            group(run.published as f64),
                            group(rows as f64)
                        ));
                    }
                    if let Some(problem) = &run.problem {
                        println!("    PROBLEM ({what}, batch {batch}): {problem}");
                        self.summary.problems.push(format!(
                            "drain round {round}, {what}, batch {batch}: {problem}"
                        ));
                    }
                    if let Some(report) = &run.report
                        && report.failed_attempts > 0
                    {
                        self.summary.problems.push(format!(
                            "drain round {round}, {what}, batch {batch}: {} failed attempts (left {})",
                            report.failed_attempts, run.left
                        ));
                    }
                }
                series[b].push(r);
            }
        }
        self.summary.add(
            "fill: enqueue_all, 2 connections (median)",
            format!("{} msg/s", group(median(&fills))),
        );
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as f64;
        // Raw all at once does not depend on the batch size: every round's run counts.
        let raw: Vec<f64> = series
            .iter()
            .flatten()
            .map(|r| rows as f64 / r.raw.secs)
            .collect();
        for (b, &batch) in batches.iter().enumerate() {
            let rounds = &series[b];
            let rates = |f: &dyn Fn(&DrainRound) -> f64| -> Vec<f64> {
                rounds.iter().map(|r| rows as f64 / f(r)).collect()
            };
            let relay: Vec<f64> = rounds.iter().map(|r| r.relay.rate()).collect();
            let pair = |v: &[f64]| format!("{} / {} msg/s", group(best(v)), group(median(v)));
            let name = format!("drain, relay batch {batch} (best / median)");
            if batch == 1000 {
                self.summary.check(
                    name,
                    pair(&relay),
                    ">= 74,000 (aim 110,000)",
                    best(&relay) >= 74_000.0,
                );
            } else {
                self.summary.add(name, pair(&relay));
            }
            self.summary.add(
                format!(
                    "  raw produce, same records, all at once ({} runs)",
                    raw.len()
                ),
                pair(&raw),
            );
            self.summary.add(
                format!("  raw produce, lockstep batches of {batch}"),
                pair(&rates(&|r| r.lockstep.secs)),
            );
            self.summary.add(
                format!("  raw produce, {in_flight} batches of {batch} in flight"),
                pair(&rates(&|r| r.window.secs)),
            );
            self.summary.add(
                "  relay without Kafka (acks at once)",
                pair(&rounds.iter().map(|r| r.null.rate()).collect::<Vec<_>>()),
            );
            let ratio_best = best(&relay) / best(&raw);
            let ratio_median = median(&relay) / median(&raw);
            let paired: Vec<f64> = rounds
                .iter()
                .map(|r| r.relay.rate() * r.raw.secs / rows as f64)
                .collect();
            self.summary.check(
                format!("  relay ÷ raw, batch {batch}: median÷median (best÷best, paired median)"),
                format!(
                    "{ratio_median:.3} ({ratio_best:.3}, {:.3})",
                    median(&paired)
                ),
                ">= 0.4 (aim 0.5)",
                ratio_median >= 0.4,
            );
            let med =
                |f: &dyn Fn(&DrainRound) -> f64| median(&rounds.iter().map(f).collect::<Vec<_>>());
            // CPU milliseconds per 1,000 messages, median over the rounds.
            let per_1k = |f: &dyn Fn(&DrainRound) -> f64| med(f) * 1e6;
            let relay_cpu = [
                per_1k(&|r| r.relay.cpu.groups[0] / r.relay.published as f64),
                per_1k(&|r| {
                    (r.relay.cpu.groups[1] + r.relay.cpu.groups[2]) / r.relay.published as f64
                }),
                per_1k(&|r| r.relay.cpu.backend / r.relay.published as f64),
                per_1k(&|r| r.relay.cpu.broker / r.relay.published as f64),
            ];
            let raw_cpu = [
                per_1k(&|r| r.raw.cpu.process() / rows as f64),
                per_1k(&|r| r.raw.cpu.broker / rows as f64),
            ];
            let null_cpu = [
                per_1k(&|r| r.null.cpu.groups[0] / r.null.published as f64),
                per_1k(&|r| r.null.cpu.backend / r.null.published as f64),
            ];
            self.summary.add(
                "  CPU ms/1k msgs, relay: tokio | rdkafka | PG | broker",
                format!(
                    "{:.1} | {:.1} | {:.1} | {:.1}",
                    relay_cpu[0], relay_cpu[1], relay_cpu[2], relay_cpu[3]
                ),
            );
            self.summary.add(
                "  CPU ms/1k msgs, raw: producer | broker",
                format!("{:.1} | {:.1}", raw_cpu[0], raw_cpu[1]),
            );
            self.summary.add(
                "  CPU ms/1k msgs, relay without Kafka: tokio | PG",
                format!("{:.1} | {:.1}", null_cpu[0], null_cpu[1]),
            );
            let ceiling = |ms: f64| cores * 1e6 / ms;
            self.summary.add(
                format!("  CPU-bound ceiling on {cores} cores: relay / raw"),
                format!(
                    "{} / {} msg/s",
                    group(ceiling(relay_cpu.iter().sum())),
                    group(ceiling(raw_cpu.iter().sum()))
                ),
            );
            self.summary.add(
                "  machine busy during relay / raw",
                format!(
                    "{:.0}% / {:.0}%",
                    med(&|r| r.relay.cpu.machine_busy / r.relay.cpu.machine_total) * 100.0,
                    med(&|r| r.raw.cpu.machine_busy / r.raw.cpu.machine_total) * 100.0
                ),
            );
            self.summary.add(
                "  publisher send, us/record: relay / raw",
                format!(
                    "{:.2} / {:.2}",
                    med(&|r| r.relay.send_us),
                    med(&|r| r.lockstep.send_secs / rows as f64 * 1e6)
                ),
            );
            let schema = self.db.schema("sql");
            backlog(&schema.url, rows, self.config.analyze);
            let [fetch, plain, delete] = self.runtime.block_on(sql_split(&schema.url, rows, batch));
            self.db.drop_schema(&schema);
            let show = |c: SqlCost| format!("{:.2}|{:.2}|{:.2}", c.wall, c.backend, c.client);
            println!(
                "batch {batch}, reference SQL apart, ms per 1k rows (wall|PG backend CPU|client CPU): \
                 keyset read {}, the same without NOT EXISTS {}, delete {}",
                show(fetch),
                show(plain),
                show(delete)
            );
            self.summary.add(
                "  reference SQL, ms/1k rows wall|PG|client: keyset read; delete",
                format!("{}; {}", show(fetch), show(delete)),
            );
            self.summary
                .add("  the keyset read without its NOT EXISTS", show(plain));
            self.summary.add(
                "  relay batches; mean outbox_relay_batch_seconds",
                format!(
                    "{:.0}; {:.2} ms",
                    med(&|r| r.relay.batches as f64),
                    med(&|r| r.relay.batch_mean) * 1e3
                ),
            );
        }
    }

    fn memory(&mut self) {
        let rows = self.config.rows;
        println!(
            "\n== memory: the relay alone in a child process, batch 1000, {} rows ==",
            group(rows as f64)
        );
        let schema = self.db.schema("mem");
        backlog(&schema.url, rows, self.config.analyze);
        let exe = std::env::current_exe().expect("this benchmark's path");
        let output = Command::new(exe)
            .args(["--child-drain", &schema.url, "1000", &rows.to_string()])
            .output()
            .expect("run the child relay");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().find(|l| l.starts_with("CHILD "));
        let Some(line) = line else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            self.summary
                .problems
                .push(format!("memory: the child failed: {stdout}{stderr}"));
            self.db.drop_schema(&schema);
            return;
        };
        println!("{line}");
        let field = |name: &str| -> f64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let (start, ready, end, secs) = (
            field("hwm_start_kb"),
            field("hwm_ready_kb"),
            field("hwm_end_kb"),
            field("secs"),
        );
        if let Some(problem) = line.split("problem=").nth(1) {
            self.summary
                .problems
                .push(format!("memory child: {problem}"));
        }
        let mb = |kb: f64| kb / 1024.0;
        self.summary.check(
            "relay memory: peak RSS (VmHWM) of a child draining",
            format!("{:.1} MB", mb(end)),
            "<= 50 MB",
            mb(end) <= 50.0,
        );
        self.summary.add(
            "  of which before the relay ran (runtime + publisher)",
            format!("{:.1} MB (at start {:.1} MB)", mb(ready), mb(start)),
        );
        self.summary.add(
            "  child's drain rate at batch 1000",
            format!("{} msg/s", group(rows as f64 / secs)),
        );
        self.db.drop_schema(&schema);
    }

    fn live(&mut self) {
        let rate = self.config.live_rate;
        let secs = self.config.live_secs;
        const TXN: usize = 10;
        const WRITERS: usize = 2;
        println!(
            "\n== live: {} msg/s offered in transactions of {TXN} by {WRITERS} writers for {secs} s, relay with defaults ==",
            group(rate as f64)
        );
        let schema = self.db.schema("live");
        let brokers = self.config.brokers.clone();
        let publisher = self
            .runtime
            .block_on(kafka_publisher(&brokers, Order::TOPIC));
        reset_stats(u64::MAX, true);
        let application = format!("outbox_bench_{}_live", std::process::id());
        let relay_url = format!("{}&application_name={application}", schema.url);
        let relay = Relay::builder(relay_url, Instrumented(publisher))
            .build()
            .expect("relay settings");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = self.runtime.spawn(relay.run(async move {
            stopped.await.ok();
        }));
        std::thread::sleep(Duration::from_millis(500));
        let backend = backend_pid(&schema.url, &application);
        let backend_before = backend.and_then(|pid| stat_cpu(&format!("/proc/{pid}/stat")));
        let cpu_before = cpu_snapshot(self.broker);
        let published_before = STATS.published.load(Relaxed);
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(secs);
        let per_writer = rate as f64 / WRITERS as f64;
        let interval = Duration::from_secs_f64(TXN as f64 / per_writer);
        let written: Vec<(Vec<(MessageId, Instant)>, f64)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..WRITERS)
                .map(|w| {
                    let url = &schema.url;
                    scope.spawn(move || {
                        let outbox = Outbox::new("orders-service");
                        let mut conn = pg(url);
                        let mut commits = Vec::new();
                        let mut next = Instant::now();
                        let mut id = (w as i64) << 40;
                        while next < deadline {
                            let now = Instant::now();
                            if next > now {
                                std::thread::sleep(next - now);
                            }
                            let orders: Vec<Order> = (0..TXN)
                                .map(|_| {
                                    id += 1;
                                    order(id)
                                })
                                .collect();
                            let ids = conn
                                .transaction(|c| outbox.enqueue_all(c, &orders, Event::Created))
                                .expect("enqueue");
                            let committed = Instant::now();
                            commits.extend(ids.into_iter().map(|id| (id, committed)));
                            next += interval;
                        }
                        (commits, stat_cpu("/proc/thread-self/stat").unwrap_or(0.0))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let window = start.elapsed().as_secs_f64();
        let writers_cpu: f64 = written.iter().map(|(_, cpu)| cpu).sum();
        let commits: Vec<Vec<(MessageId, Instant)>> = written.into_iter().map(|(c, _)| c).collect();
        let published_window = STATS.published.load(Relaxed) - published_before;
        let backend_cpu = backend
            .and_then(|pid| stat_cpu(&format!("/proc/{pid}/stat")))
            .zip(backend_before)
            .map(|(after, before)| after - before);
        let cpu = CpuUse::between(&cpu_before, &cpu_snapshot(self.broker), backend_cpu);
        let enqueued: usize = commits.iter().map(Vec::len).sum();
        let backlog = count_rows(&schema.url);
        let probe = read_probe(&schema.url);
        let catch_up = Instant::now();
        let mut caught_up = true;
        while STATS.published.load(Relaxed) - published_before < enqueued as u64 {
            if catch_up.elapsed() > Duration::from_secs(120) {
                caught_up = false;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let catch_up = catch_up.elapsed().as_secs_f64();
        let batches = STATS.batches.load(Relaxed);
        let _ = stop.send(());
        let report = self.runtime.block_on(running);
        let commit_at: HashMap<MessageId, Instant> = commits.into_iter().flatten().collect();
        let lags: Vec<f64> = STATS
            .acks
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(id, acked)| {
                Some(
                    acked
                        .saturating_duration_since(*commit_at.get(id)?)
                        .as_secs_f64()
                        * 1e3,
                )
            })
            .collect();
        // When the lag spikes: commits with a lag over 50 ms, by 100-ms slot of the load.
        let mut spikes: HashMap<u64, (usize, f64)> = HashMap::new();
        for (id, acked) in STATS.acks.lock().unwrap().iter() {
            if let Some(committed) = commit_at.get(id) {
                let lag = acked.saturating_duration_since(*committed).as_secs_f64() * 1e3;
                if lag > 50.0 {
                    let slot =
                        (committed.saturating_duration_since(start).as_secs_f64() * 10.0) as u64;
                    let entry = spikes.entry(slot).or_default();
                    entry.0 += 1;
                    entry.1 = entry.1.max(lag);
                }
            }
        }
        let mut spikes: Vec<(u64, (usize, f64))> = spikes.into_iter().collect();
        spikes.sort_by(|a, b| b.1.1.total_cmp(&a.1.1));
        spikes.truncate(8);
        spikes.sort_by_key(|(slot, _)| *slot);
        let spikes: Vec<String> = spikes
            .iter()
            .map(|(slot, (n, max))| {
                format!("{:.1} s: {n} msgs up to {max:.0} ms", *slot as f64 / 10.0)
            })
            .collect();
        let achieved = enqueued as f64 / window;
        let relayed = published_window as f64 / window;
        println!(
            "enqueued {} in {window:.1} s ({}/s), relay published {} in that window ({}/s) in {batches} batches; \
             backlog when writers stopped {backlog}, caught up {catch_up:.2} s later",
            group(enqueued as f64),
            group(achieved),
            group(published_window as f64),
            group(relayed),
        );
        if !caught_up {
            self.summary.problems.push(format!(
                "live: the relay did not catch up within 120 s ({backlog} rows behind)"
            ));
        }
        if let Ok(Ok(report)) = &report
            && report.failed_attempts > 0
        {
            self.summary
                .problems
                .push(format!("live: {} failed attempts", report.failed_attempts));
        }
        self.summary.add(
            format!("live: offered / achieved enqueue ({TXN} per transaction)"),
            format!("{} / {} msg/s", group(rate as f64), group(achieved)),
        );
        self.summary.check(
            "  relay sustained rate during the load",
            format!("{} msg/s", group(relayed)),
            "keeps up (>= 95% of enqueue)",
            relayed >= 0.95 * achieved && caught_up,
        );
        self.summary.add(
            "  lag commit -> ack: p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                percentile(&lags, 0.5),
                percentile(&lags, 0.99),
                percentile(&lags, 1.0)
            ),
        );
        println!("    {}", cpu.describe(enqueued));
        println!("    a read from the oldest row when the writers stopped: {probe}");
        println!(
            "    worst lag (> 50 ms) by commit time into the load: {}",
            spikes.join("; ")
        );
        self.summary.add(
            "  CPU during the load, ms per 1k msgs: relay (tokio + rdkafka) | writers | PG relay backend | broker",
            format!(
                "{:.1} | {:.1} | {:.1} | {:.1}; machine busy {:.0}%",
                (cpu.groups[0] + cpu.groups[1] + cpu.groups[2]) / enqueued as f64 * 1e6,
                writers_cpu / enqueued as f64 * 1e6,
                cpu.backend / enqueued as f64 * 1e6,
                cpu.broker / enqueued as f64 * 1e6,
                cpu.machine_busy / cpu.machine_total * 100.0
            ),
        );
        self.summary.add(
            "  backlog at the end of the load; batches (mean rows)",
            format!(
                "{backlog} rows; {batches} ({:.0})",
                published_window as f64 / batches.max(1) as f64
            ),
        );
        self.db.drop_schema(&schema);
    }

    fn enqueue(&mut self) {
        let rounds = self.config.rounds.max(3) + 4;
        println!(
            "\n== enqueue cost: user insert (+ enqueue) per transaction, {rounds} interleaved rounds: \
             without, with, with the NOTIFY trigger disabled (a diagnostic) =="
        );
        let users = "CREATE TABLE bench_users (id bigserial PRIMARY KEY, email text NOT NULL, \
                     name text NOT NULL, locale text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())";
        let schema = self.db.schema("enq");
        pg(&schema.url).batch_execute(users).expect("users table");
        let quiet = self.db.schema("enqq");
        pg(&quiet.url)
            .batch_execute(&format!(
                "{users}; ALTER TABLE outbox_messages DISABLE TRIGGER outbox_messages_notify"
            ))
            .expect("users table, trigger off");
        let mut conns: Vec<PgConnection> = (0..8).map(|_| pg(&schema.url)).collect();
        let mut quiet_conns: Vec<PgConnection> = (0..8).map(|_| pg(&quiet.url)).collect();
        for clients in [1usize, 8] {
            let per_client = if clients == 1 { 2_000 } else { 500 };
            let mut sides: [Vec<f64>; 3] = Default::default();
            // An untimed round of each first.
            for r in 0..=rounds {
                for (side, times) in sides.iter_mut().enumerate() {
                    let conns = if side == 2 {
                        &mut quiet_conns[..clients]
                    } else {
                        &mut conns[..clients]
                    };
                    let secs = txn_round(conns, per_client, side > 0);
                    if r > 0 {
                        times.push(secs / (clients * per_client) as f64 * 1e6);
                    }
                }
            }
            let [without, with, quiet_with] = &sides;
            let fastest = |v: &[f64]| percentile(v, 0.0);
            let ratio_best = fastest(with) / fastest(without);
            let paired: Vec<f64> = with.iter().zip(without).map(|(w, o)| w / o).collect();
            println!(
                "{clients} client(s), us per transaction (wall time / transactions): without {without:.0?}, \
                 with {with:.0?}, with, no NOTIFY {quiet_with:.0?}"
            );
            self.summary.check(
                format!(
                    "enqueue cost, {clients} client(s): with ÷ without (fastest / paired median)"
                ),
                format!("{ratio_best:.3} / {:.3}", median(&paired)),
                "<= 1.3",
                ratio_best <= 1.3,
            );
            self.summary.add(
                "  us per transaction (fastest round): without | with | with, no NOTIFY",
                format!(
                    "{:.0} | {:.0} | {:.0} ({} | {} | {} txn/s)",
                    fastest(without),
                    fastest(with),
                    fastest(quiet_with),
                    group(1e6 / fastest(without)),
                    group(1e6 / fastest(with)),
                    group(1e6 / fastest(quiet_with))
                ),
            );
        }
        drop(conns);
        drop(quiet_conns);
        self.db.drop_schema(&schema);
        self.db.drop_schema(&quiet);
    }

    fn latency(&mut self) {
        let rate = self.config.latency_rate;
        let secs = self.config.latency_secs;
        const WARMUP: Duration = Duration::from_secs(1);
        println!(
            "\n== latency: {} msg/s, one per transaction, for {secs} s (+1 s not counted), relay with defaults ==",
            group(rate as f64)
        );
        let brokers = self.config.brokers.clone();
        self.runtime.block_on(fresh_topic(&brokers, Ping::TOPIC));
        let schema = self.db.schema("lat");
        let publisher = self
            .runtime
            .block_on(kafka_publisher(&brokers, Ping::TOPIC));
        reset_stats(u64::MAX, true);
        let relay = Relay::builder(schema.url.clone(), Instrumented(publisher))
            .build()
            .expect("relay settings");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = self.runtime.spawn(relay.run(async move {
            stopped.await.ok();
        }));

        let consuming = Arc::new(AtomicBool::new(true));
        let consumer = {
            let consuming = consuming.clone();
            let brokers = brokers.clone();
            std::thread::spawn(move || {
                let consumer: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .set("group.id", format!("outbox_bench_{}", std::process::id()))
                    .set("enable.auto.commit", "false")
                    .create()
                    .expect("consumer");
                let mut assignment = TopicPartitionList::new();
                for p in 0..PARTITIONS {
                    assignment
                        .add_partition_offset(Ping::TOPIC, p, Offset::Beginning)
                        .unwrap();
                }
                consumer.assign(&assignment).expect("assign");
                let mut seen = Vec::new();
                while consuming.load(Relaxed) {
                    if let Some(Ok(record)) = consumer.poll(Duration::from_millis(50)) {
                        let at = Instant::now();
                        let id = record.headers().and_then(|h| {
                            h.iter()
                                .find(|h| h.key == "message_id")
                                .and_then(|h| std::str::from_utf8(h.value?).ok())
                                .and_then(|v| MessageId::parse(v).ok())
                        });
                        if let Some(id) = id {
                            seen.push((id, at));
                        }
                    }
                }
                seen
            })
        };
        std::thread::sleep(Duration::from_millis(1000));

        let outbox = Outbox::new("pings-service");
        let mut conn = pg(&schema.url);
        let interval = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now();
        let counted_from = start + WARMUP;
        let deadline = counted_from + Duration::from_secs_f64(secs);
        let mut next = start;
        let mut commits: Vec<(MessageId, Instant, bool)> = Vec::new();
        let mut seq = 0i64;
        while next < deadline {
            let now = Instant::now();
            if next > now {
                std::thread::sleep(next - now);
            }
            seq += 1;
            let ping = Ping {
                id: seq,
                key: seq % KEYS,
                note: "ping".into(),
            };
            let id = conn
                .transaction(|c| outbox.enqueue(c, &ping, Event::Created))
                .expect("enqueue");
            let committed = Instant::now();
            commits.push((id, committed, committed >= counted_from));
            next += interval;
        }
        let achieved = commits.iter().filter(|c| c.2).count() as f64 / secs;
        let total = commits.len() as u64;
        let wait = Instant::now();
        while STATS.published.load(Relaxed) < total && wait.elapsed() < Duration::from_secs(30) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(500));
        consuming.store(false, Relaxed);
        let seen = consumer.join().expect("consumer thread");
        let batches = STATS.batches.load(Relaxed);
        let _ = stop.send(());
        let _ = self.runtime.block_on(running);

        let commit_at: HashMap<MessageId, Instant> = commits
            .iter()
            .filter(|c| c.2)
            .map(|(id, at, _)| (*id, *at))
            .collect();
        let ms = |pairs: &[(MessageId, Instant)]| -> Vec<f64> {
            pairs
                .iter()
                .filter_map(|(id, at)| {
                    Some(
                        at.saturating_duration_since(*commit_at.get(id)?)
                            .as_secs_f64()
                            * 1e3,
                    )
                })
                .collect()
        };
        let acked = ms(&STATS.acks.lock().unwrap());
        let consumed = ms(&seen);
        println!(
            "{} counted messages at {}/s; relay batches {batches}; {} acks and {} consumed of them matched",
            commit_at.len(),
            group(achieved),
            acked.len(),
            consumed.len()
        );
        if consumed.len() < commit_at.len() {
            self.summary.problems.push(format!(
                "latency: only {} of {} messages consumed",
                consumed.len(),
                commit_at.len()
            ));
        }
        self.summary.check(
            format!(
                "latency at {}/s: commit -> consumed p50 / p99",
                group(achieved)
            ),
            format!(
                "{:.1} / {:.1} ms",
                percentile(&consumed, 0.5),
                percentile(&consumed, 0.99)
            ),
            "p99 < 50 ms",
            percentile(&consumed, 0.99) < 50.0,
        );
        self.summary.add(
            "  commit -> acked (seen by the relay) p50 / p99 / max",
            format!(
                "{:.1} / {:.1} / {:.1} ms",
                percentile(&acked, 0.5),
                percentile(&acked, 0.99),
                percentile(&acked, 1.0)
            ),
        );
        self.db.drop_schema(&schema);
    }
}

/// `clients` threads, each running `per_client` transactions on its own
/// connection; returns the wall time.
fn txn_round(conns: &mut [PgConnection], per_client: usize, enqueue: bool) -> f64 {
    let outbox = Outbox::new("accounts-service");
    let barrier = Barrier::new(conns.len() + 1);
    let mut start = Instant::now();
    std::thread::scope(|scope| {
        for (c, conn) in conns.iter_mut().enumerate() {
            let (barrier, outbox) = (&barrier, &outbox);
            scope.spawn(move || {
                let email = format!("client{c}@example.com");
                barrier.wait();
                for _ in 0..per_client {
                    conn.transaction(|conn| {
                        let user: User = diesel::insert_into(bench_users::table)
                            .values(&NewUser {
                                email: &email,
                                name: "Ada Lovelace",
                                locale: "en-GB",
                            })
                            .get_result(conn)?;
                        if enqueue {
                            outbox.enqueue(conn, &user, Event::Created)?;
                        }
                        Ok::<_, outbox_diesel::Error>(())
                    })
                    .expect("transaction");
                }
            });
        }
        barrier.wait();
        start = Instant::now();
    });
    start.elapsed().as_secs_f64()
}

/// The memory part's child: drains the backlog at `url` and prints its VmHWM.
fn child_drain(args: &[String]) {
    let [url, batch, rows] = args else {
        panic!("usage: --child-drain <url> <batch> <rows>");
    };
    let batch: usize = batch.parse().expect("batch");
    let rows: u64 = rows.parse().expect("rows");
    metrics::set_global_recorder(BenchRecorder).expect("metrics recorder");
    let hwm_start = vm_kb("VmHWM");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| DEFAULT_BROKERS.into());
    let (hwm_ready, run) = runtime.block_on(async {
        let publisher = kafka_publisher(&brokers, Order::TOPIC).await;
        let ready = vm_kb("VmHWM");
        let limit = Duration::from_secs(600);
        (
            ready,
            relay_drain(url, publisher, batch, rows, None, limit).await,
        )
    });
    let problem = run
        .problem
        .map(|p| format!(" problem={p}"))
        .unwrap_or_default();
    println!(
        "CHILD hwm_start_kb={hwm_start} hwm_ready_kb={hwm_ready} hwm_end_kb={} rss_end_kb={} secs={:.3} batches={}{problem}",
        vm_kb("VmHWM"),
        vm_kb("VmRSS"),
        run.secs,
        run.batches
    );
    std::io::stdout().flush().ok();
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--child-drain") {
        child_drain(&args[at + 1..]);
        return;
    }
    let config = Config::new(&args);
    metrics::set_global_recorder(BenchRecorder).expect("metrics recorder");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!(
        "outbox relay benchmark: PostgreSQL {}, Kafka {}, {} cores, load average {}",
        outbox_diesel::mask_password(&config.server_url),
        config.brokers,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    pg(&config.server_url);
    let mut bench = Bench {
        db: Db {
            server_url: config.server_url.clone(),
            made: Mutex::new(Vec::new()),
        },
        config,
        runtime,
        summary: Summary::default(),
        broker: broker_pid(),
    };
    let started = Instant::now();
    let needs_orders = [Part::Drain, Part::Memory, Part::Live]
        .iter()
        .any(|p| bench.config.has(*p));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if needs_orders {
            let brokers = bench.config.brokers.clone();
            bench.runtime.block_on(fresh_topic(&brokers, Order::TOPIC));
            bench.warm_up();
        }
        for (part, _) in ALL_PARTS {
            if !bench.config.has(part) {
                continue;
            }
            match part {
                Part::Drain => bench.drain(),
                Part::Memory => bench.memory(),
                Part::Live => bench.live(),
                Part::Enqueue => bench.enqueue(),
                Part::Latency => bench.latency(),
            }
        }
    }));
    bench.db.drop_all();
    let brokers = bench.config.brokers.clone();
    bench.runtime.block_on(async {
        let admin = admin(&brokers);
        for topic in [Order::TOPIC, Ping::TOPIC] {
            if topic_exists(&brokers, topic) {
                delete_topic(&admin, topic).await;
            }
        }
    });
    if let Err(panic) = outcome {
        bench.summary.print();
        std::panic::resume_unwind(panic);
    }
    bench.summary.add(
        "total time of this run",
        format!("{:.0} s", started.elapsed().as_secs_f64()),
    );
    bench.summary.print();
}
