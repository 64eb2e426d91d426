//! The Kafka transport: the one place that turns messages into rdkafka records
//! and back, and the relay's [`KafkaPublisher`].

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::DecodeError;
use crate::message::{EncodedMessage, Message};
use crate::publish::{Delivery, OutgoingRecord, PublishError, Publisher};

/// The producer settings the relay relies on, applied before the user's own:
/// idempotent (no duplicates or reordering from the producer's own retries),
/// `acks=all`, and Java's partitioner, so producers in any language agree on the
/// partition of a key.
///
/// `linger.ms=1` because the relay hands over whole batches at once: waiting for
/// more records only delays the acknowledgement the relay waits for.
/// `message.timeout.ms=30000`: a broker that is down longer than that fails the
/// batch, which the relay records and retries with backoff.
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
    ("linger.ms", "1"),
    ("message.timeout.ms", "30000"),
    ("socket.connection.setup.timeout.ms", "10000"),
];

/// Publishes records with an idempotent rdkafka producer.
///
/// # Examples
///
/// ```no_run
/// use outbox::kafka::KafkaPublisher;
///
/// let publisher = KafkaPublisher::builder("127.0.0.1:59092")
///     .set("compression.type", "lz4") // any librdkafka producer setting
///     .build()?;
/// publisher.check_connection(std::time::Duration::from_secs(5))?;
/// # Ok::<(), outbox::PublishError>(())
/// ```
pub struct KafkaPublisher {
    producer: FutureProducer,
    brokers: String,
}

/// Settings for a [`KafkaPublisher`]: [`PRODUCER_DEFAULTS`], then yours.
#[derive(Debug, Clone)]
#[must_use]
pub struct KafkaPublisherBuilder {
    config: ClientConfig,
}

impl KafkaPublisher {
    /// A publisher on `brokers` (`host:port[,host:port…]`) with [`PRODUCER_DEFAULTS`].
    ///
    /// # Errors
    ///
    /// [`PublishErrorKind::Config`](crate::PublishErrorKind::Config) when librdkafka refuses the settings.
    pub fn new(brokers: &str) -> Result<Self, PublishError> {
        Self::builder(brokers).build()
    }

    /// Settings starting from [`PRODUCER_DEFAULTS`] on `brokers`.
    pub fn builder(brokers: &str) -> KafkaPublisherBuilder {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", brokers);
        for (key, value) in PRODUCER_DEFAULTS {
            config.set(*key, *value);
        }
        KafkaPublisherBuilder { config }
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The underlying producer.
    pub fn producer(&self) -> &FutureProducer {
        &self.producer
    }

    /// Asks the brokers for their metadata, to fail early with a clear error when
    /// they cannot be reached. Blocking: call it before starting, or from
    /// `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// [`PublishErrorKind::Config`](crate::PublishErrorKind::Config) naming the
    /// brokers when none answers within `timeout`.
    pub fn check_connection(&self, timeout: Duration) -> Result<(), PublishError> {
        self.producer
            .client()
            .fetch_metadata(None, timeout)
            .map(drop)
            .map_err(|e| {
                PublishError::config(format!(
                    "Kafka at {} is not reachable: {}",
                    self.brokers,
                    describe(&e)
                ))
            })
    }
}

impl KafkaPublisherBuilder {
    /// Sets a librdkafka producer setting, overriding the default if there is one.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.config.set(key, value);
        self
    }

    /// The settings so far.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Creates the producer (it connects in the background).
    ///
    /// # Errors
    ///
    /// [`PublishErrorKind::Config`](crate::PublishErrorKind::Config) naming the
    /// setting librdkafka refuses.
    pub fn build(self) -> Result<KafkaPublisher, PublishError> {
        let brokers = self
            .config
            .get("bootstrap.servers")
            .unwrap_or_default()
            .to_owned();
        let producer = self
            .config
            .create()
            .map_err(|e| PublishError::config(format!("invalid Kafka producer settings: {e}")))?;
        Ok(KafkaPublisher { producer, brokers })
    }
}

/// The acknowledgement of one record sent by a [`KafkaPublisher`].
pub struct KafkaAck(DeliveryFuture);

impl Future for KafkaAck {
    type Output = Result<Delivery, PublishError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|result| match result {
            Ok(Ok(delivery)) => Ok(Delivery {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((error, _message))) => Err(classify(&error)),
            Err(_canceled) => Err(PublishError::retriable(
                "the producer was closed before the broker answered",
            )),
        })
    }
}

