//! The upsert writes only the columns the message's version carries: a
//! consumer's model knows versions [1, 2], a producer version 1 only, and a
//! field `since = 2` read from a version 1 message keeps the row's value
//! (its default is written only into a new row). Through the relay and the
//! consumer, one message at a time and in grouped batches; then the same
//! messages applied one by one and as groups straight through the
//! controllers, JSON and Avro, with a version that carries nothing but the
//! key (the update does nothing) and a model with a version field.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use outbox::avro::WriterSchema;
use outbox::{
    BoxFuture, Context, Controller, Event, GroupError, HandlerError, Message, MessageId, Outboxed,
    message_controller,
};
use outbox_diesel::Outbox;

use super::support::{
    Env, OnTopic, PRODUCER, RunningConsumer, TIMEOUT, count_inbox, message_of, read_from_start,
    wait_until,
};

diesel::table! {
    /// The consumer's members: `nick` and `rank` came with version 2.
    members (id) {
        id -> BigInt,
        email -> Text,
        note -> Nullable<Text>,
        nick -> Nullable<Text>,
        rank -> Integer,
    }
}

diesel::table! {
    /// The same, for the Avro models.
    avro_members (id) {
        id -> BigInt,
        email -> Text,
        note -> Nullable<Text>,
        nick -> Nullable<Text>,
        rank -> Integer,
    }
}

diesel::table! {
    /// A table whose version 1 carries only the key.
    badges (id) {
        id -> BigInt,
        label -> Text,
    }
}

diesel::table! {
    /// A model with a version field and a field of version 2.
    ledgers (id) {
        id -> BigInt,
        owner -> Text,
        revision -> Integer,
        tier -> Text,
    }
}

const TABLES: &str = "
    CREATE TABLE members (id bigint PRIMARY KEY, email text NOT NULL, note text, nick text, rank integer NOT NULL);
    CREATE TABLE avro_members (id bigint PRIMARY KEY, email text NOT NULL, note text, nick text, rank integer NOT NULL);
    CREATE TABLE badges (id bigint PRIMARY KEY, label text NOT NULL);
    CREATE TABLE ledgers (id bigint PRIMARY KEY, owner text NOT NULL, revision integer NOT NULL, tier text NOT NULL);
    CREATE TABLE member_statements (n bigint NOT NULL);
    INSERT INTO member_statements VALUES (0);
    CREATE FUNCTION count_member_statement() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN UPDATE member_statements SET n = n + 1; RETURN NULL; END
    $$;
    CREATE TRIGGER member_statements AFTER INSERT ON members
        FOR EACH STATEMENT EXECUTE FUNCTION count_member_statement();
";

fn default_rank() -> i32 {
    1
}

/// The consumer's model: versions [1, 2]. `note` is in both versions,
/// `nickname` (in column `nick`) and `rank` only in version 2.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = members, treat_none_as_null = true)]
#[outbox(topic = "outbox_consumer_tests_members", route = "members", versions = [1, 2])]
struct Member {
    id: i64,
    email: String,
    note: Option<String>,
    #[outbox(since = 2, default)]
    #[diesel(column_name = nick)]
    nickname: Option<String>,
    #[outbox(since = 2, default = default_rank)]
    rank: i32,
}

/// A producer that knows version 1 only: the same route and topic.
#[derive(Debug, Clone, Outboxed)]
#[outbox(topic = "outbox_consumer_tests_members", route = "members")]
struct MemberV1 {
    id: i64,
    email: String,
    note: Option<String>,
}

fn member(id: i64, round: i64, note: Option<&str>, nickname: Option<&str>, rank: i32) -> Member {
    Member {
        id,
        email: format!("m{id}.r{round}@example.com"),
        note: note.map(str::to_owned),
        nickname: nickname.map(str::to_owned),
        rank,
    }
}

fn member_v1(id: i64, round: i64, note: Option<&str>) -> MemberV1 {
    MemberV1 {
        id,
        email: format!("m{id}.r{round}@example.com"),
        note: note.map(str::to_owned),
    }
}

/// One message at a time (`group = false`), with a hook that changes a
/// carried column.
struct OneByOne;

#[message_controller(model = Member, table = members, group = false)]
impl OneByOne {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        mut member: Member,
    ) -> Result<Member, HandlerError> {
        member.email = member.email.to_uppercase();
        Ok(member)
    }
}

/// No hook: consecutive created/updated records go to `handle_group`.
struct Members;

#[message_controller(model = Member, table = members)]
impl Members {}

