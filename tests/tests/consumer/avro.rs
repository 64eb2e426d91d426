//! Avro on the wire, consumed: records in the Confluent frame (magic byte,
//! schema id, one datum) applied by `#[message_controller]` controllers, the
//! writer's schema fetched from the real schema registry once per id. Old
//! and new model versions read each other; created, updated and destroyed go
//! through the built-in upsert and delete beside a JSON model; 1,000 records
//! cost one registry request; a registry outage makes the records wait, not
//! fail; an unknown schema id meets the partition's policy.
//!
//! The records are written as the relay would send them: `encode_model`'s
//! frame, with the id of the schema registered here written into it.

use std::collections::HashMap;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use outbox::{Context, EncodedMessage, Event, HandlerError, Message, MessageId, Outboxed};
use outbox::{kafka::decode_record, message_controller};
use outbox_diesel::consumer::FailurePolicy;
use outbox_diesel::registry::SchemaRegistry;
use outbox_tests::registry::schema_registry_url;
use outbox_tests::registry_proxy::RegistryProxy;
use outbox_tests::tcp_gate::TcpGate;
use outbox_tests::{TestRegistry, TopicReader, secure};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::support::{
    Env, OnTopic, PARTITIONS, PRODUCER, RunningConsumer, TIMEOUT, User, Users, active_stops,
    message_of, users_of, wait_until,
};

diesel::table! {
    /// The consumer's copy of the profiles, as version 1 has them.
    profiles_v1 (id) {
        id -> BigInt,
        mail -> Text,
        name -> Nullable<Text>,
    }
}

diesel::table! {
    /// The consumer's copy of the profiles, as version 2 has them.
    profiles_v2 (id) {
        id -> BigInt,
        email -> Text,
        name -> Nullable<Text>,
        locale -> Text,
    }
}

diesel::table! {
    /// The consumer's tags.
    tags (id) {
        id -> BigInt,
        label -> Text,
        uses -> Integer,
    }
}

const PROFILE_TABLES: &str = "
    CREATE TABLE profiles_v1 (id bigint PRIMARY KEY, mail text NOT NULL, name text);
    CREATE TABLE profiles_v2 (id bigint PRIMARY KEY, email text NOT NULL, name text, locale text NOT NULL);
    CREATE TABLE tags (id bigint PRIMARY KEY, label text NOT NULL, uses integer NOT NULL);
";

/// A profile as a service knowing only version 1 has it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = profiles_v1, treat_none_as_null = true)]
#[outbox(
    topic = "outbox_consumer_tests_profiles",
    route = "profiles",
    format = "avro",
    avro(name = "Profile", namespace = "outbox.tests")
)]
struct ProfileV1 {
    id: i64,
    mail: String,
    name: Option<String>,
}

fn default_locale() -> String {
    "en".to_owned()
}

/// The same profile two versions on: `mail` renamed `email`, `locale` added
/// with a default.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = profiles_v2, treat_none_as_null = true)]
#[outbox(
    topic = "outbox_consumer_tests_profiles",
    route = "profiles",
    versions = [1, 2],
    format = "avro",
    avro(name = "Profile", namespace = "outbox.tests")
)]
struct ProfileV2 {
    id: i64,
    #[outbox(rename(v1 = "mail"))]
    email: String,
    name: Option<String>,
    #[outbox(since = 2, default = default_locale)]
    locale: String,
}

/// Another Avro model, on a route of its own.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = tags)]
#[outbox(topic = "outbox_consumer_tests_tags", route = "tags", format = "avro")]
struct Tag {
    id: i64,
    label: String,
    uses: i32,
}

impl Tag {
    fn new(id: i64, round: i32) -> Self {
        Tag {
            id,
            label: format!("tag {id}"),
            uses: round,
        }
    }
}

/// Tags, with hooks: every event read per message (no group).
struct Tags;

#[message_controller(model = Tag, table = tags)]
impl Tags {
    async fn before_update(&self, _ctx: &mut Context<'_>, tag: Tag) -> Result<Tag, HandlerError> {
        if tag.label.is_empty() {
            return Err(HandlerError::permanent("a tag without label"));
        }
        Ok(tag)
    }

    async fn after_destroy(&self, _ctx: &mut Context<'_>, id: &i64) -> Result<(), HandlerError> {
        if *id <= 0 {
            return Err(HandlerError::permanent("a tag without id"));
        }
        Ok(())
    }
}

fn tags_of(conn: &mut PgConnection) -> Vec<Tag> {
    tags::table
        .order(tags::id)
        .select(Tag::as_select())
        .load(conn)
        .expect("read tags")
}

