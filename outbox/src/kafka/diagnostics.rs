//! [`Diagnostics`]: the librdkafka context of every outbox client. It records
//! why the brokers cannot be used, for the start checks, and logs librdkafka's
//! errors and lines to `tracing`, repeats summarised and secrets masked.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};

use super::cause::Cause;
use super::check::ConnectError;
use super::secrets::{Secrets, Unmasked};
use super::summary::{Summarizer, steady_text};

/// librdkafka's context for outbox's Kafka clients (the relay's producer, the
/// consumer, its dead-letter producer, `dlq replay`).
///
/// - Errors librdkafka reports (`ClientContext::error`) are recorded: the
///   start checks ([`KafkaPublisher::check_brokers`](super::KafkaPublisher::check_brokers),
///   [`check_brokers`](super::check_brokers)) report the most specific
///   [`Cause`] seen rather than a bare "broker transport failure".
/// - They go to `tracing` at `warn` (fatal ones at `error`), and librdkafka's
///   own log lines (`ClientContext::log`) too, under the target `librdkafka`;
///   a line repeated within 30 s is held back and counted, and the next one
///   says `(repeated 57 times in 30 s)`.
/// - The secret values of the client's settings (`sasl.password`, …) are
///   masked in all of it.
///
/// Cheap to clone: clones share what was recorded.
///
/// [`create_client`](super::create_client) makes a client with it (and
/// checks the file settings first); by hand:
///
/// # Examples
///
/// ```no_run
/// use outbox::kafka::Diagnostics;
/// use rdkafka::ClientConfig;
/// use rdkafka::producer::FutureProducer;
///
/// let mut config = ClientConfig::new();
/// config.set("bootstrap.servers", "127.0.0.1:59094").set("security.protocol", "SASL_SSL");
/// let diagnostics = Diagnostics::new("my producer", &mut config);
/// let producer: FutureProducer<Diagnostics> = config.create_with_context(diagnostics.clone())?;
/// // … later, why the brokers cannot be used, if librdkafka said:
/// if let Some((cause, reason)) = diagnostics.cause() {
///     eprintln!("{cause}: {reason}");
/// }
/// # Ok::<(), rdkafka::error::KafkaError>(())
/// ```
#[derive(Clone)]
pub struct Diagnostics(Arc<Inner>);

struct Inner {
    client: String,
    brokers: String,
    /// `security.protocol` is PLAINTEXT or SASL_PLAINTEXT.
    plaintext: bool,
    secrets: Secrets,
    seen: Mutex<Seen>,
}

/// The errors of every client in the process, summarised together.
static ERRORS: LazyLock<Summarizer> = LazyLock::new(Summarizer::default);

/// How long a reported cause counts: librdkafka repeats an error it still
/// has every 30 s, so one older than this is over.
const CAUSE_LIFETIME: Duration = Duration::from_secs(60);

#[derive(Default)]
struct Seen {
    /// The last reason given for each cause, and when.
    causes: HashMap<Cause, (String, Instant)>,
    /// When librdkafka last said every broker is down.
    all_down: Option<Instant>,
    /// When a check last got an answer from the brokers.
    answered: Option<Instant>,
}

impl fmt::Debug for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Diagnostics")
            .field("client", &self.0.client)
            .field("brokers", &self.0.brokers)
            .field("cause", &self.cause())
            .finish_non_exhaustive()
    }
}

impl Diagnostics {
    /// Diagnostics of the client `client` (what it is, for log lines: "relay
    /// producer") to be created from `config`, whose librdkafka log level it
    /// sets: `warn`, or `debug` when `config` has a `debug` setting (or the
    /// `log_level` set there).
    pub fn new(client: impl Into<String>, config: &mut ClientConfig) -> Self {
        config.set_log_level(log_level(config));
        let brokers = config
            .get("bootstrap.servers")
            .or_else(|| config.get("metadata.broker.list"))
            .unwrap_or_default()
            .to_owned();
        let plaintext = config
            .get("security.protocol")
            .is_none_or(|protocol| protocol.to_ascii_lowercase().ends_with("plaintext"));
        Diagnostics(Arc::new(Inner {
            client: client.into(),
            brokers,
            plaintext,
            secrets: Secrets::of(config.config_map_unmasked()),
            seen: Mutex::new(Seen::default()),
        }))
    }

