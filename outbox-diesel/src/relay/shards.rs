//! Sharing the partition-key space among relays with PostgreSQL advisory locks.
//!
//! The key space is cut into `count` shards (`hashtext(partition_key)` modulo
//! `count`). A relay sends only the rows of the shards whose advisory lock its
//! session holds, so one key is only ever sent by one relay at a time, in row
//! order. Each relay also holds a membership lock; it aims at an equal share
//! (`ceil(count / members)`), giving shards up between batches (when none of its
//! rows is in flight) and taking free ones. A relay that dies loses its locks
//! with its session, and the others take its shards over.
//!
//! Locks are namespaced by the OID of the `outbox_messages` table the session
//! sees, so outboxes in different schemas of one database do not meet.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Integer};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::relay::store::ShardFilter;

#[derive(QueryableByName)]
struct Int {
    #[diesel(sql_type = Integer)]
    value: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    value: i64,
}

pub(crate) struct Shards {
    count: i32,
    namespace: i32,
    held: BTreeSet<i32>,
    held_list: Vec<i32>,
    interval: Duration,
    next_rebalance: Instant,
}

impl Shards {
    /// Joins the relays of the outbox `conn` sees: takes the membership lock.
    pub(crate) async fn join(
        conn: &mut AsyncPgConnection,
        count: u32,
        interval: Duration,
    ) -> QueryResult<Self> {
        let namespace = diesel::sql_query(
            "SELECT (('outbox_messages'::regclass)::oid::bigint % 2147483647)::int4 AS value",
        )
        .get_result::<Int>(conn)
        .await?
        .value;
        diesel::sql_query("SELECT pg_advisory_lock(($1::bigint << 32) | pg_backend_pid())")
            .bind::<Integer, _>(namespace)
            .execute(conn)
            .await?;
        Ok(Shards {
            count: count as i32,
            namespace,
            held: BTreeSet::new(),
            held_list: Vec::new(),
            interval,
            next_rebalance: Instant::now(),
        })
    }

    /// The filter for the fetch query; `None` when every shard is held.
    pub(crate) fn filter(&self) -> Option<ShardFilter<'_>> {
        (self.held.len() != self.count as usize).then_some(ShardFilter {
            count: self.count,
            held: &self.held_list,
        })
    }

    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    pub(crate) fn rebalance_due(&self) -> bool {
        Instant::now() >= self.next_rebalance
    }

    /// Moves towards an equal share. Call only when no row of this relay is in
    /// flight: a shard given up may be taken by another relay at once.
    pub(crate) async fn rebalance(&mut self, conn: &mut AsyncPgConnection) -> QueryResult<()> {
        self.next_rebalance = Instant::now() + self.interval;
        let members = diesel::sql_query(
            "SELECT count(*) AS value FROM pg_locks \
             WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND classid::bigint = $1 \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .bind::<BigInt, _>(i64::from(self.namespace))
        .get_result::<Count>(conn)
        .await?
        .value
        .max(1);
        let target = (i64::from(self.count) + members - 1) / members;
        let held = self.held.len() as i64;
        if held > target {
            let extra: Vec<i32> = self
                .held
                .iter()
                .rev()
                .take((held - target) as usize)
                .copied()
                .collect();
            diesel::sql_query("SELECT pg_advisory_unlock($1, s) FROM unnest($2) AS s")
                .bind::<Integer, _>(self.namespace)
                .bind::<Array<Integer>, _>(&extra)
                .execute(conn)
                .await?;
            for shard in extra {
                self.held.remove(&shard);
            }
        } else if held < target {
            let free: Vec<i32> = (0..self.count).filter(|s| !self.held.contains(s)).collect();
            let taken = diesel::sql_query(
                "SELECT s AS value FROM unnest($2) AS s WHERE pg_try_advisory_lock($1, s) LIMIT $3",
            )
            .bind::<Integer, _>(self.namespace)
            .bind::<Array<Integer>, _>(&free)
            .bind::<BigInt, _>(target - held)
            .load::<Int>(conn)
            .await?;
            self.held.extend(taken.into_iter().map(|i| i.value));
        }
        self.held_list = self.held.iter().copied().collect();
        metrics::gauge!("outbox_relay_shards_held").set(self.held.len() as f64);
        Ok(())
    }
}
