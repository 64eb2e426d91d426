//! Secret settings (`sasl.password`, `ssl.key.pem`, …): masked wherever
//! settings, librdkafka's errors or its log lines are shown.

use std::fmt;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaConfRes;

/// What a secret value is shown as.
pub const MASK: &str = "***";

/// Settings whose values are secret, beyond those [`is_secret_setting`]
/// recognises by name (`password`, `secret`): private keys and the
/// OAUTHBEARER configuration, which may hold a client secret.
const SECRET_SETTINGS: &[&str] = &[
    "ssl.key.pem",
    "ssl_key",
    "ssl.keystore.location.password",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.assertion.private.key.pem",
    "sasl.oauthbearer.assertion.private.key.passphrase",
];

/// Values shorter than this are not searched for in free text (errors, log
/// lines): replacing every `a` of a line would hide the line, not the secret.
const SHORTEST_SCRUBBED: usize = 4;

/// Whether the librdkafka setting `key` holds a secret: any key naming a
/// password, a passphrase or a secret, and private keys (`ssl.key.pem`).
///
/// # Examples
///
/// ```
/// use outbox::kafka::is_secret_setting;
///
/// assert!(is_secret_setting("sasl.password"));
/// assert!(is_secret_setting("ssl.key.password"));
/// assert!(is_secret_setting("sasl.oauthbearer.client.secret"));
/// assert!(is_secret_setting("ssl.key.pem"));
/// assert!(!is_secret_setting("sasl.username"));
/// assert!(!is_secret_setting("ssl.ca.location"));
/// ```
pub fn is_secret_setting(key: &str) -> bool {
    let key = key.trim().to_ascii_lowercase();
    ["password", "secret", "passphrase"]
        .iter()
        .any(|word| key.contains(word))
        || SECRET_SETTINGS.contains(&key.as_str())
}

/// `value` as it may be shown for the librdkafka setting `key`: [`MASK`] for
/// a secret one ([`is_secret_setting`]), the value itself otherwise.
///
/// # Examples
///
/// ```
/// use outbox::kafka::mask_setting;
///
/// assert_eq!(mask_setting("sasl.password", "outbox-secret"), "***");
/// assert_eq!(mask_setting("security.protocol", "SASL_SSL"), "SASL_SSL");
/// ```
pub fn mask_setting<'a>(key: &str, value: &'a str) -> &'a str {
    if is_secret_setting(key) { MASK } else { value }
}

/// Settings shown as `key=value` pairs, secrets masked: for logs, errors and
/// `Debug` output.
///
/// # Examples
///
/// ```
/// use outbox::kafka::MaskedSettings;
///
/// let settings = [("security.protocol", "SASL_SSL"), ("sasl.password", "outbox-secret")];
/// let shown = MaskedSettings::new(settings.iter().copied()).to_string();
/// assert_eq!(shown, "security.protocol=SASL_SSL sasl.password=***");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct MaskedSettings(Vec<(String, String)>);

impl MaskedSettings {
    /// The pairs, masked now: nothing secret is kept.
    pub fn new<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        MaskedSettings(
            pairs
                .into_iter()
                .map(|(key, value)| {
                    let key = key.as_ref();
                    (key.to_owned(), mask_setting(key, value.as_ref()).to_owned())
                })
                .collect(),
        )
    }

    /// The settings of `config`, in key order.
    pub fn of(config: &ClientConfig) -> Self {
        // `config_map` hides rdkafka's own list of secrets; this masks ours too.
        Self::new(config.config_map())
    }
}

impl fmt::Display for MaskedSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (key, value)) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{key}={value}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for MaskedSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// The secret values of a client's settings, to remove from text librdkafka
/// writes (errors, log lines) before it is shown.
#[derive(Clone, Default)]
pub(crate) struct Secrets(Vec<String>);

impl Secrets {
    pub(crate) fn of<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        let mut values: Vec<String> = pairs
            .into_iter()
            .filter(|(key, value)| {
                is_secret_setting(key.as_ref()) && value.as_ref().len() >= SHORTEST_SCRUBBED
            })
            .map(|(_, value)| value.as_ref().to_owned())
            .collect();
        // Longest first: a secret containing another is masked whole.
        values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        Secrets(values)
    }

    /// `text` with every secret value replaced by [`MASK`].
    pub(crate) fn scrub(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_owned(), |text, secret| text.replace(secret, MASK))
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secrets({} masked)", self.0.len())
    }
}

