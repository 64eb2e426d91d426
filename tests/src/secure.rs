//! The TLS and SASL side of the test services: where `scripts/services.sh up`
//! puts its CA, how a client reaches Kafka's `SASL_SSL` listener and
//! PostgreSQL over TLS.
//!
//! Defaults are the services script's: the CA and certificates under
//! `target/services/tls/` of the workspace (or `$SVC_DIR/tls/`), Kafka
//! `SASL_SSL` on `127.0.0.1:59094` with SCRAM-SHA-512 user `outbox` /
//! `outbox-secret`, PostgreSQL with `ssl = on` on its usual port. For servers
//! started elsewhere, set `KAFKA_SASL_SSL_BROKERS`, `KAFKA_SASL_USERNAME`,
//! `KAFKA_SASL_PASSWORD`, `KAFKA_SSL_CA_LOCATION` and `DATABASE_URL_TLS` (a
//! `sslmode=verify-full&sslrootcert=...` URL).
//!
//! A test whose TLS service is not up fails, with a message naming
//! `scripts/services.sh up`; it is never skipped. The first call that hands
//! out Kafka settings or a TLS URL checks, once per test binary, that the
//! listener accepts them.
//!
//! # Examples
//!
//! ```no_run
//! use outbox_tests::secure::{self, SslMode};
//!
//! let mut config = rdkafka::ClientConfig::new();
//! config.set("bootstrap.servers", secure::kafka_sasl_ssl_brokers());
//! for (key, value) in secure::kafka_sasl_ssl_settings() {
//!     config.set(key, value);
//! }
//! let url = secure::database_url_tls(SslMode::VerifyFull);
//! assert!(url.contains("sslmode=verify-full"));
//! ```

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl, sql_types::Bool};
use rdkafka::ClientConfig;

use crate::database_url;

/// Where the services script opens Kafka's `SASL_SSL` listener.
pub const DEFAULT_KAFKA_SASL_SSL_BROKERS: &str = "127.0.0.1:59094";
/// The SCRAM-SHA-512 user the services script creates when it formats Kafka's storage.
pub const DEFAULT_KAFKA_SASL_USERNAME: &str = "outbox";
/// That user's password: a fixed test value, not a secret.
pub const DEFAULT_KAFKA_SASL_PASSWORD: &str = "outbox-secret";
/// The SASL mechanism of the test listener.
pub const KAFKA_SASL_MECHANISM: &str = "SCRAM-SHA-512";
/// The PostgreSQL role that `pg_hba.conf` lets in only over TLS.
pub const TLS_ONLY_ROLE: &str = "outbox_tls_only";

/// How to start the TLS services, for failure messages.
pub const HOW_TO_START_TLS: &str = "start the services with `scripts/services.sh up` \
     (it makes the test CA and the TLS/SASL listeners; for servers elsewhere set \
     KAFKA_SASL_SSL_BROKERS, KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD, \
     KAFKA_SSL_CA_LOCATION and DATABASE_URL_TLS)";

/// How long the readiness checks wait for a server.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

/// The folder of the services script's CA and certificates: `$SVC_DIR/tls`,
/// by default `target/services/tls` of the workspace.
///
/// # Examples
///
/// ```
/// assert!(outbox_tests::secure::tls_dir().ends_with("tls"));
/// ```
pub fn tls_dir() -> PathBuf {
    let services = match std::env::var_os("SVC_DIR") {
        Some(dir) => PathBuf::from(dir),
        // The workspace root is the test crate's parent folder.
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
            .join("target/services"),
    };
    services.join("tls")
}

/// The test CA (`ca.pem`) that signed the services' certificates.
///
/// # Panics
///
/// When the file is missing, with a message saying how to make it.
///
/// # Examples
///
/// ```no_run
/// assert!(outbox_tests::secure::ca_path().is_file());
/// ```
pub fn ca_path() -> PathBuf {
    existing(tls_dir().join("ca.pem"))
}

/// A CA unrelated to the services' certificates, for "untrusted certificate" tests.
///
/// # Panics
///
/// When the file is missing, with a message saying how to make it.
///
/// # Examples
///
/// ```no_run
/// assert_ne!(outbox_tests::secure::other_ca_path(), outbox_tests::secure::ca_path());
/// ```
pub fn other_ca_path() -> PathBuf {
    existing(tls_dir().join("other-ca.pem"))
}

/// The CA file Kafka clients trust: `KAFKA_SSL_CA_LOCATION`, or [`ca_path`].
///
/// # Panics
///
/// When the file is missing, with a message saying how to make it.
///
/// # Examples
///
/// ```no_run
/// assert!(outbox_tests::secure::kafka_ssl_ca_location().is_file());
/// ```
pub fn kafka_ssl_ca_location() -> PathBuf {
    match std::env::var_os("KAFKA_SSL_CA_LOCATION") {
        Some(path) => existing(PathBuf::from(path)),
        None => ca_path(),
    }
}

