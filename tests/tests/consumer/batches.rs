//! Batched apply: a backlog is applied several records per transaction, and
//! a record that fails inside a batch is found and meets its policy alone,
//! the records before it applied, those after it not yet (stop) or after it
//! (dead letter). Duplicates, refusals and panics inside a batch too.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use outbox::{Context, HandlerError, message_controller};
use outbox_diesel::consumer::{Consumer, FailurePolicy};
use outbox_diesel::schema::outbox_inbox;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use super::support::{
    Env, OnTopic, RunningConsumer, TIMEOUT, User, active_stops, applied,
    assert_applied_once_in_order, inbox_offsets, log_apply, quick_retries, read_from_start, round,
    seq_of_user, users, users_of, wait_until,
};

const KEYS: i64 = 40;
const SEQS: i64 = 5;

/// A user `(id, seq)`.
type At = (i64, i64);

/// Applies users; fails one (while `broken`), refuses one, panics on one.
#[derive(Default)]
struct Flaky {
    broken: Arc<AtomicBool>,
    fail: Option<At>,
    refuse: Option<At>,
    panic: Option<At>,
}

#[message_controller(model = User, table = users)]
impl Flaky {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        let at = Some((user.id, user.seq));
        if at == self.fail && self.broken.load(Ordering::SeqCst) {
            return Err(HandlerError::retriable(format!(
                "flaky rejects user {} #{}",
                user.id, user.seq
            )));
        }
        if at == self.refuse {
            return Err(HandlerError::refuse("flaky refuses it"));
        }
        if at == self.panic {
            panic!("flaky panics on user {} #{}", user.id, user.seq);
        }
        Ok(user)
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }
}

/// Writes `SEQS` rounds over `KEYS` users and waits until the relay has
/// published them all: the consumer started next finds a backlog. Returns the
/// records on the topic.
async fn backlog(env: &Env) -> Vec<OwnedMessage> {
    let relay = env.relay();
    let mut producer = env.producer();
    let sent: usize = (0..SEQS)
        .map(|seq| producer.write(&round(1..=KEYS, seq)).len())
        .sum();
    let topic = read_from_start(&env.kafka, &env.topic, "the backlog", sent).await;
    relay.stop().await;
    topic.records.clone()
}

/// Transactions that wrote the inbox (one `processed_at` each) and its rows.
fn inbox_transactions(conn: &mut PgConnection) -> (i64, i64) {
    outbox_inbox::table
        .select((
            diesel::dsl::sql::<diesel::sql_types::BigInt>("count(DISTINCT processed_at)"),
            diesel::dsl::count_star(),
        ))
        .get_result(conn)
        .expect("count the inbox")
}

/// The record of user `at` among `records`.
fn record_at(records: &[OwnedMessage], at: At) -> &OwnedMessage {
    let (key, name) = (at.0.to_string(), format!("\"seq\":{}", at.1));
    records
        .iter()
        .find(|r| {
            r.key() == Some(key.as_bytes())
                && r.payload()
                    .is_some_and(|p| String::from_utf8_lossy(p).contains(&name))
        })
        .unwrap_or_else(|| panic!("no record of user {at:?}"))
}