/// The Avro pair of [`Member`] and [`MemberV1`].
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = avro_members, treat_none_as_null = true)]
#[outbox(
    topic = "outbox_consumer_tests_avro_members",
    route = "avro_members",
    versions = [1, 2],
    format = "avro",
    avro(name = "Member", namespace = "outbox.tests")
)]
struct AvroMember {
    id: i64,
    email: String,
    note: Option<String>,
    #[outbox(since = 2, default)]
    #[diesel(column_name = nick)]
    nickname: Option<String>,
    #[outbox(since = 2, default = default_rank)]
    rank: i32,
}

#[derive(Debug, Clone, Outboxed)]
#[outbox(
    topic = "outbox_consumer_tests_avro_members",
    route = "avro_members",
    format = "avro",
    avro(name = "Member", namespace = "outbox.tests")
)]
struct AvroMemberV1 {
    id: i64,
    email: String,
    note: Option<String>,
}

struct AvroMembers;

#[message_controller(model = AvroMember, table = avro_members)]
impl AvroMembers {}

/// Version 1 carries only the key.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = badges)]
#[outbox(topic = "outbox_consumer_tests_badges", route = "badges", versions = [1, 2])]
struct Badge {
    id: i64,
    #[outbox(since = 2, default)]
    label: String,
}

#[derive(Debug, Clone, Outboxed)]
#[outbox(topic = "outbox_consumer_tests_badges", route = "badges")]
struct BadgeV1 {
    id: i64,
}

struct Badges;

#[message_controller(model = Badge, table = badges)]
impl Badges {}

/// A version field, and a field of version 2.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = ledgers)]
#[outbox(topic = "outbox_consumer_tests_ledgers", versions = [1, 2])]
struct Ledger {
    id: i64,
    owner: String,
    #[outbox(version)]
    revision: i32,
    #[outbox(since = 2, default)]
    tier: String,
}

#[derive(Debug, Clone, Outboxed)]
#[diesel(table_name = ledgers)]
#[outbox(topic = "outbox_consumer_tests_ledgers")]
struct LedgerV1 {
    id: i64,
    owner: String,
    #[outbox(version)]
    revision: i32,
}

struct Ledgers;

#[message_controller(model = Ledger, table = ledgers)]
impl Ledgers {}

/// `inner` on the test's topic, its groups forwarded and counted.
struct Counted<C> {
    inner: C,
    topics: &'static [&'static str],
    /// Groups applied, and the messages in them.
    groups: Arc<AtomicUsize>,
    grouped: Arc<AtomicUsize>,
}

