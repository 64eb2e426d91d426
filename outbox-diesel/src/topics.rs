//! Creating the topics of your models and their dead-letter topics, with the
//! partitions and replication you choose, before anything is published: a
//! cluster with `auto.create.topics.enable=false` (most managed ones) refuses
//! records for a topic that does not exist, and one that creates topics on
//! first use gives them the broker's defaults.
//!
//! Creating is idempotent: a topic that exists is left as it is and reported
//! [`TopicStatus::Exists`] with its partition count (Kafka never takes
//! partitions away, and adding some moves keys to other partitions: that is
//! for you to decide, with `kafka-topics.sh --alter`).
//!
//! The topics are asked for in one request, and the brokers answer for each:
//! one refused does not stop the others, and every refusal is reported
//! together ([`RefusedTopics`]).

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use outbox::Message;
use outbox::kafka::{Diagnostics, MaskedSettings, create_client};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

use crate::dead_letter::DLQ_SUFFIX;
use crate::error::{Error, Result};

/// How long the brokers have to answer each request, unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates topics (and their `.dlq` topics); see the [module documentation](self).
///
/// # Examples
///
/// ```no_run
/// use outbox::Outboxed;
/// use outbox_diesel::topics::{CreateTopics, TopicStatus};
///
/// #[derive(Outboxed)]
/// #[outbox(topic = "accounts", route = "users")]
/// struct User { id: i64 }
///
/// # async fn run() -> Result<(), outbox_diesel::Error> {
/// let created = CreateTopics::new("127.0.0.1:59092", 6, 3)
///     .dead_letter(true)
///     .create(&[User::TOPIC])
///     .await?;
/// for topic in &created {
///     if let TopicStatus::Exists { partitions } = topic.status {
///         println!("{} was there already, with {partitions} partitions", topic.name);
///     }
/// }
/// # Ok(()) }
/// ```
///
/// Its `Debug` output masks secret settings (`sasl.password`, …).
#[derive(Clone)]
#[must_use]
pub struct CreateTopics {
    brokers: String,
    partitions: i32,
    replication_factor: i32,
    dead_letter: bool,
    timeout: Duration,
    settings: Vec<(String, String)>,
}

impl fmt::Debug for CreateTopics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateTopics")
            .field("brokers", &self.brokers)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("dead_letter", &self.dead_letter)
            .field("timeout", &self.timeout)
            .field(
                "settings",
                &MaskedSettings::new(self.settings.iter().map(|(k, v)| (k, v))),
            )
            .finish()
    }
}

/// One topic [`CreateTopics::create`] was asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TopicOutcome {
    /// The topic.
    pub name: String,
    /// Created, or there already.
    pub status: TopicStatus,
}

/// The brokers refused some of the topics [`CreateTopics::create`] was asked
/// for: each with why, and what became of the others (created, or there
/// already), which the refusals did not stop.
///
/// # Examples
///
/// ```no_run
/// use outbox_diesel::topics::CreateTopics;
///
/// # async fn run() -> Result<(), outbox_diesel::Error> {
/// match CreateTopics::new("127.0.0.1:59092", 6, 3).create(&["accounts", "billing"]).await {
///     Ok(created) => println!("{} topics ready", created.len()),
///     Err(outbox_diesel::Error::TopicsRefused(refused)) => {
///         for topic in refused.refused() {
///             eprintln!("{}: {}", topic.name, topic.code);
///         }
///         println!("{} others ready", refused.outcomes().len());
///     }
///     Err(other) => return Err(other),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RefusedTopics {
    refused: Vec<RefusedTopic>,
    outcomes: Vec<TopicOutcome>,
}

/// A topic the brokers refused to create.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct RefusedTopic {
    /// The topic.
    pub name: String,
    /// What the brokers said, e.g. `InvalidReplicationFactor`.
    pub code: RDKafkaErrorCode,
}

impl RefusedTopic {
    /// Why the brokers refused it, in words: what the code usually means
    /// when creating a topic, or librdkafka's text for the code.
    pub fn reason(&self) -> String {
        use RDKafkaErrorCode as Code;
        let hint = match self.code {
            Code::InvalidReplicationFactor => "more copies than there are brokers",
            Code::InvalidTopic => {
                "an invalid name, or one that collides with an existing topic (`.` and `_` \
                 count as the same)"
            }
            Code::TopicAuthorizationFailed | Code::ClusterAuthorizationFailed => {
                "not allowed to create topics: an ACL is missing"
            }
            Code::PolicyViolation => "against the cluster's topic creation policy",
            Code::InvalidPartitions => "a partition count the brokers refuse",
            _ => return self.code.to_string(),
        };
        format!("{:?}: {hint}", self.code)
    }
}

impl RefusedTopics {
    /// The topics refused, each with why, in the order given.
    pub fn refused(&self) -> &[RefusedTopic] {
        &self.refused
    }