/// Stop policy: the partition stops on the failing record with everything
/// before it applied and nothing after it, though all of it was waiting in
/// batches; the other partitions are applied in batches; once fixed and
/// resumed, the rest follows in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backlog_is_applied_in_batches_and_a_failing_record_stops_alone() {
    let env = Env::new("consumer_batch_stop");
    let records = backlog(&env).await;
    let poison = (7, 2);
    let stopped_partition = env.partition_of(poison.0);
    let failed_record = record_at(&records, poison);
    let flaky = Flaky {
        broken: Arc::new(AtomicBool::new(true)),
        fail: Some(poison),
        ..Flaky::default()
    };
    let broken = Arc::clone(&flaky.broken);
    let policy = quick_retries(FailurePolicy::stop(), 3);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(flaky, &env.topic), policy.clone()),
    );

    let mut conn = env.consumer_conn();
    let others: Vec<i64> = (1..=KEYS)
        .filter(|k| env.partition_of(*k) != stopped_partition)
        .collect();
    wait_until("the partition stops and the others finish", TIMEOUT, || {
        !active_stops(&mut conn, &env.group).is_empty()
            && others
                .iter()
                .all(|k| seq_of_user(&mut conn, *k) == Some(SEQS - 1))
    })
    .await;
    let stops = active_stops(&mut conn, &env.group);
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(
        (stops[0].kafka_partition, stops[0].kafka_offset),
        (stopped_partition, failed_record.offset())
    );
    assert!(
        stops[0].error.contains("flaky rejects user 7 #2"),
        "{}",
        stops[0].error
    );
    let before: Vec<i64> = (0..failed_record.offset()).collect();
    assert_eq!(inbox_offsets(&mut conn, stopped_partition), before);
    assert_eq!(seq_of_user(&mut conn, poison.0), Some(poison.1 - 1));
    let (transactions, rows) = inbox_transactions(&mut conn);
    assert!(
        transactions * 2 <= rows,
        "a backlog of {rows} records applied in {transactions} transactions: not in batches"
    );
    let first = consumer.stop().await;
    assert_eq!(
        (first.failed, first.stopped, first.retries),
        (1, 1, 2),
        "the failing record was tried alone, 3 times: {first:?}"
    );

    broken.store(false, Ordering::SeqCst);
    let resumed_flaky = Flaky {
        broken,
        fail: Some(poison),
        ..Flaky::default()
    };
    let second = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(resumed_flaky, &env.topic), policy),
    );
    let mut async_conn = env.consumer_db.connect_async().await;
    Consumer::resume(&mut async_conn, &env.group, &env.topic, stopped_partition)
        .await
        .expect("resume")
        .expect("the partition was stopped");
    let expected = users_of(&mut env.producer_conn());
    wait_until("the resumed partition catches up", TIMEOUT, || {
        users_of(&mut conn) == expected
    })
    .await;
    let second = second.stop().await;
    assert_eq!(
        first.processed + second.processed,
        records.len() as u64,
        "{first:?} {second:?}"
    );
    assert_eq!(first.duplicates + second.duplicates, 0);
    let per_key = assert_applied_once_in_order(&applied(&mut conn));
    assert_eq!(per_key[&poison.0], (0..SEQS).collect::<Vec<_>>());
}