    /// The bootstrap servers of the client.
    pub fn brokers(&self) -> &str {
        &self.0.brokers
    }

    /// What the client is, as log lines name it.
    pub fn client(&self) -> &str {
        &self.0.client
    }

    /// The most specific cause librdkafka reported in the last minute, since
    /// the brokers last answered a check, and its words (secrets masked).
    pub fn cause(&self) -> Option<(Cause, String)> {
        let seen = self.0.seen.lock().ok()?;
        let now = Instant::now();
        seen.causes
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) < CAUSE_LIFETIME)
            .max_by_key(|(cause, _)| cause.rank())
            .map(|(cause, (reason, _))| (*cause, reason.clone()))
    }

    /// Whether a check that started at `started` can stop waiting: a decisive
    /// cause was reported (the brokers refused the login or the TLS
    /// handshake), or every broker is down and librdkafka said why. Until
    /// the brokers first answer, everything the client reported counts;
    /// afterwards only what it reported during this check (what came before
    /// may be over).
    pub(crate) fn gave_up(&self, started: Instant) -> bool {
        let Ok(seen) = self.0.seen.lock() else {
            return false;
        };
        let counts = |at: Instant| seen.answered.is_none() || at >= started;
        let mut causes = seen.causes.values().filter(|(_, at)| counts(*at));
        let decisive = seen
            .causes
            .iter()
            .any(|(cause, (_, at))| cause.is_decisive() && counts(*at));
        decisive || (seen.all_down.is_some_and(counts) && causes.next().is_some())
    }

    /// The brokers answered a check: what was reported before is over.
    pub(crate) fn answered(&self) {
        if let Ok(mut seen) = self.0.seen.lock() {
            seen.answered = Some(Instant::now());
            seen.causes.clear();
            seen.all_down = None;
        }
    }

    /// The error of a start check that failed: the most specific cause
    /// recorded; else `fatal`, the client's fatal error; else `error`, what
    /// the failed request returned.
    pub(crate) fn connect_error(
        &self,
        fatal: Option<(RDKafkaErrorCode, String)>,
        error: Option<&KafkaError>,
        waited: Duration,
    ) -> ConnectError {
        let brokers = self.0.brokers.clone();
        if let Some((code, reason)) = fatal {
            let reason = self.0.secrets.scrub(&reason);
            let cause = Cause::of_reason(&reason).unwrap_or(Cause::Fatal);
            return ConnectError::new(brokers, cause, format!("{reason} ({code})"));
        }
        if let Some((cause, reason)) = self.cause() {
            return ConnectError::new(brokers, cause, reason);
        }
        let detail = match error {
            Some(error) => format!(
                "no metadata within {} s: {}",
                waited.as_secs(),
                super::publisher::describe(error)
            ),
            None => format!("no metadata within {} s", waited.as_secs()),
        };
        ConnectError::new(brokers, Cause::NoAnswer, detail)
    }

    /// Records an error librdkafka reported, and logs it (summarised).
    pub fn record(&self, error: &KafkaError, reason: &str) {
        let reason = self.0.secrets.scrub(steady_text(reason));
        let cause = Cause::of(error, &reason);
        self.note_cause(cause, &reason);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown)
            && let Ok(mut seen) = self.0.seen.lock()
        {
            seen.all_down = Some(Instant::now());
        }
        let (client, brokers) = (&self.0.client, &self.0.brokers);
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            // Follows the error that took the last broker down, logged already.
            tracing::debug!(client, brokers, "Kafka client error: {reason}");
            return;
        }
        // Shared by every client of the process: a consumer, its dead-letter
        // producer and a restarted one hit the same error.
        let Some(repeats) = ERRORS.admit(&format!("{brokers}|{error}|{reason}")) else {
            return;
        };
        let fatal = error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal);
        match cause {
            Some(cause) if fatal => tracing::error!(client, brokers, %cause,
                "Kafka client stopped: {reason}{repeats}"),
            None if fatal => {
                tracing::error!(client, brokers, "Kafka client stopped: {reason}{repeats}")
            }
            Some(cause) => tracing::warn!(client, brokers, %cause,
                "Kafka client error: {reason}{repeats}"),
            None => tracing::warn!(client, brokers, code = %error,
                "Kafka client error: {reason}{repeats}"),
        }
    }

    /// Records that librdkafka reported `cause` in these words.
    fn note_cause(&self, cause: Option<Cause>, words: &str) {
        let Some(cause) = cause else { return };
        let Ok(mut seen) = self.0.seen.lock() else {
            return;
        };
        let now = Instant::now();
        // librdkafka may say one thing twice, the second time shorter: the
        // fuller words of a recent report stay.
        let words = match seen.causes.get(&cause) {
            Some((kept, at))
                if now.duration_since(*at) < CAUSE_LIFETIME && kept.len() > words.len() =>
            {
                kept.clone()
            }
            _ => words.to_owned(),
        };
        seen.causes.insert(cause, (words, now));
    }

    /// Records `cause`, found by the check itself.
    pub(crate) fn found(&self, cause: Cause, words: &str) {
        self.note_cause(Some(cause), words);
    }

    /// Whether the client speaks plaintext (no TLS) to its brokers.
    pub(crate) fn plaintext(&self) -> bool {
        self.0.plaintext
    }

    /// A log line of librdkafka, to `tracing` (summarised, secrets masked).
    pub fn log_line(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        let line = self.0.secrets.scrub(steady_text(line));
        let (client, brokers) = (&self.0.client, &self.0.brokers);
        // Errors are logged by `record` when librdkafka reports them, which it
        // does for each of these lines too.
        let reported = matches!(facility, "FAIL" | "ERROR");
        if facility == "FAIL" {
            // Some failures come as log lines only (a disconnect is at info).
            self.note_cause(Cause::of_reason(&line), &line);
        }
        match level {
            RDKafkaLogLevel::Debug => {
                tracing::debug!(target: "librdkafka", client, brokers, facility, "{line}");
                return;
            }
            _ if reported => {
                tracing::debug!(target: "librdkafka", client, brokers, facility, "{line}");
                return;
            }
            _ => {}
        }
        let Some(repeats) = ERRORS.admit(&format!("{brokers}|{facility}|{line}")) else {
            return;
        };
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(target: "librdkafka", client, brokers, facility, "{line}{repeats}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(target: "librdkafka", client, brokers, facility, "{line}{repeats}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info | RDKafkaLogLevel::Debug => {
                tracing::info!(target: "librdkafka", client, brokers, facility, "{line}{repeats}")
            }
        }
    }

    /// Masks the client's secret values in `text`.
    pub fn scrub(&self, text: &str) -> String {
        self.0.secrets.scrub(text)
    }
}

