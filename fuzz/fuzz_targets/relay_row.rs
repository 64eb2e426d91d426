//! The relay turning an outbox row into a Kafka record: the `headers` column
//! (PostgreSQL's binary `text[]`) is read without panicking whatever its bytes,
//! what it reads is what re-encoding those pairs reads, and the record it
//! makes goes through a consumer's decoding without panicking either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox::Message;
use outbox_diesel::relay::__record_headers as record_headers;
use outbox_fuzz::input::RawRow;
use outbox_fuzz::pg_array::headers_column;

fuzz_target!(|data: &[u8]| {
    let Ok(row) = RawRow::read(data) else {
        return;
    };
    let pairs = match record_headers(&row.headers_column) {
        Ok(pairs) => pairs,
        Err(reason) => {
            assert!(reason.len() < 200, "{reason}");
            return;
        }
    };
    let canonical = headers_column(&pairs);
    assert_eq!(record_headers(&canonical).as_ref(), Ok(&pairs));

    let headers = pairs.iter().map(|(n, v)| (n.as_str(), Some(v.as_bytes())));
    let decoded = Message::decode(
        "topic",
        Some(row.partition_key.as_bytes()),
        headers,
        Some(&row.payload),
    );
    if let Ok(message) = decoded {
        // The relay sends what enqueue stored: the same message comes out.
        assert_eq!(message.partition_key, row.partition_key);
    }
});
