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

/// `url` with its passwords replaced by `***`, for messages and logs: the
/// password of the authority (`postgres://user:secret@host`) and any
/// `password=` parameter, in the query of a URL or in a `key=value` string.
///
/// # Examples
///
/// ```
/// use outbox_diesel::mask_password;
///
/// assert_eq!(mask_password("postgres://app:s3cret@db:5432/app"), "postgres://app:***@db:5432/app");
/// assert_eq!(mask_password("postgres://db/app?password=s3cret"), "postgres://db/app?password=***");
/// assert_eq!(mask_password("host=db password=s3cret"), "host=db password=***");
/// assert_eq!(mask_password("postgres://db/app"), "postgres://db/app");
/// ```
pub fn mask_password(url: &str) -> String {
    mask_parameters(&mask_authority(url))
}

fn mask_authority(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &rest[at..]
        ),
        _ => url.to_owned(),
    }
}

fn mask_parameters(url: &str) -> String {
    const KEY: &str = "password=";
    let mut out = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(at) = rest.find(KEY) {
        let value_start = at + KEY.len();
        let is_parameter = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| matches!(c, '?' | '&' | ' ' | '\t'));
        out.push_str(&rest[..value_start]);
        rest = &rest[value_start..];
        if is_parameter {
            let end = rest.find(['&', ' ', '\t', '#']).unwrap_or(rest.len());
            out.push_str("***");
            rest = &rest[end..];
        }
    }
    out.push_str(rest);
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
}
