//! The consumer against a hand-written consumer doing the same work, on the
//! real PostgreSQL and Kafka of `scripts/services.sh` (or `DATABASE_URL` /
//! `KAFKA_BROKERS`): catching up a backlog, and the latency of live traffic.
//!
//! ```sh
//! cargo bench -p outbox-examples --bench consumer              # both parts
//! OUTBOX_BENCH_MESSAGES=20000 OUTBOX_BENCH_ROUNDS=3 cargo bench -p outbox-examples --bench consumer
//! cargo bench -p outbox-examples --bench consumer -- live      # one part
//! cargo bench -p outbox-examples --bench consumer -- outbox hand outbox-fast-pool  # some sides
//! ```
//!
//! Parts (both by default; `OUTBOX_BENCH_PARTS=catchup,live` or arguments;
//! naming sides and no part runs `catchup` only):
//!
//! `catchup`: a fresh 4-partition topic is preloaded once with
//! `OUTBOX_BENCH_MESSAGES` records (default 200,000): real outbox envelopes
//! (`Message::encode_model`, headers from `outbox::kafka::record_headers`) of
//! an account model, ~210 bytes of JSON, 1,000 keys, created then updated,
//! produced straight with rdkafka. Then `OUTBOX_BENCH_ROUNDS` rounds (default
//! 5); in each, every side consumes the whole topic in a fresh consumer group
//! into its own schema (accounts table and inbox truncated first) until all
//! records are applied, the sides in an order rotated each round so a busy
//! machine slows them alike:
//!
//! - `outbox`: the outbox `Consumer`, default settings (batched apply:
//!   `batch_size` `OUTBOX_BENCH_BATCH`, default
//!   `outbox_diesel::consumer::DEFAULT_BATCH_SIZE`), with a hook-free
//!   `#[message_controller(model = Account, table = bench_accounts)]`
//!   controller (its generated upserts, in groups: one multi-row upsert for
//!   the consecutive records of a batch), measured by a wrapper around its
//!   calls, on a pool from `consumer::pool` of 8;
//! - `outbox-per-record`: the same with `batch_size(1)`, one transaction per
//!   record;
//! - `hand`: a hand-written rdkafka `StreamConsumer` + diesel-async consumer:
//!   a task per partition reading its own partition queue and holding a
//!   pooled connection, one transaction per record with the same inbox insert
//!   (`ON CONFLICT DO NOTHING`) and upsert, offset stored after the commit,
//!   librdkafka auto-commit;
//! - `hand-no-inbox`: the same without the inbox insert: the inbox's cost;
//! - `projection-rebuild`: the `outbox` side as a `Projection` rebuilt at
//!   start (`rebuild_at_start`: its reset truncates the table, positions go
//!   back to the earliest records, everything up to the high watermarks is
//!   re-applied), positions in the database and no inbox: the catch-up of
//!   a rebuild next to the live consumer's (the ratio
//!   `projection rebuild ÷ live consumer`).
//!
//! Diagnostics, by name only (`OUTBOX_BENCH_SIDES=outbox,hand,outbox-fast-pool`
//! or arguments): `outbox-fast-pool` (the batched outbox consumer on a pool
//! that does not ping connections on checkout) and `hand-pool-per-record` (the
//! hand-written consumer checking a connection out per record) and
//! `outbox-hooks` (the batched outbox consumer measured by `before_`/`after_`
//! hooks, as before grouped upserts: one upsert per record, no groups).
//! `OUTBOX_BENCH_OUTBOX_SET=fetch.wait.max.ms=100,...` passes librdkafka
//! settings to the outbox consumer (both parts); `OUTBOX_BENCH_STALL` (30 s)
//! ends a run that applies nothing for that long.
//!
//! Every side decodes with `outbox::kafka::decode_record` and runs the same
//! upsert. The clock runs from the first record's upsert to the commit of the
//! last record (the group join before is reported apart, as `startup`); CPU
//! per 1,000 records of this process, of PostgreSQL and of the broker is read
//! from `/proc`, and every wait of a partition longer than 20 ms between two
//! upserts is counted (time it had no record to apply: flow control, fetch
//! latency). After each run the table is checked: 1,000 accounts, each at
//! its last message (per-key order held), and one inbox row per record. Ends
//! with msg/s per side, medians, and the ratios outbox ÷ hand (target ≥ 3),
//! outbox-per-record ÷ hand, outbox ÷ outbox-per-record and hand ÷
//! hand-no-inbox (per round, paired, then median and best).
//!
//! `live`: see `consumer/live.rs`: `OUTBOX_BENCH_LIVE_RATE` msg/s (1,000) for
//! `OUTBOX_BENCH_LIVE_SECS` (15) to a fresh topic while the outbox consumer
//! applies them, batched against `batch_size(1)` in `OUTBOX_BENCH_LIVE_ROUNDS`
//! (3) alternating rounds each; per record, produce → commit.
//!
//! The schemas, the topic and the consumer groups are deleted at the end.

