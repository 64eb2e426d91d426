//! The command line: the run's options, and the hidden subcommands the run
//! starts itself with as its relay and consumer children.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::faults::FaultKind;

/// An audited chaos run: writers enqueue through the outbox, two relay
/// processes publish, a group of two consumer processes applies, while a
/// fault injector kills processes, stops brokers, restarts PostgreSQL and
/// terminates sessions. At the end an audit compares what the producer
/// committed with what the consumer applied; any bad count exits 1.
#[derive(Debug, Parser)]
#[command(name = "chaos", args_conflicts_with_subcommands = true)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) child: Option<Child>,
    #[command(flatten)]
    pub(crate) run: RunArgs,
}

/// The options of a run.
#[derive(Debug, Clone, Args)]
pub(crate) struct RunArgs {
    /// Messages to commit (the writers stop there, unless a fault kind still
    /// lacks its `--min-faults`).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) messages: u64,
    /// Stop writing after this many seconds even below `--messages`.
    #[arg(long)]
    pub(crate) seconds: Option<u64>,
    /// Keys the writers change (creates, updates, destroys).
    #[arg(long, default_value_t = 500)]
    pub(crate) keys: i64,
    /// Writer tasks, each on its own PostgreSQL session.
    #[arg(long, default_value_t = 4)]
    pub(crate) writers: usize,
    /// Messages per second all writers together aim at (0: as fast as they can).
    #[arg(long, default_value_t = 300)]
    pub(crate) rate: u64,
    /// Brokers expected in the cluster (default: as many as its metadata lists).
    #[arg(long)]
    pub(crate) brokers: Option<usize>,
    /// Partitions of the run's topic.
    #[arg(long, default_value_t = 8)]
    pub(crate) partitions: i32,
    /// Seed of every random choice (writers, faults, handler failures); printed.
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Fault kinds to inject, comma separated (default: all that apply;
    /// `leader-kill` needs 3 brokers).
    #[arg(long, value_delimiter = ',')]
    pub(crate) faults: Option<Vec<FaultKind>>,
    /// Wait between two faults, in milliseconds: `A..B`, drawn from the seed.
    #[arg(long, default_value = "1000..4000", value_parser = parse_range)]
    pub(crate) fault_interval_ms: (u64, u64),
    /// Faults of each kind the run injects at least (writing goes on until then).
    #[arg(long, default_value_t = 1)]
    pub(crate) min_faults: u32,
    /// Share of handler calls that fail (retriable), through the library's
    /// fault injection.
    #[arg(long, default_value_t = 0.01)]
    pub(crate) handler_failure_rate: f64,
    /// Seconds the flow may take to drain after the writers stop.
    #[arg(long, default_value_t = 600)]
    pub(crate) drain_timeout: u64,
    /// Write the summary as JSON to this file.
    #[arg(long)]
    pub(crate) report: Option<PathBuf>,
    /// Where the children's logs go (default: `target/chaos/<run>/`).
    #[arg(long)]
    pub(crate) log_dir: Option<PathBuf>,
    /// The PostgreSQL server (its database is replaced by `--database`).
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:54329/outbox_test"
    )]
    pub(crate) database_url: String,
    /// The run's own database, created if missing, reset at start.
    #[arg(long, default_value = "outbox_chaos")]
    pub(crate) database: String,
    /// A broker to start from (the others come from the cluster's metadata).
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:59092")]
    pub(crate) bootstrap: String,
    /// The services script that stops and starts brokers and PostgreSQL.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/services.sh"))]
    pub(crate) services_script: PathBuf,
}

impl RunArgs {
    /// Checks what clap cannot: ranges and sizes that make a run.
    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.keys < 1 {
            return Err("--keys must be at least 1".into());
        }
        if self.writers < 1 {
            return Err("--writers must be at least 1".into());
        }
        if self.partitions < 1 {
            return Err("--partitions must be at least 1".into());
        }
        if !(0.0..=0.5).contains(&self.handler_failure_rate) {
            return Err("--handler-failure-rate must be between 0 and 0.5".into());
        }
        if let Some(brokers) = self.brokers
            && brokers != 1
            && brokers != 3
        {
            return Err(format!("--brokers {brokers}: 1 or 3"));
        }
        Ok(())
    }

    pub(crate) fn fault_interval(&self) -> (Duration, Duration) {
        let (a, b) = self.fault_interval_ms;
        (Duration::from_millis(a), Duration::from_millis(b))
    }
}

/// `A..B` in milliseconds, `A <= B`.
fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let (a, b) = text
        .split_once("..")
        .ok_or_else(|| format!("{text:?} is not A..B"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("{s:?} in {text:?} is not a number of milliseconds"))
    };
    let (a, b) = (number(a)?, number(b)?);
    if a > b {
        return Err(format!("{text:?}: the first bound is above the second"));
    }
    Ok((a, b))
}

/// The children the run starts (hidden: not for users to call).
#[derive(Debug, Subcommand)]
pub(crate) enum Child {
    /// A relay publishing the producer schema's outbox.
    #[command(hide = true)]
    Relay(RelayArgs),
    /// A consumer of the run's group applying into the consumer schema.
    #[command(hide = true)]
    Consumer(ConsumerArgs),
    /// Prints records of a partition of a run's topic (offset, key, event,
    /// message id), to look for a message the audit found lost.
    Inspect(InspectArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    #[arg(long, env = "KAFKA_BROKERS", default_value = "127.0.0.1:59092")]
    pub(crate) brokers: String,
    #[arg(long)]
    pub(crate) topic: String,
    #[arg(long)]
    pub(crate) partition: i32,
    /// The first offset.
    #[arg(long, default_value_t = 0)]
    pub(crate) from: i64,
    /// Records to print at most.
    #[arg(long, default_value_t = 20)]
    pub(crate) count: usize,
}

#[derive(Debug, Args)]
pub(crate) struct RelayArgs {
    #[arg(long)]
    pub(crate) database_url: String,
    #[arg(long)]
    pub(crate) brokers: String,
}

#[derive(Debug, Args)]
pub(crate) struct ConsumerArgs {
    #[arg(long)]
    pub(crate) database_url: String,
    #[arg(long)]
    pub(crate) brokers: String,
    #[arg(long)]
    pub(crate) group: String,
    #[arg(long)]
    pub(crate) topic: String,
    #[arg(long)]
    pub(crate) name: String,
    /// Metrics (and health) served on this port of 127.0.0.1.
    #[arg(long)]
    pub(crate) metrics_port: u16,
    #[arg(long, default_value_t = 0.0)]
    pub(crate) handler_failure_rate: f64,
    #[arg(long, default_value_t = 0)]
    pub(crate) fault_seed: u64,
    /// librdkafka's offset auto-commit interval: longer than the time between
    /// two database commits, so most kills land between the two.
    #[arg(long, default_value_t = 1000)]
    pub(crate) auto_commit_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_refuse() {
        assert_eq!(parse_range("100..200"), Ok((100, 200)));
        assert_eq!(parse_range("5..5"), Ok((5, 5)));
        assert!(parse_range("200..100").is_err());
        assert!(parse_range("200").is_err());
        assert!(parse_range("a..b").is_err());
    }

    #[test]
    fn fault_kinds_parse_from_the_command_line() {
        let cli = Cli::try_parse_from(["chaos", "--faults", "relay-kill,pg-restart-fast"]).unwrap();
        assert_eq!(
            cli.run.faults,
            Some(vec![FaultKind::RelayKill, FaultKind::PgRestartFast])
        );
        assert!(Cli::try_parse_from(["chaos", "--faults", "nope"]).is_err());
    }
}
