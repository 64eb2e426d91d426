//! The `memory` part: the relay alone in a child process (this binary run
//! again), its peak RSS.

use std::io::Write as _;
use std::process::Command;
use std::time::Duration;

use outbox::Outboxed;

use crate::Bench;
use crate::backlog::backlog;
use crate::common::report::group;
use crate::common::results::Figure;
use crate::instrument::RECORDER;
use crate::model::Order;
use crate::run::{kafka_publisher, relay_drain};

fn vm_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

impl Bench {
    pub(crate) fn memory(&mut self) {
        let rows = self.config.rows;
        println!(
            "\n== memory: the relay alone in a child process, batch 1000, {} rows ==",
            group(rows as f64)
        );
        let schema = self.db.schema("mem");
        backlog(&schema.url, rows, self.config.analyze);
        let exe = std::env::current_exe().expect("this benchmark's path");
        let output = Command::new(exe)
            .args(["--child-drain", &schema.url, "1000", &rows.to_string()])
            .output()
            .expect("run the child relay");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().find(|l| l.starts_with("CHILD "));
        let Some(line) = line else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            self.summary
                .problems
                .push(format!("memory: the child failed: {stdout}{stderr}"));
            self.db.drop_schema(&schema);
            return;
        };
        println!("{line}");
        let field = |name: &str| -> f64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok())
                .unwrap_or(f64::NAN)
        };
        let (start, ready, end, secs) = (
            field("hwm_start_kb"),
            field("hwm_ready_kb"),
            field("hwm_end_kb"),
            field("secs"),
        );
        if let Some(problem) = line.split("problem=").nth(1) {
            self.summary
                .problems
                .push(format!("memory child: {problem}"));
        }
        let mb = |kb: f64| kb / 1024.0;
        Figure::new(
            "relay",
            "memory",
            "relay (child draining, batch 1000)",
            "peak RSS (VmHWM)",
            "MiB",
        )
        .value(mb(end))
        .lower_is_better()
        .against("limit 50 MiB", &[50.0])
        .target_at_most(1.0)
        .record();
        Figure::new(
            "relay",
            "memory",
            "before the relay ran",
            "peak RSS (VmHWM)",
            "MiB",
        )
        .value(mb(ready))
        .lower_is_better()
        .record();
        self.summary.check(
            "relay memory: peak RSS (VmHWM) of a child draining",
            format!("{:.1} MB", mb(end)),
            "<= 50 MB",
            mb(end) <= 50.0,
        );
        self.summary.add(
            "  of which before the relay ran (runtime + publisher)",
            format!("{:.1} MB (at start {:.1} MB)", mb(ready), mb(start)),
        );
        self.summary.add(
            "  child's drain rate at batch 1000",
            format!("{} msg/s", group(rows as f64 / secs)),
        );
        self.db.drop_schema(&schema);
    }
}

/// The memory part's child: drains the backlog at `url` and prints its VmHWM.
pub(crate) fn child_drain(args: &[String]) {
    let [url, batch, rows] = args else {
        panic!("usage: --child-drain <url> <batch> <rows>");
    };
    let batch: usize = batch.parse().expect("batch");
    let rows: u64 = rows.parse().expect("rows");
    RECORDER.install();
    let hwm_start = vm_kb("VmHWM");
    let runtime = crate::common::runtime();
    let brokers = crate::common::env::brokers();
    let (hwm_ready, run) = runtime.block_on(async {
        let publisher = kafka_publisher(&brokers, Order::TOPIC).await;
        let ready = vm_kb("VmHWM");
        let limit = Duration::from_secs(600);
        (
            ready,
            relay_drain(url, publisher, batch, rows, None, limit, None).await,
        )
    });
    let problem = run
        .problem
        .map(|p| format!(" problem={p}"))
        .unwrap_or_default();
    println!(
        "CHILD hwm_start_kb={hwm_start} hwm_ready_kb={hwm_ready} hwm_end_kb={} rss_end_kb={} secs={:.3} batches={}{problem}",
        vm_kb("VmHWM"),
        vm_kb("VmRSS"),
        run.secs,
        run.batches
    );
    std::io::stdout().flush().ok();
}
