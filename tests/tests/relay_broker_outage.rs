//! The broker stops for several seconds while the relay runs and producers keep
//! writing; once it is back, everything is sent with per-key order kept. Then
//! it stops again, and a relay asked to stop meanwhile stops within its grace,
//! leaving its unacknowledged rows to the next relay.
//!
//! This test stops the shared Kafka broker and starts it again
//! ([`outbox_tests::broker`]): this binary holds this one test and nothing
//! else. Do not run it beside other test processes on the same broker.

#[allow(dead_code)]
#[path = "relay/support.rs"]
mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use outbox::MessageId;

use support::{
    Env, RunningRelay, assert_key_order, blocking, count_rows, enqueue, id_counts, message,
    wait_until_empty,
};

const KEYS: u64 = 10;
const OUTAGE: Duration = Duration::from_secs(6);
const GRACE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_outage_mid_run_everything_is_sent_in_key_order() {
    let env = Env::new("relay_broker_outage");
    // The publisher's defaults: records never time out in the producer, which
    // holds them while the broker is away and sends them in order after.
    let relay = RunningRelay::spawn(
        env.relay()
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .shutdown_grace(GRACE)
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
            (ids, next)
        })
    };
    let mut reader = env.reader();
    reader
        .read_until("the first messages", support::RECEIVE_TIMEOUT, |r| {
            r.len() >= 30
        })
        .await;

    // Stop the broker; the writer goes on.
    let stopped_at = Instant::now();
    let outage = blocking(outbox_tests::broker::stop).await;
    eprintln!("outage: broker stopped in {:?}", stopped_at.elapsed());
    tokio::time::sleep(OUTAGE).await;
    let mut conn = env.conn();
    let waiting = count_rows(&mut conn);
    assert!(waiting > 0, "rows wait while the broker is down");
    let restarted_at = Instant::now();
    blocking(move || outage.start()).await;
    eprintln!(
        "outage: {waiting} rows waiting; broker up again in {:?}, down {:?} in all",
        restarted_at.elapsed(),
        stopped_at.elapsed()
    );

    // Keep writing a little after the broker returns, then stop.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop_writing.store(true, Ordering::Relaxed);
    let (mut ids, mut next) = blocking(move || writer.join().expect("the writer panicked")).await;

    wait_until_empty(&mut conn, Duration::from_secs(90)).await;
    reader.read_ids(&ids, Duration::from_secs(90)).await;
    let report = relay.stop().await;
    assert_eq!(
        report.failed_attempts, 0,
        "the producer held the records through the outage: {report:?}"
    );

    // The broker goes away again, with rows in flight, and the relay is asked
    // to stop: it stops within its grace, its rows stay for the next relay.
    let relay = RunningRelay::spawn(env.relay().shutdown_grace(GRACE).build().unwrap());
    let outage = blocking(outbox_tests::broker::stop).await;
    let batch: Vec<_> = (0..KEYS)
        .map(|key| {
            let seq = next.entry(key).or_insert(0);
            *seq += 1;
            message(&env.topic, &format!("key-{key}"), *seq - 1)
        })
        .collect();
    ids.extend(enqueue(&mut conn, &batch));
    // Long enough for the relay to read the rows and hand them to the producer.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stop_asked = Instant::now();
    let second = relay.stop().await;
    let stopping = stop_asked.elapsed();
    eprintln!("outage: the relay stopped {stopping:?} after being asked, report {second:?}");
    assert!(
        stopping < GRACE + Duration::from_secs(5),
        "the relay stops within its grace while the broker is down: {stopping:?}"
    );
    assert_eq!(
        count_rows(&mut conn),
        KEYS as i64,
        "the unacknowledged rows stay in the outbox"
    );
    blocking(move || outage.start()).await;
    let relay = RunningRelay::spawn(env.relay().build().unwrap());
    wait_until_empty(&mut conn, Duration::from_secs(90)).await;
    reader.read_ids(&ids, Duration::from_secs(90)).await;
    reader.read_rest(Duration::from_secs(2)).await;
    relay.stop().await;

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
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!(
        "outage: {} messages, {duplicates} duplicates, relay report {report:?}",
        ids.len()
    );
}
