//! The fault injector: at random intervals (from the seed) it injects the
//! next fault of a shuffled round of every kind, so each kind comes equally
//! often in a random order. Faults on different things overlap (a relay is
//! killed while a broker is down); two on the same thing (the brokers,
//! PostgreSQL, the relays, the consumers) wait for each other.
//!
//! Brokers and PostgreSQL are stopped and started through the services
//! script (`kafka-node stop N --signal TERM|KILL`, `kafka-node start N`,
//! `postgres restart fast|immediate`).

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::ValueEnum;
use diesel::QueryableByName;
use diesel::sql_types::{BigInt, Text};
use serde::Serialize;

use super::kafka::{self, Broker};
use super::processes::{Processes, Role};

/// A kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum FaultKind {
    /// SIGKILL a relay process, start it again.
    RelayKill,
    /// SIGKILL a consumer process (mostly between its database commit and
    /// its offset commit), start it again.
    ConsumerKill,
    /// Stop a broker with SIGTERM for a few seconds.
    BrokerStopTerm,
    /// Stop a broker with SIGKILL for a few seconds.
    BrokerStopKill,
    /// Restart PostgreSQL with a fast shutdown.
    PgRestartFast,
    /// Restart PostgreSQL with an immediate shutdown (crash recovery).
    PgRestartImmediate,
    /// `pg_terminate_backend` every session of the relays.
    TerminateRelaySessions,
    /// `pg_terminate_backend` every session of the consumers.
    TerminateConsumerSessions,
    /// The consumers' handlers fail transiently (the library's fault
    /// injection, all along; counted from the consumers' metrics).
    HandlerFailure,
    /// SIGKILL the broker leading a partition of the run's topic (3 brokers).
    LeaderKill,
}

impl FaultKind {
    /// Every kind that applies to a cluster of `brokers`.
    pub(crate) fn all(brokers: usize) -> Vec<FaultKind> {
        FaultKind::value_variants()
            .iter()
            .copied()
            .filter(|k| *k != FaultKind::LeaderKill || brokers >= 3)
            .collect()
    }

    /// The name on the command line and in the report.
    pub(crate) fn name(self) -> String {
        self.to_possible_value()
            .map(|v| v.get_name().to_owned())
            .unwrap_or_default()
    }

    /// What the fault acts on: faults on one thing run one at a time.
    fn resource(self) -> usize {
        match self {
            FaultKind::RelayKill => 0,
            FaultKind::ConsumerKill => 1,
            FaultKind::BrokerStopTerm | FaultKind::BrokerStopKill | FaultKind::LeaderKill => 2,
            FaultKind::PgRestartFast
            | FaultKind::PgRestartImmediate
            | FaultKind::TerminateRelaySessions
            | FaultKind::TerminateConsumerSessions => 3,
            FaultKind::HandlerFailure => 4,
        }
    }
}

/// One fault injected: what, on what, and when (on the database's clock).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Fault {
    pub(crate) kind: FaultKind,
    pub(crate) detail: String,
    pub(crate) started_at: DateTime<Utc>,
    pub(crate) ended_at: DateTime<Utc>,
}

/// A fault that could not be injected (the run's claims need every one).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FaultError {
    pub(crate) kind: FaultKind,
    pub(crate) error: String,
}

/// What the injector needs and what it records.
pub(crate) struct Injector {
    pub(crate) kinds: Vec<FaultKind>,
    pub(crate) interval: (Duration, Duration),
    pub(crate) min_per_kind: u32,
    pub(crate) processes: Arc<Processes>,
    pub(crate) services_script: PathBuf,
    pub(crate) brokers: Vec<Broker>,
    /// Every broker's address, for metadata requests while one is down.
    pub(crate) bootstrap: String,
    pub(crate) topic: String,
    pub(crate) partitions: i32,
    /// The run's database (sessions are found there).
    pub(crate) database_url: String,
    /// Database clock minus this machine's.
    pub(crate) clock_offset: chrono::TimeDelta,
    pub(crate) log: Mutex<File>,
    pub(crate) done: Mutex<Vec<Fault>>,
    pub(crate) errors: Mutex<Vec<FaultError>>,
    /// Set when writing may stop: finish the minimum of each kind, then return.
    pub(crate) finishing: AtomicBool,
    /// Set by Ctrl-C or SIGTERM: return once the faults in progress have
    /// ended, whether each kind has its minimum or not.
    pub(crate) interrupted: AtomicBool,
    /// A fault in progress, for the progress line.
    pub(crate) current: Mutex<Vec<FaultKind>>,
    /// Rows of the applied log, as last counted by the run: faults start once
    /// the flow moves, and the next fault on the same thing waits until the
    /// flow has moved again after the last one (or [`RECOVERY_PATIENCE`]).
    pub(crate) applied: Arc<AtomicI64>,
}

