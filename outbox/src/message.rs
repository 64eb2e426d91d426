//! The message envelope and its wire format: the only place that knows the layout.
//!
//! A message travels as a Kafka record:
//!
//! - key: the partition key, UTF-8;
//! - headers: `message_id`, `event`, `from`, `to`, `versions`, `content-type`,
//!   `occurred_at`, and `traceparent` (with `tracestate`) when a trace is active;
//! - value: the JSON envelope `{"message_id", "event", "from", "to",
//!   "partition_key", "occurred_at", "payloads": {"1": {..}, "2": {..}}}`
//!   (`content-type: application/json`), or, for a model with
//!   `#[outbox(format = "avro")]`, one Avro datum of the producer's highest
//!   version in the Confluent wire format: a zero byte, the writer schema's
//!   registry id (4 bytes, big-endian), the datum (`content-type:
//!   application/avro`, `versions` naming that one version).
//!
//! Headers let a consumer route and deduplicate without parsing the value; the
//! JSON envelope repeats them so the value alone is a complete message. Decoding
//! checks that both agree. An Avro value has only the headers.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value};

use crate::error::{DecodeError, Error, Truncated};
use crate::event::Event;
use crate::message_id::MessageId;
use crate::outboxed::{Format, Outboxed};
use crate::trace::TraceContext;

mod frame;
mod payloads;

use payloads::Inner;
pub use payloads::Payloads;

/// Names of the Kafka headers a message carries.
pub mod headers {
    /// The message id (UUIDv7).
    pub const MESSAGE_ID: &str = "message_id";
    /// The event name.
    pub const EVENT: &str = "event";
    /// The producing service.
    pub const FROM: &str = "from";
    /// The route: which model or controller the message is for.
    pub const TO: &str = "to";
    /// The payload versions carried, ascending, comma separated (`1,2`).
    pub const VERSIONS: &str = "versions";
    /// The encoding of the value: `application/json` or `application/avro`.
    pub const CONTENT_TYPE: &str = "content-type";
    /// When the event happened, RFC 3339.
    pub const OCCURRED_AT: &str = "occurred_at";
    /// W3C trace parent, when a trace was active at enqueue.
    pub const TRACEPARENT: &str = "traceparent";
    /// W3C trace state, beside `traceparent`.
    pub const TRACESTATE: &str = "tracestate";
}

/// The content type of a JSON envelope.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// The content type of an Avro value in the Confluent wire format.
pub const CONTENT_TYPE_AVRO: &str = "application/avro";

/// One message: what happened, to which model, from whom, with its payloads.
///
/// # Examples
///
/// ```
/// use outbox::{Event, Message, Payloads};
/// use serde_json::json;
///
/// let payloads = Payloads::new(1, json!({"id": 42, "email": "a@example.com"}))?;
/// let message = Message::new(Event::Created, "accounts", "users", "accounts", "42", payloads)?;
///
/// let record = message.encode();
/// assert_eq!(record.key, b"42");
///
/// let headers = record.headers.iter().map(|(name, value)| (*name, Some(value.as_bytes())));
/// let decoded = Message::decode("accounts", Some(&record.key), headers, Some(&record.value))?;
/// assert_eq!(decoded, message);
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Unique id, made at enqueue; consumers deduplicate on it.
    pub id: MessageId,
    /// What happened.
    pub event: Event,
    /// The producing service (header `from`).
    pub from: String,
    /// The route: which model or controller handles it (header `to`).
    pub to: String,
    /// The Kafka topic.
    pub topic: String,
    /// The Kafka key: messages with the same key keep their order.
    pub partition_key: String,
    /// When the event happened.
    pub occurred_at: DateTime<Utc>,
    /// One payload per version the producer supports.
    pub payloads: Payloads,
    /// The trace active at enqueue, if any.
    pub trace: Option<TraceContext>,
}

/// A message as a Kafka record: key, headers and value.
///
/// The topic is the message's [`topic`](Message::topic); it is not repeated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedMessage {
    /// The partition key, UTF-8.
    pub key: Vec<u8>,
    /// Header names and values, in a fixed order.
    pub headers: Vec<(&'static str, String)>,
    /// The JSON envelope, or the Avro frame.
    pub value: Vec<u8>,
    /// For an Avro value whose frame holds schema id 0: the writer's schema
    /// (the model's, of the version written), for the relay to register and
    /// write its id into the frame. `None` for JSON and for a frame with its id.
    pub avro_schema: Option<&'static str>,
}

/// Kafka's longest topic name.
const MAX_TOPIC_LEN: usize = 249;

