//! The enqueue path as a producer uses it: transactions decide what is sent,
//! sync and async enqueue write the same message, `enqueue_all` keeps its
//! order, and realtime messages carry their defaults, all the way to Kafka.

use std::time::Duration;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection};
use outbox::{Event, MessageId, Outboxed, TraceContext, headers};
use outbox_diesel::schema::outbox_messages;
use outbox_diesel::{Error, Outbox};
use serde_json::json;

use super::support::{
    Env, RECEIVE_TIMEOUT, Reader, RunningRelay, assert_key_order, count_rows, enqueue, id_counts,
    seq_of,
};

/// The topic of [`User`]: a constant, shared by every run; tests filter what
/// they read by the message ids they enqueued.
const USERS_TOPIC: &str = "outbox_relay_tests_users";
/// The topic of [`Step`], likewise.
const STEPS_TOPIC: &str = "outbox_relay_tests_steps";

#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_tests_users", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(rename(v1 = "mail", v2 = "email"))]
    email: String,
    #[outbox(since = 2, default)]
    locale: String,
}

/// One step of a workflow: keyed by its workflow, numbered within it.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_relay_tests_steps", route = "steps", partition_key = workflow)]
struct Step {
    id: i64,
    workflow: String,
    seq: u64,
}

fn ada() -> User {
    User {
        id: 42,
        email: "ada@example.com".into(),
        locale: "en-GB".into(),
    }
}

