//! Measuring a run from the outside: when the first record was applied, when
//! the last one committed, how much CPU went where, how many records the
//! outbox consumer applied per transaction, and (live part) each record's
//! latency from its produce time to its handler and to its commit.
//!
//! One run at a time: the state is global, reset before each run. The outbox
//! consumer is seen through its `outbox_consumer_*_total` counters and its
//! `outbox_consumer_batch_records` histogram (a `metrics` recorder), the
//! hand-written ones call [`applied`] themselves, right after their commit,
//! where the outbox consumer counts too.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use metrics::{Counter, Histogram};

use crate::common::cpu;
use crate::common::recorder::{OnIncrement, OnRecord, Watch};

// ------------------------------------------------------------------ progress

struct Progress {
    base: Instant,
    target: AtomicU64,
    applied: AtomicU64,
    /// Records the outbox consumer counted as anything but processed.
    other: AtomicU64,
    /// ns since `base` + 1 (0: not yet) of the first apply and of the target reached.
    first_ns: AtomicU64,
    done_ns: AtomicU64,
    /// Per partition, when its last upsert started (ns since `base` + 1).
    last_ns: [AtomicU64; MAX_PARTITIONS],
    /// Waits of a partition between two upserts longer than [`IDLE`]: how
    /// many, and their summed length.
    idles: AtomicU64,
    idle_ns: AtomicU64,
    /// Transactions of more than one record the outbox consumer committed,
    /// and the records in them (`outbox_consumer_batch_records`).
    batches: AtomicU64,
    batched: AtomicU64,
}

const MAX_PARTITIONS: usize = 64;
/// A partition that waits this long between two upserts (which take ~1 ms)
/// had nothing to apply: its records were not there yet.
const IDLE: Duration = Duration::from_millis(20);

static PROGRESS: LazyLock<Progress> = LazyLock::new(|| Progress {
    base: Instant::now(),
    target: AtomicU64::new(u64::MAX),
    applied: AtomicU64::new(0),
    other: AtomicU64::new(0),
    first_ns: AtomicU64::new(0),
    done_ns: AtomicU64::new(0),
    last_ns: [const { AtomicU64::new(0) }; MAX_PARTITIONS],
    idles: AtomicU64::new(0),
    idle_ns: AtomicU64::new(0),
    batches: AtomicU64::new(0),
    batched: AtomicU64::new(0),
});

fn now_ns() -> u64 {
    PROGRESS.base.elapsed().as_nanos() as u64 + 1
}

fn instant_of(ns: u64) -> Option<Instant> {
    (ns > 0).then(|| PROGRESS.base + Duration::from_nanos(ns - 1))
}

/// Starts counting towards `target` applied records.
pub(crate) fn reset(target: u64) {
    let p = &*PROGRESS;
    let counters = [
        &p.applied,
        &p.other,
        &p.first_ns,
        &p.done_ns,
        &p.idles,
        &p.idle_ns,
        &p.batches,
        &p.batched,
    ];
    for counter in counters.into_iter().chain(&p.last_ns) {
        counter.store(0, Relaxed);
    }
    p.target.store(target, Relaxed);
}

/// A record of `partition` reached its upsert (the first one starts the clock).
pub(crate) fn started(partition: i32) {
    let p = &*PROGRESS;
    let now = now_ns();
    if p.first_ns.load(Relaxed) == 0 {
        let _ = p.first_ns.compare_exchange(0, now, Relaxed, Relaxed);
    }
    if let Some(last) = p.last_ns.get(partition as usize) {
        let before = last.swap(now, Relaxed);
        let waited = now.saturating_sub(before);
        if before != 0 && waited > IDLE.as_nanos() as u64 {
            p.idles.fetch_add(1, Relaxed);
            p.idle_ns.fetch_add(waited, Relaxed);
        }
    }
}

/// `n` records committed.
pub(crate) fn applied(n: u64) {
    let p = &*PROGRESS;
    if p.applied.fetch_add(n, Relaxed) + n >= p.target.load(Relaxed) {
        let _ = p.done_ns.compare_exchange(0, now_ns(), Relaxed, Relaxed);
    }
}

/// Records committed so far in this run.
pub(crate) fn applied_count() -> u64 {
    PROGRESS.applied.load(Relaxed)
}

/// A batch of `records` committed by the outbox consumer.
fn batch(records: f64) {
    let p = &*PROGRESS;
    p.batches.fetch_add(1, Relaxed);
    p.batched.fetch_add(records as u64, Relaxed);
}

