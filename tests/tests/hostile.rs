//! Hostile records on a consumed topic, written straight to the topic (not
//! through the outbox) by a producer that writes any bytes (`hostile/raw.rs`):
//! 10 MB values, JSON nested 100,000 deep, invalid UTF-8 in the key and in
//! header names and values, duplicate headers, NUL bytes in headers, 10,000
//! headers, a route no controller serves, negative and absurd versions, empty
//! and whitespace values. Each meets the failure policy with its typed error
//! (dead letter: the DLQ record carries the kind and the error; stop: the stop
//! row carries the error), the good records around them apply once, in order,
//! and a consumer process reading 1,000 of them keeps its memory bounded.
//!
//! What is decided here, where the issue is silent:
//! - a well-formed message of 10 MB applies: the consumer sets no size limit
//!   of its own; Kafka's (`max.message.bytes` of the topic, `message.max.bytes`
//!   of the producer) are the limit, and the consumer's memory is bounded by
//!   its read-ahead, not by the size of what it reads;
//! - 10,000 headers the format does not define are ignored (brokers and tools
//!   add their own), so such a message applies;
//! - a header the format defines given twice is refused, whatever the values;
//! - a header name that is not UTF-8 is refused (Kafka defines header names as
//!   strings; such a header cannot be told from ours);
//! - a NUL in a header name: librdkafka reads names as C strings, so the name
//!   reads up to the NUL (`to\0x` is a second `to`: refused as a duplicate);
//! - a 10 MB record the dead-letter topic refuses stops its partition (the
//!   stop names the refusal); once the topic takes it, resuming dead-letters it.

#[path = "consumer/support.rs"]
#[allow(dead_code, unused_imports)]
mod support;

mod hostile {
    pub(crate) mod raw;
}

use std::collections::BTreeMap;
use std::time::Duration;

use diesel::prelude::*;
use outbox::{Context, Event, HandlerError, Message, MessageId, message_controller};
use outbox_diesel::consumer::FailurePolicy;
use outbox_diesel::{dead_letter, stopped};
use outbox_tests::TestKafka;
use rdkafka::Message as _;
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::OwnedMessage;

use hostile::raw::{self, RawRecord};
use support::{
    Env, OnTopic, RunningConsumer, TIMEOUT, User, active_stops, applied,
    assert_applied_once_in_order, count_inbox, log_apply, message_of, users, wait_until,
};

/// Ten megabytes.
const TEN_MB: usize = 10 * 1024 * 1024;

/// The record size the test topics, their dead-letter topics and the
/// consumers are set to allow (16 MiB).
const LARGE: &str = "16777216";

/// Applies users; logs every create and update in the apply log.
struct Ledger;

#[message_controller(model = User, table = users)]
impl Ledger {
    async fn after_create(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }
}

/// What a hostile record should meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// A valid message however large: applied like any other.
    Applies,
    /// The failure policy, with the dead-letter kind and a part of the error.
    Fails {
        kind: &'static str,
        error: &'static str,
    },
}

/// One hostile record and what should happen to it.
struct Case {
    name: &'static str,
    record: RawRecord,
    expect: Expect,
    /// The id the record's `message_id` header carries, when valid.
    message_id: Option<MessageId>,
}

fn decode(error: &'static str) -> Expect {
    Expect::Fails {
        kind: dead_letter::KIND_DECODE,
        error,
    }
}

/// `message` as the relay would send it.
fn sent(message: &Message) -> RawRecord {
    let encoded = message.encode();
    RawRecord {
        key: Some(encoded.key),
        headers: encoded
            .headers
            .into_iter()
            .map(|(name, value)| (name.as_bytes().to_vec(), Some(value.into_bytes())))
            .collect(),
        value: Some(encoded.value),
    }
}

/// `record` with header `name`'s value replaced by `value`.
fn with_header(mut record: RawRecord, name: &str, value: &[u8]) -> RawRecord {
    for (header, old) in &mut record.headers {
        if header == name.as_bytes() {
            *old = Some(value.to_vec());
        }
    }
    record
}

/// `record` with one more header.
fn plus_header(mut record: RawRecord, name: &[u8], value: &[u8]) -> RawRecord {
    record.headers.push((name.to_vec(), Some(value.to_vec())));
    record
}

