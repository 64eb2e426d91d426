//! Errors of `outbox-diesel`.

use std::path::PathBuf;

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong on the PostgreSQL side of outbox.
///
/// `#[non_exhaustive]`: later releases add variants (the inbox, stopped partitions).
///
/// # Examples
///
/// ```
/// use outbox_diesel::Error;
///
/// let err = Error::NotInTransaction;
/// assert!(err.to_string().starts_with("enqueue outside a transaction"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `enqueue` was called on a connection with no open transaction: the message
    /// would be committed apart from the data it describes. Nothing was written.
    #[error(
        "enqueue outside a transaction: call it inside `conn.transaction(..)` so the message \
         commits or rolls back with the data it describes (nothing was written)"
    )]
    NotInTransaction,

    /// A query failed.
    #[error("database error")]
    Database(#[from] diesel::result::Error),

    /// The database could not be reached.
    #[error("could not connect to PostgreSQL at {url}")]
    Connection {
        /// The URL, password masked.
        url: String,
        /// What the driver said.
        #[source]
        source: diesel::ConnectionError,
    },

    /// A message could not be built (a payload serializer failed, an invalid name).
    #[error(transparent)]
    Message(#[from] outbox::Error),

    /// A migration failed.
    #[error("migration failed: {0}")]
    Migration(String),

    /// A migration folder exists with other content.
    #[error("{} exists with different content; remove it or write elsewhere", .0.display())]
    AlreadyExists(PathBuf),

    /// A file could not be written or read.
    #[error("{}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },

    /// A setting is not valid.
    #[error("invalid setting `{name}`: {reason}")]
    Config {
        /// The setting.
        name: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// The broker could not be reached or refused the publisher's settings.
    #[error(transparent)]
    Publish(#[from] outbox::PublishError),

    /// A Kafka client failed: settings refused, brokers not reachable, a read,
    /// a send or an offset commit that failed.
    #[error("{context}")]
    Kafka {
        /// What was being done, e.g. `committing offsets of group billing`.
        context: String,
        /// What librdkafka said.
        #[source]
        source: rdkafka::error::KafkaError,
    },

    /// A dead-letter topic cannot be replayed as asked: it does not exist, or a
    /// record names no topic to go back to (see
    /// [`dead_letter::replay`](crate::dead_letter::replay)).
    #[error("dead-letter replay: {0}")]
    DeadLetter(String),

    /// The brokers cannot be used at start: they do not answer, or refuse
    /// the TLS handshake or the login; names them and the cause.
    #[error(transparent)]
    KafkaConnect(#[from] outbox::kafka::ConnectError),

    /// A Kafka client could not be created: librdkafka refused a setting, or
    /// a file setting (`ssl.ca.location`, …) names a file that cannot be read.
    #[error(transparent)]
    KafkaClient(#[from] outbox::kafka::ClientError),

    /// The brokers refused some of the topics asked for (see
    /// [`CreateTopics::create`](crate::topics::CreateTopics::create)); the
    /// others were created or exist.
    #[error(transparent)]
    TopicsRefused(#[from] crate::topics::RefusedTopics),

    /// A consumer group's offsets cannot be reset as asked: its consumers
    /// are running, or a topic does not exist (see
    /// [`group_reset::reset`](crate::group_reset::reset)).
    #[error(transparent)]
    GroupReset(#[from] crate::group_reset::GroupResetError),

    /// The consumer cannot start as things are: its database cannot be
    /// reached or lacks the consumer's tables, or a topic it reads does not
    /// exist (see [`Consumer::check`](crate::consumer::Consumer::check)).
    #[error("{what}")]
    NotReady {
        /// What is missing, where, and what to do.
        what: String,
        /// What the driver said, when it said something.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The metrics and health server could not listen on its address (taken,
    /// or not this host's).
    #[error("cannot serve metrics and health on {addr}")]
    Serve {
        /// The address asked for.
        addr: std::net::SocketAddr,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },

    /// Another `metrics` recorder is installed in this process, so the
    /// Prometheus one cannot be (see [`serve::install_recorder`](crate::serve::install_recorder)).
    #[error(
        "another `metrics` recorder is installed in this process: render its metrics yourself, \
         or give a Prometheus handle to `MetricsServer::start_with`"
    )]
    MetricsRecorder,
}

/// `url` with its secrets replaced by `***`, for messages and logs: the
/// password of a URL's authority (`postgres://user:secret@host`) and the values
/// of `password` and `sslpassword`, in a URL's query (percent-encoded or not)
/// or in a libpq `key=value` string (quoted or not, spaces around `=` or not).
/// Everything else is kept as written. It reads the string as
/// [`establish`](crate::establish) does, and never fails: a malformed string is
/// masked as far as it can be read.
///
/// # Examples
///
/// ```
/// use outbox_diesel::mask_password;
///
/// assert_eq!(mask_password("postgres://app:s3cret@db:5432/app"), "postgres://app:***@db:5432/app");
/// assert_eq!(mask_password("postgres://db/app?password=s3cret"), "postgres://db/app?password=***");
/// assert_eq!(mask_password("host=db password=s3cret"), "host=db password=***");
/// assert_eq!(mask_password("host=db password = 'my secret'"), "host=db password = ***");
/// assert_eq!(mask_password("postgres://db/app"), "postgres://db/app");
/// ```
pub fn mask_password(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    let mut written = 0;
    for span in crate::pg::conninfo::secret_spans(url) {
        out.push_str(&url[written..span.start]);
        out.push_str("***");
        written = span.end;
    }
    out.push_str(&url[written..]);
    out
}

/// `error` and its causes, joined with `: `, for one log line or record.
///
/// A cause whose text is already there is left out: some wrappers (deadpool's
/// `PoolError::Backend`, `#[error(transparent)]`) print their source and also
/// return it from `source()`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !cause_text.is_empty() && !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::{error_chain, mask_password};

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Refused;

    /// Prints its source and returns it, as deadpool's `PoolError::Backend` does.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct Backend(#[source] Refused);

    #[derive(Debug, thiserror::Error)]
    #[error("could not connect")]
    struct Connect(#[source] Backend);

    #[test]
    fn a_cause_is_named_once() {
        assert_eq!(
            error_chain(&Connect(Backend(Refused))),
            "could not connect: connection refused"
        );
    }

    #[test]
    fn masks_only_the_password() {
        assert_eq!(
            mask_password("postgres://u:p@h/d?x=1"),
            "postgres://u:***@h/d?x=1"
        );
        assert_eq!(
            mask_password("postgres://u@h:5432/d"),
            "postgres://u@h:5432/d"
        );
        assert_eq!(mask_password("postgres://h:5432/d"), "postgres://h:5432/d");
        assert_eq!(mask_password("not a url"), "not a url");
        assert_eq!(
            mask_password("postgres://u:p:q@h/d"),
            "postgres://u:***@h/d"
        );
    }

    #[test]
    fn key_value_passwords_are_masked_however_written() {
        for (written, masked) in [
            ("host=db password='my secret'", "host=db password=***"),
            ("host=db password = hunter22", "host=db password = ***"),
            ("host=db password= hunter22", "host=db password= ***"),
            ("password =hunter22 host=db", "password =*** host=db"),
            (
                "host=db password='it\\'s a secret' user=app",
                "host=db password=*** user=app",
            ),
            (
                "host=db password=p\\ q user=app",
                "host=db password=*** user=app",
            ),
            (
                "host=db\tpassword=s3cret\nuser=app",
                "host=db\tpassword=***\nuser=app",
            ),
            (
                "sslpassword=keypass sslkey=k.pem",
                "sslpassword=*** sslkey=k.pem",
            ),
            (
                "host=db sslpassword = 'key pass'",
                "host=db sslpassword = ***",
            ),
            // Not passwords: other keys ending in `password`, or values holding the word.
            (
                "mypassword=x application_name=password=y",
                "mypassword=x application_name=password=y",
            ),
        ] {
            assert_eq!(mask_password(written), masked, "{written}");
        }
    }

    #[test]
    fn url_passwords_are_masked_however_written() {
        for (written, masked) in [
            (
                "postgres://db/app?sslpassword=keypass&sslmode=require",
                "postgres://db/app?sslpassword=***&sslmode=require",
            ),
            (
                "postgres://db/app?pass%77ord=s3cret&ssl%70assword=k",
                "postgres://db/app?pass%77ord=***&ssl%70assword=***",
            ),
            (
                "postgres://u:p%40ss%20w@db/app?password=x%26y",
                "postgres://u:***@db/app?password=***",
            ),
            // A raw `@` or `?` in the authority's password: masked whole.
            ("postgres://u:p@ss@db/app", "postgres://u:***@db/app"),
            (
                "postgresql://u:p?x@db/app?password=y",
                "postgresql://u:***@db/app?password=***",
            ),
            (
                "postgres://u:pw@h1:5432,h2:5433/app",
                "postgres://u:***@h1:5432,h2:5433/app",
            ),
            (
                "postgres://db?password=x&application_name=a@b",
                "postgres://db?password=***&application_name=a@b",
            ),
            (
                "postgres://u:@db/app?password=",
                "postgres://u:@db/app?password=",
            ),
        ] {
            assert_eq!(mask_password(written), masked, "{written}");
        }
    }

    #[test]
    fn malformed_strings_are_masked_as_far_as_they_can_be_read() {
        for (written, masked) in [
            (
                "host=db password='unterminated secret",
                "host=db password=***",
            ),
            ("host=db password hunter22 user=app", "host=db password***"),
            ("host db password=x", "host db password=***"),
            (
                "postgres://db/app?password&application_name=a",
                "postgres://db/app?password&application_name=a",
            ),
            ("  postgres://u:pw@db/app", "  postgres://u:***@db/app"),
        ] {
            assert_eq!(mask_password(written), masked, "{written}");
        }
    }

    /// Odd input never panics; a password after it, written as libpq reads
    /// it (the odd text quoted, or percent-encoded), never comes out.
    #[test]
    fn odd_input_never_panics_nor_leaks() {
        let pieces = [
            "",
            " ",
            "=",
            "'",
            "\\",
            "@",
            ":",
            "/",
            "?",
            "&",
            "%",
            "%4",
            "%zz",
            "://",
            "postgres://",
            "password",
            "sslpassword",
            "é",
            "\u{3000}",
            "\t",
            "#",
        ];
        for a in pieces {
            for b in pieces {
                for c in pieces {
                    let text = format!("{a}{b}{c}");
                    for odd in [
                        text.clone(),
                        format!("{text} password={text}"),
                        format!("postgres://u:{text}@{text}/{text}?{text}&password={text}"),
                        format!("postgres://{text}?{text}"),
                    ] {
                        let _ = mask_password(&odd);
                    }
                    let quoted = text.replace('\\', "\\\\").replace('\'', "\\'");
                    let encoded: String = text.bytes().map(|byte| format!("%{byte:02X}")).collect();
                    for form in [
                        format!("host='{quoted}' password=SECRET sslpassword='SECRET {quoted}'"),
                        format!(
                            "postgres://u:SECRET@{encoded}/{encoded}?password=SECRET&x={encoded}"
                        ),
                    ] {
                        let masked = mask_password(&form);
                        assert!(!masked.contains("SECRET"), "{form:?} -> {masked:?}");
                    }
                }
            }
        }
        let alphabet: Vec<char> = "pasword=' \\@:/?&%41é\t".chars().collect();
        let mut rng = fastrand::Rng::with_seed(12);
        for _ in 0..20_000 {
            let len = rng.usize(..24);
            let text: String = (0..len)
                .map(|_| alphabet[rng.usize(..alphabet.len())])
                .collect();
            let _ = mask_password(&text);
            let _ = mask_password(&format!("postgres://{text}"));
        }
    }
}
