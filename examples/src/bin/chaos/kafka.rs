//! The run's side of Kafka: the cluster's brokers, the run's topic (created
//! with a replication factor of the cluster's size, older runs' topics
//! deleted), the leader of a partition, and the dead letters of the topic.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::types::RDKafkaErrorCode;

/// Every topic of a run starts with this.
pub(crate) const TOPIC_PREFIX: &str = "outbox_chaos.";

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// What went wrong talking to Kafka.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KafkaError {
    #[error("Kafka at {brokers}: {what}")]
    Client {
        brokers: String,
        what: &'static str,
        source: rdkafka::error::KafkaError,
    },
    #[error("topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("topic {topic} has no partition {partition} in the cluster's metadata")]
    NoPartition { topic: String, partition: i32 },
}

/// A broker of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Broker {
    /// Its `node.id` (the services script's node number).
    pub(crate) id: i32,
    pub(crate) address: String,
}

fn client(brokers: &str) -> Result<BaseConsumer, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "outbox-chaos-metadata")
        .create()
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            what: "no client",
            source,
        })
}

/// The cluster's brokers, by id (blocking).
pub(crate) fn brokers(bootstrap: &str) -> Result<Vec<Broker>, KafkaError> {
    let metadata = client(bootstrap)?
        .fetch_metadata(None, METADATA_TIMEOUT)
        .map_err(|source| KafkaError::Client {
            brokers: bootstrap.to_owned(),
            what: "no metadata",
            source,
        })?;
    let mut brokers: Vec<Broker> = metadata
        .brokers()
        .iter()
        .map(|b| Broker {
            id: b.id(),
            address: format!("{}:{}", b.host(), b.port()),
        })
        .collect();
    brokers.sort_by_key(|b| b.id);
    Ok(brokers)
}

/// The cluster's id (blocking; `None` when no broker answers): a cluster
/// replaced under a run (its storage formatted anew) shows here.
pub(crate) fn cluster_id(brokers: &str) -> Option<String> {
    client(brokers)
        .ok()?
        .client()
        .fetch_cluster_id(METADATA_TIMEOUT)
}

/// The leader of `partition` of `topic` (blocking).
pub(crate) fn leader(brokers: &str, topic: &str, partition: i32) -> Result<i32, KafkaError> {
    let metadata = client(brokers)?
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            what: "no metadata",
            source,
        })?;
    metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions())
        .find(|p| p.id() == partition)
        .map(|p| p.leader())
        .filter(|leader| *leader >= 0)
        .ok_or_else(|| KafkaError::NoPartition {
            topic: topic.to_owned(),
            partition,
        })
}

fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>, KafkaError> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            what: "no admin client",
            source,
        })
}

/// Deletes the topics of earlier runs (best effort: a failure is only said).
pub(crate) async fn delete_earlier_topics(brokers: &str) {
    let names = {
        let brokers = brokers.to_owned();
        tokio::task::spawn_blocking(move || -> Result<Vec<String>, KafkaError> {
            let metadata = client(&brokers)?
                .fetch_metadata(None, METADATA_TIMEOUT)
                .map_err(|source| KafkaError::Client {
                    brokers: brokers.clone(),
                    what: "no metadata",
                    source,
                })?;
            Ok(metadata
                .topics()
                .iter()
                .map(|t| t.name().to_owned())
                .filter(|name| name.starts_with(TOPIC_PREFIX))
                .collect())
        })
        .await
    };
    let names = match names {
        Ok(Ok(names)) if !names.is_empty() => names,
        Ok(Ok(_)) => return,
        Ok(Err(error)) => return eprintln!("chaos: earlier topics not deleted: {error}"),
        Err(error) => return eprintln!("chaos: earlier topics not deleted: {error}"),
    };
    let Ok(admin) = admin(brokers) else { return };
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    if let Err(error) = admin.delete_topics(&names, &options).await {
        eprintln!("chaos: earlier topics not deleted: {error}");
    }
}

/// Creates `topic` with `partitions`, replicated on every one of `replicas`
/// brokers, `min.insync.replicas` 2 when there are 3.
pub(crate) async fn create_topic(
    brokers: &str,
    topic: &str,
    partitions: i32,
    replicas: usize,
) -> Result<(), KafkaError> {
    let admin = admin(brokers)?;
    let min_insync = replicas.min(2).to_string();
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas as i32))
        .set("min.insync.replicas", &min_insync);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            what: "create topic",
            source,
        })?;
    for result in results {
        if let Err((topic, code)) = result {
            return Err(KafkaError::Topic { topic, code });
        }
    }
    Ok(())
}

/// Records in `topic`'s dead-letter topic (0 when it does not exist; blocking).
pub(crate) fn dead_letters(brokers: &str, topic: &str) -> Result<i64, KafkaError> {
    let dlq = outbox_diesel::dead_letter::dlq_topic(topic);
    let consumer = client(brokers)?;
    let metadata = consumer
        .fetch_metadata(Some(&dlq), METADATA_TIMEOUT)
        .map_err(|source| KafkaError::Client {
            brokers: brokers.to_owned(),
            what: "no metadata",
            source,
        })?;
    let mut records = 0;
    for t in metadata.topics() {
        if t.error().is_some() {
            continue; // unknown topic: no dead letter was ever sent
        }
        for p in t.partitions() {
            let (low, high) = consumer
                .fetch_watermarks(&dlq, p.id(), METADATA_TIMEOUT)
                .map_err(|source| KafkaError::Client {
                    brokers: brokers.to_owned(),
                    what: "no watermarks",
                    source,
                })?;
            records += high - low;
        }
    }
    Ok(records)
}