impl<C: Controller> Counted<C> {
    fn new(inner: C, topic: &str) -> Self {
        let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
        Counted {
            inner,
            topics: Box::leak(vec![topic].into_boxed_slice()),
            groups: Arc::new(AtomicUsize::new(0)),
            grouped: Arc::new(AtomicUsize::new(0)),
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
        self.grouped.fetch_add(messages.len(), Ordering::SeqCst);
        self.inner.handle_group(conn, messages)
    }
}

/// An environment of one partition (the records of a test in one order,
/// its backlog in batches) with the test's tables in the consumer's schema.
fn env(name: &str) -> Env {
    let env = Env::with_partitions(name, 1);
    env.consumer_conn()
        .batch_execute(TABLES)
        .expect("create the tables");
    env
}

/// Enqueues `messages` in the producer's outbox, in this order, in one
/// transaction.
fn enqueue(env: &Env, messages: &[Message]) {
    let outbox = Outbox::new(PRODUCER);
    env.producer_conn()
        .transaction(|conn| {
            messages
                .iter()
                .try_for_each(|message| outbox.enqueue_message(conn, message).map(drop))
        })
        .expect("the producer's transaction commits");
}

fn members_of(conn: &mut PgConnection) -> Vec<Member> {
    members::table
        .order(members::id)
        .select(Member::as_select())
        .load(conn)
        .expect("read members")
}

/// Through the relay and the consumer, one message at a time: a version 1
/// update leaves `nick` and `rank` as the row has them and writes the rest
/// (a `None` note as NULL, the hook's upper-case email); a version 2 one
/// writes them all; a version 1 created or updated message for a key
/// without a row inserts their defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_at_a_time_a_version_1_update_leaves_the_columns_it_does_not_carry() {
    let env = env("consumer_carried_single");
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller(OnTopic::new(OneByOne, &env.topic)),
    );
    let relay = env.relay();
    let topic = &env.topic;
    let v1 = |event: Event, m: MemberV1| message_of(&m, event, topic);
    let v2 = |event: Event, m: Member| message_of(&m, event, topic);
    let sent = vec![
        v2(Event::Created, member(1, 0, Some("first"), Some("ace"), 7)),
        v1(Event::Updated, member_v1(1, 1, None)),
        v2(Event::Created, member(2, 0, None, Some("bee"), 3)),
        v1(Event::Updated, member_v1(2, 1, Some("second"))),
        v2(Event::Updated, member(2, 2, Some("second"), None, 9)),
        v1(Event::Created, member_v1(3, 0, Some("third"))),
        v1(Event::Updated, member_v1(4, 0, None)),
    ];
    assert_eq!(sent[1].payloads.versions().collect::<Vec<_>>(), [1]);
    enqueue(&env, &sent);

    let mut conn = env.consumer_conn();
    wait_until("every record is applied", TIMEOUT, || {
        count_inbox(&mut conn) == sent.len() as i64
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    let upper = |m: Member| Member {
        email: m.email.to_uppercase(),
        ..m
    };
    assert_eq!(
        members_of(&mut conn),
        [
            // Kept: "ace" and 7, not NULL and 1.
            upper(member(1, 1, None, Some("ace"), 7)),
            // Version 2 sets them: NULL and 9.
            upper(member(2, 2, Some("second"), None, 9)),
            // New rows: the defaults.
            upper(member(3, 0, Some("third"), None, 1)),
            upper(member(4, 0, None, None, 1)),
        ]
    );
    assert_eq!(
        (report.processed, report.failed, report.retries),
        (sent.len() as u64, 0, 0),
        "{report:?}"
    );
}

/// Through the relay and the consumer, a backlog in batches: version 1
/// updates of distinct keys go to `handle_group` together and leave `nick`
/// and `rank`, beside version 2 rows that set them; a version 1 update
/// whose note is `None` (NULL under `treat_none_as_null`) goes alone and
/// leaves them too; version 1 creations insert the defaults.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grouped_version_1_updates_leave_the_columns_they_do_not_carry() {
    let env = env("consumer_carried_grouped");
    let topic = &env.topic;
    let mut sent: Vec<Message> = Vec::new();
    for id in 1..=6 {
        let nick = format!("nick {id}");
        let member = member(id, 0, Some("v2 note"), Some(&nick), id as i32 * 10);
        sent.push(message_of(&member, Event::Created, topic));
    }
    for id in 1..=6 {
        let note = (id != 6).then_some("v1 note");
        sent.push(message_of(&member_v1(id, 1, note), Event::Updated, topic));
    }
    sent.push(message_of(
        &member(1, 2, Some("v2 again"), Some("new nick"), 99),
        Event::Updated,
        topic,
    ));
    for id in 7..=9 {
        sent.push(message_of(
            &member_v1(id, 0, Some("new")),
            Event::Created,
            topic,
        ));
    }
    enqueue(&env, &sent);
    // The whole backlog on the topic before the consumer starts: batches.
    let relay = env.relay();
    read_from_start(&env.kafka, topic, "the backlog", sent.len()).await;
    relay.stop().await;

    let controller = Counted::new(Members, topic);
    let (groups, grouped) = (
        Arc::clone(&controller.groups),
        Arc::clone(&controller.grouped),
    );
    let consumer = RunningConsumer::spawn(env.consumer().controller(controller));
    let mut conn = env.consumer_conn();
    wait_until("every record is applied", TIMEOUT, || {
        count_inbox(&mut conn) == sent.len() as i64
    })
    .await;
    let report = consumer.stop().await;

    let mut expected = vec![member(1, 2, Some("v2 again"), Some("new nick"), 99)];
    for id in 2..=5 {
        let nick = format!("nick {id}");
        expected.push(member(id, 1, Some("v1 note"), Some(&nick), id as i32 * 10));
    }
    expected.push(member(6, 1, None, Some("nick 6"), 60));
    for id in 7..=9 {
        expected.push(member(id, 0, Some("new"), None, 1));
    }
    assert_eq!(members_of(&mut conn), expected);
    assert_eq!(
        (report.processed, report.failed),
        (sent.len() as u64, 0),
        "{report:?}"
    );
    let (groups, grouped) = (
        groups.load(Ordering::SeqCst),
        grouped.load(Ordering::SeqCst),
    );
    assert!(
        groups > 0 && grouped > groups,
        "no group of several records: {groups}, {grouped}"
    );
}

