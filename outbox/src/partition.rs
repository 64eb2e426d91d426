//! The partition Kafka's Java clients pick for a key.

/// The partition the Java client's default partitioner (and rdkafka's
/// `murmur2_random`) picks for a keyed record: `murmur2(key) & 0x7fffffff % partitions`.
///
/// Producers in any language that use this partitioner agree, so all messages of
/// one partition key land in one partition, in order. `partitions == 0` gives 0.
///
/// # Examples
///
/// ```
/// // The same partition org.apache.kafka.clients.producer.internals.BuiltInPartitioner picks.
/// assert_eq!(outbox::kafka_partition(b"foobar", 4), 2);
/// ```
pub fn kafka_partition(key: &[u8], partitions: u32) -> u32 {
    if partitions == 0 {
        return 0;
    }
    (murmur2(key) & 0x7fff_ffff) % partitions
}

/// Kafka's 32-bit murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`),
/// seed `0x9747b28c`, as an unsigned number.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox::murmur2(b"21") as i32, -973932308); // Java's value
/// ```
pub fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;

    let mut h = SEED ^ data.len() as u32;
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(&first) = tail.first() {
        h ^= u32::from(first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed with Kafka 4.4.0's `Utils.murmur2` and `Utils.toPositive(h) % n`.
    const JAVA: [(&str, i32, u32, u32); 10] = [
        ("", 275646681, 1, 2),
        ("a", -1563381124, 0, 5),
        ("21", -973932308, 0, 3),
        ("foobar", -790332482, 2, 0),
        ("user-42", 1459644460, 0, 1),
        ("42", 417700972, 0, 3),
        ("accounts:7", -284085504, 0, 6),
        ("a-little-bit-longer-string", -1486304829, 3, 0),
        ("héllo", 614509002, 2, 2),
        (
            "lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
            -58897971,
            1,
            3,
        ),
    ];

    #[test]
    fn matches_java() {
        for (key, hash, p4, p7) in JAVA {
            assert_eq!(murmur2(key.as_bytes()) as i32, hash, "{key:?}");
            assert_eq!(kafka_partition(key.as_bytes(), 4), p4, "{key:?}");
            assert_eq!(kafka_partition(key.as_bytes(), 7), p7, "{key:?}");
        }
    }
}
