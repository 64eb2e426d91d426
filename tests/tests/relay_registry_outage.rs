//! The schema registry goes away while the relay runs: rows of a schema the
//! relay has not resolved yet wait (not parked, their `last_error` saying
//! why) with the rows of their keys behind them, while JSON rows and rows of
//! a schema resolved before the outage keep going; the relay neither stops
//! nor parks anything. Once the registry is back, everything is sent, each
//! key in order, nothing lost.
//!
//! The registry is the shared one, behind a [`TcpGate`] of this test's own
//! that is closed for the outage: other tests keep their registry. A binary
//! of its own all the same, like the broker outage, for its timing.

#[allow(dead_code)]
#[path = "relay/support.rs"]
mod support;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use outbox::{Event, MessageId, Outboxed, headers};
use outbox_diesel::Outbox;
use outbox_diesel::registry::{SchemaRegistry, SubjectStrategy};
use outbox_tests::tcp_gate::TcpGate;
use outbox_tests::{TestRegistry, TopicReader, header};
use rdkafka::Message as _;
use rdkafka::message::OwnedMessage;

use support::{
    Env, RECEIVE_TIMEOUT, RunningRelay, StoredRow, stored_rows, wait_until, wait_until_empty,
};

const TOPIC: &str = "outbox_relay_registry_outage";
/// Keys that get rows of the schema new during the outage.
const NEW_KEYS: u64 = 10;
/// Keys with JSON and cached-schema rows only.
const OTHER_KEYS: u64 = 10;
/// How long the registry stays away: several steps of the relay's backoff
/// for it (200 ms, doubling).
const OUTAGE: Duration = Duration::from_secs(5);

/// Resolved before the outage.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_registry_outage", route = "cached", partition_key = key, format = "avro")]
struct Cached {
    id: i64,
    key: String,
    seq: i64,
}

/// First enqueued during the outage.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_registry_outage", route = "fresh", partition_key = key, format = "avro")]
struct Fresh {
    id: i64,
    key: String,
    seq: i64,
    note: String,
}

#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_registry_outage", route = "plain", partition_key = key)]
struct Plain {
    id: i64,
    key: String,
    seq: i64,
}

/// What a message is, for the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Cached,
    Fresh,
    Plain,
}

/// Enqueues messages on keys, numbering each key's messages from 0; remembers
/// each message's key, number and kind.
struct Writer {
    outbox: Outbox,
    next_id: i64,
    next_seq: HashMap<String, i64>,
    sent: HashMap<MessageId, (String, i64, Kind)>,
}

impl Writer {
    fn new() -> Self {
        Writer {
            // Two records on one topic: a subject per record.
            outbox: Outbox::new("outage").with_subject_strategy(SubjectStrategy::TopicRecordName),
            next_id: 0,
            next_seq: HashMap::new(),
            sent: HashMap::new(),
        }
    }

    /// One transaction of `(key, kind)` messages, in order.
    fn write(&mut self, conn: &mut PgConnection, messages: &[(String, Kind)]) -> Vec<MessageId> {
        let mut planned = Vec::new();
        for (key, kind) in messages {
            let seq = self.next_seq.entry(key.clone()).or_insert(0);
            planned.push((self.next_id, key.clone(), *seq, *kind));
            *seq += 1;
            self.next_id += 1;
        }
        let outbox = &self.outbox;
        let ids = conn
            .transaction(|conn| {
                planned
                    .iter()
                    .map(|(id, key, seq, kind)| {
                        let (id, key, seq) = (*id, key.clone(), *seq);
                        match kind {
                            Kind::Cached => {
                                outbox.enqueue(conn, &Cached { id, key, seq }, Event::Created)
                            }
                            Kind::Fresh => outbox.enqueue(
                                conn,
                                &Fresh {
                                    id,
                                    key,
                                    seq,
                                    note: format!("note {id}"),
                                },
                                Event::Created,
                            ),
                            Kind::Plain => {
                                outbox.enqueue(conn, &Plain { id, key, seq }, Event::Created)
                            }
                        }
                    })
                    .collect::<outbox_diesel::Result<Vec<_>>>()
            })
            .expect("enqueue commits");
        for (message, (_, key, seq, kind)) in ids.iter().zip(planned) {
            self.sent.insert(*message, (key, seq, kind));
        }
        ids
    }

    fn ids_where(&self, keep: impl Fn(&str, Kind) -> bool) -> Vec<MessageId> {
        self.sent
            .iter()
            .filter(|(_, (key, _, kind))| keep(key, *kind))
            .map(|(id, _)| *id)
            .collect()
    }
}

fn subject_of(schema: &str) -> String {
    SubjectStrategy::TopicRecordName.subject(TOPIC, &outbox::avro::full_name(schema))
}