/// Applies `messages` one by one through `handle`, each in its own transaction.
async fn one_by_one(
    conn: &mut diesel_async::AsyncPgConnection,
    controller: &dyn Controller,
    messages: &[Message],
) {
    use diesel_async::AsyncConnection;
    let follow_ups = Outbox::new("carried-columns-test");
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
    use diesel_async::AsyncConnection;
    for m in messages {
        assert!(controller.groups(&m.event), "{} is not grouped", m.event);
    }
    let refs: Vec<&Message> = messages.iter().collect();
    conn.transaction::<_, GroupError, _>(async |conn| controller.handle_group(conn, &refs).await)
        .await
        .unwrap_or_else(|e| panic!("the group applies: {e}"));
}

/// Statements that inserted into (or upserted) `members` so far.
fn statements(conn: &mut PgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    diesel::sql_query("SELECT n FROM member_statements")
        .get_result::<Count>(conn)
        .expect("count the statements")
        .n
}

/// The table's rows as JSON text, in key order.
fn rows_of(conn: &mut PgConnection, table: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        row: String,
    }
    diesel::sql_query(format!(
        "SELECT row_to_json(t)::text AS row FROM {table} t ORDER BY id"
    ))
    .load::<Row>(conn)
    .expect("read the table")
    .into_iter()
    .map(|r| r.row)
    .collect()
}

/// `model`'s `event` as an Avro record read back, as the consumer has it
/// (the registry's id in the frame, the writer's schema attached).
fn avro_message<M: Outboxed>(model: &M, event: Event) -> Message {
    let mut record = Message::encode_model(
        model,
        &event,
        PRODUCER,
        MessageId::new(),
        chrono::Utc::now(),
        None,
    )
    .expect("the model encodes");
    let schema = record.avro_schema.take().expect("an Avro model");
    record.value[1..5].copy_from_slice(&42u32.to_be_bytes());
    let headers = record
        .headers
        .iter()
        .map(|(name, value)| (*name, Some(value.as_bytes())));
    let mut message = Message::decode(M::TOPIC, Some(&record.key), headers, Some(&record.value))
        .expect("the record decodes");
    let writer = WriterSchema::parse(schema).expect("the writer's schema parses");
    message.payloads.set_writer_schema(Arc::new(writer));
    message
}