impl ClientContext for Diagnostics {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        self.log_line(level, facility, line);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.record(&error, reason);
    }
}

impl ConsumerContext for Diagnostics {}

/// librdkafka's log level for a client with `config`: `warn`, unless the
/// settings ask for more.
fn log_level(config: &ClientConfig) -> RDKafkaLogLevel {
    if let Some(level) = config
        .get("log_level")
        .and_then(|level| level.trim().parse::<i32>().ok())
    {
        return match level {
            i32::MIN..=0 => RDKafkaLogLevel::Emerg,
            1 => RDKafkaLogLevel::Alert,
            2 => RDKafkaLogLevel::Critical,
            3 => RDKafkaLogLevel::Error,
            4 => RDKafkaLogLevel::Warning,
            5 => RDKafkaLogLevel::Notice,
            6 => RDKafkaLogLevel::Info,
            _ => RDKafkaLogLevel::Debug,
        };
    }
    if config.get("debug").is_some_and(|debug| !debug.is_empty()) {
        return RDKafkaLogLevel::Debug;
    }
    RDKafkaLogLevel::Warning
}

#[cfg(test)]
mod tests {
    use super::*;

    fn diagnostics() -> Diagnostics {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", "127.0.0.1:59094")
            .set("sasl.password", "outbox-secret");
        Diagnostics::new("test client", &mut config)
    }

