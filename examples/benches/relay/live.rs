//! The `live` part: writers enqueue at a steady rate while the relay runs
//! with its defaults: its sustained rate, the lag, the CPU used.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use outbox::{Event, MessageId, Outboxed};
use outbox_diesel::{Outbox, Relay};

use crate::Bench;
use crate::backlog::count_rows;
use crate::common::cpu::{pid_cpu, stat_cpu};
use crate::common::db::pg;
use crate::common::report::group;
use crate::common::results::Figure;
use crate::common::stats::percentile;
use crate::cpu::{CpuUse, cpu_snapshot};
use crate::instrument::{Instrumented, STATS, reset_stats};
use crate::lag::{lags_ms, spread};
use crate::model::{Order, order};
use crate::run::{backend_pid, kafka_publisher};
use crate::sql::read_probe;

impl Bench {
    pub(crate) fn live(&mut self) {
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
        let backend_before = backend.and_then(pid_cpu);
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
            .and_then(pid_cpu)
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
        let lags = lags_ms(&commit_at, &STATS.acks.lock().unwrap());
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
        Figure::new("relay", "live", "enqueued (writers)", "rate", "msg/s")
            .value(achieved)
            .record();
        Figure::new("relay", "live", "relayed", "rate", "msg/s")
            .value(relayed)
            .against("enqueued (writers)", &[achieved])
            .target_at_least(0.95)
            .note(if caught_up {
                ""
            } else {
                "the relay did not catch up within 120 s after the load"
            })
            .record();
        for (case, q) in [("p50", 0.5), ("p99", 0.99), ("max", 1.0)] {
            Figure::new("relay", "live", "commit → ack", "lag", "ms")
                .case(case)
                .value(percentile(&lags, q))
                .lower_is_better()
                .record();
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
        self.summary
            .add("  lag commit -> ack: p50 / p99 / max", spread(&lags));
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
}
