//! A `Message` survives Kafka: encoded, produced, consumed, decoded, equal.

use std::time::Duration;

use outbox::{Event, Message, Payloads, TraceContext};
use outbox_tests::TestKafka;
use rdkafka::Message as _;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

use super::support::receive;

#[tokio::test]
async fn message_round_trips_through_kafka() {
    let kafka = TestKafka::new("message_round_trip");
    let topic = kafka.create_topic("accounts", 3);

    let mut payloads = Payloads::new(1, json!({"id": 7, "mail": "ada@example.com"})).unwrap();
    payloads
        .insert(
            2,
            json!({"id": 7, "email": "ada@example.com", "tags": ["a", "é"], "score": 0.1}),
        )
        .unwrap();
    let mut message = Message::new(
        Event::custom("password_reset").unwrap(),
        "accounts",
        "users",
        &topic,
        "7",
        payloads,
    )
    .expect("a valid topic");
    message.trace = Some(
        TraceContext::new(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            None,
        )
        .unwrap(),
    );

    let record = message.encode();
    let headers = outbox::kafka::record_headers(&record);
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(&topic)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .unwrap_or_else(|(e, _)| panic!("send failed: {e}"));

    let consumer: StreamConsumer = kafka
        .consumer_config(&kafka.group("group"))
        .create()
        .unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let received = receive(&consumer, 1).await.remove(0);
    assert!(received.headers().is_some(), "the record has headers");
    let decoded = outbox::kafka::decode_record(&received).unwrap();
    assert_eq!(decoded, message);
}