    #[test]
    fn the_most_specific_cause_wins() {
        let diagnostics = diagnostics();
        let transport = KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure);
        diagnostics.record(
            &transport,
            "127.0.0.1:59094/bootstrap: Connect to ipv4#127.0.0.1:59094 failed: Connection refused (after 0ms in state CONNECT)",
        );
        assert_eq!(
            diagnostics.cause().map(|(cause, _)| cause),
            Some(Cause::ConnectionRefused)
        );
        assert!(!diagnostics.gave_up(Instant::now()));
        diagnostics.record(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "127.0.0.1:59094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 5ms in state AUTH_REQ)",
        );
        let (cause, reason) = diagnostics.cause().expect("recorded");
        assert_eq!(cause, Cause::Authentication);
        assert!(reason.ends_with("SCRAM-SHA-512"), "{reason}");
        assert!(diagnostics.gave_up(Instant::now()));
    }

    #[test]
    fn secrets_are_masked_in_what_is_recorded() {
        let diagnostics = diagnostics();
        diagnostics.record(
            &KafkaError::Global(RDKafkaErrorCode::Authentication),
            "SASL authentication error: password outbox-secret refused",
        );
        let (_, reason) = diagnostics.cause().expect("recorded");
        assert_eq!(reason, "SASL authentication error: password *** refused");
        assert!(!format!("{diagnostics:?}").contains("outbox-secret"));
    }

    #[test]
    fn refused_with_every_broker_down_is_enough_to_give_up() {
        let diagnostics = diagnostics();
        diagnostics.record(
            &KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure),
            "b:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
        );
        diagnostics.record(
            &KafkaError::Global(RDKafkaErrorCode::AllBrokersDown),
            "1/1 brokers are down",
        );
        assert!(diagnostics.gave_up(Instant::now()));
        let error = diagnostics.connect_error(None, None, Duration::from_secs(5));
        assert_eq!(error.cause(), Cause::ConnectionRefused);
    }

    /// A client that worked once waits out what it reported before a check
    /// (the brokers may be back): only what happens during the check counts.
    #[test]
    fn after_an_answer_only_new_reports_end_a_check_early() {
        let diagnostics = diagnostics();
        diagnostics.answered();
        let auth = KafkaError::Global(RDKafkaErrorCode::Authentication);
        diagnostics.record(&auth, "SASL authentication error: Authentication failed");
        let started = Instant::now();
        assert!(!diagnostics.gave_up(started));
        std::thread::sleep(Duration::from_millis(5));
        diagnostics.record(&auth, "SASL authentication error: Authentication failed");
        assert!(diagnostics.gave_up(started));
        diagnostics.answered();
        assert_eq!(diagnostics.cause(), None);
    }

    #[test]
    fn the_log_level_follows_the_settings() {
        let mut config = ClientConfig::new();
        assert!(matches!(log_level(&config), RDKafkaLogLevel::Warning));
        config.set("debug", "broker");
        assert!(matches!(log_level(&config), RDKafkaLogLevel::Debug));
        config.set("log_level", "3");
        assert!(matches!(log_level(&config), RDKafkaLogLevel::Error));
    }
}