impl ProfileV1 {
    fn new(id: i64, round: i64) -> Self {
        ProfileV1 {
            id,
            mail: format!("p{id}.r{round}@example.com"),
            name: (id % 2 == 0).then(|| format!("Profile {id}")),
        }
    }
}

impl ProfileV2 {
    fn new(id: i64, round: i64) -> Self {
        ProfileV2 {
            id,
            email: format!("p{id}.r{round}@example.com"),
            name: (id % 2 == 0).then(|| format!("Profile {id}")),
            locale: format!("l{round}"),
        }
    }

    /// What a reader of version 1 keeps of it.
    fn as_v1(&self) -> ProfileV1 {
        ProfileV1 {
            id: self.id,
            mail: self.email.clone(),
            name: self.name.clone(),
        }
    }
}

/// Version 1's controller: the built-in upsert and delete, no hook (created
/// and updated are grouped in batches).
struct ProfilesV1;

#[message_controller(model = ProfileV1, table = profiles_v1)]
impl ProfilesV1 {}

/// Version 2's controller, with a hook on updated (read per message, not grouped).
struct ProfilesV2;

#[message_controller(model = ProfileV2, table = profiles_v2)]
impl ProfilesV2 {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        profile: ProfileV2,
    ) -> Result<ProfileV2, HandlerError> {
        if profile.locale.is_empty() {
            return Err(HandlerError::permanent("a profile without locale"));
        }
        Ok(profile)
    }
}

/// Writes records as a relay sends them: Avro frames with the id of their
/// schema (registered under the topic's subject on first use), and JSON
/// envelopes.
struct Sender {
    producer: FutureProducer,
    registry: TestRegistry,
    /// Schema ids by schema text.
    ids: HashMap<&'static str, u32>,
}

impl Sender {
    fn new(env: &Env, test_name: &str) -> Self {
        Sender {
            producer: env.kafka.producer_config().create().expect("a producer"),
            registry: TestRegistry::new(test_name),
            ids: HashMap::new(),
        }
    }

    /// `model`'s `event` as an Avro record for `topic`, its frame holding
    /// the registered id of its schema (`id` instead, when given).
    fn avro<M: Outboxed>(
        &mut self,
        topic: &str,
        model: &M,
        event: Event,
        id: Option<u32>,
    ) -> EncodedMessage {
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
        let id = id.unwrap_or_else(|| {
            let registry = &self.registry;
            *self.ids.entry(schema).or_insert_with(|| {
                registry
                    .register(&registry.value_subject(topic), schema)
                    .unwrap_or_else(|e| panic!("registering {schema}: {e}"))
            })
        });
        assert_eq!(record.value[0], 0, "Confluent's magic byte");
        record.value[1..5].copy_from_slice(&id.to_be_bytes());
        record
    }

    /// A JSON model's record, as the relay sends it.
    fn json<M: Outboxed>(topic: &str, model: &M, event: Event) -> EncodedMessage {
        message_of(model, event, topic).encode()
    }

    /// Sends `records` to `topic` in order (each acknowledged before the
    /// next: a key's records stay in order).
    async fn send_in_order(&self, topic: &str, records: &[EncodedMessage]) {
        for record in records {
            self.send(topic, record).await;
        }
    }

    /// Sends `records` to `topic`, all at once (no order kept between keys).
    async fn send_all(&self, topic: &str, records: &[EncodedMessage]) {
        futures::future::join_all(records.iter().map(|record| self.send(topic, record))).await;
    }

    async fn send(&self, topic: &str, record: &EncodedMessage) {
        let mut headers = OwnedHeaders::new();
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        self.producer
            .send(
                FutureRecord::to(topic)
                    .key(&record.key)
                    .payload(&record.value)
                    .headers(headers),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("send to {topic}: {e}"));
    }
}

/// `env` with the profile tables in the consumer's schema.
fn profile_env(test_name: &str) -> Env {
    let env = Env::new(test_name);
    env.consumer_conn()
        .batch_execute(PROFILE_TABLES)
        .expect("create the profile tables");
    env
}

/// The test registry, for the consumer (its own client, no cache shared).
fn registry() -> SchemaRegistry {
    SchemaRegistry::builder(&schema_registry_url())
        .build()
        .expect("the registry's URL is valid")
}

fn profiles_v1(conn: &mut PgConnection) -> Vec<ProfileV1> {
    profiles_v1::table
        .order(profiles_v1::id)
        .select(ProfileV1::as_select())
        .load(conn)
        .expect("read profiles_v1")
}

