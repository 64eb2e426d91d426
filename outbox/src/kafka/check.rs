//! The start check of a Kafka client: its brokers answer a metadata request,
//! or the error says why not, naming them.

use std::collections::BTreeSet;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::metadata::Metadata;
use rdkafka::types::RDKafkaErrorCode;

use super::cause::Cause;
use super::client::{ClientError, create_client};
use super::diagnostics::Diagnostics;

/// How long a start check waits for the brokers, unless told otherwise.
///
/// A refused login or TLS handshake fails the check as soon as librdkafka
/// reports it; only brokers that do not answer take this long.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The brokers could not be used at start: the brokers, what went wrong
/// ([`Cause`]) and, as the error's source, librdkafka's own words.
///
/// # Examples
///
/// ```no_run
/// use outbox::kafka::{Cause, KafkaPublisher, CHECK_TIMEOUT};
///
/// let publisher = KafkaPublisher::builder("127.0.0.1:59094")
///     .set("security.protocol", "SASL_SSL")
///     .set("sasl.mechanism", "SCRAM-SHA-512")
///     .set("sasl.username", "outbox")
///     .set("sasl.password", "wrong")
///     .build()?;
/// let error = publisher.check_brokers(CHECK_TIMEOUT).unwrap_err();
/// assert_eq!(error.cause(), Cause::Authentication);
/// // Kafka at 127.0.0.1:59094: authentication failed (check `sasl.mechanism`, …)
/// println!("{error}");
/// # Ok::<(), outbox::PublishError>(())
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[error("Kafka at {brokers}: {cause}")]
pub struct ConnectError {
    brokers: String,
    cause: Cause,
    #[source]
    detail: Detail,
}

/// What librdkafka said, as the source of a [`ConnectError`].
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Detail(String);

impl ConnectError {
    pub(crate) fn new(brokers: String, cause: Cause, detail: String) -> Self {
        ConnectError {
            brokers,
            cause,
            detail: Detail(detail),
        }
    }

    /// The bootstrap servers of the client.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// What went wrong.
    pub fn cause(&self) -> Cause {
        self.cause
    }

    /// librdkafka's words (secrets masked).
    pub fn detail(&self) -> &str {
        &self.detail.0
    }
}

/// The names of the topics the brokers know.
pub type Topics = BTreeSet<String>;

/// Asks for metadata (`fetch`, given how long it may wait) in short attempts
/// while `serve` hands the client's events to `diagnostics` (when no other
/// thread does); returns as soon as the brokers answer, or `diagnostics` knows
/// waiting cannot help, or `timeout` has passed.
///
/// Everything runs on the calling thread: the client must not outlive the
/// check on a thread of its own, or a process that exits on the check's error
/// can end while librdkafka's threads are still in a TLS handshake (OpenSSL's
/// exit handlers free what they use: a crash instead of the exit status).
pub(crate) fn await_metadata(
    mut fetch: impl FnMut(Duration) -> KafkaResult<Topics>,
    mut serve: impl FnMut(Duration),
    fatal: impl Fn() -> Option<(RDKafkaErrorCode, String)>,
    diagnostics: &Diagnostics,
    timeout: Duration,
) -> Result<Topics, ConnectError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut probed = false;
    loop {
        serve(Duration::from_millis(20));
        // A TLS listener says nothing to a plaintext client: it waits for a
        // TLS handshake, and librdkafka for an answer. Ask it in TLS, once.
        if !probed
            && started.elapsed() >= TLS_PROBE_AFTER
            && diagnostics.plaintext()
            && diagnostics.cause().is_none()
        {
            probed = true;
            if let Some(broker) = tls_listener(diagnostics.brokers()) {
                diagnostics.found(
                    Cause::ExpectsTls,
                    &format!(
                        "{broker} answers a TLS handshake, and nothing to the client, whose \
                         `security.protocol` is plaintext"
                    ),
                );
            }
        }
        // librdkafka goes on connecting between attempts; an attempt that ends
        // without a usable broker (timed out, or "transport failure") is no
        // verdict before the deadline.
        let attempt = ATTEMPT
            .min(deadline.saturating_duration_since(Instant::now()))
            .max(Duration::from_millis(1));
        let failed = match fetch(attempt) {
            Ok(topics) => {
                diagnostics.answered();
                return Ok(topics);
            }
            Err(error) => error,
        };
        let fatal = fatal();
        if fatal.is_some() || diagnostics.gave_up(started) || Instant::now() >= deadline {
            // Events of the last moment: librdkafka may say why right after.
            serve(Duration::from_millis(50));
            return Err(diagnostics.connect_error(fatal, Some(&failed), started.elapsed()));
        }
    }
}

/// The longest one metadata request of a check waits, so that the check looks
/// at what librdkafka reported in between.
const ATTEMPT: Duration = Duration::from_millis(250);

/// How long a plaintext client waits for an answer before it asks whether
/// its broker is a TLS listener.
const TLS_PROBE_AFTER: Duration = Duration::from_secs(2);

