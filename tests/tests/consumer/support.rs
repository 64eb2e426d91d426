//! Helpers shared by the consumer tests: a producer schema and a consumer
//! schema (each migrated, each with its own `users` table), a topic and a
//! group of the test's own, the relay and the consumer run as tasks, the
//! producer's writes (table change and enqueue in one transaction), the
//! consumer's apply log, and what to look for in the raw Kafka records a
//! [`TopicReader`](outbox_tests::TopicReader) reads.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use outbox::kafka::KafkaPublisher;
use outbox::{Context, Event, HandlerError, Message, Outboxed, Payloads, message_controller};
use outbox_diesel::consumer::{self, Consumer, ConsumerBuilder, FailurePolicy, Retry};
use outbox_diesel::schema::outbox_inbox;
use outbox_diesel::stopped::{self, StoppedPartition};
use outbox_diesel::{Outbox, Relay};
pub(crate) use outbox_tests::{OnTopic, RunningConsumer, RunningRelay};
use outbox_tests::{
    TestDb, TestKafka, TopicReader, consumer_test_settings, header, relay_test_settings,
};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::OwnedMessage;

/// The producing service: the `from` of every message the tests enqueue.
pub(crate) const PRODUCER: &str = "accounts";

/// Partitions of every test topic.
pub(crate) const PARTITIONS: i32 = 4;

/// Long enough for a group join, a relay's first batch and a backlog on two
/// shared cores; every wait polls and returns as soon as its condition holds.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(60);

diesel::table! {
    /// The model's table: the producer's, and the consumer's copy of it.
    users (id) {
        id -> BigInt,
        email -> Text,
        name -> Nullable<Text>,
        seq -> BigInt,
    }
}

diesel::table! {
    /// The consumer's apply log: one row per apply that committed (rows of a
    /// rolled-back apply go with it), in the order they committed per key.
    applies (id) {
        id -> BigInt,
        message_id -> Uuid,
        user_id -> BigInt,
        event -> Text,
        seq -> Nullable<BigInt>,
        kafka_partition -> Integer,
        kafka_offset -> BigInt,
        consumer -> Text,
    }
}

diesel::table! {
    /// The hooks that ran, as their transactions committed: the hook, the key,
    /// and the `seq` of the consumer's row at that moment (NULL: no row).
    hooks (id) {
        id -> BigInt,
        user_id -> BigInt,
        hook -> Text,
        seen_seq -> Nullable<BigInt>,
    }
}

/// The tests' model. Its topic is a constant, as every model's is; the tests
/// send its messages to a topic of their own (see [`message_of`] and [`OnTopic`]).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = users, treat_none_as_null = true)]
#[outbox(topic = "outbox_consumer_tests_users")]
pub(crate) struct User {
    pub(crate) id: i64,
    pub(crate) email: String,
    pub(crate) name: Option<String>,
    /// How many changes the producer made to this row before this one.
    pub(crate) seq: i64,
}

impl User {
    pub(crate) fn new(id: i64, seq: i64) -> Self {
        User {
            id,
            email: format!("user{id}@example.com"),
            name: Some(format!("User {id} v{seq}")),
            seq,
        }
    }
}

const PRODUCER_TABLES: &str = "
    CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text, seq bigint NOT NULL);
";

const CONSUMER_TABLES: &str = "
    CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, name text, seq bigint NOT NULL);
    CREATE TABLE applies (
        id bigserial PRIMARY KEY,
        message_id uuid NOT NULL,
        user_id bigint NOT NULL,
        event text NOT NULL,
        seq bigint,
        kafka_partition integer NOT NULL,
        kafka_offset bigint NOT NULL,
        consumer text NOT NULL DEFAULT ''
    );
    CREATE TABLE hooks (
        id bigserial PRIMARY KEY,
        user_id bigint NOT NULL,
        hook text NOT NULL,
        seen_seq bigint
    );
";

/// A producer schema and a consumer schema, a topic (4 partitions unless
/// made [`with_partitions`](Env::with_partitions)) and a consumer group, all
/// the test's own.
pub(crate) struct Env {
    pub(crate) producer_db: TestDb,
    pub(crate) consumer_db: TestDb,
    pub(crate) kafka: TestKafka,
    pub(crate) topic: String,
    pub(crate) group: String,
    /// Partitions of `topic`.
    pub(crate) partitions: i32,
    /// Topics made by name (dead-letter topics), deleted on drop.
    extra_topics: Vec<String>,
}

