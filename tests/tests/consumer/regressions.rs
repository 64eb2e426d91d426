//! Regressions of the consumer fixes from review (a9e17f5): a handler that
//! panics, a record PostgreSQL refuses in the inbox insert, a partition with
//! more records queued than its read-ahead allows, and a rebalance while
//! every partition's record is failing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outbox::{Context, Event, HandlerError, Message, message_controller};
use outbox_diesel::consumer::{Consumer, FailurePolicy, Retry};
use outbox_diesel::{dead_letter, stopped};
use outbox_tests::header;
use rdkafka::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::sync::watch;

use super::support::{
    Env, OnTopic, PARTITIONS, RunningConsumer, TIMEOUT, User, Users, active_stops, applied,
    assert_applied_once_in_order, assert_headers, count_inbox, hooks_by_key, inbox_offsets,
    keys_on, log_apply, log_apply_as, log_hook, message_of, quick_retries, read_from_start, round,
    seq_of_user, users, users_of, wait_for_members, wait_until,
};

// 1. A handler that panics ------------------------------------------------

const PANIC_TEXT: &str = "the ledger is corrupt";
const PANIC_KEYS: i64 = 20;
const PANIC_SEQS: i64 = 4;

/// Panics in `before_update` of one (key, seq) the first time it sees it,
/// after a write in the apply's transaction (logged in `hooks`). The panic
/// message in the test output is expected.
struct Panicky {
    armed: Arc<AtomicBool>,
    poison: (i64, i64),
}

#[message_controller(model = User, table = users)]
impl Panicky {
    async fn before_update(&self, ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        log_hook(ctx, user.id, "before_update").await?;
        if (user.id, user.seq) == self.poison && self.armed.swap(false, Ordering::SeqCst) {
            panic!("{PANIC_TEXT} at user {} #{}", user.id, user.seq);
        }
        Ok(user)
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }
}

