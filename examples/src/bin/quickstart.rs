//! Quickstart: one `Message` through the real Kafka.
//!
//! Encodes a message the way the relay will publish it, produces it with the
//! relay's producer settings (idempotent, `acks=all`, Java's partitioner),
//! consumes it with a consumer group, decodes it, and checks it is the same.
//!
//! Run it with `scripts/quickstart.sh`, which starts the services first.
//! `KAFKA_BROKERS` points it at other brokers.

use std::time::Duration;

use futures::StreamExt;
use outbox::{Event, Message, Payloads};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message as _};
use serde_json::json;

const TOPIC: &str = "quickstart.accounts";
const PARTITIONS: i32 = 3;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:59092".into());
    println!("kafka: {brokers}");
    ensure_topic(&brokers).await?;

    // What a producing service writes: a user was created, in two payload versions.
    let mut payloads = Payloads::new(1, json!({"id": 42, "mail": "ada@example.com"}))?;
    payloads.insert(
        2,
        json!({"id": 42, "email": "ada@example.com", "locale": "en"}),
    )?;
    let message = Message::new(Event::Created, "accounts", "users", TOPIC, "42", payloads);
    println!(
        "built     {} {} for `{}` (key {}, versions 1,2)",
        message.id, message.event, message.to, message.partition_key
    );

    let record = message.encode();
    let headers = record
        .headers
        .iter()
        .fold(OwnedHeaders::new(), |headers, (name, value)| {
            headers.insert(Header {
                key: name,
                value: Some(value),
            })
        });
    let producer: FutureProducer = client_config(&brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("partitioner", "murmur2_random")
        .create()?;
    let delivery = producer
        .send(
            FutureRecord::to(TOPIC)
                .key(&record.key)
                .payload(&record.value)
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)?;
    println!(
        "published to {TOPIC}[{}] at offset {} (Java's partitioner picks {} too)",
        delivery.partition,
        delivery.offset,
        outbox::kafka_partition(&record.key, PARTITIONS as u32)
    );

    // What a consuming service does: read, decode, pick the version it knows.
    // A fixed group: each run resumes after the message the previous run committed.
    let consumer: StreamConsumer = client_config(&brokers)
        .set("group.id", "outbox-quickstart")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[TOPIC])?;
    let mut stream = consumer.stream();
    loop {
        let received = tokio::time::timeout(Duration::from_secs(60), stream.next())
            .await
            .map_err(|_| "no message arrived within 60 s")?
            .ok_or("the consumer stream ended")??;
        let headers = received.headers();
        let decoded = Message::decode(
            received.topic(),
            received.key(),
            headers
                .iter()
                .flat_map(|h| h.iter())
                .map(|h| (h.key, h.value)),
            received.payload(),
        )?;
        consumer.commit_message(&received, CommitMode::Sync)?;
        if decoded.id != message.id {
            continue; // an earlier run's message
        }
        let (version, payload) = decoded.payload_for(&[1])?;
        println!(
            "consumed  {} {} from `{}`; a reader knowing only v1 reads v{version}: {payload}",
            decoded.id, decoded.event, decoded.from
        );
        if decoded != message {
            return Err("the decoded message differs from the one sent".into());
        }
        println!("ok: the message came back identical");
        return Ok(());
    }
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

async fn ensure_topic(brokers: &str) -> Result<(), BoxError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let topic = NewTopic::new(TOPIC, PARTITIONS, TopicReplication::Fixed(1));
    for result in admin.create_topics([&topic], &AdminOptions::new()).await? {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(format!("could not create topic {name}: {code}").into());
            }
        }
    }
    Ok(())
}
