//! [`Payloads`]: what a message says of its model, as JSON by version or as
//! one Avro datum.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use crate::avro::WriterSchema;
use crate::avro::codec::AvroReader;
use crate::error::Error;
use crate::outboxed::Format;

/// The payloads of a message: JSON by version (never empty, versions ≥ 1), or
/// one Avro datum of one version, as read from a record in the Confluent wire
/// format.
///
/// An Avro datum is read with the schema it was written with (the writer's,
/// from the registry, by the id in the record): [`Message::read`](crate::Message::read)
/// resolves it into a model's version; [`get`](Payloads::get) and
/// [`iter`](Payloads::iter) show it as JSON under the writer's field names once
/// that schema is attached ([`set_writer_schema`](Payloads::set_writer_schema);
/// the consumer does it).
///
/// # Examples
///
/// ```
/// use outbox::Payloads;
/// use serde_json::json;
///
/// let mut payloads = Payloads::new(2, json!({"email": "a@example.com"}))?;
/// payloads.insert(1, json!({"mail": "a@example.com"}))?;
/// assert_eq!(payloads.versions().collect::<Vec<_>>(), [1, 2]);
/// assert!(payloads.insert(0, json!({})).is_err());
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Payloads(pub(super) Inner);

#[derive(Debug, Clone)]
pub(super) enum Inner {
    Json(BTreeMap<u32, Value>),
    Avro(AvroPayload),
}

impl PartialEq for Inner {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Inner::Json(a), Inner::Json(b)) => a == b,
            (Inner::Avro(a), Inner::Avro(b)) => {
                (a.version, a.schema_id, &a.datum) == (b.version, b.schema_id, &b.datum)
            }
            _ => false,
        }
    }
}

/// One datum, with the schema id of its frame.
#[derive(Clone)]
pub(super) struct AvroPayload {
    pub(super) version: u32,
    pub(super) schema_id: u32,
    pub(super) datum: Vec<u8>,
    pub(super) writer: Option<Arc<WriterSchema>>,
    /// The datum as JSON, made on first use (after the writer is attached),
    /// or why it does not read with the writer's schema.
    json: OnceLock<Result<Value, String>>,
}

impl Payloads {
    /// Payloads holding one version.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidVersion`] when `version` is 0.
    pub fn new(version: u32, payload: Value) -> Result<Self, Error> {
        let mut payloads = Payloads(Inner::Json(BTreeMap::new()));
        payloads.insert(version, payload)?;
        Ok(payloads)
    }