/// A handler panics once on one record under `policy` (stop): its partition
/// stops on it at once (no retry, though one would succeed) with the panic in
/// the stop, the panicking transaction rolls back, nothing after it on that
/// partition applies, the other partitions finish; once resumed, everything
/// applies exactly once, in order.
async fn handler_panic_stops_its_partition(test_name: &str, policy: FailurePolicy) {
    let started = Instant::now();
    let env = Env::new(test_name);
    let poison = (5, 2);
    let partition = env.partition_of(poison.0);
    let armed = Arc::new(AtomicBool::new(true));
    let panicky = Panicky {
        armed: Arc::clone(&armed),
        poison,
    };
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(panicky, &env.topic), policy),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let keys: Vec<i64> = (1..=PANIC_KEYS).collect();
    let rounds: Vec<Vec<Message>> = (0..PANIC_SEQS)
        .map(|seq| producer.write(&round(&keys, seq)))
        .collect();
    let total = rounds.iter().map(Vec::len).sum::<usize>();
    let poisoned = &rounds[poison.1 as usize][(poison.0 - 1) as usize];

    let mut conn = env.consumer_conn();
    let others: Vec<i64> = keys
        .iter()
        .copied()
        .filter(|k| env.partition_of(*k) != partition)
        .collect();
    assert!(!others.is_empty() && others.len() < keys.len());
    // Also ends as soon as the record applies: a retry would apply it.
    wait_until("the partition stops and the others finish", TIMEOUT, || {
        (!active_stops(&mut conn, &env.group).is_empty()
            && others
                .iter()
                .all(|k| seq_of_user(&mut conn, *k) == Some(PANIC_SEQS - 1)))
            || seq_of_user(&mut conn, poison.0) >= Some(poison.1)
    })
    .await;
    assert!(!armed.load(Ordering::SeqCst), "the hook never panicked");
    assert_eq!(
        seq_of_user(&mut conn, poison.0),
        Some(poison.1 - 1),
        "the record that panicked was applied: retried after a panic"
    );
    let stops = active_stops(&mut conn, &env.group);
    assert_eq!(stops.len(), 1, "{stops:?}");
    let stop = &stops[0];
    assert_eq!(
        (stop.topic.as_str(), stop.kafka_partition, stop.message_id),
        (env.topic.as_str(), partition, Some(poisoned.id.as_uuid())),
        "{stop:?}"
    );
    assert!(
        stop.error.contains("the handler panicked") && stop.error.contains(PANIC_TEXT),
        "{}",
        stop.error
    );
    assert_eq!(
        inbox_offsets(&mut conn, partition),
        (0..stop.kafka_offset).collect::<Vec<_>>(),
        "partition {partition}: everything before the record, nothing after it"
    );
    // The hook's write of the panicking attempt was rolled back with it.
    let before_update = |seen: Option<i64>| ("before_update".to_owned(), seen);
    assert_eq!(
        hooks_by_key(&mut conn)[&poison.0],
        vec![before_update(None), before_update(Some(0))]
    );

    let mut async_conn = env.consumer_db.connect_async().await;
    let resumed = Consumer::resume(&mut async_conn, &env.group, &env.topic, partition)
        .await
        .expect("resume")
        .expect("the partition was stopped");
    assert_eq!(resumed.id, stop.id);
    wait_until("the resumed partition catches up", TIMEOUT, || {
        count_inbox(&mut conn) == total as i64
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;
    eprintln!("{test_name}: {report:?}; {:?}", started.elapsed());

    assert_eq!(
        (report.failed, report.stopped, report.retries),
        (1, 1, 0),
        "a panic is permanent: no retry: {report:?}"
    );
    assert_eq!(
        (report.processed, report.duplicates),
        (total as u64, 0),
        "{report:?}"
    );
    let log = applied(&mut conn);
    assert_eq!(log.len(), total);
    let per_key = assert_applied_once_in_order(&log);
    for key in &keys {
        assert_eq!(
            per_key[key],
            (0..PANIC_SEQS).collect::<Vec<_>>(),
            "key {key}"
        );
    }
    let redone = log
        .iter()
        .find(|row| row.message_id == poisoned.id.as_uuid())
        .expect("the record that panicked is applied after the resume");
    assert_eq!(
        (redone.kafka_partition, redone.kafka_offset),
        (partition, stop.kafka_offset)
    );
    assert_eq!(
        hooks_by_key(&mut conn)[&poison.0].len() as i64,
        PANIC_SEQS,
        "one hook per committed apply"
    );
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
    assert!(active_stops(&mut conn, &env.group).is_empty());
}

/// 1a. [`handler_panic_stops_its_partition`] with `Retry::none()`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handler_panic_without_retries_stops_its_partition_until_resumed() {
    handler_panic_stops_its_partition(
        "consumer_panic_no_retry",
        FailurePolicy::stop().retry(Retry::none()),
    )
    .await;
}

/// 1b. [`handler_panic_stops_its_partition`] with the default retries (5):
/// the panic is permanent, so the partition stops at once; a retry would have
/// applied the record, since the hook panics only once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn handler_panic_is_permanent_under_the_default_retries() {
    handler_panic_stops_its_partition("consumer_panic_default_retries", FailurePolicy::stop())
        .await;
}

// 2. A value PostgreSQL refuses -------------------------------------------

const NUL_KEYS: i64 = 20;

/// 2a. A message whose `from` holds a NUL byte: `Message::decode` refuses it
/// (PostgreSQL text cannot hold NUL), so it is dead-lettered at once as a
/// decode failure, and the records after it on its partition apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_nul_byte_in_from_is_dead_lettered_and_its_partition_goes_on() {
    refused_from_is_dead_lettered("consumer_nul_from", "acc\0ounts".to_owned(), &[]).await;
}

