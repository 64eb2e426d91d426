//! Avro values through the relay, against the real registry: the relay
//! registers each writer schema once (or looks it up), writes the registry's
//! id into the frame, and refuses rows whose schema cannot be resolved
//! through its refusal path: parked when the registry refuses the schema,
//! waiting when it is not registered under lookup-only or the relay's
//! credentials are refused. JSON rows, other keys and rows of schemas
//! already resolved keep going.
//!
//! Each test has a model (and a topic, shared across runs) of its own:
//! subjects are named after the topic, and deleted at the end of the test.

use std::collections::HashMap;
use std::time::Duration;

use diesel::prelude::*;
use outbox::avro::WriterSchema;
use outbox::kafka::decode_record;
use outbox::{CONTENT_TYPE_AVRO, CONTENT_TYPE_JSON, Event, MessageId, Outboxed, headers};
use outbox_diesel::Outbox;
use outbox_diesel::ops::{self, Selection};
use outbox_diesel::registry::SchemaRegistry;
use outbox_tests::registry_proxy::RegistryProxy;
use outbox_tests::tcp_gate::TcpGate;
use outbox_tests::{TestRegistry, TopicReader, header};
use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;

use super::support::{
    Env, RECEIVE_TIMEOUT, RunningRelay, StoredRow, stored_rows, wait_until, wait_until_empty,
};

const USERS_TOPIC: &str = "outbox_relay_avro_users";
const COUNTED_TOPIC: &str = "outbox_relay_avro_counted";
const STRICT_TOPIC: &str = "outbox_relay_avro_strict";
const LOOKUP_TOPIC: &str = "outbox_relay_avro_lookup";
const LOCKED_TOPIC: &str = "outbox_relay_avro_locked";

#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_avro_users", route = "users", versions = [1, 2], format = "avro")]
struct User {
    id: i64,
    #[outbox(rename(v1 = "mail"))]
    email: String,
    #[outbox(since = 2, default)]
    nick: Option<String>,
}

/// JSON on the same topic as [`User`].
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_avro_users", route = "notes")]
struct Note {
    id: i64,
    text: String,
}

#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_avro_counted", route = "ticks", format = "avro")]
struct Tick {
    id: i64,
    at: i64,
}

/// `region` has no default: not readable from a version without it.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_avro_strict", route = "strict", format = "avro")]
struct Strict {
    id: i64,
    region: String,
}

/// JSON on the same topic as [`Strict`].
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_avro_strict", route = "loose")]
struct Loose {
    id: i64,
}

#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_avro_lookup", route = "lookups", format = "avro")]
struct Looked {
    id: i64,
    name: String,
}

#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_avro_locked", route = "locked", format = "avro")]
struct Locked {
    id: i64,
}

/// A client of the test registry, with a short timeout.
fn client(url: &str) -> SchemaRegistry {
    SchemaRegistry::builder(url)
        .timeout(Duration::from_secs(5))
        .build()
        .expect("the registry client builds")
}

/// The record's `message_id` header.
fn message_id(record: &OwnedMessage) -> Option<MessageId> {
    header(record, headers::MESSAGE_ID).and_then(|id| id.parse().ok())
}

/// Reads `topic` from its start until every message of `ids` has arrived;
/// returns the first record of each.
async fn read_records(
    env: &Env,
    topic: &str,
    ids: &[MessageId],
) -> HashMap<MessageId, OwnedMessage> {
    let mut reader = TopicReader::from_start(&env.kafka, topic);
    let wanted: std::collections::HashSet<MessageId> = ids.iter().copied().collect();
    let mut found: HashMap<MessageId, OwnedMessage> = HashMap::new();
    let mut checked = 0;
    reader
        .read_until(
            &format!("{} messages", ids.len()),
            RECEIVE_TIMEOUT,
            |records| {
                for record in &records[checked..] {
                    if let Some(id) = message_id(record).filter(|id| wanted.contains(id)) {
                        found.entry(id).or_insert_with(|| record.clone());
                    }
                }
                checked = records.len();
                found.len() == wanted.len()
            },
        )
        .await;
    found
}

/// The schema id of a Confluent frame.
fn frame_id(value: &[u8]) -> u32 {
    assert!(value.len() >= 5, "a frame: {value:?}");
    assert_eq!(value[0], 0, "magic byte 0");
    u32::from_be_bytes([value[1], value[2], value[3], value[4]])
}