impl Publisher for KafkaPublisher {
    type Ack = KafkaAck;

    fn send(&self, record: &OutgoingRecord<'_>) -> Result<KafkaAck, PublishError> {
        let headers = owned_headers(record.headers.iter().copied());
        let mut future_record = FutureRecord::to(record.topic)
            .key(record.key)
            .payload(record.value)
            .headers(headers);
        // The local queue is full: wait for room (deliveries free it); this is the
        // producer's backpressure, not an error.
        let mut waited = Duration::ZERO;
        loop {
            match self.producer.send_result(future_record) {
                Ok(delivery) => return Ok(KafkaAck(delivery)),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                    if waited < Duration::from_secs(30) =>
                {
                    future_record = back;
                    self.producer.poll(Duration::from_millis(5));
                    waited += Duration::from_millis(5);
                }
                Err((error, _)) => return Err(classify(&error)),
            }
        }
    }

    fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.producer
            .flush(timeout)
            .map_err(|e| PublishError::retriable(format!("flush: {}", describe(&e))))
    }
}

/// Sorts a producer error into retriable and permanent: a record that is too
/// large, a topic that does not exist or may not be written, can never go through
/// unchanged; everything else (timeouts, leaders moving, a broker down) may.
fn classify(error: &KafkaError) -> PublishError {
    use RDKafkaErrorCode as Code;
    let permanent = matches!(
        error.rdkafka_error_code(),
        Some(
            Code::MessageSizeTooLarge
                | Code::MessageBatchTooLarge
                | Code::InvalidMessageSize
                | Code::InvalidRecord
                | Code::InvalidMessage
                | Code::UnknownTopic
                | Code::UnknownTopicOrPartition
                | Code::InvalidTopic
                | Code::TopicAuthorizationFailed
                | Code::ClusterAuthorizationFailed
                | Code::PolicyViolation
        )
    );
    let message = describe(error);
    if permanent {
        PublishError::permanent(message)
    } else {
        PublishError::retriable(message)
    }
}

fn describe(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{code} ({error})"),
        None => error.to_string(),
    }
}

/// The headers of an encoded message as rdkafka headers.
///
/// # Examples
///
/// ```
/// use outbox::{Event, Message, Payloads};
/// use rdkafka::message::Headers;
///
/// let message = Message::new(Event::Created, "accounts", "users", "accounts", "42",
///     Payloads::new(1, serde_json::json!({"id": 42}))?);
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

fn owned_headers<'a>(pairs: impl ExactSizeIterator<Item = (&'a str, &'a str)>) -> OwnedHeaders {
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
/// A [`DecodeError`] naming the header or field at fault (see [`Message::decode`]).
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
pub fn decode_record<M: rdkafka::Message>(record: &M) -> Result<Message, DecodeError> {
    let headers = record.headers();
    Message::decode(
        record.topic(),
        record.key(),
        headers
            .iter()
            .flat_map(|h| h.iter())
            .map(|h| (h.key, h.value)),
        record.payload(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn too_large_and_unknown_topic_are_permanent_timeouts_are_not() {
        let code = |c| KafkaError::MessageProduction(c);
        assert!(classify(&code(RDKafkaErrorCode::MessageSizeTooLarge)).is_permanent());
        assert!(classify(&code(RDKafkaErrorCode::UnknownTopic)).is_permanent());
        assert!(!classify(&code(RDKafkaErrorCode::MessageTimedOut)).is_permanent());
        assert!(!classify(&code(RDKafkaErrorCode::NotEnoughReplicas)).is_permanent());
        let err = classify(&code(RDKafkaErrorCode::MessageSizeTooLarge));
        assert!(err.to_string().contains("Message size too large"), "{err}");
    }

    #[test]
    fn user_settings_override_the_defaults() {
        let builder = KafkaPublisher::builder("b:9092").set("linger.ms", "20");
        assert_eq!(builder.config().get("linger.ms"), Some("20"));
        assert_eq!(builder.config().get("enable.idempotence"), Some("true"));
        let bad = KafkaPublisher::builder("b:9092")
            .set("no.such.setting", "1")
            .build();
        let err = bad.err().expect("librdkafka refuses unknown settings");
        assert!(err.to_string().contains("no.such.setting"), "{err}");
    }
}
