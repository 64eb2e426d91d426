//! Failures the relay outlives: its task aborted or its process killed in the
//! middle of a batch, a record the broker can never take, and its database
//! session terminated.

use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

use diesel::PgConnection;
use outbox::{Event, Message, MessageId, Payloads};
use outbox_diesel::ops::{self, Selection};
use outbox_diesel::relay::{DEFAULT_BATCHES_IN_FLIGHT, DEFAULT_ROWS_IN_FLIGHT};
use outbox_tests::process::ChildProcess;
use serde_json::json;

use super::support::{
    Env, PRODUCER, RECEIVE_TIMEOUT, Received, RunningRelay, assert_key_order, blocking, count_rows,
    enqueue, id_counts, message, publisher, seq_of, session_pids, stored_rows, terminate_sessions,
    wait_until, wait_until_empty,
};

const BACKLOG: u64 = 12_000;
const BATCH: usize = 400;
const BACKLOG_KEYS: u64 = 40;

/// A backlog of `BACKLOG` messages over `BACKLOG_KEYS` keys, numbered per key,
/// enqueued in transactions of 1,000.
async fn enqueue_backlog(env: &Env) -> Vec<MessageId> {
    let url = env.db.url().to_owned();
    let topic = env.topic.clone();
    blocking(move || {
        use diesel::Connection;
        let mut conn = PgConnection::establish(&url).expect("connect");
        let messages: Vec<Message> = (0..BACKLOG)
            .map(|i| {
                message(
                    &topic,
                    &format!("key-{:02}", i % BACKLOG_KEYS),
                    i / BACKLOG_KEYS,
                )
            })
            .collect();
        messages
            .chunks(1_000)
            .flat_map(|chunk| enqueue(&mut conn, chunk))
            .collect()
    })
    .await
}

/// Waits until the relay has finished at least one batch of the backlog (and
/// not all of it): the moment to stop it in the middle of the next one.
async fn wait_for_first_batches(conn: &mut PgConnection) {
    wait_until(
        "the relay has published a first batch of the backlog",
        RECEIVE_TIMEOUT,
        || count_rows(conn) <= (BACKLOG - BATCH as u64) as i64,
    )
    .await;
}

/// What a relay stopped mid-batch left: the rows it may have had in flight
/// (the `window × batch` oldest rows left, since a lone relay reads from the
/// oldest, `window` batches at a time), and how many rows were left.
fn rows_left_after_the_stop(
    conn: &mut PgConnection,
    window: usize,
    batch: usize,
) -> (HashSet<MessageId>, usize) {
    let rows = stored_rows(conn);
    assert!(
        !rows.is_empty(),
        "the relay sent the whole backlog before it was stopped; make the backlog larger"
    );
    let in_flight = rows
        .iter()
        .take(window * batch)
        .map(|r| MessageId::from_uuid(r.message_id).expect("a UUIDv7"))
        .collect();
    (in_flight, rows.len())
}

/// Every message arrived; duplicates only among the rows that were in flight,
/// at most `window` batches of them (the relay's `batches_in_flight`: "a relay
/// stopped abruptly re-sends at most this many batches"); per key, order kept
/// for a deduplicating consumer.
fn check_at_least_once(
    ids: &[MessageId],
    received: &[Received],
    in_flight: &HashSet<MessageId>,
    window: usize,
    batch: usize,
) -> usize {
    let counts = id_counts(received);
    let missing = ids.iter().filter(|id| !counts.contains_key(id)).count();
    assert_eq!(
        missing,
        0,
        "{missing} of {} messages never arrived",
        ids.len()
    );
    let duplicated: Vec<MessageId> = counts
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| *id)
        .collect();
    let strays: Vec<&MessageId> = duplicated
        .iter()
        .filter(|id| !in_flight.contains(id))
        .collect();
    assert!(
        strays.is_empty(),
        "{} of {} duplicated messages were not among the {window} batch(es) of {batch} \
         that may have been in flight, e.g. {:?}",
        strays.len(),
        duplicated.len(),
        &strays[..strays.len().min(5)]
    );
    let extra: usize = counts.values().map(|n| n - 1).sum();
    assert!(
        extra <= window * batch,
        "{extra} duplicates; at most {window} batch(es) of {batch} may be sent twice"
    );
    let all: Vec<&Received> = received.iter().collect();
    let per_key = assert_key_order(&all);
    for (key, seqs) in per_key {
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert!(seqs == expected, "key {key}: {seqs:?}");
    }
    extra
}