fn message_id(record: &OwnedMessage) -> Option<MessageId> {
    header(record, headers::MESSAGE_ID).and_then(|id| id.parse().ok())
}

/// Reads until every message of `ids` has arrived.
async fn read_ids(reader: &mut TopicReader, ids: &[MessageId], timeout: Duration) {
    let wanted: HashSet<MessageId> = ids.iter().copied().collect();
    reader
        .read_until(&format!("{} messages", ids.len()), timeout, |records| {
            let seen: HashSet<MessageId> = records.iter().filter_map(message_id).collect();
            wanted.is_subset(&seen)
        })
        .await;
}

fn new_key(k: u64) -> String {
    format!("new-{k}")
}

fn other_key(k: u64) -> String {
    format!("other-{k}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn registry_outage_holds_new_schemas_only_and_loses_nothing() {
    let env = Env::new("relay_registry_outage");
    env.kafka.ensure_shared_topic(TOPIC, 4);
    let registry = TestRegistry::new("relay_registry_outage");
    let cached_subject = subject_of(Cached::avro_schema(1).unwrap());
    let fresh_subject = subject_of(Fresh::avro_schema(1).unwrap());
    // Deleted at the end (and any level is fine).
    for subject in [&cached_subject, &fresh_subject] {
        registry.set_compatibility(subject, "NONE").unwrap();
    }
    let gate = TcpGate::in_front_of(registry.url());
    let client = SchemaRegistry::builder(gate.url())
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let relay = RunningRelay::spawn(
        env.relay()
            .backoff(Duration::from_millis(100), Duration::from_secs(1))
            .schema_registry(client)
            .build()
            .unwrap(),
    );
    let mut reader = TopicReader::from_now(&env.kafka, TOPIC);
    let mut conn = env.conn();
    let mut writer = Writer::new();

    // Before the outage: `Cached` is resolved (and JSON goes as ever).
    let warm = writer.write(
        &mut conn,
        &[(other_key(0), Kind::Cached), (other_key(0), Kind::Plain)],
    );
    read_ids(&mut reader, &warm, RECEIVE_TIMEOUT).await;

    gate.close();
    let down_at = Instant::now();
    // On the new keys: cached and JSON rows, then the new schema, then more
    // behind it. On the other keys: cached and JSON rows only. Interleaved,
    // over several transactions.
    for round in 0..3 {
        let mut messages = Vec::new();
        for k in 0..NEW_KEYS.max(OTHER_KEYS) {
            if k < NEW_KEYS {
                let kind = match round {
                    0 => Kind::Plain,
                    1 => Kind::Fresh,
                    _ => Kind::Cached,
                };
                messages.push((new_key(k), kind));
                if round == 0 {
                    messages.push((new_key(k), Kind::Cached));
                }
            }
            if k < OTHER_KEYS {
                messages.push((other_key(k), Kind::Plain));
                messages.push((other_key(k), Kind::Cached));
            }
        }
        writer.write(&mut conn, &messages);
    }
    // Sent while the registry is down: everything but the new schema's rows
    // and the rows behind them on their keys.
    let new_keys: HashSet<String> = (0..NEW_KEYS).map(new_key).collect();
    let flowing = {
        let first_fresh: HashMap<&String, i64> = writer
            .sent
            .values()
            .filter(|(_, _, kind)| *kind == Kind::Fresh)
            .map(|(key, seq, _)| (key, *seq))
            .fold(HashMap::new(), |mut firsts, (key, seq)| {
                let first = firsts.entry(key).or_insert(seq);
                *first = (*first).min(seq);
                firsts
            });
        writer
            .sent
            .iter()
            .filter(|(_, (key, seq, _))| first_fresh.get(key).is_none_or(|first| seq < first))
            .map(|(id, _)| *id)
            .collect::<Vec<_>>()
    };
    read_ids(&mut reader, &flowing, RECEIVE_TIMEOUT).await;
    eprintln!(
        "outage: {} rows went {:?} into the outage",
        flowing.len(),
        down_at.elapsed()
    );

    // JSON written later in the outage goes too, on its notification: not
    // on the registry's backoff (up to 30 s).
    let late = writer.write(
        &mut conn,
        &(0..OTHER_KEYS)
            .map(|k| (other_key(k), Kind::Plain))
            .collect::<Vec<_>>(),
    );
    let written = std::time::Instant::now();
    read_ids(&mut reader, &late, Duration::from_secs(40)).await;
    let took = written.elapsed();
    eprintln!("outage: JSON written during it went in {took:?}");
    assert!(
        took < Duration::from_secs(2),
        "JSON written during the outage took {took:?}"
    );

    // The waiting rows: the new schema's first row of each new key, with
    // why; the rows behind them untouched; nothing parked.
    let expected: HashSet<uuid::Uuid> = writer
        .sent
        .keys()
        .filter(|id| !flowing.contains(id) && !late.contains(id))
        .map(|id| id.as_uuid())
        .collect();
    // Rows sent are deleted with the relay's next read.
    let mut rows: Vec<StoredRow> = Vec::new();
    let mut left: HashSet<uuid::Uuid> = HashSet::new();
    wait_until("only the waiting rows are left", RECEIVE_TIMEOUT, || {
        rows = stored_rows(&mut conn);
        left = rows.iter().map(|row| row.message_id).collect();
        left == expected
    })
    .await;
    assert!(
        writer
            .ids_where(|key, _| !new_keys.contains(key))
            .iter()
            .all(|id| !left.contains(&id.as_uuid())),
        "the other keys' rows all went"
    );
    assert!(rows.iter().all(|row| row.parked_at.is_none()), "{rows:?}");
    let refused: Vec<&StoredRow> = rows.iter().filter(|row| row.attempts > 0).collect();
    assert_eq!(
        refused.len(),
        NEW_KEYS as usize,
        "one refused row per new key: {rows:?}"
    );
    for row in &refused {
        let (_, _, kind) =
            &writer.sent[&MessageId::from_uuid(row.message_id).expect("a message id")];
        assert_eq!(*kind, Kind::Fresh, "{row:?}");
        let error = row.last_error.as_deref().unwrap_or_default();
        assert!(
            error.contains(&format!("`{fresh_subject}`")) && error.contains("not reachable"),
            "last_error names the subject and the cause: {error}"
        );
    }
    relay.assert_running();

    // A few more backoff steps: each asks once and records one attempt on
    // the waiting rows (no busy loop), and parks nothing.
    tokio::time::sleep(OUTAGE.saturating_sub(down_at.elapsed())).await;
    let rows = stored_rows(&mut conn);
    assert!(rows.iter().all(|row| row.parked_at.is_none()), "{rows:?}");
    let attempts = rows.iter().map(|row| row.attempts).max().unwrap_or(0);
    assert!(
        (2..=12).contains(&attempts),
        "one attempt per backoff step over {OUTAGE:?}: {attempts}"
    );
    relay.assert_running();

    // The registry is back: everything goes, in order per key.
    gate.open();
    let up_at = Instant::now();
    let all: Vec<MessageId> = writer.sent.keys().copied().collect();
    wait_until_empty(&mut conn, Duration::from_secs(60)).await;
    read_ids(&mut reader, &all, Duration::from_secs(60)).await;
    eprintln!(
        "outage: {attempts} attempts on a waiting row in {OUTAGE:?}; all sent {:?} after the \
         registry came back",
        up_at.elapsed()
    );
    reader.read_rest(Duration::from_secs(1)).await;
    let report = relay.stop().await;
    assert_eq!(report.parked, 0, "{report:?}");
    assert!(report.failed_attempts >= NEW_KEYS, "{report:?}");

    // Per key, each message's first arrival in the order written, and all of them.
    let mut per_key: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    let mut seen = HashSet::new();
    for record in &reader.records {
        let Some(id) = message_id(record) else {
            continue;
        };
        let Some((key, seq, kind)) = writer.sent.get(&id) else {
            continue;
        };
        if !seen.insert(id) {
            continue;
        }
        assert_eq!(record.key(), Some(key.as_bytes()));
        if *kind != Kind::Plain {
            let value = record.payload().unwrap();
            assert!(
                value[0] == 0 && value[1..5] != [0, 0, 0, 0],
                "an Avro frame with its id: {:?}",
                &value[..5]
            );
        }
        per_key.entry(key.clone()).or_default().push(*seq);
    }
    assert_eq!(seen.len(), writer.sent.len(), "every message arrived");
    for (key, seqs) in &per_key {
        let expected: Vec<i64> = (0..seqs.len() as i64).collect();
        assert_eq!(*seqs, expected, "key {key} in order");
    }
    let fresh_id = registry
        .register(&fresh_subject, Fresh::avro_schema(1).unwrap())
        .unwrap();
    let fresh_frames = reader
        .records
        .iter()
        .filter(|r| {
            message_id(r)
                .and_then(|id| writer.sent.get(&id))
                .is_some_and(|(_, _, kind)| *kind == Kind::Fresh)
        })
        .map(|r| u32::from_be_bytes(r.payload().unwrap()[1..5].try_into().unwrap()));
    assert!(fresh_frames.into_iter().all(|id| id == fresh_id));
    assert_eq!(gate.requests(), 2, "one request per schema, both answered");
}