/// 2b. A `from` too long for the inbox's primary key (a btree row holds at
/// most 2,704 bytes; these hex digits barely compress): it decodes, but
/// PostgreSQL refuses the inbox insert. A refusal of the record, not a
/// database outage: with the dead-letter policy it is tried as often as the
/// policy says and lands in `<topic>.dlq` (kind `handler`), and the records
/// after it on its partition apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_from_too_long_for_the_inbox_is_dead_lettered_after_its_attempts() {
    let from: String = (0..300)
        .map(|_| uuid::Uuid::now_v7().simple().to_string())
        .collect();
    refused_from_is_dead_lettered("consumer_long_from", from, &["index row size"]).await;
}

/// Sends one message with `from` amid two rounds of good ones; checks it is
/// dead-lettered (as a decode failure when decoding refuses it, else as a
/// handler failure whose error holds every one of `database_says`) and the
/// rest applies.
async fn refused_from_is_dead_lettered(test: &str, from: String, database_says: &[&str]) {
    let started = Instant::now();
    let mut env = Env::new(test);
    let dlq = env.dead_letter_topic();
    let policy = quick_retries(FailurePolicy::dead_letter(), 2);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(Users, &env.topic), policy),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let mut conn = env.consumer_conn();
    let keys: Vec<i64> = (1..=NUL_KEYS).collect();
    let first = producer.write(&round(&keys, 0)).len() as i64;
    wait_until("the first round is applied", TIMEOUT, || {
        count_inbox(&mut conn) == first
    })
    .await;

    let partition = env.partition_of(1);
    let key = keys_on(partition, 9_000, 1)[0];
    let mut bad = message_of(&User::new(key, 0), Event::Created, &env.topic);
    bad.from = from;
    let encoded = bad.encode();
    let decoded = Message::decode(
        &env.topic,
        Some(&encoded.key),
        encoded
            .headers
            .iter()
            .map(|(name, value)| (*name, Some(value.as_bytes()))),
        Some(&encoded.value),
    );
    // Should decoding come to refuse it, the record is a decode failure.
    let (kind, errors, attempts): (&str, Vec<String>, u64) = match &decoded {
        Ok(message) => {
            assert_eq!(message.from, bad.from, "`from` survives the round trip");
            assert!(!database_says.is_empty(), "decode should refuse it");
            (
                dead_letter::KIND_HANDLER,
                database_says.iter().map(|t| (*t).to_owned()).collect(),
                2,
            )
        }
        Err(error) => (dead_letter::KIND_DECODE, vec![error.to_string()], 1),
    };
    let kafka: FutureProducer = env.kafka.producer_config().create().expect("a producer");
    let record = FutureRecord::<[u8], [u8]>::to(&env.topic)
        .key(&encoded.key)
        .payload(&encoded.value)
        .headers(outbox::kafka::record_headers(&encoded))
        .partition(partition);
    let delivery = kafka
        .send(record, Duration::from_secs(30))
        .await
        .unwrap_or_else(|(e, _)| panic!("send the record: {e}"));
    let bad_offset = delivery.offset;
    let total = first + producer.write(&round(&keys, 1)).len() as i64;

    let mut dead_letters = read_from_start(&env.kafka, &dlq, "the dead letter", 1).await;
    wait_until("the records after it are applied", TIMEOUT, || {
        count_inbox(&mut conn) == total
    })
    .await;
    dead_letters.read_rest(Duration::from_millis(500)).await;
    let report = consumer.stop().await;
    relay.stop().await;
    eprintln!(
        "{test}: decode {}; {report:?}; {:?}",
        if decoded.is_ok() {
            "accepts"
        } else {
            "refuses"
        },
        started.elapsed()
    );

    assert_eq!(dead_letters.records.len(), 1);
    let letter = &dead_letters.records[0];
    assert_eq!(letter.key(), Some(&encoded.key[..]));
    assert_eq!(letter.payload(), Some(&encoded.value[..]));
    let error = header(letter, dead_letter::ERROR).expect("an error header");
    for text in &errors {
        assert!(
            error.contains(text.as_str()),
            "{error:?} should say {text:?}"
        );
    }
    let (partition_text, offset_text) = (partition.to_string(), bad_offset.to_string());
    let attempts_text = attempts.to_string();
    let id = bad.id.to_string();
    assert_headers(
        letter,
        &[
            (dead_letter::ERROR_KIND, kind),
            (dead_letter::TOPIC, &env.topic),
            (dead_letter::PARTITION, &partition_text),
            (dead_letter::OFFSET, &offset_text),
            (dead_letter::ATTEMPTS, &attempts_text),
            (outbox::headers::MESSAGE_ID, &id),
        ],
    );
    assert_eq!(
        (
            report.failed,
            report.dead_lettered,
            report.stopped,
            report.retries
        ),
        (1, 1, 0, attempts - 1),
        "each refusal is an attempt: {report:?}"
    );
    assert_eq!(report.processed, total as u64, "{report:?}");
    // Its partition: every record but that one, the later ones included.
    let high = env.kafka.high_watermarks(&env.topic)[partition as usize];
    assert!(high > bad_offset + 1, "records follow it on its partition");
    assert_eq!(
        inbox_offsets(&mut conn, partition),
        (0..high).filter(|o| *o != bad_offset).collect::<Vec<_>>()
    );
    assert_applied_once_in_order(&applied(&mut conn));
    assert_eq!(seq_of_user(&mut conn, key), None);
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
}

