//! What generated code needs, under one hidden path (`::outbox::__private`),
//! so users add no imports and their own names cannot shadow ours.

pub use serde;
pub use serde_json;
pub use serde_json::Value;

pub use crate::error::Error;
pub use crate::event::Event;
pub use crate::outboxed::Outboxed;

pub use core::default::Default;
pub use core::result::Result::{self, Err, Ok};
pub use std::format;
pub use std::string::{String, ToString};
pub use std::vec::Vec;

/// The payload of a version, serialized by its generated view.
pub fn to_value<T: serde::Serialize>(
    model: &'static str,
    version: u32,
    event: &Event,
    view: &T,
) -> Result<Value, Error> {
    serde_json::to_value(view).map_err(|e| serialize_error(model, version, event, e))
}

/// The same JSON, appended to `out`.
pub fn write<T: serde::Serialize>(
    model: &'static str,
    version: u32,
    event: &Event,
    view: &T,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    serde_json::to_writer(out, view).map_err(|e| serialize_error(model, version, event, e))
}

/// A version's view read from a payload.
pub fn read<'de, T: serde::Deserialize<'de>>(
    model: &'static str,
    version: u32,
    event: &Event,
    payload: &'de Value,
) -> Result<T, Error> {
    T::deserialize(payload).map_err(|e| Error::Payload {
        model,
        version,
        event: event.to_string(),
        reason: e.to_string(),
    })
}

/// `version` is not one the model declares.
pub fn unknown_version(model: &'static str, version: u32, supported: &'static [u32]) -> Error {
    Error::UnknownVersion {
        model,
        version,
        supported,
    }
}

/// A version does not carry a field that has no default.
pub fn not_carried(model: &'static str, version: u32, event: &Event, field: &'static str) -> Error {
    Error::Payload {
        model,
        version,
        event: event.to_string(),
        reason: format!(
            "version {version} does not carry field `{field}`, and the field has no `#[outbox(default)]`"
        ),
    }
}

/// A destroyed message carries only the key: the model cannot be read from it.
pub fn keys_only(model: &'static str) -> Error {
    Error::UnsupportedEvent {
        model,
        event: "destroyed".to_owned(),
        reason: "its payload carries only the primary key (read it with `key_from_payload`, \
                 or declare `#[outbox(destroyed = \"full\")]` on both sides)",
    }
}

fn serialize_error(
    model: &'static str,
    version: u32,
    event: &Event,
    e: serde_json::Error,
) -> Error {
    Error::Serialize {
        model,
        version,
        event: event.to_string(),
        reason: e.to_string(),
    }
}