fn profiles_v2(conn: &mut PgConnection) -> Vec<ProfileV2> {
    profiles_v2::table
        .order(profiles_v2::id)
        .select(ProfileV2::as_select())
        .load(conn)
        .expect("read profiles_v2")
}

/// Old reads new: a producer of versions [1, 2] writes version 2 (`email`,
/// `locale`); a consumer knowing version 1 reads `email` as `mail` (its
/// alias) and skips `locale`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_of_version_1_reads_what_a_producer_of_version_2_writes() {
    let env = profile_env("consumer_avro_old_reads_new");
    let mut sender = Sender::new(&env, "consumer_avro_old_reads_new");
    let written: Vec<ProfileV2> = (1..=20).map(|id| ProfileV2::new(id, 1)).collect();
    let records: Vec<EncodedMessage> = written
        .iter()
        .map(|p| sender.avro(&env.topic, p, Event::Created, None))
        .collect();
    assert!(
        records[0]
            .headers
            .contains(&(outbox::headers::VERSIONS, "2".to_owned())),
        "the producer writes its highest version: {:?}",
        records[0].headers
    );
    sender.send_all(&env.topic, &records).await;

    let consumer = RunningConsumer::spawn(
        env.consumer()
            .schema_registry(registry())
            .controller(OnTopic::new(ProfilesV1, &env.topic)),
    );
    let mut conn = env.consumer_conn();
    wait_until("every profile is applied", TIMEOUT, || {
        profiles_v1(&mut conn).len() == written.len()
    })
    .await;
    let report = consumer.stop().await;

    let expected: Vec<ProfileV1> = written.iter().map(ProfileV2::as_v1).collect();
    assert_eq!(profiles_v1(&mut conn), expected);
    assert_eq!((report.processed, report.failed), (20, 0), "{report:?}");
}

/// New reads old: a producer of version 1 writes `mail`; a consumer of
/// versions [1, 2] reads it into `email` and takes `locale`'s default.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_of_versions_1_and_2_reads_what_a_producer_of_version_1_writes() {
    let env = profile_env("consumer_avro_new_reads_old");
    let mut sender = Sender::new(&env, "consumer_avro_new_reads_old");
    let written: Vec<ProfileV1> = (1..=20).map(|id| ProfileV1::new(id, 1)).collect();
    let records: Vec<EncodedMessage> = written
        .iter()
        .map(|p| sender.avro(&env.topic, p, Event::Created, None))
        .collect();
    sender.send_all(&env.topic, &records).await;

    let consumer = RunningConsumer::spawn(
        env.consumer()
            .schema_registry(registry())
            .controller(OnTopic::new(ProfilesV2, &env.topic)),
    );
    let mut conn = env.consumer_conn();
    wait_until("every profile is applied", TIMEOUT, || {
        profiles_v2(&mut conn).len() == written.len()
    })
    .await;
    let report = consumer.stop().await;

    let expected: Vec<ProfileV2> = written
        .iter()
        .map(|p| ProfileV2 {
            id: p.id,
            email: p.mail.clone(),
            name: p.name.clone(),
            locale: "en".to_owned(),
        })
        .collect();
    assert_eq!(profiles_v2(&mut conn), expected);
    assert_eq!((report.processed, report.failed), (20, 0), "{report:?}");
}

