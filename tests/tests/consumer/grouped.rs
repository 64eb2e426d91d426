//! Grouped upserts: consecutive created/updated messages of a hook-free
//! controller written in one multi-row statement. The grouped statement does
//! what one upsert per message does (Option fields, `treat_none_as_null`,
//! `column_name`, `skip_update`, a composite key, a key twice
//! in a group); a row PostgreSQL refuses inside a group meets its policy
//! alone, the others applied; duplicates and injected faults inside groups
//! lose nothing and apply nothing twice.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel_async::AsyncConnection;
use outbox::{
    BoxFuture, Context, Controller, Event, GroupError, HandlerError, Message, Outboxed,
    message_controller,
};
use outbox_diesel::consumer::FailurePolicy;
use outbox_diesel::fault_injection::{ENV_VAR, FaultInjection};
use outbox_diesel::{Outbox, schema::outbox_inbox};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::support::{
    Env, RunningConsumer, TIMEOUT, message_of, quick_retries, read_from_start, wait_until,
};

diesel::table! {
    /// A composite key, a renamed column, an optional one and one set only
    /// on insert. (`serialize_as` is not here: Diesel then
    /// implements `Insertable` for the model only, not for `&Model`, which
    /// the built-in upsert needs.)
    gadgets (shop, sku) {
        shop -> BigInt,
        sku -> Text,
        label -> Text,
        note -> Nullable<Text>,
        qty -> BigInt,
        first_seq -> BigInt,
        seq -> BigInt,
    }
}

diesel::table! {
    /// An optional column whose `None` is written as NULL on update.
    profiles (id) {
        id -> BigInt,
        bio -> Nullable<Text>,
        seq -> BigInt,
    }
}

diesel::table! {
    /// A CHECK constraint a message can break.
    items (id) {
        id -> BigInt,
        qty -> BigInt,
        seq -> BigInt,
    }
}

const TABLES: &str = "
    CREATE TABLE gadgets (
        shop bigint NOT NULL, sku text NOT NULL, label text NOT NULL,
        note text DEFAULT 'default note', qty bigint NOT NULL,
        first_seq bigint NOT NULL, seq bigint NOT NULL,
        PRIMARY KEY (shop, sku)
    );
    CREATE TABLE profiles (id bigint PRIMARY KEY, bio text DEFAULT 'no bio', seq bigint NOT NULL);
    CREATE TABLE items (id bigint PRIMARY KEY, qty bigint NOT NULL CHECK (qty >= 0), seq bigint NOT NULL);
";

#[derive(Debug, Clone, PartialEq, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = gadgets, primary_key(shop, sku))]
#[outbox(topic = "outbox_consumer_tests_gadgets", route = "gadgets")]
struct Gadget {
    shop: i64,
    sku: String,
    #[diesel(column_name = label)]
    name: String,
    note: Option<String>,
    qty: i64,
    #[diesel(skip_update)]
    first_seq: i64,
    seq: i64,
}

#[derive(Debug, Clone, PartialEq, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = profiles, treat_none_as_null = true)]
#[outbox(topic = "outbox_consumer_tests_profiles", route = "profiles")]
struct Profile {
    id: i64,
    bio: Option<String>,
    seq: i64,
}

#[derive(Debug, Clone, PartialEq, Queryable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = items)]
#[outbox(topic = "outbox_consumer_tests_items", route = "items")]
struct Item {
    id: i64,
    qty: i64,
    seq: i64,
}

struct Gadgets;

#[message_controller(model = Gadget, table = gadgets)]
impl Gadgets {}

struct Profiles;

#[message_controller(model = Profile, table = profiles)]
impl Profiles {}

struct Items;

#[message_controller(model = Item, table = items)]
impl Items {}

/// `inner` on the test's topic, counting the groups it applies.
struct Counted<C> {
    inner: C,
    topics: &'static [&'static str],
    groups: Arc<AtomicUsize>,
}

impl<C: Controller> Counted<C> {
    fn new(inner: C, topic: &str) -> Self {
        let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
        Counted {
            inner,
            topics: Box::leak(vec![topic].into_boxed_slice()),
            groups: Arc::new(AtomicUsize::new(0)),
        }
    }
}

impl<C: Controller> Controller for Counted<C> {
    fn route(&self) -> &str {
        self.inner.route()
    }

    fn topics(&self) -> &[&str] {
        self.topics
    }