    /// One Avro datum of payload `version`, written with the registry's schema
    /// `schema_id`, as a record in the Confluent wire format carries it.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidVersion`] when `version` is 0; [`Error::AvroSchemaId`]
    /// when `schema_id` is 0 (no registry gives it: a frame with it could
    /// never be read).
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Format, Outboxed, Payloads};
    ///
    /// #[derive(Debug, PartialEq, Outboxed)]
    /// #[outbox(topic = "accounts", route = "users", format = "avro")]
    /// struct User { id: i64 }
    ///
    /// let mut datum = Vec::new();
    /// User { id: 7 }.write_avro(1, &mut datum)?;
    /// let payloads = Payloads::avro(1, 42, datum)?;
    /// assert_eq!((payloads.format(), payloads.avro_schema_id()), (Format::Avro, Some(42)));
    /// assert_eq!(payloads.versions().collect::<Vec<_>>(), [1]);
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn avro(version: u32, schema_id: u32, datum: Vec<u8>) -> Result<Self, Error> {
        if version == 0 {
            return Err(Error::InvalidVersion { version });
        }
        if schema_id == 0 {
            return Err(Error::AvroSchemaId);
        }
        Ok(Payloads(Inner::Avro(AvroPayload {
            version,
            schema_id,
            datum,
            writer: None,
            json: OnceLock::new(),
        })))
    }

    /// Adds or replaces the payload of `version` (JSON payloads only).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidVersion`] when `version` is 0; [`Error::AvroPayloads`]
    /// on Avro payloads, which hold one datum.
    pub fn insert(&mut self, version: u32, payload: Value) -> Result<Option<Value>, Error> {
        if version == 0 {
            return Err(Error::InvalidVersion { version });
        }
        match &mut self.0 {
            Inner::Json(map) => Ok(map.insert(version, payload)),
            Inner::Avro(avro) => Err(Error::AvroPayloads {
                version: avro.version,
            }),
        }
    }

    /// How the payloads travel.
    pub fn format(&self) -> Format {
        match self.0 {
            Inner::Json(_) => Format::Json,
            Inner::Avro(_) => Format::Avro,
        }
    }

    /// The registry's id of the schema an Avro datum was written with; `None`
    /// for JSON payloads.
    pub fn avro_schema_id(&self) -> Option<u32> {
        match &self.0 {
            Inner::Json(_) => None,
            Inner::Avro(avro) => Some(avro.schema_id),
        }
    }

    /// The Avro datum (without its frame); `None` for JSON payloads.
    pub fn avro_datum(&self) -> Option<&[u8]> {
        match &self.0 {
            Inner::Json(_) => None,
            Inner::Avro(avro) => Some(&avro.datum),
        }
    }

    /// Attaches the schema an Avro datum was written with (the registry's
    /// schema of [`avro_schema_id`](Payloads::avro_schema_id)); nothing for
    /// JSON payloads.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::sync::Arc;
    /// use outbox::{Outboxed, Payloads, avro::WriterSchema};
    ///
    /// #[derive(Outboxed)]
    /// #[outbox(topic = "accounts", route = "users", format = "avro")]
    /// struct User { id: i64 }
    ///
    /// let mut datum = Vec::new();
    /// User { id: 7 }.write_avro(1, &mut datum)?;
    /// let mut payloads = Payloads::avro(1, 42, datum)?;
    /// assert_eq!(payloads.get(1), None); // not readable yet
    /// payloads.set_writer_schema(Arc::new(WriterSchema::parse(User::avro_schema(1)?)?));
    /// assert_eq!(payloads.get(1), Some(&serde_json::json!({"id": 7})));
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn set_writer_schema(&mut self, writer: Arc<WriterSchema>) {
        if let Inner::Avro(avro) = &mut self.0 {
            avro.writer = Some(writer);
            avro.json = OnceLock::new();
        }
    }

    /// The writer's schema attached to an Avro datum, if any.
    pub fn writer_schema(&self) -> Option<&Arc<WriterSchema>> {
        match &self.0 {
            Inner::Json(_) => None,
            Inner::Avro(avro) => avro.writer.as_ref(),
        }
    }

    /// The payload of `version`, if carried. An Avro datum shows as JSON
    /// under its writer's field names once its writer schema is attached
    /// (`None` before, or when the datum does not match it).
    pub fn get(&self, version: u32) -> Option<&Value> {
        match &self.0 {
            Inner::Json(map) => map.get(&version),
            Inner::Avro(avro) if avro.version == version => avro.as_json().ok(),
            Inner::Avro(_) => None,
        }
    }

    /// The versions carried, ascending (one for an Avro datum).
    pub fn versions(&self) -> impl DoubleEndedIterator<Item = u32> + '_ {
        let (json, avro) = self.split();
        json.into_iter()
            .flat_map(|map| map.keys().copied())
            .chain(avro.map(|avro| avro.version))
    }

    /// The payloads with their versions, ascending (an Avro datum as
    /// [`get`](Payloads::get) shows it, when it can).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &Value)> + '_ {
        let (json, avro) = self.split();
        json.into_iter()
            .flat_map(|map| map.iter().map(|(v, p)| (*v, p)))
            .chain(avro.and_then(|avro| avro.as_json().ok().map(|json| (avro.version, json))))
    }

    fn split(&self) -> (Option<&BTreeMap<u32, Value>>, Option<&AvroPayload>) {
        match &self.0 {
            Inner::Json(map) => (Some(map), None),
            Inner::Avro(avro) => (None, Some(avro)),
        }
    }
}

impl std::fmt::Debug for AvroPayload {
    // The writer schema's parsed nodes would drown a logged message.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AvroPayload")
            .field("version", &self.version)
            .field("schema_id", &self.schema_id)
            .field("datum_bytes", &self.datum.len())
            .field("writer_schema", &self.writer.is_some())
            .finish()
    }
}

impl AvroPayload {
    /// The datum as JSON under the writer's field names.
    ///
    /// # Errors
    ///
    /// [`Error::NoWriterSchema`] before the writer is attached;
    /// [`Error::Avro`] when the datum does not read with it.
    pub(super) fn as_json(&self) -> Result<&Value, Error> {
        let writer = self
            .writer
            .as_ref()
            .ok_or(Error::NoWriterSchema { id: self.schema_id })?;
        let json = self.json.get_or_init(|| {
            let mut reader = AvroReader::new(&self.datum);
            let json = writer
                .read_root_json(false, &mut reader)
                .map_err(|e| e.to_string())?;
            reader.finish().map_err(|e| e.to_string())?;
            Ok(json)
        });
        json.as_ref().map_err(|reason| Error::Avro {
            model: "the message",
            version: self.version,
            reason: format!(
                "the datum does not read with its writer's schema (id {}): {reason}",
                self.schema_id
            ),
        })
    }
}
