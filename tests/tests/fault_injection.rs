//! Fault injection (`outbox_diesel::fault_injection`) against the real
//! PostgreSQL and Kafka that `scripts/services.sh up` starts: injected handler
//! failures and delays lose nothing and apply nothing twice, injected publish
//! failures keep per-key order and park nothing, protected routes and topics
//! are never touched, and nothing is injected unless `OUTBOX_FAULT_INJECTION`
//! is exactly `on`.
//!
//! The tests that depend on the variable run their body in a child process of
//! this test binary, started with the variable set (or removed): the real
//! gate is what is tested, no test changes the environment of a running
//! process, and each child's metrics recorder holds only its own faults.

#[allow(dead_code, unused_imports)]
#[path = "consumer/support.rs"]
mod consumer_support;
#[allow(dead_code, unused_imports)]
#[path = "relay/support.rs"]
mod relay_support;

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use diesel::Connection as _;
use diesel::RunQueryDsl as _;
use outbox::kafka::KafkaPublisher;
use outbox::{Event, Message, Outboxed, Payloads};
use outbox_diesel::consumer::{self, Consumer, FailurePolicy};
use outbox_diesel::fault_injection::{ENV_VAR, FaultInjection, Injected};
use outbox_diesel::relay::{
    DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP, DEFAULT_BATCH_SIZE, DEFAULT_BATCHES_IN_FLIGHT,
};
use outbox_diesel::serve::{Health, MetricsServer};
use outbox_diesel::{Error, Outbox, Relay};
use outbox_tests::{Accept, OnTopic, RunningConsumer, RunningRelay, logs, relay_test_settings};

use consumer_support::{TIMEOUT, User, Users, quick_retries, round};

/// Set in the child processes: run the test's body.
const CHILD: &str = "OUTBOX_FAULT_INJECTION_TEST_CHILD";

/// In the test process: runs test `name` of this binary in a child process
/// with `OUTBOX_FAULT_INJECTION` set to `value` (removed when `None`), asserts
/// that it passed, and returns `false`. In that child: returns `true`.
fn in_child(name: &str, value: Option<&str>) -> bool {
    if std::env::var_os(CHILD).is_some() {
        return true;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = std::process::Command::new(exe);
    command
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1");
    match value {
        Some(value) => command.env(ENV_VAR, value),
        None => command.env_remove(ENV_VAR),
    };
    let output = command.output().expect("the test binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let tail = |text: &str| text[text.len().saturating_sub(20_000)..].to_owned();
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{name} failed in its child process ({ENV_VAR}={value:?}, {}):\n--- stdout\n{}\n--- stderr\n{}",
        output.status,
        tail(&stdout),
        tail(&stderr),
    );
    false
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
}

/// The value of the sample `name` (with its labels, as rendered) in
/// Prometheus text, if present.
fn sample(metrics: &str, name: &str) -> Option<u64> {
    metrics.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(' ')?;
        Some(value.trim().parse::<f64>().expect("a numeric sample") as u64)
    })
}

/// The body of `GET /metrics` from the server at `addr`.
fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics server answers");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// Asserts that `metrics` counts exactly `injected`.
#[track_caller]
fn assert_counted(metrics: &str, injected: Injected) {
    let counted = |kind: &str| {
        sample(
            metrics,
            &format!("outbox_faults_injected_total{{kind=\"{kind}\"}}"),
        )
        .unwrap_or(0)
    };
    assert_eq!(
        (
            counted("handler_failure"),
            counted("handler_delay"),
            counted("publish_failure")
        ),
        (
            injected.handler_failures,
            injected.handler_delays,
            injected.publish_failures
        ),
        "the metrics say otherwise than the injected counts ({injected})"
    );
}