impl Message {
    /// Makes a message with a new [`MessageId`], occurring now, without a trace.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] when `topic` breaks Kafka's rule (see
    /// [`check_topic`](Message::check_topic)), the rule `#[outbox(topic = ..)]`
    /// checks at compile time.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Event, Message, Payloads};
    ///
    /// let payloads = Payloads::new(1, serde_json::json!({"id": 7}))?;
    /// let message = Message::new(Event::Destroyed, "accounts", "users", "accounts", "7", payloads.clone())?;
    /// assert_eq!(message.to, "users");
    ///
    /// let refused = Message::new(Event::Destroyed, "accounts", "users", "user accounts", "7", payloads);
    /// assert!(matches!(refused, Err(outbox::Error::InvalidTopic { .. })));
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn new(
        event: Event,
        from: impl Into<String>,
        to: impl Into<String>,
        topic: impl Into<String>,
        partition_key: impl Into<String>,
        payloads: Payloads,
    ) -> Result<Self, Error> {
        let topic = topic.into();
        Self::check_topic(&topic)?;
        Ok(Message {
            id: MessageId::new(),
            event,
            from: from.into(),
            to: to.into(),
            topic,
            partition_key: partition_key.into(),
            occurred_at: Utc::now(),
            payloads,
            trace: None,
        })
    }