    fn handles(&self, event: &Event) -> bool {
        self.inner.handles(event)
    }

    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context<'_>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        self.inner.handle(ctx, message)
    }

    fn groups(&self, event: &Event) -> bool {
        self.inner.groups(event)
    }

    fn handle_group<'a>(
        &'a self,
        conn: &'a mut diesel_async::AsyncPgConnection,
        messages: &'a [&'a Message],
    ) -> BoxFuture<'a, Result<(), GroupError>> {
        self.groups.fetch_add(1, Ordering::SeqCst);
        self.inner.handle_group(conn, messages)
    }
}

fn gadget(shop: i64, sku: &str, seq: i64, note: Option<&str>, qty: i64) -> Gadget {
    Gadget {
        shop,
        sku: sku.to_owned(),
        name: format!("gadget {shop}/{sku} v{seq}"),
        note: note.map(str::to_owned),
        qty,
        first_seq: seq,
        seq,
    }
}

fn profile(id: i64, seq: i64, bio: Option<&str>) -> Profile {
    Profile {
        id,
        bio: bio.map(str::to_owned),
        seq,
    }
}

/// The table's rows as JSON text, in key order.
fn rows_of(conn: &mut PgConnection, table: &str, order: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        row: String,
    }
    diesel::sql_query(format!(
        "SELECT row_to_json(t)::text AS row FROM {table} t ORDER BY {order}"
    ))
    .load::<Row>(conn)
    .expect("read the table")
    .into_iter()
    .map(|r| r.row)
    .collect()
}

/// Applies `messages` one by one through `handle`, each in its own transaction.
async fn one_by_one(
    conn: &mut diesel_async::AsyncPgConnection,
    controller: &dyn Controller,
    messages: &[Message],
) {
    let follow_ups = Outbox::new("grouped-test");
    for (offset, message) in messages.iter().enumerate() {
        conn.transaction::<_, HandlerError, _>(async |conn| {
            let mut ctx = Context::new(conn, message, 0, offset as i64, &follow_ups);
            controller.handle(&mut ctx, message).await
        })
        .await
        .unwrap_or_else(|e| panic!("message {offset} applies: {e}"));
    }
}

/// Applies `messages` through `handle_group`, in one transaction.
async fn grouped(
    conn: &mut diesel_async::AsyncPgConnection,
    controller: &dyn Controller,
    messages: &[Message],
) {
    for m in messages {
        assert!(controller.groups(&m.event), "{} is not grouped", m.event);
    }
    let refs: Vec<&Message> = messages.iter().collect();
    conn.transaction::<_, GroupError, _>(async |conn| controller.handle_group(conn, &refs).await)
        .await
        .unwrap_or_else(|e| panic!("the group applies: {e}"));
}