/// A message whose envelope names `version` both in its `versions` header and
/// as its payload's key (the message is otherwise valid).
fn with_version(message: &Message, version: &str) -> RawRecord {
    let record = with_header(sent(message), outbox::headers::VERSIONS, version.as_bytes());
    let value = String::from_utf8(record.value.clone().expect("a value")).expect("UTF-8");
    let value = value.replacen(
        "\"payloads\":{\"1\":",
        &format!("\"payloads\":{{\"{version}\":"),
        1,
    );
    RawRecord {
        value: Some(value.into_bytes()),
        ..record
    }
}

/// JSON arrays nested `depth` deep.
fn nested(depth: usize) -> String {
    "[".repeat(depth) + &"]".repeat(depth)
}

/// Every hostile kind (without the 10 MB ones unless `large`), case `i` about
/// user [`user_on`]`(i)` (its round 1, between rounds 0 and 2).
fn cases(topic: &str, large: bool) -> Vec<Case> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, build: &dyn Fn(&Message) -> RawRecord, expect| {
        if !large && name.contains("10 MB") {
            return;
        }
        let message = message_of(&User::new(user_on(out.len()), 1), Event::Updated, topic);
        out.push(Case {
            name,
            record: build(&message),
            expect,
            message_id: Some(message.id),
        });
    };
    add(
        "10 MB of garbage",
        &|m| RawRecord {
            value: Some(b"\x00\xffgarbage ".repeat(TEN_MB / 10)),
            ..sent(m)
        },
        decode("record value is not a JSON envelope"),
    );
    add(
        "a valid message of 10 MB",
        &|m| {
            let mut user = User::new(m.partition_key.parse().expect("a user id"), 1);
            user.name = Some("x".repeat(TEN_MB));
            let big = message_of(&user, Event::Updated, topic);
            sent(&Message { id: m.id, ..big })
        },
        Expect::Applies,
    );
    add(
        "a value nested 100,000 deep",
        &|m| RawRecord {
            value: Some(nested(100_000).into_bytes()),
            ..sent(m)
        },
        decode("recursion limit exceeded"),
    );
    add(
        "a payload nested 100,000 deep",
        &|m| {
            let record = sent(m);
            let value = String::from_utf8(record.value.clone().expect("a value")).expect("UTF-8");
            let start = value.find("\"payloads\":").expect("payloads");
            let deep = format!(
                "{}\"payloads\":{{\"1\":{}}}}}",
                &value[..start],
                nested(100_000)
            );
            RawRecord {
                value: Some(deep.into_bytes()),
                ..record
            }
        },
        decode("recursion limit exceeded"),
    );
    add(
        "a key that is not UTF-8",
        &|m| RawRecord {
            key: Some(b"\xff\xfe\xfd".to_vec()),
            ..sent(m)
        },
        decode("record key is not valid UTF-8"),
    );
    add(
        "a `to` header value that is not UTF-8",
        &|m| with_header(sent(m), outbox::headers::TO, b"us\xffers"),
        decode("header `to` is not valid UTF-8"),
    );
    add(
        "a header name that is not UTF-8",
        &|m| plus_header(sent(m), b"x-\xff\xfe", b"value"),
        decode("header name \"x-\u{fffd}\u{fffd}\" is not valid UTF-8 (header 7, counting from 0)"),
    );
    add(
        "a duplicate header with another value",
        &|m| plus_header(sent(m), b"to", b"admins"),
        decode("header `to` appears more than once"),
    );
    add(
        "a header name holding a NUL",
        &|m| plus_header(sent(m), b"to\0hidden", b"admins"),
        decode("header `to` appears more than once"),
    );
    add(
        "a header value holding a NUL",
        &|m| with_header(sent(m), outbox::headers::FROM, b"accounts\0"),
        decode("header `from` has an invalid value"),
    );
    add(
        "10,000 headers",
        &|m| {
            let mut record = sent(m);
            for i in 0..10_000 {
                record
                    .headers
                    .push((format!("x-noise-{i}").into_bytes(), Some(b"noise".to_vec())));
            }
            record
        },
        Expect::Applies,
    );
    add(
        "a route no controller serves",
        &|m| {
            sent(&Message {
                to: "nobody".into(),
                ..m.clone()
            })
        },
        Expect::Fails {
            kind: dead_letter::KIND_NO_CONTROLLER,
            error: "no controller serves route `nobody`",
        },
    );
    for (name, version) in [
        ("version -1", "-1"),
        ("version u64::MAX", "18446744073709551615"),
        ("version i64::MIN", "-9223372036854775808"),
        ("version 2^40", "1099511627776"),
    ] {
        add(
            name,
            &|m| with_version(m, version),
            decode("header `versions` has an invalid value"),
        );
    }
    add(
        "an empty value",
        &|m| RawRecord {
            value: Some(Vec::new()),
            ..sent(m)
        },
        // Kafka keeps an empty value apart from a null one (a tombstone).
        decode("record value is not a JSON envelope: EOF while parsing"),
    );
    add(
        "a value of whitespace",
        &|m| RawRecord {
            value: Some(b" \t\r\n  ".to_vec()),
            ..sent(m)
        },
        decode("record value is not a JSON envelope: EOF while parsing"),
    );
    add(
        "no value (a tombstone)",
        &|m| RawRecord {
            value: None,
            ..sent(m)
        },
        decode("record has no value"),
    );
    out
}