/// The first of `brokers` (`host:port,…`) if it completes a TLS handshake
/// (its certificate is not checked: only whether it speaks TLS).
fn tls_listener(brokers: &str) -> Option<String> {
    let broker = brokers.split(',').next()?.trim();
    // `PLAINTEXT://host:port` is accepted by librdkafka too.
    let address = broker.rsplit("://").next()?;
    let host = address.rsplit_once(':')?.0.trim_matches(['[', ']']);
    let socket = address.to_socket_addrs().ok()?.next()?;
    let wait = Duration::from_secs(2);
    let stream = TcpStream::connect_timeout(&socket, wait).ok()?;
    stream.set_read_timeout(Some(wait)).ok()?;
    stream.set_write_timeout(Some(wait)).ok()?;
    let connector = native_tls::TlsConnector::builder()
        .danger_accept_invalid_certs(true)
        .danger_accept_invalid_hostnames(true)
        .build()
        .ok()?;
    connector
        .connect(host, stream)
        .ok()
        .map(|_| address.to_owned())
}

/// The topics of `metadata` that exist (no error on them).
pub(crate) fn known_topics(metadata: &Metadata) -> Topics {
    metadata
        .topics()
        .iter()
        .filter(|topic| topic.error().is_none())
        .map(|topic| topic.name().to_owned())
        .collect()
}

/// Checks that the brokers of `config` can be used, as the client `client`
/// made from it would: they answer a metadata request within `timeout`, past
/// TLS and the login. Returns the topics they know.
///
/// Runs a short-lived client of its own with `config`'s settings (a
/// consumer's `group.id` is left out: it does not join the group). Blocking:
/// call it before starting, or from `spawn_blocking`.
///
/// # Errors
///
/// A [`ConnectError`] naming the brokers and the most specific [`Cause`]
/// librdkafka reported; a refused login or TLS handshake is reported as soon
/// as librdkafka says so, without waiting for `timeout`. Settings librdkafka
/// refuses, and a file setting whose file cannot be read
/// ([`check_setting_files`](super::check_setting_files)), are
/// [`Cause::Settings`], the setting named in the detail.
///
/// # Examples
///
/// ```no_run
/// use outbox::kafka::{CHECK_TIMEOUT, check_brokers};
/// use rdkafka::ClientConfig;
///
/// let mut config = ClientConfig::new();
/// config.set("bootstrap.servers", "127.0.0.1:59092");
/// let topics = check_brokers(&config, "my consumer", CHECK_TIMEOUT)?;
/// println!("{} topics", topics.len());
/// # Ok::<(), outbox::kafka::ConnectError>(())
/// ```
pub fn check_brokers(
    config: &ClientConfig,
    client: &str,
    timeout: Duration,
) -> Result<Topics, ConnectError> {
    let mut config = config.clone();
    // Without a group, the client's events stay on its main queue, which
    // `poll` serves; and it joins nothing.
    config.remove("group.id").remove("group.instance.id");
    let (probe, diagnostics): (BaseConsumer<Diagnostics>, _) = create_client(&mut config, client)
        .map_err(|error| {
        let detail = match &error {
            ClientError::File(file) => format!("{file}: {}", file_cause(file)),
            ClientError::Refused { source, .. } => source.to_string(),
        };
        let brokers = config
            .get("bootstrap.servers")
            .or_else(|| config.get("metadata.broker.list"))
            .unwrap_or_default();
        ConnectError::new(brokers.to_owned(), Cause::Settings, detail)
    })?;
    await_metadata(
        |attempt| {
            probe
                .fetch_metadata(None, attempt)
                .map(|metadata| known_topics(&metadata))
        },
        |wait| {
            // No message can come: nothing is assigned. Errors are recorded
            // by the context as the events are served.
            let _ = probe.poll(wait);
        },
        || probe.client().fatal_error(),
        &diagnostics,
        timeout,
    )
}

/// What the system said about the file of `error`.
fn file_cause(error: &super::SettingFileError) -> String {
    std::error::Error::source(error).map_or_else(String::new, ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_brokers_and_cause_and_keeps_the_detail_as_source() {
        let error = ConnectError::new(
            "127.0.0.1:1".into(),
            Cause::ConnectionRefused,
            "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused".into(),
        );
        assert_eq!(
            error.to_string(),
            "Kafka at 127.0.0.1:1: connection refused (is a broker listening on that port?)"
        );
        let source = std::error::Error::source(&error)
            .expect("a source")
            .to_string();
        assert!(source.ends_with("Connection refused"), "{source}");
    }

    #[test]
    fn nothing_listening_is_connection_refused_within_seconds() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "127.0.0.1:1");
        let started = Instant::now();
        let error = check_brokers(&config, "test", Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            error.cause(),
            Cause::ConnectionRefused,
            "{error}: {}",
            error.detail()
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_host_that_does_not_resolve_is_unknown_host() {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", "no-such-host.invalid:9092");
        let error = check_brokers(&config, "test", Duration::from_secs(5)).unwrap_err();
        assert_eq!(
            error.cause(),
            Cause::UnknownHost,
            "{error}: {}",
            error.detail()
        );
        assert!(
            error
                .to_string()
                .starts_with("Kafka at no-such-host.invalid:9092: unknown host")
        );
    }
}
