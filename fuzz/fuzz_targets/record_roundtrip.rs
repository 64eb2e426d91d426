//! Any message the producer can make decodes back to itself: decode(encode(x)) == x.
//! A `from` or `to` that consumers refuse (empty, control characters) is refused
//! by name, never mistaken for another message.
#![no_main]

use arbitrary::Arbitrary;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use outbox::{DecodeError, Event, Message, Payloads, TraceContext};
use outbox_fuzz::input::RawRecord;
use serde_json::Value;

#[derive(Arbitrary, Debug)]
struct Parts {
    event: u8,
    custom: String,
    from: String,
    to: String,
    topic: String,
    key: String,
    /// Seconds since the epoch, folded into RFC 3339's years 0000 to 9999.
    seconds: i64,
    nanos: u32,
    payloads: Vec<(u32, String)>,
    trace: Option<Trace>,
}

#[derive(Arbitrary, Debug)]
struct Trace {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
    state: Option<String>,
}

/// 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the instants RFC 3339 can write.
const FIRST: i64 = -62_167_219_200;
const LAST: i64 = 253_402_300_799;

fuzz_target!(|parts: Parts| {
    let event = match parts.event % 4 {
        0 => Event::Created,
        1 => Event::Updated,
        2 => Event::Destroyed,
        _ => match Event::custom(&parts.custom) {
            Ok(event) => event,
            Err(_) => return,
        },
    };
    let mut payloads: Option<Payloads> = None;
    for (version, json) in &parts.payloads {
        let value = serde_json::from_str(json).unwrap_or_else(|_| Value::String(json.clone()));
        match &mut payloads {
            Some(payloads) => {
                let _ = payloads.insert(*version, value);
            }
            None => payloads = Payloads::new(*version, value).ok(),
        }
    }
    let Some(payloads) = payloads else {
        return;
    };
    let Ok(mut message) = Message::new(
        event,
        parts.from,
        parts.to,
        parts.topic,
        parts.key,
        payloads,
    ) else {
        return;
    };
    let seconds = FIRST + parts.seconds.rem_euclid(LAST - FIRST + 1);
    message.occurred_at =
        DateTime::<Utc>::from_timestamp(seconds, parts.nanos % 1_000_000_000).expect("in range");
    if let Some(Trace {
        trace_id,
        span_id,
        flags,
        state,
    }) = parts.trace
    {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        let parent = format!("00-{}-{}-{flags:02x}", hex(&trace_id), hex(&span_id));
        message.trace = TraceContext::new(&parent, state.as_deref()).ok();
    }

    let encoded = message.encode();
    let record = RawRecord::from_encoded(&message.topic, &encoded);
    let decoded = Message::decode(
        &record.topic,
        record.key.as_deref(),
        record.header_refs(),
        record.value.as_deref(),
    );
    let routable = |name: &str| !name.is_empty() && !name.chars().any(char::is_control);
    if routable(&message.from) && routable(&message.to) {
        assert_eq!(decoded.expect("an encoded message decodes"), message);
    } else {
        match decoded {
            Err(DecodeError::InvalidHeader { name, .. }) => assert!(name == "from" || name == "to"),
            other => panic!("a message with an unroutable from/to decoded to {other:?}"),
        }
    }
});
