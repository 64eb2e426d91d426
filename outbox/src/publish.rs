//! Publishing records to a broker: the transport seam between the relay and Kafka.

use std::future::Future;
use std::time::Duration;

/// A record ready for the broker, borrowed from wherever it is stored (an outbox
/// row, an [`EncodedMessage`](crate::EncodedMessage)).
///
/// # Examples
///
/// ```
/// use outbox::{Event, Message, OutgoingRecord, Payloads};
///
/// let message = Message::new(Event::Created, "accounts", "users", "accounts", "42",
///     Payloads::new(1, serde_json::json!({"id": 42}))?)?;
/// let encoded = message.encode();
/// let headers: Vec<(&str, &str)> = encoded.headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
/// let record = OutgoingRecord { topic: &message.topic, key: &encoded.key, headers: &headers, value: &encoded.value };
/// assert_eq!(record.key, b"42");
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct OutgoingRecord<'a> {
    /// The topic.
    pub topic: &'a str,
    /// The record key (the partition key).
    pub key: &'a [u8],
    /// Header names and values, in order.
    pub headers: &'a [(&'a str, &'a str)],
    /// The record value.
    pub value: &'a [u8],
}

/// Where the broker stored a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The partition.
    pub partition: i32,
    /// The offset in that partition.
    pub offset: i64,
}

/// Whether retrying a failed publish can succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// The broker is down, slow or busy: the same record may go through later.
    Retriable,
    /// The record can never be published as it is (too large, unknown topic,
    /// not authorized): retrying it unchanged fails again.
    Permanent,
    /// The publisher's settings are invalid, or the broker cannot be reached at start.
    Config,
}

/// A publish that failed, with whether it is worth retrying.
///
/// # Examples
///
/// ```
/// use outbox::{PublishError, PublishErrorKind};
///
/// let err = PublishError::permanent("Broker: Message size too large");
/// assert_eq!(err.kind(), PublishErrorKind::Permanent);
/// assert_eq!(err.to_string(), "Broker: Message size too large");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct PublishError {
    kind: PublishErrorKind,
    message: String,
}

impl PublishError {
    /// An error worth retrying.
    pub fn retriable(message: impl Into<String>) -> Self {
        Self::new(PublishErrorKind::Retriable, message)
    }

    /// An error retrying cannot fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::new(PublishErrorKind::Permanent, message)
    }

    /// An invalid setting or an unreachable broker at start.
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(PublishErrorKind::Config, message)
    }

    /// An error of the given kind.
    pub fn new(kind: PublishErrorKind, message: impl Into<String>) -> Self {
        PublishError {
            kind,
            message: message.into(),
        }
    }

    /// Whether retrying can help.
    pub fn kind(&self) -> PublishErrorKind {
        self.kind
    }

    /// `true` for [`PublishErrorKind::Permanent`].
    pub fn is_permanent(&self) -> bool {
        self.kind == PublishErrorKind::Permanent
    }
}

/// A transport the relay publishes through. [`KafkaPublisher`](crate::kafka::KafkaPublisher)
/// is the one this crate ships.
///
/// `send` hands one record over without waiting and returns a future of its
/// acknowledgement, so a caller can have a whole batch in flight at once. Records
/// sent with the same topic and key must reach the broker in the order they were
/// sent (Kafka's idempotent producer guarantees it per partition).
///
/// # Examples
///
/// A publisher that accepts everything into memory (tests of code built on this trait):
///
/// ```
/// use std::sync::Mutex;
/// use outbox::{Delivery, OutgoingRecord, PublishError, Publisher};
///
/// #[derive(Default)]
/// struct Memory(Mutex<Vec<Vec<u8>>>);
///
/// impl Publisher for Memory {
///     type Ack = std::future::Ready<Result<Delivery, PublishError>>;
///     fn send(&self, record: &OutgoingRecord<'_>) -> Result<Self::Ack, PublishError> {
///         let mut sent = self.0.lock().unwrap();
///         sent.push(record.value.to_vec());
///         Ok(std::future::ready(Ok(Delivery { partition: 0, offset: sent.len() as i64 - 1 })))
///     }
///     fn flush(&self, _timeout: std::time::Duration) -> Result<(), PublishError> { Ok(()) }
/// }
/// ```
pub trait Publisher: Send + Sync + 'static {
    /// The acknowledgement of one record.
    type Ack: Future<Output = Result<Delivery, PublishError>> + Send + 'static;

    /// Hands `record` to the transport and returns the future of its acknowledgement.
    ///
    /// # Errors
    ///
    /// When the record is refused at once (too large for the transport's limit,
    /// an invalid topic name); a refused record was not sent.
    fn send(&self, record: &OutgoingRecord<'_>) -> Result<Self::Ack, PublishError>;

    /// Waits up to `timeout` for every record sent so far to be acknowledged or failed.
    ///
    /// # Errors
    ///
    /// When records are still outstanding after `timeout`.
    fn flush(&self, timeout: Duration) -> Result<(), PublishError>;

    /// Checks, within `timeout`, that the transport can be used: for Kafka,
    /// that the brokers answer, past TLS and the login
    /// ([`KafkaPublisher::check_connection`](crate::kafka::KafkaPublisher::check_connection)).
    /// `outbox_diesel::Relay::check` calls it before
    /// starting. Blocking: call it from `spawn_blocking` in async code.
    ///
    /// The default does nothing: a transport without a way to check finds
    /// out with its first `send`.
    ///
    /// # Errors
    ///
    /// [`PublishErrorKind::Config`] saying why the transport cannot be used.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use outbox::Publisher;
    /// use outbox::kafka::KafkaPublisher;
    ///
    /// let publisher = KafkaPublisher::new("127.0.0.1:59092")?;
    /// publisher.check(Duration::from_secs(10))?;
    /// # Ok::<(), outbox::PublishError>(())
    /// ```
    fn check(&self, timeout: Duration) -> Result<(), PublishError> {
        let _ = timeout;
        Ok(())
    }
}