/// The `SASL_SSL` bootstrap servers: `KAFKA_SASL_SSL_BROKERS`, or the script's
/// listener (on `KAFKA_SASL_PORT` when set, as the script reads it).
///
/// # Examples
///
/// ```
/// assert!(!outbox_tests::secure::kafka_sasl_ssl_brokers().is_empty());
/// ```
pub fn kafka_sasl_ssl_brokers() -> String {
    if let Some(brokers) = std::env::var("KAFKA_SASL_SSL_BROKERS")
        .ok()
        .filter(|b| !b.is_empty())
    {
        return brokers;
    }
    match std::env::var("KAFKA_SASL_PORT") {
        Ok(port) if !port.is_empty() => format!("127.0.0.1:{port}"),
        _ => DEFAULT_KAFKA_SASL_SSL_BROKERS.to_owned(),
    }
}

/// The SASL user: `KAFKA_SASL_USERNAME`, or `outbox`.
///
/// # Examples
///
/// ```
/// assert!(!outbox_tests::secure::kafka_sasl_username().is_empty());
/// ```
pub fn kafka_sasl_username() -> String {
    env_or("KAFKA_SASL_USERNAME", DEFAULT_KAFKA_SASL_USERNAME)
}

/// The SASL password: `KAFKA_SASL_PASSWORD`, or `outbox-secret`.
///
/// # Examples
///
/// ```
/// assert!(!outbox_tests::secure::kafka_sasl_password().is_empty());
/// ```
pub fn kafka_sasl_password() -> String {
    env_or("KAFKA_SASL_PASSWORD", DEFAULT_KAFKA_SASL_PASSWORD)
}

/// The librdkafka settings, besides `bootstrap.servers`, that reach the
/// `SASL_SSL` listener: `security.protocol`, `sasl.mechanisms`,
/// `sasl.username`, `sasl.password` and `ssl.ca.location`, in that order.
///
/// # Panics
///
/// When the listener does not accept them (checked once per test binary),
/// with a message saying how to start it.
///
/// # Examples
///
/// ```no_run
/// let settings = outbox_tests::secure::kafka_sasl_ssl_settings();
/// assert_eq!(settings[0], ("security.protocol".to_owned(), "SASL_SSL".to_owned()));
/// ```
pub fn kafka_sasl_ssl_settings() -> Vec<(String, String)> {
    let settings = settings_unchecked();
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = READY.get_or_init(|| check_kafka(&settings)) {
        panic!("{why}; {HOW_TO_START_TLS}");
    }
    settings
}

/// A client configuration for the `SASL_SSL` listener: `bootstrap.servers`
/// plus [`kafka_sasl_ssl_settings`].
///
/// # Panics
///
/// As [`kafka_sasl_ssl_settings`].
///
/// # Examples
///
/// ```no_run
/// use rdkafka::producer::FutureProducer;
///
/// let producer: FutureProducer = outbox_tests::secure::kafka_sasl_ssl_config().create()?;
/// # Ok::<(), rdkafka::error::KafkaError>(())
/// ```
pub fn kafka_sasl_ssl_config() -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka_sasl_ssl_brokers());
    for (key, value) in kafka_sasl_ssl_settings() {
        config.set(key, value);
    }
    config
}

/// How a PostgreSQL client uses TLS, as libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    /// No TLS.
    Disable,
    /// TLS, certificate not checked.
    Require,
    /// TLS, certificate checked against the test CA and the host name.
    VerifyFull,
}