/// How a wait for the target ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    Done,
    /// Nothing applied for the stall limit.
    Stalled,
}

/// Resolves once the target is reached, or nothing was applied for `stall`.
pub(crate) async fn target_reached(stall: Duration) -> Ending {
    let p = &*PROGRESS;
    let (mut seen, mut since) = (0, Instant::now());
    loop {
        if p.done_ns.load(Relaxed) != 0 {
            return Ending::Done;
        }
        let now = p.applied.load(Relaxed);
        if now != seen {
            (seen, since) = (now, Instant::now());
        } else if since.elapsed() > stall {
            return Ending::Stalled;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a finished run measured.
pub(crate) struct Timing {
    pub(crate) applied: u64,
    /// Records the outbox consumer did not count as processed (0 expected).
    pub(crate) other: u64,
    /// From the first record's upsert to the commit of the last one.
    pub(crate) secs: f64,
    /// From the consumer's start to the first record's upsert (group join, first fetch).
    pub(crate) startup: f64,
    /// Waits of a partition longer than 20 ms between two upserts, and their
    /// summed seconds: time a partition had nothing to apply.
    pub(crate) idles: u64,
    pub(crate) idle_secs: f64,
    /// Transactions of more than one record (outbox consumer), and the
    /// records in them.
    pub(crate) batches: u64,
    pub(crate) batched: u64,
}

impl Timing {
    /// Records per transaction: of the outbox consumer, its batches and the
    /// records it applied alone; 1.0 for the hand-written sides.
    pub(crate) fn per_transaction(&self) -> f64 {
        let alone = self.applied.saturating_sub(self.batched);
        (self.batched + alone) as f64 / (self.batches + alone) as f64
    }
}

/// The run that started at `start`, as measured so far.
pub(crate) fn timing(start: Instant) -> Timing {
    let p = &*PROGRESS;
    let first = instant_of(p.first_ns.load(Relaxed));
    let done = instant_of(p.done_ns.load(Relaxed));
    let (secs, startup) = match (first, done) {
        (Some(first), Some(done)) => (
            done.duration_since(first).as_secs_f64(),
            first.duration_since(start).as_secs_f64(),
        ),
        _ => (f64::NAN, f64::NAN),
    };
    Timing {
        applied: p.applied.load(Relaxed),
        other: p.other.load(Relaxed),
        secs,
        startup,
        idles: p.idles.load(Relaxed),
        idle_secs: p.idle_ns.load(Relaxed) as f64 / 1e9,
        batches: p.batches.load(Relaxed),
        batched: p.batched.load(Relaxed),
    }
}

// ------------------------------------------------------------------ the outbox consumer's counters

static PROCESSED: LazyLock<Counter> =
    LazyLock::new(|| Counter::from_arc(Arc::new(OnIncrement(processed))));
static BATCH: LazyLock<Histogram> =
    LazyLock::new(|| Histogram::from_arc(Arc::new(OnRecord(batch))));

/// The outbox consumer counted `n` records processed: right after their
/// commit, in the partition's task.
fn processed(n: u64) {
    applied(n);
    if LIVE.on.load(Relaxed) {
        committed(n);
    }
}

static OTHER: LazyLock<Counter> = LazyLock::new(|| {
    Counter::from_arc(Arc::new(OnIncrement(|n| {
        PROGRESS.other.fetch_add(n, Relaxed);
    })))
});

/// Sees `outbox_consumer_processed_total` (progress) and the counters of the
/// other outcomes (which should stay at 0); ignores everything else.
pub(crate) const RECORDER: Watch = Watch {
    counter: |name| match name {
        "outbox_consumer_processed_total" => Some(PROCESSED.clone()),
        "outbox_consumer_duplicates_total"
        | "outbox_consumer_ignored_total"
        | "outbox_consumer_refused_total"
        | "outbox_consumer_failed_total" => Some(OTHER.clone()),
        _ => None,
    },
    histogram: |name| match name {
        "outbox_consumer_batch_records" => Some(BATCH.clone()),
        _ => None,
    },
};

// ------------------------------------------------------------------ live latency

/// One live record's latency, from its produce time (carried as the
/// message's `occurred_at`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) produced: DateTime<Utc>,
    /// To its controller's `after_update` hook (upsert done, not committed).
    pub(crate) handled_ms: f64,
    /// To its transaction's commit: when it is applied.
    pub(crate) committed_ms: f64,
}

/// A record whose hook ran, waiting for its commit.
struct Pending {
    offset: i64,
    produced: DateTime<Utc>,
    handled: DateTime<Utc>,
}

#[derive(Default)]
struct LiveState {
    /// Per partition task of the outbox consumer (one tokio task each, where
    /// both its hooks and its counters run), its records in offset order.
    pending: HashMap<tokio::task::Id, VecDeque<Pending>>,
    samples: Vec<Sample>,
    /// Commits counted with no hook seen in their task (0 expected).
    unmatched: u64,
}

struct Live {
    on: AtomicBool,
    state: Mutex<LiveState>,
}

static LIVE: LazyLock<Live> = LazyLock::new(|| Live {
    on: AtomicBool::new(false),
    state: Mutex::new(LiveState::default()),
});

/// Starts recording the latency of every record applied.
pub(crate) fn live_start() {
    *LIVE.state.lock().unwrap() = LiveState::default();
    LIVE.on.store(true, Relaxed);
}

/// Stops recording; the samples, and the commits that matched no hook.
pub(crate) fn live_stop() -> (Vec<Sample>, u64) {
    LIVE.on.store(false, Relaxed);
    let state = std::mem::take(&mut *LIVE.state.lock().unwrap());
    (state.samples, state.unmatched)
}

/// The controller's `after_update` hook ran for the record at `offset`,
/// produced at `produced`.
pub(crate) fn handled(offset: i64, produced: DateTime<Utc>) {
    if !LIVE.on.load(Relaxed) {
        return;
    }
    let handled = Utc::now();
    let Some(task) = tokio::task::try_id() else {
        return;
    };
    let mut state = LIVE.state.lock().unwrap();
    let queue = state.pending.entry(task).or_default();
    // A batch rolled back and applied again runs its hooks again.
    while queue.back().is_some_and(|last| last.offset >= offset) {
        queue.pop_back();
    }
    queue.push_back(Pending {
        offset,
        produced,
        handled,
    });
}

/// `n` records committed in the current task: the oldest `n` of its
/// pending records.
fn committed(n: u64) {
    let now = Utc::now();
    let task = tokio::task::try_id();
    let mut state = LIVE.state.lock().unwrap();
    let state = &mut *state;
    let mut queue = task.and_then(|task| state.pending.get_mut(&task));
    for _ in 0..n {
        match queue.as_mut().and_then(|q| q.pop_front()) {
            Some(record) => state.samples.push(Sample {
                produced: record.produced,
                handled_ms: ms_between(record.produced, record.handled),
                committed_ms: ms_between(record.produced, now),
            }),
            None => state.unmatched += 1,
        }
    }
}

fn ms_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from)
        .num_microseconds()
        .map_or(f64::NAN, |us| us as f64 / 1e3)
}

