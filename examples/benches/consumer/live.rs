//! The `live` part: records produced at a steady rate to a fresh topic while
//! the outbox consumer applies them; each record's latency from its produce
//! time to its commit, with batched apply against `batch_size(1)`.
//!
//! Each run: the topic made afresh, the schema truncated, a fresh consumer
//! group. [`WARMUP`] records first, not counted, until all are applied (the
//! group has joined, every partition has its task); then
//! `OUTBOX_BENCH_LIVE_RATE` records a second for `OUTBOX_BENCH_LIVE_SECS`,
//! each sent on its schedule (late ones at once), until all are applied.
//! Each record carries its send time as the message's `occurred_at`
//! (`Utc::now()` just before it is encoded and handed to the producer, which
//! has the relay's settings). The controller's `after_update` hook notes when
//! it was handled, and the consumer's `outbox_consumer_processed_total`
//! counter, incremented right after the commit in the same partition task,
//! when it was applied: the latency is that commit's time minus the send
//! time (the handler's time too, apart). The variants alternate per round
//! (batched first in odd rounds), so a busy machine slows both alike.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use outbox::kafka::record_headers;
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};

use crate::common::db::Schema;
use crate::common::kafka::{self, Counting, fresh_topic};
use crate::common::report::group;
use crate::common::results::Figure;
use crate::common::stats::{median, percentile};
use crate::measure::{self, Ending};
use crate::model::{self, expected_state};
use crate::setup::{self, TOPIC};
use crate::{Bench, sides};

/// Records sent before the measured ones, and applied before they start.
pub(crate) const WARMUP: u64 = 100;
/// How long the warm-up records may take to be applied (the group join).
const WARMUP_LIMIT: Duration = Duration::from_secs(60);
/// Batched p99 ÷ per-record p99 at most this: "live p99 unchanged".
const P99_TARGET: f64 = 1.1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Variant {
    /// The outbox consumer with the batch size of the catch-up's `outbox` side.
    Batched,
    /// The same with `batch_size(1)`.
    PerRecord,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Batched => "batched",
            Variant::PerRecord => "per-record",
        }
    }
}

/// What one live run measured.
pub(crate) struct LiveRun {
    variant: Variant,
    round: usize,
    /// Per measured record, ms from its send to its commit.
    committed: Vec<f64>,
    /// Per measured record, ms from its send to its `after_update` hook.
    handled: Vec<f64>,
    /// The measured records' send rate.
    achieved: f64,
    /// How late the producer was on its schedule at worst, ms.
    behind_ms: f64,
    /// From the last send to every record applied, ms: beyond a few hundred,
    /// the consumer did not keep up with the rate and its latency is mostly
    /// queueing.
    drain_ms: f64,
    /// Records per transaction, over the run (the warm-up included).
    per_transaction: f64,
}

impl LiveRun {
    fn p99(&self) -> f64 {
        percentile(&self.committed, 0.99)
    }
}

/// What the producer did.
struct Driven {
    ending: Ending,
    /// When the measured records started (`None`: the warm-up never applied).
    measured_from: Option<DateTime<Utc>>,
    achieved: f64,
    behind_ms: f64,
    drain_ms: f64,
}

/// A run whose consumer needs longer than this after the last send did not
/// keep up with the rate.
const KEPT_UP_MS: f64 = 1000.0;