    /// Checks `topic` against Kafka's rule for topic names: 1 to 249
    /// characters of ASCII letters, digits, `.`, `_` and `-`, and neither `.`
    /// nor `..`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTopic`] naming the topic and the rule it breaks.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Message;
    ///
    /// assert!(Message::check_topic("billing.invoices-v2").is_ok());
    /// let error = Message::check_topic("billing invoices").unwrap_err();
    /// assert_eq!(
    ///     error.to_string(),
    ///     "invalid topic name \"billing invoices\": contains ' '; Kafka topic names use only \
    ///      ASCII letters, digits, `.`, `_` and `-`"
    /// );
    /// ```
    pub fn check_topic(topic: &str) -> Result<(), Error> {
        let reason = if topic.is_empty() {
            "is empty".to_owned()
        } else if topic == "." || topic == ".." {
            "Kafka does not allow `.` or `..` as a topic name".to_owned()
        } else if topic.len() > MAX_TOPIC_LEN {
            format!(
                "is {} characters long; Kafka allows {MAX_TOPIC_LEN}",
                topic.len()
            )
        } else if let Some(c) = topic
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            format!(
                "contains {c:?}; Kafka topic names use only ASCII letters, digits, `.`, `_` and `-`"
            )
        } else {
            return Ok(());
        };
        Err(Error::InvalidTopic {
            topic: Truncated::new(topic),
            reason,
        })
    }

    /// Encodes the message as a Kafka record (key, headers, value).
    ///
    /// `occurred_at` is written in RFC 3339 with as many fractional digits as it
    /// needs, so [`decode`](Message::decode) gives the same instant back.
    pub fn encode(&self) -> EncodedMessage {
        let id = self.id.to_string();
        let occurred_at = format_timestamp(&self.occurred_at);
        let fields = EnvelopeFields {
            id: &id,
            event: self.event.as_str(),
            from: &self.from,
            to: &self.to,
            partition_key: &self.partition_key,
            occurred_at: &occurred_at,
            versions: join_versions(&self.payloads.versions().collect::<Vec<_>>()),
            trace: self.trace.as_ref(),
        };
        let map = match &self.payloads.0 {
            Inner::Json(map) => map,
            Inner::Avro(avro) => {
                let mut value = Vec::with_capacity(frame::HEADER_LEN + avro.datum.len());
                value.extend_from_slice(&frame::header(avro.schema_id));
                value.extend_from_slice(&avro.datum);
                return fields.into_record(CONTENT_TYPE_AVRO, value, None);
            }
        };
        let mut value = Vec::with_capacity(256);
        // Writing strings and `Value`s into a Vec cannot fail.
        let _ = fields.write_value(&mut value, |out| {
            write_payload_map(out, map.iter(), |out, payload| {
                serde_json::to_writer(out, payload).map_err(|e| Error::Serialize {
                    model: "Message",
                    version: 0,
                    event: self.event.to_string(),
                    reason: e.to_string(),
                })
            })
        });
        fields.into_record(CONTENT_TYPE_JSON, value, None)
    }

    /// Encodes the message a model's `event` makes, writing each of
    /// [`M::VERSIONS`](Outboxed::VERSIONS) straight into the value with
    /// [`Outboxed::write_payload`] (no [`Value`] in between): the enqueue path.
    ///
    /// The result decodes (with [`Message::decode`]) to the message that
    /// [`Message::new`] would make from `model.to_payload(..)` of each version.
    ///
    /// A model with [`FORMAT`](Outboxed::FORMAT) [`Format::Avro`] is written
    /// as one datum of its highest version ([`Outboxed::write_avro`]; every
    /// event carries the whole model) in a frame with schema id 0, its schema
    /// in [`EncodedMessage::avro_schema`]: the relay registers it and writes
    /// the id.
    ///
    /// # Errors
    ///
    /// What [`Outboxed::write_payload`] (or [`Outboxed::write_avro`]) returns
    /// for a failing field serializer.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Event, Message, MessageId, Outboxed};
    ///
    /// #[derive(Outboxed)]
    /// #[outbox(topic = "accounts", route = "users", versions = [1, 2])]
    /// struct User { id: i64, email: String }
    ///
    /// let user = User { id: 7, email: "ada@example.com".into() };
    /// let id = MessageId::new();
    /// let record = Message::encode_model(&user, &Event::Created, "accounts", id, chrono::Utc::now(), None)?;
    /// let headers = record.headers.iter().map(|(n, v)| (*n, Some(v.as_bytes())));
    /// let message = Message::decode(User::TOPIC, Some(&record.key), headers, Some(&record.value))?;
    /// assert_eq!((message.id, message.to.as_str()), (id, "users"));
    /// assert_eq!(message.payload_for(&[2])?.1, &user.to_payload(&Event::Created, 2)?);
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn encode_model<M: Outboxed>(
        model: &M,
        event: &Event,
        from: &str,
        id: MessageId,
        occurred_at: DateTime<Utc>,
        trace: Option<&TraceContext>,
    ) -> Result<EncodedMessage, Error> {
        // What consumers would refuse is refused here, before it is stored.
        routing_name(headers::FROM, from)?;
        let id = id.to_string();
        let occurred_at = format_timestamp(&occurred_at);
        let partition_key = model.partition_key();
        let mut fields = EnvelopeFields {
            id: &id,
            event: event.as_str(),
            from,
            to: M::ROUTE,
            partition_key: &partition_key,
            occurred_at: &occurred_at,
            versions: String::new(),
            trace,
        };
        if M::FORMAT == Format::Avro {
            // The highest version: the one readers of every version can resolve.
            let version = M::VERSIONS.last().copied().unwrap_or(1);
            let schema = M::avro_schema(version)?;
            let mut value = Vec::with_capacity(128);
            value.extend_from_slice(&frame::header(0));
            model.write_avro(version, &mut value)?;
            fields.versions = version.to_string();
            return Ok(fields.into_record(CONTENT_TYPE_AVRO, value, Some(schema)));
        }
        fields.versions = join_versions(M::VERSIONS);
        let mut value = Vec::with_capacity(256);
        fields.write_value(&mut value, |out| {
            write_payload_map(out, M::VERSIONS.iter().map(|v| (v, v)), |out, version| {
                model.write_payload(event, *version, out)
            })
        })?;
        Ok(fields.into_record(CONTENT_TYPE_JSON, value, None))
    }

    /// Decodes a Kafka record read from `topic`.
    ///
    /// Headers this format does not define are ignored (brokers and other tools
    /// add their own); the ones it defines must appear once and agree with the
    /// envelope. An Avro value (`content-type: application/avro`) gives
    /// [`Payloads`] holding its datum and schema id; its writer schema is
    /// attached afterwards ([`Payloads::set_writer_schema`]), by the consumer.
    ///
    /// # Errors
    ///
    /// A [`DecodeError`] naming the header or field at fault. Never panics,
    /// whatever the bytes.
    pub fn decode<'h>(
        topic: &str,
        key: Option<&[u8]>,
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
        value: Option<&[u8]>,
    ) -> Result<Message, DecodeError> {
        let key = key.ok_or(DecodeError::MissingKey)?;
        let key = std::str::from_utf8(key).map_err(|_| DecodeError::KeyNotUtf8 {
            key: Truncated::lossy(key),
        })?;
        let headers = RecordHeaders::collect(headers)?;
        let id = parse_header(&headers, headers::MESSAGE_ID, MessageId::parse)?;
        let event = parse_header(&headers, headers::EVENT, Event::parse)?;
        let from = routing_name(headers::FROM, headers.required(headers::FROM)?)?;
        let to = routing_name(headers::TO, headers.required(headers::TO)?)?;
        let versions = parse_header(&headers, headers::VERSIONS, parse_versions)?;
        let content_type = headers.required(headers::CONTENT_TYPE)?;
        let format =
            media_type_format(content_type).ok_or_else(|| DecodeError::UnsupportedContentType {
                value: Truncated::new(content_type),
            })?;
        let occurred_at = parse_header(&headers, headers::OCCURRED_AT, parse_timestamp)?;
        let trace = match headers.optional(headers::TRACEPARENT) {
            Some(parent) => Some(
                TraceContext::new(parent, headers.optional(headers::TRACESTATE))
                    .map_err(|e| invalid_header(headers::TRACEPARENT, parent, e))?,
            ),
            None => None,
        };

        let value = value.ok_or(DecodeError::MissingValue)?;
        let payloads = if format == Format::Avro {
            let &[version] = versions.as_slice() else {
                return Err(DecodeError::InvalidHeader {
                    name: headers::VERSIONS,
                    value: Truncated::new(&join_versions(&versions)),
                    reason: "an Avro value is a datum of one version".into(),
                });
            };
            let (schema_id, datum) = frame::parse(value)?;
            Payloads::avro(version, schema_id, datum.to_vec())
                .map_err(|e| invalid_header(headers::VERSIONS, "0", e))?
        } else {
            Self::decode_envelope(value, key, (&id, &event, from, to, &occurred_at), &versions)?
        };
        Ok(Message {
            id,
            event,
            from: from.to_owned(),
            to: to.to_owned(),
            topic: topic.to_owned(),
            partition_key: key.to_owned(),
            occurred_at,
            payloads,
            trace,
        })
    }

    /// The payloads of a JSON envelope, once its fields agree with the headers.
    fn decode_envelope(
        value: &[u8],
        key: &str,
        (id, event, from, to, occurred_at): (&MessageId, &Event, &str, &str, &DateTime<Utc>),
        versions: &[u32],
    ) -> Result<Payloads, DecodeError> {
        let mut envelope = Envelope::parse(value)?;
        let envelope_id = envelope.parse_field(headers::MESSAGE_ID, MessageId::parse)?;
        agree(headers::MESSAGE_ID, id, &envelope_id)?;
        let envelope_event = envelope.parse_field(headers::EVENT, Event::parse)?;
        agree(headers::EVENT, event, &envelope_event)?;
        agree(headers::FROM, &from, &envelope.string(headers::FROM)?)?;
        agree(headers::TO, &to, &envelope.string(headers::TO)?)?;
        let envelope_key = envelope.string("partition_key")?;
        if key != envelope_key {
            return Err(DecodeError::KeyMismatch {
                key: Truncated::new(key),
                envelope: Truncated::new(envelope_key),
            });
        }
        let envelope_occurred_at = envelope.parse_field(headers::OCCURRED_AT, parse_timestamp)?;
        agree(headers::OCCURRED_AT, occurred_at, &envelope_occurred_at)?;
        let payloads = envelope.take_payloads()?;
        let payload_versions: Vec<u32> = payloads.versions().collect();
        if payload_versions != versions {
            return Err(DecodeError::Mismatch {
                name: headers::VERSIONS,
                header: Truncated::new(&join_versions(versions)),
                envelope: Truncated::new(&join_versions(&payload_versions)),
            });
        }

        Ok(payloads)
    }

    /// The highest payload version that both this message and a reader knowing
    /// `supported` have: the version the reader should decode.
    ///
    /// # Errors
    ///
    /// [`Error::NoCommonVersion`] naming both lists when they share no version.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Event, Message, Payloads};
    /// use serde_json::json;
    ///
    /// let mut payloads = Payloads::new(1, json!({"mail": "a@example.com"}))?;
    /// payloads.insert(2, json!({"email": "a@example.com"}))?;
    /// let message = Message::new(Event::Updated, "accounts", "users", "accounts", "1", payloads)?;
    ///
    /// assert_eq!(message.highest_common_version(&[1])?, 1);     // an older reader
    /// assert_eq!(message.highest_common_version(&[1, 2, 3])?, 2); // a newer one
    /// assert!(message.highest_common_version(&[3]).is_err());
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn highest_common_version(&self, supported: &[u32]) -> Result<u32, Error> {
        self.payloads
            .versions()
            .rev()
            .find(|v| supported.contains(v))
            .ok_or_else(|| Error::NoCommonVersion {
                offered: self.payloads.versions().collect(),
                supported: supported.to_vec(),
            })
    }

    /// The payload a reader knowing `supported` should use, with its version.
    ///
    /// # Errors
    ///
    /// [`Error::NoCommonVersion`] as for [`highest_common_version`](Message::highest_common_version).
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Event, Message, Payloads};
    ///
    /// let payloads = Payloads::new(1, serde_json::json!({"id": 1}))?;
    /// let message = Message::new(Event::Created, "a", "users", "t", "1", payloads)?;
    /// let (version, payload) = message.payload_for(&[1, 2])?;
    /// assert_eq!((version, payload["id"].as_i64()), (1, Some(1)));
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn payload_for(&self, supported: &[u32]) -> Result<(u32, &Value), Error> {
        let version = self.highest_common_version(supported)?;
        if let Inner::Avro(avro) = &self.payloads.0 {
            return Ok((version, avro.as_json()?));
        }
        let payload = self.payloads.get(version).ok_or(Error::NoCommonVersion {
            offered: self.payloads.versions().collect(),
            supported: supported.to_vec(),
        })?;
        Ok((version, payload))
    }

    /// Reads the message's model as `M`, whatever its format: from the JSON
    /// payload of the highest version both sides know, or by resolving the
    /// Avro datum into the version of `M` the writer's version maps to (the
    /// same, else `M`'s highest below it, else its lowest), Avro's schema
    /// resolution: renamed fields by their aliases, fields the writer lacks
    /// from their defaults, the writer's extra fields skipped.
    ///
    /// This is what `#[message_controller]`'s generated handlers call.
    ///
    /// # Errors
    ///
    /// For JSON, what [`payload_for`](Message::payload_for) and
    /// [`Outboxed::from_payload`] return; for Avro, [`Error::NoWriterSchema`]
    /// before the writer's schema is attached, what
    /// [`Outboxed::read_avro_from`] returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use outbox::{Event, Message, MessageId, Outboxed, avro::WriterSchema};
    ///
    /// #[derive(Debug, PartialEq, Outboxed)]
    /// #[outbox(topic = "accounts", route = "users", versions = [1, 2], format = "avro")]
    /// struct User {
    ///     id: i64,
    ///     #[outbox(rename(v1 = "mail"))]
    ///     email: String,
    /// }
    ///
    /// let user = User { id: 7, email: "ada@example.com".into() };
    /// let mut record = Message::encode_model(&user, &Event::Created, "accounts", MessageId::new(),
    ///     chrono::Utc::now(), None)?;
    /// record.value[1..5].copy_from_slice(&42u32.to_be_bytes()); // what the relay does
    /// let headers = record.headers.iter().map(|(n, v)| (*n, Some(v.as_bytes())));
    /// let mut message = Message::decode(User::TOPIC, Some(&record.key), headers, Some(&record.value))?;
    ///
    /// // What the consumer does with the registry's schema of id 42.
    /// let writer = WriterSchema::parse(record.avro_schema.unwrap())?;
    /// message.payloads.set_writer_schema(Arc::new(writer));
    /// assert_eq!(message.read::<User>()?, user);
    /// assert_eq!(message.read_key::<User>()?, 7);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn read<M: Outboxed>(&self) -> Result<M, Error> {
        match &self.payloads.0 {
            Inner::Json(_) => {
                let (version, payload) = self.payload_for(M::VERSIONS)?;
                M::from_payload(&self.event, version, payload)
            }
            Inner::Avro(avro) => {
                let writer = avro
                    .writer
                    .as_deref()
                    .ok_or(Error::NoWriterSchema { id: avro.schema_id })?;
                let version = crate::avro::reader_version(M::VERSIONS, avro.version);
                M::read_avro_from(writer, version, &avro.datum)
            }
        }
    }

    /// The version of `M` that [`read`](Message::read) reads the message as:
    /// for JSON, the highest payload version both sides know; for Avro, the
    /// version of `M` the writer's version maps to (the same, else `M`'s
    /// highest below it, else its lowest). The fields of `M` that version
    /// does not carry ([`Outboxed::columns_not_carried`]) are read as their
    /// defaults.
    ///
    /// # Errors
    ///
    /// [`Error::NoCommonVersion`] for a JSON message sharing no version with
    /// `M` (which `read` fails on too).
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Event, Message, Outboxed, Payloads};
    ///
    /// #[derive(Debug, PartialEq, Outboxed)]
    /// #[outbox(topic = "accounts", route = "users", versions = [1, 2])]
    /// struct User {
    ///     id: i64,
    ///     #[outbox(since = 2, default)]
    ///     nickname: Option<String>,
    /// }
    ///
    /// // From a producer that knows version 1 only.
    /// let payloads = Payloads::new(1, serde_json::json!({"id": 7}))?;
    /// let message = Message::new(Event::Updated, "accounts", "users", "accounts", "7", payloads)?;
    /// assert_eq!(message.reader_version::<User>()?, 1);
    /// assert_eq!(message.read::<User>()?, User { id: 7, nickname: None });
    /// assert_eq!(User::columns_not_carried(1), ["nickname"]);
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn reader_version<M: Outboxed>(&self) -> Result<u32, Error> {
        match &self.payloads.0 {
            Inner::Json(_) => self.highest_common_version(M::VERSIONS),
            Inner::Avro(avro) => Ok(crate::avro::reader_version(M::VERSIONS, avro.version)),
        }
    }

    /// Reads the primary key of the message's model as `M` sees it (a
    /// destroyed message's payload may carry only the key).
    ///
    /// # Errors
    ///
    /// As for [`read`](Message::read), with [`Outboxed::key_from_payload`] for JSON.
    pub fn read_key<M: Outboxed>(&self) -> Result<M::Key, Error> {
        match &self.payloads.0 {
            Inner::Json(_) => {
                let (version, payload) = self.payload_for(M::VERSIONS)?;
                M::key_from_payload(version, payload)
            }
            Inner::Avro(_) => Ok(self.read_with_key::<M>()?.1),
        }
    }

    /// [`read`](Message::read) and [`read_key`](Message::read_key) with one
    /// decode of the payload (what `#[message_controller]`'s grouped upserts use).
    ///
    /// # Errors
    ///
    /// As for both.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Event, Message, Outboxed, Payloads};
    ///
    /// #[derive(Debug, PartialEq, Outboxed)]
    /// #[outbox(topic = "accounts", route = "users")]
    /// struct User { id: i64, email: String }
    ///
    /// let user = User { id: 7, email: "ada@example.com".into() };
    /// let payloads = Payloads::new(1, user.to_payload(&Event::Updated, 1)?)?;
    /// let message = Message::new(Event::Updated, "accounts", "users", "accounts", "7", payloads)?;
    /// assert_eq!(message.read_with_key::<User>()?, (user, 7));
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn read_with_key<M: Outboxed>(&self) -> Result<(M, M::Key), Error> {
        match &self.payloads.0 {
            Inner::Json(_) => {
                let (version, payload) = self.payload_for(M::VERSIONS)?;
                let model = M::from_payload(&self.event, version, payload)?;
                Ok((model, M::key_from_payload(version, payload)?))
            }
            Inner::Avro(avro) => {
                // An Avro datum carries the whole model: read it, then its key
                // the way the model's own destroyed payload gives it.
                let model = self.read::<M>()?;
                let version = crate::avro::reader_version(M::VERSIONS, avro.version);
                let key =
                    M::key_from_payload(version, &model.to_payload(&Event::Destroyed, version)?)?;
                Ok((model, key))
            }
        }
    }
}

