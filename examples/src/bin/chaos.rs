//! An audited chaos run of the outbox, relay and consumer: writers enqueue
//! creates, updates and destroys over many keys (some transactions rolled
//! back on purpose, some held open), two relay processes publish, a group
//! of two consumer processes applies through a `#[message_controller]`, and
//! a fault injector kills and restarts them, stops brokers, restarts
//! PostgreSQL, terminates sessions and makes handlers fail, at random
//! intervals drawn from `--seed`. Then an audit independent of the library's
//! bookkeeping compares what the producer committed with what the consumer
//! applied; any bad count exits 1.
//!
//! ```text
//! bash scripts/services.sh up            # or: up --brokers 3
//! cargo run -p outbox-examples --release --bin chaos -- --messages 100000 --seed 7
//! ```
//!
//! Its own database (`outbox_chaos`, reset at start) on the PostgreSQL of
//! `DATABASE_URL` (default: the services script's), its own topic per run;
//! the children's logs under `target/chaos/<run>/`. It stops and starts the
//! bench's services through `scripts/services.sh`: run one at a time, and
//! not beside tests that need the services.

// The modules live in chaos/ beside this file (a binary's root looks for
// them in src/bin/ otherwise).
#[path = "chaos/audit.rs"]
mod audit;
#[path = "chaos/children.rs"]
mod children;
#[path = "chaos/cli.rs"]
mod cli;
#[path = "chaos/faults.rs"]
mod faults;
#[path = "chaos/inspect.rs"]
mod inspect;
#[path = "chaos/kafka.rs"]
mod kafka;
#[path = "chaos/model.rs"]
mod model;
#[path = "chaos/processes.rs"]
mod processes;
#[path = "chaos/report.rs"]
mod report;
#[path = "chaos/setup.rs"]
mod setup;
#[path = "chaos/writers.rs"]
mod writers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use diesel::prelude::*;

use cli::{Child, Cli, RunArgs};
use faults::{FaultKind, Injector};
use model::{CONSUMER_SCHEMA, PRODUCER_SCHEMA};
use processes::{Processes, Role, Spec};
use report::{Progress, Summary};
use writers::Writers;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Relays and consumers the run starts.
const RELAYS: usize = 2;
const CONSUMERS: usize = 2;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.child {
        Some(Child::Relay(args)) => children::relay(args).await.map(|()| true),
        Some(Child::Consumer(args)) => children::consumer(args).await.map(|()| true),
        Some(Child::Inspect(args)) => {
            tokio::task::block_in_place(|| inspect::run(args)).map(|()| true)
        }
        None => run(cli.run).await,
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            let mut text = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            eprintln!("chaos: {text}");
            ExitCode::from(2)
        }
    }
}

