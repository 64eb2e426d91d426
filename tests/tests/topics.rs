//! Topic names and topics: enqueue refuses a name Kafka would refuse (as the
//! derive does at compile time), and `outbox_diesel::topics::CreateTopics`
//! makes a model's topic and its `.dlq` on the real broker.

use std::time::Duration;

use diesel::Connection;
use outbox::{Event, Message, Outboxed, Payloads};
use outbox_diesel::Outbox;
use outbox_diesel::topics::{CreateTopics, TopicOutcome, TopicStatus};
use outbox_tests::{TestDb, TestKafka};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use serde_json::json;

fn migrated_db(test: &str) -> TestDb {
    let db = TestDb::new(test);
    outbox_diesel::migrations::run(&mut db.connect()).expect("the migrations run");
    db
}

fn rows(db: &TestDb) -> i64 {
    use diesel::prelude::*;
    outbox_diesel::schema::outbox_messages::table
        .count()
        .get_result(&mut db.connect())
        .expect("count")
}

#[test]
fn enqueue_refuses_a_topic_kafka_would_refuse_and_writes_nothing() {
    let db = migrated_db("topics_enqueue_refused");
    let payloads = Payloads::new(1, json!({"id": 1})).expect("version 1");
    let mut message = Message::new(
        Event::Created,
        "accounts",
        "users",
        "accounts",
        "1",
        payloads,
    )
    .expect("a valid topic");
    // The fields are public: a topic changed after `Message::new` is checked too.
    message.topic = "accounts/eu".to_owned();
    let error = db
        .connect()
        .transaction(|conn| Outbox::new("accounts").enqueue_message(conn, &message))
        .expect_err("refused");
    assert!(
        matches!(
            &error,
            outbox_diesel::Error::Message(outbox::Error::InvalidTopic { .. })
        ),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "invalid topic name \"accounts/eu\": contains '/'; Kafka topic names use only ASCII \
         letters, digits, `.`, `_` and `-`"
    );

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let error = runtime.block_on(async {
        use diesel_async::AsyncConnection;
        let mut conn = db.connect_async().await;
        conn.transaction(async |conn| {
            Outbox::new("accounts")
                .enqueue_message_async(conn, &message)
                .await
        })
        .await
        .expect_err("refused")
    });
    assert!(
        error
            .to_string()
            .starts_with("invalid topic name \"accounts/eu\""),
        "{error}"
    );

    let realtime = db.connect().transaction(|conn| {
        Outbox::new("accounts")
            .realtime("..")
            .channel("lobby", json!({"hello": true}))
            .enqueue(conn)
    });
    let error = realtime.expect_err("refused");
    assert_eq!(
        error.to_string(),
        "invalid topic name \"..\": Kafka does not allow `.` or `..` as a topic name"
    );
    assert_eq!(rows(&db), 0, "nothing was written");
}

/// Deletes `names` (those that exist).
fn delete_topics(brokers: &str, names: &[String]) {
    let Ok(admin) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<AdminClient<DefaultClientContext>>()
    else {
        return;
    };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let _ = futures::executor::block_on(admin.delete_topics(&names, &options));
}

