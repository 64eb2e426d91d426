//! Services: a schema per side (outbox's tables and the accounts table), and
//! the preloaded topic.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use outbox::Outboxed;
use outbox::kafka::record_headers;
use rdkafka::consumer::Consumer as _;
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};

use crate::common::db::{Db, Schema, pg};
use crate::common::kafka::{self, Counting, PARTITIONS};
use crate::model::{self, Account};

/// The topic every side reads.
pub(crate) const TOPIC: &str = Account::TOPIC;

// ------------------------------------------------------------------ database

/// A schema of this run, with outbox's tables and `bench_accounts`.
pub(crate) fn schema(db: &Db, tag: &str) -> Schema {
    let schema = db.schema(tag);
    pg(&schema.url)
        .batch_execute(model::CREATE_TABLE)
        .expect("create bench_accounts");
    schema
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = BigInt)]
    accounts: i64,
    #[diesel(sql_type = BigInt)]
    seq_sum: i64,
    #[diesel(sql_type = BigInt)]
    inbox: i64,
}

/// What a run does to a side's schema.
impl Schema {
    /// Empties the accounts table and the inbox before a run.
    pub(crate) fn truncate(&self) {
        pg(&self.url)
            .batch_execute("TRUNCATE bench_accounts, outbox_inbox")
            .expect("truncate");
    }

    /// Accounts, the sum of their `seq`, inbox rows.
    pub(crate) fn state(&self) -> (i64, i64, i64) {
        let row: Row = diesel::sql_query(
            "SELECT (SELECT count(*) FROM bench_accounts) AS accounts, \
                    (SELECT coalesce(sum(seq), 0)::bigint FROM bench_accounts) AS seq_sum, \
                    (SELECT count(*) FROM outbox_inbox) AS inbox",
        )
        .get_result(&mut pg(&self.url))
        .expect("read the outcome");
        (row.accounts, row.seq_sum, row.inbox)
    }
}

// ------------------------------------------------------------------ kafka

/// Produces messages `0..messages` to [`TOPIC`] (with outbox's producer
/// settings, as the relay would) and waits for every acknowledgement. Returns
/// the average record value and headers size.
pub(crate) fn preload(brokers: &str, messages: u64) -> (usize, usize) {
    let producer: ThreadedProducer<Counting> = kafka::producer_config(brokers)
        .set("linger.ms", "5")
        .create_with_context(Counting::default())
        .expect("Kafka producer");
    let (mut value_bytes, mut header_bytes) = (0, 0);
    for seq in 0..messages as i64 {
        let encoded = model::record(seq);
        value_bytes += encoded.value.len();
        header_bytes += encoded
            .headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>();
        let record = BaseRecord::to(TOPIC)
            .key(&encoded.key)
            .payload(&encoded.value)
            .headers(record_headers(&encoded));
        kafka::send(&producer, record);
    }
    producer
        .context()
        .wait_for(messages, Duration::from_secs(120));
    let failed = producer.context().errors();
    assert_eq!(failed, 0, "preload: {failed} records not acknowledged");
    let n = messages.max(1) as usize;
    (value_bytes / n, header_bytes / n)
}

/// Records on [`TOPIC`], per partition.
pub(crate) fn partition_counts(brokers: &str) -> Vec<i64> {
    let probe = kafka::probe(brokers);
    (0..PARTITIONS)
        .map(|p| {
            let (low, high) = probe
                .fetch_watermarks(TOPIC, p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .collect()
}
