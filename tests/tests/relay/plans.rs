//! The relay's statements keep to the indexes, whatever the size of the table
//! when PostgreSQL planned them.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use outbox::Message;
use outbox_diesel::Outbox;

use super::support::{Env, PRODUCER, RECEIVE_TIMEOUT, RunningRelay, enqueue};

/// Sequential scans of the schema's `outbox_messages` so far, by every session.
fn seq_scans(conn: &mut PgConnection) -> i64 {
    #[derive(QueryableByName)]
    struct Scans {
        #[diesel(sql_type = BigInt)]
        seq_scan: i64,
    }
    diesel::sql_query(
        "SELECT seq_scan FROM pg_stat_user_tables \
         WHERE relid = 'outbox_messages'::regclass",
    )
    .get_result::<Scans>(conn)
    .expect("the table's statistics")
    .seq_scan
}

/// A relay started on an empty outbox prepares its statements while the table
/// is tiny. PostgreSQL's generic plan for deleting the acknowledged rows was
/// then a sequential scan, repeated for every batch once the table had grown
/// (under a steady load of 20,000 msg/s the relay fell to a quarter of it,
/// each batch's delete reading the whole heap). No statement of the relay may
/// scan the table: counted in `pg_stat_user_tables` while it drains a backlog.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_planned_on_an_empty_outbox_keep_to_the_indexes_as_it_grows() {
    let env = Env::new("relay_plans");
    let relay = RunningRelay::spawn(
        env.relay()
            .batch_size(100)
            // The gauges count the table's rows with a scan of their own.
            .gauge_interval(Duration::from_secs(3600))
            .build()
            .unwrap(),
    );
    let mut reader = env.reader();
    let mut conn = env.conn();
    // One message at a time while the table is nearly empty: the read runs more
    // than the five times after which PostgreSQL may keep a generic plan.
    for round in 0..12 {
        let ids = enqueue(&mut conn, &[env.message(&format!("warm-up-{round}"), 0)]);
        reader.read_ids(&ids, RECEIVE_TIMEOUT).await;
    }
    // Sessions report their counts when a transaction ends, at most once a second.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let before = seq_scans(&mut conn);

    let messages: Vec<Message> = (0..5_000)
        .map(|i| env.message(&format!("key-{}", i % 50), i / 50))
        .collect();
    let ids = Outbox::new(PRODUCER)
        .transaction(&mut conn, |_, pending| {
            messages
                .iter()
                .map(|m| pending.enqueue_message(m))
                .collect::<outbox_diesel::Result<Vec<_>>>()
        })
        .expect("the backlog commits");
    reader.read_ids(&ids, RECEIVE_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let after = seq_scans(&mut conn);
    let report = relay.stop().await;

    assert_eq!(
        report.published, 5_012,
        "every message published once: {report:?}"
    );
    assert!(
        report.batches >= 50,
        "the backlog went in batches of 100: {report:?}"
    );
    assert_eq!(
        after - before,
        0,
        "sequential scans of outbox_messages while the relay drained {} batches",
        report.batches
    );
}
