//! Measuring a run from the outside: when the first record was applied, when
//! the last one committed, how much CPU went where.
//!
//! One run at a time: the state is global, reset before each run. The outbox
//! consumer is seen through its `outbox_consumer_*_total` counters (a
//! `metrics` recorder), the hand-written ones call [`applied`] themselves,
//! right after their commit, where the outbox consumer counts too.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use metrics::Counter;

use crate::common::cpu;
use crate::common::recorder::{OnIncrement, Watch};

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
    }
}

// ------------------------------------------------------------------ the outbox consumer's counters

static PROCESSED: LazyLock<Counter> =
    LazyLock::new(|| Counter::from_arc(Arc::new(OnIncrement(applied))));
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
    histogram: |_| None,
};

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
                "postgres" => now.postgres += stat(),
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