// 3. Backpressure ---------------------------------------------------------

/// Records on the one partition: about 30 times its read-ahead.
const BACKLOG: i64 = 3_000;
/// Read-ahead of the backpressure test: about a hundred of its records.
const PARTITION_BUFFER: usize = 64 * 1024;

/// Holds the apply of user `gated` until `gate` opens; logs every apply.
struct Gated {
    gated: i64,
    gate: watch::Receiver<bool>,
    held: Arc<AtomicBool>,
}

#[message_controller(model = User, table = users)]
impl Gated {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        if user.id == self.gated {
            self.held.store(true, Ordering::SeqCst);
            let mut gate = self.gate.clone();
            let _ = gate.wait_for(|open| *open).await;
        }
        Ok(user)
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }
}

/// 3. Backpressure: `BACKLOG` records on a one-partition topic, the first
/// held until all of them are on the topic, so the partition's queue passes
/// its read-ahead (`PARTITION_BUFFER` bytes: paused) and later drains below
/// half of it (resumed), again and again. Every record applies once, in offset order, and records
/// sent afterwards apply too: the partition is not left paused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_past_the_read_ahead_applies_in_order() {
    let started = Instant::now();
    let env = Env::with_partitions("consumer_backpressure", 1);
    let (open, gate) = watch::channel(false);
    let held = Arc::new(AtomicBool::new(false));
    let gated = Gated {
        gated: 1,
        gate,
        held: Arc::clone(&held),
    };
    // A small read-ahead (the default is 4 MiB), so the backlog pauses and
    // resumes the partition many times over.
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .partition_buffer(PARTITION_BUFFER)
            .controller(OnTopic::new(gated, &env.topic)),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let keys: Vec<i64> = (1..=BACKLOG).collect();
    let mut total = producer.write(&round(&keys, 0)).len() as i64;
    wait_until(
        "the first record is held and the backlog is on the topic",
        TIMEOUT,
        || held.load(Ordering::SeqCst) && env.kafka.high_watermarks(&env.topic) == [BACKLOG],
    )
    .await;
    let published = started.elapsed();
    open.send_replace(true);
    let mut conn = env.consumer_conn();
    let drained = wait_until("the backlog is applied", TIMEOUT, || {
        count_inbox(&mut conn) == total
    })
    .await;
    total += producer.write(&round(&keys[..10], 1)).len() as i64;
    wait_until("records sent afterwards are applied", TIMEOUT, || {
        count_inbox(&mut conn) == total
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;
    eprintln!(
        "backpressure: {BACKLOG} records published in {published:?}, applied in {drained:?}; \
         {report:?}; {:?}",
        started.elapsed()
    );

    assert_eq!(
        (report.processed, report.duplicates, report.failed),
        (total as u64, 0, 0),
        "{report:?}"
    );
    let log = applied(&mut conn);
    assert_applied_once_in_order(&log);
    assert_eq!(
        log.iter().map(|row| row.kafka_offset).collect::<Vec<_>>(),
        (0..total).collect::<Vec<_>>(),
        "every offset once, in order"
    );
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
}

// 4. A rebalance while records fail ----------------------------------------

/// How long each attempt at a failing record takes before it fails.
const FAILING_ATTEMPT: Duration = Duration::from_secs(3);

/// While `broken`, fails (retriable) its `failing` records, each attempt
/// after `FAILING_ATTEMPT` and once `hold` is open; logs each apply under `name`.
struct Flaky {
    name: String,
    failing: Vec<(i64, i64)>,
    broken: Arc<AtomicBool>,
    hold: watch::Receiver<bool>,
    in_flight: Arc<AtomicUsize>,
    attempts: Arc<AtomicUsize>,
}

#[message_controller(model = User, table = users)]
impl Flaky {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        if !self.broken.load(Ordering::SeqCst) || !self.failing.contains(&(user.id, user.seq)) {
            return Ok(user);
        }
        self.attempts.fetch_add(1, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(FAILING_ATTEMPT).await;
        let mut hold = self.hold.clone();
        let _ = hold.wait_for(|open| *open).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        Err(HandlerError::retriable(format!(
            "{} cannot apply user {} #{} yet",
            self.name, user.id, user.seq
        )))
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply_as(ctx, user.id, Some(user.seq), &self.name).await
    }
}

/// 4. The review's P1 scenario. Consumer a is attempting a failing record on
/// each of the 4 partitions (stop policy, no retry) when b joins the group:
/// a's attempts end after the rebalance took their partitions, so they write
/// no stop; the partitions' new owners (a again, or b) try the records again
/// and stop. Fixed and resumed, the partitions go on; b leaves and a takes
/// every partition back. Every message applies exactly once, per partition in
/// offset order, the tables agree, and no stop is left active.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_while_every_partition_fails_applies_everything_once() {
    let started = Instant::now();
    let env = Env::new("consumer_rebalance_failing");
    let keys: Vec<i64> = (0..PARTITIONS).flat_map(|p| keys_on(p, 1, 3)).collect();
    let failing: Vec<(i64, i64)> = (0..PARTITIONS).map(|p| (keys_on(p, 1, 1)[0], 1)).collect();
    let broken = Arc::new(AtomicBool::new(true));
    let (open, hold) = watch::channel(false);
    let names = [env.kafka.unique_name("a"), env.kafka.unique_name("b")];
    let in_flight = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let attempts = [Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0))];
    let start = |member: usize| {
        let flaky = Flaky {
            name: names[member].clone(),
            failing: failing.clone(),
            broken: Arc::clone(&broken),
            hold: hold.clone(),
            in_flight: Arc::clone(&in_flight[member]),
            attempts: Arc::clone(&attempts[member]),
        };
        RunningConsumer::spawn(
            env.consumer()
                .set("client.id", names[member].as_str())
                .controller_with(
                    OnTopic::new(flaky, &env.topic),
                    FailurePolicy::stop().retry(Retry::none()),
                ),
        )
    };
    let a = start(0);
    let relay = env.relay();
    let mut producer = env.producer();
    let mut total = 0;
    for seq in 0..2 {
        total += producer.write(&round(&keys, seq)).len() as i64;
    }
    wait_until(
        "a is attempting the failing record of every partition",
        TIMEOUT,
        || in_flight[0].load(Ordering::SeqCst) == PARTITIONS as usize,
    )
    .await;
    let b = start(1);
    wait_for_members(&env.kafka, &env.group, &[&names[0], &names[1]]).await;
    let rebalanced = started.elapsed();
    // a lost its partitions (eager rebalance) while attempting: let them fail.
    open.send_replace(true);
    let mut conn = env.consumer_conn();
    wait_until("every partition is stopped", TIMEOUT, || {
        active_stops(&mut conn, &env.group).len() == PARTITIONS as usize
    })
    .await;
    let (a_attempts, b_attempts) = (
        attempts[0].load(Ordering::SeqCst),
        attempts[1].load(Ordering::SeqCst),
    );
    let stops = stopped::list(&mut conn, Some(&env.group), true).expect("list stops");
    assert_eq!(
        stops.len(),
        PARTITIONS as usize,
        "one stop per partition, none by a task that had lost its partition: {stops:#?}"
    );
    assert!(
        b_attempts > 0,
        "b tried the failing records of its partitions"
    );
    assert_eq!(
        a_attempts + b_attempts,
        2 * PARTITIONS as usize,
        "a's attempts before the rebalance, then one by each partition's new owner"
    );
    for stop in &stops {
        let key = failing
            .iter()
            .find(|(k, _)| env.partition_of(*k) == stop.kafka_partition)
            .expect("a failing key on the partition")
            .0;
        assert!(
            stop.error
                .contains(&format!("cannot apply user {key} #1 yet")),
            "{stop:?}"
        );
    }

    broken.store(false, Ordering::SeqCst);
    let mut async_conn = env.consumer_db.connect_async().await;
    for stop in &stops {
        Consumer::resume(
            &mut async_conn,
            &stop.consumer_group,
            &stop.topic,
            stop.kafka_partition,
        )
        .await
        .expect("resume")
        .expect("the partition was stopped");
    }
    total += producer.write(&round(&keys, 2)).len() as i64;
    wait_until("the resumed partitions catch up", TIMEOUT, || {
        count_inbox(&mut conn) == total
    })
    .await;
    let b_report = b.stop().await;
    wait_for_members(&env.kafka, &env.group, &[&names[0]]).await;
    let before_last = total;
    total += producer.write(&round(&keys, 3)).len() as i64;
    wait_until(
        "a applies the last round on every partition",
        TIMEOUT,
        || count_inbox(&mut conn) == total,
    )
    .await;
    let a_report = a.stop().await;
    relay.stop().await;
    eprintln!(
        "rebalance while failing: rebalanced at {rebalanced:?}; attempts a {a_attempts}, \
         b {b_attempts}; a {a_report:?}; b {b_report:?}; {:?}",
        started.elapsed()
    );

    let log = applied(&mut conn);
    assert_eq!(log.len() as i64, total, "each message applied once");
    let per_key = assert_applied_once_in_order(&log);
    for key in &keys {
        assert_eq!(per_key[key], vec![0, 1, 2, 3], "key {key}");
    }
    let high = env.kafka.high_watermarks(&env.topic);
    for partition in 0..PARTITIONS {
        assert_eq!(
            inbox_offsets(&mut conn, partition),
            (0..high[partition as usize]).collect::<Vec<_>>(),
            "partition {partition}: every record"
        );
    }
    assert_eq!(
        a_report.processed + b_report.processed,
        total as u64,
        "a {a_report:?}, b {b_report:?}"
    );
    assert!(
        log.iter().any(|row| row.consumer == names[1]),
        "b applied its partitions once resumed"
    );
    assert!(
        log[before_last as usize..]
            .iter()
            .all(|row| row.consumer == names[0]),
        "a applied the last round alone"
    );
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
    assert!(
        active_stops(&mut conn, &env.group).is_empty(),
        "{:?}",
        active_stops(&mut conn, &env.group)
    );
}