impl Env {
    pub(crate) fn new(test_name: &str) -> Self {
        Self::with_partitions(test_name, PARTITIONS)
    }

    /// An environment whose topic has `partitions` partitions.
    pub(crate) fn with_partitions(test_name: &str, partitions: i32) -> Self {
        let producer_db = TestDb::new(&format!("{test_name}_producer"));
        let consumer_db = TestDb::new(&format!("{test_name}_consumer"));
        for (db, tables) in [
            (&producer_db, PRODUCER_TABLES),
            (&consumer_db, CONSUMER_TABLES),
        ] {
            let mut conn = db.connect();
            outbox_diesel::migrations::run(&mut conn).expect("the outbox migrations run");
            conn.batch_execute(tables).expect("create the test tables");
        }
        let kafka = TestKafka::new(test_name);
        let topic = kafka.create_topic("users", partitions);
        let group = kafka.group("consumer");
        Env {
            producer_db,
            consumer_db,
            kafka,
            topic,
            group,
            partitions,
            extra_topics: Vec::new(),
        }
    }

    /// The dead-letter topic of the test's topic, created now (so it can be
    /// read) and deleted with the environment.
    pub(crate) fn dead_letter_topic(&mut self) -> String {
        let dlq = outbox_diesel::dead_letter::dlq_topic(&self.topic);
        self.kafka.ensure_shared_topic(&dlq, PARTITIONS);
        self.extra_topics.push(dlq.clone());
        dlq
    }

    pub(crate) fn producer_conn(&self) -> PgConnection {
        self.producer_db.connect()
    }

    pub(crate) fn consumer_conn(&self) -> PgConnection {
        self.consumer_db.connect()
    }

    /// The producer's side: writes and enqueues in one transaction.
    pub(crate) fn producer(&self) -> Producer {
        Producer {
            conn: self.producer_conn(),
            outbox: Outbox::new(PRODUCER),
            topic: self.topic.clone(),
        }
    }

    /// A relay publishing the producer schema's outbox.
    pub(crate) fn relay(&self) -> RunningRelay {
        relay_on(self.producer_db.url())
    }

    /// A consumer on the consumer schema in `group`, with the tests' short
    /// waits; add controllers, then [`RunningConsumer::spawn`] it.
    pub(crate) fn consumer_in(&self, group: &str) -> ConsumerBuilder {
        let pool = consumer::pool(self.consumer_db.url(), 8).expect("a pool");
        consumer_test_settings(Consumer::builder(self.kafka.brokers(), group, pool))
    }

    /// [`consumer_in`](Self::consumer_in) the test's group.
    pub(crate) fn consumer(&self) -> ConsumerBuilder {
        self.consumer_in(&self.group)
    }

    /// The partition of the test topic the relay sends user `user_id`'s
    /// messages to (their key is the user's id).
    pub(crate) fn partition_of(&self, user_id: i64) -> i32 {
        outbox::kafka_partition(user_id.to_string().as_bytes(), self.partitions as u32) as i32
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if self.extra_topics.is_empty() {
            return;
        }
        let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
            .set("bootstrap.servers", self.kafka.brokers())
            .create()
        {
            Ok(admin) => admin,
            Err(e) => return eprintln!("warning: no admin client to delete test topics: {e}"),
        };
        let names: Vec<&str> = self.extra_topics.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        if let Err(e) = futures::executor::block_on(admin.delete_topics(&names, &options)) {
            eprintln!("warning: could not delete test topics {names:?}: {e}");
        }
    }
}

/// The partition the relay (murmur2, as Java's client) sends `key` to.
pub(crate) fn partition_of(key: &str) -> i32 {
    outbox::kafka_partition(key.as_bytes(), PARTITIONS as u32) as i32
}

/// Keys from `from` on whose partition is `partition`, `count` of them.
pub(crate) fn keys_on(partition: i32, from: i64, count: usize) -> Vec<i64> {
    (from..)
        .filter(|id| partition_of(&id.to_string()) == partition)
        .take(count)
        .collect()
}

