//! Quickstart: a model saved and its message enqueued in one PostgreSQL
//! transaction, the relay publishing it to Kafka, a consumer reading it back.
//!
//! Run it with `scripts/quickstart.sh`, which starts the services first.
//! `DATABASE_URL` and `KAFKA_BROKERS` point it at other servers.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use outbox::kafka::KafkaPublisher;
use outbox::{Event, Outboxed};
use outbox_diesel::{Outbox, Relay};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::{ClientConfig, Message as _};

const PARTITIONS: i32 = 3;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

mod schema {
    #![allow(missing_docs)] // diesel's `table!` output
    diesel::table! {
        quickstart_users (id) {
            id -> BigInt,
            email -> Text,
            locale -> Text,
        }
    }
}
use schema::quickstart_users;

/// The model: a Diesel row that travels as messages in two payload versions.
#[derive(Debug, Clone, PartialEq, Queryable, Insertable, Outboxed)]
#[diesel(table_name = quickstart_users)]
#[outbox(topic = "quickstart.accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(rename(v1 = "mail", v2 = "email"))]
    email: String,
    #[outbox(since = 2, default)]
    locale: String,
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:54329/outbox_test".into());
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:59092".into());
    println!("postgres: {}", outbox_diesel::mask_password(&database_url));
    println!("kafka:    {brokers}");
    ensure_topic(&brokers).await?;

    // The producing service: its tables and outbox's, then one transaction.
    let mut conn = PgConnection::establish(&database_url)?;
    outbox_diesel::migrations::run(&mut conn)?;
    conn.batch_execute(
        "CREATE TABLE IF NOT EXISTS quickstart_users (id bigint PRIMARY KEY, email text NOT NULL, locale text NOT NULL)",
    )?;
    let outbox = Outbox::new("accounts");
    let next_id: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "coalesce((SELECT max(id) FROM quickstart_users), 0) + 1",
    ))
    .get_result(&mut conn)?;
    let (user, id) = conn.transaction(|conn| {
        let user: User = diesel::insert_into(quickstart_users::table)
            .values(&User {
                id: next_id,
                email: "ada@example.com".into(),
                locale: "en".into(),
            })
            .get_result(conn)?;
        let id = outbox.enqueue(conn, &user, Event::Created)?;
        Ok::<_, outbox_diesel::Error>((user, id))
    })?;
    println!(
        "enqueued  {id} created for `{}` (key {}, versions 1,2) in the transaction that inserted user {}",
        User::ROUTE,
        user.partition_key(),
        user.id
    );

    // The relay: reads committed rows, publishes them, deletes what Kafka acknowledged.
    let publisher = KafkaPublisher::new(&brokers)?;
    let relay = Relay::builder(&database_url, publisher).build()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relay.run(async {
        stopped.await.ok();
    }));

    // The consuming service: read, decode, pick the version it knows.
    // A fixed group: each run resumes after the message the previous run committed.
    let consumer: StreamConsumer = client_config(&brokers)
        .set("group.id", "outbox-quickstart")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[User::TOPIC])?;
    let result = loop {
        let received = tokio::time::timeout(Duration::from_secs(60), consumer.recv())
            .await
            .map_err(|_| "no message arrived within 60 s")??;
        let decoded = outbox::kafka::decode_record(&received)?;
        consumer.commit_message(&received, CommitMode::Sync)?;
        if decoded.id != id {
            continue; // an earlier run's message
        }
        println!(
            "published {}[{}] at offset {} by the relay (Java's partitioner picks {} too)",
            received.topic(),
            received.partition(),
            received.offset(),
            outbox::kafka_partition(decoded.partition_key.as_bytes(), PARTITIONS as u32)
        );
        let (version, payload) = decoded.payload_for(&[1])?;
        let as_v1 = User::from_payload(&decoded.event, version, payload)?;
        println!(
            "consumed  {} {} from `{}`; a reader knowing only v1 reads v{version}: {payload}",
            decoded.id, decoded.event, decoded.from
        );
        let (version, payload) = decoded.payload_for(User::VERSIONS)?;
        let back = User::from_payload(&decoded.event, version, payload)?;
        break if back == user && as_v1.email == user.email {
            Ok(())
        } else {
            Err(format!("the consumed user differs: {back:?} vs {user:?}"))
        };
    };

    stop.send(()).ok();
    let report = relay.await??;
    let waiting: i64 = outbox_diesel::schema::outbox_messages::table
        .count()
        .get_result(&mut conn)?;
    println!(
        "relay     stopped after publishing {} message(s); {waiting} row(s) left in outbox_messages",
        report.published
    );
    result?;
    println!("ok: the user came back identical");
    Ok(())
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config
}

async fn ensure_topic(brokers: &str) -> Result<(), BoxError> {
    let admin: AdminClient<DefaultClientContext> = client_config(brokers).create()?;
    let topic = NewTopic::new(User::TOPIC, PARTITIONS, TopicReplication::Fixed(1));
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
