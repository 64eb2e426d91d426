//! The relay's SQL, apart: what a keyset read and the relay's delete cost
//! at least on the same backlog, and what a read from the oldest row costs.

use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::sql_types::{Array, BigInt, Bytea, Text, Untyped};

use crate::backlog::Count;
use crate::common::cpu::pid_cpu;
use crate::common::db::pg;
use crate::cpu::{CpuSnapshot, CpuUse, cpu_snapshot};
use crate::run::backend_pid;

/// A reference read for the SQL diagnostic: the relay's columns and parked-key
/// filter, walking the primary key after the last id read (keyset), the least
/// a read of these rows can cost. A query type of its own, so Diesel caches
/// its prepared statement as it does the relay's.
struct FetchAfter {
    after: i64,
    limit: i64,
    /// Without the `NOT EXISTS` on parked rows (to see what it costs).
    plain: bool,
}

/// A read from the oldest row (as the relay reads when it starts from the
/// oldest): what it costs on a table with many deleted rows (`EXPLAIN ANALYZE`).
const READ_FROM_OLDEST: &str = "SELECT m.id, m.topic, m.partition_key, m.headers, m.payload \
     FROM outbox_messages m WHERE m.id > 0 \
       AND NOT EXISTS (SELECT 1 FROM outbox_messages p \
                       WHERE p.parked_at IS NOT NULL AND p.topic = m.topic \
                         AND p.partition_key = m.partition_key AND p.id <= m.id) \
     ORDER BY m.id LIMIT 1000";

impl QueryId for FetchAfter {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for FetchAfter {
    type SqlType = Untyped;
}

impl QueryFragment<Pg> for FetchAfter {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "SELECT m.id, m.topic, m.partition_key, m.headers, m.payload \
             FROM outbox_messages m WHERE m.id > ",
        );
        out.push_bind_param::<BigInt, _>(&self.after)?;
        if !self.plain {
            out.push_sql(
                " AND NOT EXISTS (SELECT 1 FROM outbox_messages p \
                   WHERE p.parked_at IS NOT NULL AND p.topic = m.topic \
                     AND p.partition_key = m.partition_key AND p.id <= m.id)",
            );
        }
        out.push_sql(" ORDER BY m.id LIMIT ");
        out.push_bind_param::<BigInt, _>(&self.limit)?;
        Ok(())
    }
}

/// A row as the relay reads it.
#[derive(QueryableByName)]
#[allow(dead_code)] // read to pay for decoding, as the relay does
struct RelayRow {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = Text)]
    partition_key: String,
    #[diesel(sql_type = Array<Text>)]
    headers: Vec<String>,
    #[diesel(sql_type = Bytea)]
    payload: Vec<u8>,
}

/// Wall, PostgreSQL backend and client CPU, in ms per 1,000 rows, of one statement kind.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SqlCost {
    pub(crate) wall: f64,
    pub(crate) backend: f64,
    pub(crate) client: f64,
}

/// Walks a backlog with the reference read (once untimed, once timed, once
/// timed without the `NOT EXISTS`), then deletes it batch by batch with the
/// relay's delete (`id = ANY($1)`), on one diesel-async connection: what a
/// read and a delete cost at least, apart.
pub(crate) async fn sql_split(url: &str, rows: usize, batch: usize) -> [SqlCost; 3] {
    use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl as Async};
    use outbox_diesel::schema::outbox_messages;
    let application = format!("outbox_bench_{}_sql", std::process::id());
    let mut conn = AsyncPgConnection::establish(&format!("{url}&application_name={application}"))
        .await
        .expect("connect");
    let backend = {
        let (url, application) = (url.to_owned(), application.clone());
        tokio::task::spawn_blocking(move || backend_pid(&url, &application))
            .await
            .ok()
            .flatten()
    };
    let backend_cpu = || backend.and_then(pid_cpu);
    let measure = |before: (Instant, CpuSnapshot, Option<f64>)| {
        let cpu = CpuUse::between(&before.1, &cpu_snapshot(None), None);
        let k = rows as f64 / 1000.0;
        SqlCost {
            wall: before.0.elapsed().as_secs_f64() / k * 1e3,
            backend: backend_cpu()
                .zip(before.2)
                .map_or(f64::NAN, |(a, b)| (a - b) / k * 1e3),
            client: cpu.process() / k * 1e3,
        }
    };
    let mut ids: Vec<Vec<i64>> = Vec::new();
    let mut costs = Vec::new();
    for (walk, plain) in [(0, false), (1, false), (2, true)] {
        let start = (Instant::now(), cpu_snapshot(None), backend_cpu());
        let mut after = 0;
        loop {
            let query = FetchAfter {
                after,
                limit: batch as i64,
                plain,
            };
            let read: Vec<RelayRow> = Async::load(query, &mut conn).await.expect("fetch");
            let Some(last) = read.last() else { break };
            after = last.id;
            if walk == 0 {
                ids.push(read.iter().map(|r| r.id).collect());
            }
        }
        if walk > 0 {
            costs.push(measure(start));
        }
    }
    let start = (Instant::now(), cpu_snapshot(None), backend_cpu());
    for chunk in &ids {
        let delete =
            diesel::delete(outbox_messages::table.filter(outbox_messages::id.eq_any(chunk)));
        Async::execute(delete, &mut conn).await.expect("delete");
    }
    let delete = measure(start);
    [costs[0], costs[1], delete]
}

/// What a read from the oldest row costs right now (`EXPLAIN ANALYZE`), and how
/// many dead rows the table holds.
pub(crate) fn read_probe(url: &str) -> String {
    #[derive(QueryableByName)]
    struct Plan {
        #[diesel(sql_type = Text, column_name = "QUERY PLAN")]
        line: String,
    }
    let mut conn = pg(url);
    let plan: Vec<Plan> =
        diesel::sql_query(format!("EXPLAIN (ANALYZE, BUFFERS) {READ_FROM_OLDEST}"))
            .load(&mut conn)
            .unwrap_or_default();
    let buffers = plan
        .iter()
        .find(|p| p.line.trim_start().starts_with("Buffers:"))
        .map_or("?", |p| p.line.trim());
    let time = plan
        .iter()
        .find(|p| p.line.starts_with("Execution Time"))
        .map_or("?", |p| p.line.trim());
    let dead = diesel::sql_query(
        "SELECT coalesce(n_dead_tup, 0) AS n FROM pg_stat_user_tables \
         WHERE relid = 'outbox_messages'::regclass",
    )
    .get_result::<Count>(&mut conn)
    .map_or(-1, |c| c.n);
    let heap = diesel::sql_query("SELECT pg_relation_size('outbox_messages') AS n")
        .get_result::<Count>(&mut conn)
        .map_or(-1, |c| c.n);
    // The relay's gauge query (every 5 s, on its own session, between batches).
    let gauges = Instant::now();
    let _ = conn.batch_execute(
        "SELECT count(*) FILTER (WHERE parked_at IS NULL), count(*) FILTER (WHERE parked_at IS NOT NULL), \
         extract(epoch FROM now() - min(created_at) FILTER (WHERE parked_at IS NULL))::float8 \
         FROM outbox_messages",
    );
    format!(
        "{time}, {buffers}; dead rows (pg_stat) {dead}, heap {:.0} MB; \
         the relay's gauge query (a seq scan) takes {:.1} ms",
        heap as f64 / 1e6,
        gauges.elapsed().as_secs_f64() * 1e3
    )
}
