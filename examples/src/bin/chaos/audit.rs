//! The audit, once the flow has drained: what the producer committed
//! (`chaos_committed`, written in the enqueue's transaction) against what the
//! consumer applied (`chaos_applied`, written in the apply's transaction),
//! with SQL across the two schemas of the run's database. It reads none of
//! the library's bookkeeping to decide (the inbox, offsets), only to list
//! what it left behind (outbox rows, stopped partitions).

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Bool, Double, Integer, Text, Timestamptz, Uuid};
use serde::Serialize;

use super::faults::Fault;
use super::writers::RolledBack;

/// What the audit found. Every field but the first four and `longest_recovery`
/// is a bad count: anything but 0 fails the run.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Audit {
    /// Messages the producer committed.
    pub(crate) committed: i64,
    /// Messages of transactions rolled back on purpose.
    pub(crate) rolled_back: i64,
    /// Rows of the applied log (applies that committed).
    pub(crate) applied_rows: i64,
    /// Distinct messages applied.
    pub(crate) applied: i64,
    pub(crate) lost: i64,
    pub(crate) applied_twice: i64,
    pub(crate) applied_from_rolled_back: i64,
    /// Applied, neither committed nor rolled back by the producer.
    pub(crate) applied_unknown: i64,
    /// Applies of a key whose sequence is below the one applied before it.
    pub(crate) order_violations: i64,
    /// Applies whose key, sequence or event differ from what was committed.
    pub(crate) payload_mismatches: i64,
    /// Keys whose committed sequences are not 1, 2, 3, …: the producer's own
    /// truth broken (a commit without its audit row, or the other way).
    pub(crate) producer_sequence_gaps: i64,
    pub(crate) outbox_rows_left: i64,
    pub(crate) parked_rows: i64,
    /// Keys whose row differs between the producer's and the consumer's table.
    pub(crate) table_differences: i64,
    pub(crate) stopped_partitions: Vec<Stop>,
    pub(crate) dead_letters: i64,
    /// The longest time from a fault's end to the next apply.
    pub(crate) longest_recovery: Option<Recovery>,
}

/// A partition the consumer stopped (listed with its cause).
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub(crate) struct Stop {
    #[diesel(sql_type = Integer)]
    pub(crate) partition: i32,
    #[diesel(sql_type = BigInt)]
    pub(crate) offset: i64,
    #[diesel(sql_type = Text)]
    pub(crate) error: String,
    #[diesel(sql_type = Bool)]
    pub(crate) resumed: bool,
}

/// The slowest recovery after a fault.
#[derive(Debug, Clone, Serialize, QueryableByName)]
pub(crate) struct Recovery {
    #[diesel(sql_type = Double)]
    pub(crate) seconds: f64,
    #[diesel(sql_type = Text)]
    pub(crate) kind: String,
    #[diesel(sql_type = Text)]
    pub(crate) detail: String,
}

