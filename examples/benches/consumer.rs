//! The consumer's throughput against a hand-written consumer doing the same
//! work, on the real PostgreSQL and Kafka of `scripts/services.sh` (or
//! `DATABASE_URL` / `KAFKA_BROKERS`).
//!
//! ```sh
//! cargo bench -p outbox-examples --bench consumer
//! OUTBOX_BENCH_MESSAGES=20000 OUTBOX_BENCH_ROUNDS=3 cargo bench -p outbox-examples --bench consumer
//! cargo bench -p outbox-examples --bench consumer -- outbox hand outbox-fast-pool  # some sides
//! ```
//!
//! A fresh 4-partition topic is preloaded once with `OUTBOX_BENCH_MESSAGES`
//! records (default 50,000): real outbox envelopes (`Message::encode_model`,
//! headers from `outbox::kafka::record_headers`) of an account model, ~210
//! bytes of JSON, 1,000 keys, created then updated, produced straight with
//! rdkafka. Then `OUTBOX_BENCH_ROUNDS` rounds (default 5); in each, every side
//! consumes the whole topic in a fresh consumer group into its own schema
//! (accounts table and inbox truncated first) until all records are applied,
//! the sides in an order rotated each round so a busy machine slows them alike:
//!
//! - `outbox`: the outbox `Consumer`, default settings, with a
//!   `#[message_controller(model = Account, table = bench_accounts)]`
//!   controller (its generated upsert), on a pool from `consumer::pool` of 8;
//! - `hand`: a hand-written rdkafka `StreamConsumer` + diesel-async consumer:
//!   a task per partition reading its own partition queue and holding a
//!   pooled connection, one transaction per record with the same inbox insert
//!   (`ON CONFLICT DO NOTHING`) and upsert, offset stored after the commit,
//!   librdkafka auto-commit;
//! - `hand-no-inbox`: the same without the inbox insert: the inbox's cost.
//!
//! Diagnostics, by name only (`OUTBOX_BENCH_SIDES=outbox,hand,outbox-fast-pool`
//! or arguments): `outbox-fast-pool` (the outbox consumer on a pool that does
//! not ping connections on checkout) and `hand-pool-per-record` (the
//! hand-written consumer checking a connection out per record).
//! `OUTBOX_BENCH_OUTBOX_SET=fetch.wait.max.ms=100,...` passes librdkafka
//! settings to the outbox consumer; `OUTBOX_BENCH_STALL` (30 s) ends a run
//! that applies nothing for that long.
//!
//! Every side decodes with `outbox::kafka::decode_record` and runs the same
//! upsert. The clock runs from the first record's upsert to the commit of the
//! last record (the group join before is reported apart, as `startup`); CPU
//! per 1,000 records of this process, of PostgreSQL and of the broker is read
//! from `/proc`, and every wait of a partition longer than 20 ms between two
//! upserts is counted (time it had no record to apply: flow control, fetch
//! latency). After each run the table is checked: 1,000 accounts, each at
//! its last message (per-key order held), and one inbox row per record. Ends
//! with msg/s per side, medians, and the ratios outbox ÷ hand and hand ÷
//! hand-no-inbox (per round, paired, then median and best). The schemas, the
//! topic and the consumer groups are deleted at the end.

#[path = "common/mod.rs"]
#[allow(dead_code)] // parts of it serve only the relay benchmark
mod common;
#[path = "consumer/measure.rs"]
mod measure;
#[path = "consumer/model.rs"]
mod model;
#[path = "consumer/setup.rs"]
mod setup;
#[path = "consumer/sides.rs"]
mod sides;

use std::collections::HashMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use common::data::KEYS;
use common::db::{Db, Schema};
use common::env::{env_list, env_or, named};
use common::kafka::PARTITIONS;
use common::report::{self, group};
use common::stats::{best, median};
use measure::Ending;
use setup::TOPIC;
use sides::{Run, SIDES, Side};