// ------------------------------------------------------------------ CPU

/// CPU seconds used so far by this process, by every PostgreSQL process, by
/// the Kafka broker, and by the machine (busy, total).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Cpu {
    process: f64,
    postgres: f64,
    broker: f64,
    busy: f64,
    total: f64,
}

impl Cpu {
    pub(crate) fn now() -> Cpu {
        let mut now = Cpu {
            process: cpu::stat_cpu("/proc/self/stat").unwrap_or(f64::NAN),
            ..Cpu::default()
        };
        for (pid, dir) in cpu::processes() {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            let stat = || cpu::pid_cpu(pid).unwrap_or(0.0);
            match comm.trim() {
                // With the sessions that ended (the postmaster's reaped
                // children): a side closing its pool must not count negative.
                "postgres" => now.postgres += cpu::pid_cpu_with_reaped(pid).unwrap_or(0.0),
                "java" if cpu::is_broker(&dir) => now.broker += stat(),
                _ => {}
            }
        }
        (now.busy, now.total) = cpu::machine();
        now
    }

    /// CPU milliseconds per 1,000 records between `self` and `later`: this
    /// process, PostgreSQL (all its processes), the broker; and the machine's
    /// busy share in percent.
    pub(crate) fn per_1k(&self, later: &Cpu, records: u64) -> [f64; 4] {
        let k = records as f64 / 1000.0;
        let busy = (later.busy - self.busy) / (later.total - self.total) * 100.0;
        [
            (later.process - self.process) / k * 1e3,
            (later.postgres - self.postgres) / k * 1e3,
            (later.broker - self.broker) / k * 1e3,
            busy,
        ]
    }
}