impl Bench {
    pub(crate) fn live(&mut self) {
        let live = &self.config.live;
        println!(
            "\n== live: {} msg/s for {} s ({WARMUP} warm-up records first, not counted), a fresh topic \
             per run; outbox Consumer batch_size({}) against batch_size(1), {} rounds each, \
             alternating; latency: send → commit ==",
            group(live.rate as f64),
            live.secs,
            self.config.tuning.batch,
            live.rounds
        );
        let rounds = live.rounds;
        let schema = setup::schema(&self.db, "live");
        for round in 0..rounds {
            let order = match round % 2 {
                0 => [Variant::Batched, Variant::PerRecord],
                _ => [Variant::PerRecord, Variant::Batched],
            };
            for variant in order {
                if let Some(run) = self.live_run(&schema, variant, round) {
                    let behind = match run.drain_ms > KEPT_UP_MS {
                        true => " (did not keep up with the rate: the latency is mostly queueing)",
                        false => "",
                    };
                    println!(
                        "  round {} {:<10}  sent {:>6} msg/s (late ≤ {:.0} ms)  send → commit p50 {:.1} ms, \
                         p99 {:.1} ms, max {:.1} ms; → handler p50 {:.1}, p99 {:.1} ms; \
                         {:.2} records per transaction; all applied {:.0} ms after the last send{behind}",
                        round + 1,
                        variant.name(),
                        group(run.achieved),
                        run.behind_ms,
                        percentile(&run.committed, 0.5),
                        run.p99(),
                        percentile(&run.committed, 1.0),
                        percentile(&run.handled, 0.5),
                        percentile(&run.handled, 0.99),
                        run.per_transaction,
                        run.drain_ms,
                    );
                    self.live_runs.push(run);
                }
            }
        }
    }

    /// One run of `variant`; `None` (and a problem noted) when it could not
    /// measure.
    fn live_run(&mut self, schema: &Schema, variant: Variant, round: usize) -> Option<LiveRun> {
        let brokers = self.config.brokers.clone();
        self.runtime.block_on(fresh_topic(&brokers, TOPIC));
        schema.truncate();
        let consumer_group = format!(
            "outbox-bench-consumer-{}-live-{}-{round}",
            std::process::id(),
            variant.name()
        );
        self.groups.push(consumer_group.clone());
        let (rate, secs, stall) = (
            self.config.live.rate,
            self.config.live.secs,
            self.config.stall,
        );
        let measured = (rate as f64 * secs).round().max(1.0) as u64;
        let total = WARMUP + measured;
        let batch = match variant {
            Variant::Batched => self.config.tuning.batch,
            Variant::PerRecord => 1,
        };
        let settings = &self.config.tuning.settings;
        measure::reset(total);
        measure::live_start();
        let started = Instant::now();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let (report, driven) = self.runtime.block_on(async {
            let consumer = sides::outbox(
                &brokers,
                &consumer_group,
                sides::default_pool(&schema.url),
                settings,
                batch,
                sides::Shape {
                    grouped: true,
                    rebuilt: false,
                },
                async {
                    stopped.await.ok();
                },
            );
            let driver = async {
                let driven = drive(&brokers, rate, measured, stall).await;
                let _ = stop.send(());
                driven
            };
            tokio::join!(consumer, driver)
        });
        let (samples, unmatched) = measure::live_stop();
        let timing = measure::timing(started);

        let name = format!("live {} round {}", variant.name(), round + 1);
        let mut problems = Vec::new();
        let Some(from) = driven.measured_from else {
            self.problems.push(format!(
                "{name}: the {WARMUP} warm-up records were not applied within {WARMUP_LIMIT:?}"
            ));
            return None;
        };
        if driven.ending == Ending::Stalled {
            problems.push(format!(
                "stalled: {} of {total} applied, nothing for {stall:?}",
                timing.applied
            ));
        }
        if report.processed != total || timing.other > 0 {
            problems.push(format!(
                "the consumer reports {report:?}, expected {total} processed"
            ));
        }
        if unmatched > 0 || samples.len() as u64 != total {
            problems.push(format!(
                "{} latencies for {total} records ({unmatched} commits with no hook seen)",
                samples.len()
            ));
        }
        let (accounts, seq_sum, inbox) = schema.state();
        if (accounts, seq_sum) != expected_state(total) || inbox != total as i64 {
            problems.push(format!(
                "table: {accounts} accounts, seq sum {seq_sum}, inbox {inbox}; expected {:?}, inbox {total}",
                expected_state(total)
            ));
        }
        for problem in problems {
            println!("  !! {name}: {problem}");
            self.problems.push(format!("{name}: {problem}"));
        }
        let counted = samples.iter().filter(|s| s.produced >= from);
        let (committed, handled): (Vec<f64>, Vec<f64>) =
            counted.map(|s| (s.committed_ms, s.handled_ms)).unzip();
        Some(LiveRun {
            variant,
            round,
            committed,
            handled,
            achieved: driven.achieved,
            behind_ms: driven.behind_ms,
            drain_ms: driven.drain_ms,
            per_transaction: timing.per_transaction(),
        })
    }