#[path = "common/mod.rs"]
#[allow(dead_code)] // parts of it serve only the relay benchmark
mod common;
#[path = "consumer/live.rs"]
mod live;
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
use common::env::{env_list, env_or};
use common::kafka::PARTITIONS;
use common::report::{self, group};
use common::results::Figure;
use common::stats::{best, median};
use measure::Ending;
use outbox_diesel::consumer::DEFAULT_BATCH_SIZE;
use setup::TOPIC;
use sides::{Run, SIDES, Side, Tuning};

const DEFAULT_SIDES: [Side; 5] = [
    Side::Outbox,
    Side::OutboxPerRecord,
    Side::Hand,
    Side::HandNoInbox,
    Side::ProjectionRebuild,
];
/// The batched outbox consumer's catch-up target against the hand-written
/// one (issue 14).
const TARGET: f64 = 3.0;
/// The one-record-per-transaction outbox consumer's target against the
/// hand-written one (issue 8).
const PER_RECORD_TARGET: f64 = 0.8;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Catchup,
    Live,
}

/// Every part, in the order they run, with its name.
const PARTS: [(Part, &str); 2] = [(Part::Catchup, "catchup"), (Part::Live, "live")];

impl Part {
    fn parse(name: &str) -> Option<Part> {
        PARTS.iter().find(|(_, n)| *n == name).map(|(p, _)| *p)
    }

    fn name(self) -> &'static str {
        PARTS.iter().find(|(p, _)| *p == self).unwrap().1
    }
}

/// The live part's settings.
struct LiveConfig {
    /// Records per second produced.
    rate: u64,
    /// For how long.
    secs: f64,
    /// Rounds of each variant.
    rounds: usize,
}

struct Config {
    server_url: String,
    brokers: String,
    parts: Vec<Part>,
    messages: u64,
    rounds: usize,
    sides: Vec<Side>,
    stall: Duration,
    /// The outbox sides' batch size and librdkafka settings.
    tuning: Tuning,
    live: LiveConfig,
}

fn unknown(name: &str) -> ! {
    let parts: Vec<&str> = PARTS.iter().map(|(_, n)| *n).collect();
    let sides: Vec<&str> = SIDES.iter().map(|(_, n, _)| *n).collect();
    panic!(
        "unknown part or side `{name}`; parts: {}; sides: {}",
        parts.join(", "),
        sides.join(", ")
    )
}

