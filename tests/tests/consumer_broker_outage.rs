//! The broker stops for ten seconds while a consumer (and the relay feeding it)
//! runs: the consumer logs a handful of warnings, not one per librdkafka retry
//! (before, ~10 a second), and applies what is written once the broker is back,
//! each message once.
//!
//! This test stops the shared Kafka broker ([`outbox_tests::broker`]): this
//! binary holds this one test and nothing else. Do not run it beside other
//! test processes on the same broker.

#[allow(dead_code)]
#[path = "consumer/support.rs"]
mod support;

use std::time::Duration;

use support::{Env, OnTopic, RunningConsumer, TIMEOUT, Users, count_applied, round, wait_until};

const KEYS: i64 = 20;
const OUTAGE: Duration = Duration::from_secs(10);
/// Warnings allowed for the whole outage: each distinct complaint once (the
/// broker gone, its connection refused, the group coordinator lost), its
/// repeats summarised.
const MAX_WARNINGS: usize = 8;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_rides_out_a_broker_outage_with_a_handful_of_log_lines() {
    let lines = outbox_tests::logs::capture();
    let env = Env::new("consumer_broker_outage");
    let consumer =
        RunningConsumer::spawn(env.consumer().controller(OnTopic::new(Users, &env.topic)));
    let relay = env.relay();
    let mut producer = env.producer();
    let mut conn = env.consumer_conn();
    producer.write(&round(1..=KEYS, 0));
    wait_until("the first round is applied", TIMEOUT, || {
        count_applied(&mut conn) == KEYS
    })
    .await;

    let logged_before = outbox_tests::logs::mark(lines);
    let outage = blocking(outbox_tests::broker::stop).await;
    tokio::time::sleep(OUTAGE).await;
    let during = outbox_tests::logs::text_since(lines, logged_before);
    blocking(move || outage.start()).await;

    producer.write(&round(1..=KEYS, 1));
    wait_until(
        "the round written after the outage is applied",
        Duration::from_secs(90),
        || count_applied(&mut conn) == 2 * KEYS,
    )
    .await;
    consumer.assert_running();
    let report = consumer.stop().await;
    relay.stop().await;

    let warnings: Vec<&str> = during
        .lines()
        .filter(|line| line.contains(" WARN ") || line.contains(" ERROR "))
        .collect();
    eprintln!(
        "{} warnings in a {OUTAGE:?} outage:\n{}\nconsumer: {report:?}",
        warnings.len(),
        warnings.join("\n")
    );
    assert!(!warnings.is_empty(), "the outage is reported:\n{during}");
    assert!(
        warnings.len() <= MAX_WARNINGS,
        "{} warnings in a {OUTAGE:?} outage (at most {MAX_WARNINGS}):\n{}",
        warnings.len(),
        warnings.join("\n")
    );
    assert_eq!(report.processed, 2 * KEYS as u64, "{report:?}");
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}
