//! `outbox dlq replay`, and the dead-letter headers under it
//! (`outbox_diesel::dead_letter`).

use std::time::{Duration, Instant};

use outbox::{Event, Message, Payloads};
use outbox_diesel::dead_letter::{self, Failure};
use outbox_tests::TestKafka;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use super::support::{assert_kafka_settings_are_checked, outbox, run, start};

/// The headers as `(name, value)` pairs, values as text.
fn pairs(headers: Option<&impl Headers>) -> Vec<(String, String)> {
    let Some(headers) = headers else {
        return Vec::new();
    };
    (0..headers.count())
        .map(|i| {
            let header = headers.get(i);
            let value = header
                .value
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            (header.key.to_owned(), value.into_owned())
        })
        .collect()
}

fn message(topic: &str, key: &str, n: u32) -> Message {
    let payloads = Payloads::new(1, json!({"id": key, "n": n})).unwrap();
    Message::new(Event::Updated, "billing", "invoices", topic, key, payloads)
        .expect("a valid topic")
}

fn failure<'a>(topic: &'a str, offset: i64, error: &'a str) -> Failure<'a> {
    Failure {
        topic,
        partition: 3,
        offset,
        group: "billing",
        kind: dead_letter::KIND_HANDLER,
        error,
        attempts: 5,
    }
}

#[test]
fn dead_letter_headers_keep_the_original_headers_first() {
    let encoded = message("invoices", "42", 1).encode();
    let original = outbox::kafka::record_headers(&encoded);
    let before = chrono::Utc::now();
    let headers =
        dead_letter::dead_letter_headers(Some(&original), &failure("invoices", 17, "boom: why"));
    let after = chrono::Utc::now();

    let listed = pairs(Some(&headers));
    let originals = pairs(Some(&original));
    assert!(!originals.is_empty());
    assert_eq!(listed[..originals.len()], originals[..], "unchanged, first");
    let added = &listed[originals.len()..];
    let names: Vec<&str> = added.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        names,
        [
            dead_letter::ERROR,
            dead_letter::ERROR_KIND,
            dead_letter::TOPIC,
            dead_letter::PARTITION,
            dead_letter::OFFSET,
            dead_letter::GROUP,
            dead_letter::FAILED_AT,
            dead_letter::ATTEMPTS,
        ]
    );
    assert_eq!(
        names,
        [
            "outbox.dlq.error",
            "outbox.dlq.error_kind",
            "outbox.dlq.topic",
            "outbox.dlq.partition",
            "outbox.dlq.offset",
            "outbox.dlq.group",
            "outbox.dlq.failed_at",
            "outbox.dlq.attempts",
        ],
        "header names are an interface"
    );
    let value = |name: &str| {
        added
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .unwrap()
    };
    assert_eq!(value(dead_letter::ERROR), "boom: why");
    assert_eq!(value(dead_letter::ERROR_KIND), "handler");
    assert_eq!(value(dead_letter::TOPIC), "invoices");
    assert_eq!(value(dead_letter::PARTITION), "3");
    assert_eq!(value(dead_letter::OFFSET), "17");
    assert_eq!(value(dead_letter::GROUP), "billing");
    assert_eq!(value(dead_letter::ATTEMPTS), "5");
    let failed_at = chrono::DateTime::parse_from_rfc3339(value(dead_letter::FAILED_AT)).unwrap();
    let millis = chrono::Duration::milliseconds(1);
    assert!(
        before - millis <= failed_at && failed_at <= after + millis,
        "{failed_at}"
    );

    // A record without headers gets the outbox.dlq.* ones only.
    let bare = dead_letter::dead_letter_headers(None::<&OwnedHeaders>, &failure("t", 0, "e"));
    assert_eq!(bare.count(), 8);
    assert_eq!(bare.get(0).key, dead_letter::ERROR);
}

/// Deletes a topic TestKafka did not create (a `<topic>.dlq`) at the end of the test.
struct DeleteTopic {
    admin: AdminClient<DefaultClientContext>,
    topic: String,
}

impl DeleteTopic {
    fn new(kafka: &TestKafka, topic: String, partitions: i32) -> Self {
        kafka.ensure_shared_topic(&topic, partitions);
        let admin = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", kafka.brokers())
            .create()
            .unwrap();
        DeleteTopic { admin, topic }
    }
}

impl Drop for DeleteTopic {
    fn drop(&mut self) {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        if let Err(e) =
            futures::executor::block_on(self.admin.delete_topics(&[&self.topic], &options))
        {
            eprintln!("warning: could not delete test topic {}: {e}", self.topic);
        }
    }
}