/// Waits until `done` holds while `consumer` runs; fails with the consumer's
/// error if it ends, or after `timeout`.
async fn applied_by(
    consumer: RunningConsumer,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> RunningConsumer {
    let started = std::time::Instant::now();
    while !done() {
        if consumer.is_finished() {
            consumer.stop().await;
            panic!("the consumer stopped on its own");
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for the consumer"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer
}

/// Enqueues a message of route `route` on `topic`, key `key`, in one transaction.
fn enqueue_routed(conn: &mut diesel::PgConnection, route: &str, topic: &str, key: &str) {
    let message = Message::new(
        Event::Updated,
        consumer_support::PRODUCER,
        route,
        topic,
        key,
        Payloads::new(1, serde_json::json!({"key": key})).expect("version 1 is valid"),
    )
    .expect("a valid message");
    let outbox = Outbox::new(consumer_support::PRODUCER);
    conn.transaction(|conn| outbox.enqueue_message(conn, &message))
        .expect("enqueue commits");
}

#[test]
fn handler_faults_lose_nothing_and_apply_each_message_once_in_order() {
    if !in_child(
        "handler_faults_lose_nothing_and_apply_each_message_once_in_order",
        Some("on"),
    ) {
        return;
    }
    runtime().block_on(async {
        let lines = logs::capture();
        let server = MetricsServer::start("127.0.0.1:0".parse().unwrap(), Health::new())
            .await
            .expect("a metrics server");
        let env = consumer_support::Env::new("fi_handler_flow");
        let keys: Vec<i64> = (1..=50).collect();
        let mut producer = env.producer();
        for seq in 0..6 {
            producer.write(&round(&keys, seq));
        }
        let total = keys.len() as i64 * 6;
        let relay = env.relay();
        let faults = FaultInjection::new()
            .fail_handlers(0.3)
            .delay_handlers(0.2, Duration::from_millis(20))
            .seed(13);
        // Attempts enough that 0.3 never exhausts them (0.3^40).
        let consumer = RunningConsumer::spawn(
            env.consumer()
                .controller_with(
                    OnTopic::new(Users, &env.topic),
                    quick_retries(FailurePolicy::stop(), 40),
                )
                .health(server.health().clone())
                .fault_injection(faults.clone()),
        );
        let mut conn = env.consumer_conn();
        let consumer = applied_by(consumer, TIMEOUT * 2, || {
            consumer_support::count_inbox(&mut conn) == total
        })
        .await;
        let metrics = scrape(server.local_addr());
        let report = consumer.stop().await;
        relay.stop().await;

        assert_eq!(
            (
                report.processed,
                report.duplicates,
                report.failed,
                report.stopped
            ),
            (total as u64, 0, 0, 0),
            "{report:?}"
        );
        // Every apply is logged in its own transaction (the controller
        // upserts, so creates too): each message once, in order per key.
        let applied = consumer_support::applied(&mut conn);
        assert_eq!(applied.len() as i64, total);
        let mut per_key: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        let mut ids = std::collections::HashSet::new();
        for apply in &applied {
            assert!(
                ids.insert(apply.message_id),
                "message {} applied twice",
                apply.message_id
            );
            per_key
                .entry(apply.user_id)
                .or_default()
                .push(apply.seq.expect("an update's seq"));
        }
        assert_eq!(per_key.len(), keys.len());
        for (key, seqs) in &per_key {
            assert_eq!(seqs, &[0, 1, 2, 3, 4, 5], "applies of user {key}");
        }
        let users = consumer_support::users_of(&mut conn);
        assert_eq!(users.len(), keys.len());
        assert!(users.iter().all(|user| user.seq == 5), "{users:?}");

        let injected = faults.injected();
        println!("{total} messages; injected: {injected}; {report:?}");
        assert!(injected.handler_failures > 0, "{injected}");
        assert!(injected.handler_delays > 0, "{injected}");
        assert_eq!(injected.publish_failures, 0);
        // Each injected failure was one failed attempt, retried.
        assert_eq!(report.retries, injected.handler_failures, "{report:?}");
        // Nothing is injected once the consumer stopped: the scrape taken
        // before the stop and the recorder now agree with the counts.
        assert_counted(&metrics, injected);
        assert_counted(
            &outbox_diesel::serve::install_recorder().unwrap().render(),
            injected,
        );
        // On while the consumer ran, off once it returned.
        let gauge = "outbox_fault_injection_enabled{component=\"consumer\"}";
        assert_eq!(sample(&metrics, gauge), Some(1), "{metrics}");
        assert_eq!(
            sample(
                &outbox_diesel::serve::install_recorder().unwrap().render(),
                gauge
            ),
            Some(0)
        );
        let text = logs::text_since(lines, 0);
        let announced = text
            .lines()
            .find(|line| line.contains("FAULT INJECTION IS ON"))
            .unwrap_or_else(|| panic!("no announcement in the logs:\n{text}"));
        for part in [
            "component=\"consumer\"",
            "fail_handlers=0.3",
            "delay_handlers=0.2",
            "delay=20ms",
            "seed=13",
        ] {
            assert!(announced.contains(part), "{part} missing: {announced}");
        }
        assert!(
            text.contains("handler failed; retrying") && text.contains("injected handler failure"),
            "the retries do not say the failure was injected"
        );
    });
}

#[test]
fn a_protected_route_is_never_touched_and_others_exhaust_their_attempts() {
    if !in_child(
        "a_protected_route_is_never_touched_and_others_exhaust_their_attempts",
        Some("on"),
    ) {
        return;
    }
    runtime().block_on(async {
        logs::capture();
        let env = consumer_support::Env::new("fi_handler_protected");
        let other_topic: &'static str = env.kafka.create_topic("other", 1).leak();
        let keys: Vec<i64> = (1..=20).collect();
        let mut producer = env.producer();
        producer.write(&round(&keys, 0));
        producer.write(&round(&keys, 1));
        enqueue_routed(&mut producer.conn, "other", other_topic, "k1");
        let relay = env.relay();
        let other = Accept::new("other", other_topic);
        let calls = other.calls();
        let faults = FaultInjection::new()
            .fail_handlers(1.0)
            .delay_handlers(1.0, Duration::from_millis(5))
            .protect(User::ROUTE);
        let consumer = RunningConsumer::spawn(
            env.consumer()
                .failure_policy(quick_retries(FailurePolicy::stop(), 3))
                .controller(OnTopic::new(Users, &env.topic))
                .controller(other)
                .fault_injection(faults.clone()),
        );
        let mut conn = env.consumer_conn();
        let consumer = applied_by(consumer, TIMEOUT, || {
            consumer_support::count_inbox(&mut conn) == 40
                && !consumer_support::active_stops(&mut conn, &env.group).is_empty()
        })
        .await;
        let report = consumer.stop().await;
        relay.stop().await;

        // The protected route: every message applied at its first attempt.
        let users = consumer_support::users_of(&mut conn);
        assert!(
            users.len() == keys.len() && users.iter().all(|user| user.seq == 1),
            "{users:?}"
        );
        assert_eq!(report.processed, 40, "{report:?}");
        // The other route: every attempt failed before its handler ran, then
        // the policy stopped its partition, naming the injected failure.
        assert_eq!(calls.load(Ordering::SeqCst), 0, "the handler never runs");
        assert_eq!((report.retries, report.stopped), (2, 1), "{report:?}");
        let stops = consumer_support::active_stops(&mut conn, &env.group);
        assert_eq!(stops.len(), 1, "{stops:?}");
        assert_eq!(stops[0].topic, other_topic);
        assert!(stops[0].error.contains("injected"), "{}", stops[0].error);
        let injected = faults.injected();
        assert_eq!(
            (
                injected.handler_failures,
                injected.handler_delays,
                injected.publish_failures
            ),
            (3, 3, 0),
            "{injected}"
        );
    });
}

#[test]
fn without_the_environment_variable_nothing_is_injected() {
    if !in_child("without_the_environment_variable_nothing_is_injected", None) {
        return;
    }
    runtime().block_on(async {
        let lines = logs::capture();
        let recorder = outbox_diesel::serve::install_recorder().unwrap();
        let env = consumer_support::Env::new("fi_no_env");
        let keys: Vec<i64> = (1..=20).collect();
        env.producer().write(&round(&keys, 0));
        // Fraction 1 everywhere: anything injected would stop the flow.
        let faults = FaultInjection::new()
            .fail_handlers(1.0)
            .delay_handlers(1.0, Duration::from_secs(1))
            .fail_publishes(1.0);
        let publisher = KafkaPublisher::new(env.kafka.brokers()).expect("a publisher");
        let relay = relay_test_settings(Relay::builder(env.producer_db.url(), publisher))
            .fault_injection(faults.clone())
            .build()
            .expect("the relay builds");
        let relay = RunningRelay::spawn(relay);
        let consumer = RunningConsumer::spawn(
            env.consumer()
                .controller_with(
                    OnTopic::new(Users, &env.topic),
                    quick_retries(FailurePolicy::stop(), 2),
                )
                .fault_injection(faults.clone()),
        );
        let mut conn = env.consumer_conn();
        let consumer = applied_by(consumer, TIMEOUT, || {
            consumer_support::count_inbox(&mut conn) == 20
        })
        .await;
        let report = consumer.stop().await;
        let relayed = relay.stop().await;

        assert_eq!(faults.injected(), Injected::default());
        assert_eq!((report.processed, report.retries), (20, 0), "{report:?}");
        assert_eq!(relayed.failed_attempts, 0, "{relayed:?}");
        let metrics = recorder.render();
        assert!(
            !metrics.contains("outbox_faults_injected_total"),
            "{metrics}"
        );
        assert!(
            !metrics.contains("outbox_fault_injection_enabled"),
            "{metrics}"
        );
        let text = logs::text_since(lines, 0);
        let warnings: Vec<&str> = text
            .lines()
            .filter(|line| line.contains("fault injection is configured but off"))
            .collect();
        assert_eq!(warnings.len(), 2, "one per builder: {warnings:?}");
        for component in ["relay", "consumer"] {
            assert!(
                warnings
                    .iter()
                    .any(|line| line.contains(&format!("component=\"{component}\""))
                        && line.contains("set OUTBOX_FAULT_INJECTION=on")),
                "no warning of the {component}: {warnings:?}"
            );
        }
        assert!(!text.contains("FAULT INJECTION IS ON"));
    });
}

#[test]
fn any_other_value_than_on_keeps_it_off() {
    if !in_child("any_other_value_than_on_keeps_it_off", Some("yes")) {
        return;
    }
    runtime().block_on(async {
        let lines = logs::capture();
        let env = relay_support::Env::new("fi_other_value");
        let mut conn = env.conn();
        let messages: Vec<Message> = (0..5).map(|seq| env.message("k", seq)).collect();
        let ids = relay_support::enqueue(&mut conn, &messages);
        let faults = FaultInjection::new().fail_publishes(1.0);
        let relay = RunningRelay::spawn(
            env.relay()
                .fault_injection(faults.clone())
                .build()
                .expect("the relay builds"),
        );
        let mut reader = env.reader();
        reader.read_ids(&ids, relay_support::RECEIVE_TIMEOUT).await;
        relay_support::wait_until_empty(&mut conn, relay_support::RECEIVE_TIMEOUT).await;
        let report = relay.stop().await;

        assert_eq!(report.failed_attempts, 0, "{report:?}");
        assert_eq!(faults.injected(), Injected::default());
        let text = logs::text_since(lines, 0);
        assert!(
            text.lines()
                .any(|line| line.contains("fault injection is off")
                    && line.contains("OUTBOX_FAULT_INJECTION is \"yes\"")),
            "no warning naming the value:\n{text}"
        );
    });
}

#[test]
fn publish_faults_keep_per_key_order_and_park_nothing() {
    if !in_child(
        "publish_faults_keep_per_key_order_and_park_nothing",
        Some("on"),
    ) {
        return;
    }
    runtime().block_on(async {
        let lines = logs::capture();
        let recorder = outbox_diesel::serve::install_recorder().unwrap();
        let env = relay_support::Env::new("fi_publish_flow");
        let mut conn = env.conn();
        let keys: Vec<String> = (0..20).map(|k| format!("key-{k}")).collect();
        let mut ids = Vec::new();
        for seq in 0..15 {
            let messages: Vec<Message> = keys.iter().map(|key| env.message(key, seq)).collect();
            ids.extend(relay_support::enqueue(&mut conn, &messages));
        }
        let faults = FaultInjection::new().fail_publishes(0.3).seed(5);
        let relay = RunningRelay::spawn(
            env.relay()
                .batch_size(50)
                .backoff(Duration::from_millis(10), Duration::from_millis(100))
                .fault_injection(faults.clone())
                .build()
                .expect("the relay builds"),
        );
        let mut reader = env.reader();
        reader.read_ids(&ids, relay_support::RECEIVE_TIMEOUT).await;
        relay_support::wait_until_empty(&mut conn, relay_support::RECEIVE_TIMEOUT).await;
        let gauge = "outbox_fault_injection_enabled{component=\"relay\"}";
        assert_eq!(sample(&recorder.render(), gauge), Some(1), "while it runs");
        let report = relay.stop().await;
        assert_eq!(
            sample(&recorder.render(), gauge),
            Some(0),
            "once it returned"
        );
        reader.read_rest(Duration::from_millis(500)).await;

        let received = reader.of(&ids);
        let counts = relay_support::id_counts(&reader.received);
        assert!(
            ids.iter().all(|id| counts.get(id) == Some(&1)),
            "a message missing or published twice"
        );
        let per_key = relay_support::assert_key_order(&received);
        assert_eq!(per_key.len(), keys.len());
        for seqs in per_key.values() {
            assert_eq!(seqs, &(0..15).collect::<Vec<u64>>());
        }
        let injected = faults.injected();
        println!("{} messages; injected: {injected}; {report:?}", ids.len());
        assert!(injected.publish_failures > 0, "{injected}");
        assert_eq!(report.parked, 0, "{report:?}");
        assert_eq!(
            report.failed_attempts, injected.publish_failures,
            "{report:?}"
        );
        assert_eq!(report.published, ids.len() as u64, "{report:?}");
        assert_counted(&recorder.render(), injected);
        let text = logs::text_since(lines, 0);
        assert!(
            text.contains("FAULT INJECTION IS ON") && text.contains("fail_publishes=0.3"),
            "no announcement:\n{text}"
        );
    });
}

/// Rows of the throughput test: enough windows that a relay backing off
/// further at each one would crawl.
const BACKLOG: usize = 30_000;

/// The least time a relay would take to send `rows` if each window of
/// batches with a failed row lengthened its backoff: at most
/// `batch × in_flight` rows a window (a batch with a failure ends its
/// window's reading; at 2 % every batch of 1,000 has one), each followed by
/// at least half of the doubling delay (the backoff's jitter).
fn crawl(rows: usize) -> Duration {
    let windows = rows.div_ceil(DEFAULT_BATCH_SIZE * DEFAULT_BATCHES_IN_FLIGHT) as u32;
    (0..windows)
        .map(|n| (DEFAULT_BACKOFF_BASE * 2u32.pow(n.min(20))).min(DEFAULT_BACKOFF_CAP) / 2)
        .sum()
}

/// The README's example fraction with the default batch size and backoff:
/// injected failures are retried after the first backoff delay and never
/// lengthen it, so a backlog drains at a relay's pace, not one window per
/// backoff cap.
#[test]
fn publish_faults_at_the_default_settings_keep_the_relay_s_pace() {
    if !in_child(
        "publish_faults_at_the_default_settings_keep_the_relay_s_pace",
        Some("on"),
    ) {
        return;
    }
    // Not a benchmark: a bound the relay meets with room on two shared
    // cores, and a crawl could not.
    let bound = Duration::from_secs(30);
    let crawl = crawl(BACKLOG);
    assert!(
        bound * 3 < crawl,
        "the bound {bound:?} is not well under {crawl:?}"
    );
    runtime().block_on(async {
        logs::capture();
        let env = relay_support::Env::new("fi_publish_pace");
        let (url, topic) = (env.db.url().to_owned(), env.topic.clone());
        let ids = relay_support::blocking(move || {
            let mut conn = diesel::PgConnection::establish(&url).expect("connect");
            let messages: Vec<Message> = (0..BACKLOG as u64)
                .map(|i| relay_support::message(&topic, &format!("key-{}", i % 500), i / 500))
                .collect();
            messages
                .chunks(1_000)
                .flat_map(|chunk| relay_support::enqueue(&mut conn, chunk))
                .collect::<Vec<_>>()
        })
        .await;
        let faults = FaultInjection::new().fail_publishes(0.02);
        let started = Instant::now();
        let relay = RunningRelay::spawn(
            env.relay()
                .batch_size(DEFAULT_BATCH_SIZE)
                .batches_in_flight(DEFAULT_BATCHES_IN_FLIGHT)
                .backoff(DEFAULT_BACKOFF_BASE, DEFAULT_BACKOFF_CAP)
                .fault_injection(faults.clone())
                .build()
                .expect("the relay builds"),
        );
        let mut conn = env.conn();
        relay_support::wait_until_empty(&mut conn, bound).await;
        let took = started.elapsed();
        let report = relay.stop().await;

        let injected = faults.injected();
        println!(
            "{} rows in {took:?} ({:.0} rows/s; a crawl would take at least {crawl:?}); \
             injected: {injected}; {report:?}",
            ids.len(),
            ids.len() as f64 / took.as_secs_f64()
        );
        assert!(injected.publish_failures >= 100, "{injected}");
        assert_eq!(report.published, ids.len() as u64, "{report:?}");
        assert_eq!(report.parked, 0, "{report:?}");
        assert_eq!(report.failed_attempts, injected.publish_failures);
    });
}

#[test]
fn a_protected_topic_is_never_touched_and_others_are_retried_not_parked() {
    if !in_child(
        "a_protected_topic_is_never_touched_and_others_are_retried_not_parked",
        Some("on"),
    ) {
        return;
    }
    runtime().block_on(async {
        logs::capture();
        let env = relay_support::Env::new("fi_publish_protected");
        let protected = env.kafka.create_topic("protected", 4);
        let mut conn = env.conn();
        let exposed = relay_support::enqueue(
            &mut conn,
            &[
                env.message("a", 0),
                env.message("b", 0),
                env.message("a", 1),
            ],
        );
        let messages: Vec<Message> = (0..10)
            .map(|seq| relay_support::message(&protected, &format!("p{}", seq % 3), seq))
            .collect();
        let ids = relay_support::enqueue(&mut conn, &messages);
        // Row `b` failed for a real reason before: the injected failures
        // count attempts but leave that cause in `last_error`.
        const REAL: &str = "Message production error: MessageTimedOut (Local: Message timed out)";
        diesel::sql_query("UPDATE outbox_messages SET attempts = 1, last_error = $2 WHERE id = $1")
            .bind::<diesel::sql_types::BigInt, _>(relay_support::row_id(&mut conn, exposed[1]))
            .bind::<diesel::sql_types::Text, _>(REAL)
            .execute(&mut conn)
            .expect("record a real failure on row b");
        let faults = FaultInjection::new()
            .fail_publishes(1.0)
            .protect(&protected);
        let relay = RunningRelay::spawn(
            env.relay()
                .backoff(Duration::from_millis(10), Duration::from_millis(50))
                .fault_injection(faults.clone())
                .build()
                .expect("the relay builds"),
        );
        let mut reader = relay_support::Reader::new(&env.kafka, &protected);
        reader.read_ids(&ids, relay_support::RECEIVE_TIMEOUT).await;
        relay_support::wait_until(
            "the exposed rows failed a few times",
            relay_support::RECEIVE_TIMEOUT,
            || {
                let rows = relay_support::stored_rows(&mut conn);
                rows.len() == exposed.len() && rows[0].attempts >= 3 && rows[1].attempts >= 4
            },
        )
        .await;
        let report = relay.stop().await;
        reader.read_rest(Duration::from_millis(300)).await;

        // The protected topic: each message once, in order per key.
        let counts = relay_support::id_counts(&reader.received);
        assert!(
            ids.iter().all(|id| counts.get(id) == Some(&1)),
            "{counts:?}"
        );
        relay_support::assert_key_order(&reader.of(&ids));
        // The other: every publish failed, retried, never parked nor sent;
        // the second row of key `a` waits behind the first, never tried.
        let rows = relay_support::stored_rows(&mut conn);
        assert!(rows.iter().all(|row| row.parked_at.is_none()), "{rows:?}");
        let error = rows[0].last_error.as_deref().unwrap_or_default();
        assert!(error.contains("injected publish failure"), "{:?}", rows[0]);
        assert_eq!(
            rows[1].last_error.as_deref(),
            Some(REAL),
            "the real cause stays"
        );
        assert_eq!((rows[2].attempts, rows[2].last_error.as_deref()), (0, None));
        assert_eq!(report.parked, 0, "{report:?}");
        assert_eq!(report.published, ids.len() as u64, "{report:?}");
        let injected = faults.injected();
        assert_eq!(report.failed_attempts, injected.publish_failures);
        assert!(injected.publish_failures >= 6, "{injected}");
        let mut topic = relay_support::Reader::new(&env.kafka, &env.topic);
        topic.read_rest(Duration::from_secs(2)).await;
        assert!(topic.received.is_empty(), "an exposed row was published");
    });
}

#[test]
fn a_fraction_out_of_range_is_refused_at_build() {
    let pool = consumer::pool("postgres://localhost/app", 1).expect("a pool");
    let error = Consumer::builder("127.0.0.1:59092", "group", pool)
        .controller(Users)
        .fault_injection(FaultInjection::new().fail_handlers(1.5))
        .build()
        .err()
        .expect("refused");
    assert!(matches!(error, Error::Config { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("`fail_handlers`") && text.contains("not 1.5"),
        "{text}"
    );

    for (faults, name, value) in [
        (
            FaultInjection::new().fail_publishes(f64::NAN),
            "fail_publishes",
            "NaN",
        ),
        (
            FaultInjection::new().delay_handlers(-0.5, Duration::ZERO),
            "delay_handlers",
            "-0.5",
        ),
    ] {
        let publisher = KafkaPublisher::new("127.0.0.1:59092").expect("a publisher");
        let error = Relay::builder("postgres://localhost/app", publisher)
            .fault_injection(faults)
            .build()
            .err()
            .expect("refused");
        match &error {
            Error::Config { name: named, .. } => assert_eq!(*named, name),
            other => panic!("not a configuration error: {other:?}"),
        }
        assert!(
            error.to_string().contains(&format!("not {value}")),
            "{error}"
        );
    }
}