impl Config {
    fn new(args: &[String]) -> Config {
        let (mut parts, mut sides) = (Vec::new(), Vec::new());
        let names = args
            .iter()
            .map(|arg| arg.trim())
            .filter(|arg| !arg.starts_with('-') && !arg.is_empty());
        for name in names {
            match (Part::parse(name), Side::parse(name)) {
                (Some(part), _) => parts.push(part),
                (None, Some(side)) => sides.push(side),
                (None, None) => unknown(name),
            }
        }
        for name in env_list("OUTBOX_BENCH_PARTS") {
            parts.push(Part::parse(&name).unwrap_or_else(|| unknown(&name)));
        }
        for name in env_list("OUTBOX_BENCH_SIDES") {
            sides.push(Side::parse(&name).unwrap_or_else(|| unknown(&name)));
        }
        if parts.is_empty() {
            parts = match sides.is_empty() {
                true => PARTS.iter().map(|(p, _)| *p).collect(),
                false => vec![Part::Catchup],
            };
        }
        if sides.is_empty() {
            sides = DEFAULT_SIDES.to_vec();
        }
        parts.dedup();
        let mut unique = Vec::new();
        for side in sides {
            if !unique.contains(&side) {
                unique.push(side);
            }
        }
        Config {
            server_url: common::env::database_url(),
            brokers: common::env::brokers(),
            parts,
            messages: env_or("OUTBOX_BENCH_MESSAGES", 200_000u64).max(1),
            rounds: env_or("OUTBOX_BENCH_ROUNDS", 5usize).max(1),
            sides: unique,
            stall: Duration::from_secs_f64(env_or("OUTBOX_BENCH_STALL", 30.0f64)),
            tuning: Tuning {
                settings: env_list("OUTBOX_BENCH_OUTBOX_SET")
                    .iter()
                    .map(|kv| {
                        let (key, value) = kv
                            .split_once('=')
                            .expect("OUTBOX_BENCH_OUTBOX_SET: key=value,key=value");
                        (key.trim().to_owned(), value.trim().to_owned())
                    })
                    .collect(),
                batch: env_or("OUTBOX_BENCH_BATCH", DEFAULT_BATCH_SIZE).max(1),
            },
            live: LiveConfig {
                rate: env_or("OUTBOX_BENCH_LIVE_RATE", 1_000u64).max(1),
                secs: env_or("OUTBOX_BENCH_LIVE_SECS", 15.0f64).max(0.1),
                rounds: env_or("OUTBOX_BENCH_LIVE_ROUNDS", 3usize).max(1),
            },
        }
    }

    fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }

    /// The command that repeats this run.
    fn command(&self) -> String {
        let parts: Vec<&str> = self.parts.iter().map(|p| p.name()).collect();
        let mut vars = vec![format!("OUTBOX_BENCH_PARTS={}", parts.join(","))];
        if self.has(Part::Catchup) {
            let sides: Vec<&str> = self.sides.iter().map(|s| s.name()).collect();
            vars.push(format!("OUTBOX_BENCH_MESSAGES={}", self.messages));
            vars.push(format!("OUTBOX_BENCH_ROUNDS={}", self.rounds));
            vars.push(format!("OUTBOX_BENCH_SIDES={}", sides.join(",")));
        }
        if self.has(Part::Live) {
            vars.push(format!("OUTBOX_BENCH_LIVE_RATE={}", self.live.rate));
            vars.push(format!("OUTBOX_BENCH_LIVE_SECS={}", self.live.secs));
            vars.push(format!("OUTBOX_BENCH_LIVE_ROUNDS={}", self.live.rounds));
        }
        vars.push(format!("OUTBOX_BENCH_BATCH={}", self.tuning.batch));
        let settings: Vec<String> = self
            .tuning
            .settings
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect();
        if !settings.is_empty() {
            vars.push(format!("OUTBOX_BENCH_OUTBOX_SET={}", settings.join(",")));
        }
        format!(
            "{} cargo bench -p outbox-examples --bench consumer",
            vars.join(" ")
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
    /// The live part's runs, in the order they ran.
    live_runs: Vec<live::LiveRun>,
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

    /// The `catchup` part: the backlog, then the rounds.
    fn catchup(&mut self) {
        for side in self.config.sides.clone() {
            let schema = setup::schema(&self.db, &side.name().replace('-', "_"));
            self.schemas.insert(side, schema);
        }
        self.preload();
        let order: Vec<&str> = self.config.sides.iter().map(|s| s.name()).collect();
        println!(
            "\n== catch-up: {} rounds of: {} (order rotated each round; pool {} connections; \
             outbox batch_size {}) ==",
            self.config.rounds,
            order.join(", "),
            sides::POOL_SIZE,
            self.config.tuning.batch,
        );
        for round in 0..self.config.rounds {
            self.round(round);
        }
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
                &self.config.tuning,
            ));
            self.check(side, round, &run);
            let [process, postgres, broker, busy] = run.cpu;
            let per_transaction = match side.is_outbox() {
                true => format!(
                    "; {:.1} records per transaction",
                    run.timing.per_transaction()
                ),
                false => String::new(),
            };
            println!(
                "  round {} {:<20} {:>7} msg/s  {:.2} s (startup {:.2} s, shutdown {:.2} s)\n    \
                 per 1k msgs: CPU ms bench {process:.0}, PostgreSQL {postgres:.0}, broker {broker:.0}; \
                 machine busy {busy:.0}%; \
                 a partition idle > 20 ms: {} times, {:.2} s in all{per_transaction}",
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
        if self.config.has(Part::Catchup) {
            self.catchup_summary();
        }
        if self.config.has(Part::Live) {
            self.live_summary();
        }
        report::problems(&self.problems);
        println!("\nreproduce: {}", self.config.command());
    }

    fn catchup_summary(&self) {
        println!(
            "catch-up: {} records, {} rounds, {PARTITIONS} partitions, {KEYS} keys, outbox batch_size {}; \
             msg/s from the first upsert to the last commit\n",
            group(self.config.messages as f64),
            self.config.rounds,
            self.config.tuning.batch,
        );
        let rounds: Vec<String> = (1..=self.config.rounds).map(|r| format!("r{r}")).collect();
        println!(
            "  {:<20} {:>8} {:>8}  {:>8}  {:>5}  {}",
            "side",
            "median",
            "best",
            "CPU/1k",
            "r/txn",
            rounds
                .iter()
                .map(|r| format!("{r:>7}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        for side in &self.config.sides {
            let rates = self.rates(*side);
            let Some(runs) = self.runs.get(side) else {
                continue;
            };
            let cpu: Vec<f64> = runs.iter().map(|r| r.cpu[0] + r.cpu[1]).collect();
            let per_transaction = match side.is_outbox() {
                true => {
                    let per: Vec<f64> = runs.iter().map(|r| r.timing.per_transaction()).collect();
                    format!("{:>5.1}", median(&per))
                }
                false => format!("{:>5}", 1),
            };
            println!(
                "  {:<20} {:>8} {:>8}  {:>6.0}ms  {per_transaction}  {}",
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
            Figure::new("consumer", "catchup", side.name(), "catch-up rate", "msg/s")
                .rounds(&rates)
                .record();
        }
        println!(
            "  (CPU/1k: median CPU ms per 1,000 records of this process + PostgreSQL; \
             r/txn: median records per transaction)\n"
        );
        for side in &self.config.sides {
            println!("  {:<20} {}", side.name(), side.description());
        }
        println!();
        let pairs = [
            (
                Side::Outbox,
                Side::Hand,
                "outbox ÷ hand-written",
                Some(TARGET),
            ),
            (
                Side::OutboxPerRecord,
                Side::Hand,
                "outbox-per-record ÷ hand-written",
                Some(PER_RECORD_TARGET),
            ),
            (
                Side::Outbox,
                Side::OutboxPerRecord,
                "outbox ÷ outbox-per-record",
                None,
            ),
            (Side::Hand, Side::HandNoInbox, "with inbox ÷ without", None),
            (
                Side::ProjectionRebuild,
                Side::Outbox,
                "projection rebuild ÷ live consumer",
                None,
            ),
            (
                Side::OutboxFastPool,
                Side::Hand,
                "outbox (fast pool) ÷ hand-written",
                None,
            ),
            (
                Side::Outbox,
                Side::OutboxHooks,
                "outbox ÷ outbox-hooks (groups ÷ none)",
                None,
            ),
            (
                Side::Outbox,
                Side::HandPoolPerRecord,
                "outbox ÷ hand (pool per record)",
                None,
            ),
            (
                Side::HandPoolPerRecord,
                Side::Hand,
                "hand: pool per record ÷ held",
                None,
            ),
        ];
        println!("  ratios of msg/s, median of the paired per-round ratios (best):");
        for (a, b, name, target) in pairs {
            let Some(ratio) = self.ratio(a, b) else {
                continue;
            };
            // The same paired rounds as `ratio`: each side's runs are in round order.
            let figure = Figure::new(
                "consumer",
                "catchup ratio",
                a.name(),
                "catch-up rate",
                "msg/s",
            )
            .case(name)
            .rounds(&self.rates(a))
            .against(b.name(), &self.rates(b));
            match target {
                Some(t) => figure.target_at_least(t),
                None => figure,
            }
            .record();
            let verdict = match target {
                None => String::new(),
                Some(target) if ratio.median >= target => format!("  target ≥ {target}: PASS"),
                Some(target) => format!("  target ≥ {target}: MISS"),
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
        live_runs: Vec::new(),
        groups: Vec::new(),
        problems: Vec::new(),
        db,
        config,
        runtime,
    };
    let started = Instant::now();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if bench.config.has(Part::Catchup) {
            bench.catchup();
        }
        if bench.config.has(Part::Live) {
            bench.live();
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