/// Applies users (the controller's own writes) and logs each update.
pub(crate) struct Users;

#[message_controller(model = User, table = users)]
impl Users {
    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }
}

/// The message `event` of `model` makes (every version of its payload, as
/// enqueue writes it), sent to `topic` instead of the model's.
pub(crate) fn message_of<M: Outboxed>(model: &M, event: Event, topic: &str) -> Message {
    let mut payloads: Option<Payloads> = None;
    for version in M::VERSIONS {
        let payload = model
            .to_payload(&event, *version)
            .expect("the model serializes");
        match &mut payloads {
            None => payloads = Some(Payloads::new(*version, payload).expect("a valid version")),
            Some(payloads) => {
                payloads.insert(*version, payload).expect("a valid version");
            }
        }
    }
    Message::new(
        event,
        PRODUCER,
        M::ROUTE,
        topic,
        model.partition_key(),
        payloads.expect("a model has at least one version"),
    )
    .expect("a valid topic")
}

/// One change the producer makes.
#[derive(Debug, Clone)]
pub(crate) enum Change {
    Create(User),
    Update(User),
    Destroy(User),
    /// A custom event about the user; no table change.
    Custom(&'static str, User),
}

/// Round `seq` of the changes to `keys`: each user created in round 0,
/// updated (to `seq`) in the later ones.
pub(crate) fn round<K: Borrow<i64>>(keys: impl IntoIterator<Item = K>, seq: i64) -> Vec<Change> {
    keys.into_iter()
        .map(|k| match seq {
            0 => Change::Create(User::new(*k.borrow(), 0)),
            _ => Change::Update(User::new(*k.borrow(), seq)),
        })
        .collect()
}

/// The producing service: changes its `users` and enqueues the messages in
/// the same transaction, as an application does.
pub(crate) struct Producer {
    pub(crate) conn: PgConnection,
    pub(crate) outbox: Outbox,
    topic: String,
}

impl Producer {
    /// Applies `changes` in one transaction; returns the messages enqueued.
    pub(crate) fn write(&mut self, changes: &[Change]) -> Vec<Message> {
        let (outbox, topic) = (&self.outbox, &self.topic);
        self.conn
            .transaction(|conn| {
                let mut messages = Vec::with_capacity(changes.len());
                for change in changes {
                    let (event, user) = match change {
                        Change::Create(user) => {
                            diesel::insert_into(users::table)
                                .values(user)
                                .execute(conn)?;
                            (Event::Created, user)
                        }
                        Change::Update(user) => {
                            diesel::update(users::table.find(user.id))
                                .set(user)
                                .execute(conn)?;
                            (Event::Updated, user)
                        }
                        Change::Destroy(user) => {
                            diesel::delete(users::table.find(user.id)).execute(conn)?;
                            (Event::Destroyed, user)
                        }
                        Change::Custom(name, user) => {
                            (Event::custom(name).expect("a valid event name"), user)
                        }
                    };
                    let message = message_of(user, event, topic);
                    outbox.enqueue_message(conn, &message)?;
                    messages.push(message);
                }
                Ok::<_, outbox_diesel::Error>(messages)
            })
            .expect("the producer's transaction commits")
    }
}

/// Every row of `users`, by id.
pub(crate) fn users_of(conn: &mut PgConnection) -> Vec<User> {
    users::table
        .order(users::id)
        .select(User::as_select())
        .load(conn)
        .expect("read users")
}

/// One row of the consumer's apply log.
#[derive(Debug, Clone, Queryable)]
pub(crate) struct Applied {
    pub(crate) id: i64,
    pub(crate) message_id: uuid::Uuid,
    pub(crate) user_id: i64,
    pub(crate) event: String,
    pub(crate) seq: Option<i64>,
    pub(crate) kafka_partition: i32,
    pub(crate) kafka_offset: i64,
    pub(crate) consumer: String,
}

/// The apply log, in commit order.
pub(crate) fn applied(conn: &mut PgConnection) -> Vec<Applied> {
    applies::table
        .order(applies::id)
        .load(conn)
        .expect("read applies")
}

pub(crate) fn count_applied(conn: &mut PgConnection) -> i64 {
    applies::table
        .count()
        .get_result(conn)
        .expect("count applies")
}

/// The `seq` of the consumer's user `id` (`None`: no such row).
pub(crate) fn seq_of_user(conn: &mut PgConnection, id: i64) -> Option<i64> {
    users::table
        .find(id)
        .select(users::seq)
        .get_result(conn)
        .optional()
        .expect("read a user")
}

/// The active stops of `group`, by id.
pub(crate) fn active_stops(conn: &mut PgConnection, group: &str) -> Vec<StoppedPartition> {
    stopped::list(conn, Some(group), false).expect("list stopped partitions")
}

/// Inbox offsets of one partition, in order.
pub(crate) fn inbox_offsets(conn: &mut PgConnection, partition: i32) -> Vec<i64> {
    outbox_inbox::table
        .filter(outbox_inbox::kafka_partition.eq(partition))
        .select(outbox_inbox::kafka_offset)
        .order(outbox_inbox::kafka_offset)
        .load(conn)
        .expect("read the inbox")
}

/// Rows of `outbox_inbox`.
pub(crate) fn count_inbox(conn: &mut PgConnection) -> i64 {
    outbox_inbox::table
        .count()
        .get_result(conn)
        .expect("count outbox_inbox")
}

/// The hooks that ran for each key, in order, with what each saw.
pub(crate) fn hooks_by_key(conn: &mut PgConnection) -> BTreeMap<i64, Vec<(String, Option<i64>)>> {
    let rows: Vec<(i64, String, Option<i64>)> = hooks::table
        .order(hooks::id)
        .select((hooks::user_id, hooks::hook, hooks::seen_seq))
        .load(conn)
        .expect("read hooks");
    let mut by_key: BTreeMap<i64, Vec<(String, Option<i64>)>> = BTreeMap::new();
    for (user_id, hook, seen) in rows {
        by_key.entry(user_id).or_default().push((hook, seen));
    }
    by_key
}

/// Adds the apply of the message in `ctx` to the apply log (in its transaction).
pub(crate) async fn log_apply(
    ctx: &mut Context<'_>,
    user_id: i64,
    seq: Option<i64>,
) -> Result<(), HandlerError> {
    log_apply_as(ctx, user_id, seq, "").await
}

/// [`log_apply`], naming the consumer that applied it.
pub(crate) async fn log_apply_as(
    ctx: &mut Context<'_>,
    user_id: i64,
    seq: Option<i64>,
    consumer: &str,
) -> Result<(), HandlerError> {
    let (message_id, event) = (ctx.message_id().as_uuid(), ctx.event().to_string());
    let (partition, offset) = (ctx.partition(), ctx.offset());
    diesel_async::RunQueryDsl::execute(
        diesel::insert_into(applies::table).values((
            applies::message_id.eq(message_id),
            applies::user_id.eq(user_id),
            applies::event.eq(event),
            applies::seq.eq(seq),
            applies::kafka_partition.eq(partition),
            applies::kafka_offset.eq(offset),
            applies::consumer.eq(consumer),
        )),
        ctx.conn(),
    )
    .await?;
    Ok(())
}

/// Records that `hook` ran for `user_id`, with the `seq` of the consumer's row
/// as the hook sees it.
pub(crate) async fn log_hook(
    ctx: &mut Context<'_>,
    user_id: i64,
    hook: &str,
) -> Result<(), HandlerError> {
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO hooks (user_id, hook, seen_seq) \
             VALUES ($1, $2, (SELECT seq FROM users WHERE id = $1))",
        )
        .bind::<BigInt, _>(user_id)
        .bind::<Text, _>(hook),
        ctx.conn(),
    )
    .await?;
    Ok(())
}