/// Straight through the controllers (no Kafka), the same messages applied
/// one by one in one schema and as groups in another leave the same rows,
/// and the columns a version does not carry keep the row's values: JSON
/// and Avro (the writer's version 1 resolved into the consumer's version
/// 1); a version carrying only the key updates nothing; a model with a
/// version field (never grouped) checks its version, then leaves the
/// column too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_by_one_and_grouped_leave_the_same_rows_json_and_avro() {
    let one = outbox_tests::TestDb::new("consumer_carried_direct_one");
    let all = outbox_tests::TestDb::new("consumer_carried_direct_all");
    for db in [&one, &all] {
        db.connect()
            .batch_execute(TABLES)
            .expect("create the tables");
    }
    let topic = "carried_direct";
    let avro_member = |id: i64, round: i64, nick: Option<&str>, rank: i32| AvroMember {
        id,
        email: format!("a{id}.r{round}@example.com"),
        note: Some(format!("note {round}")),
        nickname: nick.map(str::to_owned),
        rank,
    };
    let avro_v1 = |id: i64, round: i64, note: Option<&str>| AvroMemberV1 {
        id,
        email: format!("a{id}.r{round}@example.com"),
        note: note.map(str::to_owned),
    };
    // Seeded one by one in both schemas.
    let seed: Vec<(&dyn Controller, Vec<Message>)> = vec![
        (
            &Members,
            (1..=3)
                .map(|id| member(id, 0, Some("seed"), Some("seeded"), 5))
                .map(|m| message_of(&m, Event::Created, topic))
                .collect(),
        ),
        (
            &AvroMembers,
            (1..=3)
                .map(|id| avro_message(&avro_member(id, 0, Some("seeded"), 5), Event::Created))
                .collect(),
        ),
        (
            &Badges,
            vec![message_of(
                &Badge {
                    id: 1,
                    label: "gold".into(),
                },
                Event::Created,
                topic,
            )],
        ),
    ];
    let changes: Vec<(&dyn Controller, Vec<Message>)> = vec![
        (
            &Members,
            vec![
                message_of(&member_v1(1, 1, Some("one")), Event::Updated, topic),
                message_of(&member_v1(2, 1, Some("two")), Event::Updated, topic),
                message_of(&member_v1(3, 1, None), Event::Updated, topic),
                message_of(
                    &member(2, 2, Some("v2"), Some("v2 nick"), 8),
                    Event::Updated,
                    topic,
                ),
                message_of(&member_v1(4, 1, Some("four")), Event::Created, topic),
                message_of(&member_v1(5, 1, Some("five")), Event::Created, topic),
                message_of(&member_v1(1, 2, Some("one again")), Event::Updated, topic),
            ],
        ),
        (
            &AvroMembers,
            vec![
                avro_message(&avro_v1(1, 1, Some("one")), Event::Updated),
                avro_message(&avro_v1(2, 1, None), Event::Updated),
                avro_message(&avro_member(3, 1, None, 9), Event::Updated),
                avro_message(&avro_v1(4, 1, Some("four")), Event::Created),
            ],
        ),
        (
            &Badges,
            vec![
                message_of(&BadgeV1 { id: 1 }, Event::Updated, topic),
                message_of(&BadgeV1 { id: 2 }, Event::Created, topic),
            ],
        ),
    ];
    assert_eq!(changes[1].1[0].reader_version::<AvroMember>().unwrap(), 1);
    assert_eq!(changes[1].1[2].reader_version::<AvroMember>().unwrap(), 2);

    let mut conn_one = one.connect_async().await;
    let mut conn_all = all.connect_async().await;
    for conn in [&mut conn_one, &mut conn_all] {
        for (controller, messages) in &seed {
            one_by_one(conn, *controller, messages).await;
        }
    }
    let (mut one, mut all) = (one.connect(), all.connect());
    let before = (statements(&mut one), statements(&mut all));
    for (controller, messages) in &changes {
        one_by_one(&mut conn_one, *controller, messages).await;
        grouped(&mut conn_all, *controller, messages).await;
    }
    // Grouped: keys 1 and 2 (version 1) in one statement; 3 (a `None` note,
    // NULL) alone; 2 (version 2, every column) alone; 4, 5 and 1 (version
    // 1) in one.
    assert_eq!(
        (
            statements(&mut one) - before.0,
            statements(&mut all) - before.1
        ),
        (7, 4)
    );

    for table in ["members", "avro_members", "badges"] {
        assert_eq!(
            rows_of(&mut one, table),
            rows_of(&mut all, table),
            "{table}"
        );
    }
    assert_eq!(
        members_of(&mut one),
        [
            member(1, 2, Some("one again"), Some("seeded"), 5),
            member(2, 2, Some("v2"), Some("v2 nick"), 8),
            member(3, 1, None, Some("seeded"), 5),
            member(4, 1, Some("four"), None, 1),
            member(5, 1, Some("five"), None, 1),
        ]
    );
    let avro_members: Vec<AvroMember> = avro_members::table
        .order(avro_members::id)
        .select(AvroMember::as_select())
        .load(&mut one)
        .expect("read avro_members");
    let v1_read = |id: i64, note: Option<&str>| AvroMember {
        note: note.map(str::to_owned),
        ..avro_member(id, 1, Some("seeded"), 5)
    };
    assert_eq!(
        avro_members,
        [
            v1_read(1, Some("one")),
            v1_read(2, None),
            avro_member(3, 1, None, 9),
            AvroMember {
                nickname: None,
                rank: 1,
                ..v1_read(4, Some("four"))
            },
        ]
    );
    let badges: Vec<Badge> = badges::table
        .order(badges::id)
        .select(Badge::as_select())
        .load(&mut one)
        .expect("read badges");
    // Badge 1 kept its label (the update did nothing); badge 2 was created.
    assert_eq!(
        badges,
        [
            Badge {
                id: 1,
                label: "gold".into()
            },
            Badge {
                id: 2,
                label: String::new()
            },
        ]
    );

    // A version field: the stale message is skipped, the next one applied
    // without `tier`.
    let ledger = |revision: i32, tier: &str| Ledger {
        id: 1,
        owner: format!("owner r{revision}"),
        revision,
        tier: tier.to_owned(),
    };
    let ledger_v1 = |revision: i32| LedgerV1 {
        id: 1,
        owner: format!("owner r{revision}"),
        revision,
    };
    assert!(!Ledgers.groups(&Event::Updated));
    let ledgers = outbox_tests::TestDb::new("consumer_carried_ledgers");
    ledgers
        .connect()
        .batch_execute(TABLES)
        .expect("create the tables");
    let mut conn = ledgers.connect_async().await;
    one_by_one(
        &mut conn,
        &Ledgers,
        &[
            message_of(&ledger(1, "gold"), Event::Created, topic),
            message_of(&ledger_v1(2), Event::Updated, topic),
            message_of(&ledger_v1(1), Event::Updated, topic),
        ],
    )
    .await;
    let rows: Vec<Ledger> = ledgers::table
        .select(Ledger::as_select())
        .load(&mut ledgers.connect())
        .expect("read ledgers");
    assert_eq!(rows, [ledger(2, "gold")]);
}
