//! The chaos run at CI's size, on the default one-broker bench: a few
//! thousand messages while every fault kind is injected at least twice; the
//! run must exit 0 and its report must show every bad count at 0 and every
//! fault kind injected.
//!
//! It stops the broker and restarts PostgreSQL on purpose, so it lives alone
//! in this test binary, and it brings the services back up when it ends,
//! passed or failed (`scripts/services.sh up`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The fixed seed of CI's run: a failure reproduces with the same choices.
const SEED: &str = "13";
/// How long the run may take in a debug build before the test gives up.
const PATIENCE: Duration = Duration::from_secs(600);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the examples crate sits in the workspace")
        .to_path_buf()
}

/// Runs `scripts/services.sh up` when dropped: whatever the run did to the
/// services, and however the test ends, the next test finds them up.
struct ServicesBackUp;

impl Drop for ServicesBackUp {
    fn drop(&mut self) {
        let status = Command::new("bash")
            .arg(workspace().join("scripts/services.sh"))
            .arg("up")
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            eprintln!("warning: `scripts/services.sh up` after the chaos run: {status:?}");
        }
    }
}

#[test]
fn a_small_chaos_run_loses_nothing_applies_nothing_twice_and_keeps_order() {
    let _services = ServicesBackUp;
    let report = std::env::temp_dir().join(format!("outbox-chaos-ci-{}.json", std::process::id()));
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args([
            "--messages",
            "3000",
            "--keys",
            "200",
            "--writers",
            "3",
            "--rate",
            "60",
            "--partitions",
            "4",
            "--brokers",
            "1",
            "--min-faults",
            "2",
            "--fault-interval-ms",
            "1000..3000",
            "--handler-failure-rate",
            "0.02",
            "--drain-timeout",
            "240",
            "--seed",
            SEED,
            "--report",
        ])
        .arg(&report)
        .spawn()
        .expect("start the chaos binary");
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the chaos run") {
            break status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the chaos run took more than {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| {
        panic!(
            "the run ({status}) wrote no report {}: {e}",
            report.display()
        )
    });
    let _ = std::fs::remove_file(&report);
    let summary: serde_json::Value = serde_json::from_str(&text).expect("the report is JSON");
    assert!(
        status.success(),
        "the chaos run failed ({status}); bad counts: {}",
        summary["bad"]
    );
    assert_eq!(summary["bad"], serde_json::json!({}), "no bad count");

    let audit = &summary["audit"];
    for bad in [
        "lost",
        "applied_twice",
        "applied_from_rolled_back",
        "applied_unknown",
        "order_violations",
        "payload_mismatches",
        "producer_sequence_gaps",
        "outbox_rows_left",
        "parked_rows",
        "table_differences",
        "dead_letters",
    ] {
        assert_eq!(audit[bad], 0, "{bad}: {audit}");
    }
    assert_eq!(audit["stopped_partitions"], serde_json::json!([]));
    let committed = audit["committed"].as_i64().expect("committed");
    assert!(committed >= 3000, "committed {committed}");
    assert_eq!(audit["applied"].as_i64(), Some(committed));
    assert!(audit["rolled_back"].as_i64() > Some(0), "{audit}");
    assert!(summary["writers"]["long_transactions"].as_u64() > Some(0));

    let faults = summary["faults"].as_object().expect("faults by kind");
    for kind in [
        "relay-kill",
        "consumer-kill",
        "broker-stop-term",
        "broker-stop-kill",
        "pg-restart-fast",
        "pg-restart-immediate",
        "terminate-relay-sessions",
        "terminate-consumer-sessions",
        "handler-failure",
    ] {
        let n = faults.get(kind).and_then(|n| n.as_u64()).unwrap_or(0);
        assert!(n >= 1, "fault {kind} injected {n} times: {faults:?}");
        if kind != "handler-failure" {
            assert!(n >= 2, "fault {kind} injected {n} times: {faults:?}");
        }
    }
    assert_eq!(summary["fault_errors"], serde_json::json!([]));
}
