//! Per-key versions (`#[outbox(version)]`): a consumer applies each key's
//! changes in version order, once. Messages are enqueued with versions out of
//! sequence (as replays, dead-letter replays and lost messages make them) and
//! published by the relay; the tests look at the consumer's rows, its hook
//! log, its inbox and its stopped partitions.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};
use outbox::{Context, Event, HandlerError, Message, Outboxed, message_controller};
use outbox_diesel::Outbox;
use outbox_diesel::consumer::FailurePolicy;

use super::support::{
    Env, OnTopic, PRODUCER, RunningConsumer, TIMEOUT, active_stops, count_inbox, message_of,
    quick_retries, wait_until,
};

diesel::table! {
    /// The consumer's copy of the producer's accounts.
    accounts (id) {
        id -> BigInt,
        owner -> Text,
        revision -> Integer,
    }
}

const CONSUMER_TABLES: &str = "
    CREATE TABLE accounts (id bigint PRIMARY KEY, owner text NOT NULL, revision integer NOT NULL);
    CREATE TABLE account_log (
        id bigserial PRIMARY KEY,
        account_id bigint NOT NULL,
        what text NOT NULL,
        revision integer
    );
";

/// An account; `revision` counts its changes (the producer bumps it in the
/// transaction of each change).
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = accounts)]
#[outbox(topic = "outbox_consumer_tests_accounts")]
struct Account {
    id: i64,
    owner: String,
    #[outbox(version)]
    revision: i32,
}

fn account(id: i64, revision: i32) -> Account {
    Account {
        id,
        owner: format!("owner {id} r{revision}"),
        revision,
    }
}

/// The default gap policy (`wait`), with hooks that log what they see.
struct Waiting;

#[message_controller(model = Account, table = accounts)]
impl Waiting {
    async fn after_update(
        &self,
        ctx: &mut Context<'_>,
        account: &Account,
    ) -> Result<(), HandlerError> {
        log(ctx, account.id, "upsert", Some(account.revision)).await
    }

    async fn after_destroy(&self, ctx: &mut Context<'_>, id: &i64) -> Result<(), HandlerError> {
        log(ctx, *id, "destroy", None).await
    }
}

/// `gap = "stop"`.
struct Stopping;

#[message_controller(model = Account, table = accounts, gap = "stop")]
impl Stopping {}

/// `gap = "accept"`, with the same log as [`Waiting`].
struct Accepting;

#[message_controller(model = Account, table = accounts, gap = "accept")]
impl Accepting {
    async fn after_update(
        &self,
        ctx: &mut Context<'_>,
        account: &Account,
    ) -> Result<(), HandlerError> {
        log(ctx, account.id, "upsert", Some(account.revision)).await
    }
}

async fn log(
    ctx: &mut Context<'_>,
    id: i64,
    what: &str,
    revision: Option<i32>,
) -> Result<(), HandlerError> {
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO account_log (account_id, what, revision) VALUES ($1, $2, $3)",
        )
        .bind::<BigInt, _>(id)
        .bind::<Text, _>(what)
        .bind::<Nullable<Integer>, _>(revision),
        ctx.conn(),
    )
    .await?;
    Ok(())
}

/// An environment with the consumer's `accounts` and `account_log`.
fn env(name: &str) -> Env {
    let env = Env::new(name);
    env.consumer_conn()
        .batch_execute(CONSUMER_TABLES)
        .expect("create the accounts tables");
    env
}

/// Enqueues `changes` in the producer's outbox, in this order, in one
/// transaction (the relay keeps each key's order). Returns the messages.
fn enqueue(env: &Env, changes: &[(Event, Account)]) -> Vec<Message> {
    let outbox = Outbox::new(PRODUCER);
    env.producer_conn()
        .transaction(|conn| {
            changes
                .iter()
                .map(|(event, account)| {
                    let message = message_of(account, event.clone(), &env.topic);
                    outbox.enqueue_message(conn, &message)?;
                    Ok(message)
                })
                .collect::<Result<Vec<_>, outbox_diesel::Error>>()
        })
        .expect("the producer's transaction commits")
}

/// The revision of account `id` in the consumer (`None`: no row).
fn revision_of(conn: &mut PgConnection, id: i64) -> Option<i32> {
    accounts::table
        .find(id)
        .select(accounts::revision)
        .get_result(conn)
        .optional()
        .expect("read an account")
}

