//! The relay's producer settings: idempotent, acks=all, Java's partitioner.

use std::time::Duration;

use futures::future::join_all;
use outbox::kafka_partition;
use outbox_tests::TestKafka;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

#[tokio::test]
async fn idempotent_producer_acknowledges_keyed_records_with_headers() {
    let kafka = TestKafka::new("idempotent_producer");
    let topic = kafka.create_topic("produce", 4);
    let producer: FutureProducer = kafka.producer_config().create().unwrap();

    // Keys whose partition (of 4) Java's default partitioner picks, computed with
    // Kafka 4.4.0's Utils.murmur2: see outbox's partition tests.
    let java_partitions = [
        ("foobar", 2),
        ("a-little-bit-longer-string", 3),
        ("", 1),
        ("user-42", 0),
    ];
    let mut keys: Vec<String> = java_partitions.iter().map(|(k, _)| k.to_string()).collect();
    keys.extend((0..40).map(|i| format!("user-{i}")));

    let (producer, topic) = (&producer, &topic);
    let sends = keys.iter().flat_map(|key| {
        (0..5).map(move |seq| {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "seq",
                    value: Some(&seq.to_string()),
                })
                .insert(Header {
                    key: "event",
                    value: Some("created"),
                });
            let payload = format!("{key}#{seq}");
            async move {
                let record = FutureRecord::to(topic)
                    .key(key)
                    .payload(&payload)
                    .headers(headers);
                let delivery = producer
                    .send(record, Duration::from_secs(30))
                    .await
                    .unwrap_or_else(|(e, _)| panic!("record {payload} was not acknowledged: {e}"));
                (key.clone(), delivery.partition)
            }
        })
    });
    let deliveries = join_all(sends).await;
    assert_eq!(deliveries.len(), keys.len() * 5);
    producer.flush(Duration::from_secs(10)).unwrap();

    for (key, partition) in &deliveries {
        assert_eq!(
            *partition as u32,
            kafka_partition(key.as_bytes(), 4),
            "key {key:?} went to partition {partition}, not where murmur2 puts it"
        );
    }
    for (key, java) in java_partitions {
        let partition = deliveries.iter().find(|(k, _)| k == key).unwrap().1;
        assert_eq!(
            partition, java,
            "key {key:?}: Java's partitioner picks {java}"
        );
    }
    // Every partition got records: the keys spread.
    for p in 0..4 {
        assert!(
            deliveries.iter().any(|(_, partition)| *partition == p),
            "partition {p} unused"
        );
    }
}

#[test]
fn topics_are_deleted_with_the_test() {
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let kafka = TestKafka::new("deleted_topics");
    let topic = kafka.create_topic("gone", 2);
    let brokers = kafka.brokers().to_owned();
    drop(kafka);

    let probe: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let metadata = probe.fetch_metadata(None, Duration::from_secs(10)).unwrap();
        if !metadata.topics().iter().any(|t| t.name() == topic) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "topic {topic} still exists"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