/// The same messages applied one by one in one schema and as one group in
/// another leave the same rows: Option fields with and without
/// `treat_none_as_null` (a `None` leaves the column, or sets NULL; a new row
/// takes the column's default), a renamed column, a converted one, a
/// `skip_update` column (set by the first insert only), a composite key and
/// keys repeated in the group (each change applied in order).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_leaves_the_rows_one_upsert_per_message_leaves() {
    let one = outbox_tests::TestDb::new("consumer_grouped_equal_one");
    let all = outbox_tests::TestDb::new("consumer_grouped_equal_all");
    for db in [&one, &all] {
        db.connect()
            .batch_execute(TABLES)
            .expect("create the tables");
    }
    let topic = "grouped_equal";
    let created = |g: &Gadget| message_of(g, Event::Created, topic);
    let updated = |g: &Gadget| message_of(g, Event::Updated, topic);
    // Rows there before the group: the group updates most of them.
    let seed: Vec<Message> = vec![
        created(&gadget(1, "a", 0, Some("first"), 1)),
        created(&gadget(1, "b", 0, Some("first"), 2)),
        created(&gadget(2, "a", 0, None, 3)),
    ];
    let changes: Vec<Message> = vec![
        updated(&gadget(1, "a", 1, None, 10)), // None: the note stays
        updated(&gadget(1, "b", 1, Some("second"), 20)),
        created(&gadget(3, "c", 1, None, 30)), // new, None: the default note
        updated(&gadget(2, "a", 1, Some("set"), 31)),
        updated(&gadget(1, "b", 2, None, 21)), // the same key again, None this time
        created(&gadget(4, "d", 2, Some("x"), 40)), // new; first_seq 2 stays
        updated(&gadget(4, "d", 3, Some("y"), 41)), // skip_update: first_seq not 3
        updated(&gadget(1, "a", 2, Some("back"), 11)),
        updated(&gadget(5, "e", 3, Some("z"), 50)), // an update of a row not there: inserted
        updated(&gadget(5, "e", 4, Some("z"), 51)),
    ];
    let profiles_seed: Vec<Message> = [profile(1, 0, Some("bio 1")), profile(2, 0, Some("bio 2"))]
        .iter()
        .map(|p| message_of(p, Event::Created, topic))
        .collect();
    let profile_changes: Vec<Message> = [
        (Event::Updated, profile(1, 1, None)), // NULL, not left alone
        (Event::Updated, profile(2, 1, Some("new"))),
        (Event::Created, profile(3, 1, None)), // new: the column's default
        (Event::Created, profile(4, 1, Some("four"))),
        (Event::Updated, profile(2, 2, None)),
        (Event::Updated, profile(5, 2, Some("five"))),
        (Event::Updated, profile(6, 2, Some("six"))),
    ]
    .into_iter()
    .map(|(event, p)| message_of(&p, event, topic))
    .collect();

    let mut conn_one = one.connect_async().await;
    let mut conn_all = all.connect_async().await;
    for (conn, db) in [(&mut conn_one, &one), (&mut conn_all, &all)] {
        let _ = db;
        one_by_one(conn, &Gadgets, &seed).await;
        one_by_one(conn, &Profiles, &profiles_seed).await;
    }
    one_by_one(&mut conn_one, &Gadgets, &changes).await;
    one_by_one(&mut conn_one, &Profiles, &profile_changes).await;
    grouped(&mut conn_all, &Gadgets, &changes).await;
    grouped(&mut conn_all, &Profiles, &profile_changes).await;

    let (mut one, mut all) = (one.connect(), all.connect());
    let gadgets_one = rows_of(&mut one, "gadgets", "shop, sku");
    assert_eq!(gadgets_one.len(), 6, "{gadgets_one:#?}");
    assert_eq!(gadgets_one, rows_of(&mut all, "gadgets", "shop, sku"));
    let profiles_one = rows_of(&mut one, "profiles", "id");
    assert_eq!(profiles_one.len(), 6, "{profiles_one:#?}");
    assert_eq!(profiles_one, rows_of(&mut all, "profiles", "id"));
    // What the per-message upserts did, spelled out.
    assert!(gadgets_one[0].contains(r#""note":"back""#) && gadgets_one[0].contains(r#""qty":11"#));
    assert!(
        gadgets_one[1].contains(r#""note":"second""#),
        "{}",
        gadgets_one[1]
    );
    assert!(
        gadgets_one[3].contains(r#""note":"default note""#),
        "{}",
        gadgets_one[3]
    );
    assert!(gadgets_one[4].contains(r#""first_seq":2"#) && gadgets_one[4].contains(r#""seq":3"#));
    assert!(
        profiles_one[0].contains(r#""bio":null"#),
        "{}",
        profiles_one[0]
    );
    assert!(
        profiles_one[2].contains(r#""bio":"no bio""#),
        "{}",
        profiles_one[2]
    );
}

/// `records` (messages) sent to `topic` partition 0, in order.
async fn send(env: &Env, messages: &[Message]) {
    let producer: FutureProducer = env.kafka.producer_config().create().expect("a producer");
    for message in messages {
        let encoded = message.encode();
        let mut headers = OwnedHeaders::new();
        for (name, value) in &encoded.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        producer
            .send(
                FutureRecord::to(&env.topic)
                    .partition(0)
                    .key(&encoded.key)
                    .payload(&encoded.value)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send: {e}"));
    }
}

fn items_of(conn: &mut PgConnection) -> Vec<Item> {
    items::table
        .order(items::id)
        .load(conn)
        .expect("read the items")
}

fn item(id: i64, seq: i64, qty: i64) -> Item {
    Item { id, qty, seq }
}

/// The backlog of the consumer tests below: `keys` items created, then
/// `rounds` updates of each; `qty` is `seq * 10 + id` except where `poison`
/// (id, seq) breaks the CHECK constraint.
fn item_messages(topic: &str, keys: i64, rounds: i64, poison: Option<(i64, i64)>) -> Vec<Message> {
    let mut messages = Vec::new();
    for seq in 0..=rounds {
        for id in 1..=keys {
            let qty = if poison == Some((id, seq)) {
                -1
            } else {
                seq * 10 + id
            };
            let event = if seq == 0 {
                Event::Created
            } else {
                Event::Updated
            };
            messages.push(message_of(&item(id, seq, qty), event, topic));
        }
    }
    messages
}

/// A row PostgreSQL refuses (a CHECK constraint) inside a group: its group
/// is applied again one message at a time, the record is dead-lettered
/// alone after its retries, every other record of the batch is applied; a
/// message sent twice inside a group is skipped; a key several times in a
/// batch ends at its last change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_row_refused_inside_a_group_is_dead_lettered_alone() {
    let mut env = Env::with_partitions("consumer_grouped_refused", 1);
    env.consumer_conn()
        .batch_execute(TABLES)
        .expect("create the tables");
    let dlq = env.dead_letter_topic();
    let (keys, rounds, poison) = (12, 3, (5, 2));
    let mut messages = item_messages(&env.topic, keys, rounds, Some(poison));
    // Sent twice, a few records apart: inside the same batch.
    messages.insert(20, messages[15].clone());
    send(&env, &messages).await;

    let controller = Counted::new(Items, &env.topic);
    let groups = Arc::clone(&controller.groups);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(controller, quick_retries(FailurePolicy::dead_letter(), 3)),
    );
    let dead = read_from_start(&env.kafka, &dlq, "the dead letter", 1).await;
    let mut conn = env.consumer_conn();
    let expected: Vec<Item> = (1..=keys)
        .map(|id| item(id, rounds, rounds * 10 + id))
        .collect();
    wait_until("every record is applied", TIMEOUT, || {
        count_inbox(&mut conn) == messages.len() as i64 - 2 && items_of(&mut conn) == expected
    })
    .await;
    let report = consumer.stop().await;
    assert_eq!(
        (
            report.processed,
            report.duplicates,
            report.failed,
            report.dead_lettered
        ),
        (messages.len() as u64 - 2, 1, 1, 1),
        "{report:?}"
    );
    assert_eq!(dead.records.len(), 1);
    let poison_id = outbox_tests::header(&dead.records[0], outbox::headers::MESSAGE_ID);
    let poison_message = &messages[(poison.1 * keys + poison.0 - 1 + 1) as usize];
    assert_eq!(poison_message.payload_for(&[1]).unwrap().1["qty"], -1);
    assert_eq!(poison_id, Some(poison_message.id.to_string()));
    assert!(groups.load(Ordering::SeqCst) > 0, "no group was applied");
    assert_eq!(items_of(&mut conn), expected);
}

/// Rows in the inbox.
fn count_inbox(conn: &mut PgConnection) -> i64 {
    outbox_inbox::table
        .count()
        .get_result(conn)
        .expect("count the inbox")
}

/// Set in the child process: run the test's body.
const CHILD: &str = "OUTBOX_GROUPED_TEST_CHILD";

/// Injected handler failures (fault injection needs its environment
/// variable: the test runs in a child process) inside groups: each retried
/// until it passes, nothing lost, nothing applied twice, every key at its
/// last change.
#[test]
fn injected_faults_inside_groups_lose_nothing() {
    if std::env::var_os(CHILD).is_none() {
        let exe = std::env::current_exe().expect("the test binary's path");
        let output = std::process::Command::new(exe)
            .args([
                "consumer::grouped::injected_faults_inside_groups_lose_nothing",
                "--exact",
                "--test-threads=1",
                "--nocapture",
            ])
            .env(CHILD, "1")
            .env(ENV_VAR, "on")
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains("1 passed"),
            "the child failed ({}):\n{stdout}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        return;
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime")
        .block_on(async {
            let env = Env::with_partitions("consumer_grouped_faults", 1);
            env.consumer_conn()
                .batch_execute(TABLES)
                .expect("create the tables");
            let (keys, rounds) = (15, 5);
            let messages = item_messages(&env.topic, keys, rounds, None);
            send(&env, &messages).await;
            let faults = FaultInjection::new().fail_handlers(0.05).seed(14);
            let controller = Counted::new(Items, &env.topic);
            let groups = Arc::clone(&controller.groups);
            let consumer = RunningConsumer::spawn(
                env.consumer()
                    .controller_with(controller, quick_retries(FailurePolicy::stop(), 40))
                    .fault_injection(faults.clone()),
            );
            let mut conn = env.consumer_conn();
            let expected: Vec<Item> = (1..=keys)
                .map(|id| item(id, rounds, rounds * 10 + id))
                .collect();
            wait_until("every record is applied", TIMEOUT, || {
                count_inbox(&mut conn) == messages.len() as i64 && items_of(&mut conn) == expected
            })
            .await;
            let report = consumer.stop().await;
            assert_eq!(
                (report.processed, report.duplicates, report.failed),
                (messages.len() as u64, 0, 0),
                "{report:?}"
            );
            assert!(
                faults.injected().handler_failures > 0,
                "no fault was injected"
            );
            assert!(groups.load(Ordering::SeqCst) > 0, "no group was applied");
        });
}
