//! The `latency` part: one message per transaction at a steady rate, from
//! commit to acknowledged and to consumed.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use outbox::{Event, MessageId, Outboxed};
use outbox_diesel::{Outbox, Relay};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::Headers as _;
use rdkafka::{ClientConfig, Message as _, Offset, TopicPartitionList};

use crate::Bench;
use crate::common::data::KEYS;
use crate::common::db::pg;
use crate::common::kafka::{PARTITIONS, fresh_topic};
use crate::common::report::group;
use crate::common::results::Figure;
use crate::common::stats::percentile;
use crate::instrument::{Instrumented, STATS, reset_stats};
use crate::lag::{lags_ms, spread};
use crate::model::Ping;
use crate::run::kafka_publisher;

impl Bench {
    pub(crate) fn latency(&mut self) {
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
        let acked = lags_ms(&commit_at, &STATS.acks.lock().unwrap());
        let consumed = lags_ms(&commit_at, &seen);
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
        for (case, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0)] {
            Figure::new("relay", "latency", "commit → consumed", "latency", "ms")
                .case(case)
                .value(percentile(&consumed, q))
                .lower_is_better()
                .note(if case == "p99" {
                    "target p99 < 50 ms"
                } else {
                    ""
                })
                .record();
            Figure::new("relay", "latency", "commit → acked", "latency", "ms")
                .case(case)
                .value(percentile(&acked, q))
                .lower_is_better()
                .record();
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
            spread(&acked),
        );
        self.db.drop_schema(&schema);
    }
}
