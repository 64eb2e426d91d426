//! The backlog: order messages written with `enqueue_all`, counted, and read
//! back as the relay would send them.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bytea, Text};
use outbox::{Event, Outboxed};
use outbox_diesel::Outbox;

use crate::common::db::pg;
use crate::model::order;

/// Messages per `enqueue_all` transaction when filling a backlog.
const FILL_CHUNK: usize = 10_000;

/// A count (or any bigint) read as `n`.
#[derive(QueryableByName)]
pub(crate) struct Count {
    #[diesel(sql_type = BigInt)]
    pub(crate) n: i64,
}

/// Rows in the outbox table (-1: could not count).
pub(crate) fn count_rows(url: &str) -> i64 {
    diesel::sql_query("SELECT count(*) AS n FROM outbox_messages")
        .get_result::<Count>(&mut pg(url))
        .map(|c| c.n)
        .unwrap_or(-1)
}

/// Writes `rows` order messages with `enqueue_all`, `FILL_CHUNK` per transaction,
/// from two connections at once. Returns the time taken.
pub(crate) fn fill(url: &str, rows: usize) -> Duration {
    fill_with(url, rows, order)
}

/// [`fill`] with the messages `make` gives (order `i` for `i` in 1..=rows).
pub(crate) fn fill_with<M: Outboxed + Sync>(
    url: &str,
    rows: usize,
    make: fn(i64) -> M,
) -> Duration {
    let outbox = Outbox::new("orders-service");
    let start = Instant::now();
    let half = rows.div_ceil(2);
    std::thread::scope(|scope| {
        for (from, to) in [(0, half), (half, rows)] {
            let outbox = &outbox;
            scope.spawn(move || {
                let mut conn = pg(url);
                let mut at = from;
                while at < to {
                    let end = (at + FILL_CHUNK).min(to);
                    let orders: Vec<M> = (at..end).map(|i| make(i as i64 + 1)).collect();
                    conn.transaction(|conn| outbox.enqueue_all(conn, &orders, Event::Created))
                        .expect("fill the outbox");
                    at = end;
                }
            });
        }
    });
    start.elapsed()
}

/// Fills a backlog of `rows` with [`fill`]; then gives the planner statistics,
/// as autovacuum does soon after a burst (the default), or, with `analyze`
/// false (`OUTBOX_BENCH_ANALYZE=0`), leaves the table without any and
/// autovacuum off, as a table that never had enough rows to be analyzed.
/// Returns the fill's msg/s.
pub(crate) fn backlog(url: &str, rows: usize, analyze: bool) -> f64 {
    backlog_with(url, rows, analyze, order)
}

/// [`backlog`] of the messages `make` gives.
pub(crate) fn backlog_with<M: Outboxed + Sync>(
    url: &str,
    rows: usize,
    analyze: bool,
    make: fn(i64) -> M,
) -> f64 {
    let mut conn = pg(url);
    if !analyze {
        conn.batch_execute("ALTER TABLE outbox_messages SET (autovacuum_enabled = off)")
            .expect("autovacuum off");
    }
    let rate = rows as f64 / fill_with(url, rows, make).as_secs_f64();
    if analyze {
        conn.batch_execute("ANALYZE outbox_messages")
            .expect("analyze");
    }
    rate
}

/// A record as the relay sends it, held in memory for the raw producer.
#[derive(QueryableByName)]
pub(crate) struct RawRecord {
    #[diesel(sql_type = Text)]
    pub(crate) topic: String,
    #[diesel(sql_type = Text)]
    pub(crate) partition_key: String,
    #[diesel(sql_type = Array<Text>)]
    pub(crate) headers: Vec<String>,
    #[diesel(sql_type = Bytea)]
    pub(crate) payload: Vec<u8>,
}

/// The backlog's records, in order.
pub(crate) fn load_records(url: &str) -> Vec<RawRecord> {
    diesel::sql_query(
        "SELECT topic, partition_key, headers, payload FROM outbox_messages ORDER BY id",
    )
    .load(&mut pg(url))
    .expect("load the backlog")
}
