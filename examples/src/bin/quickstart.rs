//! Quickstart: a producing service saves a user and its messages in one
//! PostgreSQL transaction each, the relay publishes them to Kafka, and a
//! consuming service (its own schema) applies them exactly once through a
//! `#[message_controller]`.
//!
//! Run it with `scripts/quickstart.sh`, which starts the services first.
//! `DATABASE_URL` and `KAFKA_BROKERS` point it at other servers.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use outbox::kafka::KafkaPublisher;
use outbox::{Context, Event, HandlerError, Outboxed, message_controller};
use outbox_diesel::consumer::{self, Consumer};
use outbox_diesel::{Outbox, Relay};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

const PARTITIONS: i32 = 3;
/// The consuming service's schema: its own tables, inbox included.
const CONSUMER_SCHEMA: &str = "quickstart_billing";
/// How long the quickstart waits for the consumer.
const PATIENCE: Duration = Duration::from_secs(60);

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

const USERS_TABLE: &str = "CREATE TABLE IF NOT EXISTS quickstart_users \
    (id bigint PRIMARY KEY, email text NOT NULL, locale text NOT NULL)";

/// The model: a Diesel row that travels as messages in two payload versions.
/// Both services declare it (here they share the declaration).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = quickstart_users, treat_none_as_null = true)]
#[outbox(topic = "quickstart.accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(rename(v1 = "mail", v2 = "email"))]
    email: String,
    #[outbox(since = 2, default)]
    locale: String,
}

/// The consuming service's handling of `users` messages: created and updated
/// upsert into its `quickstart_users`, destroyed deletes; the hooks around them.
struct UsersController;

#[message_controller(model = User, table = quickstart_users)]
impl UsersController {
    /// Runs before the upsert of created and updated users: may change the
    /// record (here: emails are stored lowercase) or refuse it.
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        Ok(User {
            email: user.email.to_lowercase(),
            ..user
        })
    }

    /// Runs after the upsert, in the same transaction.
    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        println!(
            "applied   {} {} of user {} from `{}` ({}[{}] offset {}), inbox row and upsert in one transaction",
            ctx.message_id(),
            ctx.event(),
            user.id,
            ctx.from(),
            ctx.topic(),
            ctx.partition(),
            ctx.offset()
        );
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:54329/outbox_test".into());
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:59092".into());
    println!("postgres: {}", outbox_diesel::mask_password(&database_url));
    println!("kafka:    {brokers}");
    ensure_topic(&brokers).await?;

    // The producing service: its tables and outbox's, then two transactions.
    let mut conn = PgConnection::establish(&database_url)?;
    outbox_diesel::migrations::run(&mut conn)?;
    conn.batch_execute(USERS_TABLE)?;
    let outbox = Outbox::new("accounts");
    let next_id: i64 = diesel::select(diesel::dsl::sql::<diesel::sql_types::BigInt>(
        "coalesce((SELECT max(id) FROM quickstart_users), 0) + 1",
    ))
    .get_result(&mut conn)?;
    let created = conn.transaction(|conn| {
        let user: User = diesel::insert_into(quickstart_users::table)
            .values(&User {
                id: next_id,
                email: "Ada@Example.com".into(),
                locale: "en".into(),
            })
            .get_result(conn)?;
        outbox.enqueue(conn, &user, Event::Created)?;
        Ok::<_, outbox_diesel::Error>(user)
    })?;
    println!(
        "enqueued  created for `{}` (key {}, versions 1,2) in the transaction that inserted user {}",
        User::ROUTE,
        created.partition_key(),
        created.id
    );
    let updated = conn.transaction(|conn| {
        let user: User = diesel::update(quickstart_users::table.find(created.id))
            .set(quickstart_users::locale.eq("fr"))
            .get_result(conn)?;
        outbox.enqueue(conn, &user, Event::Updated)?;
        Ok::<_, outbox_diesel::Error>(user)
    })?;
    println!("enqueued  updated (locale fr) in the transaction that changed it");

    // The relay: reads committed rows, publishes them, deletes what Kafka acknowledged.
    let relay = Relay::builder(&database_url, KafkaPublisher::new(&brokers)?).build()?;
    let (stop_relay, relay_stopped) = tokio::sync::oneshot::channel::<()>();
    let relay = tokio::spawn(relay.run(async {
        relay_stopped.await.ok();
    }));

    // The consuming service, in a schema of its own: outbox's tables (the inbox)
    // and its copy of the users. A fixed group: each run goes on from the last.
    let consumer_url = with_search_path(&database_url, CONSUMER_SCHEMA);
    conn.batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {CONSUMER_SCHEMA}"))?;
    let mut consumer_conn = PgConnection::establish(&consumer_url)?;
    outbox_diesel::migrations::run(&mut consumer_conn)?;
    consumer_conn.batch_execute(USERS_TABLE)?;
    let consumer = Consumer::builder(
        &brokers,
        "outbox-quickstart",
        consumer::pool(&consumer_url, 4)?,
    )
    .controller(UsersController)
    .build()?;
    let (stop_consumer, consumer_stopped) = tokio::sync::oneshot::channel::<()>();
    let consumer = tokio::spawn(consumer.run(async {
        consumer_stopped.await.ok();
    }));

    let expected = User {
        email: updated.email.to_lowercase(),
        ..updated.clone()
    };
    let started = Instant::now();
    let applied = loop {
        let copy: Option<User> = quickstart_users::table
            .find(created.id)
            .select(User::as_select())
            .first(&mut consumer_conn)
            .optional()?;
        if copy.as_ref() == Some(&expected) || started.elapsed() > PATIENCE {
            break copy;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    stop_relay.send(()).ok();
    stop_consumer.send(()).ok();
    let relay_report = relay.await??;
    let consumer_report = consumer.await??;
    println!(
        "relay     published {} message(s); consumer applied {}, skipped {} duplicate(s)",
        relay_report.published, consumer_report.processed, consumer_report.duplicates
    );
    match applied {
        Some(copy) if copy == expected => {
            println!(
                "ok: billing's copy of user {} matches the producer's (email lowercased by its before hook)",
                copy.id
            );
            Ok(())
        }
        other => Err(format!(
            "billing's copy is {other:?} after {PATIENCE:?}, expected {expected:?}"
        )
        .into()),
    }
}

/// `url` with sessions in `schema`.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

async fn ensure_topic(brokers: &str) -> Result<(), BoxError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
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
