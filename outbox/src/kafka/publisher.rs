//! The relay's [`KafkaPublisher`]: an idempotent producer, its settings and
//! its start check.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::check::{ConnectError, Topics, await_metadata, known_topics};
use super::client::create_client;
use super::diagnostics::Diagnostics;
use super::owned_headers;
use super::secrets::MaskedSettings;
use crate::publish::{Delivery, OutgoingRecord, PublishError, Publisher};

/// The producer settings the relay relies on, applied before the user's own:
/// idempotent (no duplicates or reordering from the producer's own retries),
/// `acks=all`, and Java's partitioner, so producers in any language agree on the
/// partition of a key.
///
/// `linger.ms=1` because the relay hands over whole batches at once: waiting for
/// more records only delays the acknowledgement the relay waits for.
/// `message.timeout.ms=0` (records never time out in the producer, as Kafka
/// Connect's `delivery.timeout.ms=MAX`): with a finite timeout, a broker that
/// comes back just as the oldest queued records expire takes the younger
/// records of the same partition and fails the older ones, so a key's later
/// message lands before its earlier one, whatever the relay does next. With
/// none, the producer holds the records while the broker is away and sends
/// them in order when it returns; the relay waits for them (its
/// `shutdown_grace` bounds that wait on shutdown). Set a finite timeout only
/// where order does not matter: the relay then counts a row acknowledged
/// after an earlier row of its key failed (`outbox_relay_overtaken_total`).
pub const PRODUCER_DEFAULTS: &[(&str, &str)] = &[
    ("enable.idempotence", "true"),
    ("acks", "all"),
    ("partitioner", "murmur2_random"),
    ("linger.ms", "1"),
    ("message.timeout.ms", "0"),
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
    producer: FutureProducer<Diagnostics>,
    diagnostics: Diagnostics,
    brokers: String,
}

impl fmt::Debug for KafkaPublisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaPublisher")
            .field("brokers", &self.brokers)
            .finish_non_exhaustive()
    }
}

/// Settings for a [`KafkaPublisher`]: [`PRODUCER_DEFAULTS`], then yours.
///
/// Its `Debug` output masks secret settings ([`mask_setting`](super::mask_setting)).
#[derive(Clone)]
#[must_use]
pub struct KafkaPublisherBuilder {
    config: ClientConfig,
    client: String,
}

impl fmt::Debug for KafkaPublisherBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaPublisherBuilder")
            .field("client", &self.client)
            .field("settings", &MaskedSettings::of(&self.config))
            .finish()
    }
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
        KafkaPublisherBuilder {
            config,
            client: "Kafka producer".to_owned(),
        }
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The underlying producer.
    pub fn producer(&self) -> &FutureProducer<Diagnostics> {
        &self.producer
    }

    /// What librdkafka reported about the producer's brokers.
    pub fn diagnostics(&self) -> &Diagnostics {
        &self.diagnostics
    }

    /// Asks the brokers for their metadata, to fail early with the cause when
    /// they cannot be used: not reachable, the TLS handshake or the login
    /// refused. Returns the topics they know. Blocking: call it before
    /// starting, or from `spawn_blocking`.
    ///
    /// # Errors
    ///
    /// A [`ConnectError`] naming the brokers and the most specific cause
    /// librdkafka reported, as soon as it is clear that waiting cannot help,
    /// and at the latest after `timeout`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox::kafka::{CHECK_TIMEOUT, KafkaPublisher};
    ///
    /// let publisher = KafkaPublisher::new("127.0.0.1:59092")?;
    /// if let Err(error) = publisher.check_brokers(CHECK_TIMEOUT) {
    ///     eprintln!("{error}: {}", error.detail());
    /// }
    /// # Ok::<(), outbox::PublishError>(())
    /// ```
    pub fn check_brokers(&self, timeout: Duration) -> Result<Topics, ConnectError> {
        // The producer's own thread serves its events: nothing to poll here.
        await_metadata(
            |attempt| {
                self.producer
                    .client()
                    .fetch_metadata(None, attempt)
                    .map(|metadata| known_topics(&metadata))
            },
            |_| {},
            || self.producer.client().fatal_error(),
            &self.diagnostics,
            timeout,
        )
    }

    /// [`check_brokers`](Self::check_brokers), for the relay's error type.
    ///
    /// # Errors
    ///
    /// [`PublishErrorKind::Config`](crate::PublishErrorKind::Config) with the
    /// text of the [`ConnectError`] and its detail.
    pub fn check_connection(&self, timeout: Duration) -> Result<(), PublishError> {
        self.check_brokers(timeout)
            .map(drop)
            .map_err(|error| PublishError::config(format!("{error}: {}", error.detail())))
    }
}

impl KafkaPublisherBuilder {
    /// Sets a librdkafka producer setting, overriding the default if there is one.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.config.set(key, value);
        self
    }

    /// What the producer is called in log lines (default `Kafka producer`),
    /// e.g. `relay`.
    pub fn client_name(mut self, name: impl Into<String>) -> Self {
        self.client = name.into();
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
    /// setting librdkafka refuses (the value of a secret one masked), or a
    /// file setting (`ssl.ca.location`, …) whose file cannot be read, with
    /// the path and the system's reason (see [`create_client`]).
    pub fn build(self) -> Result<KafkaPublisher, PublishError> {
        let KafkaPublisherBuilder { mut config, client } = self;
        let (producer, diagnostics) = create_client(&mut config, &client).map_err(|error| {
            // The relay's error type is text: the causes go with it.
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text = format!("{text}: {cause}");
                source = cause.source();
            }
            PublishError::config(text)
        })?;
        Ok(KafkaPublisher {
            producer,
            brokers: diagnostics.brokers().to_owned(),
            diagnostics,
        })
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

    /// [`check_connection`](KafkaPublisher::check_connection).
    fn check(&self, timeout: Duration) -> Result<(), PublishError> {
        self.check_connection(timeout)
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

/// A librdkafka error with its code's name: `Message timed out (…)`.
pub(crate) fn describe(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{code} ({error})"),
        None => error.to_string(),
    }
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
        let err = bad.expect_err("librdkafka refuses unknown settings");
        assert!(err.to_string().contains("no.such.setting"), "{err}");
    }

    #[test]
    fn secrets_stay_out_of_refusals_and_debug_output() {
        let builder = KafkaPublisher::builder("b:9092")
            .set("sasl.password", "outbox-secret")
            .set("ssl.key.pem", "-----BEGIN PRIVATE KEY----- abcdef");
        let shown = format!("{builder:?}");
        assert!(!shown.contains("outbox-secret"), "{shown}");
        assert!(!shown.contains("abcdef"), "{shown}");
        assert!(shown.contains("sasl.password"), "{shown}");
        // A misspelt key is refused with its value: masked too.
        let refused = KafkaPublisher::builder("b:9092")
            .set("sasl.pasword", "outbox-secret")
            .build()
            .expect_err("refused");
        let shown = format!("{refused} {refused:?}");
        assert!(!shown.contains("outbox-secret"), "{shown}");
        assert!(shown.contains("sasl.pasword"), "{shown}");
    }
}
