//! What to run: the parts, and the sizes from the environment.

use crate::common::env::{self, env_list, env_or, named};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Drain,
    Memory,
    Live,
    Enqueue,
    Latency,
    Avro,
}

/// Every part, in the order they run, with its name.
pub(crate) const ALL_PARTS: [(Part, &str); 6] = [
    (Part::Drain, "drain"),
    (Part::Memory, "memory"),
    (Part::Live, "live"),
    (Part::Enqueue, "enqueue"),
    (Part::Latency, "latency"),
    (Part::Avro, "avro"),
];

pub(crate) struct Config {
    pub(crate) server_url: String,
    pub(crate) brokers: String,
    pub(crate) rows: usize,
    pub(crate) rounds: usize,
    pub(crate) batches: Vec<usize>,
    parts: Vec<Part>,
    pub(crate) live_rate: u64,
    pub(crate) live_secs: f64,
    pub(crate) latency_rate: u64,
    pub(crate) latency_secs: f64,
    pub(crate) raw_in_flight: usize,
    pub(crate) analyze: bool,
    pub(crate) run_limit: f64,
}

impl Config {
    pub(crate) fn new(args: &[String]) -> Self {
        let mut parts = Vec::new();
        for name in named(args, "OUTBOX_BENCH_PARTS") {
            match ALL_PARTS.iter().find(|(_, n)| *n == name) {
                Some((part, _)) => parts.push(*part),
                None => {
                    panic!(
                        "unknown part `{name}`; parts: drain, memory, live, enqueue, latency, avro"
                    )
                }
            }
        }
        if parts.is_empty() {
            parts = ALL_PARTS.iter().map(|(p, _)| *p).collect();
        }
        let mut batches = env_list("OUTBOX_BENCH_BATCHES");
        if batches.is_empty() {
            batches = vec!["100".into(), "1000".into()];
        }
        Config {
            server_url: env::database_url(),
            brokers: env::brokers(),
            rows: env_or("OUTBOX_BENCH_ROWS", 200_000usize).max(1),
            rounds: env_or("OUTBOX_BENCH_ROUNDS", 3usize).max(1),
            batches: batches
                .iter()
                .map(|b| {
                    b.parse()
                        .expect("OUTBOX_BENCH_BATCHES: sizes like 100,1000")
                })
                .collect(),
            parts,
            live_rate: env_or("OUTBOX_BENCH_LIVE_RATE", 20_000u64).max(1),
            live_secs: env_or("OUTBOX_BENCH_LIVE_SECS", 15.0f64),
            latency_rate: env_or("OUTBOX_BENCH_LATENCY_RATE", 1_000u64).max(1),
            latency_secs: env_or("OUTBOX_BENCH_LATENCY_SECS", 10.0f64),
            raw_in_flight: env_or("OUTBOX_BENCH_RAW_IN_FLIGHT", 4usize).max(1),
            analyze: env_or("OUTBOX_BENCH_ANALYZE", 1u8) != 0,
            run_limit: env_or("OUTBOX_BENCH_RUN_LIMIT", 60.0f64),
        }
    }

    pub(crate) fn has(&self, part: Part) -> bool {
        self.parts.contains(&part)
    }
}