/// Sets `max.message.bytes` of `topics` to [`LARGE`].
async fn allow_large_records(kafka: &TestKafka, topics: &[&str]) {
    let admin: AdminClient<DefaultClientContext> = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .create()
        .expect("an admin client");
    let changes: Vec<AlterConfig<'_>> = topics
        .iter()
        .map(|topic| {
            AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", LARGE)
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin
        .alter_configs(&changes, &options)
        .await
        .expect("alter the topics' configs")
    {
        result.unwrap_or_else(|(resource, code)| panic!("alter {resource:?}: {code}"));
    }
}

/// A test topic with a partition per hostile kind, the test's DLQ, and the
/// records: on partition `p`, user `p`'s round 0, hostile case `p` (round 1),
/// round 2.
struct Setup {
    env: Env,
    dlq: String,
    cases: Vec<Case>,
    /// Offset of each case's record on its partition.
    offsets: Vec<i64>,
    /// The good messages (rounds 0 and 2, and the cases that apply) by id.
    good: BTreeMap<uuid::Uuid, (i64, i64)>,
}

/// The user each partition's records are about.
fn user_on(partition: usize) -> i64 {
    partition as i64 + 1
}

async fn setup(test_name: &str) -> Setup {
    // The cases' messages name the topic: made before it, with its name.
    let kinds = cases("probe", true).len() as i32;
    let mut env = Env::with_partitions(test_name, kinds);
    let dlq = env.dead_letter_topic();
    allow_large_records(&env.kafka, &[&env.topic]).await;
    let cases = cases(&env.topic, true);
    let mut offsets = Vec::new();
    let mut good = BTreeMap::new();
    for (partition, case) in cases.iter().enumerate() {
        let user = user_on(partition);
        let p = partition as i32;
        let first = message_of(&User::new(user, 0), Event::Created, &env.topic);
        raw::produce(&env.kafka, &env.topic, p, &sent(&first));
        offsets.push(raw::produce(&env.kafka, &env.topic, p, &case.record));
        let last = message_of(&User::new(user, 2), Event::Updated, &env.topic);
        raw::produce(&env.kafka, &env.topic, p, &sent(&last));
        good.insert(first.id.as_uuid(), (user, 0));
        good.insert(last.id.as_uuid(), (user, 2));
        if case.expect == Expect::Applies {
            good.insert(case.message_id.expect("an id").as_uuid(), (user, 1));
        }
    }
    Setup {
        env,
        dlq,
        cases,
        offsets,
        good,
    }
}

/// A consumer of the setup's topic with `policy` (its controller's, and the
/// default for records of no route it serves), allowed records of [`LARGE`].
fn consumer(setup: &Setup, policy: FailurePolicy) -> RunningConsumer {
    RunningConsumer::spawn(
        setup
            .env
            .consumer()
            .set("message.max.bytes", LARGE)
            .failure_policy(policy.clone())
            .controller_with(OnTopic::new(Ledger, &setup.env.topic), policy),
    )
}

/// A header of a dead letter by name, read without trusting the other names.
fn dlq_header(record: &OwnedMessage, name: &str) -> Option<String> {
    let headers = record.headers()?;
    outbox::kafka::read_headers(headers)
        .find(|h| h.name == name.as_bytes())
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// The first `count` headers of `record`, names and values as bytes.
fn header_bytes(record: &OwnedMessage, count: usize) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    record.headers().map_or_else(Vec::new, |headers| {
        outbox::kafka::read_headers(headers)
            .take(count)
            .map(|h| (h.name.to_vec(), h.value.map(<[u8]>::to_vec)))
            .collect()
    })
}

/// `name` up to its first NUL: how librdkafka hands a header name out.
fn up_to_nul(name: &[u8]) -> &[u8] {
    name.split(|&b| b == 0).next().unwrap_or_default()
}

/// The dead letters read from `dlq`, by original partition, once there are `count`.
async fn dead_letters(kafka: &TestKafka, dlq: &str, count: usize) -> BTreeMap<i32, OwnedMessage> {
    let mut reader = outbox_tests::TopicReader::from_start(kafka, dlq);
    reader
        .read_until("the dead letters", TIMEOUT, |records| {
            records.len() >= count
        })
        .await;
    reader
        .records
        .iter()
        .map(|r| {
            let partition = dlq_header(r, dead_letter::PARTITION)
                .and_then(|p| p.parse().ok())
                .expect("a partition header");
            (partition, r.clone())
        })
        .collect()
}

/// Checks the apply log: every good message applied once, per partition in
/// offset order and per user in round order; nothing else applied.
fn assert_good_applied(setup: &Setup, conn: &mut PgConnection) {
    let log = applied(conn);
    let per_key = assert_applied_once_in_order(&log);
    let logged: BTreeMap<uuid::Uuid, (i64, i64)> = log
        .iter()
        .map(|row| (row.message_id, (row.user_id, row.seq.unwrap_or(-1))))
        .collect();
    assert_eq!(logged, setup.good, "exactly the good messages applied");
    for (partition, case) in setup.cases.iter().enumerate() {
        let expected: Vec<i64> = match case.expect {
            Expect::Applies => vec![0, 1, 2],
            Expect::Fails { .. } => vec![0, 2],
        };
        assert_eq!(per_key[&user_on(partition)], expected, "{}", case.name);
    }
}

/// Dead-letter policy: each failing kind goes to the DLQ with its kind and
/// typed error, byte for byte as it was read; the 10 MB one, which the DLQ
/// refuses at first, stops its partition until the DLQ takes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_records_are_dead_lettered_with_their_typed_errors() {
    let setup = setup("hostile_dlq").await;
    let failing = setup
        .cases
        .iter()
        .filter(|c| c.expect != Expect::Applies)
        .count();
    let garbage = setup
        .cases
        .iter()
        .position(|c| c.name == "10 MB of garbage")
        .expect("the 10 MB garbage case") as i32;
    let running = consumer(&setup, quick_retries_dead_letter());
    let mut conn = setup.env.consumer_conn();
    let group = setup.env.group.clone();
    wait_until("the 10 MB garbage stops its partition", TIMEOUT, || {
        !active_stops(&mut conn, &group).is_empty()
    })
    .await;
    let stops = active_stops(&mut conn, &group);
    assert_eq!(stops.len(), 1, "{stops:?}");
    let stop = &stops[0];
    println!("stop (the DLQ refuses 10 MB): {}", stop.error);
    assert_eq!(
        (stop.kafka_partition, stop.kafka_offset),
        (garbage, setup.offsets[garbage as usize])
    );
    assert!(
        stop.error.contains("record value is not a JSON envelope")
            && stop.error.contains("dead-letter failed")
            && stop.error.contains("too large"),
        "the stop names the decode error and the DLQ's refusal: {}",
        stop.error
    );

    // The DLQ takes large records now: resuming dead-letters it.
    allow_large_records(&setup.env.kafka, &[&setup.dlq]).await;
    stopped::resume(&mut conn, &group, &setup.env.topic, garbage).expect("resume");
    let letters = dead_letters(&setup.env.kafka, &setup.dlq, failing).await;
    wait_until("every good message is applied", TIMEOUT, || {
        count_inbox(&mut conn) == setup.good.len() as i64
    })
    .await;
    let report = running.stop().await;

    assert_good_applied(&setup, &mut conn);
    assert!(active_stops(&mut conn, &group).is_empty());
    assert_eq!(letters.len(), failing, "one dead letter per failing record");
    for (partition, case) in setup.cases.iter().enumerate() {
        let Expect::Fails { kind, error } = case.expect else {
            assert!(!letters.contains_key(&(partition as i32)), "{}", case.name);
            continue;
        };
        let what = case.name;
        let letter = &letters[&(partition as i32)];
        assert_eq!(
            letter.payload(),
            case.record.value.as_deref(),
            "{what}: value kept"
        );
        assert_eq!(letter.key(), case.record.key.as_deref(), "{what}: key kept");
        assert_eq!(
            letter.headers().map_or(0, rdkafka::message::Headers::count),
            case.record.headers.len() + 8,
            "{what}: every original header kept, and the eight of the dead letter"
        );
        assert_eq!(
            header_bytes(letter, case.record.headers.len()),
            case.record
                .headers
                .iter()
                .map(|(name, value)| (up_to_nul(name).to_vec(), value.clone()))
                .collect::<Vec<_>>(),
            "{what}: the original headers kept byte for byte, names that are not UTF-8 included"
        );
        assert_eq!(
            dlq_header(letter, dead_letter::ERROR_KIND).as_deref(),
            Some(kind),
            "{what}"
        );
        let text = dlq_header(letter, dead_letter::ERROR).unwrap_or_default();
        println!("dead letter: {what} -> {kind}: {text}");
        assert!(
            text.contains(error),
            "{what}: {text:?} should say {error:?}"
        );
        assert_eq!(
            dlq_header(letter, dead_letter::OFFSET),
            Some(setup.offsets[partition].to_string()),
            "{what}"
        );
    }
    assert_eq!(
        (report.dead_lettered, report.stopped, report.failed),
        (failing as u64, 1, failing as u64 + 1),
        "{report:?}"
    );
    assert_eq!(report.processed, setup.good.len() as u64, "{report:?}");
}

/// Stop policy: each failing kind stops its partition on its record, the
/// stop row carrying its typed error (and its message id when the header has
/// one); nothing after it applies. A consumer with the dead-letter policy,
/// once every stop is resumed, gets past them: each good message applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_records_stop_their_partitions_with_their_typed_errors() {
    let setup = setup("hostile_stop").await;
    let failing: Vec<usize> = (0..setup.cases.len())
        .filter(|p| setup.cases[*p].expect != Expect::Applies)
        .collect();
    let running = consumer(&setup, FailurePolicy::stop());
    let mut conn = setup.env.consumer_conn();
    let group = setup.env.group.clone();
    let applying: i64 = setup
        .cases
        .iter()
        .map(|c| if c.expect == Expect::Applies { 3 } else { 1 })
        .sum();
    wait_until("each failing record stops its partition", TIMEOUT, || {
        active_stops(&mut conn, &group).len() == failing.len() && count_inbox(&mut conn) == applying
    })
    .await;
    let report = running.stop().await;
    assert_eq!(
        (report.stopped, report.failed, report.dead_lettered),
        (failing.len() as u64, failing.len() as u64, 0),
        "{report:?}"
    );

    let stops = active_stops(&mut conn, &group);
    for &partition in &failing {
        let case = &setup.cases[partition];
        let Expect::Fails { error, .. } = case.expect else {
            unreachable!()
        };
        let stop = stops
            .iter()
            .find(|s| s.kafka_partition == partition as i32)
            .unwrap_or_else(|| panic!("{}: no stop", case.name));
        assert_eq!(stop.kafka_offset, setup.offsets[partition], "{}", case.name);
        println!("stop: {} -> {}", case.name, stop.error);
        assert!(stop.error.contains(error), "{}: {}", case.name, stop.error);
        assert!(
            !stop.error.contains('\0'),
            "{}: no NUL in PostgreSQL text",
            case.name
        );
        // The id comes from the record's `message_id` header, readable in each.
        assert_eq!(
            stop.message_id,
            case.message_id.map(|id| id.as_uuid()),
            "{}",
            case.name
        );
    }

    // Past them: the dead-letter policy, every stop resumed.
    allow_large_records(&setup.env.kafka, &[&setup.dlq]).await;
    for stop in &stops {
        stopped::resume(&mut conn, &group, &stop.topic, stop.kafka_partition).expect("resume");
    }
    let running = consumer(&setup, quick_retries_dead_letter());
    dead_letters(&setup.env.kafka, &setup.dlq, failing.len()).await;
    wait_until("every good message is applied", TIMEOUT, || {
        count_inbox(&mut conn) == setup.good.len() as i64
    })
    .await;
    let report = running.stop().await;
    assert_eq!(report.dead_lettered, failing.len() as u64, "{report:?}");
    assert_good_applied(&setup, &mut conn);
}