/// The hooks that ran for account `id`, in commit order.
fn log_of(conn: &mut PgConnection, id: i64) -> Vec<(String, Option<i32>)> {
    #[derive(QueryableByName)]
    struct Line {
        #[diesel(sql_type = Text)]
        what: String,
        #[diesel(sql_type = Nullable<Integer>)]
        revision: Option<i32>,
    }
    diesel::sql_query("SELECT what, revision FROM account_log WHERE account_id = $1 ORDER BY id")
        .bind::<BigInt, _>(id)
        .load::<Line>(conn)
        .expect("read the log")
        .into_iter()
        .map(|line| (line.what, line.revision))
        .collect()
}

fn upserts(revisions: &[i32]) -> Vec<(String, Option<i32>)> {
    revisions
        .iter()
        .map(|r| ("upsert".to_owned(), Some(*r)))
        .collect()
}

/// Replays and late messages are stale: acknowledged, nothing written, no
/// hook run, nothing stopped; the consumer goes on with the key's next
/// version. Destroyed messages carry the version too: an older one than the
/// row's is stale, an equal one deletes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stale_versions_are_skipped_and_the_consumer_goes_on() {
    let env = env("versions_stale");
    let policy = quick_retries(FailurePolicy::stop(), 3);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(Waiting, &env.topic), policy),
    );
    let relay = env.relay();
    let (updated, created, destroyed) = (Event::Updated, Event::Created, Event::Destroyed);
    let sent = enqueue(
        &env,
        &[
            // Key 1: v3 applied, then v2 and v3 again (replays), then v4.
            (created.clone(), account(1, 1)),
            (updated.clone(), account(1, 2)),
            (updated.clone(), account(1, 3)),
            (updated.clone(), account(1, 2)),
            (updated.clone(), account(1, 3)),
            (created.clone(), account(1, 1)),
            (updated.clone(), account(1, 4)),
            // Key 2: in sequence.
            (created.clone(), account(2, 1)),
            (updated.clone(), account(2, 2)),
            (updated.clone(), account(2, 3)),
            // Key 3: a destroyed message older than the row is stale.
            (created.clone(), account(3, 1)),
            (updated.clone(), account(3, 2)),
            (destroyed.clone(), account(3, 1)),
            (updated.clone(), account(3, 3)),
            // Key 4: a destroyed message of the row's version deletes it.
            (created.clone(), account(4, 1)),
            (destroyed.clone(), account(4, 1)),
        ],
    );
    // The destroyed payload is keys-only, with the version.
    let destroy = sent.last().expect("sent");
    assert_eq!(
        destroy.payloads.get(1),
        Some(&serde_json::json!({"id": 4, "revision": 1}))
    );

    let mut conn = env.consumer_conn();
    wait_until("every key reaches its last version", TIMEOUT, || {
        revision_of(&mut conn, 1) == Some(4)
            && revision_of(&mut conn, 2) == Some(3)
            && revision_of(&mut conn, 3) == Some(3)
            && log_of(&mut conn, 4).len() == 2
    })
    .await;
    wait_until("every record is in the inbox", TIMEOUT, || {
        count_inbox(&mut conn) == sent.len() as i64
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    assert_eq!(log_of(&mut conn, 1), upserts(&[1, 2, 3, 4]));
    assert_eq!(log_of(&mut conn, 2), upserts(&[1, 2, 3]));
    assert_eq!(log_of(&mut conn, 3), upserts(&[1, 2, 3]));
    let mut deleted = upserts(&[1]);
    deleted.push(("destroy".to_owned(), None));
    assert_eq!(log_of(&mut conn, 4), deleted);
    assert_eq!(revision_of(&mut conn, 4), None);
    let owner: String = accounts::table
        .find(1)
        .select(accounts::owner)
        .get_result(&mut conn)
        .expect("account 1");
    assert_eq!(owner, "owner 1 r4");
    assert!(active_stops(&mut conn, &env.group).is_empty());
    assert_eq!(
        (
            report.failed,
            report.retries,
            report.stopped,
            report.dead_lettered
        ),
        (0, 0, 0, 0),
        "{report:?}"
    );
    // Key 1's two replays and its late `created`, key 3's old destroyed.
    assert_eq!(report.stale, 4, "{report:?}");
    assert_eq!(report.processed, sent.len() as u64 - 4, "{report:?}");
    assert_eq!(report.gaps, 0, "{report:?}");
}

/// A message more than one version past its row's waits (`gap = "wait"`,
/// the default): retried, then the failure policy stops the partition with
/// an error naming the versions. The row keeps its version.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gap_waits_then_stops_the_partition() {
    let env = env("versions_gap_wait");
    let policy = quick_retries(FailurePolicy::stop(), 3);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(Waiting, &env.topic), policy),
    );
    let relay = env.relay();
    let sent = enqueue(
        &env,
        &[
            (Event::Created, account(7, 1)),
            (Event::Updated, account(7, 3)),
        ],
    );

    let mut conn = env.consumer_conn();
    wait_until("the partition stops", TIMEOUT, || {
        !active_stops(&mut conn, &env.group).is_empty()
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    let stops = active_stops(&mut conn, &env.group);
    assert_eq!(stops.len(), 1, "{stops:?}");
    let stop = &stops[0];
    assert_eq!(stop.kafka_partition, env.partition_of(7));
    assert_eq!(stop.message_id, Some(sent[1].id.as_uuid()));
    assert!(
        stop.error.contains(
            "version gap in `accounts` at partition key `7`: the row is at version 1, \
             the message at version 3, so version 2 is missing (gap = \"wait\""
        ),
        "{}",
        stop.error
    );
    assert_eq!(revision_of(&mut conn, 7), Some(1));
    assert_eq!(log_of(&mut conn, 7), upserts(&[1]));
    assert_eq!(
        (report.failed, report.stopped, report.retries),
        (1, 1, 2),
        "retried, then stopped: {report:?}"
    );
}

/// `gap = "stop"`: the failure policy at once, without retries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gap_under_stop_stops_at_once() {
    let env = env("versions_gap_stop");
    let policy = quick_retries(FailurePolicy::stop(), 3);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(Stopping, &env.topic), policy),
    );
    let relay = env.relay();
    let sent = enqueue(
        &env,
        &[
            (Event::Created, account(8, 1)),
            (Event::Updated, account(8, 2)),
            (Event::Updated, account(8, 5)),
        ],
    );

    let mut conn = env.consumer_conn();
    wait_until("the partition stops", TIMEOUT, || {
        !active_stops(&mut conn, &env.group).is_empty()
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    let stops = active_stops(&mut conn, &env.group);
    assert_eq!(stops.len(), 1, "{stops:?}");
    assert_eq!(stops[0].message_id, Some(sent[2].id.as_uuid()));
    assert!(
        stops[0].error.contains(
            "the row is at version 2, the message at version 5, so versions 3 to 4 are missing \
             (gap = \"stop\")"
        ),
        "{}",
        stops[0].error
    );
    assert_eq!(revision_of(&mut conn, 8), Some(2));
    assert_eq!(
        (report.failed, report.stopped, report.retries),
        (1, 1, 0),
        "one attempt: {report:?}"
    );
}

/// `gap = "accept"`: applied over the gap; stale messages are still skipped.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gap_under_accept_is_applied() {
    let env = env("versions_gap_accept");
    let policy = quick_retries(FailurePolicy::stop(), 3);
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller_with(OnTopic::new(Accepting, &env.topic), policy),
    );
    let relay = env.relay();
    let sent = enqueue(
        &env,
        &[
            (Event::Created, account(9, 1)),
            (Event::Updated, account(9, 4)),
            (Event::Updated, account(9, 3)),
            (Event::Updated, account(9, 5)),
            // No row yet: applied whatever its version.
            (Event::Updated, account(10, 6)),
        ],
    );

    let mut conn = env.consumer_conn();
    wait_until("both keys reach their last version", TIMEOUT, || {
        revision_of(&mut conn, 9) == Some(5) && revision_of(&mut conn, 10) == Some(6)
    })
    .await;
    wait_until("every record is in the inbox", TIMEOUT, || {
        count_inbox(&mut conn) == sent.len() as i64
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;

    assert_eq!(log_of(&mut conn, 9), upserts(&[1, 4, 5]));
    assert_eq!(log_of(&mut conn, 10), upserts(&[6]));
    assert!(active_stops(&mut conn, &env.group).is_empty());
    assert_eq!((report.failed, report.stopped), (0, 0), "{report:?}");
    // 9: v4 over v1 (a gap, applied), v3 (stale), v5; 10: no row.
    assert_eq!(
        (report.processed, report.stale, report.gaps),
        (4, 1, 1),
        "{report:?}"
    );
}
