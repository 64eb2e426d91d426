//! The `drain` part: a backlog drained by the relay, against the same records
//! produced raw, at each batch size, in rounds.

use std::time::{Duration, Instant};

use outbox::{Event, Outboxed};

use crate::Bench;
use crate::backlog::{backlog, fill, load_records};
use crate::common::data::KEYS;
use crate::common::report::group;
use crate::common::results::Figure;
use crate::common::stats::{best, upper_median};
use crate::instrument::NullPublisher;
use crate::model::{Order, order};
use crate::raw::{Pace, RawRun, raw_produce};
use crate::run::{DrainRun, kafka_publisher, relay_drain};
use crate::sql::{SqlCost, sql_split};

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
    pub(crate) fn warm_up(&mut self) {
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
                None,
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
            None,
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

    pub(crate) fn drain(&mut self) {
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
            format!("{} msg/s", group(upper_median(&fills))),
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
            let pair = |v: &[f64]| format!("{} / {} msg/s", group(best(v)), group(upper_median(v)));
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
            let ratio_median = upper_median(&relay) / upper_median(&raw);
            let paired: Vec<f64> = rounds
                .iter()
                .map(|r| r.relay.rate() * r.raw.secs / rows as f64)
                .collect();
            // Judged by the median of the per-round ratios: each round's relay
            // and raw runs follow each other, so a busy machine slows both.
            let paired_median = upper_median(&paired);
            let case = format!("batch {batch}");
            // This batch's raw rounds, in the order of `relay`'s (the series `paired` uses).
            let raw_here: Vec<f64> = rounds.iter().map(|r| rows as f64 / r.raw.secs).collect();
            Figure::new("relay", "drain", "raw produce", "throughput", "msg/s")
                .case(&case)
                .rounds(&raw_here)
                .record();
            Figure::new("relay", "drain", "raw lockstep", "throughput", "msg/s")
                .case(&case)
                .rounds(&rates(&|r| r.lockstep.secs))
                .record();
            Figure::new(
                "relay",
                "drain",
                &format!("raw {in_flight} in flight"),
                "throughput",
                "msg/s",
            )
            .case(&case)
            .rounds(&rates(&|r| r.window.secs))
            .record();
            let relay_figure = Figure::new("relay", "drain", "relay", "throughput", "msg/s")
                .case(&case)
                .rounds(&relay)
                .against("raw produce", &raw_here);
            match batch {
                1000 => relay_figure.target_at_least(0.5),
                100 => relay_figure.target_at_least(0.3),
                _ => relay_figure,
            }
            .record();
            Figure::new(
                "relay",
                "drain",
                "relay without Kafka",
                "throughput",
                "msg/s",
            )
            .case(&case)
            .rounds(&rounds.iter().map(|r| r.null.rate()).collect::<Vec<_>>())
            .record();
            let line =
                format!("  relay ÷ raw, batch {batch}: paired median (median÷median, best÷best)");
            let figure = format!("{paired_median:.3} ({ratio_median:.3}, {ratio_best:.3})");
            match batch {
                1000 => self
                    .summary
                    .check(line, figure, ">= 0.5", paired_median >= 0.5),
                100 => self
                    .summary
                    .check(line, figure, ">= 0.3", paired_median >= 0.3),
                _ => self.summary.add(line, figure),
            }
            let med = |f: &dyn Fn(&DrainRound) -> f64| {
                upper_median(&rounds.iter().map(f).collect::<Vec<_>>())
            };
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
            for (side, ms) in [
                ("relay: tokio", relay_cpu[0]),
                ("relay: rdkafka", relay_cpu[1]),
                ("relay: PostgreSQL backend", relay_cpu[2]),
                ("relay: broker", relay_cpu[3]),
                ("raw: producer", raw_cpu[0]),
                ("raw: broker", raw_cpu[1]),
            ] {
                Figure::new("relay", "drain cpu", side, "CPU per 1,000 messages", "ms")
                    .case(&case)
                    .value(ms)
                    .lower_is_better()
                    .record();
            }
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
}