fn quick_retries_dead_letter() -> FailurePolicy {
    support::quick_retries(FailurePolicy::dead_letter(), 2)
}

/// Records in the memory test's larger stream; the smaller one has half as
/// many.
const STREAM: usize = 1_000;

/// The 10 MB records among the larger stream's (320 MB of backlog); the
/// smaller one has half as many (160 MB), as densely.
const BIG: usize = 32;

/// The bound on the consumer process's peak resident memory. The process
/// holds far less than its backlog: librdkafka's read-ahead
/// (`queued.max.messages.kbytes`, 64 MiB by default), and per partition
/// applying at once (up to `concurrency`) its read-ahead (`partition_buffer`,
/// 4 MiB, overshot by one record) and the record in hand, a 10 MB one held
/// several times over (the bytes, the parsed JSON, the model, the statement's
/// parameters or the dead-letter copy).
const PEAK_RSS_BOUND_MB: u64 = 400;

/// librdkafka's read-ahead in the memory test (`queued.max.messages.kbytes`;
/// 64 MiB by default), and what one fetch may bring (`fetch.max.bytes`; 50 MiB
/// by default), both [`LARGE`]. Lowered so that the smaller stream already
/// fills what the consumer holds at once: at the defaults, most of a 100 MB
/// backlog fits in the read-ahead, and the peak varies with how much of it is
/// read ahead.
const READ_AHEAD_KIB: u32 = 16 * 1024;

