//! A relay run: a relay on a backlog until it has published it, measured.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Text;
use outbox::kafka::KafkaPublisher;
use outbox::{OutgoingRecord, Publisher};
use outbox_diesel::{Relay, RelayReport};

use crate::backlog::count_rows;
use crate::common::cpu::pid_cpu;
use crate::common::db::pg;
use crate::common::report::group;
use crate::cpu::{CpuUse, cpu_snapshot};
use crate::instrument::{Instrumented, STATS, instant_of, now_ns, reset_stats};

/// A relay that publishes nothing for this long is reported as hung.
const STALL: Duration = Duration::from_secs(30);

/// A `KafkaPublisher` as the relay gets it, connected: one record sent and acknowledged.
pub(crate) async fn kafka_publisher(brokers: &str, topic: &str) -> KafkaPublisher {
    let publisher = KafkaPublisher::new(brokers).expect("Kafka publisher");
    let headers: [(&str, &str); 0] = [];
    let warm = OutgoingRecord {
        topic,
        key: b"warmup",
        headers: &headers,
        value: b"{}",
    };
    publisher
        .send(&warm)
        .expect("send a warm-up record")
        .await
        .expect("warm-up record acknowledged");
    publisher
}

/// What a relay run measured.
pub(crate) struct DrainRun {
    pub(crate) secs: f64,
    pub(crate) published: u64,
    /// Stopped at the time limit before the backlog was drained.
    pub(crate) capped: bool,
    /// From `run` to the first record handed to the publisher.
    startup: f64,
    pub(crate) batches: u64,
    /// Mean of `outbox_relay_batch_seconds`.
    pub(crate) batch_mean: f64,
    /// Time inside the publisher's `send`, per record.
    pub(crate) send_us: f64,
    pub(crate) cpu: CpuUse,
    pub(crate) report: Option<RelayReport>,
    pub(crate) left: i64,
    pub(crate) problem: Option<String>,
    /// Table and index blocks PostgreSQL touched during the run (hits and
    /// reads, from `pg_statio_user_tables`).
    blocks: Blocks,
}

/// Blocks touched in `outbox_messages`: its heap, and its indexes.
#[derive(Clone, Copy, Default)]
struct Blocks {
    heap: i64,
    index: i64,
}

/// The blocks touched so far in the `outbox_messages` of the schema at `url`.
fn blocks(url: &str) -> Blocks {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        heap: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        index: i64,
    }
    diesel::sql_query(
        "SELECT (coalesce(heap_blks_hit, 0) + coalesce(heap_blks_read, 0))::int8 AS heap, \
                (coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0))::int8 AS index \
         FROM pg_statio_user_tables WHERE relid = 'outbox_messages'::regclass",
    )
    .get_result::<Row>(&mut pg(url))
    .map_or(Blocks::default(), |r| Blocks {
        heap: r.heap,
        index: r.index,
    })
}

impl DrainRun {
    pub(crate) fn rate(&self) -> f64 {
        self.published as f64 / self.secs
    }

    pub(crate) fn describe(&self) -> String {
        let capped = if self.capped {
            format!(" CAPPED: {} rows in", group(self.published as f64))
        } else {
            String::new()
        };
        format!(
            "{capped}{:.2} s, {} batches (mean outbox_relay_batch_seconds {:.2} ms), start-up {:.0} ms, send {:.2} us/record\n      {}\n      PG blocks touched per 1k msgs: table {:.0}, indexes {:.0}",
            self.secs,
            self.batches,
            self.batch_mean * 1e3,
            self.startup * 1e3,
            self.send_us,
            self.cpu.describe(self.published as usize),
            self.blocks.heap as f64 * 1e3 / self.published.max(1) as f64,
            self.blocks.index as f64 * 1e3 / self.published.max(1) as f64,
        )
    }
}

static RUNS: AtomicU64 = AtomicU64::new(0);

/// The PostgreSQL backend serving the session named `application`.
pub(crate) fn backend_pid(server_url: &str, application: &str) -> Option<u32> {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE application_name = $1 LIMIT 1")
        .bind::<Text, _>(application)
        .get_result::<Pid>(&mut pg(server_url))
        .ok()
        .map(|p| p.pid as u32)
}

/// The PostgreSQL backends serving the sessions named `application` (a relay
/// has two: its own, and its gauges').
fn backend_pids(server_url: &str, application: &str) -> Vec<u32> {
    #[derive(QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    diesel::sql_query("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
        .bind::<Text, _>(application)
        .load::<Pid>(&mut pg(server_url))
        .map(|pids| pids.into_iter().map(|p| p.pid as u32).collect())
        .unwrap_or_default()
}