/// Created, updated and destroyed on an Avro topic, through the built-in
/// upsert (grouped, and with a hook) and delete, and a JSON model's records
/// on another topic, all applied by one consumer; the raw records are what
/// the relay sends (magic byte 0, the schema id, `application/avro`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn created_updated_destroyed_on_avro_topics_beside_a_json_model() {
    const KEYS: i64 = 60;
    let env = profile_env("consumer_avro_lifecycle");
    let tags_topic = env.kafka.create_topic("tags", PARTITIONS);
    let json_topic = env.kafka.create_topic("users_json", PARTITIONS);
    let mut sender = Sender::new(&env, "consumer_avro_lifecycle");

    // Profiles on the test's topic (grouped upserts), tags on their own (hooks).
    let mut v1 = Vec::new();
    let mut tags = Vec::new();
    let mut json = Vec::new();
    for id in 1..=KEYS {
        v1.push(sender.avro(&env.topic, &ProfileV1::new(id, 0), Event::Created, None));
        tags.push(sender.avro(&tags_topic, &Tag::new(id, 0), Event::Created, None));
        json.push(Sender::json(&json_topic, &User::new(id, 0), Event::Created));
    }
    for id in 1..=KEYS {
        v1.push(sender.avro(&env.topic, &ProfileV1::new(id, 1), Event::Updated, None));
        tags.push(sender.avro(&tags_topic, &Tag::new(id, 1), Event::Updated, None));
        json.push(Sender::json(&json_topic, &User::new(id, 1), Event::Updated));
    }
    for id in (1..=KEYS).filter(|id| id % 3 == 0) {
        v1.push(sender.avro(&env.topic, &ProfileV1::new(id, 1), Event::Destroyed, None));
        tags.push(sender.avro(&tags_topic, &Tag::new(id, 1), Event::Destroyed, None));
        json.push(Sender::json(
            &json_topic,
            &User::new(id, 1),
            Event::Destroyed,
        ));
    }
    let total = (v1.len() + tags.len() + json.len()) as u64;
    // A backlog: batches, groups, and the first record of each schema alone.
    sender.send_in_order(&env.topic, &v1).await;
    sender.send_in_order(&tags_topic, &tags).await;
    sender.send_in_order(&json_topic, &json).await;

    let consumer = RunningConsumer::spawn(
        env.consumer()
            .schema_registry(registry())
            .controller(OnTopic::new(ProfilesV1, &env.topic))
            .controller(OnTopic::new(Tags, &tags_topic))
            .controller(OnTopic::new(Users, &json_topic)),
    );
    let mut conn = env.consumer_conn();
    wait_until("every record is in the inbox", TIMEOUT, || {
        super::support::count_inbox(&mut conn) as u64 == total
    })
    .await;
    let report = consumer.stop().await;
    assert_eq!(
        (report.processed, report.failed, report.stopped),
        (total, 0, 0),
        "{report:?}"
    );

    let kept = |id: &i64| id % 3 != 0;
    let expected_v1: Vec<ProfileV1> = (1..=KEYS)
        .filter(kept)
        .map(|id| ProfileV1::new(id, 1))
        .collect();
    let expected_tags: Vec<Tag> = (1..=KEYS).filter(kept).map(|id| Tag::new(id, 1)).collect();
    let expected_users: Vec<User> = (1..=KEYS).filter(kept).map(|id| User::new(id, 1)).collect();
    assert_eq!(profiles_v1(&mut conn), expected_v1);
    assert_eq!(tags_of(&mut conn), expected_tags);
    assert_eq!(users_of(&mut conn), expected_users);

    // On the wire: the frame and the headers the relay sends.
    let mut reader = TopicReader::from_start(&env.kafka, &env.topic);
    reader
        .read_until("the Avro records", TIMEOUT, |records| {
            records.len() >= v1.len()
        })
        .await;
    let record = &reader.records[0];
    let value = rdkafka::Message::payload(record).expect("a value");
    assert_eq!(value[0], 0);
    assert_eq!(
        u32::from_be_bytes(value[1..5].try_into().unwrap()),
        sender.ids[ProfileV1::avro_schema(1).unwrap()]
    );
    assert_eq!(
        outbox_tests::header(record, outbox::headers::CONTENT_TYPE).as_deref(),
        Some("application/avro")
    );
    let decoded = decode_record(record).expect("the record decodes");
    assert_eq!(decoded.payloads.format(), outbox::Format::Avro);
}

/// 1,000 records of one schema over 4 partitions, read concurrently: one
/// request to the registry (counted by a proxy in front of it), however many
/// partitions meet the id at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_records_of_one_schema_cost_one_registry_request() {
    const RECORDS: i64 = 1_000;
    let env = profile_env("consumer_avro_one_request");
    let mut sender = Sender::new(&env, "consumer_avro_one_request");
    let records: Vec<EncodedMessage> = (1..=RECORDS)
        .map(|id| sender.avro(&env.topic, &ProfileV1::new(id, 0), Event::Created, None))
        .collect();
    sender.send_all(&env.topic, &records).await;

    let proxy = RegistryProxy::start(&schema_registry_url(), "consumer", "consumer-secret");
    let registry = SchemaRegistry::builder(proxy.url())
        .ca_file(secure::ca_path())
        .basic_auth("consumer", "consumer-secret")
        .build()
        .expect("the proxy's URL is valid");
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .schema_registry(registry)
            .controller(OnTopic::new(ProfilesV1, &env.topic)),
    );
    let mut conn = env.consumer_conn();
    wait_until("every profile is applied", TIMEOUT, || {
        profiles_v1(&mut conn).len() as i64 == RECORDS
    })
    .await;
    let report = consumer.stop().await;

    assert_eq!(report.processed, RECORDS as u64, "{report:?}");
    assert_eq!(
        (proxy.forwarded(), proxy.refused()),
        (1, 0),
        "one request for the one schema id"
    );
}

