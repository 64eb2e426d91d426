//! The raw producer: the backlog's records sent from memory, without the
//! relay, as fast as Kafka takes them.

use std::time::{Duration, Instant};

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, Producer as _, ThreadedProducer};

use crate::backlog::RawRecord;
use crate::common::kafka::{Counting, producer_config, send};
use crate::cpu::{CpuUse, cpu_snapshot};

/// Sends `record` as the relay would: its partition key as the key, its headers.
fn raw_send(producer: &ThreadedProducer<Counting>, record: &RawRecord) {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() / 2);
    for pair in record.headers.chunks_exact(2) {
        headers = headers.insert(Header {
            key: &pair[0],
            value: Some(pair[1].as_bytes()),
        });
    }
    let base = BaseRecord::to(&record.topic)
        .key(record.partition_key.as_bytes())
        .payload(&record.payload)
        .headers(headers);
    send(producer, base);
}

/// A raw producer's run: from the first send to the last ack, and the time
/// spent in `send`.
pub(crate) struct RawRun {
    pub(crate) secs: f64,
    pub(crate) send_secs: f64,
    pub(crate) cpu: CpuUse,
}

/// How the raw producer paces itself.
#[derive(Clone, Copy)]
pub(crate) enum Pace {
    /// Everything at once, then wait for all acks.
    AllAtOnce,
    /// Batches of `batch`, at most `in_flight` of them unacknowledged (1: lockstep).
    Window { batch: usize, in_flight: usize },
}

/// Sends `records` with a fresh producer (connected and warmed by one record first).
pub(crate) fn raw_produce(
    brokers: &str,
    records: &[RawRecord],
    pace: Pace,
    broker: Option<u32>,
) -> RawRun {
    let producer: ThreadedProducer<Counting> = producer_config(brokers)
        .create_with_context(Counting::default())
        .expect("raw producer");
    let ctx = producer.context().clone();
    raw_send(&producer, &records[0]);
    ctx.wait_for(1, Duration::from_secs(30));
    let (batch, in_flight) = match pace {
        Pace::AllAtOnce => (records.len(), 1),
        Pace::Window { batch, in_flight } => (batch, in_flight),
    };
    let mut sent = 1;
    let mut send_time = Duration::ZERO;
    let cpu_before = cpu_snapshot(broker);
    let start = Instant::now();
    for chunk in records.chunks(batch) {
        let t = Instant::now();
        for record in chunk {
            raw_send(&producer, record);
        }
        send_time += t.elapsed();
        sent += chunk.len() as u64;
        let allowed = ((in_flight - 1) * batch) as u64;
        ctx.wait_for(sent.saturating_sub(allowed), Duration::from_secs(120));
    }
    ctx.wait_for(sent, Duration::from_secs(300));
    let secs = start.elapsed().as_secs_f64();
    let cpu = CpuUse::between(&cpu_before, &cpu_snapshot(broker), None);
    let errors = ctx.errors();
    assert_eq!(errors, 0, "raw producer: {errors} records failed");
    RawRun {
        secs,
        send_secs: send_time.as_secs_f64(),
        cpu,
    }
}