/// How much higher the larger stream's peak may be than the smaller one's.
/// A consumer whose memory grew with its backlog would hold the 160 MB more
/// (the 10 MB records are read far faster than they are applied); a bounded
/// one peaks a little higher by chance (twice as many groups of four 10 MB
/// records, twice the chances that the four are held at their largest at the
/// same time as a fetch).
const PEAK_RSS_SLACK_MB: u64 = 80;

/// Peak resident memory of process `pid` (`VmHWM` of `/proc/<pid>/status`), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read the status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line")
}

/// What a consumer process did with one hostile stream.
struct StreamRun {
    /// Its records.
    records: usize,
    /// Its 10 MB records.
    big: usize,
    /// Its records that fail (dead-lettered).
    failing: usize,
    /// The process's peak resident memory.
    peak_mb: u64,
    /// From the process's start to the last record handled.
    took: Duration,
}

/// A consumer process (`consumer-process --dead-letter`) reads a backlog of
/// `records` records of every kind, `big` of them 10 MB (alternately garbage
/// and valid), spread over four partitions so they are read at the same time:
/// every valid one applies, every other is dead-lettered. Returns its peak
/// resident memory.
async fn consume_hostile_stream(test_name: &str, records: usize, big: usize) -> StreamRun {
    let mut env = Env::with_partitions(test_name, 4);
    let dlq = env.dead_letter_topic();
    allow_large_records(&env.kafka, &[&env.topic, &dlq]).await;
    let kinds = cases(&env.topic, false);
    assert_eq!(big % 4, 0, "10 MB records come four at a time");
    // Four at a time, one on each partition, at the same place in each period:
    // read ahead together and applied at the same time, in both streams.
    let period = records / (big / 4);
    let mut producer = raw::RawProducer::default();
    let (mut good, mut failing, mut made) = (std::collections::BTreeSet::new(), 0, 0);
    for i in 0..records {
        let in_group = (i % period).checked_sub(period / 2).filter(|at| *at < 4);
        let partition = in_group.unwrap_or(i % 4) as i32;
        let user = 1_000 + i as i64;
        let record = if in_group.is_some() {
            made += 1;
            if made % 2 == 0 {
                let mut model = User::new(user, 0);
                model.name = Some("x".repeat(TEN_MB));
                let message = message_of(&model, Event::Created, &env.topic);
                good.insert(message.id.as_uuid());
                sent(&message)
            } else {
                failing += 1;
                let message = message_of(&User::new(user, 0), Event::Created, &env.topic);
                RawRecord {
                    value: Some(b"\x00\xffgarbage ".repeat(TEN_MB / 10)),
                    ..sent(&message)
                }
            }
        } else if i % 2 == 0 {
            let message = message_of(&User::new(user, 0), Event::Created, &env.topic);
            good.insert(message.id.as_uuid());
            sent(&message)
        } else {
            let case = &kinds[(i / 2) % kinds.len()];
            match case.expect {
                Expect::Applies => {
                    good.insert(case.message_id.expect("an id").as_uuid());
                }
                Expect::Fails { .. } => failing += 1,
            }
            case.record.clone()
        };
        producer.produce(&env.kafka, &env.topic, partition, &record);
    }
    drop(kinds);
    assert_eq!(made, big);

    let name = test_name.replace('_', "-");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_consumer-process"));
    command
        .args([
            "--database-url",
            env.consumer_db.url(),
            "--brokers",
            env.kafka.brokers(),
        ])
        .args([
            "--group", &env.group, "--topic", &env.topic, "--name", &name,
        ])
        .args(["--set", &format!("message.max.bytes={LARGE}")])
        .args([
            "--set",
            &format!("queued.max.messages.kbytes={READ_AHEAD_KIB}"),
        ])
        .args(["--set", &format!("fetch.max.bytes={LARGE}")])
        .args(["--dead-letter", "--stop-on-stdin-close"]);
    let started = std::time::Instant::now();
    let process = outbox_tests::process::ChildProcess::start(&name, &mut command);
    let pid = process.id();
    let mut conn = env.consumer_conn();
    let mut reader = outbox_tests::TopicReader::from_start(&env.kafka, &dlq);
    reader
        .read_until(
            "every failing record is dead-lettered",
            TIMEOUT * 3,
            |records| records.len() >= failing,
        )
        .await;
    wait_until("every valid message is applied", TIMEOUT * 3, || {
        count_inbox(&mut conn) == good.len() as i64
    })
    .await;
    let took = started.elapsed();
    let peak_mb = peak_rss_kib(pid) / 1024;
    let out = process.terminate(TIMEOUT).await;

    assert_eq!(
        reader.records.len(),
        failing,
        "one dead letter per failing record"
    );
    let applied_ids: std::collections::BTreeSet<uuid::Uuid> = applied(&mut conn)
        .iter()
        .map(|row| row.message_id)
        .collect();
    assert_eq!(applied_ids, good, "every valid message applied");
    assert!(
        out.contains(&format!("dead_lettered={failing} stopped=0")),
        "{out}"
    );
    StreamRun {
        records,
        big,
        failing,
        peak_mb,
        took,
    }
}