/// Aborts a relay task reading batches of `batch` rows with `window` batches
/// in flight at most (set, or `default_window` by default), in the middle of a
/// large backlog; a second relay sends the rest.
async fn abort_mid_batch(test_name: &str, batch: usize, window: Window) {
    let env = Env::new(test_name);
    let ids = enqueue_backlog(&env).await;
    let mut conn = env.conn();
    let name = env.kafka.unique_name("relay");

    let mut relay = env.relay_named(&name).batch_size(batch);
    let window = match window {
        Window::Set(batches) => {
            relay = relay.batches_in_flight(batches);
            batches
        }
        Window::Default(batches) => batches,
    };
    let first = RunningRelay::spawn(relay.build().unwrap());
    wait_for_first_batches(&mut conn).await;
    first.abort().await;
    wait_until(
        "the aborted relay's session is gone",
        RECEIVE_TIMEOUT,
        || session_pids(&mut conn, &name).is_empty(),
    )
    .await;
    let (in_flight, left) = rows_left_after_the_stop(&mut conn, window, batch);

    let second = RunningRelay::spawn(env.relay().batch_size(batch).build().unwrap());
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    let report = second.stop().await;
    assert!(
        report.published as usize >= left,
        "the second relay sent the {left} rows left: {report:?}"
    );

    let mut reader = env.reader();
    reader.read_ids(&ids, RECEIVE_TIMEOUT).await;
    reader.read_rest(Duration::from_secs(1)).await;
    let duplicates = check_at_least_once(&ids, &reader.received, &in_flight, window, batch);
    eprintln!("{test_name}: task aborted with {left} rows left; {duplicates} duplicates");
}

/// The default window: the relay pipelines `DEFAULT_BATCHES_IN_FLIGHT` batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_task_aborted_mid_batch_another_sends_the_rest() {
    abort_mid_batch(
        "relay_task_aborted",
        BATCH,
        Window::Default(DEFAULT_BATCHES_IN_FLIGHT),
    )
    .await;
}

/// Small batches: by default the relay keeps `DEFAULT_ROWS_IN_FLIGHT` rows in
/// flight (8 batches of 100), and an abrupt stop re-sends at most those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_task_aborted_with_small_batches_resends_at_most_the_default_rows_in_flight() {
    const SMALL: usize = 100;
    let window = DEFAULT_ROWS_IN_FLIGHT / SMALL;
    abort_mid_batch("relay_task_aborted_small", SMALL, Window::Default(window)).await;
}

/// How many batches the relay under test keeps in flight.
enum Window {
    /// Set with `batches_in_flight`.
    Set(usize),
    /// Left to the default, which is this many batches for the batch size.
    Default(usize),
}

/// One batch in flight: duplicates only among that batch, at most a batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_task_aborted_with_one_batch_in_flight_resends_at_most_that_batch() {
    abort_mid_batch("relay_task_aborted_one_batch", BATCH, Window::Set(1)).await;
}