/// What the headers and the envelope both carry, already formatted.
struct EnvelopeFields<'a> {
    id: &'a str,
    event: &'a str,
    from: &'a str,
    to: &'a str,
    partition_key: &'a str,
    occurred_at: &'a str,
    versions: String,
    trace: Option<&'a TraceContext>,
}

impl EnvelopeFields<'_> {
    /// Writes the envelope; `payloads` writes the value of its `payloads` field.
    fn write_value(
        &self,
        out: &mut Vec<u8>,
        payloads: impl FnOnce(&mut Vec<u8>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let fields = [
            (headers::MESSAGE_ID, self.id),
            (headers::EVENT, self.event),
            (headers::FROM, self.from),
            (headers::TO, self.to),
            ("partition_key", self.partition_key),
            (headers::OCCURRED_AT, self.occurred_at),
        ];
        out.push(b'{');
        for (name, value) in fields {
            write_json_string(out, name);
            out.push(b':');
            write_json_string(out, value);
            out.push(b',');
        }
        out.extend_from_slice(b"\"payloads\":");
        payloads(out)?;
        out.push(b'}');
        Ok(())
    }

    fn into_record(
        self,
        content_type: &'static str,
        value: Vec<u8>,
        avro_schema: Option<&'static str>,
    ) -> EncodedMessage {
        let mut headers = Vec::with_capacity(9);
        headers.extend([
            (headers::MESSAGE_ID, self.id.to_owned()),
            (headers::EVENT, self.event.to_owned()),
            (headers::FROM, self.from.to_owned()),
            (headers::TO, self.to.to_owned()),
            (headers::VERSIONS, self.versions),
            (headers::CONTENT_TYPE, content_type.to_owned()),
            (headers::OCCURRED_AT, self.occurred_at.to_owned()),
        ]);
        if let Some(trace) = self.trace {
            headers.push((headers::TRACEPARENT, trace.traceparent().to_owned()));
            if let Some(state) = trace.tracestate() {
                headers.push((headers::TRACESTATE, state.to_owned()));
            }
        }
        EncodedMessage {
            key: self.partition_key.as_bytes().to_vec(),
            headers,
            value,
            avro_schema,
        }
    }
}