/// The consumer's memory does not grow with its backlog: a consumer process
/// reading a stream of 500 hostile records, 16 of them 10 MB, then one of
/// 1,000 records with twice as many, peaks within [`PEAK_RSS_SLACK_MB`] of the
/// first and under [`PEAK_RSS_BOUND_MB`] (the lower peak of two runs of each;
/// figures printed).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_process_reading_a_hostile_stream_stays_bounded() {
    // Each size twice, its lower peak kept: one run's peak varies by some
    // 50-100 MB with how the fetches and the 10 MB records in hand happen to
    // line up; memory that grew with the backlog would show in both runs.
    let lower = |a: StreamRun, b: StreamRun| if b.peak_mb < a.peak_mb { b } else { a };
    let runs = [
        lower(
            consume_hostile_stream("hostile_memory", STREAM / 2, BIG / 2).await,
            consume_hostile_stream("hostile_memory_again", STREAM / 2, BIG / 2).await,
        ),
        lower(
            consume_hostile_stream("hostile_memory_2x", STREAM, BIG).await,
            consume_hostile_stream("hostile_memory_2x_again", STREAM, BIG).await,
        ),
    ];
    for run in &runs {
        println!(
            "hostile stream: {} records ({} of 10 MB, {} failing): consumer-process \
             peak RSS (VmHWM) {} MB, handled in {:.1} s",
            run.records,
            run.big,
            run.failing,
            run.peak_mb,
            run.took.as_secs_f64()
        );
    }
    let [small, large] = &runs;
    for run in &runs {
        assert!(
            run.peak_mb < PEAK_RSS_BOUND_MB,
            "{} records of 10 MB: peak RSS {} MB, bound {PEAK_RSS_BOUND_MB} MB",
            run.big,
            run.peak_mb
        );
    }
    assert!(
        large.peak_mb <= small.peak_mb + PEAK_RSS_SLACK_MB,
        "twice the backlog of 10 MB records ({} MB more) raised the peak RSS from {} MB \
         to {} MB: more than {PEAK_RSS_SLACK_MB} MB, so memory grows with the backlog",
        (large.big - small.big) * 10,
        small.peak_mb,
        large.peak_mb
    );
}