impl Audit {
    /// The bad counts, named, that are not 0.
    pub(crate) fn bad_counts(&self) -> Vec<(&'static str, i64)> {
        [
            ("lost", self.lost),
            ("applied twice", self.applied_twice),
            (
                "applied from a rolled-back transaction",
                self.applied_from_rolled_back,
            ),
            ("applied but never enqueued", self.applied_unknown),
            ("per-key order violations", self.order_violations),
            ("payload mismatches", self.payload_mismatches),
            ("producer sequence gaps", self.producer_sequence_gaps),
            ("outbox rows left", self.outbox_rows_left),
            ("parked outbox rows", self.parked_rows),
            ("table differences", self.table_differences),
            ("stopped partitions", self.stopped_partitions.len() as i64),
            ("dead letters", self.dead_letters),
        ]
        .into_iter()
        .filter(|(_, n)| *n != 0)
        .collect()
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, sql: &str) -> QueryResult<i64> {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .map(|c| c.n)
}

/// Records the rolled-back messages and the faults, then audits.
pub(crate) fn run(
    conn: &mut PgConnection,
    rolled_back: &[RolledBack],
    faults: &[Fault],
    dead_letters: i64,
) -> QueryResult<Audit> {
    for chunk in rolled_back.chunks(10_000) {
        diesel::sql_query(
            "INSERT INTO chaos_producer.chaos_rolled_back (message_id, key, seq) \
             SELECT * FROM unnest($1, $2, $3) ON CONFLICT DO NOTHING",
        )
        .bind::<Array<Uuid>, _>(chunk.iter().map(|r| r.message_id).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(chunk.iter().map(|r| r.key).collect::<Vec<_>>())
        .bind::<Array<BigInt>, _>(chunk.iter().map(|r| r.seq).collect::<Vec<_>>())
        .execute(conn)?;
    }
    for (id, fault) in faults.iter().enumerate() {
        diesel::sql_query(
            "INSERT INTO chaos_producer.chaos_faults (id, kind, detail, started_at, ended_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<BigInt, _>(id as i64)
        .bind::<Text, _>(fault.kind.name())
        .bind::<Text, _>(&fault.detail)
        .bind::<Timestamptz, _>(fault.started_at)
        .bind::<Timestamptz, _>(fault.ended_at)
        .execute(conn)?;
    }
    let (outbox_rows_left, parked_rows) = (
        count(
            conn,
            "SELECT count(*) AS n FROM chaos_producer.outbox_messages",
        )?,
        count(
            conn,
            "SELECT count(*) AS n FROM chaos_producer.outbox_messages WHERE parked_at IS NOT NULL",
        )?,
    );
    Ok(Audit {
        committed: count(
            conn,
            "SELECT count(*) AS n FROM chaos_producer.chaos_committed",
        )?,
        rolled_back: count(
            conn,
            "SELECT count(*) AS n FROM chaos_producer.chaos_rolled_back",
        )?,
        applied_rows: count(
            conn,
            "SELECT count(*) AS n FROM chaos_consumer.chaos_applied",
        )?,
        applied: count(
            conn,
            "SELECT count(DISTINCT message_id) AS n FROM chaos_consumer.chaos_applied",
        )?,
        lost: count(
            conn,
            "SELECT count(*) AS n FROM chaos_producer.chaos_committed c WHERE NOT EXISTS \
             (SELECT 1 FROM chaos_consumer.chaos_applied a WHERE a.message_id = c.message_id)",
        )?,
        applied_twice: count(
            conn,
            "SELECT count(*) AS n FROM (SELECT message_id FROM chaos_consumer.chaos_applied \
             GROUP BY message_id HAVING count(*) > 1) twice",
        )?,
        applied_from_rolled_back: count(
            conn,
            "SELECT count(DISTINCT a.message_id) AS n FROM chaos_consumer.chaos_applied a \
             JOIN chaos_producer.chaos_rolled_back r USING (message_id)",
        )?,
        applied_unknown: count(
            conn,
            "SELECT count(DISTINCT a.message_id) AS n FROM chaos_consumer.chaos_applied a \
             WHERE NOT EXISTS (SELECT 1 FROM chaos_producer.chaos_committed c \
                               WHERE c.message_id = a.message_id) \
             AND NOT EXISTS (SELECT 1 FROM chaos_producer.chaos_rolled_back r \
                             WHERE r.message_id = a.message_id)",
        )?,
        // Per key, in the order the applies committed, each committed
        // sequence must be above the one before (destroy and create again
        // go on counting: the sequences live in `chaos_key_seqs`).
        order_violations: count(
            conn,
            "SELECT count(*) AS n FROM ( \
               SELECT c.seq, lag(c.seq) OVER (PARTITION BY c.key ORDER BY a.id) AS previous \
               FROM chaos_consumer.chaos_applied a \
               JOIN chaos_producer.chaos_committed c USING (message_id)) ordered \
             WHERE ordered.seq < ordered.previous",
        )?,
        payload_mismatches: count(
            conn,
            "SELECT count(*) AS n FROM chaos_consumer.chaos_applied a \
             JOIN chaos_producer.chaos_committed c USING (message_id) \
             WHERE a.key <> c.key OR a.event <> c.event \
             OR (a.seq IS NOT NULL AND a.seq <> c.seq)",
        )?,
        producer_sequence_gaps: count(
            conn,
            "SELECT count(DISTINCT key) AS n FROM ( \
               SELECT key, seq, row_number() OVER (PARTITION BY key ORDER BY seq) AS expected \
               FROM chaos_producer.chaos_committed) numbered \
             WHERE seq <> expected",
        )?,
        outbox_rows_left,
        parked_rows,
        table_differences: count(
            conn,
            "SELECT count(*) AS n FROM chaos_producer.chaos_items p \
             FULL JOIN chaos_consumer.chaos_items c ON p.id = c.id \
             WHERE p.id IS NULL OR c.id IS NULL OR p.seq <> c.seq OR p.value <> c.value",
        )?,
        stopped_partitions: diesel::sql_query(
            "SELECT kafka_partition AS partition, kafka_offset AS offset, error, \
             resumed_at IS NOT NULL AS resumed \
             FROM chaos_consumer.outbox_stopped_partitions ORDER BY id",
        )
        .load::<Stop>(conn)?,
        dead_letters,
        longest_recovery: diesel::sql_query(
            "SELECT extract(epoch FROM next.applied_at - f.ended_at)::float8 AS seconds, \
                    f.kind, f.detail \
             FROM chaos_producer.chaos_faults f \
             CROSS JOIN LATERAL (SELECT min(applied_at) AS applied_at \
                                 FROM chaos_consumer.chaos_applied a \
                                 WHERE a.applied_at > f.ended_at) next \
             WHERE next.applied_at IS NOT NULL \
             ORDER BY seconds DESC LIMIT 1",
        )
        .get_result::<Recovery>(conn)
        .optional()?,
    })
}

/// Messages committed but not applied yet, and rows left in the outbox
/// (parked ones too): the drain is over when both are 0.
pub(crate) fn backlog(conn: &mut PgConnection) -> QueryResult<(i64, i64)> {
    Ok((
        count(
            conn,
            "SELECT count(*) AS n FROM chaos_producer.chaos_committed c WHERE NOT EXISTS \
             (SELECT 1 FROM chaos_consumer.chaos_applied a WHERE a.message_id = c.message_id)",
        )?,
        count(
            conn,
            "SELECT count(*) AS n FROM chaos_producer.outbox_messages",
        )?,
    ))
}

/// Rows of the applied log (for the progress line).
pub(crate) fn applied_rows(conn: &mut PgConnection) -> QueryResult<i64> {
    count(
        conn,
        "SELECT count(*) AS n FROM chaos_consumer.chaos_applied",
    )
}
