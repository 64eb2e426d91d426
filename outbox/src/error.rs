//! Errors of the `outbox` runtime.

use std::fmt;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the `outbox` runtime.
///
/// Variants are grouped by domain; each one names what is wrong. The enum is
/// `#[non_exhaustive]`: later releases add variants for new domains.
///
/// # Examples
///
/// ```
/// use outbox::{Error, Event};
///
/// let err = Event::custom("Password Reset").unwrap_err();
/// assert!(matches!(err, Error::InvalidEventName { .. }));
/// assert_eq!(
///     err.to_string(),
///     "invalid event name \"Password Reset\": character 'P' at byte 0 is not one of [a-z0-9_.-]"
/// );
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kafka record could not be decoded into a [`Message`](crate::Message).
    #[error(transparent)]
    Decode(#[from] DecodeError),

    /// An event name does not follow the rules of [`EventName`](crate::EventName).
    #[error("invalid event name {name}: {reason}")]
    InvalidEventName {
        /// The offending name, quoted and truncated to a readable length.
        name: Truncated,
        /// Which rule it breaks.
        reason: String,
    },

    /// A topic name breaks Kafka's rule (see [`Message::check_topic`](crate::Message::check_topic)).
    #[error("invalid topic name {topic}: {reason}")]
    InvalidTopic {
        /// The offending name, quoted and truncated to a readable length.
        topic: Truncated,
        /// Which rule it breaks.
        reason: String,
    },

    /// A string is not a valid [`MessageId`](crate::MessageId).
    #[error("invalid message id {value}: {reason}")]
    InvalidMessageId {
        /// The offending value, quoted and truncated to a readable length.
        value: Truncated,
        /// Why it is not a message id.
        reason: String,
    },

    /// A `traceparent` value does not follow W3C Trace Context.
    #[error("invalid traceparent {value}: expected `00-<32 hex>-<16 hex>-<2 hex>`")]
    InvalidTraceparent {
        /// The offending value, quoted and truncated to a readable length.
        value: Truncated,
    },

    /// A payload version is 0; versions start at 1.
    #[error("invalid payload version {version}: versions start at 1")]
    InvalidVersion {
        /// The offending version.
        version: u32,
    },

    /// A list of payload versions (the `versions` header) is not valid.
    #[error("invalid version list {value}: {reason}")]
    InvalidVersions {
        /// The offending list, truncated.
        value: Truncated,
        /// Why it is invalid.
        reason: String,
    },

    /// A timestamp is not RFC 3339.
    #[error(
        "invalid timestamp {value}: {reason} (expected RFC 3339, e.g. `2026-11-23T16:32:07.123Z`)"
    )]
    InvalidTimestamp {
        /// The offending value, truncated.
        value: Truncated,
        /// What the parser said.
        reason: String,
    },

    /// A model was asked for a payload version it does not declare.
    #[error("`{model}` has no payload version {version}; it declares {supported:?}")]
    UnknownVersion {
        /// The model's name.
        model: &'static str,
        /// The version asked for.
        version: u32,
        /// The versions the model declares.
        supported: &'static [u32],
    },

    /// A payload could not be read into a model: a field is missing or has the wrong type.
    #[error("invalid `{model}` payload (version {version}, event `{event}`): {reason}")]
    Payload {
        /// The model's name.
        model: &'static str,
        /// The payload's version.
        version: u32,
        /// The message's event.
        event: String,
        /// What is wrong, naming the field.
        reason: String,
    },

    /// A model could not be written as a payload: a field's serializer failed.
    #[error("could not serialize `{model}` (version {version}, event `{event}`): {reason}")]
    Serialize {
        /// The model's name.
        model: &'static str,
        /// The payload's version.
        version: u32,
        /// The message's event.
        event: String,
        /// What the serializer said.
        reason: String,
    },

    /// A model cannot be read from this event's payload.
    #[error("`{model}` cannot be read from a `{event}` payload: {reason}")]
    UnsupportedEvent {
        /// The model's name.
        model: &'static str,
        /// The event.
        event: String,
        /// Why, and what to do instead.
        reason: &'static str,
    },

    /// The reader and the message share no payload version.
    #[error(
        "no common payload version: the message carries {offered:?}, the reader knows {supported:?}"
    )]
    NoCommonVersion {
        /// The versions the message carries.
        offered: Vec<u32>,
        /// The versions the reader knows.
        supported: Vec<u32>,
    },

    /// A model has no generated schemas: its derive has no `#[outbox(avro)]`.
    #[error(
        "the model of route `{route}` (topic `{topic}`) has no generated schemas: \
         add `#[outbox(avro)]` to its `#[derive(Outboxed)]`"
    )]
    NoSchema {
        /// The model's topic.
        topic: &'static str,
        /// The model's route.
        route: &'static str,
    },

    /// An Avro message was read before the schema it was written with
    /// (fetched by its id from the registry) was attached to it.
    #[error(
        "the Avro message's writer schema (id {id}) is not known here; \
         attach it with `Payloads::set_writer_schema` (the consumer does, from its schema registry)"
    )]
    NoWriterSchema {
        /// The schema id in the record's frame.
        id: u32,
    },

    /// Schema id 0 in an Avro frame built by hand: no registry gives it.
    #[error(
        "schema id 0 is not a registry id: build Avro payloads with the id the registry \
         gave the writer's schema"
    )]
    AvroSchemaId,

    /// Avro payloads hold one datum: another version cannot be inserted.
    #[error("Avro payloads carry one datum (version {version}); JSON payloads take more versions")]
    AvroPayloads {
        /// The datum's version.
        version: u32,
    },

    /// A schema file of an export could not be written or read.
    #[error("{path}: {reason}")]
    Export {
        /// The file or folder.
        path: String,
        /// What went wrong.
        reason: String,
    },

    /// A model could not be written as, or read from, an Avro datum.
    #[error("`{model}` version {version} as Avro: {reason}")]
    Avro {
        /// The model's name.
        model: &'static str,
        /// The payload version.
        version: u32,
        /// The field, and what is wrong with its value or bytes.
        reason: String,
    },

    /// A model's schema of a version breaks a rule of Avro's the derive could
    /// not check at compile time (a default of the wrong type, a union in a union).
    #[error("`{model}` has no valid Avro schema for version {version}: {reason}")]
    Schema {
        /// The model's name.
        model: &'static str,
        /// The version.
        version: u32,
        /// The field and the rule it breaks.
        reason: String,
    },
}

