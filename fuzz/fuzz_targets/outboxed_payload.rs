//! A consumer reading a derived model from any JSON: `payload_for` picks the
//! version, `from_payload` returns the model or a typed error, never panics;
//! a model it returns writes a payload (`to_payload`, and `write_payload` as
//! the same JSON) that reads back to the same model, with the same key.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use outbox::{Error, Event, Message, Outboxed, Payloads};
use outbox_fuzz::input::PayloadInput;
use outbox_fuzz::models::{Account, AccountV1, OrderLine, Product};
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(input) = PayloadInput::read(data) else {
        return;
    };
    let Ok(payload) = serde_json::from_slice::<Value>(&input.json) else {
        return;
    };
    let event = match input.event % 5 {
        0 => Event::Created,
        1 => Event::Updated,
        2 => Event::Destroyed,
        3 => Event::custom("password_reset").expect("a valid name"),
        _ => Event::custom("archived").expect("a valid name"),
    };
    // The message carries the payload under the versions the input names.
    let mut payloads: Option<Payloads> = None;
    for version in (1..=8u32).filter(|v| input.versions & (1 << (v - 1)) != 0) {
        match &mut payloads {
            Some(p) => {
                p.insert(version, payload.clone()).expect("versions from 1");
            }
            None => payloads = Some(Payloads::new(version, payload.clone()).expect("from 1")),
        }
    }
    let payloads = payloads.unwrap_or_else(|| Payloads::new(1, payload.clone()).expect("v1"));
    let message = Message::new(event, "fuzz", "route", "topic", "key", payloads).expect("topic");
    match input.model % 4 {
        0 => check::<Account>(&message),
        1 => check::<AccountV1>(&message),
        2 => check::<OrderLine>(&message),
        _ => check::<Product>(&message),
    }
});

fn check<M>(message: &Message)
where
    M: Outboxed + PartialEq + Debug,
    M::Key: PartialEq + Debug,
{
    let (version, payload) = match message.payload_for(M::VERSIONS) {
        Ok(found) => found,
        Err(Error::NoCommonVersion { .. }) => {
            assert!(
                !M::VERSIONS
                    .iter()
                    .any(|v| message.payloads.get(*v).is_some())
            );
            return;
        }
        Err(other) => panic!("payload_for: {other:?}"),
    };
    assert!(M::VERSIONS.contains(&version));
    let event = &message.event;
    let key = M::key_from_payload(version, payload);
    if let Err(error) = &key {
        assert!(matches!(error, Error::Payload { .. }), "{error:?}");
    }
    let model = match M::from_payload(event, version, payload) {
        Ok(model) => model,
        Err(error) => {
            assert!(
                matches!(
                    error,
                    Error::Payload { .. } | Error::UnsupportedEvent { .. }
                ),
                "{error:?}"
            );
            let _ = error.to_string();
            return;
        }
    };
    let written = model
        .to_payload(event, version)
        .expect("a model read from a payload writes one");
    let mut bytes = Vec::new();
    model
        .write_payload(event, version, &mut bytes)
        .expect("write_payload as to_payload");
    let fast: Value = serde_json::from_slice(&bytes).expect("write_payload writes JSON");
    assert_eq!(fast, written, "write_payload and to_payload differ");
    let back = M::from_payload(event, version, &written).expect("its own payload reads back");
    assert_eq!(back, model);
    // The key read from the payload is the model's key, as a destroyed message sends it.
    let keys = model.to_payload(&Event::Destroyed, version).expect("keys");
    let from_keys = M::key_from_payload(version, &keys).expect("the keys read back");
    assert_eq!(
        from_keys,
        M::key_from_payload(version, &written).expect("key")
    );
    assert_eq!(
        key.expect("a payload the model reads has its key"),
        from_keys
    );
}