impl SslMode {
    /// The `sslmode` value.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_tests::secure::SslMode;
    /// assert_eq!(SslMode::VerifyFull.as_str(), "verify-full");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Require => "require",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The test database's URL with `sslmode` (and, for
/// [`SslMode::VerifyFull`], `sslrootcert`): from `DATABASE_URL_TLS`, or the
/// script's cluster at host `localhost` (the certificate's name).
///
/// # Panics
///
/// When the server does not accept a verified TLS session (checked once per
/// test binary), with a message saying how to start it.
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::secure::{SslMode, database_url_tls};
///
/// assert!(database_url_tls(SslMode::Require).ends_with("sslmode=require"));
/// ```
pub fn database_url_tls(mode: SslMode) -> String {
    ensure_postgres_tls();
    with_ssl(&base_tls_url(), mode, None)
}

/// Like [`database_url_tls`], connecting as `user` (no password: the test
/// cluster trusts local connections).
///
/// # Panics
///
/// As [`database_url_tls`].
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::secure::{SslMode, TLS_ONLY_ROLE, database_url_tls_as};
///
/// let url = database_url_tls_as(TLS_ONLY_ROLE, SslMode::Disable); // refused by pg_hba.conf
/// assert!(url.contains("outbox_tls_only@"));
/// ```
pub fn database_url_tls_as(user: &str, mode: SslMode) -> String {
    with_user(&database_url_tls(mode), user)
}

/// A `verify-full` URL of the test database that trusts `root_cert` instead
/// of the test CA, e.g. [`other_ca_path`] to see an untrusted certificate refused.
///
/// # Panics
///
/// As [`database_url_tls`].
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::secure;
///
/// let url = secure::database_url_verify_full_with(&secure::other_ca_path());
/// assert!(url.contains("other-ca.pem"));
/// ```
pub fn database_url_verify_full_with(root_cert: &Path) -> String {
    ensure_postgres_tls();
    with_ssl(&base_tls_url(), SslMode::VerifyFull, Some(root_cert))
}

/// The role that may connect only over TLS.
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_tests::secure::tls_only_role(), "outbox_tls_only");
/// ```
pub fn tls_only_role() -> &'static str {
    TLS_ONLY_ROLE
}

/// Checks, once per test binary, that the test database accepts a
/// `verify-full` session and that the session is encrypted.
///
/// # Panics
///
/// When it does not, with the cause and how to start the services.
///
/// # Examples
///
/// ```no_run
/// outbox_tests::secure::ensure_postgres_tls();
/// ```
pub fn ensure_postgres_tls() {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    if let Err(why) = READY.get_or_init(check_postgres) {
        panic!("{why}; {HOW_TO_START_TLS}");
    }
}

fn settings_unchecked() -> Vec<(String, String)> {
    let ca = kafka_ssl_ca_location();
    [
        ("security.protocol", "SASL_SSL".to_owned()),
        ("sasl.mechanisms", KAFKA_SASL_MECHANISM.to_owned()),
        ("sasl.username", kafka_sasl_username()),
        ("sasl.password", kafka_sasl_password()),
        ("ssl.ca.location", ca.display().to_string()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

/// A metadata request authenticated over TLS, through the library's own
/// broker check (which names the cause: refused, untrusted, login failed).
fn check_kafka(settings: &[(String, String)]) -> Result<(), String> {
    let brokers = kafka_sasl_ssl_brokers();
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &brokers);
    for (key, value) in settings {
        config.set(key, value);
    }
    outbox::kafka::check_brokers(&config, "test bench", CHECK_TIMEOUT)
        .map(drop)
        .map_err(|e| {
            format!(
                "the Kafka SASL_SSL listener cannot be used as user {} with CA {}: {e}: {}",
                kafka_sasl_username(),
                kafka_ssl_ca_location().display(),
                e.detail()
            )
        })
}

#[derive(QueryableByName)]
struct SslRow {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

fn check_postgres() -> Result<(), String> {
    let url = with_ssl(&base_tls_url(), SslMode::VerifyFull, None);
    let mut conn = PgConnection::establish(&url)
        .map_err(|e| format!("no verify-full TLS session with {url}: {e}"))?;
    let row: SslRow = diesel::sql_query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .get_result(&mut conn)
        .map_err(|e| format!("could not read pg_stat_ssl at {url}: {e}"))?;
    if row.ssl {
        Ok(())
    } else {
        Err(format!("the session with {url} is not encrypted"))
    }
}

/// `DATABASE_URL_TLS`, or the script's cluster: `DATABASE_URL`'s user,
/// port and database at host `localhost`.
fn base_tls_url() -> String {
    if let Ok(url) = std::env::var("DATABASE_URL_TLS") {
        return url;
    }
    with_ssl(
        &with_host(&database_url(), "localhost"),
        SslMode::VerifyFull,
        Some(&ca_path()),
    )
}

/// `url` with its `sslmode` and `sslrootcert` replaced: verify-full keeps the
/// URL's root certificate unless `root_cert` is given; the others drop it
/// (libpq verifies with a root certificate even under `require`).
fn with_ssl(url: &str, mode: SslMode, root_cert: Option<&Path>) -> String {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut kept_root = None;
    let mut params: Vec<String> = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').map_or(pair, |(key, _)| key) {
            "sslmode" => {}
            "sslrootcert" => kept_root = Some(pair.to_owned()),
            _ => params.push(pair.to_owned()),
        }
    }
    params.push(format!("sslmode={}", mode.as_str()));
    if mode == SslMode::VerifyFull {
        match root_cert {
            Some(path) => params.push(format!("sslrootcert={}", encode(path))),
            None => params.extend(kept_root),
        }
    }
    format!("{base}?{}", params.join("&"))
}

/// `url` with its host (not the port) replaced.
fn with_host(url: &str, host: &str) -> String {
    let Some(parts) = UrlParts::of(url) else {
        return url.to_owned();
    };
    let user = parts
        .user
        .map(|user| format!("{user}@"))
        .unwrap_or_default();
    // An IPv6 literal, `[::1]`, has colons of its own.
    let port = match parts.host_port.rsplit_once(':') {
        Some((_, port)) if !port.ends_with(']') => port,
        _ => "",
    };
    let port = if port.is_empty() {
        String::new()
    } else {
        format!(":{port}")
    };
    format!("{}://{user}{host}{port}{}", parts.scheme, parts.tail)
}

/// `url` with its user (and password) replaced by `user`, e.g. to connect as
/// one of the roles a test made (the test cluster trusts local connections).
/// Only the authority is changed: an `@` in the path or query is left alone. A
/// string that is not a URL is returned unchanged.
///
/// # Examples
///
/// ```
/// use outbox_tests::secure::with_user;
///
/// assert_eq!(
///     with_user("postgres://postgres:pw@127.0.0.1:54329/db?application_name=a@b", "app"),
///     "postgres://app@127.0.0.1:54329/db?application_name=a@b"
/// );
/// assert_eq!(with_user("postgres://db/app", "app"), "postgres://app@db/app");
/// ```
pub fn with_user(url: &str, user: &str) -> String {
    match UrlParts::of(url) {
        Some(parts) => format!(
            "{}://{user}@{}{}",
            parts.scheme, parts.host_port, parts.tail
        ),
        None => url.to_owned(),
    }
}

/// The `host:port` of `url` (as written, without the user), e.g. to forward
/// a port to the test database; the whole string if it is not a URL.
///
/// # Examples
///
/// ```
/// use outbox_tests::secure::host_port;
///
/// assert_eq!(host_port("postgres://u:pw@127.0.0.1:54329/db?x=a@b"), "127.0.0.1:54329");
/// assert_eq!(host_port("postgres://[::1]:5432"), "[::1]:5432");
/// ```
pub fn host_port(url: &str) -> &str {
    UrlParts::of(url).map_or(url, |parts| parts.host_port)
}

/// A URL split around its authority: the authority ends at the path or the
/// query, its user (and password) at the last `@` in it.
struct UrlParts<'a> {
    scheme: &'a str,
    user: Option<&'a str>,
    host_port: &'a str,
    /// The path and query.
    tail: &'a str,
}

