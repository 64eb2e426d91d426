//! The Kafka transport: the one place that turns messages into rdkafka records
//! and back, the relay's [`KafkaPublisher`], and what every outbox Kafka client
//! shares: [`Diagnostics`] (librdkafka's errors and log lines, recorded for the
//! start checks and logged to `tracing` with repeats summarised), the start
//! check ([`check_brokers`], [`ConnectError`] and its [`Cause`]), the
//! creation of a client ([`create_client`], which checks the file settings
//! first) and the masking of secret settings ([`mask_setting`]).

use rdkafka::message::{Header, OwnedHeaders};

use crate::error::DecodeError;
use crate::message::{EncodedMessage, Message};

mod cause;
mod check;
mod client;
mod diagnostics;
mod publisher;
mod read_headers;
mod secrets;
mod summary;

pub use cause::Cause;
pub use check::{CHECK_TIMEOUT, ConnectError, Detail, Topics, check_brokers};
pub use client::{
    ClientError, ClientKind, FILE_SETTINGS, SettingFileError, check_setting_files, create_client,
    create_client_with,
};
pub use diagnostics::Diagnostics;
pub use publisher::{KafkaAck, KafkaPublisher, KafkaPublisherBuilder, PRODUCER_DEFAULTS};
pub use read_headers::{NativeHeaders, RawHeader, header_at, read_headers};
pub use secrets::{MASK, MaskedSettings, is_secret_setting, mask_setting, without_secrets};
pub use summary::{Repeats, SUMMARY_WINDOW, Summarizer, steady_text};

/// The headers of an encoded message as rdkafka headers.
///
/// # Examples
///
/// ```
/// use outbox::{Event, Message, Payloads};
/// use rdkafka::message::Headers;
///
/// let message = Message::new(Event::Created, "accounts", "users", "accounts", "42",
///     Payloads::new(1, serde_json::json!({"id": 42}))?)?;
/// let headers = outbox::kafka::record_headers(&message.encode());
/// assert_eq!(headers.get(0).key, "message_id");
/// # Ok::<(), outbox::Error>(())
/// ```
pub fn record_headers(encoded: &EncodedMessage) -> OwnedHeaders {
    owned_headers(
        encoded
            .headers
            .iter()
            .map(|(name, value)| (*name, value.as_str())),
    )
}

pub(crate) fn owned_headers<'a>(
    pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> OwnedHeaders {
    let headers = OwnedHeaders::new_with_capacity(pairs.len());
    pairs.fold(headers, |headers, (name, value)| {
        headers.insert(Header {
            key: name,
            value: Some(value.as_bytes()),
        })
    })
}

/// Decodes a record read by an rdkafka consumer.
///
/// # Errors
///
/// A [`DecodeError`] naming the header or field at fault (see [`Message::decode`]);
/// [`DecodeError::HeaderNameNotUtf8`] for a header name that is not UTF-8.
///
/// # Examples
///
/// ```no_run
/// # async fn consume(consumer: rdkafka::consumer::StreamConsumer) -> Result<(), Box<dyn std::error::Error>> {
/// let record = consumer.recv().await?;
/// let message = outbox::kafka::decode_record(&record)?;
/// println!("{} {}", message.id, message.event);
/// # Ok(()) }
/// ```
pub fn decode_record<M>(record: &M) -> Result<Message, DecodeError>
where
    M: rdkafka::Message,
    M::Headers: NativeHeaders,
{
    let headers: Vec<RawHeader<'_>> = record
        .headers()
        .map_or_else(Vec::new, |headers| read_headers(headers).collect());
    decode_record_with(record, &headers)
}

/// Decodes a record whose headers were read already (by [`read_headers`]),
/// for a caller that looks at them too: the headers are read once.
///
/// # Errors
///
/// As [`decode_record`].
///
/// # Examples
///
/// ```
/// use outbox::{Event, Message, Payloads};
/// use rdkafka::message::{OwnedMessage, Timestamp};
///
/// let message = Message::new(Event::Created, "accounts", "users", "accounts", "42",
///     Payloads::new(1, serde_json::json!({"id": 42}))?)?;
/// let encoded = message.encode();
/// let record = OwnedMessage::new(Some(encoded.value.clone()), Some(encoded.key.clone()),
///     "accounts".into(), Timestamp::NotAvailable, 0, 0,
///     Some(outbox::kafka::record_headers(&encoded)));
/// let headers: Vec<_> = outbox::kafka::read_headers(rdkafka::Message::headers(&record).unwrap())
///     .collect();
/// assert_eq!(outbox::kafka::decode_record_with(&record, &headers)?, message);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn decode_record_with<M: rdkafka::Message>(
    record: &M,
    headers: &[RawHeader<'_>],
) -> Result<Message, DecodeError> {
    let headers = headers
        .iter()
        .map(|header| header.utf8().map(|h| (h.key, h.value)))
        .collect::<Result<Vec<_>, _>>()?;
    Message::decode(record.topic(), record.key(), headers, record.payload())
}