/// Waits until `done` holds, checking every 20 ms; fails after `timeout`
/// saying what it waited for. Returns how long it waited.
pub(crate) async fn wait_until(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> bool,
) -> Duration {
    let started = Instant::now();
    while !done() {
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The state of `group` and the client ids of its members, sorted.
pub(crate) fn group_state(kafka: &TestKafka, group: &str) -> (String, Vec<String>) {
    let probe: BaseConsumer = kafka
        .consumer_config(&kafka.unique_name("probe"))
        .create()
        .expect("a probe consumer");
    let list = probe
        .fetch_group_list(Some(group), Duration::from_secs(10))
        .expect("describe the group");
    list.groups()
        .first()
        .map_or((String::new(), Vec::new()), |g| {
            let mut members: Vec<String> = g
                .members()
                .iter()
                .map(|m| m.client_id().to_owned())
                .collect();
            members.sort();
            (g.state().to_owned(), members)
        })
}

/// Waits until `group` is stable with exactly the clients named `members`
/// (their `client.id`).
pub(crate) async fn wait_for_members(kafka: &TestKafka, group: &str, members: &[&str]) {
    let mut members: Vec<String> = members.iter().map(|m| (*m).to_owned()).collect();
    members.sort();
    let wanted = ("Stable".to_owned(), members);
    let what = format!("group {group} is stable with members {:?}", wanted.1);
    wait_until(&what, TIMEOUT, || group_state(kafka, group) == wanted).await;
}

/// A relay publishing the outbox of the schema at `database_url`, with the
/// tests' short waits.
pub(crate) fn relay_on(database_url: &str) -> RunningRelay {
    let publisher = KafkaPublisher::new(&outbox_tests::kafka_brokers())
        .expect("the publisher accepts its settings");
    let relay = relay_test_settings(Relay::builder(database_url, publisher))
        .build()
        .expect("the relay builds");
    RunningRelay::spawn(relay)
}

/// `policy` after `attempts` quick tries (10 ms apart, backing off to 50 ms).
pub(crate) fn quick_retries(policy: FailurePolicy, attempts: u32) -> FailurePolicy {
    policy.retry(Retry::new(
        attempts,
        Duration::from_millis(10),
        Duration::from_millis(50),
    ))
}

/// A reader of `topic` from its start that has read `count` records (`what`,
/// for the failure message).
pub(crate) async fn read_from_start(
    kafka: &TestKafka,
    topic: &str,
    what: &str,
    count: usize,
) -> TopicReader {
    let mut reader = TopicReader::from_start(kafka, topic);
    reader
        .read_until(what, TIMEOUT, |records| records.len() >= count)
        .await;
    reader
}

/// Asserts each header of `expected` on `record`, by name.
#[track_caller]
pub(crate) fn assert_headers(record: &OwnedMessage, expected: &[(&str, &str)]) {
    for (name, value) in expected {
        assert_eq!(
            header(record, name).as_deref(),
            Some(*value),
            "header {name}"
        );
    }
}

/// The record of message `id` among `records`.
pub(crate) fn record_of(records: &[OwnedMessage], id: outbox::MessageId) -> &OwnedMessage {
    let id = id.to_string();
    records
        .iter()
        .find(|r| header(r, outbox::headers::MESSAGE_ID).as_deref() == Some(&id))
        .unwrap_or_else(|| panic!("no record of message {id}"))
}

/// Checks the apply log: each message applied once; per partition, records
/// applied in offset order; per key, the `seq`s applied in increasing order.
/// Returns the `seq`s applied per key.
pub(crate) fn assert_applied_once_in_order(log: &[Applied]) -> BTreeMap<i64, Vec<i64>> {
    let mut seen = std::collections::HashSet::new();
    let mut last_offset: BTreeMap<i32, i64> = BTreeMap::new();
    let mut per_key: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    for row in log {
        let at = format!(
            "log row {}: {} of key {} at partition {}, offset {}, by {:?}",
            row.id, row.event, row.user_id, row.kafka_partition, row.kafka_offset, row.consumer
        );
        assert!(
            seen.insert(row.message_id),
            "message {} applied twice; again as {at}",
            row.message_id
        );
        if let Some(last) = last_offset.insert(row.kafka_partition, row.kafka_offset) {
            assert!(
                row.kafka_offset > last,
                "applied after offset {last} of its partition: {at}"
            );
        }
        let Some(seq) = row.seq else { continue };
        let seqs = per_key.entry(row.user_id).or_default();
        if let Some(&last) = seqs.last() {
            assert!(seq > last, "#{seq} applied after #{last}: {at}");
        }
        seqs.push(seq);
    }
    per_key
}
