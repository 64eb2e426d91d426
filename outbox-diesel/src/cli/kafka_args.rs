//! The Kafka arguments every command that talks to Kafka takes: `--brokers`
//! (or `KAFKA_BROKERS`) and `-X KEY=VALUE` librdkafka settings.
//!
//! Flattened into each command, which says what its `-X` settings are for
//! with `#[command(mut_arg("settings", ..))]` (the relay's are producer
//! settings, under their own long name `--producer-setting`).

use clap::Args;

use super::Failure;

#[derive(Debug, Args)]
pub(super) struct KafkaArgs {
    /// Kafka bootstrap servers, host:port[,host:port…]
    #[arg(
        long,
        env = "KAFKA_BROKERS",
        hide_env_values = true,
        value_name = "HOSTS"
    )]
    brokers: Option<String>,

    /// A librdkafka setting, e.g. -X security.protocol=SASL_SSL (repeatable)
    #[arg(short = 'X', long = "kafka-setting", value_name = "KEY=VALUE", value_parser = parse_setting)]
    settings: Vec<Setting>,
}

impl KafkaArgs {
    /// The brokers given, or the command-line mistake of giving none.
    pub(super) fn brokers(&self) -> Result<String, Failure> {
        self.brokers
            .as_deref()
            .map(str::trim)
            .filter(|brokers| !brokers.is_empty())
            .map(str::to_owned)
            .ok_or_else(|| Failure::usage("no Kafka brokers: pass --brokers or set KAFKA_BROKERS"))
    }

    /// The `-X` settings, in the order given.
    pub(super) fn settings(&self) -> Vec<(String, String)> {
        self.settings
            .iter()
            .map(|setting| (setting.key.clone(), setting.value.clone()))
            .collect()
    }
}

/// A `-X KEY=VALUE` librdkafka setting; its `Debug` output masks a secret
/// value (`sasl.password`, …).
#[derive(Clone, PartialEq, Eq)]
struct Setting {
    key: String,
    value: String,
}

impl std::fmt::Debug for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let value = outbox::kafka::mask_setting(&self.key, &self.value);
        write!(f, "{}={value:?}", self.key)
    }
}

/// Parses a `-X KEY=VALUE` librdkafka setting.
fn parse_setting(text: &str) -> Result<Setting, String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok(Setting {
            key: key.trim().to_owned(),
            value: value.to_owned(),
        }),
        _ => Err("expected KEY=VALUE, e.g. compression.type=lz4".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn settings_are_key_equals_value() {
        let setting = parse_setting("compression.type=lz4").unwrap();
        assert_eq!(
            (&*setting.key, &*setting.value),
            ("compression.type", "lz4")
        );
        let setting = parse_setting("sasl.password=a=b").unwrap();
        assert_eq!((&*setting.key, &*setting.value), ("sasl.password", "a=b"));
        assert!(parse_setting("nonsense").is_err());
        assert!(parse_setting("=1").is_err());
    }

    #[test]
    fn a_secret_setting_is_masked_in_debug_output() {
        let setting = parse_setting("sasl.password=outbox-secret").unwrap();
        assert_eq!(format!("{setting:?}"), "sasl.password=\"***\"");
        let setting = parse_setting("security.protocol=SASL_SSL").unwrap();
        assert_eq!(format!("{setting:?}"), "security.protocol=\"SASL_SSL\"");
    }

    #[derive(Debug, Parser)]
    struct Command {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    #[test]
    fn brokers_are_required_and_trimmed() {
        Command::command().debug_assert();
        let parsed = Command::try_parse_from(["x", "--brokers", " b:9092 ", "-X", "a=1"]).unwrap();
        assert_eq!(parsed.kafka.brokers().unwrap(), "b:9092");
        assert_eq!(parsed.kafka.settings(), [("a".to_owned(), "1".to_owned())]);
        let parsed = Command::try_parse_from(["x", "--brokers", " "]).unwrap();
        assert_eq!(
            parsed.kafka.brokers().unwrap_err().message,
            "no Kafka brokers: pass --brokers or set KAFKA_BROKERS"
        );
    }
}