/// The registry unreachable when the consumer meets an id it has not
/// fetched: the record waits (its partition neither stops nor
/// dead-letters it, however quick its retries), a JSON record on another
/// topic is applied meanwhile, and the record is applied once the registry
/// answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unreachable_registry_makes_avro_records_wait_not_fail() {
    let mut env = profile_env("consumer_avro_registry_outage");
    let dlq = env.dead_letter_topic();
    let json_topic = env.kafka.create_topic("users_json", PARTITIONS);
    let mut sender = Sender::new(&env, "consumer_avro_registry_outage");

    let gate = TcpGate::in_front_of(&schema_registry_url());
    let registry = SchemaRegistry::builder(gate.url())
        .timeout(Duration::from_secs(2))
        .build()
        .expect("the gate's URL is valid");
    gate.close();

    let profile = ProfileV1::new(7, 0);
    let record = sender.avro(&env.topic, &profile, Event::Created, None);
    sender.send_in_order(&env.topic, &[record]).await;

    // Quick retries and dead-lettering: an outage counted as failures would
    // dead-letter the record within a second.
    let policy = super::support::quick_retries(FailurePolicy::dead_letter(), 2);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .schema_registry(registry)
            .controller_with(OnTopic::new(ProfilesV1, &env.topic), policy.clone())
            .controller_with(OnTopic::new(Users, &json_topic), policy),
    );
    let user = User::new(7, 0);
    sender
        .send_in_order(
            &json_topic,
            &[Sender::json(&json_topic, &user, Event::Created)],
        )
        .await;
    let mut conn = env.consumer_conn();
    wait_until(
        "the JSON record is applied during the outage",
        TIMEOUT,
        || users_of(&mut conn) == [user.clone()],
    )
    .await;
    // Long enough for several of the consumer's tries.
    tokio::time::sleep(Duration::from_secs(4)).await;
    consumer.assert_running();
    assert!(
        profiles_v1(&mut conn).is_empty(),
        "applied without its schema?"
    );
    assert!(active_stops(&mut conn, &env.group).is_empty());
    assert_eq!(env.kafka.high_watermarks(&dlq).iter().sum::<i64>(), 0);

    gate.open();
    wait_until(
        "the Avro record is applied after the outage",
        TIMEOUT,
        || profiles_v1(&mut conn) == [profile.clone()],
    )
    .await;
    let report = consumer.stop().await;
    assert_eq!(
        (
            report.processed,
            report.failed,
            report.retries,
            report.dead_lettered,
            report.stopped
        ),
        (2, 0, 0, 0, 0),
        "{report:?}"
    );
    assert_eq!(env.kafka.high_watermarks(&dlq).iter().sum::<i64>(), 0);
}

/// A schema id the registry does not know: a permanent failure, so the
/// partition's policy (stop) applies at once, the id named in the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unknown_schema_id_stops_the_partition_naming_the_id() {
    const UNKNOWN: u32 = 2_000_000_000;
    let env = profile_env("consumer_avro_unknown_id");
    let mut sender = Sender::new(&env, "consumer_avro_unknown_id");
    let record = sender.avro(
        &env.topic,
        &ProfileV1::new(3, 0),
        Event::Created,
        Some(UNKNOWN),
    );
    sender.send_in_order(&env.topic, &[record]).await;

    let consumer = RunningConsumer::spawn(
        env.consumer()
            .schema_registry(registry())
            .controller_with(OnTopic::new(ProfilesV1, &env.topic), FailurePolicy::stop()),
    );
    let mut conn = env.consumer_conn();
    wait_until("the partition stops", TIMEOUT, || {
        !active_stops(&mut conn, &env.group).is_empty()
    })
    .await;
    let report = consumer.stop().await;

    let stops = active_stops(&mut conn, &env.group);
    assert_eq!(stops.len(), 1, "{stops:?}");
    let error = &stops[0].error;
    assert!(error.contains(&format!("id {UNKNOWN}")), "{error}");
    assert!(error.contains("not in the schema registry"), "{error}");
    assert_eq!(stops[0].kafka_partition, env.partition_of(3));
    assert!(profiles_v1(&mut conn).is_empty());
    assert_eq!(
        (report.failed, report.stopped, report.retries),
        (1, 1, 0),
        "{report:?}"
    );
}
