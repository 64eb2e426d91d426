//! Least-privilege roles: three login roles of the test's own get exactly the
//! GRANTs `outbox_diesel::roles::Roles` prints for a test schema (plus, as a
//! user would, the grants of their own business tables), then each part runs
//! as its role through a full flow, and PostgreSQL refuses what the role was
//! not granted.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use outbox::kafka::KafkaPublisher;
use outbox::{Context, Event, HandlerError, Message, Outboxed, Payloads, message_controller};
use outbox_diesel::consumer::{Consumer, FailurePolicy, Retry};
use outbox_diesel::roles::Roles;
use outbox_diesel::schema::{outbox_inbox, outbox_messages};
use outbox_diesel::{Outbox, Relay, ops, stopped};
use outbox_tests::{
    OnTopic, RunningConsumer, RunningRelay, TestDb, TestKafka, TopicReader, consumer_test_settings,
    database_url, relay_test_settings,
};

const TIMEOUT: Duration = Duration::from_secs(60);
const PRODUCER: &str = "roles-tests";

/// A refusal of PostgreSQL's for lack of a grant.
const DENIED: &str = "permission denied";

/// The business tables (a private module: `table!` makes public items).
mod tables {
    diesel::table! {
        users (id) {
            id -> BigInt,
            email -> Text,
        }
    }

    diesel::table! {
        /// A business table of the producer's the relay must not read.
        orders (id) {
            id -> BigInt,
            user_id -> BigInt,
        }
    }
}

use tables::{orders, users};

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "outbox_roles_tests_users")]
struct User {
    id: i64,
    email: String,
}

/// An Avro model: its enqueue also writes `outbox_schemas`.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(
    topic = "outbox_roles_tests_avro",
    route = "avro_users",
    format = "avro"
)]
struct AvroUser {
    id: i64,
}

/// What the consumer enqueues after applying a user: a follow-up message.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_roles_tests_welcomes", route = "welcomes")]
struct Welcome {
    id: i64,
}

/// The id of the user the consumer refuses, stopping its partition.
const REFUSED_USER: i64 = 13;

struct Users;

#[message_controller(model = User, table = users)]
impl Users {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        if user.id == REFUSED_USER {
            return Err(HandlerError::permanent("user 13 is refused"));
        }
        Ok(user)
    }

    async fn after_create(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        ctx.enqueue(&Welcome { id: user.id }, Event::Created)
            .await?;
        Ok(())
    }
}

/// Three login roles named after the schema, with the generated GRANTs on
/// it; the grants are revoked and the roles dropped at the end.
struct TestRoles {
    app: String,
    relay: String,
    consumer: String,
    grants: String,
}

impl TestRoles {
    fn on(db: &TestDb) -> Self {
        let schema = db.schema();
        // Made before the roles, so a failure below still drops them.
        let mut roles = TestRoles {
            app: format!("{schema}_app"),
            relay: format!("{schema}_relay"),
            consumer: format!("{schema}_consumer"),
            grants: String::new(),
        };
        let mut conn = db.connect();
        for role in roles.names() {
            conn.batch_execute(&format!("CREATE ROLE \"{role}\" LOGIN"))
                .unwrap_or_else(|e| panic!("create role {role}: {e}"));
        }
        roles.grants = printed_grants(schema, &roles.app, &roles.relay, &roles.consumer);
        conn.batch_execute(&roles.grants)
            .unwrap_or_else(|e| panic!("the printed grants apply: {e}\n{}", roles.grants));
        roles
    }

    fn names(&self) -> [&str; 3] {
        [&self.app, &self.relay, &self.consumer]
    }
}

impl Drop for TestRoles {
    fn drop(&mut self) {
        let mut conn = match PgConnection::establish(&database_url()) {
            Ok(conn) => conn,
            Err(e) => return eprintln!("warning: could not drop test roles: {e}"),
        };
        for role in self.names() {
            // DROP OWNED revokes the role's grants, which would keep DROP ROLE from working.
            let dropped = conn.batch_execute(&format!(
                "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN \
                     DROP OWNED BY \"{role}\"; DROP ROLE \"{role}\"; END IF; END $$"
            ));
            if let Err(e) = dropped {
                eprintln!("warning: could not drop test role {role}: {e}");
            }
        }
    }
}

