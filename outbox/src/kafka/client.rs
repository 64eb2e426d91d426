//! Creating a Kafka client: its file settings checked, its [`Diagnostics`]
//! attached, and librdkafka's refusal shown without secrets. Every outbox
//! client (the relay's producer, the consumer, its dead-letter producer,
//! `dlq replay`, `topics create`, the start checks) is made here.

use std::fs::File;
use std::path::PathBuf;

use rdkafka::admin::AdminClient;
use rdkafka::config::FromClientConfigAndContext;
use rdkafka::consumer::{BaseConsumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, FutureProducer, Partitioner, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

use super::diagnostics::Diagnostics;
use super::secrets::scrub_error;

/// The librdkafka settings that name a file the client reads when it is
/// created (or, for a CA, when it first connects).
pub const FILE_SETTINGS: &[&str] = &[
    "ssl.ca.location",
    "ssl.certificate.location",
    "ssl.key.location",
    "ssl.keystore.location",
    "ssl.crl.location",
];

/// A file setting (see [`FILE_SETTINGS`]) names a file that cannot be read:
/// the setting, the path and, as the source, what the system said.
///
/// librdkafka reports this as `ssl.ca.location failed: error:05880002:x509
/// certificate routines::system lib`, which names neither the file nor why.
///
/// # Examples
///
/// ```
/// use outbox::kafka::check_setting_files;
/// use rdkafka::ClientConfig;
///
/// let mut config = ClientConfig::new();
/// config.set("ssl.ca.location", "/nonexistent/ca.pem");
/// let error = check_setting_files(&config).unwrap_err();
/// assert_eq!(error.setting(), "ssl.ca.location");
/// assert_eq!(error.to_string(), "Kafka setting `ssl.ca.location`: cannot read /nonexistent/ca.pem");
/// let cause = std::error::Error::source(&error).unwrap().to_string();
/// assert!(cause.starts_with("No such file or directory"), "{cause}");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("Kafka setting `{setting}`: cannot read {}", path.display())]
pub struct SettingFileError {
    setting: String,
    path: PathBuf,
    #[source]
    source: std::io::Error,
}

impl SettingFileError {
    /// The setting, e.g. `ssl.ca.location`.
    pub fn setting(&self) -> &str {
        &self.setting
    }

    /// The file it names.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }
}

/// Checks that each file setting of `config` ([`FILE_SETTINGS`]) names a
/// file (or, for `ssl.ca.location`, a directory) this process can open.
/// `ssl.ca.location=probe` (librdkafka looks for the system's CAs) and empty
/// values are left to librdkafka.
///
/// # Errors
///
/// A [`SettingFileError`] for the first file that cannot be opened.
///
/// # Examples
///
/// See [`SettingFileError`].
pub fn check_setting_files(config: &ClientConfig) -> Result<(), SettingFileError> {
    for setting in FILE_SETTINGS {
        let Some(value) = config.get(setting) else {
            continue;
        };
        if value.trim().is_empty() || (*setting == "ssl.ca.location" && value.trim() == "probe") {
            continue;
        }
        // Opening (not only `metadata`) finds a file this user may not read.
        if let Err(source) = File::open(value) {
            return Err(SettingFileError {
                setting: (*setting).to_owned(),
                path: PathBuf::from(value),
                source,
            });
        }
    }
    Ok(())
}

/// A Kafka client could not be created from its settings.
///
/// # Examples
///
/// ```
/// use outbox::kafka::{ClientError, Diagnostics, create_client};
/// use rdkafka::ClientConfig;
/// use rdkafka::producer::FutureProducer;
///
/// let mut config = ClientConfig::new();
/// config.set("bootstrap.servers", "127.0.0.1:59092").set("acks", "banana");
/// let Err(error) = create_client::<FutureProducer<Diagnostics>>(&mut config, "my producer") else {
///     panic!("librdkafka refuses acks=banana");
/// };
/// assert!(matches!(error, ClientError::Refused { .. }));
/// assert_eq!(error.to_string(), "invalid Kafka producer settings");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// A file setting names a file that cannot be read.
    #[error(transparent)]
    File(#[from] SettingFileError),
    /// librdkafka refused a setting (secret values masked in the source).
    #[error("invalid Kafka {kind} settings")]
    Refused {
        /// `producer`, `consumer` or `admin client`.
        kind: &'static str,
        /// What librdkafka said.
        #[source]
        source: KafkaError,
    },
}

/// A kind of librdkafka client [`create_client`] makes, as its errors name it.
pub trait ClientKind {
    /// `producer`, `consumer` or `admin client`.
    const KIND: &'static str;
}

impl<C: ClientContext + 'static, R> ClientKind for FutureProducer<C, R> {
    const KIND: &'static str = "producer";
}

impl<C: ProducerContext<P>, P: Partitioner> ClientKind for BaseProducer<C, P> {
    const KIND: &'static str = "producer";
}

impl<C: ConsumerContext, R> ClientKind for StreamConsumer<C, R> {
    const KIND: &'static str = "consumer";
}

impl<C: ConsumerContext> ClientKind for BaseConsumer<C> {
    const KIND: &'static str = "consumer";
}

impl<C: ClientContext> ClientKind for AdminClient<C> {
    const KIND: &'static str = "admin client";
}