    pub(crate) fn live_summary(&self) {
        let live = &self.config.live;
        println!(
            "\nlive: {} msg/s for {} s, {} rounds of each, outbox consumer batch_size({}) against \
             batch_size(1); latency from the send to the commit, ms\n",
            group(live.rate as f64),
            live.secs,
            live.rounds,
            self.config.tuning.batch
        );
        println!(
            "  {:<11} {:>8} {:>8} {:>8} {:>8}  {:>9}  {:>5}  per-round p99",
            "variant", "records", "p50", "p99", "max", "hook p99", "r/txn"
        );
        for variant in [Variant::Batched, Variant::PerRecord] {
            let runs: Vec<&LiveRun> = self
                .live_runs
                .iter()
                .filter(|r| r.variant == variant)
                .collect();
            if runs.is_empty() {
                continue;
            }
            let all: Vec<f64> = runs.iter().flat_map(|r| r.committed.clone()).collect();
            let hooks: Vec<f64> = runs.iter().flat_map(|r| r.handled.clone()).collect();
            let per: Vec<f64> = runs.iter().map(|r| r.per_transaction).collect();
            println!(
                "  {:<11} {:>8} {:>8.1} {:>8.1} {:>8.1}  {:>9.1}  {:>5.2}  {}",
                variant.name(),
                group(all.len() as f64),
                percentile(&all, 0.5),
                percentile(&all, 0.99),
                percentile(&all, 1.0),
                percentile(&hooks, 0.99),
                median(&per),
                runs.iter()
                    .map(|r| format!("{:.1}", r.p99()))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            for (case, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
                Figure::new(
                    "consumer",
                    "live",
                    variant.name(),
                    "send → commit latency",
                    "ms",
                )
                .case(case)
                .value(percentile(&all, q))
                .lower_is_better()
                .record();
            }
        }
        println!(
            "  (p50/p99/max over every measured record of the variant's rounds; hook p99: send → \
             after_update, before the commit; r/txn: median records per transaction)"
        );
        let behind: Vec<String> = self
            .live_runs
            .iter()
            .filter(|r| r.drain_ms > KEPT_UP_MS)
            .map(|r| format!("{} round {}", r.variant.name(), r.round + 1))
            .collect();
        if !behind.is_empty() {
            println!(
                "  did not keep up with the rate (all applied > {KEPT_UP_MS:.0} ms after the last \
                 send; its latency is mostly queueing): {}",
                behind.join(", ")
            );
        }
        // Each round's p99 of both variants, only the rounds that have both:
        // the ratios and the figure's two series come from the same pairs.
        let (batched, per_record): (Vec<f64>, Vec<f64>) = (0..live.rounds)
            .filter_map(|round| {
                let p99 = |variant| {
                    self.live_runs
                        .iter()
                        .find(|r| r.round == round && r.variant == variant)
                        .map(LiveRun::p99)
                };
                Some((p99(Variant::Batched)?, p99(Variant::PerRecord)?))
            })
            .unzip();
        let paired: Vec<f64> = batched
            .iter()
            .zip(&per_record)
            .map(|(b, p)| b / p)
            .collect();
        if paired.is_empty() {
            return;
        }
        let ratio = median(&paired);
        Figure::new(
            "consumer",
            "live p99",
            Variant::Batched.name(),
            "p99 send → commit",
            "ms",
        )
        .rounds(&batched)
        .lower_is_better()
        .against(Variant::PerRecord.name(), &per_record)
        .target_at_most(P99_TARGET)
        .record();
        Figure::new(
            "consumer",
            "live p99",
            Variant::PerRecord.name(),
            "p99 send → commit",
            "ms",
        )
        .rounds(&per_record)
        .lower_is_better()
        .record();
        let verdict = match ratio <= P99_TARGET {
            true => "PASS",
            false => "MISS",
        };
        println!(
            "\n  p99 batched ÷ per-record: median of the paired per-round ratios {ratio:.2} \
             (per round {})  target ≤ {P99_TARGET} (unchanged): {verdict}",
            paired
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
}

/// Sends the warm-up records and waits until they are applied, then sends
/// `measured` records at `rate` a second; waits until all are applied.
async fn drive(brokers: &str, rate: u64, measured: u64, stall: Duration) -> Driven {
    let producer: Arc<ThreadedProducer<Counting>> = Arc::new(
        kafka::producer_config(brokers)
            .create_with_context(Counting::default())
            .expect("Kafka producer"),
    );
    for seq in 0..WARMUP {
        send(&producer, seq as i64);
    }
    let deadline = Instant::now() + WARMUP_LIMIT;
    while measure::applied_count() < WARMUP {
        if Instant::now() > deadline {
            return Driven {
                ending: Ending::Stalled,
                measured_from: None,
                achieved: f64::NAN,
                behind_ms: f64::NAN,
                drain_ms: f64::NAN,
            };
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pacer = Arc::clone(&producer);
    let paced = tokio::task::spawn_blocking(move || pace(&pacer, rate, measured))
        .await
        .expect("the live producer");
    let ending = measure::target_reached(stall).await;
    Driven {
        ending,
        measured_from: Some(paced.from),
        achieved: paced.achieved,
        behind_ms: paced.behind_ms,
        drain_ms: paced.last_sent.elapsed().as_secs_f64() * 1e3,
    }
}

/// What [`pace`] did.
struct Paced {
    /// Before the first send.
    from: DateTime<Utc>,
    /// After the last send.
    last_sent: Instant,
    /// Records a second.
    achieved: f64,
    /// How late the latest send was on its schedule, ms.
    behind_ms: f64,
}

/// Sends records `WARMUP..WARMUP + measured`, one every `1 / rate` s (late
/// ones at once), and waits for every acknowledgement.
fn pace(producer: &ThreadedProducer<Counting>, rate: u64, measured: u64) -> Paced {
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let from = Utc::now();
    let start = Instant::now();
    let mut behind = Duration::ZERO;
    for i in 0..measured {
        let due = start + interval.mul_f64(i as f64);
        let now = Instant::now();
        match due.checked_duration_since(now) {
            Some(wait) if !wait.is_zero() => std::thread::sleep(wait),
            _ => behind = behind.max(now - due),
        }
        send(producer, (WARMUP + i) as i64);
    }
    let last_sent = Instant::now();
    let sent_in = last_sent.duration_since(start).as_secs_f64();
    producer
        .context()
        .wait_for(WARMUP + measured, Duration::from_secs(120));
    let failed = producer.context().errors();
    assert_eq!(failed, 0, "live: {failed} records not acknowledged");
    let achieved = match measured {
        0 | 1 => f64::NAN,
        n => (n - 1) as f64 / sent_in.max(1e-9),
    };
    Paced {
        from,
        last_sent,
        achieved,
        behind_ms: behind.as_secs_f64() * 1e3,
    }
}

/// Sends message `seq`, stamped with the time now.
fn send(producer: &ThreadedProducer<Counting>, seq: i64) {
    let encoded = model::record_at(seq, Utc::now());
    let record = BaseRecord::to(TOPIC)
        .key(&encoded.key)
        .payload(&encoded.value)
        .headers(record_headers(&encoded));
    kafka::send(producer, record);
}