/// The run; `Ok(false)` when the audit found a bad count.
async fn run(args: RunArgs) -> Result<bool, BoxError> {
    args.validate()?;
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(|| fastrand::u64(..));
    let run = format!("{}-seed{seed}", chrono::Utc::now().format("%Y%m%d-%H%M%S"));
    let exe = std::env::current_exe()?;
    let log_dir = match &args.log_dir {
        Some(dir) => dir.join(&run),
        // target/<profile>/chaos → target/chaos/<run>
        None => exe
            .parent()
            .and_then(|p| p.parent())
            .map(|target| target.join("chaos").join(&run))
            .unwrap_or_else(|| PathBuf::from("chaos").join(&run)),
    };
    std::fs::create_dir_all(&log_dir)?;
    println!(
        "chaos: run {run}, seed {seed}, logs in {}",
        log_dir.display()
    );

    // The cluster: every broker, as many as expected.
    let bootstrap = args.bootstrap.clone();
    let brokers = tokio::task::spawn_blocking(move || kafka::brokers(&bootstrap)).await??;
    if let Some(expected) = args.brokers
        && expected != brokers.len()
    {
        return Err(format!(
            "--brokers {expected}, but the cluster at {} has {} (start it with \
             `bash scripts/services.sh up --brokers {expected}`)",
            args.bootstrap,
            brokers.len()
        )
        .into());
    }
    let bootstrap = args.bootstrap.clone();
    let cluster_before = tokio::task::spawn_blocking(move || kafka::cluster_id(&bootstrap)).await?;
    let all_brokers = brokers
        .iter()
        .map(|b| b.address.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let kinds = match &args.faults {
        Some(kinds) => {
            if kinds.contains(&FaultKind::LeaderKill) && brokers.len() < 3 {
                return Err("leader-kill needs 3 brokers".into());
            }
            kinds.clone()
        }
        None => FaultKind::all(brokers.len()),
    };

    // The database and the topic, fresh.
    std::fs::create_dir_all(&log_dir)?;
    let server_url = args.database_url.clone();
    let database = args.database.clone();
    let run_url =
        tokio::task::spawn_blocking(move || setup::reset(&server_url, &database)).await??;
    let topic = format!("{}{run}", kafka::TOPIC_PREFIX);
    kafka::delete_earlier_topics(&all_brokers).await;
    kafka::create_topic(&all_brokers, &topic, args.partitions, brokers.len()).await?;
    let group = format!("outbox-chaos-{run}");
    println!(
        "chaos: database {} (schemas {PRODUCER_SCHEMA}, {CONSUMER_SCHEMA}), topic {topic} \
         ({} partitions, replication {}), {} broker(s): {all_brokers}",
        outbox_diesel::mask_password(&run_url),
        args.partitions,
        brokers.len(),
        brokers.len()
    );
    let mut audit_conn = PgConnection::establish(&setup::with_param(
        &run_url,
        "application_name",
        "chaos-audit",
    ))?;
    let clock_offset = database_clock(&mut audit_conn)? - chrono::Utc::now();

    // The children.
    let processes = Arc::new(Processes::new(exe, log_dir.clone(), seed));
    for i in 1..=RELAYS {
        let name = format!("relay-{i}");
        let url = setup::session_url(&run_url, PRODUCER_SCHEMA, &format!("chaos-{name}"));
        processes.add(Spec {
            role: Role::Relay,
            name,
            args: strings(&["relay", "--database-url", &url, "--brokers", &all_brokers]),
            env: Vec::new(),
        })?;
    }
    let handler_failures = kinds.contains(&FaultKind::HandlerFailure);
    let rate = if handler_failures {
        args.handler_failure_rate
    } else {
        0.0
    };
    for i in 1..=CONSUMERS {
        let name = format!("consumer-{i}");
        let url = setup::session_url(&run_url, CONSUMER_SCHEMA, &format!("chaos-{name}"));
        processes.add(Spec {
            role: Role::Consumer,
            name: name.clone(),
            args: strings(&[
                "consumer",
                "--database-url",
                &url,
                "--brokers",
                &all_brokers,
                "--group",
                &group,
                "--topic",
                &topic,
                "--name",
                &name,
                "--handler-failure-rate",
                &rate.to_string(),
            ]),
            env: vec![("OUTBOX_FAULT_INJECTION".into(), "on".into())],
        })?;
    }

    // Writers, injector, supervisor, progress.
    let writers = Arc::new(Writers {
        url: setup::with_param(
            &run_url,
            "options",
            &format!("-c search_path={PRODUCER_SCHEMA}"),
        ),
        topic: topic.clone(),
        keys: args.keys,
        rate_each: args.rate as f64 / args.writers as f64,
        counts: Default::default(),
        rolled_back: Mutex::new(Vec::new()),
        stop: AtomicBool::new(false),
        log: Mutex::new(std::fs::File::create(log_dir.join("writers.log"))?),
    });
    let mut writer_tasks = tokio::task::JoinSet::new();
    for i in 0..args.writers {
        let writers = Arc::clone(&writers);
        let writer_seed = seed ^ (0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(i as u64 + 1));
        writer_tasks.spawn(async move { writers.run(i, writer_seed).await });
    }
    let applied_rows_seen = Arc::new(AtomicI64::new(0));
    let injector = Arc::new(Injector {
        kinds: kinds.clone(),
        interval: args.fault_interval(),
        min_per_kind: args.min_faults,
        processes: Arc::clone(&processes),
        services_script: args.services_script.clone(),
        brokers: brokers.clone(),
        bootstrap: all_brokers.clone(),
        topic: topic.clone(),
        partitions: args.partitions,
        database_url: setup::with_param(&run_url, "application_name", "chaos-injector"),
        clock_offset,
        log: Mutex::new(std::fs::File::create(log_dir.join("faults.log"))?),
        done: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        finishing: AtomicBool::new(false),
        interrupted: AtomicBool::new(false),
        current: Mutex::new(Vec::new()),
        applied: Arc::clone(&applied_rows_seen),
    });
    let injecting = tokio::spawn(Arc::clone(&injector).run(seed.rotate_left(17)));
    // Ctrl-C or SIGTERM ends the run early and still audits it: the faults in
    // progress end, the writers stop, the flow drains.
    let interrupted = {
        let injector = Arc::clone(&injector);
        tokio::spawn(async move {
            let Ok(mut terminate) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            else {
                return;
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            injector.interrupted.store(true, Ordering::Relaxed);
            eprintln!(
                "chaos: interrupted: ending the faults in progress, then draining and auditing"
            );
        })
    };
    let supervising = {
        let processes = Arc::clone(&processes);
        tokio::spawn(async move {
            loop {
                processes.watch();
                processes.scrape().await;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };
    let mut progress = Progress::new();
    let monitor_url = setup::with_param(&run_url, "application_name", "chaos-monitor");
    let mut monitor: Option<PgConnection> = None;
    let mut applied = 0;
    let status = |applied: i64, phase: &str| {
        let w = writers.counts.summary();
        let faults: u32 = injector.counts().values().sum();
        let now: Vec<String> = injector
            .current
            .lock()
            .map(|c| c.iter().map(|k| k.name()).collect())
            .unwrap_or_default();
        format!(
            "{phase}: committed {}/{} · applied {applied} · rolled back {} · faults {faults}{} · handler failures {}",
            w.committed,
            args.messages,
            w.rolled_back,
            if now.is_empty() {
                String::new()
            } else {
                format!(" (now: {})", now.join(", "))
            },
            processes.scraped().handler_failures
        )
    };

    // Writing: until the messages (or seconds) are done, then until every
    // fault kind has its minimum.
    let deadline = args.seconds.map(Duration::from_secs);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        applied = applied_rows(&mut monitor, &monitor_url).unwrap_or(applied);
        applied_rows_seen.store(applied, Ordering::Relaxed);
        progress.show(status(applied, "writing"));
        let committed = writers.counts.committed.load(Ordering::Relaxed);
        if committed >= args.messages || deadline.is_some_and(|d| started.elapsed() >= d) {
            injector.finishing.store(true, Ordering::Relaxed);
        }
        if injecting.is_finished() {
            break;
        }
    }
    writers.stop.store(true, Ordering::Relaxed);
    while writer_tasks.join_next().await.is_some() {}
    progress.say(&format!(
        "chaos: writers stopped after {:.0} s; draining",
        started.elapsed().as_secs_f64()
    ));

    // Draining: every committed message applied, the outbox empty.
    let drain_started = Instant::now();
    let drain_timeout = Duration::from_secs(args.drain_timeout);
    let drain_result = loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        applied = applied_rows(&mut monitor, &monitor_url).unwrap_or(applied);
        let backlog = backlog(&mut monitor, &monitor_url);
        let (missing, outbox) = backlog.unwrap_or((-1, -1));
        progress.show(format!(
            "{} · not applied yet {missing} · outbox rows {outbox}",
            status(applied, "draining")
        ));
        if missing == 0 && outbox == 0 {
            break None;
        }
        if drain_started.elapsed() > drain_timeout {
            break Some(format!(
                "not drained after {drain_timeout:?}: {missing} committed message(s) not applied, \
                 {outbox} outbox row(s) left"
            ));
        }
    };
    supervising.abort();
    interrupted.abort();
    processes.stop_all(Duration::from_secs(30)).await;
    progress.finish();

    // The audit.
    let cluster_after = {
        let brokers = all_brokers.clone();
        tokio::task::spawn_blocking(move || kafka::cluster_id(&brokers)).await?
    };
    let cluster_replaced = (cluster_before != cluster_after)
        .then(|| format!("{cluster_before:?} at the start, {cluster_after:?} at the end"));
    let dead_letters = {
        let (brokers, topic) = (all_brokers.clone(), topic.clone());
        tokio::task::spawn_blocking(move || kafka::dead_letters(&brokers, &topic)).await??
    };
    let rolled_back = writers
        .rolled_back
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let faults = injector
        .done
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut audit_conn = PgConnection::establish(&setup::with_param(
        &run_url,
        "application_name",
        "chaos-audit",
    ))?;
    let audit = audit::run(&mut audit_conn, &rolled_back, &faults, dead_letters)?;
    let scraped = processes.scraped();
    let mut summary = Summary {
        seed,
        run,
        brokers: brokers.len(),
        partitions: args.partitions,
        topic,
        log_dir,
        seconds: started.elapsed().as_secs_f64(),
        writers: writers.counts.summary(),
        faults: report::fault_counts(
            &injector.counts(),
            handler_failures.then_some(scraped.handler_failures),
        ),
        fault_errors: injector
            .errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        consumers: scraped,
        unexpected_exits: processes.unexpected_exits(),
        drain_timeout: drain_result,
        cluster_replaced,
        interrupted: injector.interrupted.load(Ordering::Relaxed),
        audit,
        bad: Default::default(),
    };
    summary.judge();
    summary.print();
    if let Some(path) = &args.report {
        summary.write_json(path)?;
        println!("report:   {}", path.display());
    }
    Ok(summary.passed())
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

#[derive(QueryableByName)]
struct Now {
    #[diesel(sql_type = diesel::sql_types::Timestamptz)]
    now: chrono::DateTime<chrono::Utc>,
}

/// The database's clock, which fault ends and applies are measured on.
fn database_clock(conn: &mut PgConnection) -> QueryResult<chrono::DateTime<chrono::Utc>> {
    diesel::sql_query("SELECT clock_timestamp() AS now")
        .get_result::<Now>(conn)
        .map(|n| n.now)
}

/// `f` on the monitor's session, made again after an error (PostgreSQL
/// restarts under it).
fn on_monitor<T>(
    monitor: &mut Option<PgConnection>,
    url: &str,
    f: impl FnOnce(&mut PgConnection) -> QueryResult<T>,
) -> Option<T> {
    // Blocking queries: off the runtime's workers' duty while they run.
    tokio::task::block_in_place(|| {
        if monitor.is_none() {
            *monitor = PgConnection::establish(url).ok();
        }
        let result = f(monitor.as_mut()?);
        if result.is_err() {
            *monitor = None;
        }
        result.ok()
    })
}

fn applied_rows(monitor: &mut Option<PgConnection>, url: &str) -> Option<i64> {
    on_monitor(monitor, url, audit::applied_rows)
}

fn backlog(monitor: &mut Option<PgConnection>, url: &str) -> Option<(i64, i64)> {
    on_monitor(monitor, url, audit::backlog)
}
