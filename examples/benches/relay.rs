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
//!   alone; its `batches_in_flight` is the relay's default unless
//!   `OUTBOX_BENCH_IN_FLIGHT` sets it). `OUTBOX_BENCH_ROUNDS` rounds (default 3)
//!   alternate the sides, so a busy machine slows them alike; fills are not timed; a relay run stops at
//!   `OUTBOX_BENCH_RUN_LIMIT` seconds (60). Where the time goes: CPU seconds of
//!   this process's threads (tokio workers, librdkafka), of the relay's
//!   PostgreSQL backend (found by `application_name`) and of the broker, from
//!   `/proc`; the time inside the publisher's `send`; and, apart, what a keyset
//!   read and the relay's delete cost on the same backlog; the blocks of the
//!   outbox table and of its indexes the relay touched (`pg_statio_user_tables`).
//!   Judged by the median of the per-round ratios relay ÷ raw all at once
//!   (targets 0.5 at batch 1000, 0.3 at batch 100).
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
//! - `avro`: the drain's backlog written twice, as JSON (`Order`) and as Avro
//!   (`AvroOrder`, the same order with `format = "avro"`: schema id 0 and a
//!   schema row at enqueue), each drained by a relay at batch 1000 to its own
//!   topic, the Avro one resolving the schema id in the registry of
//!   `SCHEMA_REGISTRY_URL` (`scripts/services.sh`'s by default). JSON and Avro
//!   alternate within each of `OUTBOX_BENCH_ROUNDS` rounds (which goes first
//!   alternates too); judged by the median of the per-round ratios Avro ÷ JSON
//!   (aim ≥ 0.9). Also the registry requests of each Avro drain (one per
//!   schema: ids are cached) and the bytes per record of each format.
//!
//! The relay runs in this process (but for `memory`), instrumented from the
//! outside only: a metrics recorder sees its counters and batch histogram, and
//! a wrapper around its publisher times each `send` (two clock reads per
//! record). Ends with a summary table (figures, ratios, targets). Schemas and
//! topics it made are dropped at the end.

#[path = "relay/avro.rs"]
mod avro;
#[path = "relay/backlog.rs"]
mod backlog;
#[path = "common/mod.rs"]
#[allow(dead_code)] // parts of it serve only the consumer benchmark
mod common;
#[path = "relay/cpu.rs"]
mod cpu;
#[path = "relay/drain.rs"]
mod drain;
#[path = "relay/enqueue.rs"]
mod enqueue;
#[path = "relay/instrument.rs"]
mod instrument;
#[path = "relay/lag.rs"]
mod lag;
#[path = "relay/latency.rs"]
mod latency;
#[path = "relay/live.rs"]
mod live;
#[path = "relay/memory.rs"]
mod memory;
#[path = "relay/model.rs"]
mod model;
#[path = "relay/raw.rs"]
mod raw;
#[path = "relay/run.rs"]
mod run;
#[path = "relay/settings.rs"]
mod settings;
#[path = "relay/sql.rs"]
mod sql;
#[path = "relay/summary.rs"]
mod summary;

use std::time::Instant;

use outbox::Outboxed;

use common::db::Db;
use common::kafka::{delete_topic, fresh_topic};
use common::report;
use model::{AvroOrder, Order, Ping};
use settings::{ALL_PARTS, Config, Part};
use summary::Summary;

/// The run: its settings, services and summary; each part is a method, in its module.
struct Bench {
    config: Config,
    db: Db,
    runtime: tokio::runtime::Runtime,
    summary: Summary,
    broker: Option<u32>,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--child-drain") {
        memory::child_drain(&args[at + 1..]);
        return;
    }
    let config = Config::new(&args);
    if std::env::var_os("RUST_LOG").is_some() {
        // The relay's own log, on demand (`RUST_LOG=outbox_diesel=debug`).
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    instrument::RECORDER.install();
    let runtime = common::runtime();
    report::banner("relay", &config.server_url, &config.brokers);
    let mut bench = Bench {
        db: Db::new(&config.server_url, "outbox_bench"),
        config,
        runtime,
        summary: Summary::default(),
        broker: common::cpu::broker_pid(),
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
                Part::Avro => bench.avro(),
            }
        }
    }));
    bench.db.drop_all();
    let brokers = bench.config.brokers.clone();
    bench.runtime.block_on(async {
        for topic in [Order::TOPIC, Ping::TOPIC, AvroOrder::TOPIC] {
            delete_topic(&brokers, topic).await;
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