    /// What became of the other topics, in the order given.
    pub fn outcomes(&self) -> &[TopicOutcome] {
        &self.outcomes
    }
}

impl fmt::Display for RefusedTopics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.refused.len() == 1 {
            "topic"
        } else {
            "topics"
        };
        write!(f, "the brokers refused {noun} ")?;
        for (i, topic) in self.refused.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{} ({})", topic.name, topic.reason())?;
        }
        match self.outcomes.len() {
            0 => Ok(()),
            1 => write!(f, "; the other one was created or exists"),
            n => write!(f, "; the {n} others were created or exist"),
        }
    }
}

/// What became of a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicStatus {
    /// Created with the partitions and replication asked for.
    Created,
    /// It existed; left as it is.
    Exists {
        /// Its partitions, which may be fewer or more than asked for.
        partitions: usize,
    },
}

impl CreateTopics {
    /// Topics of `partitions` partitions, each with `replication_factor`
    /// copies, on the cluster at `brokers`.
    pub fn new(brokers: impl Into<String>, partitions: i32, replication_factor: i32) -> Self {
        CreateTopics {
            brokers: brokers.into(),
            partitions,
            replication_factor,
            dead_letter: false,
            timeout: DEFAULT_TIMEOUT,
            settings: Vec::new(),
        }
    }

    /// Also create `<topic>.dlq` for each topic (same partitions and
    /// replication), where consumers with a dead-letter policy send records.
    pub fn dead_letter(mut self, dead_letter: bool) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    /// A librdkafka setting of the admin client, e.g. `security.protocol`.
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.push((key.into(), value.into()));
        self
    }

    /// How long the brokers have to answer each request (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The topics `create` makes of `topics`, each followed by its `.dlq`
    /// when asked for; checked against Kafka's rule for names.
    ///
    /// # Errors
    ///
    /// [`Error::Message`] with [`outbox::Error::InvalidTopic`] naming the
    /// first bad name (a `.dlq` name counts: it is 4 characters longer).
    pub fn names(&self, topics: &[&str]) -> Result<Vec<String>> {
        let mut names = Vec::with_capacity(topics.len() * 2);
        for topic in topics {
            Message::check_topic(topic)?;
            names.push((*topic).to_owned());
            if self.dead_letter && !topic.ends_with(DLQ_SUFFIX) {
                let dlq = format!("{topic}{DLQ_SUFFIX}");
                Message::check_topic(&dlq)?;
                names.push(dlq);
            }
        }
        let mut seen = HashSet::new();
        names.retain(|name| seen.insert(name.clone()));
        Ok(names)
    }

    /// Creates every topic of `topics` that does not exist (and its `.dlq`
    /// with [`dead_letter`](Self::dead_letter)); says what became of each, in
    /// the order given.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for partitions or replication below 1 or no topic;
    /// [`Error::Message`] for a bad topic name (nothing is created);
    /// [`Error::KafkaClient`] when librdkafka refuses a setting, or a file
    /// setting (`ssl.ca.location`, …) names a file that cannot be read
    /// (nothing is asked of the brokers);
    /// [`Error::KafkaConnect`] when the brokers cannot be reached, or refuse
    /// the TLS handshake or the login; [`Error::TopicsRefused`] when they
    /// refuse some topics (a replication factor above the number of brokers,
    /// a name that collides with an existing one, a missing ACL): every
    /// refusal with its reason, and what became of the other topics, which
    /// were created all the same; [`Error::Kafka`] when the request fails.
    pub async fn create(&self, topics: &[&str]) -> Result<Vec<TopicOutcome>> {
        let invalid = |name, reason: &str| {
            Err(Error::Config {
                name,
                reason: reason.to_owned(),
            })
        };
        if topics.is_empty() {
            return invalid("topics", "no topic given");
        }
        if self.partitions < 1 {
            return invalid("partitions", "must be at least 1");
        }
        if self.replication_factor < 1 {
            return invalid("replication_factor", "must be at least 1");
        }
        let names = self.names(topics)?;
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (key, value) in &self.settings {
            config.set(key, value);
        }
        // Settings and files first: they fail without contacting anything.
        let check = config.clone();
        let (admin, _): (AdminClient<Diagnostics>, _) =
            create_client(&mut config, "topics create")?;
        let admin = Arc::new(admin);
        // Named errors (refused, unknown host, login, certificate) before any request.
        let timeout = self.timeout;
        tokio::task::spawn_blocking(move || {
            outbox::kafka::check_brokers(&check, "topics create", timeout)
        })
        .await
        .map_err(|_| kafka_error("checking the brokers", KafkaError::Canceled))??;
        let new_topics: Vec<NewTopic<'_>> = names
            .iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    self.partitions,
                    TopicReplication::Fixed(self.replication_factor),
                )
            })
            .collect();
        let options = AdminOptions::new()
            .request_timeout(Some(self.timeout))
            .operation_timeout(Some(self.timeout));
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(|source| kafka_error("creating topics", source))?;
        let mut outcomes = Vec::with_capacity(names.len());
        let mut refused = Vec::new();
        for (name, result) in names.iter().zip(results) {
            let status = match result {
                Ok(_) => TopicStatus::Created,
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => TopicStatus::Exists {
                    partitions: partitions_of(&admin, name, self.timeout).await?,
                },
                Err((_, code)) => {
                    refused.push(RefusedTopic {
                        name: name.clone(),
                        code,
                    });
                    continue;
                }
            };
            outcomes.push(TopicOutcome {
                name: name.clone(),
                status,
            });
        }
        if refused.is_empty() {
            Ok(outcomes)
        } else {
            Err(Error::TopicsRefused(RefusedTopics { refused, outcomes }))
        }
    }
}