/// Sends `records` (key, value, headers) to `topic` and waits for their acks.
fn produce(kafka: &TestKafka, topic: &str, records: &[(Vec<u8>, Vec<u8>, OwnedHeaders)]) {
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    futures::executor::block_on(async {
        for (key, value, headers) in records {
            let record = FutureRecord::to(topic)
                .key(key)
                .payload(value)
                .headers(headers.clone());
            producer
                .send(record, Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
}

/// The records of `topic` from the start, until `count` have come (and a
/// little longer, to catch any extra one).
fn consume(kafka: &TestKafka, topic: &str, count: usize) -> Vec<OwnedMessage> {
    let consumer: BaseConsumer = kafka
        .consumer_config(&kafka.group("check"))
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let mut records = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_until = None;
    while Instant::now() < deadline && quiet_until.is_none_or(|until| Instant::now() < until) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(record)) => records.push(record.detach()),
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
        if records.len() >= count && quiet_until.is_none() {
            quiet_until = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    records
}

fn replay(kafka: &TestKafka, dlq: &str, group: &str) -> super::support::Finished {
    run(&mut outbox(&[
        "dlq",
        "replay",
        dlq,
        "--group",
        group,
        "--brokers",
        kafka.brokers(),
    ]))
}

#[test]
fn replay_sends_dead_letters_back_once() {
    let kafka = TestKafka::new("cli_dlq_replay");
    let topic = kafka.create_topic("invoices", 4);
    let dlq_name = dead_letter::dlq_topic(&topic);
    let _dlq = DeleteTopic::new(&kafka, dlq_name.clone(), 2);

    let messages: Vec<Message> = ["1", "2", "42"]
        .iter()
        .enumerate()
        .map(|(n, key)| message(&topic, key, n as u32))
        .collect();
    let dead_letters: Vec<_> = messages
        .iter()
        .enumerate()
        .map(|(n, message)| {
            let encoded = message.encode();
            let original = outbox::kafka::record_headers(&encoded);
            let headers = dead_letter::dead_letter_headers(
                Some(&original),
                &failure(&topic, n as i64, "handler: no customer"),
            );
            (encoded.key, encoded.value, headers)
        })
        .collect();
    produce(&kafka, &dlq_name, &dead_letters);

    let group = kafka.group("replay");
    let first = replay(&kafka, &dlq_name, &group);
    assert_eq!(
        first.success(),
        format!("replayed 3 records from {dlq_name}: 3 to {topic}\n")
    );

    let mut replayed = consume(&kafka, &topic, 3);
    assert_eq!(replayed.len(), 3, "{replayed:#?}");
    replayed.sort_by_key(|r| r.key().map(<[u8]>::to_vec));
    for (record, message) in replayed.iter().zip(&messages) {
        let encoded = message.encode();
        assert_eq!(record.key(), Some(&encoded.key[..]));
        assert_eq!(record.payload(), Some(&encoded.value[..]));
        assert_eq!(
            pairs(record.headers()),
            pairs(Some(&outbox::kafka::record_headers(&encoded))),
            "the original headers, in order, no outbox.dlq.* left"
        );
        assert_eq!(outbox::kafka::decode_record(record).unwrap().id, message.id);
        assert_eq!(
            record.partition() as u32,
            outbox::kafka_partition(&encoded.key, 4),
            "the key's partition, as the relay sends it"
        );
    }

    // The offsets were committed: nothing is sent twice.
    let second = replay(&kafka, &dlq_name, &group);
    assert_eq!(
        second.success(),
        format!("nothing to replay: {dlq_name} has no records past the offsets of group {group}\n")
    );

    // A record dead-lettered later, without an `outbox.dlq.topic` header: it goes
    // to the dead-letter topic's name minus `.dlq`, and alone.
    let late = message(&topic, "7", 9).encode();
    produce(
        &kafka,
        &dlq_name,
        &[(
            late.key.clone(),
            late.value.clone(),
            outbox::kafka::record_headers(&late),
        )],
    );
    let third = replay(&kafka, &dlq_name, &group);
    assert_eq!(
        third.success(),
        format!("replayed 1 record from {dlq_name}: 1 to {topic}\n")
    );
    let all = consume(&kafka, &topic, 4);
    assert_eq!(all.len(), 4, "{all:#?}");
    assert!(all.iter().any(|r| r.key() == Some(&b"7"[..])));

    // Another group has its own offsets: it replays everything.
    let other = replay(&kafka, &dlq_name, &kafka.group("other"));
    assert_eq!(
        other.success(),
        format!("replayed 4 records from {dlq_name}: 4 to {topic}\n")
    );
}

#[test]
fn replay_mistakes() {
    let no_brokers = run(&mut outbox(&["dlq", "replay", "x.dlq"]));
    assert_eq!(
        no_brokers.stderr,
        "error: no Kafka brokers: pass --brokers or set KAFKA_BROKERS\n"
    );
    assert_eq!(no_brokers.code, Some(2));

    assert_eq!(
        run(&mut outbox(&["dlq", "replay"])).failure(2),
        "error: the following required arguments were not provided:"
    );
    assert_kafka_settings_are_checked(
        &["dlq", "replay", "x.dlq", "--brokers", "127.0.0.1:1"],
        "kafka-setting",
        "consumer",
    );

    assert_eq!(
        run(&mut outbox(&[
            "dlq",
            "replay",
            "no such",
            "--brokers",
            "127.0.0.1:1"
        ]))
        .one_line_failure(),
        "error: dead-letter replay: \"no such\" is not a Kafka topic name"
    );

    let kafka = TestKafka::new("cli_dlq_replay_mistakes");
    let missing = kafka.unique_name("missing");
    let finished =
        run(outbox(&["dlq", "replay", &format!("{missing}.dlq")])
            .env("KAFKA_BROKERS", kafka.brokers()));
    assert_eq!(
        finished.one_line_failure(),
        format!(
            "error: dead-letter replay: no topic {missing}.dlq at {}",
            kafka.brokers()
        )
    );
}

#[test]
fn unreachable_brokers_are_named() {
    let finished = start(&mut outbox(&[
        "dlq",
        "replay",
        "x.dlq",
        "--brokers",
        "127.0.0.1:1",
    ]))
    .wait(Duration::from_secs(30));
    let line = finished.one_line_failure();
    assert!(
        line.starts_with(
            "error: Kafka at 127.0.0.1:1: connection refused (is a broker listening on that port?): "
        ),
        "{line}"
    );
}