fn row_of(conn: &mut PgConnection, id: MessageId) -> Option<StoredRow> {
    stored_rows(conn)
        .into_iter()
        .find(|row| row.message_id == id.as_uuid())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avro_values_go_out_with_the_registry_id_beside_json() {
    let env = Env::new("relay_avro_e2e");
    env.kafka.ensure_shared_topic(USERS_TOPIC, 4);
    let registry = TestRegistry::new("relay_avro_e2e");
    let subject = registry.value_subject(USERS_TOPIC);
    let outbox = Outbox::new("accounts");
    let users: Vec<User> = (1..=4)
        .map(|id| User {
            id,
            email: format!("user{id}@example.com"),
            nick: (id % 2 == 0).then(|| format!("u{id}")),
        })
        .collect();
    let notes: Vec<Note> = (1..=4)
        .map(|id| Note {
            id,
            text: format!("note {id}"),
        })
        .collect();
    let mut conn = env.conn();
    let (user_ids, note_ids) = conn
        .transaction(|conn| {
            let mut user_ids = Vec::new();
            let mut note_ids = Vec::new();
            for (user, note) in users.iter().zip(&notes) {
                user_ids.push(outbox.enqueue(conn, user, Event::Created)?);
                note_ids.push(outbox.enqueue(conn, note, Event::Created)?);
            }
            Ok::<_, outbox_diesel::Error>((user_ids, note_ids))
        })
        .expect("enqueue");

    let relay = RunningRelay::spawn(
        env.relay()
            .schema_registry(client(registry.url()))
            .build()
            .unwrap(),
    );
    let all: Vec<MessageId> = user_ids.iter().chain(&note_ids).copied().collect();
    let records = read_records(&env, USERS_TOPIC, &all).await;
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    let report = relay.stop().await;
    assert_eq!(report.failed_attempts, 0, "{report:?}");

    // The id the registry holds the writer schema (version 2) under.
    let id = registry
        .register(&subject, User::avro_schema(2).unwrap())
        .expect("registered already");
    assert_eq!(registry.versions(&subject), [1], "registered once");
    let writer = std::sync::Arc::new(
        WriterSchema::parse(&registry.schema(id)).expect("the registry's schema parses"),
    );
    for (user, message) in users.iter().zip(&user_ids) {
        let record = &records[message];
        let value = record.payload().expect("a value");
        assert_eq!(frame_id(value), id, "the registry's id in the frame");
        assert_eq!(
            User::read_avro_from(&writer, 2, &value[5..]).expect("the datum reads"),
            *user
        );
        assert_eq!(
            header(record, headers::CONTENT_TYPE).as_deref(),
            Some(CONTENT_TYPE_AVRO)
        );
        assert_eq!(header(record, headers::VERSIONS).as_deref(), Some("2"));
        assert_eq!(record.key(), Some(user.id.to_string().as_bytes()));
        // What a consumer does: decode, attach the writer schema, read.
        let mut decoded = decode_record(record).expect("the record decodes");
        assert_eq!(decoded.payloads.avro_schema_id(), Some(id));
        decoded.payloads.set_writer_schema(writer.clone());
        assert_eq!(decoded.read::<User>().unwrap(), *user);
    }
    for (note, message) in notes.iter().zip(&note_ids) {
        let record = &records[message];
        assert_eq!(
            header(record, headers::CONTENT_TYPE).as_deref(),
            Some(CONTENT_TYPE_JSON)
        );
        let decoded = decode_record(record).expect("the JSON record decodes");
        assert_eq!(decoded.read::<Note>().unwrap(), *note, "JSON as it was");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_values_of_one_schema_cost_one_registry_request() {
    const MESSAGES: i64 = 1_200;
    let env = Env::new("relay_avro_one_request");
    env.kafka.ensure_shared_topic(COUNTED_TOPIC, 4);
    let registry = TestRegistry::new("relay_avro_one_request");
    let subject = registry.value_subject(COUNTED_TOPIC);
    let gate = TcpGate::in_front_of(registry.url());
    let outbox = Outbox::new("clock");
    let ticks: Vec<Tick> = (0..MESSAGES).map(|id| Tick { id, at: id * 10 }).collect();
    let mut conn = env.conn();
    // In several transactions, read in several batches.
    let mut ids = Vec::new();
    for chunk in ticks.chunks(300) {
        ids.extend(
            conn.transaction(|conn| outbox.enqueue_all(conn, chunk, Event::Created))
                .expect("enqueue"),
        );
    }
    let relay = RunningRelay::spawn(
        env.relay()
            .batch_size(100)
            .schema_registry(client(gate.url()))
            .build()
            .unwrap(),
    );
    let records = read_records(&env, COUNTED_TOPIC, &ids).await;
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    let report = relay.stop().await;
    assert!(report.batches >= 12, "{report:?}");
    assert_eq!(gate.requests(), 1, "one registry request for the whole run");
    let id = registry
        .register(&subject, Tick::avro_schema(1).unwrap())
        .unwrap();
    assert!(
        records
            .values()
            .all(|r| frame_id(r.payload().unwrap()) == id),
        "every frame carries the id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_the_registry_refuses_is_parked_with_its_reasons_and_other_keys_go_on() {
    let env = Env::new("relay_avro_incompatible");
    env.kafka.ensure_shared_topic(STRICT_TOPIC, 4);
    let registry = TestRegistry::new("relay_avro_incompatible");
    let subject = registry.value_subject(STRICT_TOPIC);
    registry
        .set_compatibility(&subject, "FULL_TRANSITIVE")
        .unwrap();
    // An earlier version without `region`: the model's, which adds it without
    // a default, cannot read its messages.
    let mut earlier: serde_json::Value =
        serde_json::from_str(Strict::avro_schema(1).unwrap()).unwrap();
    earlier["fields"]
        .as_array_mut()
        .unwrap()
        .retain(|field| field["name"] != "region");
    registry
        .register(&subject, &earlier.to_string())
        .expect("the earlier version registers");

    let outbox = Outbox::new("strict");
    let mut conn = env.conn();
    // Key 1: JSON, Avro (refused), JSON behind it. Key 2: JSON only.
    let ids = conn
        .transaction(|conn| {
            Ok::<_, outbox_diesel::Error>([
                outbox.enqueue(conn, &Loose { id: 1 }, Event::Created)?,
                outbox.enqueue(
                    conn,
                    &Strict {
                        id: 1,
                        region: "eu".into(),
                    },
                    Event::Created,
                )?,
                outbox.enqueue(conn, &Loose { id: 1 }, Event::Updated)?,
                outbox.enqueue(conn, &Loose { id: 2 }, Event::Created)?,
                outbox.enqueue(conn, &Loose { id: 2 }, Event::Updated)?,
            ])
        })
        .expect("enqueue");
    let [before, refused, behind, other, other_later] = ids;

    let relay = RunningRelay::spawn(
        env.relay()
            .schema_registry(client(registry.url()))
            .build()
            .unwrap(),
    );
    let records = read_records(&env, STRICT_TOPIC, &[before, other, other_later]).await;
    assert_eq!(records.len(), 3);
    let mut parked = None;
    wait_until("the Avro row is parked", RECEIVE_TIMEOUT, || {
        parked = row_of(&mut conn, refused).filter(|row| row.parked_at.is_some());
        parked.is_some()
    })
    .await;
    let parked = parked.unwrap();
    let error = parked.last_error.clone().unwrap_or_default();
    assert!(
        error.contains(&format!("registering a schema under subject `{subject}`"))
            && error.contains("incompatible schema (HTTP 409")
            && error.contains("region"),
        "last_error names the subject and the registry's reasons: {error}"
    );
    // The JSON row behind it on key 1 waits, not parked.
    let waiting = row_of(&mut conn, behind).expect("still in the outbox");
    assert_eq!(waiting.parked_at, None);
    assert_eq!(registry.versions(&subject), [1], "nothing registered");

    // Once the subject allows it, `outbox parked retry` releases the row.
    registry.set_compatibility(&subject, "NONE").unwrap();
    let applied = ops::retry_parked(&mut conn, &Selection::All).expect("retry parked");
    assert!(applied.is_complete(), "{applied:?}");
    let records = read_records(&env, STRICT_TOPIC, &[refused, behind]).await;
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    let report = relay.stop().await;
    assert_eq!(report.parked, 1, "{report:?}");
    assert_eq!(registry.versions(&subject), [1, 2]);
    assert!(
        records[&refused].offset() < records[&behind].offset(),
        "key 1 kept its order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_only_rows_wait_for_their_schema_to_be_registered() {
    let env = Env::new("relay_avro_lookup");
    env.kafka.ensure_shared_topic(LOOKUP_TOPIC, 4);
    let registry = TestRegistry::new("relay_avro_lookup");
    let subject = registry.value_subject(LOOKUP_TOPIC);
    let outbox = Outbox::new("lookups");
    let mut conn = env.conn();
    let models: Vec<Looked> = (1..=3)
        .map(|id| Looked {
            id,
            name: format!("n{id}"),
        })
        .collect();
    let ids = conn
        .transaction(|conn| outbox.enqueue_all(conn, &models, Event::Created))
        .expect("enqueue");

    let relay = RunningRelay::spawn(
        env.relay()
            .schema_registry(client(registry.url()))
            .auto_register(false)
            .build()
            .unwrap(),
    );
    wait_until("the rows record why they wait", RECEIVE_TIMEOUT, || {
        stored_rows(&mut conn)
            .iter()
            .all(|row| row.attempts > 0 && row.last_error.is_some())
    })
    .await;
    // Long enough for a few more attempts.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rows = stored_rows(&mut conn);
    assert_eq!(rows.len(), 3);
    for row in &rows {
        assert_eq!(row.parked_at, None, "waiting, not parked: {row:?}");
        let error = row.last_error.as_deref().unwrap_or_default();
        assert!(
            error.contains(&format!("subject `{subject}`"))
                && error.contains("run `outbox schemas register`"),
            "{error}"
        );
    }
    let versions = client(registry.url()).versions(&subject).await.unwrap();
    assert!(versions.is_empty(), "nothing registered: {versions:?}");
    relay.assert_running();

    let id = registry
        .register(&subject, Looked::avro_schema(1).unwrap())
        .unwrap();
    let records = read_records(&env, LOOKUP_TOPIC, &ids).await;
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    let report = relay.stop().await;
    assert_eq!(report.parked, 0, "{report:?}");
    assert!(
        records
            .values()
            .all(|r| frame_id(r.payload().unwrap()) == id)
    );
    assert_eq!(
        registry.versions(&subject),
        [1],
        "the relay registered nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_the_registry_refuses_leave_rows_waiting_not_parked() {
    let env = Env::new("relay_avro_unauthorized");
    env.kafka.ensure_shared_topic(LOCKED_TOPIC, 4);
    let registry = TestRegistry::new("relay_avro_unauthorized");
    let subject = registry.value_subject(LOCKED_TOPIC);
    let proxy = RegistryProxy::start(registry.url(), "relay", "relay-secret");
    let registry_of = |password: &str| {
        SchemaRegistry::builder(proxy.url())
            .ca_file(outbox_tests::secure::ca_path())
            .basic_auth("relay", password)
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap()
    };
    let outbox = Outbox::new("locks");
    let mut conn = env.conn();
    let id = conn
        .transaction(|conn| outbox.enqueue(conn, &Locked { id: 1 }, Event::Created))
        .expect("enqueue");

    let relay = RunningRelay::spawn(
        env.relay()
            .schema_registry(registry_of("wrong"))
            .build()
            .unwrap(),
    );
    wait_until("the row records why it waits", RECEIVE_TIMEOUT, || {
        row_of(&mut conn, id).is_some_and(|row| row.attempts >= 2)
    })
    .await;
    let row = row_of(&mut conn, id).unwrap();
    assert_eq!(row.parked_at, None, "{row:?}");
    let error = row.last_error.unwrap_or_default();
    assert!(
        error.contains(&format!("subject `{subject}`")) && error.contains("not authorized"),
        "{error}"
    );
    assert!(
        !error.contains("wrong"),
        "no password in last_error: {error}"
    );
    let refused = proxy.refused();
    assert!(refused >= 1);
    relay.stop().await;

    // With the right password it goes.
    let relay = RunningRelay::spawn(
        env.relay()
            .schema_registry(registry_of("relay-secret"))
            .build()
            .unwrap(),
    );
    let records = read_records(&env, LOCKED_TOPIC, &[id]).await;
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    relay.stop().await;
    let registered = registry
        .register(&subject, Locked::avro_schema(1).unwrap())
        .unwrap();
    assert_eq!(frame_id(records[&id].payload().unwrap()), registered);
}