/// Creates the client `client` (as log lines name it, e.g. `relay`) from
/// `config`, with [`Diagnostics`] as its context: the file settings checked
/// first ([`check_setting_files`]), librdkafka's log level set, and the
/// refusal of a setting shown without secrets. Returns the client and its
/// diagnostics.
///
/// # Errors
///
/// [`ClientError::File`] for a file setting naming a file that cannot be
/// read; [`ClientError::Refused`] when librdkafka refuses a setting.
///
/// # Examples
///
/// ```
/// use outbox::kafka::{Diagnostics, create_client};
/// use rdkafka::ClientConfig;
/// use rdkafka::producer::FutureProducer;
///
/// let mut config = ClientConfig::new();
/// config.set("bootstrap.servers", "127.0.0.1:59092");
/// let (producer, diagnostics): (FutureProducer<Diagnostics>, _) = create_client(&mut config, "my producer")?;
/// assert_eq!(diagnostics.brokers(), "127.0.0.1:59092");
/// # Ok::<(), outbox::kafka::ClientError>(())
/// ```
pub fn create_client<C>(
    config: &mut ClientConfig,
    client: &str,
) -> Result<(C, Diagnostics), ClientError>
where
    C: FromClientConfigAndContext<Diagnostics> + ClientKind,
{
    create_client_with(config, client, |diagnostics| diagnostics)
}

/// [`create_client`] with a context of your own, made by `context` from the
/// client's [`Diagnostics`] (which it should hand librdkafka's errors and
/// log lines to).
///
/// # Errors
///
/// As [`create_client`].
///
/// # Examples
///
/// ```
/// use outbox::kafka::{Diagnostics, create_client_with};
/// use rdkafka::ClientConfig;
/// use rdkafka::consumer::BaseConsumer;
///
/// let mut config = ClientConfig::new();
/// config.set("bootstrap.servers", "127.0.0.1:59092");
/// let (consumer, _): (BaseConsumer<Diagnostics>, _) =
///     create_client_with(&mut config, "my consumer", |diagnostics| diagnostics)?;
/// # Ok::<(), outbox::kafka::ClientError>(())
/// ```
pub fn create_client_with<C, X>(
    config: &mut ClientConfig,
    client: &str,
    context: impl FnOnce(Diagnostics) -> X,
) -> Result<(C, Diagnostics), ClientError>
where
    X: ClientContext,
    C: FromClientConfigAndContext<X> + ClientKind,
{
    check_setting_files(config)?;
    let diagnostics = Diagnostics::new(client, config);
    let created =
        C::from_config_and_context(config, context(diagnostics.clone())).map_err(|error| {
            ClientError::Refused {
                kind: C::KIND,
                source: scrub_error(error, config),
            }
        })?;
    Ok((created, diagnostics))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        for (key, value) in pairs {
            config.set(*key, *value);
        }
        config
    }

    #[test]
    fn each_file_setting_names_its_file_and_the_system_error() {
        for setting in FILE_SETTINGS {
            let error = check_setting_files(&config(&[(setting, "/nonexistent/file.pem")]))
                .expect_err(setting);
            assert_eq!(error.setting(), *setting);
            assert_eq!(error.path(), std::path::Path::new("/nonexistent/file.pem"));
            assert_eq!(
                error.to_string(),
                format!("Kafka setting `{setting}`: cannot read /nonexistent/file.pem")
            );
            let source = std::error::Error::source(&error).expect("the OS error");
            assert!(
                source.to_string().contains("No such file or directory"),
                "{source}"
            );
        }
    }

    #[test]
    fn probe_empty_and_readable_files_pass() {
        let here = env!("CARGO_MANIFEST_DIR");
        let readable = format!("{here}/Cargo.toml");
        let passing = config(&[
            ("ssl.ca.location", "probe"),
            ("ssl.certificate.location", ""),
            ("ssl.key.location", &readable),
            ("sasl.password", "/not/a/file/and/not/checked"),
        ]);
        check_setting_files(&passing).expect("nothing missing");
        // A CA directory is allowed (librdkafka reads the certificates in it).
        check_setting_files(&config(&[("ssl.ca.location", here)])).expect("a directory");
    }

    #[test]
    fn a_missing_file_fails_before_librdkafka_sees_it() {
        let mut config = config(&[
            ("bootstrap.servers", "127.0.0.1:1"),
            ("security.protocol", "ssl"),
            ("ssl.ca.location", "/nonexistent/ca.pem"),
        ]);
        let Err(error) = create_client::<BaseConsumer<Diagnostics>>(&mut config, "test") else {
            panic!("refused");
        };
        assert!(matches!(&error, ClientError::File(e) if e.setting() == "ssl.ca.location"));
        assert_eq!(
            error.to_string(),
            "Kafka setting `ssl.ca.location`: cannot read /nonexistent/ca.pem"
        );
    }

    #[test]
    fn a_refused_setting_names_the_client_kind_and_hides_secrets() {
        let mut config = config(&[("sasl.pasword", "outbox-secret")]);
        let Err(error) = create_client::<AdminClient<Diagnostics>>(&mut config, "test") else {
            panic!("refused");
        };
        assert_eq!(error.to_string(), "invalid Kafka admin client settings");
        let shown = format!("{:?} {}", error, std::error::Error::source(&error).unwrap());
        assert!(shown.contains("sasl.pasword"), "{shown}");
        assert!(!shown.contains("outbox-secret"), "{shown}");
    }
}
