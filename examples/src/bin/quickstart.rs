//! Quickstart: a producing service saves a user and its messages in one
//! PostgreSQL transaction each, the relay publishes them to Kafka, and a
//! consuming service (its own schema) applies them exactly once through a
//! `#[message_controller]`. The user's first invoice travels as Avro: the
//! relay registers its schema in the schema registry and the consumer reads it
//! back with the writer's schema.
//!
//! Run it with `scripts/quickstart.sh`, which starts the services first.
//! `DATABASE_URL`, `KAFKA_BROKERS` and `SCHEMA_REGISTRY_URL` point it at other
//! servers.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use outbox::kafka::KafkaPublisher;
use outbox::{Context, Event, HandlerError, Outboxed, message_controller};
use outbox_diesel::consumer::{self, Consumer};
use outbox_diesel::registry::SchemaRegistry;
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
    diesel::table! {
        quickstart_invoices (id) {
            id -> BigInt,
            user_id -> BigInt,
            total_cents -> BigInt,
            currency -> Text,
        }
    }
}
use schema::{quickstart_invoices, quickstart_users};

const TABLES: &str = "CREATE TABLE IF NOT EXISTS quickstart_users \
    (id bigint PRIMARY KEY, email text NOT NULL, locale text NOT NULL); \
    CREATE TABLE IF NOT EXISTS quickstart_invoices \
    (id bigint PRIMARY KEY, user_id bigint NOT NULL, total_cents bigint NOT NULL, currency text NOT NULL)";

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

/// A model sent as Avro: one datum of its highest version in the Confluent wire
/// format; its schema goes to the registry (subject `quickstart.invoices-value`).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = quickstart_invoices)]
#[outbox(
    topic = "quickstart.invoices",
    route = "invoices",
    versions = [1, 2],
    partition_key = user_id,
    format = "avro"
)]
struct Invoice {
    id: i64,
    user_id: i64,
    total_cents: i64,
    #[outbox(since = 2, default = euro)]
    currency: String,
}

fn euro() -> String {
    "EUR".into()
}

/// The consuming service's handling of `invoices` messages: the built-in upsert,
/// and a line printed after it.
struct InvoicesController;

#[message_controller(model = Invoice, table = quickstart_invoices)]
impl InvoicesController {
    async fn after_update(
        &self,
        ctx: &mut Context<'_>,
        invoice: &Invoice,
    ) -> Result<(), HandlerError> {
        let message = ctx.message();
        println!(
            "applied   {} {} of invoice {} ({} {}) read from Avro with the writer's schema (registry id {}, version {})",
            message.id,
            message.event,
            invoice.id,
            invoice.total_cents,
            invoice.currency,
            message.payloads.avro_schema_id().unwrap_or_default(),
            message.payloads.versions().next().unwrap_or_default(),
        );
        Ok(())
    }
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
    // The registry of `scripts/services.sh` unless `SCHEMA_REGISTRY_URL` names another.
    let registry = match std::env::var_os("SCHEMA_REGISTRY_URL") {
        Some(_) => SchemaRegistry::from_env()?,
        None => SchemaRegistry::builder("http://127.0.0.1:58086/apis/ccompat/v7").build()?,
    };
    println!("postgres: {}", outbox_diesel::mask_password(&database_url));
    println!("kafka:    {brokers}");
    println!("registry: {}", registry.url());
    ensure_topics(&brokers).await?;

    // The producing service: its tables and outbox's, then two transactions.
    let mut conn = PgConnection::establish(&database_url)?;
    outbox_diesel::migrations::run(&mut conn)?;
    conn.batch_execute(TABLES)?;
    let outbox = Outbox::new("accounts");
    // The Avro model's schema row, written ahead (enqueue writes it too).
    outbox.store_schema::<Invoice>(&mut conn)?;
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
    let invoice = conn.transaction(|conn| {
        let invoice: Invoice = diesel::insert_into(quickstart_invoices::table)
            .values(&Invoice {
                id: created.id,
                user_id: created.id,
                total_cents: 4_990,
                currency: "EUR".into(),
            })
            .get_result(conn)?;
        outbox.enqueue(conn, &invoice, Event::Created)?;
        Ok::<_, outbox_diesel::Error>(invoice)
    })?;
    println!(
        "enqueued  created for `{}` as Avro (version 2, schema id 0 until the relay registers it) in the transaction that inserted invoice {}",
        Invoice::ROUTE,
        invoice.id
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
    // With the registry, it registers the Avro schema once and writes its id.
    let relay = Relay::builder(&database_url, KafkaPublisher::new(&brokers)?)
        .schema_registry(registry.clone())
        .build()?;
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
    consumer_conn.batch_execute(TABLES)?;
    let consumer = Consumer::builder(
        &brokers,
        "outbox-quickstart",
        consumer::pool(&consumer_url, 4)?,
    )
    .controller(UsersController)
    .controller(InvoicesController)
    .schema_registry(registry)
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
    let (applied, invoice_copy) = loop {
        let copy: Option<User> = quickstart_users::table
            .find(created.id)
            .select(User::as_select())
            .first(&mut consumer_conn)
            .optional()?;
        let invoice_copy: Option<Invoice> = quickstart_invoices::table
            .find(invoice.id)
            .select(Invoice::as_select())
            .first(&mut consumer_conn)
            .optional()?;
        let done = copy.as_ref() == Some(&expected) && invoice_copy.as_ref() == Some(&invoice);
        if done || started.elapsed() > PATIENCE {
            break (copy, invoice_copy);
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
    match (applied, invoice_copy) {
        (Some(copy), Some(invoice_copy)) if copy == expected && invoice_copy == invoice => {
            println!(
                "ok: billing's copies of user {} (email lowercased by its before hook) and of its invoice (Avro) match the producer's",
                copy.id
            );
            Ok(())
        }
        (user, invoice_copy) => Err(format!(
            "billing's copies are {user:?} and {invoice_copy:?} after {PATIENCE:?}, \
             expected {expected:?} and {invoice:?}"
        )
        .into()),
    }
}

/// `url` with sessions in `schema`.
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

async fn ensure_topics(brokers: &str) -> Result<(), BoxError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()?;
    let topics = [User::TOPIC, Invoice::TOPIC]
        .map(|topic| NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1)));
    for result in admin.create_topics(&topics, &AdminOptions::new()).await? {
        match result {
            Ok(_) | Err((_, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(format!("could not create topic {name}: {code}").into());
            }
        }
    }
    Ok(())
}