/// What `outbox migrations print --roles` prints for these names, checked
/// against the library's [`Roles::grants`].
fn printed_grants(schema: &str, app: &str, relay: &str, consumer: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_outbox-cli"))
        .args(["migrations", "print", "--roles", "--schema", schema])
        .args([
            "--app-role",
            app,
            "--relay-role",
            relay,
            "--consumer-role",
            consumer,
        ])
        .output()
        .expect("run outbox migrations print --roles");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    assert!(
        output.status.success(),
        "outbox migrations print --roles failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let library = Roles::new()
        .schema(schema)
        .app_role(app)
        .relay_role(relay)
        .consumer_role(consumer)
        .grants()
        .expect("the grants print");
    assert_eq!(stdout, library);
    stdout
}

/// `db`'s URL (its schema as `search_path`) as `role`: the test cluster trusts
/// local connections, so the user name is all it takes.
fn url_as(db: &TestDb, role: &str) -> String {
    outbox_tests::secure::with_user(db.url(), role)
}

fn connect_as(db: &TestDb, role: &str) -> PgConnection {
    PgConnection::establish(&url_as(db, role)).unwrap_or_else(|e| panic!("connect as {role}: {e}"))
}

/// The error of `result`, which must be a refusal for lack of a grant.
fn assert_denied<T: std::fmt::Debug>(what: &str, result: QueryResult<T>) {
    match result {
        Err(e) => assert!(e.to_string().contains(DENIED), "{what}: {e}"),
        Ok(value) => panic!("{what} was allowed ({value:?})"),
    }
}

/// The message `event` of `user` makes, sent to `topic` instead of the model's.
fn message_of(user: &User, event: Event, topic: &str) -> Message {
    let payload = user.to_payload(&event, 1).expect("the model serializes");
    Message::new(
        event,
        PRODUCER,
        User::ROUTE,
        topic,
        user.partition_key(),
        Payloads::new(1, payload).expect("version 1"),
    )
    .expect("a valid topic")
}

fn user(id: i64) -> User {
    User {
        id,
        email: format!("user{id}@example.com"),
    }
}

/// A schema with the outbox tables, `users` and `orders`.
fn migrated(name: &str) -> TestDb {
    let db = TestDb::new(name);
    let mut conn = db.connect();
    outbox_diesel::migrations::run(&mut conn).expect("the outbox migrations run");
    conn.batch_execute(
        "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL);
         CREATE TABLE orders (id bigserial PRIMARY KEY, user_id bigint NOT NULL);",
    )
    .expect("create the business tables");
    db
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < TIMEOUT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count_outbox(conn: &mut PgConnection) -> QueryResult<i64> {
    outbox_messages::table.count().get_result(conn)
}

#[test]
fn the_app_role_may_enqueue_and_nothing_else_of_the_outbox() {
    let db = migrated("roles_app");
    let roles = TestRoles::on(&db);
    let mut owner = db.connect();
    owner
        .batch_execute(&format!(
            "GRANT INSERT ON users, orders TO \"{0}\";
             GRANT USAGE ON SEQUENCE orders_id_seq TO \"{0}\";",
            roles.app
        ))
        .expect("the app's own grants");

    let mut app = connect_as(&db, &roles.app);
    let outbox = Outbox::new(PRODUCER);
    app.transaction(|conn| {
        let created = user(1);
        diesel::insert_into(users::table)
            .values(&created)
            .execute(conn)?;
        diesel::insert_into(orders::table)
            .values(orders::user_id.eq(1))
            .execute(conn)?;
        outbox.enqueue(conn, &created, Event::Created)?;
        outbox.enqueue_message(conn, &message_of(&created, Event::Updated, "roles_tests_x"))?;
        outbox.enqueue(conn, &AvroUser { id: 1 }, Event::Created)?;
        Ok::<_, outbox_diesel::Error>(())
    })
    .expect("the app writes its tables and enqueues in one transaction");
    // Its schema row is there now: a second Avro enqueue meets it (no SELECT needed).
    app.transaction(|conn| outbox.enqueue(conn, &AvroUser { id: 2 }, Event::Created))
        .expect("an Avro enqueue over an existing schema row");
    assert_eq!(count_outbox(&mut owner), Ok(4));

    assert_denied("SELECT from the outbox", count_outbox(&mut app));
    assert_denied(
        "DELETE from the outbox",
        diesel::delete(outbox_messages::table).execute(&mut app),
    );
    assert_denied(
        "UPDATE of the outbox",
        diesel::update(outbox_messages::table)
            .set(outbox_messages::attempts.eq(9))
            .execute(&mut app),
    );
    assert_denied("`outbox status`", ops::status(&mut app).map_err(database));
    assert_denied(
        "writing the inbox",
        diesel::insert_into(outbox_inbox::table)
            .values((
                outbox_inbox::source.eq("x"),
                outbox_inbox::message_id.eq(uuid::Uuid::nil()),
                outbox_inbox::topic.eq("t"),
                outbox_inbox::kafka_partition.eq(0),
                outbox_inbox::kafka_offset.eq(0i64),
            ))
            .execute(&mut app),
    );
    assert_eq!(count_outbox(&mut owner), Ok(4));
    drop(roles);
}

/// `error` as the query error it wraps.
fn database(error: outbox_diesel::Error) -> diesel::result::Error {
    match error {
        outbox_diesel::Error::Database(e) => e,
        other => panic!("not a database error: {other}"),
    }
}

#[tokio::test]
async fn the_relay_role_publishes_parks_and_reads_no_business_table() {
    let db = migrated("roles_relay");
    let roles = TestRoles::on(&db);
    let kafka = TestKafka::new("roles_relay");
    let topic = kafka.create_topic("users", 2);
    let mut reader = TopicReader::from_start(&kafka, &topic);
    let mut owner = db.connect();
    let outbox = Outbox::new(PRODUCER);
    let oversized = Message::new(
        Event::Created,
        PRODUCER,
        User::ROUTE,
        &topic,
        "big",
        Payloads::new(1, serde_json::json!({ "blob": "x".repeat(20_000) })).expect("version 1"),
    )
    .expect("a valid topic");
    owner
        .transaction(|conn| {
            for id in 1..=5 {
                outbox.enqueue_message(conn, &message_of(&user(id), Event::Created, &topic))?;
            }
            outbox.enqueue_message(conn, &oversized)?;
            Ok::<_, outbox_diesel::Error>(())
        })
        .expect("enqueue commits");

    // Two relays share the shards through advisory locks, as the relay role;
    // their brokers refuse records over 10,000 bytes, so the relay parks one.
    let relay_url = url_as(&db, &roles.relay);
    let relays: Vec<RunningRelay> = (0..2)
        .map(|_| {
            let publisher = KafkaPublisher::builder(kafka.brokers())
                .set("message.max.bytes", "10000")
                .build()
                .expect("a publisher");
            let relay = relay_test_settings(Relay::builder(&relay_url, publisher))
                .shards(4)
                .build()
                .expect("the relay builds");
            RunningRelay::spawn(relay)
        })
        .collect();
    reader
        .read_until("the 5 messages", TIMEOUT, |records| records.len() >= 5)
        .await;
    let mut relay = connect_as(&db, &roles.relay);
    let parked =
        |conn: &mut PgConnection| ops::parked(conn, 10).expect("`parked list` as the relay");
    wait_until("the oversized row parked", || parked(&mut relay).len() == 1).await;
    // The acknowledged rows are deleted with the relay's next read.
    wait_until("only the parked row left", || {
        count_outbox(&mut owner) == Ok(1)
    })
    .await;

    // `outbox status`, `parked retry` and `parked discard` as the relay role.
    let status = ops::status(&mut relay).expect("`status` as the relay");
    assert_eq!((status.waiting, status.parked), (0, 1), "{status:?}");
    let retried = ops::retry_parked(&mut relay, &ops::Selection::All).expect("retry");
    assert_eq!(retried.count, 1);
    wait_until("the row parked again", || parked(&mut relay).len() == 1).await;
    let discarded = ops::discard_parked(&mut relay, &ops::Selection::All).expect("discard");
    assert_eq!(discarded.count, 1);
    assert_eq!(count_outbox(&mut owner), Ok(0));

    let mut published = 0;
    for relay in relays {
        published += relay.stop().await.published;
    }
    assert_eq!(published, 5);
    assert_denied(
        "SELECT from a business table",
        orders::table.count().get_result::<i64>(&mut relay),
    );
    assert_denied(
        "INSERT into the outbox",
        diesel::insert_into(outbox_messages::table)
            .default_values()
            .execute(&mut relay),
    );
    drop(roles);
}

#[tokio::test]
async fn the_consumer_role_applies_stops_resumes_and_enqueues_follow_ups() {
    let producer_db = migrated("roles_producer");
    let consumer_db = migrated("roles_consumer");
    let producer_roles = TestRoles::on(&producer_db);
    let roles = TestRoles::on(&consumer_db);
    // The user's grants: the tables its controllers write.
    consumer_db
        .connect()
        .batch_execute(&format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON users TO \"{}\"",
            roles.consumer
        ))
        .expect("the consumer's own grants");
    let kafka = TestKafka::new("roles_consumer");
    let topic = kafka.create_topic("users", 1);
    let group = kafka.group("consumer");

    let mut producer = producer_db.connect();
    let outbox = Outbox::new(PRODUCER);
    producer
        .transaction(|conn| {
            for id in [1, 2, 3] {
                outbox.enqueue_message(conn, &message_of(&user(id), Event::Created, &topic))?;
            }
            let refused = message_of(&user(REFUSED_USER), Event::Updated, &topic);
            outbox.enqueue_message(conn, &refused)?;
            Ok::<_, outbox_diesel::Error>(())
        })
        .expect("enqueue commits");
    let publisher = KafkaPublisher::new(kafka.brokers()).expect("a publisher");
    let relay = RunningRelay::spawn(
        relay_test_settings(Relay::builder(
            url_as(&producer_db, &producer_roles.relay),
            publisher,
        ))
        .build()
        .expect("the relay builds"),
    );

    let consumer_url = url_as(&consumer_db, &roles.consumer);
    let pool = outbox_diesel::pool(&consumer_url, 4).expect("a pool");
    let controller = OnTopic::new(Users, &topic);
    let policy = FailurePolicy::stop().retry(Retry::none());
    let consumer = RunningConsumer::spawn(
        consumer_test_settings(Consumer::builder(kafka.brokers(), &group, pool))
            .controller_with(controller, policy)
            .inbox_retention(Duration::from_millis(1))
            .retention_interval(Duration::from_millis(100)),
    );

    let mut owner = consumer_db.connect();
    let users_of = |conn: &mut PgConnection| -> Vec<i64> {
        users::table
            .select(users::id)
            .order(users::id)
            .load(conn)
            .expect("read users")
    };
    wait_until("users 1 to 3 applied", || users_of(&mut owner) == [1, 2, 3]).await;
    // The follow-ups wait in the consumer's outbox, for its relay.
    wait_until("3 follow-ups", || count_outbox(&mut owner) == Ok(3)).await;

    // The refused record stops the partition, recorded as the consumer role.
    let mut as_consumer = connect_as(&consumer_db, &roles.consumer);
    wait_until("the partition stopped", || {
        !stopped::list(&mut owner, Some(&group), false)
            .expect("list stops")
            .is_empty()
    })
    .await;
    // `outbox partitions list` and `resume` work as the consumer role.
    let stops = stopped::list(&mut as_consumer, Some(&group), false).expect("list as consumer");
    assert_eq!(stops.len(), 1, "{stops:?}");
    let resumed = stopped::resume(&mut as_consumer, &group, &topic, 0).expect("resume");
    assert!(resumed.is_some());
    // Read again, refused again: stopped anew.
    wait_until("the partition stopped again", || {
        stopped::list(&mut owner, Some(&group), true)
            .expect("list stops")
            .len()
            == 2
    })
    .await;
    // The inbox retention deletes as the consumer role.
    wait_until("the inbox emptied by retention", || {
        outbox_inbox::table
            .count()
            .get_result::<i64>(&mut owner)
            .expect("count the inbox")
            == 0
    })
    .await;

    let report = consumer.stop().await;
    relay.stop().await;
    assert!(report.processed >= 3, "{report:?}");

    assert_denied("SELECT from the outbox", count_outbox(&mut as_consumer));
    assert_denied(
        "SELECT from another schema's business table",
        diesel::sql_query(format!("SELECT 1 FROM \"{}\".users", producer_db.schema()))
            .execute(&mut as_consumer),
    );
    assert!(roles.grants.contains("outbox_stopped_partitions"));
    drop(roles);
    drop(producer_roles);
}
