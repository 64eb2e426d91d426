//! The `avro` part: the same backlog as JSON and as Avro, each drained by the
//! relay at batch 1000, interleaved; the ratio Avro ÷ JSON per round.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use outbox::Outboxed;
use outbox_diesel::registry::SchemaRegistry;

use crate::Bench;
use crate::backlog::{backlog_with, load_records};
use crate::common::kafka::fresh_topic;
use crate::common::report::group;
use crate::common::results::Figure;
use crate::common::stats::upper_median;
use crate::instrument::STATS;
use crate::model::{AvroOrder, Order, avro_order, order};
use crate::run::{DrainRun, kafka_publisher, relay_drain};

/// The batch size both sides drain at.
const BATCH: usize = 1000;

/// The registry's URL: `SCHEMA_REGISTRY_URL`, else `scripts/services.sh`'s.
fn registry() -> SchemaRegistry {
    if std::env::var_os("SCHEMA_REGISTRY_URL").is_some() {
        SchemaRegistry::from_env().expect("SCHEMA_REGISTRY_URL")
    } else {
        SchemaRegistry::builder("http://127.0.0.1:58086/apis/ccompat/v7")
            .build()
            .expect("the services' registry")
    }
}

/// One side's drain: its run, and the registry requests it made.
struct Side {
    run: DrainRun,
    registry_requests: u64,
    value_bytes: usize,
}

impl Bench {
    fn avro_side(&mut self, avro: bool) -> Side {
        let rows = self.config.rows;
        let schema = self.db.schema(if avro { "avro" } else { "json" });
        if avro {
            backlog_with(&schema.url, rows, self.config.analyze, avro_order);
        } else {
            backlog_with(&schema.url, rows, self.config.analyze, order);
        }
        let records = load_records(&schema.url);
        let value_bytes = records.iter().map(|r| r.payload.len()).sum::<usize>() / rows;
        drop(records);
        let (brokers, broker) = (self.config.brokers.clone(), self.broker);
        let limit = Duration::from_secs_f64(self.config.run_limit);
        let topic = if avro { AvroOrder::TOPIC } else { Order::TOPIC };
        let run = self.runtime.block_on(async {
            let publisher = kafka_publisher(&brokers, topic).await;
            let registry = avro.then(registry);
            relay_drain(
                &schema.url,
                publisher,
                BATCH,
                rows as u64,
                broker,
                limit,
                registry,
            )
            .await
        });
        // Read before the next run resets it.
        let registry_requests = STATS.registry_requests.load(Relaxed);
        self.db.drop_schema(&schema);
        Side {
            run,
            registry_requests,
            value_bytes,
        }
    }

    pub(crate) fn avro(&mut self) {
        let rows = self.config.rows;
        let brokers = self.config.brokers.clone();
        self.runtime.block_on(async {
            fresh_topic(&brokers, Order::TOPIC).await;
            fresh_topic(&brokers, AvroOrder::TOPIC).await;
        });
        println!(
            "\n== avro: {} rows as JSON and as Avro, relay batch {BATCH}, {} rounds (the side going first alternates) ==",
            group(rows as f64),
            self.config.rounds
        );
        let (mut json_rates, mut avro_rates, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        let (mut requests, mut bytes) = (Vec::new(), (0, 0));
        for round in 1..=self.config.rounds {
            let avro_first = round % 2 == 0;
            let first = self.avro_side(avro_first);
            let second = self.avro_side(!avro_first);
            let (json, avro) = if avro_first {
                (second, first)
            } else {
                (first, second)
            };
            for (what, side) in [("JSON", &json), ("Avro", &avro)] {
                if let Some(problem) = &side.run.problem {
                    self.summary
                        .problems
                        .push(format!("avro round {round}, {what}: {problem}"));
                }
                if side.run.capped {
                    self.summary.problems.push(format!(
                        "avro round {round}, {what}: stopped at the {} s limit after {} of {} rows",
                        self.config.run_limit,
                        group(side.run.published as f64),
                        group(rows as f64)
                    ));
                }
            }
            let ratio = avro.run.rate() / json.run.rate();
            println!(
                "round {round}: JSON {}/s ({} B a value) | Avro {}/s ({} B a value, {} registry request(s)) | Avro/JSON {ratio:.3}",
                group(json.run.rate()),
                json.value_bytes,
                group(avro.run.rate()),
                avro.value_bytes,
                avro.registry_requests
            );
            json_rates.push(json.run.rate());
            avro_rates.push(avro.run.rate());
            ratios.push(ratio);
            requests.push(avro.registry_requests);
            bytes = (json.value_bytes, avro.value_bytes);
        }
        let median = upper_median(&ratios);
        self.summary.check(
            format!("relay drain Avro ÷ JSON, batch {BATCH} (median of rounds)"),
            format!("{median:.2}"),
            ">= 0.9",
            median >= 0.9,
        );
        self.summary.add(
            "  JSON / Avro drain (median)",
            format!(
                "{} / {} msg/s",
                group(upper_median(&json_rates)),
                group(upper_median(&avro_rates))
            ),
        );
        self.summary.add(
            "  value bytes a record, JSON envelope / Avro frame",
            format!("{} / {}", bytes.0, bytes.1),
        );
        self.summary.add(
            format!(
                "  registry requests per Avro drain of {} rows",
                group(rows as f64)
            ),
            format!("{requests:?}"),
        );
        let case = format!("batch {BATCH}");
        Figure::new("relay", "avro", "relay JSON", "throughput", "msg/s")
            .case(&case)
            .rounds(&json_rates)
            .record();
        Figure::new("relay", "avro", "relay Avro", "throughput", "msg/s")
            .case(&case)
            .rounds(&avro_rates)
            .against("relay JSON", &json_rates)
            .target_at_least(0.9)
            .record();
    }
}
