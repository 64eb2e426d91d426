//! Records that cannot be applied: a handler failing for one key (stop the
//! partition, then resume; or dead-letter, then replay), and garbage on the
//! topic (each policy, with the typed error recorded).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use diesel::prelude::*;
use outbox::{Context, Event, HandlerError, Message, Payloads, message_controller};
use outbox_diesel::consumer::{Consumer, FailurePolicy};
use outbox_diesel::dead_letter;
use outbox_diesel::stopped;
use outbox_tests::{header, headers_of};
use rdkafka::Message as _;
use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use super::support::{
    Change, Env, OnTopic, Producer, RunningConsumer, TIMEOUT, User, active_stops, applied,
    assert_applied_once_in_order, assert_headers, count_inbox, inbox_offsets, log_apply,
    message_of, partition_of, quick_retries, read_from_start, record_of, round, seq_of_user, users,
    users_of, wait_until,
};

const KEYS: i64 = 40;
const SEQS: i64 = 5;

/// Applies users; rejects one (key, seq) while `broken` is set.
struct Ledger {
    broken: Arc<AtomicBool>,
    poison: (i64, i64),
}

impl Ledger {
    /// A ledger that rejects nothing.
    fn healthy() -> Self {
        Ledger {
            broken: Arc::new(AtomicBool::new(false)),
            poison: (0, 0),
        }
    }
}

#[message_controller(model = User, table = users)]
impl Ledger {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        if (user.id, user.seq) == self.poison && self.broken.load(Ordering::SeqCst) {
            return Err(HandlerError::retriable(format!(
                "the ledger rejects user {} #{}",
                user.id, user.seq
            )));
        }
        Ok(user)
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }
}

/// `SEQS` rounds, one transaction each. Returns the messages in the order
/// enqueued.
fn write_rounds(env: &Env) -> Vec<Message> {
    let mut producer = env.producer();
    (0..SEQS)
        .flat_map(|seq| producer.write(&round(1..=KEYS, seq)))
        .collect()
}

fn message_for(sent: &[Message], key: i64, seq: i64) -> &Message {
    let key = key.to_string();
    sent.iter()
        .find(|m| {
            m.partition_key == key && m.payloads.get(1).and_then(|p| p["seq"].as_i64()) == Some(seq)
        })
        .unwrap_or_else(|| panic!("no message for key {key} #{seq}"))
}

