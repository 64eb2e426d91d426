//! The `Outboxed` trait: how a model becomes message payloads and back.

use serde_json::Value;

use crate::error::Error;
use crate::event::Event;

/// How a model's messages are written on the wire.
///
/// - `Json`: the JSON envelope, with every payload version the producer knows
///   (a consumer picks the highest it knows too);
/// - `Avro`: the Confluent wire format (a zero byte, the 4-byte id of the
///   writer's schema in the registry, the Avro datum) of the producer's
///   highest version, the envelope's fields in the headers; a consumer
///   resolves it into its own version with the writer's schema.
///
/// # Examples
///
/// ```
/// use outbox::{Format, Outboxed};
///
/// #[derive(Outboxed)]
/// #[outbox(topic = "billing", route = "invoices", format = "avro")]
/// struct Invoice { id: i64, cents: i64 }
///
/// #[derive(Outboxed)]
/// #[outbox(topic = "accounts", route = "users")]
/// struct User { id: i64 }
///
/// assert_eq!(Invoice::FORMAT, Format::Avro);
/// assert_eq!(User::FORMAT, Format::Json);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Format {
    /// The JSON envelope (`application/json`).
    #[default]
    Json,
    /// Avro in the Confluent wire format (`application/avro`).
    Avro,
}

/// A model that travels as messages: its topic, route, payload versions,
/// partition key, and serializers in both directions.
///
/// Derive it with [`#[derive(Outboxed)]`](derive@crate::Outboxed); the derive's
/// documentation lists every attribute. Writing it by hand is possible, but the
/// derive keeps the producer's and the consumer's views of the payload in step.
///
/// # Examples
///
/// ```
/// use outbox::{Event, Outboxed};
///
/// #[derive(Debug, PartialEq, Outboxed)]
/// #[outbox(topic = "accounts", route = "users", versions = [1, 2])]
/// struct User {
///     id: i64,
///     #[outbox(rename(v1 = "mail", v2 = "email"))]
///     email: String,
/// }
///
/// let user = User { id: 42, email: "ada@example.com".into() };
/// assert_eq!(User::TOPIC, "accounts");
/// assert_eq!(User::VERSIONS, &[1, 2]);
/// assert_eq!(user.partition_key(), "42");
///
/// let v1 = user.to_payload(&Event::Created, 1)?;
/// assert_eq!(v1, serde_json::json!({"id": 42, "mail": "ada@example.com"}));
/// assert_eq!(User::from_payload(&Event::Created, 1, &v1)?, user);
///
/// let destroyed = user.to_payload(&Event::Destroyed, 2)?;
/// assert_eq!(destroyed, serde_json::json!({"id": 42}));
/// assert_eq!(User::key_from_payload(2, &destroyed)?, 42);
/// # Ok::<(), outbox::Error>(())
/// ```
pub trait Outboxed: Sized {
    /// The Kafka topic the model's messages go to.
    const TOPIC: &'static str;
    /// The route (`to` header): which controller on the consuming side handles them.
    const ROUTE: &'static str;
    /// The payload versions this side knows, ascending, never empty.
    const VERSIONS: &'static [u32];
    /// How the model's messages travel: the JSON envelope (the default) or
    /// Avro in the Confluent wire format (`#[outbox(format = "avro")]`).
    const FORMAT: Format = Format::Json;

    /// The field that counts the changes of a row (`#[outbox(version)]`), if
    /// the model has one: its name as the struct declares it (the Diesel
    /// column it is read from may be renamed with `#[diesel(column_name)]`).
    ///
    /// Not to be confused with [`VERSIONS`](Outboxed::VERSIONS), the versions
    /// of the payload's *shape*: this one is a per-key counter in the data,
    /// which a `#[message_controller]` compares with its row's to apply each
    /// key's changes in order, once (see "Per-key versions" in its docs).
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Outboxed;
    ///
    /// diesel::table! {
    ///     users (id) {
    ///         id -> BigInt,
    ///         revision -> Integer,
    ///     }
    /// }
    ///
    /// #[derive(Outboxed)]
    /// #[diesel(table_name = users)]
    /// #[outbox(topic = "accounts")]
    /// struct User {
    ///     id: i64,
    ///     #[outbox(version)]
    ///     revision: i32,
    /// }
    ///
    /// #[derive(Outboxed)]
    /// #[outbox(topic = "accounts", route = "admins")]
    /// struct Admin { id: i64 }
    ///
    /// assert_eq!(User::VERSION_FIELD, Some("revision"));
    /// assert_eq!(Admin::VERSION_FIELD, None);
    /// ```
    const VERSION_FIELD: Option<&'static str> = None;

    /// The primary key, as read from a destroyed message (a tuple for composite keys).
    type Key;

