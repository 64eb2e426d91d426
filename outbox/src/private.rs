//! What generated code needs, under one hidden path (`::outbox::__private`),
//! so users add no imports and their own names cannot shadow ours.

pub use serde;
pub use serde_json;
pub use serde_json::Value;
#[cfg(feature = "diesel")]
pub use {diesel, diesel_async};

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
    serde_json::to_value(view).map_err(|_| serialize_error(model, version, event, view))
}

/// The same JSON, appended to `out`.
pub fn write<T: serde::Serialize>(
    model: &'static str,
    version: u32,
    event: &Event,
    view: &T,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    serde_json::to_writer(out, view).map_err(|_| serialize_error(model, version, event, view))
}

/// A version's view read from a payload.
pub fn read<'de, T: serde::Deserialize<'de>>(
    model: &'static str,
    version: u32,
    event: &Event,
    payload: &'de Value,
) -> Result<T, Error> {
    let payload_error = |reason: String| Error::Payload {
        model,
        version,
        event: event.to_string(),
        reason: short(reason),
    };
    if !payload.is_object() {
        // serde would read an array by position, and name our view for `null`.
        return Err(payload_error(format!(
            "expected a JSON object, found {}",
            crate::message::json_kind(payload)
        )));
    }
    T::deserialize(payload).map_err(|error| {
        // The fast path knows no field names; on failure only, read again tracking the path.
        match serde_path_to_error::deserialize::<_, T>(payload) {
            Err(traced) if !at_root(traced.path()) => {
                payload_error(format!("field `{}`: {}", traced.path(), traced.inner()))
            }
            _ => payload_error(error.to_string()),
        }
    })
}

fn at_root(path: &serde_path_to_error::Path) -> bool {
    path.iter().next().is_none()
}

/// Error messages quote values from the network: keep them readable.
fn short(mut reason: String) -> String {
    const MAX_CHARS: usize = 300;
    if let Some((cut, _)) = reason.char_indices().nth(MAX_CHARS) {
        let total = reason.len();
        reason.truncate(cut);
        reason.push_str(&format!("… ({total} bytes)"));
    }
    reason
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

/// Serializes again, tracking the path, to name the field whose serializer failed.
fn serialize_error<T: serde::Serialize>(
    model: &'static str,
    version: u32,
    event: &Event,
    view: &T,
) -> Error {
    let mut sink = serde_json::Serializer::new(std::io::sink());
    let reason = match serde_path_to_error::serialize(view, &mut sink) {
        Err(traced) if !at_root(traced.path()) => {
            format!("field `{}`: {}", traced.path(), traced.inner())
        }
        Err(traced) => traced.inner().to_string(),
        // Only `to_value` fails here (a number a `Value` cannot hold, e.g. a u128).
        Ok(()) => match serde_json::to_value(view) {
            Err(e) => format!("{e} (a `serde_json::Value` cannot hold it)"),
            Ok(_) => "the serializer failed".to_owned(),
        },
    };
    Error::Serialize {
        model,
        version,
        event: event.to_string(),
        reason: short(reason),
    }
}