/// Deletes the topics named when dropped.
struct Cleanup(String, Vec<String>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        delete_topics(&self.0, &self.1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_topics_makes_a_models_topic_and_its_dlq_once() {
    #[derive(Outboxed)]
    #[outbox(topic = "outbox_tests.topics_create_users", route = "users")]
    struct User {
        id: i64,
    }
    let kafka = TestKafka::new("topics_create_lib");
    // The model's topic is a constant: start from a cluster without it.
    let names = vec![User::TOPIC.to_owned(), format!("{}.dlq", User::TOPIC)];
    delete_topics(kafka.brokers(), &names);
    let _cleanup = Cleanup(kafka.brokers().to_owned(), names);
    let create = CreateTopics::new(kafka.brokers(), 2, 1).dead_letter(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // A topic just deleted may still be marked for deletion for a moment.
    let first = loop {
        match create.create(&[User::TOPIC]).await {
            Ok(outcomes) if outcomes.iter().all(|o| o.status == TopicStatus::Created) => {
                break outcomes;
            }
            other if std::time::Instant::now() > deadline => panic!("{other:?}"),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    };
    let names: Vec<&str> = first.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, [User::TOPIC, "outbox_tests.topics_create_users.dlq"]);
    let again = create.create(&[User::TOPIC]).await.expect("idempotent");
    assert!(
        again
            .iter()
            .all(|o| o.status == TopicStatus::Exists { partitions: 2 }),
        "{again:?}"
    );

    let refused = CreateTopics::new(kafka.brokers(), 1, 99)
        .create(&[User::TOPIC, "outbox_tests.topics_create_other"])
        .await;
    // The first exists (not an error); the second needs 99 brokers.
    let error = refused.expect_err("a replication factor above the brokers is refused");
    assert_eq!(
        error.to_string(),
        "the brokers refused topic outbox_tests.topics_create_other (InvalidReplicationFactor: \
         more copies than there are brokers); the other one was created or exists"
    );
    let outbox_diesel::Error::TopicsRefused(refused) = error else {
        panic!("not a refusal: {error:?}");
    };
    assert_eq!(
        statuses(refused.outcomes()),
        [(
            User::TOPIC.to_owned(),
            TopicStatus::Exists { partitions: 2 }
        )]
    );
    assert_eq!(refused.refused().len(), 1);
    assert_eq!(
        refused.refused()[0].code,
        RDKafkaErrorCode::InvalidReplicationFactor
    );
    let settings = CreateTopics::new(kafka.brokers(), 0, 1)
        .create(&["x"])
        .await;
    assert_eq!(
        settings.expect_err("0 partitions").to_string(),
        "invalid setting `partitions`: must be at least 1"
    );
}

/// Each topic's name and status (`TopicOutcome` is `#[non_exhaustive]`).
fn statuses(outcomes: &[TopicOutcome]) -> Vec<(String, TopicStatus)> {
    outcomes
        .iter()
        .map(|outcome| (outcome.name.clone(), outcome.status))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_request_creates_what_it_can_and_lists_every_refusal() {
    let kafka = TestKafka::new("topics_mixed");
    // Kafka refuses a name that differs from an existing one only in `.`
    // against `_` (both become `_` in metric names).
    let first = kafka.create_topic("dotted.one", 1);
    let second = kafka.create_topic("dotted.two", 1);
    let fresh = kafka.unique_name("fresh");
    let _cleanup = Cleanup(kafka.brokers().to_owned(), vec![fresh.clone()]);
    let (first_twin, second_twin) = (first.replace('.', "_"), second.replace('.', "_"));
    let error = CreateTopics::new(kafka.brokers(), 1, 1)
        .create(&[&first, &first_twin, &fresh, &second_twin])
        .await
        .expect_err("the colliding names are refused");
    let text = error.to_string();
    eprintln!("{text}");
    let outbox_diesel::Error::TopicsRefused(refused) = error else {
        panic!("not a refusal: {text}");
    };
    let refusals: Vec<(&str, RDKafkaErrorCode)> = refused
        .refused()
        .iter()
        .map(|topic| (topic.name.as_str(), topic.code))
        .collect();
    assert_eq!(
        refusals,
        [
            (first_twin.as_str(), RDKafkaErrorCode::InvalidTopic),
            (second_twin.as_str(), RDKafkaErrorCode::InvalidTopic)
        ]
    );
    assert_eq!(
        statuses(refused.outcomes()),
        [
            (first.clone(), TopicStatus::Exists { partitions: 1 }),
            (fresh.clone(), TopicStatus::Created)
        ]
    );
    assert!(
        text.starts_with(&format!(
            "the brokers refused topics {first_twin} (InvalidTopic: an invalid name, or one that \
             collides with an existing topic (`.` and `_` count as the same)), {second_twin} \
             (InvalidTopic: "
        )),
        "{text}"
    );
    assert!(
        text.ends_with("; the 2 others were created or exist"),
        "{text}"
    );
    // The one created really is there, as asked.
    let again = CreateTopics::new(kafka.brokers(), 1, 1)
        .create(&[&fresh])
        .await
        .expect("exists");
    assert_eq!(again[0].status, TopicStatus::Exists { partitions: 1 });
}