fn trace() -> TraceContext {
    TraceContext::new(
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        Some("congo=t61rcWkgMzE"),
    )
    .expect("a valid traceparent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolled_back_message_is_never_published() {
    let env = Env::new("relay_rolled_back");
    let mut conn = env.conn();
    let relay = RunningRelay::spawn(env.relay().build().unwrap());
    let outbox = Outbox::new("relay-tests");

    // Enqueued, then the transaction fails: the row goes with it.
    let rolled_back = env.message("k", 1);
    let result = conn.transaction(|conn| {
        outbox.enqueue_message(conn, &rolled_back)?;
        assert_eq!(
            count_rows(conn),
            1,
            "the row is visible inside its transaction"
        );
        Err::<(), _>(Error::Database(diesel::result::Error::RollbackTransaction))
    });
    assert!(result.is_err());
    assert_eq!(count_rows(&mut conn), 0, "the rollback removed the row");

    // Let the relay run a few polls over the empty table, then commit a later
    // message on the same topic and key.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let committed = env.message("k", 2);
    enqueue(&mut conn, std::slice::from_ref(&committed));

    let mut reader = env.reader();
    reader.read_ids(&[committed.id], RECEIVE_TIMEOUT).await;
    reader.read_rest(Duration::from_secs(2)).await;
    let ids: Vec<MessageId> = reader.received.iter().map(|r| r.message.id).collect();
    assert_eq!(
        ids,
        [committed.id],
        "only the committed message is on the topic (rolled back: {})",
        rolled_back.id
    );
    let report = relay.stop().await;
    assert_eq!(report.published, 1, "{report:?}");
    assert_eq!(count_rows(&mut conn), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_outside_a_transaction_is_refused() {
    let env = Env::new("relay_not_in_transaction");
    let outbox = Outbox::new("relay-tests");
    let user = ada();
    let message = env.message("k", 1);

    let mut conn = env.conn();
    let refusals = [
        (
            "enqueue",
            outbox.enqueue(&mut conn, &user, Event::Created).err(),
        ),
        (
            "enqueue_all",
            outbox
                .enqueue_all(&mut conn, [&user, &user], Event::Updated)
                .err(),
        ),
        (
            "enqueue_message",
            outbox.enqueue_message(&mut conn, &message).err(),
        ),
        (
            "realtime",
            outbox
                .realtime(&env.topic)
                .session("s-1", json!({}))
                .enqueue(&mut conn)
                .err(),
        ),
    ];
    for (what, error) in refusals {
        assert!(
            matches!(error, Some(Error::NotInTransaction)),
            "sync {what}: {error:?}"
        );
    }
    // A finished transaction does not count either.
    conn.transaction(|conn| outbox.enqueue(conn, &user, Event::Created))
        .expect("enqueue in a transaction");
    let after = outbox.enqueue(&mut conn, &user, Event::Updated);
    assert!(matches!(after, Err(Error::NotInTransaction)), "{after:?}");
    diesel::delete(outbox_messages::table)
        .execute(&mut conn)
        .unwrap();

    let mut conn = env.db.connect_async().await;
    let refusals = [
        (
            "enqueue_async",
            outbox
                .enqueue_async(&mut conn, &user, Event::Created)
                .await
                .err(),
        ),
        (
            "enqueue_all_async",
            outbox
                .enqueue_all_async(&mut conn, [&user], Event::Created)
                .await
                .err(),
        ),
        (
            "enqueue_message_async",
            outbox
                .enqueue_message_async(&mut conn, &message)
                .await
                .err(),
        ),
        (
            "realtime async",
            outbox
                .realtime(&env.topic)
                .channel("news", json!({}))
                .enqueue_async(&mut conn)
                .await
                .err(),
        ),
    ];
    for (what, error) in refusals {
        assert!(
            matches!(error, Some(Error::NotInTransaction)),
            "async {what}: {error:?}"
        );
    }
    let error = Error::NotInTransaction.to_string();
    assert!(error.contains("transaction"), "{error}");

    let mut conn = env.conn();
    assert_eq!(count_rows(&mut conn), 0, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_and_async_enqueue_publish_the_same_message() {
    let env = Env::new("relay_sync_async");
    env.kafka.ensure_shared_topic(USERS_TOPIC, 4);
    let outbox = Outbox::new("accounts").with_trace(Some(trace()));
    let user = ada();

    let mut conn = env.conn();
    let sync_id = conn
        .transaction(|conn| outbox.enqueue(conn, &user, Event::Created))
        .expect("sync enqueue");
    let mut async_conn = env.db.connect_async().await;
    let async_id = async_conn
        .transaction(async |conn| outbox.enqueue_async(conn, &user, Event::Created).await)
        .await
        .expect("async enqueue");
    // Without a trace: no traceparent header.
    let untraced_id = conn
        .transaction(|conn| Outbox::new("accounts").enqueue(conn, &user, Event::Updated))
        .expect("enqueue without a trace");
    assert_ne!(sync_id, async_id);

    let relay = RunningRelay::spawn(env.relay().build().unwrap());
    let mut reader = Reader::new(&env.kafka, USERS_TOPIC);
    let ids = [sync_id, async_id, untraced_id];
    reader.read_ids(&ids, RECEIVE_TIMEOUT).await;
    relay.stop().await;

    let got = |id: MessageId| {
        reader
            .received
            .iter()
            .find(|r| r.message.id == id)
            .expect("read")
    };
    let (sync, asynced, untraced) = (got(sync_id), got(async_id), got(untraced_id));
    for received in [sync, asynced] {
        let message = &received.message;
        assert_eq!(message.event, Event::Created);
        assert_eq!(message.topic, USERS_TOPIC);
        assert_eq!(message.partition_key, "42");
        assert_eq!(message.from, "accounts");
        assert_eq!(message.to, "users");
        assert_eq!(message.payloads.versions().collect::<Vec<_>>(), [1, 2]);
        for version in User::VERSIONS {
            assert_eq!(
                message.payloads.get(*version),
                Some(&user.to_payload(&Event::Created, *version).unwrap()),
                "payload v{version}"
            );
        }
        assert_eq!(message.trace.as_ref(), Some(&trace()));
        let header = |name: &str| {
            received
                .headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            header(headers::TRACEPARENT),
            Some(trace().traceparent()),
            "{:?}",
            received.headers
        );
        assert_eq!(header(headers::TRACESTATE), Some("congo=t61rcWkgMzE"));
        assert_eq!(header(headers::CONTENT_TYPE), Some("application/json"));
        assert_eq!(header(headers::VERSIONS), Some("1,2"));
        assert_eq!(
            header(headers::MESSAGE_ID),
            Some(message.id.to_string().as_str())
        );
    }
    // Sync and async wrote the same message, but for its id and time.
    let mut same = asynced.message.clone();
    same.id = sync.message.id;
    same.occurred_at = sync.message.occurred_at;
    assert_eq!(same, sync.message);
    assert_eq!(sync.partition, asynced.partition, "one key, one partition");
    assert!(sync.offset < asynced.offset, "enqueue order is kept");

    assert_eq!(untraced.message.event, Event::Updated);
    assert_eq!(untraced.message.trace, None);
    assert!(
        untraced
            .headers
            .iter()
            .all(|(n, _)| n != headers::TRACEPARENT && n != headers::TRACESTATE),
        "{:?}",
        untraced.headers
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enqueue_all_keeps_the_order_of_its_models() {
    const STEPS: u64 = 3_000;
    const WORKFLOWS: u64 = 7;
    let env = Env::new("relay_enqueue_all");
    env.kafka.ensure_shared_topic(STEPS_TOPIC, 4);
    // Interleaved workflows, each numbered from 0 in the order given.
    let steps: Vec<Step> = (0..STEPS)
        .map(|i| Step {
            id: i as i64,
            workflow: format!("wf-{}", i % WORKFLOWS),
            seq: i / WORKFLOWS,
        })
        .collect();
    let outbox = Outbox::new("flows");
    let mut conn = env.conn();
    let ids = conn
        .transaction(|conn| outbox.enqueue_all(conn, &steps, Event::Created))
        .expect("enqueue_all");
    assert_eq!(ids.len(), steps.len());

    // The table holds them in the order given.
    let stored: Vec<uuid::Uuid> = outbox_messages::table
        .order(outbox_messages::id)
        .select(outbox_messages::message_id)
        .load(&mut conn)
        .unwrap();
    let given: Vec<uuid::Uuid> = ids.iter().map(MessageId::as_uuid).collect();
    assert!(stored == given, "rows are not in the order of the models");

    let relay = RunningRelay::spawn(env.relay().batch_size(500).build().unwrap());
    let mut reader = Reader::new(&env.kafka, STEPS_TOPIC);
    reader.read_ids(&ids, RECEIVE_TIMEOUT).await;
    reader.read_rest(Duration::from_millis(500)).await;
    let report = relay.stop().await;
    assert_eq!(report.published, STEPS, "{report:?}");

    let mine = reader.of(&ids);
    let counts = id_counts(&reader.received);
    assert!(
        ids.iter().all(|id| counts.get(id) == Some(&1)),
        "every step arrives exactly once"
    );
    for r in &mine {
        let step = &steps[ids.iter().position(|id| *id == r.message.id).unwrap()];
        assert_eq!(r.message.partition_key, step.workflow);
        assert_eq!(seq_of(&r.message), step.seq);
    }
    let per_key = assert_key_order(&mine);
    assert_eq!(per_key.len() as u64, WORKFLOWS);
    for (key, seqs) in per_key {
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert!(seqs == expected, "workflow {key} out of order: {seqs:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn realtime_messages_arrive_with_their_defaults() {
    let env = Env::new("relay_realtime");
    let outbox = Outbox::new("accounts");
    let realtime = outbox.realtime(&env.topic);

    let mut conn = env.conn();
    let session_id = conn
        .transaction(|conn| {
            realtime
                .session("sess-42", json!({"text": "Your export is ready"}))
                .metadata("priority", json!("high"))
                .metadata("ttl", json!(30))
                .enqueue(conn)
        })
        .expect("realtime session enqueue");
    let mut async_conn: AsyncPgConnection = env.db.connect_async().await;
    let channel_id = async_conn
        .transaction(async |conn| {
            realtime
                .channel("news", json!({"headline": "hello"}))
                .enqueue_async(conn)
                .await
        })
        .await
        .expect("realtime channel enqueue");

    let relay = RunningRelay::spawn(env.relay().build().unwrap());
    let mut reader = env.reader();
    reader
        .read_ids(&[session_id, channel_id], RECEIVE_TIMEOUT)
        .await;
    relay.stop().await;

    let got = |id: MessageId| {
        &reader
            .received
            .iter()
            .find(|r| r.message.id == id)
            .expect("read")
            .message
    };
    let session = got(session_id);
    assert_eq!(session.event.as_str(), outbox_diesel::REALTIME_EVENT);
    assert_eq!(session.event.as_str(), "notify");
    assert_eq!(session.from, "accounts");
    assert_eq!(session.to, "accounts/real_time/notify");
    assert_eq!(session.topic, env.topic);
    assert_eq!(session.partition_key, "sess-42");
    assert_eq!(session.payloads.versions().collect::<Vec<_>>(), [1]);
    assert_eq!(
        session.payloads.get(1),
        Some(&json!({
            "session_id": "sess-42",
            "data": {"text": "Your export is ready"},
            "metadata": {"priority": "high", "ttl": 30},
        }))
    );
    assert_eq!(session.trace, None);

    let channel = got(channel_id);
    assert_eq!(channel.event.as_str(), "notify");
    assert_eq!(channel.to, "accounts/real_time/notify");
    assert_eq!(channel.partition_key, "news");
    assert_eq!(
        channel.payloads.get(1),
        Some(&json!({"channel": "news", "data": {"headline": "hello"}, "metadata": {}}))
    );
}