const DEFAULT_SIDES: [Side; 3] = [Side::Outbox, Side::Hand, Side::HandNoInbox];
/// The outbox consumer's target against the hand-written one (issue 8).
const TARGET: f64 = 0.8;

struct Config {
    server_url: String,
    brokers: String,
    messages: u64,
    rounds: usize,
    sides: Vec<Side>,
    stall: Duration,
    /// librdkafka settings for the outbox consumer (`OUTBOX_BENCH_OUTBOX_SET`).
    outbox_settings: Vec<(String, String)>,
}

impl Config {
    fn new(args: &[String]) -> Config {
        let mut sides = Vec::new();
        for name in named(args, "OUTBOX_BENCH_SIDES") {
            let side = Side::parse(&name).unwrap_or_else(|| {
                let all: Vec<&str> = SIDES.iter().map(|(_, n, _)| *n).collect();
                panic!("unknown side `{name}`; sides: {}", all.join(", "))
            });
            if !sides.contains(&side) {
                sides.push(side);
            }
        }
        if sides.is_empty() {
            sides = DEFAULT_SIDES.to_vec();
        }
        Config {
            server_url: common::env::database_url(),
            brokers: common::env::brokers(),
            messages: env_or("OUTBOX_BENCH_MESSAGES", 50_000u64).max(1),
            rounds: env_or("OUTBOX_BENCH_ROUNDS", 5usize).max(1),
            sides,
            stall: Duration::from_secs_f64(env_or("OUTBOX_BENCH_STALL", 30.0f64)),
            outbox_settings: env_list("OUTBOX_BENCH_OUTBOX_SET")
                .iter()
                .map(|kv| {
                    let (key, value) = kv
                        .split_once('=')
                        .expect("OUTBOX_BENCH_OUTBOX_SET: key=value,key=value");
                    (key.trim().to_owned(), value.trim().to_owned())
                })
                .collect(),
        }
    }

    /// The command that repeats this run.
    fn command(&self) -> String {
        let sides: Vec<&str> = self.sides.iter().map(|s| s.name()).collect();
        let settings: Vec<String> = self
            .outbox_settings
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        let settings = match settings.is_empty() {
            true => String::new(),
            false => format!("OUTBOX_BENCH_OUTBOX_SET={} ", settings.join(",")),
        };
        format!(
            "OUTBOX_BENCH_MESSAGES={} OUTBOX_BENCH_ROUNDS={} OUTBOX_BENCH_SIDES={} {settings}\
             cargo bench -p outbox-examples --bench consumer",
            self.messages,
            self.rounds,
            sides.join(",")
        )
    }
}

struct Bench {
    config: Config,
    db: Db,
    runtime: tokio::runtime::Runtime,
    schemas: HashMap<Side, Schema>,
    /// Per side, its runs in round order.
    runs: HashMap<Side, Vec<Run>>,
    groups: Vec<String>,
    problems: Vec<String>,
}

impl Bench {
    fn preload(&mut self) {
        let (brokers, messages) = (self.config.brokers.clone(), self.config.messages);
        self.runtime
            .block_on(common::kafka::fresh_topic(&brokers, TOPIC));
        let t = Instant::now();
        let (value, headers) = setup::preload(&brokers, messages);
        let counts = setup::partition_counts(&brokers);
        println!(
            "preloaded {TOPIC}: {} records in {:.1} s, per partition {counts:?}; \
             payload {} B of JSON, record value (envelope) {value} B, headers {headers} B, {} keys",
            group(messages as f64),
            t.elapsed().as_secs_f64(),
            model::payload_size(),
            KEYS,
        );
        assert_eq!(
            counts.iter().sum::<i64>(),
            messages as i64,
            "the topic holds other records"
        );
    }