/// `{"1":<payload>,"2":<payload>}`, versions ascending.
fn write_payload_map<'p, P: 'p>(
    out: &mut Vec<u8>,
    payloads: impl Iterator<Item = (&'p u32, P)>,
    mut write: impl FnMut(&mut Vec<u8>, P) -> Result<(), Error>,
) -> Result<(), Error> {
    out.push(b'{');
    for (i, (version, payload)) in payloads.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'"');
        out.extend_from_slice(version.to_string().as_bytes());
        out.extend_from_slice(b"\":");
        write(out, payload)?;
    }
    out.push(b'}');
    Ok(())
}

fn write_json_string(out: &mut Vec<u8>, value: &str) {
    // Writing a string into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// RFC 3339 with as many fractional digits as needed, so decoding gives the same instant.
fn format_timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The envelope's JSON object, read field by field so an error names the field.
struct Envelope(Map<String, Value>);

impl Envelope {
    fn parse(value: &[u8]) -> Result<Self, DecodeError> {
        match serde_json::from_slice::<Value>(value) {
            Ok(Value::Object(map)) => Ok(Envelope(map)),
            Ok(other) => Err(DecodeError::InvalidJson {
                reason: format!("expected a JSON object, found {}", json_kind(&other)),
                value: Truncated::lossy(value),
            }),
            Err(e) => Err(DecodeError::InvalidJson {
                reason: e.to_string(),
                value: Truncated::lossy(value),
            }),
        }
    }

    fn string(&self, field: &'static str) -> Result<&str, DecodeError> {
        match self.0.get(field) {
            None => Err(DecodeError::MissingField { field }),
            Some(Value::String(s)) => Ok(s),
            Some(other) => Err(DecodeError::InvalidField {
                field: field.to_owned(),
                value: Truncated::new(&other.to_string()),
                reason: format!("expected a string, found {}", json_kind(other)),
            }),
        }
    }

    fn parse_field<T>(
        &self,
        field: &'static str,
        parse: impl FnOnce(&str) -> Result<T, Error>,
    ) -> Result<T, DecodeError> {
        let raw = self.string(field)?;
        parse(raw).map_err(|e| DecodeError::InvalidField {
            field: field.to_owned(),
            value: Truncated::new(raw),
            reason: reason_of(e),
        })
    }

    /// Moves the payloads out (they are the bulk of the value: no copy).
    fn take_payloads(&mut self) -> Result<Payloads, DecodeError> {
        let field = "payloads";
        let map = match self.0.remove(field) {
            None => return Err(DecodeError::MissingField { field }),
            Some(Value::Object(map)) => map,
            Some(other) => {
                return Err(DecodeError::InvalidField {
                    field: field.to_owned(),
                    value: Truncated::new(&other.to_string()),
                    reason: format!("expected an object, found {}", json_kind(&other)),
                });
            }
        };
        if map.is_empty() {
            return Err(DecodeError::InvalidField {
                field: field.to_owned(),
                value: Truncated::new("{}"),
                reason: "a message carries at least one payload".into(),
            });
        }
        let mut payloads = BTreeMap::new();
        for (version, payload) in map {
            let parsed = parse_version(&version).map_err(|reason| DecodeError::InvalidField {
                field: {
                    let shown = Truncated::new(&version);
                    let ellipsis = if shown.is_cut() { "…" } else { "" };
                    format!("payloads.{}{ellipsis}", shown.shown())
                },
                value: Truncated::new(&version),
                reason,
            })?;
            payloads.insert(parsed, payload);
        }
        Ok(Payloads(Inner::Json(payloads)))
    }
}

/// The headers this format defines, each seen at most once.
struct RecordHeaders<'h> {
    values: [Option<&'h str>; KNOWN_HEADERS.len()],
}

const KNOWN_HEADERS: [&str; 9] = [
    headers::MESSAGE_ID,
    headers::EVENT,
    headers::FROM,
    headers::TO,
    headers::VERSIONS,
    headers::CONTENT_TYPE,
    headers::OCCURRED_AT,
    headers::TRACEPARENT,
    headers::TRACESTATE,
];

impl<'h> RecordHeaders<'h> {
    fn collect(
        headers: impl IntoIterator<Item = (&'h str, Option<&'h [u8]>)>,
    ) -> Result<Self, DecodeError> {
        let mut values = [None; KNOWN_HEADERS.len()];
        for (name, value) in headers {
            let Some(slot) = KNOWN_HEADERS.iter().position(|known| *known == name) else {
                continue;
            };
            let name = KNOWN_HEADERS[slot];
            if values[slot].is_some() {
                return Err(DecodeError::DuplicateHeader { name });
            }
            let value = value.ok_or(DecodeError::HeaderWithoutValue { name })?;
            let text = std::str::from_utf8(value).map_err(|_| DecodeError::HeaderNotUtf8 {
                name,
                value: Truncated::lossy(value),
            })?;
            values[slot] = Some(text);
        }
        Ok(RecordHeaders { values })
    }

    fn optional(&self, name: &'static str) -> Option<&'h str> {
        let slot = KNOWN_HEADERS.iter().position(|known| *known == name);
        slot.and_then(|slot| self.values[slot])
    }

    fn required(&self, name: &'static str) -> Result<&'h str, DecodeError> {
        self.optional(name)
            .ok_or(DecodeError::MissingHeader { name })
    }
}

fn parse_header<T>(
    headers: &RecordHeaders<'_>,
    name: &'static str,
    parse: impl FnOnce(&str) -> Result<T, Error>,
) -> Result<T, DecodeError> {
    let raw = headers.required(name)?;
    parse(raw).map_err(|e| invalid_header(name, raw, e))
}

/// `from` and `to` name services and routes: consumers key their inbox and
/// their routing on them, and PostgreSQL text cannot hold NUL, so a value that
/// is empty or holds control characters is refused here, by name.
fn routing_name<'v>(name: &'static str, value: &'v str) -> Result<&'v str, DecodeError> {
    let reason = if value.is_empty() {
        "it is empty".to_owned()
    } else if let Some(c) = value.chars().find(|c| c.is_control()) {
        format!("it contains the control character {c:?}")
    } else {
        return Ok(value);
    };
    Err(DecodeError::InvalidHeader {
        name,
        value: Truncated::new(value),
        reason,
    })
}

fn invalid_header(name: &'static str, raw: &str, error: Error) -> DecodeError {
    DecodeError::InvalidHeader {
        name,
        value: Truncated::new(raw),
        reason: reason_of(error),
    }
}

/// The part of an error worth repeating inside a decode error: errors that quote
/// the value already say it, so keep only the reason.
fn reason_of(error: Error) -> String {
    match error {
        Error::InvalidEventName { reason, .. }
        | Error::InvalidMessageId { reason, .. }
        | Error::InvalidVersions { reason, .. } => reason,
        Error::InvalidTimestamp { reason, .. } => {
            format!("{reason} (expected RFC 3339, e.g. `2026-11-23T16:32:07.123Z`)")
        }
        Error::InvalidTraceparent { .. } => {
            "expected `00-<32 hex>-<16 hex>-<2 hex>` (W3C Trace Context)".into()
        }
        other => other.to_string(),
    }
}

fn agree<T: PartialEq + std::fmt::Display>(
    name: &'static str,
    header: &T,
    envelope: &T,
) -> Result<(), DecodeError> {
    if header == envelope {
        return Ok(());
    }
    Err(DecodeError::Mismatch {
        name,
        header: Truncated::new(&header.to_string()),
        envelope: Truncated::new(&envelope.to_string()),
    })
}

fn parse_timestamp(raw: &str) -> Result<DateTime<Utc>, Error> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| Error::InvalidTimestamp {
            value: Truncated::new(raw),
            reason: e.to_string(),
        })
}

/// A version as written in `versions` and as a payload key: a decimal number ≥ 1
/// without sign or leading zeros (so each version has one spelling).
fn parse_version(raw: &str) -> Result<u32, String> {
    let canonical = !raw.is_empty()
        && raw.bytes().all(|b| b.is_ascii_digit())
        && !(raw.len() > 1 && raw.starts_with('0'));
    match raw.parse::<u32>() {
        Ok(0) => Err("versions start at 1".into()),
        Ok(v) if canonical => Ok(v),
        Ok(_) | Err(_) => Err("expected a version number (1, 2, …)".into()),
    }
}

fn parse_versions(raw: &str) -> Result<Vec<u32>, Error> {
    let invalid = |reason: String| Error::InvalidVersions {
        value: Truncated::new(raw),
        reason,
    };
    let versions = raw
        .split(',')
        .map(|part| {
            parse_version(part)
                .map_err(|reason| invalid(format!("{}: {reason}", Truncated::new(part))))
        })
        .collect::<Result<Vec<u32>, Error>>()?;
    if !versions.windows(2).all(|w| w[0] < w[1]) {
        return Err(invalid("versions must be ascending and unique".into()));
    }
    Ok(versions)
}

fn join_versions(versions: &[u32]) -> String {
    versions
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The format a `content-type` names (parameters such as `charset` ignored).
fn media_type_format(value: &str) -> Option<Format> {
    let media_type = value.split(';').next().unwrap_or_default().trim();
    if media_type.eq_ignore_ascii_case(CONTENT_TYPE_JSON) {
        Some(Format::Json)
    } else if media_type.eq_ignore_ascii_case(CONTENT_TYPE_AVRO) {
        Some(Format::Avro)
    } else {
        None
    }
}

pub(crate) fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests;