fn kafka_error(context: &str, source: KafkaError) -> Error {
    Error::Kafka {
        context: context.to_owned(),
        source,
    }
}

/// The partition count of `topic`, which exists.
async fn partitions_of(
    admin: &Arc<AdminClient<Diagnostics>>,
    topic: &str,
    timeout: Duration,
) -> Result<usize> {
    let context = format!("reading the partitions of {topic}");
    let fetching = Arc::clone(admin);
    let name = topic.to_owned();
    let metadata =
        tokio::task::spawn_blocking(move || fetching.inner().fetch_metadata(Some(&name), timeout))
            .await
            .map_err(|_| kafka_error(&context, KafkaError::Canceled))?
            .map_err(|source| kafka_error(&context, source))?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len());
    Ok(partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_each_topic_with_its_dlq() {
        let create = CreateTopics::new("b:9092", 1, 1).dead_letter(true);
        assert_eq!(
            create.names(&["accounts", "billing.dlq"]).unwrap(),
            ["accounts", "accounts.dlq", "billing.dlq"]
        );
        let error = create.names(&["ok", "not ok"]).unwrap_err();
        assert_eq!(
            crate::error::error_chain(&error),
            "invalid topic name \"not ok\": contains ' '; Kafka topic names use only ASCII \
             letters, digits, `.`, `_` and `-`"
        );
        let long = "a".repeat(247);
        assert!(
            create.names(&[&long]).is_err(),
            "its .dlq is 251 characters"
        );
        assert!(CreateTopics::new("b:9092", 1, 1).names(&[&long]).is_ok());
    }

    #[test]
    fn debug_output_masks_secret_settings() {
        let create = CreateTopics::new("b:9092", 1, 1)
            .set("sasl.username", "outbox")
            .set("sasl.password", "outbox-secret");
        let shown = format!("{create:?}");
        assert!(!shown.contains("outbox-secret"), "{shown}");
        assert!(shown.contains(r#""sasl.password": "***""#), "{shown}");
        assert!(shown.contains(r#""sasl.username": "outbox""#), "{shown}");
    }

    #[tokio::test]
    async fn a_refused_setting_names_its_key_not_its_value_before_any_broker_is_asked() {
        // Port 1: nothing listens, so only a failure before contacting it is fast
        // and names the setting.
        let error = CreateTopics::new("127.0.0.1:1", 1, 1)
            .set("sasl.pasword", "outbox-secret") // misspelt: refused, quoted
            .create(&["accounts"])
            .await
            .unwrap_err();
        let shown = format!("{} {error:?}", crate::error::error_chain(&error));
        assert!(
            matches!(
                error,
                Error::KafkaClient(outbox::kafka::ClientError::Refused { .. })
            ),
            "{shown}"
        );
        assert!(
            shown.starts_with("invalid Kafka admin client settings: "),
            "{shown}"
        );
        assert!(shown.contains("sasl.pasword"), "{shown}");
        assert!(!shown.contains("outbox-secret"), "{shown}");

        let error = CreateTopics::new("127.0.0.1:1", 1, 1)
            .set("ssl.ca.location", "/nonexistent/ca.pem")
            .create(&["accounts"])
            .await
            .unwrap_err();
        assert_eq!(
            crate::error::error_chain(&error),
            "Kafka setting `ssl.ca.location`: cannot read /nonexistent/ca.pem: No such file or \
             directory (os error 2)"
        );
    }

    #[test]
    fn refusals_are_listed_together_with_how_many_others_went_through() {
        let refused = RefusedTopics {
            refused: vec![
                RefusedTopic {
                    name: "a_b".into(),
                    code: RDKafkaErrorCode::InvalidTopic,
                },
                RefusedTopic {
                    name: "c".into(),
                    code: RDKafkaErrorCode::InvalidReplicationFactor,
                },
            ],
            outcomes: vec![TopicOutcome {
                name: "d".into(),
                status: TopicStatus::Created,
            }],
        };
        assert_eq!(
            refused.to_string(),
            "the brokers refused topics a_b (InvalidTopic: an invalid name, or one that collides \
             with an existing topic (`.` and `_` count as the same)), c (InvalidReplicationFactor: \
             more copies than there are brokers); the other one was created or exists"
        );
    }
}
