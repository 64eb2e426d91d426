//! What the run tells: a progress line while it runs (indicatif on a
//! terminal, a plain line every 10 s otherwise), and the summary at the end,
//! printed and, with `--report FILE`, written as JSON.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use super::audit::Audit;
use super::faults::{FaultError, FaultKind};
use super::processes::{Scraped, UnexpectedExit};
use super::writers::WriterSummary;

/// The summary of a run.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) seed: u64,
    pub(crate) run: String,
    pub(crate) brokers: usize,
    pub(crate) partitions: i32,
    pub(crate) topic: String,
    pub(crate) log_dir: PathBuf,
    pub(crate) seconds: f64,
    pub(crate) writers: WriterSummary,
    /// Faults by kind (`handler-failure`: calls failed, from the consumers' metrics).
    pub(crate) faults: BTreeMap<String, u64>,
    pub(crate) fault_errors: Vec<FaultError>,
    /// The consumers' metrics: redeliveries the inbox caught, retries.
    pub(crate) consumers: Scraped,
    pub(crate) unexpected_exits: Vec<UnexpectedExit>,
    /// Set when the flow did not drain in time (then the audit still runs).
    pub(crate) drain_timeout: Option<String>,
    /// Set when the Kafka cluster's id changed during the run: another
    /// process formatted it anew (`services.sh up` with another node count),
    /// and the run's records went with it.
    pub(crate) cluster_replaced: Option<String>,
    /// Ended early by Ctrl-C or SIGTERM (the audit covers what was written).
    pub(crate) interrupted: bool,
    pub(crate) audit: Audit,
    /// Every bad count, by name (empty: the run passed).
    pub(crate) bad: BTreeMap<String, i64>,
}

impl Summary {
    /// Fills [`bad`](Self::bad) from everything else.
    pub(crate) fn judge(&mut self) {
        let mut bad: BTreeMap<String, i64> = self
            .audit
            .bad_counts()
            .into_iter()
            .map(|(name, n)| (name.to_owned(), n))
            .collect();
        let mut add = |name: &str, n: i64| {
            if n != 0 {
                bad.insert(name.to_owned(), n);
            }
        };
        add("faults not injected", self.fault_errors.len() as i64);
        add(
            "children exited by themselves",
            self.unexpected_exits.len() as i64,
        );
        add("partial commits", self.writers.partial_commits as i64);
        add("drain timed out", i64::from(self.drain_timeout.is_some()));
        add(
            "Kafka cluster replaced",
            i64::from(self.cluster_replaced.is_some()),
        );
        self.bad = bad;
    }

    pub(crate) fn passed(&self) -> bool {
        self.bad.is_empty()
    }

    /// The summary for people.
    pub(crate) fn print(&self) {
        let w = &self.writers;
        let a = &self.audit;
        println!();
        println!(
            "chaos run {} (seed {}), {} broker(s), {} partitions, {:.0} s",
            self.run, self.seed, self.brokers, self.partitions, self.seconds
        );
        println!(
            "messages: {} committed ({} transactions, {} long), {} rolled back, {} applied ({} applied-log rows)",
            a.committed,
            w.transactions,
            w.long_transactions,
            a.rolled_back,
            a.applied,
            a.applied_rows
        );
        println!(
            "writers:  {} transactions cut before commit, {} commits of unknown outcome ({} committed, {} not), {} reconnects",
            w.aborted,
            w.unknown_committed + w.unknown_not_committed + w.unresolved,
            w.unknown_committed,
            w.unknown_not_committed,
            w.reconnects
        );
        println!(
            "consumers: {} redeliveries caught by the inbox, {} handler retries",
            self.consumers.duplicates, self.consumers.retries
        );
        let faults: Vec<String> = self
            .faults
            .iter()
            .map(|(kind, n)| format!("{kind} {n}"))
            .collect();
        println!("faults:   {}", faults.join(", "));
        match &a.longest_recovery {
            Some(r) => println!(
                "longest from a fault's end to the next apply: {:.2} s (after {}: {})",
                r.seconds, r.kind, r.detail
            ),
            None => println!("longest from a fault's end to the next apply: -"),
        }
        for stop in &a.stopped_partitions {
            println!(
                "stopped partition {} at offset {}{}: {}",
                stop.partition,
                stop.offset,
                if stop.resumed { " (resumed)" } else { "" },
                stop.error
            );
        }
        for error in &self.fault_errors {
            println!("fault not injected: {}: {}", error.kind.name(), error.error);
        }
        for exit in &self.unexpected_exits {
            println!(
                "{} exited by itself: {} (log {})",
                exit.child,
                exit.status,
                exit.log.display()
            );
        }
        if let Some(why) = &self.drain_timeout {
            println!("drain:    {why}");
        }
        if let Some(ids) = &self.cluster_replaced {
            println!(
                "kafka:    the cluster was replaced during the run (cluster id {ids}): \
                 another process formatted it anew; the audit's figures are void"
            );
        }
        if self.interrupted {
            println!(
                "run:      interrupted (Ctrl-C or SIGTERM): the audit covers what was written"
            );
        }
        println!("logs:     {}", self.log_dir.display());
        if self.passed() {
            println!(
                "audit:    OK: lost 0, applied twice 0, applied from rolled back 0, order violations 0, outbox drained, tables equal, no stopped partition, no dead letter"
            );
        } else {
            let bad: Vec<String> = self.bad.iter().map(|(k, n)| format!("{k} {n}")).collect();
            println!("audit:    FAILED: {}", bad.join(", "));
        }
    }

    pub(crate) fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

/// Faults by kind as the report names them.
pub(crate) fn fault_counts(
    injected: &BTreeMap<FaultKind, u32>,
    handler_failures: Option<u64>,
) -> BTreeMap<String, u64> {
    let mut counts: BTreeMap<String, u64> = injected
        .iter()
        .map(|(k, n)| (k.name(), u64::from(*n)))
        .collect();
    if let Some(n) = handler_failures {
        counts.insert(FaultKind::HandlerFailure.name(), n);
    }
    counts
}

/// The progress line.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    started: Instant,
    last_plain: Instant,
}

impl Progress {
    pub(crate) fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            started: Instant::now(),
            last_plain: Instant::now(),
        }
    }

    pub(crate) fn show(&mut self, line: String) {
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None if self.last_plain.elapsed() >= Duration::from_secs(10) => {
                self.last_plain = Instant::now();
                eprintln!("[{:>5.0} s] {line}", self.started.elapsed().as_secs_f64());
            }
            None => {}
        }
    }

    /// A line above the progress line.
    pub(crate) fn say(&self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