/// 4a. Stop policy: the failing key's partition stops on its record (stop
/// recorded with offset, message id and error), the other partitions finish;
/// a consumer started afterwards leaves that partition stopped; once fixed,
/// `Consumer::resume` applies the rest of that partition, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_key_stops_its_partition_until_resumed() {
    let env = Env::new("consumer_stop");
    let poison = (7, 2);
    let stopped_partition = env.partition_of(poison.0);
    let broken = Arc::new(AtomicBool::new(true));
    let policy = quick_retries(FailurePolicy::stop(), 3);
    let consumer = || {
        let ledger = Ledger {
            broken: Arc::clone(&broken),
            poison,
        };
        RunningConsumer::spawn(
            env.consumer()
                .controller_with(OnTopic::new(ledger, &env.topic), policy.clone()),
        )
    };
    let first = consumer();
    let relay = env.relay();
    let mut sent = write_rounds(&env);
    let poisoned = message_for(&sent, poison.0, poison.1).clone();

    let mut conn = env.consumer_conn();
    let others: Vec<i64> = (1..=KEYS)
        .filter(|k| env.partition_of(*k) != stopped_partition)
        .collect();
    assert!(others.len() > 10 && others.len() < KEYS as usize);
    let others_at = |conn: &mut PgConnection, seq: i64| {
        others.iter().all(|k| seq_of_user(conn, *k) == Some(seq))
    };
    wait_until("the partition stops and the others finish", TIMEOUT, || {
        !active_stops(&mut conn, &env.group).is_empty() && others_at(&mut conn, SEQS - 1)
    })
    .await;

    let topic = read_from_start(&env.kafka, &env.topic, "every record", sent.len()).await;
    let failed_record = record_of(&topic.records, poisoned.id);
    let stops = active_stops(&mut conn, &env.group);
    assert_eq!(stops.len(), 1, "{stops:?}");
    let stop = &stops[0];
    assert_eq!(
        (
            stop.topic.as_str(),
            stop.kafka_partition,
            stop.kafka_offset,
            stop.message_id
        ),
        (
            env.topic.as_str(),
            stopped_partition,
            failed_record.offset(),
            Some(poisoned.id.as_uuid())
        ),
        "{stop:?}"
    );
    assert!(
        stop.error.contains("the ledger rejects user 7 #2"),
        "{}",
        stop.error
    );
    assert_eq!(stop.resumed_at, None);
    // That partition applied everything before the record, nothing after it.
    let before: Vec<i64> = (0..failed_record.offset()).collect();
    assert_eq!(inbox_offsets(&mut conn, stopped_partition), before);
    assert_eq!(seq_of_user(&mut conn, poison.0), Some(poison.1 - 1));
    let first = first.stop().await;
    assert_eq!(
        (first.failed, first.stopped, first.retries),
        (1, 1, 2),
        "{first:?}"
    );

    // The stop outlives the consumer: a new one (the cause not fixed yet)
    // applies new messages on the other partitions, not on that one.
    let second = consumer();
    sent.extend(env.producer().write(&round(1..=KEYS, SEQS)));
    wait_until("the new round is applied elsewhere", TIMEOUT, || {
        others_at(&mut conn, SEQS)
    })
    .await;
    assert_eq!(inbox_offsets(&mut conn, stopped_partition), before);

    broken.store(false, Ordering::SeqCst);
    let mut async_conn = env.consumer_db.connect_async().await;
    let resumed = Consumer::resume(&mut async_conn, &env.group, &env.topic, stopped_partition)
        .await
        .expect("resume")
        .expect("the partition was stopped");
    assert_eq!(resumed.id, stop.id);
    let mut producer_conn = env.producer_conn();
    let expected = users_of(&mut producer_conn);
    wait_until("the resumed partition catches up", TIMEOUT, || {
        users_of(&mut conn) == expected
    })
    .await;
    let second = second.stop().await;
    relay.stop().await;

    assert_eq!(
        (second.failed, second.stopped, second.retries),
        (0, 0, 0),
        "the stopped record was not tried before the resume: {second:?}"
    );
    assert_eq!(
        first.processed + second.processed,
        sent.len() as u64,
        "{first:?} {second:?}"
    );
    assert_eq!(first.duplicates + second.duplicates, 0);
    let per_key = assert_applied_once_in_order(&applied(&mut conn));
    assert_eq!(per_key[&poison.0], (0..=SEQS).collect::<Vec<_>>());
    assert!(active_stops(&mut conn, &env.group).is_empty());
    let row = stopped::list(&mut conn, Some(&env.group), true).expect("list stops");
    assert!(row[0].resumed_at.is_some(), "{row:?}");
}

