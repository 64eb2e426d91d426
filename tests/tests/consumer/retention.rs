//! The inbox retention task: a running consumer deletes the inbox rows
//! processed longer ago than its retention, in batches of 1,000 rows per
//! statement, and keeps every other row, the ones it writes as it applies
//! included.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use outbox_diesel::schema::outbox_inbox;

use super::support::{
    Env, OnTopic, PRODUCER, RunningConsumer, TIMEOUT, Users, round, users_of, wait_until,
};

/// Rows processed 8 days ago: more than two batches of the retention task.
const OLD: i64 = 2_500;
/// Rows processed just now.
const RECENT: i64 = 300;
/// The `source` of the rows the test inserts, one per age.
const OLD_SOURCE: &str = "retention-old";
const RECENT_SOURCE: &str = "retention-recent";

/// Inbox rows of `source`.
fn inbox_rows_of(conn: &mut PgConnection, source: &str) -> i64 {
    outbox_inbox::table
        .filter(outbox_inbox::source.eq(source))
        .count()
        .get_result(conn)
        .expect("count inbox rows")
}

/// The message ids in the inbox from `source`.
fn inbox_ids_of(conn: &mut PgConnection, source: &str) -> Vec<uuid::Uuid> {
    outbox_inbox::table
        .filter(outbox_inbox::source.eq(source))
        .select(outbox_inbox::message_id)
        .order(outbox_inbox::message_id)
        .load(conn)
        .expect("read inbox ids")
}

/// 2,500 inbox rows processed 8 days ago and 300 processed now; a consumer
/// with a 7-day retention checked every 200 ms deletes the old ones (three
/// statements of at most 1,000) and keeps the recent ones, and the rows of
/// the messages it applies meanwhile, through later passes too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn inbox_rows_past_their_retention_are_deleted_the_others_kept() {
    const KEYS: i64 = 20;
    let env = Env::new("consumer_inbox_retention");
    let mut conn = env.consumer_conn();
    conn.batch_execute(&format!(
        "INSERT INTO outbox_inbox \
             (source, message_id, topic, kafka_partition, kafka_offset, processed_at) \
         SELECT '{OLD_SOURCE}', gen_random_uuid(), 'retention', 0, n, \
                now() - interval '8 days' \
         FROM generate_series(1, {OLD}) AS n; \
         INSERT INTO outbox_inbox \
             (source, message_id, topic, kafka_partition, kafka_offset, processed_at) \
         SELECT '{RECENT_SOURCE}', gen_random_uuid(), 'retention', 1, n, now() \
         FROM generate_series(1, {RECENT}) AS n;"
    ))
    .expect("insert the inbox rows");
    let recent = inbox_ids_of(&mut conn, RECENT_SOURCE);
    assert_eq!(
        (inbox_rows_of(&mut conn, OLD_SOURCE), recent.len() as i64),
        (OLD, RECENT)
    );

    let started = Instant::now();
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller(OnTopic::new(Users, &env.topic))
            .inbox_retention(Duration::from_secs(7 * 24 * 3600))
            .retention_interval(Duration::from_millis(200)),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    let mut applied: Vec<uuid::Uuid> = producer
        .write(&round(1..=KEYS, 0))
        .iter()
        .map(|m| m.id.as_uuid())
        .collect();
    applied.sort();

    wait_until("the old inbox rows are deleted", TIMEOUT, || {
        inbox_rows_of(&mut conn, OLD_SOURCE) == 0
    })
    .await;
    let expired_after = started.elapsed();
    wait_until("the written messages are applied", TIMEOUT, || {
        inbox_rows_of(&mut conn, PRODUCER) == KEYS
    })
    .await;
    // Later passes (at least five more) delete nothing else.
    tokio::time::sleep(Duration::from_secs(1)).await;
    consumer.assert_running();
    let report = consumer.stop().await;
    relay.stop().await;
    eprintln!("inbox retention: {OLD} old rows gone after {expired_after:?}; {report:?}");

    let left = |conn: &mut PgConnection| {
        [OLD_SOURCE, RECENT_SOURCE, PRODUCER].map(|source| inbox_rows_of(conn, source))
    };
    assert_eq!(
        left(&mut conn),
        [0, RECENT, KEYS],
        "old, recent, applied rows left"
    );
    assert_eq!(
        inbox_ids_of(&mut conn, RECENT_SOURCE),
        recent,
        "every recent row kept"
    );
    assert_eq!(
        inbox_ids_of(&mut conn, PRODUCER),
        applied,
        "every applied message keeps its inbox row"
    );
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
    assert_eq!(
        (report.processed, report.duplicates, report.failed),
        (KEYS as u64, 0, 0),
        "{report:?}"
    );
}
