//! A producer that writes any bytes: Kafka's Produce request (v3) with one
//! record batch (v2) per request, over a plain TCP connection to the
//! partition's leader.
//!
//! rdkafka takes header names as `&str`, so no rdkafka producer can write a
//! header name that is not UTF-8; a hostile producer can, and this one does.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outbox_tests::TestKafka;
use rdkafka::consumer::{BaseConsumer, Consumer as _};

/// One record, as bytes: `None` is Kafka's null (no key, no value, a header
/// without value).
#[derive(Debug, Clone, Default)]
pub(crate) struct RawRecord {
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) headers: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    pub(crate) value: Option<Vec<u8>>,
}

/// Produces `record` to `topic`/`partition` with `acks=all`; returns its offset.
///
/// # Panics
///
/// When the broker cannot be reached or refuses the record.
pub(crate) fn produce(kafka: &TestKafka, topic: &str, partition: i32, record: &RawRecord) -> i64 {
    RawProducer::default().produce(kafka, topic, partition, record)
}

/// Connections to partition leaders, kept for the next record.
#[derive(Default)]
pub(crate) struct RawProducer {
    connections: HashMap<(String, i32), TcpStream>,
}

impl RawProducer {
    /// [`produce`], on the connection of an earlier record of the partition.
    /// What a broker restart or a leader change answers (a lost connection,
    /// "not leader") is retried, on a new connection, for up to a minute.
    pub(crate) fn produce(
        &mut self,
        kafka: &TestKafka,
        topic: &str,
        partition: i32,
        record: &RawRecord,
    ) -> i64 {
        let request = produce_request(topic, partition, record);
        let started = std::time::Instant::now();
        loop {
            let key = (topic.to_owned(), partition);
            let result = self.send(kafka, &key, &request);
            match result {
                Ok(Ok(offset)) => return offset,
                Ok(Err(code)) if !RETRIABLE.contains(&code) => {
                    panic!(
                        "the broker refused the record for {topic}/{partition}: Kafka error code {code}"
                    )
                }
                outcome => assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "producing to {topic}/{partition}: {outcome:?}"
                ),
            }
            self.connections.remove(&key);
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Sends `request` on the partition's connection: the response's offset,
    /// or its error code; `Err` when the connection failed.
    fn send(
        &mut self,
        kafka: &TestKafka,
        key: &(String, i32),
        request: &[u8],
    ) -> std::io::Result<Result<i64, i16>> {
        let stream = match self.connections.entry(key.clone()) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let leader = leader_of(kafka, &key.0, key.1)?;
                let stream = TcpStream::connect(&leader)?;
                stream.set_read_timeout(Some(Duration::from_secs(60)))?;
                entry.insert(stream)
            }
        };
        stream.write_all(request)?;
        let mut size = [0u8; 4];
        stream.read_exact(&mut size)?;
        let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
        stream.read_exact(&mut response)?;
        Ok(parse_response(&response, key.1))
    }
}

/// Kafka error codes a retry on a new connection may clear: unknown topic or
/// partition, leader not available, not leader, request timed out, not
/// enough replicas (after append).
const RETRIABLE: [i16; 6] = [3, 5, 6, 7, 19, 20];

/// `host:port` of the leader of `topic`/`partition`.
fn leader_of(kafka: &TestKafka, topic: &str, partition: i32) -> std::io::Result<String> {
    let unknown = |what: String| std::io::Error::new(std::io::ErrorKind::NotFound, what);
    let probe: BaseConsumer = kafka
        .consumer_config("raw-probe")
        .create()
        .expect("a probe");
    let metadata = probe
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| unknown(format!("metadata of {topic}: {e}")))?;
    let leader = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
        .map(|p| p.leader())
        .filter(|leader| *leader >= 0)
        .ok_or_else(|| unknown(format!("no leader for {topic}/{partition}")))?;
    let broker = metadata
        .brokers()
        .iter()
        .find(|b| b.id() == leader)
        .ok_or_else(|| unknown(format!("leader {leader} not among the brokers")))?;
    Ok(format!("{}:{}", broker.host(), broker.port()))
}

fn produce_request(topic: &str, partition: i32, record: &RawRecord) -> Vec<u8> {
    let batch = record_batch(record);
    let mut body = Vec::with_capacity(batch.len() + 128);
    body.extend_from_slice(&0i16.to_be_bytes()); // api key: Produce
    body.extend_from_slice(&3i16.to_be_bytes()); // api version
    body.extend_from_slice(&1i32.to_be_bytes()); // correlation id
    string(&mut body, "outbox-hostile-tests"); // client id
    body.extend_from_slice(&(-1i16).to_be_bytes()); // transactional id: null
    body.extend_from_slice(&(-1i16).to_be_bytes()); // acks: all
    body.extend_from_slice(&30_000i32.to_be_bytes()); // timeout ms
    body.extend_from_slice(&1i32.to_be_bytes()); // one topic
    string(&mut body, topic);
    body.extend_from_slice(&1i32.to_be_bytes()); // one partition
    body.extend_from_slice(&partition.to_be_bytes());
    body.extend_from_slice(&(batch.len() as i32).to_be_bytes());
    body.extend_from_slice(&batch);
    let mut request = (body.len() as i32).to_be_bytes().to_vec();
    request.extend_from_slice(&body);
    request
}