/// The `relay-process` binary, with the test batch size; killed on drop if
/// still running.
fn start_relay_process(database_url: &str, brokers: &str) -> ChildProcess {
    ChildProcess::start(
        "relay-process",
        Command::new(env!("CARGO_BIN_EXE_relay-process"))
            .args(["--database-url", database_url, "--brokers", brokers])
            .args(["--batch-size", &BATCH.to_string(), "--stop-on-stdin-close"]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_process_killed_mid_batch_another_sends_the_rest() {
    let env = Env::new("relay_process_killed");
    let ids = enqueue_backlog(&env).await;
    let mut conn = env.conn();
    let name = env.kafka.unique_name("relay");

    let first = start_relay_process(&env.url_named(&name), env.kafka.brokers());
    wait_for_first_batches(&mut conn).await;
    first.kill();
    wait_until(
        "the killed relay's session is gone",
        RECEIVE_TIMEOUT,
        || session_pids(&mut conn, &name).is_empty(),
    )
    .await;
    let (in_flight, left) = rows_left_after_the_stop(&mut conn, DEFAULT_BATCHES_IN_FLIGHT, BATCH);

    let mut second = start_relay_process(env.db.url(), env.kafka.brokers());
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    second.assert_running();
    let output = second.terminate(Duration::from_secs(60)).await;
    let published: usize = output
        .trim()
        .strip_prefix("published ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("relay-process printed {output:?}"));
    assert!(
        published >= left,
        "the second process sent the {left} rows left: {published}"
    );

    let mut reader = env.reader();
    reader.read_ids(&ids, RECEIVE_TIMEOUT).await;
    reader.read_rest(Duration::from_secs(1)).await;
    let duplicates = check_at_least_once(
        &ids,
        &reader.received,
        &in_flight,
        DEFAULT_BATCHES_IN_FLIGHT,
        BATCH,
    );
    eprintln!("process killed with {left} rows left; {duplicates} duplicates");
}

/// A message whose value is about `bytes` long.
fn large_message(topic: &str, key: &str, seq: u64, bytes: usize) -> Message {
    Message::new(
        Event::Updated,
        PRODUCER,
        "steps",
        topic,
        key,
        Payloads::new(
            1,
            json!({"key": key, "seq": seq, "blob": "x".repeat(bytes)}),
        )
        .unwrap(),
    )
    .expect("a valid topic")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_message_is_parked_its_key_waits_others_flow_until_retried() {
    let env = Env::new("relay_oversized");
    let mut conn = env.conn();
    let small_limit = outbox::kafka::KafkaPublisher::builder(env.kafka.brokers())
        .set("message.max.bytes", "10000")
        .build()
        .expect("a publisher with a 10,000-byte limit");
    let relay = RunningRelay::spawn(env.relay_with(small_limit).build().unwrap());

    // Key "big": #0 small, #1 20 kB, #2 and #3 small; key "small" interleaved.
    let big = [
        env.message("big", 0),
        large_message(&env.topic, "big", 1, 20_000),
        env.message("big", 2),
        env.message("big", 3),
    ];
    let small: Vec<Message> = (0..10).map(|i| env.message("small", i)).collect();
    let first_round = [
        big[0].clone(),
        small[0].clone(),
        big[1].clone(),
        small[1].clone(),
        big[2].clone(),
        small[2].clone(),
        big[3].clone(),
        small[3].clone(),
    ];
    enqueue(&mut conn, &first_round);

    let mut reader = env.reader();
    let flowing: Vec<MessageId> = [&big[0]]
        .into_iter()
        .chain(&small[..4])
        .map(|m| m.id)
        .collect();
    reader.read_ids(&flowing, RECEIVE_TIMEOUT).await;
    wait_until("the 20 kB message is parked", RECEIVE_TIMEOUT, || {
        stored_rows(&mut conn).iter().any(|r| r.parked_at.is_some())
    })
    .await;
    // Other keys keep flowing after the park.
    enqueue(&mut conn, &small[4..]);
    let later: Vec<MessageId> = small[4..].iter().map(|m| m.id).collect();
    reader.read_ids(&later, RECEIVE_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.read_rest(Duration::from_millis(500)).await;

    let rows = stored_rows(&mut conn);
    let ids: Vec<uuid::Uuid> = rows.iter().map(|r| r.message_id).collect();
    assert_eq!(
        ids,
        [big[1].id, big[2].id, big[3].id].map(|id| id.as_uuid()),
        "the parked row and its key's later rows stay: {rows:?}"
    );
    let parked = &rows[0];
    assert!(parked.parked_at.is_some(), "{parked:?}");
    assert_eq!(parked.attempts, 1, "{parked:?}");
    let error = parked.last_error.clone().unwrap_or_default().to_lowercase();
    assert!(
        error.contains("size") && error.contains("too large"),
        "last_error says why: {:?}",
        parked.last_error
    );
    assert!(rows.iter().all(|r| r.partition_key == "big"), "{rows:?}");
    for waiting in &rows[1..] {
        assert!(
            waiting.parked_at.is_none(),
            "only the oversized row is parked: {waiting:?}"
        );
        assert_eq!(waiting.attempts, 0, "never tried: {waiting:?}");
    }
    let sent_of_big: Vec<u64> = reader
        .received
        .iter()
        .filter(|r| r.message.partition_key == "big")
        .map(|r| seq_of(&r.message))
        .collect();
    assert_eq!(sent_of_big, [0], "nothing of key big after the parked row");
    let report = relay.stop().await;
    assert_eq!(
        (report.parked, report.failed_attempts),
        (1, 1),
        "{report:?}"
    );

    // Retry with a publisher that allows larger records.
    let relay = RunningRelay::spawn(
        env.relay_with(publisher(env.kafka.brokers()))
            .build()
            .unwrap(),
    );
    let applied = ops::retry_parked(&mut conn, &Selection::Ids(vec![parked.id])).expect("retry");
    assert!(applied.is_complete() && applied.count == 1, "{applied:?}");
    let rest: Vec<MessageId> = big[1..].iter().map(|m| m.id).collect();
    reader.read_ids(&rest, RECEIVE_TIMEOUT).await;
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    reader.read_rest(Duration::from_secs(1)).await;
    let report = relay.stop().await;
    assert_eq!(report.published, 3, "{report:?}");

    let counts = id_counts(&reader.received);
    assert!(
        counts.values().all(|n| *n == 1),
        "each message once: {counts:?}"
    );
    assert_eq!(counts.len(), big.len() + small.len());
    let all: Vec<&Received> = reader.received.iter().collect();
    let per_key = assert_key_order(&all);
    assert_eq!(per_key["big"], [0, 1, 2, 3]);
    assert_eq!(per_key["small"], (0..10).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_reconnects_after_its_database_session_is_terminated() {
    let env = Env::new("relay_db_terminated");
    let mut conn = env.conn();
    let name = env.kafka.unique_name("relay");
    let relay = RunningRelay::spawn(env.relay_named(&name).batch_size(200).build().unwrap());
    let mut reader = env.reader();

    // Idle: the session waits for NOTIFY when it is terminated.
    let before: Vec<Message> = (0..20).map(|i| env.message("k", i)).collect();
    enqueue(&mut conn, &before);
    reader
        .read_ids(
            &before.iter().map(|m| m.id).collect::<Vec<_>>(),
            RECEIVE_TIMEOUT,
        )
        .await;
    // Two sessions: the relay's own, and the one its gauges are read on (opened
    // beside the relay's, so it may still be connecting when the messages arrive).
    wait_until(
        "the relay's and its gauges' sessions",
        RECEIVE_TIMEOUT,
        || session_pids(&mut conn, &name).len() == 2,
    )
    .await;
    let old = session_pids(&mut conn, &name);
    assert_eq!(terminate_sessions(&mut conn, &name), 2);
    let after: Vec<Message> = (20..40).map(|i| env.message("k", i)).collect();
    enqueue(&mut conn, &after);
    reader
        .read_ids(
            &after.iter().map(|m| m.id).collect::<Vec<_>>(),
            RECEIVE_TIMEOUT,
        )
        .await;
    wait_until("the relay has a new session", RECEIVE_TIMEOUT, || {
        let new = session_pids(&mut conn, &name);
        new.iter().any(|pid| !old.contains(pid))
    })
    .await;

    // Busy: terminated twice while a backlog drains, each time after the relay
    // (on its new session) made progress.
    let backlog: Vec<Message> = (40..12_040)
        .map(|i| env.message(&format!("k{}", i % 7), i))
        .collect();
    enqueue(&mut conn, &backlog);
    let mut left = backlog.len() as i64;
    let mut terminated_pids = old;
    for round in 1..=2 {
        let progress = left - 200;
        wait_until(
            "the relay, on a new session, sends a batch of the backlog",
            RECEIVE_TIMEOUT,
            || {
                let pids = session_pids(&mut conn, &name);
                pids.iter().any(|pid| !terminated_pids.contains(pid))
                    && count_rows(&mut conn) <= progress
            },
        )
        .await;
        let pids = session_pids(&mut conn, &name);
        let terminated = terminate_sessions(&mut conn, &name);
        left = count_rows(&mut conn);
        assert!(terminated >= 1, "round {round}: the relay had its session");
        terminated_pids.extend(pids);
        assert!(
            left > 0,
            "round {round}: the backlog drained before the termination; make it larger"
        );
        eprintln!("session terminated with {left} rows left");
    }
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    assert!(!relay.is_finished(), "the relay keeps running");
    let all: Vec<MessageId> = before
        .iter()
        .chain(&after)
        .chain(&backlog)
        .map(|m| m.id)
        .collect();
    reader.read_ids(&all, RECEIVE_TIMEOUT).await;
    reader.read_rest(Duration::from_secs(1)).await;
    let report = relay.stop().await;
    assert!(report.published >= all.len() as u64, "{report:?}");

    let counts = id_counts(&reader.received);
    assert!(
        all.iter().all(|id| counts.contains_key(id)),
        "every message arrives"
    );
    let received: Vec<&Received> = reader.received.iter().collect();
    assert_key_order(&received);
    let duplicates: usize = counts.values().map(|n| n - 1).sum();
    eprintln!("session terminated 3 times; {duplicates} duplicates");
}

/// A topic that does not exist, on brokers that do not create topics for the
/// producer (as most production clusters): the row is parked with the
/// librdkafka's "unknown topic" error and other topics flow; once the topic
/// exists, a relay started afresh sends it after `outbox parked retry`.
/// (A running relay's producer keeps the topic as unknown in its metadata
/// cache: its retries fail until it is restarted; see the README.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_for_a_topic_that_does_not_exist_is_parked_until_it_exists() {
    let env = Env::new("relay_missing_topic");
    let mut conn = env.conn();
    // The test broker auto-creates topics; this producer asks it not to, as
    // a cluster with `auto.create.topics.enable=false` would refuse.
    let publisher = || {
        outbox::kafka::KafkaPublisher::builder(env.kafka.brokers())
            .set("allow.auto.create.topics", "false")
            .build()
            .expect("a publisher that creates no topic")
    };
    let relay = RunningRelay::spawn(env.relay_with(publisher()).build().unwrap());

    let missing = env.kafka.unique_name("missing");
    let lost = super::support::message(&missing, "k", 0);
    let flowing = env.message("other", 0);
    enqueue(&mut conn, &[lost.clone(), flowing.clone()]);
    let mut reader = env.reader();
    reader.read_ids(&[flowing.id], RECEIVE_TIMEOUT).await;
    wait_until(
        "the row of the missing topic is parked",
        RECEIVE_TIMEOUT,
        || stored_rows(&mut conn).iter().any(|r| r.parked_at.is_some()),
    )
    .await;
    relay.stop().await;
    let rows = stored_rows(&mut conn);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let error = rows[0]
        .last_error
        .clone()
        .unwrap_or_default()
        .to_lowercase();
    assert!(
        error.contains("unknown topic"),
        "last_error says why: {:?}",
        rows[0].last_error
    );

    env.kafka.create_topic_named(&missing, 1);
    let retried = outbox_diesel::ops::retry_parked(&mut conn, &outbox_diesel::ops::Selection::All)
        .expect("retry the parked row");
    assert_eq!(retried.count, 1, "{retried:?}");
    let relay = RunningRelay::spawn(env.relay_with(publisher()).build().unwrap());
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    relay.stop().await;
}

/// The pids of the sessions named `name` that hold a relay's membership lock
/// (its main session, not the one its gauges are read on).
fn member_pids(conn: &mut PgConnection, name: &str) -> Vec<i32> {
    locked_by(conn, name, 1)
}

/// The pids of the sessions named `name` that hold a shard's lock.
fn shard_pids(conn: &mut PgConnection, name: &str) -> Vec<i32> {
    locked_by(conn, name, 2)
}

/// Advisory locks granted to sessions named `name`: `objsubid` 1 for a
/// bigint key (membership), 2 for a pair of ints (a shard).
fn locked_by(conn: &mut PgConnection, name: &str, objsubid: i16) -> Vec<i32> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Pid {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
    }
    diesel::sql_query(
        "SELECT DISTINCT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE a.application_name = $1 AND l.locktype = 'advisory' AND l.granted \
           AND l.objsubid = $2",
    )
    .bind::<diesel::sql_types::Text, _>(name)
    .bind::<diesel::sql_types::SmallInt, _>(objsubid)
    .load::<Pid>(conn)
    .expect("read pg_locks")
    .into_iter()
    .map(|p| p.pid)
    .collect()
}

/// A relay's notifications end with its session (`pg_terminate_backend`):
/// it reconnects, also when it holds no shard and so makes no query that
/// would notice (it used to spin until its next rebalance), and rows enqueued
/// afterwards are published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_whose_listening_session_ends_reconnects_even_holding_no_shard() {
    let env = Env::new("relay_listen_ended");
    let mut conn = env.conn();
    // One shard: the first relay holds it; the second, rebalancing only
    // every 10 minutes, holds none and waits for notifications between
    // windows that read nothing.
    let relay = |name: &str, rebalance: Duration| {
        RunningRelay::spawn(
            env.relay_named(name)
                .shards(1)
                .rebalance_interval(rebalance)
                .build()
                .unwrap(),
        )
    };
    let (holder, idle) = (
        env.kafka.unique_name("holder"),
        env.kafka.unique_name("idle"),
    );
    let first = relay(&holder, Duration::from_secs(1));
    wait_until("the first relay holds the shard", RECEIVE_TIMEOUT, || {
        !shard_pids(&mut conn, &holder).is_empty()
    })
    .await;
    let second = relay(&idle, Duration::from_secs(600));
    wait_until("the second relay joins", RECEIVE_TIMEOUT, || {
        !member_pids(&mut conn, &idle).is_empty()
    })
    .await;
    // Its first rebalance (at once on joining) finds the shard taken.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(shard_pids(&mut conn, &idle).is_empty(), "it holds no shard");

    let old = member_pids(&mut conn, &idle);
    assert!(terminate_sessions(&mut conn, &idle) >= 1);
    // Well before its next rebalance, the only query it would make.
    wait_until(
        "the relay holding no shard has a new session",
        Duration::from_secs(20),
        || {
            let pids = member_pids(&mut conn, &idle);
            !pids.is_empty() && pids.iter().all(|pid| !old.contains(pid))
        },
    )
    .await;
    // Its new session rebalances at once, after its membership lock: give it
    // the time to find the shard still taken (else, the holder's session
    // ended meanwhile, it may take the shard and publish instead).
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        shard_pids(&mut conn, &idle).is_empty(),
        "it still holds no shard"
    );
    assert!(!second.is_finished(), "the relay holding no shard runs on");

    // The relay holding the shard: the same, then it publishes.
    let old = member_pids(&mut conn, &holder);
    assert!(terminate_sessions(&mut conn, &holder) >= 1);
    let after = env.message("k", 0);
    enqueue(&mut conn, std::slice::from_ref(&after));
    let mut reader = env.reader();
    reader.read_ids(&[after.id], RECEIVE_TIMEOUT).await;
    let pids = member_pids(&mut conn, &holder);
    assert!(
        !pids.is_empty() && pids.iter().all(|pid| !old.contains(pid)),
        "published on a new session: {pids:?} (terminated {old:?})"
    );
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    let (report, idle_report) = (first.stop().await, second.stop().await);
    assert_eq!(report.published, 1, "{report:?}");
    assert_eq!(idle_report.published, 0, "{idle_report:?}");
}