/// `error` with nothing secret in it. librdkafka's refusal of a setting
/// (`KafkaError::ClientConfig`) carries the value, which its `Display` and
/// `Debug` print: the value of a secret setting is masked, and so is the value
/// of a setting librdkafka does not know (a misspelt `sasl.pasword` holds a
/// password all the same); librdkafka's description, which may quote the
/// value, is masked too. A value with a NUL byte is not quoted either.
///
/// # Examples
///
/// ```
/// use outbox::kafka::without_secrets;
/// use rdkafka::ClientConfig;
/// use rdkafka::producer::FutureProducer;
///
/// let refused = ClientConfig::new()
///     .set("sasl.pasword", "outbox-secret") // misspelt: no such setting
///     .create::<FutureProducer>()
///     .err()
///     .expect("refused");
/// let shown = without_secrets(refused);
/// assert!(!shown.to_string().contains("outbox-secret"), "{shown}");
/// assert!(!format!("{shown:?}").contains("outbox-secret"), "{shown:?}");
/// assert!(shown.to_string().contains("sasl.pasword"), "{shown}");
/// ```
pub fn without_secrets(error: KafkaError) -> KafkaError {
    match error {
        KafkaError::ClientConfig(code, description, key, value)
            if is_secret_setting(&key) || code == RDKafkaConfRes::RD_KAFKA_CONF_UNKNOWN =>
        {
            let description = if value.is_empty() {
                description
            } else {
                description.replace(&value, MASK)
            };
            KafkaError::ClientConfig(code, description, key, MASK.to_owned())
        }
        KafkaError::Nul(error) => KafkaError::ClientCreation(format!(
            "a setting holds a NUL byte (at byte {})",
            error.nul_position()
        )),
        other => other,
    }
}

/// [`without_secrets`], and the secret values of `config` removed from the
/// descriptions of other errors (librdkafka's refusal to create a client may
/// quote a setting).
pub(crate) fn scrub_error(error: KafkaError, config: &ClientConfig) -> KafkaError {
    let secrets = Secrets::of(config.config_map_unmasked());
    match without_secrets(error) {
        KafkaError::ClientCreation(text) => KafkaError::ClientCreation(secrets.scrub(&text)),
        KafkaError::ClientConfig(code, description, key, value) => KafkaError::ClientConfig(
            code,
            secrets.scrub(&description),
            key,
            secrets.scrub(&value),
        ),
        other => other,
    }
}

/// The settings of a [`ClientConfig`] with their values, which rdkafka's
/// `config_map` masks (only some of them): needed to find secrets in text.
pub(crate) trait Unmasked {
    fn config_map_unmasked(&self) -> Vec<(&str, &str)>;
}

impl Unmasked for ClientConfig {
    fn config_map_unmasked(&self) -> Vec<(&str, &str)> {
        self.config_map()
            .into_keys()
            .filter_map(|key| self.get(key).map(|value| (key, value)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_settings_are_masked_and_others_shown() {
        for key in [
            "sasl.password",
            "ssl.key.password",
            "ssl.keystore.password",
            "ssl.truststore.password",
            "sasl.oauthbearer.client.secret",
            "ssl.key.pem",
            "sasl.oauthbearer.config",
            "SASL.PASSWORD",
        ] {
            assert_eq!(mask_setting(key, "hunter22"), MASK, "{key}");
        }
        for key in [
            "sasl.username",
            "sasl.mechanism",
            "ssl.ca.location",
            "ssl.certificate.pem",
            "bootstrap.servers",
        ] {
            assert_eq!(mask_setting(key, "value"), "value", "{key}");
        }
    }

    #[test]
    fn a_refused_secret_setting_keeps_its_key_not_its_value() {
        let error = KafkaError::ClientConfig(
            RDKafkaConfRes::RD_KAFKA_CONF_INVALID,
            "Invalid value \"hunter22\" for configuration property \"ssl.key.password\"".into(),
            "ssl.key.password".into(),
            "hunter22".into(),
        );
        let masked = without_secrets(error);
        for shown in [masked.to_string(), format!("{masked:?}")] {
            assert!(!shown.contains("hunter22"), "{shown}");
            assert!(shown.contains("ssl.key.password"), "{shown}");
        }
    }

    #[test]
    fn secrets_are_scrubbed_from_text_longest_first() {
        let secrets = Secrets::of([
            ("sasl.password", "pass"),
            ("ssl.key.password", "password1"),
            ("sasl.username", "user"),
            ("sasl.oauthbearer.client.secret", "abc"),
        ]);
        assert_eq!(
            secrets.scrub("user gave password1 and pass, abc"),
            "user gave *** and ***, abc"
        );
    }

    #[test]
    fn masked_settings_show_no_secret() {
        let mut config = ClientConfig::new();
        config
            .set("sasl.password", "outbox-secret")
            .set("ssl.key.pem", "-----BEGIN PRIVATE KEY-----")
            .set("sasl.username", "outbox");
        let shown = MaskedSettings::of(&config);
        for text in [shown.to_string(), format!("{shown:?}")] {
            assert!(!text.contains("outbox-secret"), "{text}");
            assert!(!text.contains("BEGIN PRIVATE KEY"), "{text}");
            assert!(text.contains("outbox"), "{text}");
        }
    }
}