    fn round(&mut self, round: usize) {
        let mut order = self.config.sides.clone();
        let shift = round % order.len();
        order.rotate_left(shift);
        for side in order {
            let schema = &self.schemas[&side];
            schema.truncate();
            let consumer_group = format!(
                "outbox-bench-consumer-{}-{}-{round}",
                std::process::id(),
                side.name()
            );
            self.groups.push(consumer_group.clone());
            let run = self.runtime.block_on(sides::run(
                side,
                &self.config.brokers,
                &schema.url,
                &consumer_group,
                self.config.messages,
                self.config.stall,
                &self.config.outbox_settings,
            ));
            self.check(side, round, &run);
            let [process, postgres, broker, busy] = run.cpu;
            println!(
                "  round {} {:<20} {:>7} msg/s  {:.2} s (startup {:.2} s, shutdown {:.2} s)\n    \
                 per 1k msgs: CPU ms bench {process:.0}, PostgreSQL {postgres:.0}, broker {broker:.0}; \
                 machine busy {busy:.0}%; \
                 a partition idle > 20 ms: {} times, {:.2} s in all",
                round + 1,
                side.name(),
                group(run.rate()),
                run.timing.secs,
                run.timing.startup,
                run.shutdown_secs,
                run.timing.idles,
                run.timing.idle_secs,
            );
            std::io::stdout().flush().ok();
            self.runs.entry(side).or_default().push(run);
        }
    }

    /// Checks the run's outcome: all applied, the table at each key's last
    /// message, one inbox row per record.
    fn check(&mut self, side: Side, round: usize, run: &Run) {
        let messages = self.config.messages;
        let mut problems = Vec::new();
        if run.ending == Ending::Stalled {
            problems.push(format!(
                "stalled: {} of {messages} applied, nothing for {:?}",
                run.timing.applied, self.config.stall
            ));
        }
        if run.timing.other > 0 {
            problems.push(format!(
                "{} records not processed (duplicate, ignored, refused or failed)",
                run.timing.other
            ));
        }
        if let Some(report) = run.report
            && report.processed != messages
        {
            problems.push(format!("the consumer reports {report:?}"));
        }
        let (accounts, seq_sum, inbox) = self.schemas[&side].state();
        let (want_accounts, want_sum) = model::expected_state(messages);
        if (accounts, seq_sum) != (want_accounts, want_sum) {
            problems.push(format!(
                "table: {accounts} accounts, seq sum {seq_sum}; expected {want_accounts}, {want_sum} \
                 (a key's messages applied out of order or not at all)"
            ));
        }
        let want_inbox = if side.inbox() { messages as i64 } else { 0 };
        if inbox != want_inbox {
            problems.push(format!("inbox: {inbox} rows, expected {want_inbox}"));
        }
        for problem in problems {
            println!("  !! {} round {}: {problem}", side.name(), round + 1);
            self.problems
                .push(format!("{} round {}: {problem}", side.name(), round + 1));
        }
    }

    fn rates(&self, side: Side) -> Vec<f64> {
        self.runs
            .get(&side)
            .map(|runs| runs.iter().map(Run::rate).collect())
            .unwrap_or_default()
    }

    /// `a ÷ b` per round (the two ran in the same round), its median and best,
    /// and the ratio of the medians.
    fn ratio(&self, a: Side, b: Side) -> Option<Ratio> {
        let (ra, rb) = (self.rates(a), self.rates(b));
        if ra.is_empty() || rb.is_empty() {
            return None;
        }
        let paired: Vec<f64> = ra.iter().zip(&rb).map(|(x, y)| x / y).collect();
        Some(Ratio {
            median: median(&paired),
            best: best(&paired),
            of_medians: median(&ra) / median(&rb),
            paired,
        })
    }