/// Dead-letter policy, with a message sent twice, a refusal and a panic in
/// the backlog: each duplicate skipped (also when the original is in the
/// same batch), the refused record acknowledged without its writes, the
/// failing and the panicking records dead-lettered alone, every other record
/// applied once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn duplicates_refusals_and_panics_inside_batches() {
    let mut env = Env::new("consumer_batch_mixed");
    let dlq = env.dead_letter_topic();
    let records = backlog(&env).await;
    let (fail, refuse, panic) = ((9, 3), (11, 2), (13, 1));
    let specials = [fail, refuse, panic];
    // Send again ten records of other users, each to its own partition: its
    // original is a few records before it, in the same batch or an earlier one.
    let resent: Vec<&OwnedMessage> = records
        .iter()
        .filter(|r| {
            let key: i64 = String::from_utf8_lossy(r.key().unwrap_or_default())
                .parse()
                .unwrap_or_default();
            !specials.iter().any(|s| s.0 == key)
        })
        .step_by(records.len() / 10)
        .take(10)
        .collect();
    assert_eq!(resent.len(), 10);
    let producer: FutureProducer = env.kafka.producer_config().create().expect("a producer");
    for record in &resent {
        let mut again = FutureRecord::<[u8], [u8]>::to(&env.topic)
            .partition(record.partition())
            .key(record.key().unwrap_or_default())
            .payload(record.payload().unwrap_or_default());
        if let Some(headers) = rdkafka::Message::headers(*record) {
            again = again.headers(headers.clone());
        }
        producer
            .send(again, Duration::from_secs(30))
            .await
            .unwrap_or_else(|(e, _)| panic!("send again: {e}"));
    }
    let total = records.len() + resent.len();

    let flaky = Flaky {
        broken: Arc::new(AtomicBool::new(true)),
        fail: Some(fail),
        refuse: Some(refuse),
        panic: Some(panic),
    };
    let consumer = RunningConsumer::spawn(env.consumer().controller_with(
        OnTopic::new(flaky, &env.topic),
        quick_retries(FailurePolicy::dead_letter(), 3),
    ));
    let mut conn = env.consumer_conn();
    let dead = read_from_start(&env.kafka, &dlq, "both dead letters", 2).await;
    wait_until("every record is handled", TIMEOUT, || {
        committed_to_the_end(&env)
    })
    .await;
    let report = consumer.stop().await;
    assert_eq!(
        (
            report.processed,
            report.duplicates,
            report.refused,
            report.failed,
            report.dead_lettered,
            report.retries,
        ),
        ((records.len() - 3) as u64, 10, 1, 2, 2, 2),
        "{report:?}"
    );
    assert_eq!(
        report.processed + report.duplicates + report.refused + report.failed,
        total as u64
    );
    let dead_ids: BTreeSet<_> = dead
        .records
        .iter()
        .map(|r| outbox_tests::header(r, outbox::headers::MESSAGE_ID))
        .collect();
    let expected_dead: BTreeSet<_> = [fail, panic]
        .iter()
        .map(|at| outbox_tests::header(record_at(&records, *at), outbox::headers::MESSAGE_ID))
        .collect();
    assert_eq!(dead_ids, expected_dead);

    let per_key = assert_applied_once_in_order(&applied(&mut conn));
    for key in 1..=KEYS {
        let missing: Vec<i64> = specials
            .iter()
            .filter(|s| s.0 == key)
            .map(|s| s.1)
            .collect();
        let expected: Vec<i64> = (1..SEQS).filter(|s| !missing.contains(s)).collect();
        let updates: Vec<i64> = per_key[&key].iter().copied().filter(|s| *s >= 1).collect();
        assert_eq!(updates, expected, "updates applied to user {key}");
    }
    let (transactions, rows) = inbox_transactions(&mut conn);
    assert!(
        transactions * 2 <= rows,
        "a backlog of {rows} records applied in {transactions} transactions: not in batches"
    );
    // A message sent twice is in the inbox once, at its first offset.
    for record in &resent {
        let id = outbox_tests::header(record, outbox::headers::MESSAGE_ID)
            .and_then(|id| id.parse::<uuid::Uuid>().ok())
            .expect("a message id");
        let at: Vec<(i32, i64)> = outbox_inbox::table
            .filter(outbox_inbox::message_id.eq(id))
            .select((outbox_inbox::kafka_partition, outbox_inbox::kafka_offset))
            .load(&mut conn)
            .expect("read the inbox");
        assert_eq!(at, vec![(record.partition(), record.offset())]);
    }
}

/// Whether `group` has committed offsets at the end of every partition of `topic`.
fn committed_to_the_end(env: &Env) -> bool {
    let highs = env.kafka.high_watermarks(&env.topic);
    let probe: BaseConsumer = env
        .kafka
        .consumer_config(&env.group)
        .create()
        .expect("a probe consumer");
    let mut wanted = TopicPartitionList::new();
    for partition in 0..env.partitions {
        wanted.add_partition(&env.topic, partition);
    }
    let Ok(committed) = probe.committed_offsets(wanted, Duration::from_secs(10)) else {
        return false;
    };
    highs.iter().enumerate().all(|(partition, high)| {
        committed
            .find_partition(&env.topic, partition as i32)
            .is_some_and(|p| p.offset() == Offset::Offset(*high))
    })
}