/// Why a Kafka record is not a valid [`Message`](crate::Message).
///
/// Every variant names the header or field at fault and, where there is one,
/// the offending value truncated to a readable length.
///
/// # Examples
///
/// ```
/// use outbox::{DecodeError, Message};
///
/// let err = Message::decode("accounts", Some(b"42"), [], Some(b"{}")).unwrap_err();
/// assert!(matches!(err, DecodeError::MissingHeader { name: "message_id" }));
/// assert_eq!(err.to_string(), "header `message_id` is missing");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The record has no key; every message is keyed by its partition key.
    #[error("record has no key (the partition key)")]
    MissingKey,
    /// The record's key is not UTF-8.
    #[error("record key is not valid UTF-8: {key}")]
    KeyNotUtf8 {
        /// The key, lossily decoded and truncated.
        key: Truncated,
    },
    /// The record has no value (a tombstone); a message always has one.
    #[error("record has no value (a tombstone is not a message)")]
    MissingValue,
    /// A required header is absent.
    #[error("header `{name}` is missing")]
    MissingHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A header the envelope defines appears more than once.
    #[error("header `{name}` appears more than once")]
    DuplicateHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A header the envelope defines is present but has no value (a null header).
    #[error("header `{name}` has no value")]
    HeaderWithoutValue {
        /// The header's name.
        name: &'static str,
    },
    /// A header's name is not UTF-8. Kafka defines header names as strings;
    /// such a header cannot be told from the ones the envelope defines.
    #[error("header name {name} is not valid UTF-8 (header {index}, counting from 0)")]
    HeaderNameNotUtf8 {
        /// The header's position among the record's headers.
        index: usize,
        /// The name, lossily decoded and truncated.
        name: Truncated,
    },
    /// A header the envelope defines has a value that is not UTF-8.
    #[error("header `{name}` is not valid UTF-8: {value}")]
    HeaderNotUtf8 {
        /// The header's name.
        name: &'static str,
        /// The value, lossily decoded and truncated.
        value: Truncated,
    },
    /// A header holds a value that is not valid for it.
    #[error("header `{name}` has an invalid value {value}: {reason}")]
    InvalidHeader {
        /// The header's name.
        name: &'static str,
        /// The offending value, truncated.
        value: Truncated,
        /// Why it is invalid.
        reason: String,
    },
    /// The `content-type` header names an encoding this release cannot read.
    #[error("unsupported content type {value}: expected `application/json` or `application/avro`")]
    UnsupportedContentType {
        /// The offending value, truncated.
        value: Truncated,
    },
    /// An Avro record's value is not in the Confluent wire format (a zero
    /// byte, a 4-byte schema id, the datum).
    #[error("record value is not an Avro frame: {reason} (value starts {value})")]
    InvalidAvroFrame {
        /// What is wrong.
        reason: String,
        /// The value's first bytes.
        value: Truncated,
    },
    /// The record's value is not a JSON object.
    #[error("record value is not a JSON envelope: {reason} (value starts {value})")]
    InvalidJson {
        /// What the JSON parser said.
        reason: String,
        /// The start of the value, truncated.
        value: Truncated,
    },
    /// A field of the JSON envelope is absent.
    #[error("envelope field `{field}` is missing")]
    MissingField {
        /// The field's name.
        field: &'static str,
    },
    /// A field of the JSON envelope has a value that is not valid for it.
    #[error("envelope field `{field}` has an invalid value {value}: {reason}")]
    InvalidField {
        /// The field's name (`payloads.<n>` for a payload).
        field: String,
        /// The offending value, truncated.
        value: Truncated,
        /// Why it is invalid.
        reason: String,
    },
    /// The record's key is not the envelope's `partition_key`.
    #[error("record key is {key} but the envelope's `partition_key` is {envelope}")]
    KeyMismatch {
        /// The record's key, truncated.
        key: Truncated,
        /// The envelope's partition key, truncated.
        envelope: Truncated,
    },
    /// A header and the envelope disagree on a value both carry.
    #[error("header `{name}` is {header} but the envelope says {envelope}")]
    Mismatch {
        /// The header's (and field's) name.
        name: &'static str,
        /// The header's value, truncated.
        header: Truncated,
        /// The envelope's value, truncated.
        envelope: Truncated,
    },
}