    fn summary(&self) {
        report::summary_heading();
        println!(
            "{} records, {} rounds, {PARTITIONS} partitions, {KEYS} keys; msg/s from the first upsert to the last commit\n",
            group(self.config.messages as f64),
            self.config.rounds,
        );
        let rounds: Vec<String> = (1..=self.config.rounds).map(|r| format!("r{r}")).collect();
        println!(
            "  {:<20} {:>8} {:>8}  {:>8}  {}",
            "side",
            "median",
            "best",
            "CPU/1k",
            rounds
                .iter()
                .map(|r| format!("{r:>7}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for side in &self.config.sides {
            let rates = self.rates(*side);
            let runs = &self.runs[side];
            let cpu: Vec<f64> = runs.iter().map(|r| r.cpu[0] + r.cpu[1]).collect();
            println!(
                "  {:<20} {:>8} {:>8}  {:>6.0}ms  {}",
                side.name(),
                group(median(&rates)),
                group(best(&rates)),
                median(&cpu),
                rates
                    .iter()
                    .map(|r| format!("{:>7}", group(*r)))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        println!("  (CPU/1k: median CPU ms per 1,000 records of this process + PostgreSQL)\n");
        for side in &self.config.sides {
            println!("  {:<20} {}", side.name(), side.description());
        }
        println!();
        let pairs = [
            (Side::Outbox, Side::Hand, "outbox ÷ hand-written", true),
            (Side::Hand, Side::HandNoInbox, "with inbox ÷ without", false),
            (
                Side::OutboxFastPool,
                Side::Hand,
                "outbox (fast pool) ÷ hand-written",
                false,
            ),
            (
                Side::Outbox,
                Side::HandPoolPerRecord,
                "outbox ÷ hand (pool per record)",
                false,
            ),
            (
                Side::HandPoolPerRecord,
                Side::Hand,
                "hand: pool per record ÷ held",
                false,
            ),
        ];
        for (a, b, name, targeted) in pairs {
            let Some(ratio) = self.ratio(a, b) else {
                continue;
            };
            let verdict = match (targeted, ratio.median >= TARGET) {
                (false, _) => String::new(),
                (true, true) => format!("  target ≥ {TARGET}: PASS"),
                (true, false) => format!("  target ≥ {TARGET}: MISS"),
            };
            println!(
                "  {name:<34} median {:.2}  best {:.2}  (ratio of medians {:.2}; per round {}){verdict}",
                ratio.median,
                ratio.best,
                ratio.of_medians,
                ratio
                    .paired
                    .iter()
                    .map(|r| format!("{r:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
        }
        report::problems(&self.problems);
        println!("\nreproduce: {}", self.config.command());
    }

    fn cleanup(&self) {
        self.db.drop_all();
        let brokers = &self.config.brokers;
        self.runtime.block_on(async {
            common::kafka::delete_groups(brokers, &self.groups).await;
            common::kafka::delete_topic(brokers, TOPIC).await;
        });
    }
}

struct Ratio {
    paired: Vec<f64>,
    median: f64,
    best: f64,
    of_medians: f64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = Config::new(&args);
    measure::RECORDER.install();
    let runtime = common::runtime();
    report::banner("consumer", &config.server_url, &config.brokers);
    let db = Db::new(&config.server_url, "outbox_bench_consumer");
    let mut bench = Bench {
        schemas: HashMap::new(),
        runs: HashMap::new(),
        groups: Vec::new(),
        problems: Vec::new(),
        db,
        config,
        runtime,
    };
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for side in bench.config.sides.clone() {
            let schema = setup::schema(&bench.db, &side.name().replace('-', "_"));
            bench.schemas.insert(side, schema);
        }
        bench.preload();
        let order: Vec<&str> = bench.config.sides.iter().map(|s| s.name()).collect();
        println!(
            "\n== {} rounds of: {} (order rotated each round; pool {} connections) ==",
            bench.config.rounds,
            order.join(", "),
            sides::POOL_SIZE
        );
        for round in 0..bench.config.rounds {
            bench.round(round);
        }
    }));
    bench.cleanup();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    bench.summary();
    println!(
        "total time of this run: {:.0} s",
        started.elapsed().as_secs_f64()
    );
}
