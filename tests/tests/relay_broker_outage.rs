//! The broker stops for several seconds while the relay runs and producers keep
//! writing; once it is back, everything is sent with per-key order kept.
//!
//! This test stops the shared Kafka broker (`scripts/services.sh down`, with
//! `DATABASE_URL` set so PostgreSQL keeps running) and starts it again: every
//! other test running at the same time would fail. `cargo test` runs test
//! binaries one after another (only the tests inside one binary run in
//! parallel), so this binary holds this one test and nothing else. Do not run
//! it beside other test processes on the same broker.

#[allow(dead_code)]
#[path = "relay/support.rs"]
mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use outbox::MessageId;
use outbox::kafka::KafkaPublisher;

use support::{
    Env, RunningRelay, assert_key_order, blocking, count_rows, enqueue, id_counts, message,
    wait_until_empty,
};

const KEYS: u64 = 10;
const OUTAGE: Duration = Duration::from_secs(6);

fn services_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// `scripts/services.sh <command>` with `DATABASE_URL` set, so only Kafka is
/// touched (and `KAFKA_BROKERS` unset, so the script does manage Kafka).
fn services(command: &str) {
    let output = Command::new("bash")
        .arg(services_script())
        .arg(command)
        .env("DATABASE_URL", outbox_tests::database_url())
        .env_remove("KAFKA_BROKERS")
        .output()
        .unwrap_or_else(|e| panic!("could not run scripts/services.sh {command}: {e}"));
    assert!(
        output.status.success(),
        "scripts/services.sh {command} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn broker_answers() -> bool {
    let brokers = outbox_tests::kafka_brokers();
    let first = brokers.split(',').next().unwrap_or_default().to_owned();
    std::net::TcpStream::connect_timeout(
        &first
            .parse()
            .expect("KAFKA_BROKERS holds host:port addresses"),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Starts the broker again when dropped, even if the test fails half-way.
struct BrokerBack;

impl Drop for BrokerBack {
    fn drop(&mut self) {
        if !broker_answers() {
            let _ = Command::new("bash")
                .arg(services_script())
                .arg("up")
                .env("DATABASE_URL", outbox_tests::database_url())
                .env_remove("KAFKA_BROKERS")
                .status();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_mid_run_everything_is_sent_in_key_order() {
    let env = Env::new("relay_broker_outage");
    // Records not acknowledged within 3 s fail (the default is 30 s, longer
    // than the outage, which librdkafka would then simply wait out): the relay
    // records the failures and sends the rows again once the broker is back.
    let publisher = KafkaPublisher::builder(env.kafka.brokers())
        .set("message.timeout.ms", "3000")
        .build()
        .expect("a publisher with a 3 s delivery timeout");
    let relay = RunningRelay::spawn(
        env.relay_with(publisher)
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .build()
            .unwrap(),
    );

    // A writer: a small transaction every 20 ms, keys numbered in order.
    let stop_writing = Arc::new(AtomicBool::new(false));
    let writer = {
        let (url, topic, stop) = (
            env.db.url().to_owned(),
            env.topic.clone(),
            stop_writing.clone(),
        );
        std::thread::spawn(move || {
            use diesel::Connection;
            let mut conn = diesel::PgConnection::establish(&url).expect("writer connects");
            let mut next: HashMap<u64, u64> = HashMap::new();
            let mut ids: Vec<MessageId> = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let batch: Vec<_> = (0..3)
                    .map(|_| {
                        let key = i % KEYS;
                        i += 1;
                        let seq = next.entry(key).or_insert(0);
                        *seq += 1;
                        message(&topic, &format!("key-{key}"), *seq - 1)
                    })
                    .collect();
                ids.extend(enqueue(&mut conn, &batch));
                std::thread::sleep(Duration::from_millis(20));
            }
            ids
        })
    };
    let mut reader = env.reader();
    reader
        .read_until("the first messages", support::RECEIVE_TIMEOUT, |r| {
            r.len() >= 30
        })
        .await;

    // Stop the broker; the writer goes on.
    let broker_back = BrokerBack;
    let stopped_at = Instant::now();
    blocking(|| services("down")).await;
    assert!(
        !broker_answers(),
        "the broker still answers after scripts/services.sh down: it was not started by \
         this checkout's scripts/services.sh, so this test cannot stop it"
    );
    eprintln!("outage: broker stopped in {:?}", stopped_at.elapsed());
    tokio::time::sleep(OUTAGE).await;
    let mut conn = env.conn();
    let waiting = count_rows(&mut conn);
    assert!(waiting > 0, "rows wait while the broker is down");
    let restarted_at = Instant::now();
    blocking(|| services("up")).await;
    drop(broker_back);
    eprintln!(
        "outage: {waiting} rows waiting; broker up again in {:?}, down {:?} in all",
        restarted_at.elapsed(),
        stopped_at.elapsed()
    );

    // Keep writing a little after the broker returns, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_writing.store(true, Ordering::Relaxed);
    let ids = blocking(move || writer.join().expect("the writer panicked")).await;

    wait_until_empty(&mut conn, Duration::from_secs(90)).await;
    reader.read_ids(&ids, Duration::from_secs(90)).await;
    reader.read_rest(Duration::from_secs(2)).await;
    let report = relay.stop().await;

    let counts = id_counts(&reader.received);
    assert!(
        ids.iter().all(|id| counts.contains_key(id)),
        "every message arrives"
    );
    assert_eq!(counts.len(), ids.len(), "nothing else on the topic");
    let received: Vec<_> = reader.received.iter().collect();
    let per_key = assert_key_order(&received);
    for (key, seqs) in &per_key {
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert!(*seqs == expected, "key {key}: {seqs:?}");
    }
    assert!(
        report.failed_attempts > 0,
        "sends failed while the broker was down: {report:?}"
    );
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "outage: {} messages, {duplicates} duplicates, relay report {report:?}",
        ids.len()
    );
}
