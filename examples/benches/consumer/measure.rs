//! Measuring a run from the outside: when the first record was applied, when
//! the last one committed, how much CPU went where; and small statistics.
//!
//! One run at a time: the state is global, reset before each run. The outbox
//! consumer is seen through its `outbox_consumer_*_total` counters (a
//! `metrics` recorder), the hand-written ones call [`applied`] themselves,
//! right after their commit, where the outbox consumer counts too.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use metrics::{
    Counter, CounterFn, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};

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

struct Processed;
impl CounterFn for Processed {
    fn increment(&self, value: u64) {
        applied(value);
    }
    fn absolute(&self, _value: u64) {}
}

struct Other;
impl CounterFn for Other {
    fn increment(&self, value: u64) {
        PROGRESS.other.fetch_add(value, Relaxed);
    }
    fn absolute(&self, _value: u64) {}
}

static PROCESSED: LazyLock<Arc<Processed>> = LazyLock::new(|| Arc::new(Processed));
static OTHER: LazyLock<Arc<Other>> = LazyLock::new(|| Arc::new(Other));

/// Sees `outbox_consumer_processed_total` (progress) and the counters of the
/// other outcomes (which should stay at 0); ignores everything else.
pub(crate) struct BenchRecorder;

impl Recorder for BenchRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        match key.name() {
            "outbox_consumer_processed_total" => Counter::from_arc(PROCESSED.clone()),
            "outbox_consumer_duplicates_total"
            | "outbox_consumer_ignored_total"
            | "outbox_consumer_refused_total"
            | "outbox_consumer_failed_total" => Counter::from_arc(OTHER.clone()),
            _ => Counter::noop(),
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

// ------------------------------------------------------------------ CPU

/// Linux's `USER_HZ` (clock ticks in `/proc/*/stat`), 100 on every x86 build.
const TICKS: f64 = 100.0;

/// CPU seconds (user + system) of a process from its `stat` file.
fn stat_cpu(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / TICKS)
}

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
        let mut cpu = Cpu {
            process: stat_cpu("/proc/self/stat").unwrap_or(f64::NAN),
            ..Cpu::default()
        };
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let path = entry.path();
            if !entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit()))
            {
                continue;
            }
            let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
            let stat = || stat_cpu(&path.join("stat").to_string_lossy()).unwrap_or(0.0);
            match comm.trim() {
                "postgres" => cpu.postgres += stat(),
                "java" => {
                    let cmdline = std::fs::read(path.join("cmdline")).unwrap_or_default();
                    if String::from_utf8_lossy(&cmdline).contains("kafka.Kafka") {
                        cpu.broker += stat();
                    }
                }
                _ => {}
            }
        }
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
                cpu.busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICKS;
                cpu.total = cpu.busy + (v[3] + v[4]) / TICKS;
            }
        }
        cpu
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

// ------------------------------------------------------------------ statistics

pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

pub(crate) fn best(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

/// `12345.6` → `12,346`.
pub(crate) fn group(n: f64) -> String {
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

pub(crate) fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