/// Runs a relay on the schema at `url` until it has published `rows` rows (or
/// `limit` has passed); the time is from `run` to the published counter
/// reaching `rows`. With `registry`, the relay resolves Avro values' schema ids in it.
pub(crate) async fn relay_drain<P>(
    url: &str,
    publisher: P,
    batch: usize,
    rows: u64,
    broker: Option<u32>,
    limit: Duration,
    registry: Option<outbox_diesel::registry::SchemaRegistry>,
) -> DrainRun
where
    P: Publisher,
    P::Ack: Unpin,
{
    reset_stats(rows, false);
    let application = format!(
        "outbox_bench_{}_{}",
        std::process::id(),
        RUNS.fetch_add(1, Relaxed)
    );
    let relay_url = format!("{url}&application_name={application}");
    let mut builder = Relay::builder(relay_url, Instrumented(publisher)).batch_size(batch);
    // Relay defaults unless asked for (to explore the window).
    let in_flight = crate::common::env::env_or("OUTBOX_BENCH_IN_FLIGHT", 0usize);
    if in_flight > 0 {
        builder = builder.batches_in_flight(in_flight);
    }
    if let Some(registry) = registry {
        builder = builder.schema_registry(registry);
    }
    let relay = builder.build().expect("relay settings");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let blocks_before = {
        let url = url.to_owned();
        tokio::task::spawn_blocking(move || blocks(&url))
            .await
            .unwrap_or_default()
    };
    let cpu_before = cpu_snapshot(broker);
    let start = Instant::now();
    let start_ns = now_ns();
    let running = tokio::spawn(relay.run(async move {
        stopped.await.ok();
    }));
    let mut problem = None;
    let mut last = 0;
    let mut last_change = Instant::now();
    let mut backends = Vec::new();
    let mut lookups = 0;
    let mut capped = false;
    loop {
        tokio::time::sleep(Duration::from_millis(1)).await;
        let published = STATS.published.load(Relaxed);
        // Once the relay has a session, find its backends (a few tries at most).
        if backends.len() < 2 && published > 0 && lookups < 5 {
            lookups += 1;
            let (url, application) = (url.to_owned(), application.clone());
            backends = tokio::task::spawn_blocking(move || backend_pids(&url, &application))
                .await
                .unwrap_or_default();
        }
        if published >= rows {
            break;
        }
        if start.elapsed() > limit {
            capped = true;
            break;
        }
        if running.is_finished() {
            problem = Some(format!(
                "the relay stopped by itself after {published} rows"
            ));
            break;
        }
        if published != last {
            last = published;
            last_change = Instant::now();
        } else if last_change.elapsed() > STALL {
            problem = Some(format!(
                "hung: {published} of {rows} rows published, nothing for {STALL:?} ({} failed attempts)",
                STATS.failed.load(Relaxed)
            ));
            break;
        }
    }
    // The backends still there: the gauges' session may have ended already
    // (its few queries are left out rather than losing the relay's own).
    let backend_cpu = (!backends.is_empty())
        .then(|| backends.iter().filter_map(|pid| pid_cpu(*pid)).sum::<f64>());
    let cpu = CpuUse::between(&cpu_before, &cpu_snapshot(broker), backend_cpu);
    let reached = STATS.reached_at.load(Relaxed);
    let secs = if reached == 0 {
        start.elapsed().as_secs_f64()
    } else {
        instant_of(reached).duration_since(start).as_secs_f64()
    };
    let s = &*STATS;
    let published = s.published.load(Relaxed).min(rows);
    let batches = s.batches.load(Relaxed);
    let first_send = s.first_send.load(Relaxed);
    let startup = first_send.saturating_sub(start_ns) as f64 / 1e9;
    let batch_mean = s.batch_ns.load(Relaxed) as f64 / 1e9 / batches.max(1) as f64;
    let send_us = s.send_ns.load(Relaxed) as f64 / 1e3 / s.sends.load(Relaxed).max(1) as f64;
    let _ = stop.send(());
    let report = match tokio::time::timeout(Duration::from_secs(60), running).await {
        Ok(Ok(Ok(report))) => Some(report),
        Ok(Ok(Err(e))) => {
            problem.get_or_insert(format!("the relay returned an error: {e}"));
            None
        }
        Ok(Err(e)) => {
            problem.get_or_insert(format!("the relay panicked: {e}"));
            None
        }
        Err(_) => {
            problem.get_or_insert("the relay did not stop within 60 s of shutdown".into());
            None
        }
    };
    let url = url.to_owned();
    let (left, blocks_after) = tokio::task::spawn_blocking(move || {
        // The relay's session has ended: its statistics are flushed as it exits.
        std::thread::sleep(Duration::from_millis(300));
        let blocks = blocks(&url);
        (count_rows(&url), blocks)
    })
    .await
    .unwrap_or((-1, Blocks::default()));
    let blocks = Blocks {
        heap: blocks_after.heap - blocks_before.heap,
        index: blocks_after.index - blocks_before.index,
    };
    if problem.is_none() && !capped {
        if left != 0 {
            problem = Some(format!(
                "{left} rows left in the table after {rows} were counted published"
            ));
        } else if let Some(r) = &report
            && r.published != rows
        {
            problem = Some(format!(
                "report says {} published, expected {rows}",
                r.published
            ));
        }
    }
    DrainRun {
        secs,
        published,
        capped,
        startup,
        batches,
        batch_mean,
        send_us,
        cpu,
        report,
        left,
        problem,
        blocks,
    }
}