/// A record batch (magic 2) holding `record`, uncompressed, not idempotent.
fn record_batch(record: &RawRecord) -> Vec<u8> {
    let mut body = Vec::new();
    body.push(0); // attributes
    varint(&mut body, 0); // timestamp delta
    varint(&mut body, 0); // offset delta
    bytes(&mut body, record.key.as_deref());
    bytes(&mut body, record.value.as_deref());
    varint(&mut body, record.headers.len() as i64);
    for (name, value) in &record.headers {
        bytes(&mut body, Some(name));
        bytes(&mut body, value.as_deref());
    }
    let mut records = Vec::with_capacity(body.len() + 8);
    varint(&mut records, body.len() as i64);
    records.extend_from_slice(&body);

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64;
    // From attributes to the end: what the CRC covers.
    let mut covered = Vec::with_capacity(records.len() + 40);
    covered.extend_from_slice(&0i16.to_be_bytes()); // attributes
    covered.extend_from_slice(&0i32.to_be_bytes()); // last offset delta
    covered.extend_from_slice(&now.to_be_bytes()); // base timestamp
    covered.extend_from_slice(&now.to_be_bytes()); // max timestamp
    covered.extend_from_slice(&(-1i64).to_be_bytes()); // producer id
    covered.extend_from_slice(&(-1i16).to_be_bytes()); // producer epoch
    covered.extend_from_slice(&(-1i32).to_be_bytes()); // base sequence
    covered.extend_from_slice(&1i32.to_be_bytes()); // one record
    covered.extend_from_slice(&records);

    let mut batch = Vec::with_capacity(covered.len() + 21);
    batch.extend_from_slice(&0i64.to_be_bytes()); // base offset
    // Batch length: from the partition leader epoch to the end.
    batch.extend_from_slice(&((covered.len() + 9) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes()); // partition leader epoch
    batch.push(2); // magic
    batch.extend_from_slice(&crc32c(&covered).to_be_bytes());
    batch.extend_from_slice(&covered);
    batch
}

/// The base offset the broker gave the record, or its error code.
fn parse_response(response: &[u8], partition: i32) -> Result<i64, i16> {
    let mut at = 4; // correlation id
    let topics = read_i32(response, &mut at);
    assert_eq!(topics, 1, "one topic in the produce response");
    let name_len = i16::from_be_bytes([response[at], response[at + 1]]) as usize;
    at += 2 + name_len;
    let partitions = read_i32(response, &mut at);
    assert_eq!(partitions, 1, "one partition in the produce response");
    assert_eq!(read_i32(response, &mut at), partition);
    let error = i16::from_be_bytes([response[at], response[at + 1]]);
    at += 2;
    if error != 0 {
        return Err(error);
    }
    Ok(i64::from_be_bytes(
        response[at..at + 8].try_into().expect("8 bytes"),
    ))
}

fn read_i32(buffer: &[u8], at: &mut usize) -> i32 {
    let value = i32::from_be_bytes(buffer[*at..*at + 4].try_into().expect("4 bytes"));
    *at += 4;
    value
}

fn string(out: &mut Vec<u8>, value: &str) {
    out.extend_from_slice(&(value.len() as i16).to_be_bytes());
    out.extend_from_slice(value.as_bytes());
}

/// A varint-length byte string; -1 for null.
fn bytes(out: &mut Vec<u8>, value: Option<&[u8]>) {
    match value {
        None => varint(out, -1),
        Some(value) => {
            varint(out, value.len() as i64);
            out.extend_from_slice(value);
        }
    }
}

/// Kafka's zig-zag varint.
fn varint(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// CRC-32C (Castagnoli), as record batches carry it: a byte at a time, by
/// table (the tests are built without optimisation, and 10 MB records are many).
fn crc32c(data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |crc, byte| {
        CRC32C_TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8)
    })
}

/// The CRC-32C of each byte value (reflected polynomial `0x82F63B78`).
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u32;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[test]
fn varints_zig_zag() {
    let encode = |v: i64| {
        let mut out = Vec::new();
        varint(&mut out, v);
        out
    };
    assert_eq!(encode(0), [0]);
    assert_eq!(encode(-1), [1]);
    assert_eq!(encode(1), [2]);
    assert_eq!(encode(300), [0xd8, 0x04]);
}
