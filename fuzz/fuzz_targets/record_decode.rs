//! A consumer decoding any record: `Message::decode` never panics, its errors
//! stay short whatever the bytes, and a message it accepts encodes to a record
//! that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outbox::Message;
use outbox_fuzz::input::RawRecord;

fuzz_target!(|data: &[u8]| {
    let Ok(record) = RawRecord::read(data) else {
        return;
    };
    let decoded = Message::decode(
        &record.topic,
        record.key.as_deref(),
        record.header_refs(),
        record.value.as_deref(),
    );
    let message = match decoded {
        Ok(message) => message,
        Err(error) => {
            // Errors quote values truncated: a log line, not a copy of the record.
            let shown = error.to_string();
            assert!(shown.len() < 2048, "{} bytes: {shown}", shown.len());
            return;
        }
    };
    let again = RawRecord::from_encoded(&record.topic, &message.encode());
    let back = Message::decode(
        &again.topic,
        again.key.as_deref(),
        again.header_refs(),
        again.value.as_deref(),
    )
    .expect("a decoded message encodes to a record that decodes");
    assert_eq!(back, message);
});
