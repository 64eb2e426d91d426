//! Consumer groups with manual commits: per-key order, and resuming exactly
//! after the last commit.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::future::join_all;
use outbox_tests::TestKafka;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use super::support::{assert_nothing_more, receive};

const KEYS: usize = 8;
const PER_KEY: usize = 25;
const TOTAL: usize = KEYS * PER_KEY;

fn key_and_seq(record: &OwnedMessage) -> (String, usize) {
    let key = String::from_utf8(record.key().unwrap().to_vec()).unwrap();
    let seq = std::str::from_utf8(record.payload().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    (key, seq)
}

/// Checks per-key order: each key's sequence numbers continue from `next`.
fn assert_in_key_order(records: &[OwnedMessage], next: &mut HashMap<String, usize>) {
    for record in records {
        let (key, seq) = key_and_seq(record);
        let expected = next.entry(key.clone()).or_insert(0);
        assert_eq!(
            seq, *expected,
            "key {key}: got #{seq}, expected #{expected}"
        );
        *expected += 1;
    }
}

#[tokio::test]
async fn group_member_resumes_exactly_after_the_commit() {
    let kafka = TestKafka::new("consumer_group_resume");
    let topic = kafka.create_topic("resume", 4);
    let group = kafka.group("group");

    // Produce in sequence per key; keys interleave.
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    for seq in 0..PER_KEY {
        let sends = (0..KEYS).map(|k| {
            let key = format!("key-{k}");
            let payload = seq.to_string();
            let producer = &producer;
            let topic = &topic;
            async move {
                producer
                    .send(
                        FutureRecord::to(topic).key(&key).payload(&payload),
                        Duration::from_secs(30),
                    )
                    .await
                    .unwrap_or_else(|(e, _)| panic!("send failed: {e}"));
            }
        });
        join_all(sends).await;
    }

    // The first member reads part of the topic, commits what it processed, leaves.
    let first: StreamConsumer = kafka.consumer_config(&group).create().unwrap();
    first.subscribe(&[&topic]).unwrap();
    let processed = receive(&first, TOTAL / 2).await;
    let mut next_seq = HashMap::new();
    assert_in_key_order(&processed, &mut next_seq);

    let mut committed: BTreeMap<i32, i64> = BTreeMap::new();
    for record in &processed {
        committed.insert(record.partition(), record.offset() + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for (&partition, &offset) in &committed {
        offsets
            .add_partition_offset(&topic, partition, Offset::Offset(offset))
            .unwrap();
    }
    first.commit(&offsets, CommitMode::Sync).unwrap();
    drop(offsets);
    drop(first);

    // A new member of the same group starts exactly at the committed offsets.
    let second: StreamConsumer = kafka.consumer_config(&group).create().unwrap();
    second.subscribe(&[&topic]).unwrap();
    let rest = receive(&second, TOTAL - processed.len()).await;
    assert_in_key_order(&rest, &mut next_seq);
    let mut first_offsets: BTreeMap<i32, i64> = BTreeMap::new();
    for record in &rest {
        first_offsets
            .entry(record.partition())
            .or_insert(record.offset());
    }
    for (partition, first_offset) in &first_offsets {
        let expected = committed.get(partition).copied().unwrap_or(0);
        assert_eq!(
            *first_offset, expected,
            "partition {partition}: resumed at {first_offset}, committed {expected}"
        );
    }
    assert!(
        next_seq.values().all(|&n| n == PER_KEY),
        "every record seen once: {next_seq:?}"
    );
    assert_nothing_more(&second, Duration::from_secs(2)).await;
}

#[tokio::test]
async fn groups_are_deleted_with_the_test() {
    use rdkafka::consumer::BaseConsumer;

    let kafka = TestKafka::new("deleted_groups");
    let topic = kafka.create_topic("groups", 1);
    let group = kafka.group("group");
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(&topic).key("k").payload("v"),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("send failed: {e}"));
    let consumer: StreamConsumer = kafka.consumer_config(&group).create().unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let record = receive(&consumer, 1).await.remove(0);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(
            &topic,
            record.partition(),
            Offset::Offset(record.offset() + 1),
        )
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();
    drop(offsets);
    drop(consumer);
    let brokers = kafka.brokers().to_owned();
    drop(kafka);

    let probe: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let groups = probe
        .fetch_group_list(Some(&group), Duration::from_secs(10))
        .unwrap();
    let states: Vec<String> = groups
        .groups()
        .iter()
        .map(|g| g.state().to_owned())
        .collect();
    assert!(
        states.iter().all(|s| s == "Dead"),
        "group {group} is still there: {states:?}"
    );
}