/// 4b. Dead-letter policy: the failing record goes to `<topic>.dlq` unchanged
/// with the error in its headers, the rest applies; once fixed, a replay of
/// the DLQ applies it once, and a second replay is a duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failing_key_is_dead_lettered_then_replayed_once() {
    let mut env = Env::new("consumer_dead_letter");
    let dlq = env.dead_letter_topic();
    let poison = (11, SEQS - 1);
    let broken = Arc::new(AtomicBool::new(true));
    let ledger = Ledger {
        broken: Arc::clone(&broken),
        poison,
    };
    let policy = quick_retries(FailurePolicy::dead_letter(), 2);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(ledger, &env.topic), policy),
    );
    let relay = env.relay();
    let sent = write_rounds(&env);
    let poisoned = message_for(&sent, poison.0, poison.1);

    let mut conn = env.consumer_conn();
    wait_until("everything else is applied", TIMEOUT, || {
        count_inbox(&mut conn) as usize == sent.len() - 1
    })
    .await;
    let dead_letters = read_from_start(&env.kafka, &dlq, "the dead letter", 1).await;
    let topic = read_from_start(&env.kafka, &env.topic, "every record", sent.len()).await;
    let original = record_of(&topic.records, poisoned.id);
    let letter = &dead_letters.records[0];
    assert_eq!(letter.key(), original.key());
    assert_eq!(letter.payload(), original.payload());
    let headers = headers_of(letter);
    let original_headers = headers_of(original);
    assert_eq!(
        &headers[..original_headers.len()],
        &original_headers[..],
        "the original headers first, unchanged"
    );
    let error = header(letter, dead_letter::ERROR).expect("an error header");
    assert!(error.contains("the ledger rejects user 11 #4"), "{error}");
    let partition = original.partition().to_string();
    let offset = original.offset().to_string();
    assert_headers(
        letter,
        &[
            (dead_letter::ERROR_KIND, dead_letter::KIND_HANDLER),
            (dead_letter::TOPIC, &env.topic),
            (dead_letter::PARTITION, &partition),
            (dead_letter::OFFSET, &offset),
            (dead_letter::GROUP, &env.group),
            (dead_letter::ATTEMPTS, "2"),
        ],
    );
    let failed_at = header(letter, dead_letter::FAILED_AT).expect("failed_at");
    chrono::DateTime::parse_from_rfc3339(&failed_at).expect("failed_at is RFC 3339");
    assert_eq!(seq_of_user(&mut conn, poison.0), Some(poison.1 - 1));

    broken.store(false, Ordering::SeqCst);
    let replay_group = env.kafka.group("dlq-replay");
    let replayed = dead_letter::replay(env.kafka.brokers(), &dlq, &replay_group, &[])
        .await
        .expect("replay");
    assert_eq!(replayed.replayed, 1, "{replayed:?}");
    assert_eq!(replayed.topics.get(&env.topic), Some(&1), "{replayed:?}");
    let mut producer = env.producer();
    let expected = users_of(&mut producer.conn);
    wait_until("the replayed record is applied", TIMEOUT, || {
        users_of(&mut conn) == expected
    })
    .await;

    // Replayed again (a fresh replay group reads the DLQ from the start): the
    // inbox skips it. A later message on that key shows it went by.
    let again = dead_letter::replay(env.kafka.brokers(), &dlq, &env.kafka.group("again"), &[])
        .await
        .expect("second replay");
    assert_eq!(again.replayed, 1, "{again:?}");
    producer.write(&[Change::Update(User::new(poison.0, SEQS))]);
    wait_until("the later message is applied", TIMEOUT, || {
        seq_of_user(&mut conn, poison.0) == Some(SEQS)
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    assert_eq!(
        (
            report.failed,
            report.dead_lettered,
            report.stopped,
            report.retries
        ),
        (1, 1, 0, 1),
        "{report:?}"
    );
    assert_eq!(report.duplicates, 1, "the second replay: {report:?}");
    assert_eq!(report.processed, sent.len() as u64 + 1, "{report:?}");
    let log = applied(&mut conn);
    assert_applied_once_in_order(&log);
    assert_eq!(
        log.iter()
            .filter(|row| row.message_id == poisoned.id.as_uuid())
            .count(),
        1
    );
}

/// Raw records on the test topic that no producer of ours would send.
struct Garbage {
    key: String,
    headers: Option<OwnedHeaders>,
    value: Vec<u8>,
    message_id: Option<String>,
}

impl Garbage {
    /// `message` as a producer would send it: its key, headers and value.
    fn sent(message: &Message) -> Self {
        let record = message.encode();
        Garbage {
            key: message.partition_key.clone(),
            headers: Some(outbox::kafka::record_headers(&record)),
            value: record.value,
            message_id: Some(message.id.to_string()),
        }
    }
}

/// Not JSON (with valid headers), no headers at all, a version the model does
/// not know, and a route no controller serves.
fn garbage(env: &Env) -> Vec<(Garbage, &'static str, &'static str)> {
    let valid = |id: i64| message_of(&User::new(id, 0), Event::Created, &env.topic);
    let mut unknown_version = valid(9003);
    unknown_version.payloads = Payloads::new(9, json!({"id": 9003})).unwrap();
    let mut no_controller = valid(9004);
    no_controller.to = "nobody".into();
    vec![
        (
            Garbage {
                value: b"\x00garbage, not JSON".to_vec(),
                ..Garbage::sent(&valid(9001))
            },
            dead_letter::KIND_DECODE,
            "record value is not a JSON envelope",
        ),
        (
            Garbage {
                headers: None,
                message_id: None,
                ..Garbage::sent(&valid(9002))
            },
            dead_letter::KIND_DECODE,
            "header `message_id` is missing",
        ),
        (
            Garbage::sent(&unknown_version),
            dead_letter::KIND_HANDLER,
            "no common payload version: the message carries [9], the reader knows [1]",
        ),
        (
            Garbage::sent(&no_controller),
            dead_letter::KIND_NO_CONTROLLER,
            "no controller serves route `nobody`",
        ),
    ]
}

/// Produces `garbage` to `partition` (or its key's partition); returns its offset.
async fn produce(env: &Env, garbage: &Garbage, partition: Option<i32>) -> (i32, i64) {
    let producer: FutureProducer = env.kafka.producer_config().create().expect("a producer");
    let mut record = FutureRecord::<str, [u8]>::to(&env.topic)
        .key(&garbage.key)
        .payload(&garbage.value)
        .partition(partition.unwrap_or_else(|| partition_of(&garbage.key)));
    if let Some(headers) = &garbage.headers {
        record = record.headers(headers.clone());
    }
    let delivery = producer
        .send(record, Duration::from_secs(30))
        .await
        .unwrap_or_else(|(e, _)| panic!("send garbage: {e}"));
    (delivery.partition, delivery.offset)
}

/// Creates users `1..=keys` and waits until the consumer has applied them
/// all (they are in its inbox); returns how many messages that was.
async fn create_applied(producer: &mut Producer, conn: &mut PgConnection, keys: i64) -> i64 {
    let created = producer.write(&round(1..=keys, 0)).len() as i64;
    wait_until("the first messages are applied", TIMEOUT, || {
        count_inbox(conn) == created
    })
    .await;
    created
}

/// 5a. Garbage with the dead-letter policy: each record goes to the DLQ with
/// the kind and text of its typed error; the messages around them apply.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_is_dead_lettered_with_its_typed_error() {
    let mut env = Env::new("consumer_garbage_dlq");
    let dlq = env.dead_letter_topic();
    let policy = quick_retries(FailurePolicy::dead_letter(), 2);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .failure_policy(policy)
            .controller(OnTopic::new(Ledger::healthy(), &env.topic)),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let mut conn = env.consumer_conn();
    let first = create_applied(&mut producer, &mut conn, 20).await;
    let cases = garbage(&env);
    let mut offsets = Vec::new();
    for (garbage, _, _) in &cases {
        offsets.push(produce(&env, garbage, None).await);
    }
    let second = producer.write(&round(1..=20, 1)).len() as i64;
    let dead_letters = read_from_start(
        &env.kafka,
        &dlq,
        "a dead letter per garbage record",
        cases.len(),
    )
    .await;
    wait_until("the later messages are applied", TIMEOUT, || {
        count_inbox(&mut conn) == first + second
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    for ((garbage, kind, error), (partition, offset)) in cases.iter().zip(&offsets) {
        let letter = dead_letters
            .records
            .iter()
            .find(|r| r.key() == Some(garbage.key.as_bytes()))
            .unwrap_or_else(|| panic!("no dead letter for key {}", garbage.key));
        let what = format!("garbage {}", garbage.key);
        assert_eq!(letter.payload(), Some(&garbage.value[..]), "{what}");
        assert_eq!(
            header(letter, dead_letter::ERROR_KIND).as_deref(),
            Some(*kind),
            "{what}"
        );
        let text = header(letter, dead_letter::ERROR).unwrap_or_default();
        assert!(
            text.contains(error),
            "{what}: {text:?} should say {error:?}"
        );
        assert_eq!(
            header(letter, outbox::headers::MESSAGE_ID),
            garbage.message_id,
            "{what}: original headers kept"
        );
        assert_eq!(
            header(letter, dead_letter::PARTITION),
            Some(partition.to_string()),
            "{what}"
        );
        assert_eq!(
            header(letter, dead_letter::OFFSET),
            Some(offset.to_string()),
            "{what}"
        );
        assert_eq!(
            header(letter, dead_letter::ATTEMPTS).as_deref(),
            Some("1"),
            "{what}"
        );
    }
    assert_eq!(
        (
            report.failed,
            report.dead_lettered,
            report.stopped,
            report.retries
        ),
        (4, 4, 0, 0),
        "{report:?}"
    );
    assert_eq!(report.processed, (first + second) as u64, "{report:?}");
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
}

/// 5b. Garbage with the stop policy (the default): the partitions of the two
/// records stop, each stop recording the typed error (and the message id
/// when a header has it); the other partitions go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn garbage_stops_its_partition_with_its_typed_error() {
    let env = Env::new("consumer_garbage_stop");
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller(OnTopic::new(Ledger::healthy(), &env.topic)),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let mut conn = env.consumer_conn();
    create_applied(&mut producer, &mut conn, KEYS).await;
    let mut cases = garbage(&env).into_iter();
    let (not_json, _, not_json_error) = cases.next().unwrap();
    let (no_headers, _, no_headers_error) = cases.next().unwrap();
    let at_1 = produce(&env, &not_json, Some(1)).await;
    let at_2 = produce(&env, &no_headers, Some(2)).await;
    producer.write(&round(1..=KEYS, 1));
    let others: Vec<i64> = (1..=KEYS)
        .filter(|k| ![1, 2].contains(&env.partition_of(*k)))
        .collect();
    wait_until("two partitions stop and the others finish", TIMEOUT, || {
        active_stops(&mut conn, &env.group).len() == 2
            && others.iter().all(|k| seq_of_user(&mut conn, *k) == Some(1))
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    let stops = active_stops(&mut conn, &env.group);
    let stop_on = |partition: i32| {
        stops
            .iter()
            .find(|s| s.kafka_partition == partition)
            .unwrap_or_else(|| panic!("no stop on partition {partition}: {stops:?}"))
    };
    let (first_stop, second_stop) = (stop_on(1), stop_on(2));
    assert_eq!(first_stop.kafka_offset, at_1.1);
    assert_eq!(
        first_stop.message_id.map(|id| id.to_string()),
        not_json.message_id,
        "the id from the record's header"
    );
    assert!(
        first_stop.error.contains(not_json_error),
        "{}",
        first_stop.error
    );
    assert_eq!(second_stop.kafka_offset, at_2.1);
    assert_eq!(second_stop.message_id, None);
    assert!(
        second_stop.error.contains(no_headers_error),
        "{}",
        second_stop.error
    );
    // Nothing after the garbage on those partitions.
    for (partition, offset) in [at_1, at_2] {
        let applied = inbox_offsets(&mut conn, partition);
        assert!(
            applied.iter().all(|o| *o < offset),
            "partition {partition}: {applied:?}"
        );
    }
    assert_eq!((report.failed, report.stopped), (2, 2), "{report:?}");
}

/// 5c. With `ignore_unknown_routes(true)`, a record whose route no controller
/// serves is acknowledged and counted as ignored: its partition goes on, nothing
/// stops and nothing is dead-lettered. Without it (5a, 5b) it fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn unknown_routes_are_ignored_when_asked() {
    let mut env = Env::new("consumer_unknown_route_ignored");
    let dlq = env.dead_letter_topic();
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .failure_policy(quick_retries(FailurePolicy::dead_letter(), 2))
            .ignore_unknown_routes(true)
            .controller(OnTopic::new(Ledger::healthy(), &env.topic)),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let mut conn = env.consumer_conn();
    let first = create_applied(&mut producer, &mut conn, KEYS).await;
    let (no_controller, kind, _) = garbage(&env).pop().expect("the unknown route case");
    assert_eq!(kind, dead_letter::KIND_NO_CONTROLLER);
    let (partition, offset) = produce(&env, &no_controller, None).await;
    let second = producer.write(&round(1..=KEYS, 1)).len() as i64;
    wait_until("the later messages are applied", TIMEOUT, || {
        count_inbox(&mut conn) == first + second
            && inbox_offsets(&mut conn, partition)
                .iter()
                .any(|o| *o > offset)
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    assert!(active_stops(&mut conn, &env.group).is_empty());
    assert!(
        !inbox_offsets(&mut conn, partition).contains(&offset),
        "the ignored record is not in the inbox"
    );
    assert_eq!(
        (
            report.ignored,
            report.failed,
            report.dead_lettered,
            report.stopped
        ),
        (1, 0, 0, 0),
        "{report:?}"
    );
    let letters = read_from_start(&env.kafka, &dlq, "no dead letter", 0).await;
    assert!(letters.records.is_empty(), "{:?}", letters.records.len());
}