/// How long a fault's target waits for the flow to move again before the
/// next fault on it (the run goes on regardless; the report's longest
/// recovery says how long it took).
const RECOVERY_PATIENCE: Duration = Duration::from_secs(60);

impl Injector {
    /// Faults injected so far, by kind (the injected kinds only).
    pub(crate) fn counts(&self) -> BTreeMap<FaultKind, u32> {
        let mut counts: BTreeMap<FaultKind, u32> = self
            .kinds
            .iter()
            .filter(|k| **k != FaultKind::HandlerFailure)
            .map(|k| (*k, 0))
            .collect();
        for fault in self.done.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            *counts.entry(fault.kind).or_default() += 1;
        }
        counts
    }

    /// Every kind has its minimum (a kind that failed to inject 3 times is
    /// given up on: the errors fail the run anyway).
    fn enough(&self) -> bool {
        let errors = self
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.counts().iter().all(|(kind, n)| {
            *n >= self.min_per_kind || errors.iter().filter(|e| e.kind == *kind).count() >= 3
        })
    }

    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.clock_offset
    }

    fn note(&self, line: &str) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(log, "{} {line}", Utc::now().to_rfc3339());
    }

    /// Injects faults until [`finishing`](Self::finishing) is set and every
    /// kind has its minimum; returns once every fault has ended.
    pub(crate) async fn run(self: Arc<Self>, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let active: Vec<FaultKind> = self
            .kinds
            .iter()
            .copied()
            .filter(|k| *k != FaultKind::HandlerFailure)
            .collect();
        if active.is_empty() {
            return;
        }
        // The chaos starts on a flowing system: the consumers joined, the
        // first messages through.
        self.flow_moved(0, Duration::from_secs(120)).await;
        let locks: Vec<Arc<tokio::sync::Mutex<()>>> = (0..5)
            .map(|_| Arc::new(tokio::sync::Mutex::new(())))
            .collect();
        let mut round: VecDeque<FaultKind> = VecDeque::new();
        let mut running = tokio::task::JoinSet::new();
        let (low, high) = self.interval;
        loop {
            let wait = rng.u64(low.as_millis() as u64..=high.as_millis() as u64);
            tokio::time::sleep(Duration::from_millis(wait)).await;
            while running.try_join_next().is_some() {}
            if self.interrupted.load(Ordering::Relaxed)
                || (self.finishing.load(Ordering::Relaxed) && self.enough())
            {
                break;
            }
            if round.is_empty() {
                let mut kinds = active.clone();
                rng.shuffle(&mut kinds);
                round.extend(kinds);
            }
            // The first of the round whose target is free; none: wait.
            let Some((position, guard)) = round.iter().enumerate().find_map(|(i, kind)| {
                Arc::clone(&locks[kind.resource()])
                    .try_lock_owned()
                    .ok()
                    .map(|guard| (i, guard))
            }) else {
                continue;
            };
            let kind = round.remove(position).expect("a position in the round");
            let draw = rng.u64(..);
            let injector = Arc::clone(&self);
            running.spawn(async move {
                injector.inject(kind, draw).await;
                // Its target recovers before its next fault.
                let mark = injector.applied.load(Ordering::Relaxed);
                injector.flow_moved(mark, RECOVERY_PATIENCE).await;
                drop(guard);
            });
        }
        while running.join_next().await.is_some() {}
    }

    /// Waits until the applied log has more than `mark` rows, at most `patience`.
    async fn flow_moved(&self, mark: i64, patience: Duration) {
        let started = std::time::Instant::now();
        while self.applied.load(Ordering::Relaxed) <= mark && started.elapsed() < patience {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn inject(&self, kind: FaultKind, draw: u64) {
        let mut rng = fastrand::Rng::with_seed(draw);
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(kind);
        let started_at = self.now();
        self.note(&format!("{} starts", kind.name()));
        let result = self.act(kind, &mut rng).await;
        let ended_at = self.now();
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k| *k != kind);
        match result {
            Ok(detail) => {
                self.note(&format!("{} ended: {detail}", kind.name()));
                self.done
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(Fault {
                        kind,
                        detail,
                        started_at,
                        ended_at,
                    });
            }
            Err(error) => {
                self.note(&format!("{} FAILED: {error}", kind.name()));
                self.errors
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(FaultError { kind, error });
            }
        }
    }

    async fn act(&self, kind: FaultKind, rng: &mut fastrand::Rng) -> Result<String, String> {
        let outage = Duration::from_millis(rng.u64(2000..=5000));
        match kind {
            FaultKind::RelayKill | FaultKind::ConsumerKill => {
                let role = if kind == FaultKind::RelayKill {
                    Role::Relay
                } else {
                    Role::Consumer
                };
                let names = self.processes.names(role);
                let name = names
                    .get(rng.usize(..names.len().max(1)))
                    .ok_or("no such child")?;
                let pause = Duration::from_millis(rng.u64(0..=1000));
                self.processes
                    .kill_and_restart(name, pause)
                    .await
                    .map_err(|e| format!("{name}: {e}"))?;
                Ok(format!("{name} killed, started again after {pause:?}"))
            }
            FaultKind::BrokerStopTerm | FaultKind::BrokerStopKill => {
                let signal = if kind == FaultKind::BrokerStopTerm {
                    "TERM"
                } else {
                    "KILL"
                };
                let node = self.brokers[rng.usize(..self.brokers.len())].id;
                self.stop_broker(node, signal, outage).await?;
                Ok(format!("node {node} stopped (SIG{signal}) for {outage:?}"))
            }
            FaultKind::LeaderKill => {
                let partition = rng.i32(0..self.partitions);
                let (bootstrap, topic) = (self.bootstrap.clone(), self.topic.clone());
                let node = tokio::task::spawn_blocking(move || {
                    kafka::leader(&bootstrap, &topic, partition)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
                self.stop_broker(node, "KILL", outage).await?;
                Ok(format!(
                    "node {node}, leader of partition {partition}, killed for {outage:?}"
                ))
            }
            FaultKind::PgRestartFast | FaultKind::PgRestartImmediate => {
                let mode = if kind == FaultKind::PgRestartFast {
                    "fast"
                } else {
                    "immediate"
                };
                self.script(&["postgres", "restart", mode]).await?;
                Ok(format!("restarted ({mode})"))
            }
            FaultKind::TerminateRelaySessions => self.terminate("chaos-relay-%").await,
            FaultKind::TerminateConsumerSessions => self.terminate("chaos-consumer-%").await,
            FaultKind::HandlerFailure => Err("injected by the consumers themselves".into()),
        }
    }

    /// Stops broker `node` with `signal`, waits `outage`, starts it again.
    async fn stop_broker(&self, node: i32, signal: &str, outage: Duration) -> Result<(), String> {
        let node = node.to_string();
        let stopped = self
            .script(&["kafka-node", "stop", &node, "--signal", signal])
            .await;
        if stopped.is_ok() {
            tokio::time::sleep(outage).await;
        }
        // Started again whatever the stop said: the run leaves it running.
        let started = self.script(&["kafka-node", "start", &node]).await;
        stopped.and(started)
    }

    /// Runs the services script with `args`; its output goes to the log.
    async fn script(&self, args: &[&str]) -> Result<(), String> {
        let mut command = Command::new("bash");
        command
            .arg(&self.services_script)
            .args(args)
            .stdin(Stdio::null());
        let line = format!("services.sh {}", args.join(" "));
        self.note(&format!("running {line}"));
        let output = tokio::task::spawn_blocking(move || command.output())
            .await
            .map_err(|e| format!("{line}: {e}"))?
            .map_err(|e| format!("{line}: {e}"))?;
        {
            let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
            let _ = log.write_all(&output.stdout);
            let _ = log.write_all(&output.stderr);
        }
        if output.status.success() {
            Ok(())
        } else {
            let said = String::from_utf8_lossy(&output.stderr);
            Err(format!(
                "{line}: {} ({})",
                output.status,
                said.lines().last().unwrap_or("")
            ))
        }
    }

    /// Terminates the sessions whose `application_name` is like `pattern`
    /// (tries for a few seconds: a child just started has none yet).
    async fn terminate(&self, pattern: &str) -> Result<String, String> {
        use diesel_async::RunQueryDsl as _;
        #[derive(QueryableByName)]
        struct Terminated {
            #[diesel(sql_type = BigInt)]
            terminated: i64,
        }
        let mut last_error = String::from("no session found");
        for _ in 0..40 {
            let result = async {
                let mut conn = outbox_diesel::establish(&self.database_url)
                    .await
                    .map_err(|e| e.to_string())?;
                diesel::sql_query(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) AS terminated \
                     FROM pg_stat_activity \
                     WHERE datname = current_database() AND application_name LIKE $1 \
                     AND pid <> pg_backend_pid()",
                )
                .bind::<Text, _>(pattern)
                .get_result::<Terminated>(&mut conn)
                .await
                .map(|t| t.terminated)
                .map_err(|e| e.to_string())
            }
            .await;
            match result {
                Ok(n) if n > 0 => return Ok(format!("{n} session(s) terminated")),
                Ok(_) => {}
                Err(error) => last_error = error,
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        Err(format!("sessions like {pattern}: {last_error}"))
    }
}
