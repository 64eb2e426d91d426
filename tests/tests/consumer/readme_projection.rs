//! The README's projection ("Projections and rebuilds"), as it is printed
//! there (keep them the same), run against the real services: a producer's
//! accounts copied, a stale replay, a rebuild.

// The README's items are `pub`, as in a service's crate.
#![allow(unreachable_pub)]

use diesel::prelude::*;
use outbox::{Outboxed, message_controller};
use outbox_diesel::consumer::{self, Consumer, FailurePolicy, Projection};

diesel::table! {
    account_view (id) {
        id -> BigInt,
        owner -> Text,
        revision -> Integer,
    }
}

/// The producer's `Account`, as this service reads it into its own table.
#[derive(Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = account_view)]
#[outbox(topic = "outbox_readme_accounts", route = "accounts")]
pub struct AccountView {
    pub id: i64,
    pub owner: String,
    #[outbox(version)] // replays never move a row backwards
    pub revision: i32,
}

pub struct AccountViews;

#[message_controller(model = AccountView, table = account_view, gap = "wait")]
impl AccountViews {}

/// Runs the projection `account_view` until `shutdown`.
pub async fn run_projection(
    database_url: &str,
    brokers: &str,
    shutdown: impl Future<Output = ()> + Send,
) -> outbox_diesel::Result<()> {
    let pool = consumer::pool(database_url, 8)?;
    let report = Consumer::builder(brokers, "account_view", pool)
        .controller_with(AccountViews, FailurePolicy::stop())
        .projection(Projection::new().reset_sql("TRUNCATE account_view"))
        .build()?
        .run(shutdown)
        .await?;
    println!("{} applied, {} stale", report.processed, report.stale);
    Ok(())
}

// ---------------------------------------------------------------- the test

use std::time::Duration;

use diesel::connection::SimpleConnection;
use outbox::Event;
use outbox_diesel::Outbox;
use outbox_tests::{RunningRelay, TestDb, TestKafka};

use super::support::{TIMEOUT, relay_on, wait_until};

const TABLE: &str = "CREATE TABLE account_view (id bigint PRIMARY KEY, owner text NOT NULL, revision integer NOT NULL)";

fn rows(conn: &mut PgConnection, ids: &[i64]) -> Vec<(i64, String, i32)> {
    account_view::table
        .filter(account_view::id.eq_any(ids))
        .order(account_view::id)
        .select((
            account_view::id,
            account_view::owner,
            account_view::revision,
        ))
        .load(conn)
        .expect("read account_view")
}

fn enqueue(conn: &mut PgConnection, outbox: &Outbox, view: &AccountView, event: Event) {
    conn.transaction(|conn| outbox.enqueue(conn, view, event))
        .expect("enqueue");
}

/// Each account changed three times, one replayed at an old revision: the
/// projection holds the last revisions; rebuilt, it holds them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_readme_projection_copies_replays_and_rebuilds() {
    let kafka = TestKafka::new("readme_projection");
    kafka.create_topic_named(AccountView::TOPIC, 4);
    let producer_db = TestDb::new("readme_projection_producer");
    let consumer_db = TestDb::new("readme_projection_consumer");
    for db in [&producer_db, &consumer_db] {
        let mut conn = db.connect();
        outbox_diesel::migrations::run(&mut conn).expect("migrations");
        conn.batch_execute(TABLE).expect("create account_view");
    }
    // Ids of this run: the topic is the model's, shared by every run.
    let base = i64::from(std::process::id()) * 1_000;
    let ids: Vec<i64> = (base..base + 20).collect();
    let outbox = Outbox::new("accounts");
    let mut producer = producer_db.connect();
    for revision in 1..=3 {
        for &id in &ids {
            let view = AccountView {
                id,
                owner: format!("owner {id} r{revision}"),
                revision,
            };
            let event = if revision == 1 {
                Event::Created
            } else {
                Event::Updated
            };
            enqueue(&mut producer, &outbox, &view, event);
        }
    }
    // A replay of revision 2 of the first account: stale.
    let old = AccountView {
        id: ids[0],
        owner: format!("owner {} r2", ids[0]),
        revision: 2,
    };
    enqueue(&mut producer, &outbox, &old, Event::Updated);
    let relay: RunningRelay = relay_on(producer_db.url());

    let expected: Vec<(i64, String, i32)> = ids
        .iter()
        .map(|&id| (id, format!("owner {id} r3"), 3))
        .collect();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let url = consumer_db.url().to_owned();
    let brokers = kafka.brokers().to_owned();
    let projection = tokio::spawn(async move {
        run_projection(&url, &brokers, async {
            stopped.await.ok();
        })
        .await
    });
    let mut conn = consumer_db.connect();
    wait_until("the projection holds the last revisions", TIMEOUT, || {
        rows(&mut conn, &ids) == expected
    })
    .await;
    let inbox: i64 = outbox_diesel::schema::outbox_inbox::table
        .count()
        .get_result(&mut conn)
        .expect("count the inbox");
    assert_eq!(inbox, 0, "a projection writes no inbox row");

    assert!(Projection::request_rebuild(&mut conn, "account_view").expect("request"));
    wait_until("the rebuild resets the table", TIMEOUT, || {
        rows(&mut conn, &ids) != expected
    })
    .await;
    wait_until(
        "the rebuilt projection holds the last revisions",
        TIMEOUT,
        || rows(&mut conn, &ids) == expected,
    )
    .await;
    stop.send(()).ok();
    tokio::time::timeout(Duration::from_secs(30), projection)
        .await
        .expect("the projection stops")
        .expect("its task")
        .expect("it ran");
    relay.stop().await;
}