/// A value quoted for an error message, cut to [`Truncated::MAX_CHARS`] characters.
///
/// Values that come from the network can be huge or unprintable; errors show a
/// readable prefix and say how long the whole was.
///
/// # Examples
///
/// ```
/// use outbox::Truncated;
///
/// assert_eq!(Truncated::new("short").to_string(), "\"short\"");
/// let long = "x".repeat(500);
/// assert!(Truncated::new(&long).to_string().ends_with("…\" (500 bytes)"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Truncated {
    shown: String,
    total_len: usize,
    cut: bool,
}

impl Truncated {
    /// How many characters of the value are shown.
    pub const MAX_CHARS: usize = 80;

    /// Keeps a readable prefix of `value`.
    pub fn new(value: &str) -> Self {
        let (shown, cut) = match value.char_indices().nth(Self::MAX_CHARS) {
            Some((end, _)) => (&value[..end], true),
            None => (value, false),
        };
        Truncated {
            shown: shown.to_owned(),
            total_len: value.len(),
            cut,
        }
    }

    /// Keeps a readable prefix of bytes that may not be UTF-8 (invalid sequences become `�`).
    pub fn lossy(value: &[u8]) -> Self {
        // A character is at most 4 bytes: this prefix is enough for MAX_CHARS characters.
        let prefix = &value[..value.len().min(Self::MAX_CHARS * 4)];
        let mut truncated = Self::new(&String::from_utf8_lossy(prefix));
        truncated.cut |= prefix.len() < value.len();
        truncated.total_len = value.len();
        truncated
    }

    /// The part of the value that is shown.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Whether the value was cut.
    pub fn is_cut(&self) -> bool {
        self.cut
    }
}

impl fmt::Display for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_cut() {
            let escaped = format!("{:?}", self.shown);
            write!(
                f,
                "{}…\" ({} bytes)",
                &escaped[..escaped.len() - 1],
                self.total_len
            )
        } else {
            write!(f, "{:?}", self.shown)
        }
    }
}

impl fmt::Debug for Truncated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncates_on_char_boundaries() {
        let value = "é".repeat(100);
        let t = Truncated::new(&value);
        assert_eq!(t.shown().chars().count(), Truncated::MAX_CHARS);
        assert!(t.is_cut());
        assert!(t.to_string().ends_with("…\" (200 bytes)"));
    }

    #[test]
    fn lossy_keeps_total_length_of_binary_values() {
        let t = Truncated::lossy(&[0xff; 1000]);
        assert!(t.is_cut());
        assert!(t.to_string().contains("(1000 bytes)"));
        // Fewer bytes than shown characters would take, but still more than shown.
        let t = Truncated::lossy(&[0xff; 90]);
        assert!(t.is_cut());
        assert_eq!(t.shown().chars().count(), Truncated::MAX_CHARS);
    }

    #[test]
    fn short_values_are_quoted_whole() {
        assert_eq!(Truncated::new("a\"b").to_string(), r#""a\"b""#);
        assert_eq!(Truncated::lossy(b"ok").to_string(), "\"ok\"");
    }
}