impl<'a> UrlParts<'a> {
    fn of(url: &'a str) -> Option<Self> {
        let (scheme, rest) = url.split_once("://")?;
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, host_port)) => (Some(user), host_port),
            None => (None, authority),
        };
        Some(UrlParts {
            scheme,
            user,
            host_port,
            tail,
        })
    }
}

/// A path as a URL query value: bytes outside `[A-Za-z0-9-._~/]` percent-encoded.
fn encode(path: &Path) -> String {
    path.to_string_lossy()
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn existing(path: PathBuf) -> PathBuf {
    if !path.is_file() {
        panic!("{} is missing; {HOW_TO_START_TLS}", path.display());
    }
    path
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_modes_replace_the_urls_settings() {
        let url = "postgres://u@localhost:5432/db?application_name=x&sslmode=verify-full&sslrootcert=/ca.pem";
        assert_eq!(
            with_ssl(url, SslMode::Require, None),
            "postgres://u@localhost:5432/db?application_name=x&sslmode=require"
        );
        assert_eq!(with_ssl(url, SslMode::VerifyFull, None), url);
        assert_eq!(
            with_ssl(url, SslMode::VerifyFull, Some(Path::new("/my dir/o.pem"))),
            "postgres://u@localhost:5432/db?application_name=x&sslmode=verify-full&sslrootcert=/my%20dir/o.pem"
        );
        assert_eq!(
            with_ssl("postgres://u@h/db", SslMode::Disable, None),
            "postgres://u@h/db?sslmode=disable"
        );
    }

    #[test]
    fn hosts_and_users_are_replaced() {
        let url = "postgres://postgres:pw@127.0.0.1:54329/outbox_test?sslmode=disable";
        assert_eq!(
            with_host(url, "localhost"),
            "postgres://postgres:pw@localhost:54329/outbox_test?sslmode=disable"
        );
        assert_eq!(
            with_user(url, "app"),
            "postgres://app@127.0.0.1:54329/outbox_test?sslmode=disable"
        );
        assert_eq!(
            with_host("postgres://h/db", "localhost"),
            "postgres://localhost/db"
        );
    }
}