    /// The Kafka key: messages with the same key keep their order.
    fn partition_key(&self) -> String;

    /// The value of the [`VERSION_FIELD`](Outboxed::VERSION_FIELD), widened
    /// to `i64`; `None` for a model without one.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Outboxed;
    ///
    /// diesel::table! {
    ///     users (id) {
    ///         id -> BigInt,
    ///         revision -> SmallInt,
    ///     }
    /// }
    ///
    /// #[derive(Outboxed)]
    /// #[diesel(table_name = users)]
    /// #[outbox(topic = "accounts")]
    /// struct User {
    ///     id: i64,
    ///     #[outbox(version)]
    ///     revision: i16,
    /// }
    ///
    /// assert_eq!(User { id: 1, revision: 7 }.version(), Some(7));
    /// ```
    fn version(&self) -> Option<i64> {
        None
    }

    /// The columns of the fields payload `version` does not carry (a field
    /// `since` a later version, `until` an earlier one, or `skip`), by their
    /// Diesel name: the field's `#[diesel(column_name = ..)]`, else its name.
    /// A model read from that version has their defaults there, not values
    /// from the message.
    ///
    /// A `#[message_controller]` upsert of a message read as `version`
    /// inserts a new row with every column but updates an existing one
    /// without these, so the row keeps what the message did not say (see
    /// "The built-in events" in its docs). Empty for a version that carries
    /// every field, and by default: a hand-written impl keeps the whole
    /// upsert.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Outboxed;
    ///
    /// #[derive(Outboxed)]
    /// #[outbox(topic = "accounts", route = "users", versions = [1, 2, 3])]
    /// struct User {
    ///     id: i64,
    ///     #[outbox(since = 2, default)]
    ///     #[diesel(column_name = nick)]
    ///     nickname: Option<String>,
    ///     #[outbox(until = 2, default)]
    ///     legacy_flag: bool,
    ///     #[outbox(skip)]
    ///     local_note: String,
    /// }
    ///
    /// assert_eq!(User::columns_not_carried(1), ["nick", "local_note"]);
    /// assert_eq!(User::columns_not_carried(2), ["local_note"]);
    /// assert_eq!(User::columns_not_carried(3), ["legacy_flag", "local_note"]);
    /// ```
    fn columns_not_carried(version: u32) -> &'static [&'static str] {
        let _ = version;
        &[]
    }

    /// The payload of `event` in `version`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownVersion`] when `version` is not in [`VERSIONS`](Outboxed::VERSIONS);
    /// [`Error::Payload`] when a field's serializer fails.
    fn to_payload(&self, event: &Event, version: u32) -> Result<Value, Error>;

    /// Appends the same JSON as [`to_payload`](Outboxed::to_payload) to `out`,
    /// without building a [`Value`] first: the enqueue path uses this one.
    /// Fields are written in declaration order (a `Value` sorts its keys, so the
    /// two are equal as JSON, not byte for byte).
    ///
    /// # Errors
    ///
    /// As for [`to_payload`](Outboxed::to_payload). On error, `out` may hold part
    /// of the payload: truncate it to its previous length.
    fn write_payload(&self, event: &Event, version: u32, out: &mut Vec<u8>) -> Result<(), Error>;

    /// Reads the model back from the payload of a created, updated or custom event
    /// (or a destroyed one, when the model sends full payloads on destroy).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownVersion`] for a version this side does not know;
    /// [`Error::Payload`] naming the version and what is wrong (a missing field,
    /// a value of the wrong type); [`Error::UnsupportedEvent`] for a destroyed
    /// event whose payload carries only the keys.
    fn from_payload(event: &Event, version: u32, payload: &Value) -> Result<Self, Error>;

    /// Reads the primary key from the payload of a destroyed event.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownVersion`] for a version this side does not know;
    /// [`Error::Payload`] when a key field is missing or of the wrong type.
    fn key_from_payload(version: u32, payload: &Value) -> Result<Self::Key, Error>;

    /// The Avro record schema of payload `version`, as JSON text (see
    /// [`avro`](crate::avro) for how versions, renames and defaults map).
    /// Built on first use and kept for the life of the process.
    ///
    /// # Errors
    ///
    /// [`Error::NoSchema`] for a model derived without `#[outbox(avro)]` (or
    /// implemented by hand); [`Error::UnknownVersion`]; [`Error::Schema`]
    /// when a field's default has no Avro form.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Outboxed;
    ///
    /// #[derive(Outboxed)]
    /// #[outbox(topic = "billing.invoices-v2", route = "invoices", avro)]
    /// struct Invoice {
    ///     id: i64,
    ///     #[outbox(avro_type = "timestamp-millis")]
    ///     issued_at: chrono::DateTime<chrono::Utc>,
    /// }
    ///
    /// let schema: serde_json::Value = serde_json::from_str(Invoice::avro_schema(1)?)?;
    /// assert_eq!(schema["namespace"], "billing.invoices_v2");
    /// assert_eq!(schema["fields"][1]["type"]["logicalType"], "timestamp-millis");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn avro_schema(version: u32) -> Result<&'static str, Error> {
        let _ = version;
        Err(Error::NoSchema {
            topic: Self::TOPIC,
            route: Self::ROUTE,
        })
    }

    /// Appends the Avro binary encoding of the model in payload `version`
    /// (a datum of [`avro_schema`](Outboxed::avro_schema)`(version)`, without
    /// any framing). Destroyed events carry the whole model too.
    ///
    /// # Errors
    ///
    /// [`Error::NoSchema`], [`Error::UnknownVersion`], [`Error::Schema`] as for
    /// `avro_schema`; [`Error::Avro`] when a field's value does not fit its
    /// `avro_type`. On error, `out` may hold part of the datum.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Outboxed;
    ///
    /// #[derive(Debug, PartialEq, Outboxed)]
    /// #[outbox(topic = "accounts", route = "users", versions = [1, 2], avro)]
    /// struct User {
    ///     id: i64,
    ///     #[outbox(rename(v1 = "mail"))]
    ///     email: String,
    ///     #[outbox(since = 2, default)]
    ///     tags: Vec<String>,
    /// }
    ///
    /// let user = User { id: 1, email: "a@b.c".into(), tags: vec!["x".into()] };
    /// let mut datum = Vec::new();
    /// user.write_avro(2, &mut datum)?;
    /// assert_eq!(datum, b"\x02\x0aa@b.c\x02\x02x\x00");
    /// assert_eq!(User::read_avro(2, &datum)?, user);
    ///
    /// // Version 1 carries no tags: read back, they take their default.
    /// datum.clear();
    /// user.write_avro(1, &mut datum)?;
    /// assert_eq!(User::read_avro(1, &datum)?.tags, Vec::<String>::new());
    /// # Ok::<(), outbox::Error>(())
    /// ```
    fn write_avro(&self, version: u32, out: &mut Vec<u8>) -> Result<(), Error> {
        let _ = (version, out);
        Err(Error::NoSchema {
            topic: Self::TOPIC,
            route: Self::ROUTE,
        })
    }

    /// Reads the model from a datum of [`avro_schema`](Outboxed::avro_schema)`(version)`
    /// (written by [`write_avro`](Outboxed::write_avro) of the same version);
    /// fields the version does not carry take their default.
    ///
    /// # Errors
    ///
    /// As for `write_avro`; [`Error::Avro`] naming the field and the byte
    /// when the datum is not one of this version.
    fn read_avro(version: u32, datum: &[u8]) -> Result<Self, Error> {
        let _ = (version, datum);
        Err(Error::NoSchema {
            topic: Self::TOPIC,
            route: Self::ROUTE,
        })
    }

    /// Reads the model's `version` from a datum written with another schema,
    /// `writer` (a producer's version, older or newer, from a registry): Avro's
    /// schema resolution, as [`WriterSchema`](crate::avro::WriterSchema) says.
    ///
    /// # Errors
    ///
    /// As for [`read_avro`](Outboxed::read_avro); [`Error::Avro`] when the
    /// writer lacks a field this version has no default for.
    fn read_avro_from(
        writer: &crate::avro::WriterSchema,
        version: u32,
        datum: &[u8],
    ) -> Result<Self, Error> {
        let _ = (writer, version, datum);
        Err(Error::NoSchema {
            topic: Self::TOPIC,
            route: Self::ROUTE,
        })
    }

    /// The JSON Schema (draft 2020-12) of the JSON payload of `version`.
    ///
    /// # Errors
    ///
    /// As for [`avro_schema`](Outboxed::avro_schema).
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Outboxed;
    ///
    /// #[derive(Outboxed)]
    /// #[outbox(topic = "accounts", route = "users", avro)]
    /// struct User {
    ///     id: i64,
    ///     nick: Option<String>,
    /// }
    ///
    /// let schema = User::json_schema(1)?;
    /// assert_eq!(schema["properties"]["id"]["type"], "integer");
    /// assert_eq!(schema["required"], serde_json::json!(["id"]));
    /// # Ok::<(), outbox::Error>(())
    /// ```
    fn json_schema(version: u32) -> Result<&'static Value, Error> {
        let _ = version;
        Err(Error::NoSchema {
            topic: Self::TOPIC,
            route: Self::ROUTE,
        })
    }
}
