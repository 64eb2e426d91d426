//! Resetting the committed offsets of a consumer group: [`reset`], behind
//! `outbox consumer reset`.
//!
//! The re-init of an inbox consumer: once its consumers are stopped, move the
//! group's offsets back (to the start of each partition, to a point in time,
//! to an offset) or forward (to the end), then start the consumers again. They
//! read from the new offsets; the inbox skips the messages it has already
//! applied (within its retention), so going back re-applies nothing twice.
//!
//! A group with members is refused: a running consumer would commit its own
//! offsets over the reset (and the brokers refuse a commit from outside a
//! group that has members).
//!
//! # Examples
//!
//! ```no_run
//! use outbox_diesel::group_reset::{self, ResetTo};
//! use rdkafka::ClientConfig;
//!
//! let mut kafka = ClientConfig::new();
//! kafka.set("bootstrap.servers", "127.0.0.1:59092");
//! for partition in group_reset::reset(&kafka, "billing", &["orders"], ResetTo::Earliest, false)? {
//!     println!("{}[{}]: {:?} -> {}", partition.topic, partition.partition, partition.from, partition.to);
//! }
//! # Ok::<(), outbox_diesel::Error>(())
//! ```

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use outbox::kafka::{CHECK_TIMEOUT, Diagnostics, check_brokers, create_client};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;

use crate::error::{Error, Result};

/// How long the brokers have to answer each request of a reset.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The name the reset's Kafka clients go by in errors and log lines.
const CLIENT: &str = "consumer reset";

/// Group states in which nothing consumes: never used (or deleted), or
/// without members.
const IDLE_STATES: &[&str] = &["Empty", "Dead"];

/// Where [`reset`] moves a group's offsets, in every partition of its topics.
///
/// Parsed from what `outbox consumer reset --to` takes: `earliest`, `latest`,
/// an RFC 3339 timestamp or an offset; [`Display`](fmt::Display) writes it
/// back in that form.
///
/// # Examples
///
/// ```
/// use outbox_diesel::group_reset::ResetTo;
///
/// assert_eq!("earliest".parse::<ResetTo>()?, ResetTo::Earliest);
/// assert_eq!("42".parse::<ResetTo>()?, ResetTo::Offset(42));
/// let at: ResetTo = "2026-12-01T09:30:00+01:00".parse()?;
/// assert_eq!(at.to_string(), "2026-12-01T08:30:00Z");
/// assert!("yesterday".parse::<ResetTo>().is_err());
/// # Ok::<(), outbox_diesel::group_reset::ParseResetToError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTo {
    /// The first record each partition still holds (its low watermark).
    Earliest,
    /// The end of each partition (its high watermark): only records
    /// published after the reset are read.
    Latest,
    /// The first record of each partition whose timestamp is at or after
    /// this time; the end of the partition when none is that recent.
    Timestamp(DateTime<Utc>),
    /// This offset in every partition, clamped to what the partition holds
    /// (see [`PartitionReset::clamped`]).
    Offset(i64),
}

impl fmt::Display for ResetTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResetTo::Earliest => f.write_str("earliest"),
            ResetTo::Latest => f.write_str("latest"),
            ResetTo::Timestamp(at) => f.write_str(&at.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
            ResetTo::Offset(offset) => write!(f, "{offset}"),
        }
    }
}

impl FromStr for ResetTo {
    type Err = ParseResetToError;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let text = text.trim();
        match text {
            "earliest" => return Ok(ResetTo::Earliest),
            "latest" => return Ok(ResetTo::Latest),
            _ => {}
        }
        // Digits only: `-1` and `+1` would read as Kafka's special offsets or
        // a shift, which this is not.
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            return text
                .parse()
                .map(ResetTo::Offset)
                .map_err(|_| ParseResetToError {
                    reason: format!(
                        "offset {text} is past the largest Kafka offset, {}",
                        i64::MAX
                    ),
                });
        }
        DateTime::parse_from_rfc3339(text)
            .map(|at| ResetTo::Timestamp(at.with_timezone(&Utc)))
            .map_err(|_| ParseResetToError {
                reason: EXPECTED.to_owned(),
            })
    }
}

/// What `--to` accepts, for its errors and help.
const EXPECTED: &str = "expected `earliest`, `latest`, an RFC 3339 timestamp (e.g. \
                        2026-12-01T09:30:00Z) or an offset (e.g. 42)";

/// A text that is not a [`ResetTo`]; says which forms are accepted.
///
/// # Examples
///
/// ```
/// use outbox_diesel::group_reset::ResetTo;
///
/// let error = "tomorrow".parse::<ResetTo>().unwrap_err();
/// assert!(error.to_string().starts_with("expected `earliest`, `latest`, an RFC 3339 timestamp"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct ParseResetToError {
    reason: String,
}

/// What [`reset`] did (or, in a dry run, would do) to one partition.
///
/// # Examples
///
/// ```no_run
/// use outbox_diesel::group_reset::{self, ResetTo};
/// use rdkafka::ClientConfig;
///
/// let mut kafka = ClientConfig::new();
/// kafka.set("bootstrap.servers", "127.0.0.1:59092");
/// let plan = group_reset::reset(&kafka, "billing", &["orders"], ResetTo::Offset(100), true)?;
/// for partition in plan.iter().filter(|p| p.clamped) {
///     println!("{}[{}] holds offsets {} to {} only", partition.topic, partition.partition,
///         partition.low, partition.high);
/// }
/// # Ok::<(), outbox_diesel::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PartitionReset {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// The offset the group had committed, `None` when it had none.
    pub from: Option<i64>,
    /// The offset committed by the reset (the next record the group reads).
    pub to: i64,
    /// The partition's low watermark: its first record still held.
    pub low: i64,
    /// The partition's high watermark: the offset of its next record.
    pub high: i64,
    /// [`ResetTo::Offset`] was outside `low..=high` and `to` is the nearer
    /// of the two (as `kafka-consumer-groups.sh` does): an offset past the
    /// end would make consumers fall back on `auto.offset.reset`, one below
    /// the start names records that are gone.
    pub clamped: bool,
}

/// A member of a consumer group, as the brokers describe it.
///
/// # Examples
///
/// ```no_run
/// use outbox_diesel::Error;
/// use outbox_diesel::group_reset::{self, GroupResetError, ResetTo};
/// use rdkafka::ClientConfig;
///
/// let mut kafka = ClientConfig::new();
/// kafka.set("bootstrap.servers", "127.0.0.1:59092");
/// match group_reset::reset(&kafka, "billing", &["orders"], ResetTo::Latest, false) {
///     Err(Error::GroupReset(GroupResetError::Active { members, .. })) => {
///         for member in members {
///             println!("stop {} on {}", member.client_id, member.host);
///         }
///     }
///     other => println!("{other:?}"),
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct GroupMember {
    /// The member id the group coordinator gave it.
    pub id: String,
    /// The consumer's `client.id`.
    pub client_id: String,
    /// The host it connects from.
    pub host: String,
}

impl fmt::Display for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} on {} (member {})",
            self.client_id, self.host, self.id
        )
    }
}

/// Why [`reset`] did not reset a group's offsets (as [`Error::GroupReset`]).
///
/// # Examples
///
/// ```
/// use outbox_diesel::group_reset::GroupResetError;
///
/// let error = GroupResetError::UnknownTopics {
///     brokers: "kafka:9092".into(),
///     topics: vec!["ordrs".into(), "invoces".into()],
/// };
/// assert_eq!(error.to_string(), "no topics ordrs, invoces at kafka:9092");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GroupResetError {
    /// The group has members, or is rebalancing: its consumers are running.
    /// Nothing was committed.
    #[error("{}", active(group, state, members))]
    Active {
        /// The group.
        group: String,
        /// Its state, as the brokers say it (`Stable`, `PreparingRebalance`, …).
        state: String,
        /// Its members.
        members: Vec<GroupMember>,
    },
    /// Topics the brokers do not know. Nothing was committed.
    #[error(
        "no {} {} at {brokers}",
        if topics.len() == 1 { "topic" } else { "topics" },
        topics.join(", ")
    )]
    UnknownTopics {
        /// The bootstrap servers asked.
        brokers: String,
        /// Every topic asked for that they do not know.
        topics: Vec<String>,
    },
    /// The commit was acknowledged, but reading the offsets back found
    /// others in these partitions.
    #[error(
        "the offsets of consumer group {group} read back are not those committed: {}",
        partitions.join(", ")
    )]
    NotCommitted {
        /// The group.
        group: String,
        /// Each partition that differs: `topic[partition]: offset read, not offset committed`.
        partitions: Vec<String>,
    },
}

/// The text of [`GroupResetError::Active`].
fn active(group: &str, state: &str, members: &[GroupMember]) -> String {
    let listed: Vec<String> = members.iter().map(ToString::to_string).collect();
    let members = match listed.len() {
        0 => String::new(),
        1 => format!(", 1 member: {}", listed[0]),
        n => format!(", {n} members: {}", listed.join(", ")),
    };
    format!(
        "consumer group {group} is active (state {state}{members}); stop its consumers first, \
         then reset"
    )
}

/// Resets the committed offsets of consumer group `group` in every partition
/// of `topics`, to `to`; with `dry_run`, only works out the offsets and
/// commits nothing. Returns each partition, by topic then partition, with
/// the offset the group had and the one it gets.
///
/// `kafka` holds the brokers (`bootstrap.servers`) and any other librdkafka
/// setting (`security.protocol`, `sasl.*`, `ssl.*`, …); the reset sets its
/// `group.id` to `group`. The offsets are worked out from each partition's
/// watermarks (and, for [`ResetTo::Timestamp`], the brokers' time index),
/// then committed for the group in one request by a consumer that never
/// joins it, and read back.
///
/// The group must be idle, in a dry run too: no members, state `Empty` (or
/// `Dead`, a group never used). Stop its consumers first.
///
/// Blocking: call it from `spawn_blocking` in async code.
///
/// # Errors
///
/// - [`Error::Config`] when `group` is blank, `topics` is empty, or `to` is a
///   negative offset;
/// - [`Error::KafkaClient`] when librdkafka refuses a setting of `kafka`;
/// - [`Error::KafkaConnect`] naming the brokers and the cause when they
///   cannot be used (refused login, untrusted certificate, not reachable);
/// - [`Error::GroupReset`] with [`GroupResetError::UnknownTopics`] naming
///   every topic the brokers do not know, [`GroupResetError::Active`]
///   naming the group's state and members while it has some (also when a
///   consumer joined between the check and the commit, which the brokers
///   then refuse), or [`GroupResetError::NotCommitted`];
/// - [`Error::Kafka`] when a request fails.
///
/// Nothing is committed on an error, except one that comes after the
/// commit: [`GroupResetError::NotCommitted`], or an [`Error::Kafka`] reading
/// the offsets back.
///
/// # Examples
///
/// ```no_run
/// use chrono::{TimeZone, Utc};
/// use outbox_diesel::group_reset::{self, ResetTo};
/// use rdkafka::ClientConfig;
///
/// let mut kafka = ClientConfig::new();
/// kafka
///     .set("bootstrap.servers", "kafka:9094")
///     .set("security.protocol", "SASL_SSL")
///     .set("sasl.mechanism", "SCRAM-SHA-512")
///     .set("sasl.username", "ops")
///     .set("sasl.password", "secret");
/// // Re-apply what was published since the incident began.
/// let at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
/// let plan = group_reset::reset(&kafka, "billing", &["orders", "invoices"], ResetTo::Timestamp(at), true)?;
/// println!("{} partitions would move", plan.iter().filter(|p| p.from != Some(p.to)).count());
/// group_reset::reset(&kafka, "billing", &["orders", "invoices"], ResetTo::Timestamp(at), false)?;
/// # Ok::<(), outbox_diesel::Error>(())
/// ```
pub fn reset(
    kafka: &ClientConfig,
    group: &str,
    topics: &[impl AsRef<str>],
    to: ResetTo,
    dry_run: bool,
) -> Result<Vec<PartitionReset>> {
    let mut distinct: Vec<&str> = Vec::new();
    for topic in topics.iter().map(AsRef::as_ref) {
        if !distinct.contains(&topic) {
            distinct.push(topic);
        }
    }
    check_arguments(group, &distinct, to)?;
    let mut config = kafka.clone();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let brokers = config
        .get("bootstrap.servers")
        .or_else(|| config.get("metadata.broker.list"))
        .unwrap_or_default()
        .to_owned();
    let (consumer, _): (BaseConsumer<Diagnostics>, _) = create_client(&mut config, CLIENT)?;
    // The brokers first: a refused login or certificate ends the reset here,
    // with its cause, rather than as a timeout of the first request.
    check_brokers(&config, CLIENT, CHECK_TIMEOUT)?;
    let partitions = partitions(&consumer, &brokers, &distinct)?;
    refuse_if_active(&consumer, group)?;
    let plan = plan(&consumer, &partitions, to)?;
    if !dry_run {
        commit(&consumer, group, &plan)?;
    }
    Ok(plan)
}

/// The mistakes in the arguments, before any broker is contacted.
fn check_arguments(group: &str, topics: &[&str], to: ResetTo) -> Result<()> {
    if group.trim().is_empty() {
        return Err(Error::Config {
            name: "group",
            reason: "is blank: name the consumer group whose offsets to reset".to_owned(),
        });
    }
    if topics.is_empty() {
        return Err(Error::Config {
            name: "topics",
            reason: "none given: name the topics whose offsets to reset".to_owned(),
        });
    }
    if let ResetTo::Offset(offset) = to
        && offset < 0
    {
        return Err(Error::Config {
            name: "to",
            reason: format!("offset {offset} is negative: offsets start at 0"),
        });
    }
    Ok(())
}

/// Every partition of `topics`, by topic (in the order given) then
/// partition; every topic the brokers do not know named together.
fn partitions(
    consumer: &BaseConsumer<Diagnostics>,
    brokers: &str,
    topics: &[&str],
) -> Result<Vec<(String, i32)>> {
    let mut found = Vec::new();
    let mut unknown = Vec::new();
    for &topic in topics {
        let metadata = consumer
            .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
            .map_err(|source| kafka(format!("reading the metadata of {topic}"), source))?;
        let Some(described) = metadata.topics().iter().find(|t| t.name() == topic) else {
            unknown.push(topic.to_owned());
            continue;
        };
        match described.error().map(RDKafkaErrorCode::from) {
            None | Some(RDKafkaErrorCode::UnknownTopicOrPartition) => {}
            Some(code) => {
                return Err(kafka(
                    format!("reading the metadata of {topic}"),
                    KafkaError::MetadataFetch(code),
                ));
            }
        }
        let mut ids: Vec<i32> = described.partitions().iter().map(|p| p.id()).collect();
        if ids.is_empty() {
            unknown.push(topic.to_owned());
        }
        ids.sort_unstable();
        found.extend(ids.into_iter().map(|id| (topic.to_owned(), id)));
    }
    if !unknown.is_empty() {
        return Err(GroupResetError::UnknownTopics {
            brokers: brokers.to_owned(),
            topics: unknown,
        }
        .into());
    }
    Ok(found)
}

/// [`GroupResetError::Active`] when `group` has members or is not idle.
fn refuse_if_active(consumer: &BaseConsumer<Diagnostics>, group: &str) -> Result<()> {
    let groups = consumer
        .fetch_group_list(Some(group), REQUEST_TIMEOUT)
        .map_err(|source| {
            kafka(
                format!("reading the state of consumer group {group}"),
                source,
            )
        })?;
    // A group the brokers do not describe has never been used.
    let Some(info) = groups.groups().iter().find(|info| info.name() == group) else {
        return Ok(());
    };
    if info.members().is_empty() && IDLE_STATES.contains(&info.state()) {
        return Ok(());
    }
    Err(GroupResetError::Active {
        group: group.to_owned(),
        state: info.state().to_owned(),
        members: info
            .members()
            .iter()
            .map(|member| GroupMember {
                id: member.id().to_owned(),
                client_id: member.client_id().to_owned(),
                // librdkafka reports the host as Java's InetAddress prints it: `/10.0.0.7`.
                host: member.client_host().trim_start_matches('/').to_owned(),
            })
            .collect(),
    }
    .into())
}

/// The offset `to` gives each partition, with the offset the group has.
fn plan(
    consumer: &BaseConsumer<Diagnostics>,
    partitions: &[(String, i32)],
    to: ResetTo,
) -> Result<Vec<PartitionReset>> {
    let mut asked = TopicPartitionList::new();
    for (topic, partition) in partitions {
        asked.add_partition(topic, *partition);
    }
    let committed = consumer
        .committed_offsets(asked, REQUEST_TIMEOUT)
        .map_err(|source| kafka("reading the committed offsets".to_owned(), source))?;
    let by_time = match to {
        ResetTo::Timestamp(at) => Some(offsets_for_time(consumer, partitions, at)?),
        _ => None,
    };
    let mut plan = Vec::with_capacity(partitions.len());
    for (topic, partition) in partitions {
        let partition = *partition;
        let (low, high) = consumer
            .fetch_watermarks(topic, partition, REQUEST_TIMEOUT)
            .map_err(|source| {
                kafka(
                    format!("reading the watermarks of {topic}[{partition}]"),
                    source,
                )
            })?;
        let from = match committed.find_partition(topic, partition) {
            Some(element) => {
                element.error().map_err(|source| {
                    kafka(
                        format!("reading the committed offset of {topic}[{partition}]"),
                        source,
                    )
                })?;
                match element.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                }
            }
            None => None,
        };
        let (target, clamped) = match to {
            ResetTo::Earliest => (low, false),
            ResetTo::Latest => (high, false),
            ResetTo::Offset(offset) => (offset.clamp(low, high), !(low..=high).contains(&offset)),
            // No record that recent: the end, as Kafka's own tools do.
            ResetTo::Timestamp(_) => match by_time.as_ref().and_then(|t| t.get(topic, partition)) {
                Some(offset) => (offset.clamp(low, high), false),
                None => (high, false),
            },
        };
        plan.push(PartitionReset {
            topic: topic.clone(),
            partition,
            from,
            to: target,
            low,
            high,
            clamped,
        });
    }
    Ok(plan)
}

/// The first offset at or after `at`, of each partition that has one.
struct ByTime(TopicPartitionList);

impl ByTime {
    fn get(&self, topic: &str, partition: i32) -> Option<i64> {
        match self.0.find_partition(topic, partition)?.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        }
    }
}

fn offsets_for_time(
    consumer: &BaseConsumer<Diagnostics>,
    partitions: &[(String, i32)],
    at: DateTime<Utc>,
) -> Result<ByTime> {
    // Before 1970 is before every record; negative values are Kafka's
    // special "latest" and "earliest".
    let millis = at.timestamp_millis().max(0);
    let mut asked = TopicPartitionList::new();
    for (topic, partition) in partitions {
        asked
            .add_partition_offset(topic, *partition, Offset::Offset(millis))
            .map_err(|source| kafka(format!("asking for {topic}[{partition}]"), source))?;
    }
    let context = || {
        format!(
            "looking up the offsets at {}",
            at.to_rfc3339_opts(SecondsFormat::AutoSi, true)
        )
    };
    let found = consumer
        .offsets_for_times(asked, REQUEST_TIMEOUT)
        .map_err(|source| kafka(context(), source))?;
    for element in found.elements() {
        element.error().map_err(|source| {
            kafka(
                format!(
                    "{} in {}[{}]",
                    context(),
                    element.topic(),
                    element.partition()
                ),
                source,
            )
        })?;
    }
    Ok(ByTime(found))
}

/// Commits `plan` for `group` and reads it back.
fn commit(
    consumer: &BaseConsumer<Diagnostics>,
    group: &str,
    plan: &[PartitionReset],
) -> Result<()> {
    let mut offsets = TopicPartitionList::new();
    for reset in plan {
        offsets
            .add_partition_offset(&reset.topic, reset.partition, Offset::Offset(reset.to))
            .map_err(|source| {
                kafka(
                    format!("asking for {}[{}]", reset.topic, reset.partition),
                    source,
                )
            })?;
    }
    if let Err(source) = consumer.commit(&offsets, CommitMode::Sync) {
        // The brokers refuse a commit from outside a group with members: a
        // consumer that joined since the check is the likely cause.
        refuse_if_active(consumer, group)?;
        return Err(kafka(
            format!("committing the offsets of consumer group {group}"),
            source,
        ));
    }
    let read = consumer
        .committed_offsets(offsets, REQUEST_TIMEOUT)
        .map_err(|source| {
            kafka(
                format!("reading back the offsets of consumer group {group}"),
                source,
            )
        })?;
    let differ: Vec<String> = plan
        .iter()
        .filter_map(|reset| {
            let offset = read
                .find_partition(&reset.topic, reset.partition)
                .map(|element| element.offset());
            (offset != Some(Offset::Offset(reset.to))).then(|| {
                let offset = match offset {
                    Some(Offset::Offset(offset)) => offset.to_string(),
                    _ => "none".to_owned(),
                };
                format!(
                    "{}[{}]: {offset}, not {}",
                    reset.topic, reset.partition, reset.to
                )
            })
        })
        .collect();
    if differ.is_empty() {
        Ok(())
    } else {
        Err(GroupResetError::NotCommitted {
            group: group.to_owned(),
            partitions: differ,
        }
        .into())
    }
}

fn kafka(context: String, source: KafkaError) -> Error {
    Error::Kafka { context, source }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn targets_parse_and_print_back() {
        let at = Utc.with_ymd_and_hms(2026, 12, 1, 9, 30, 0).unwrap();
        for (text, to) in [
            ("earliest", ResetTo::Earliest),
            ("latest", ResetTo::Latest),
            ("0", ResetTo::Offset(0)),
            ("42", ResetTo::Offset(42)),
            ("2026-12-01T09:30:00Z", ResetTo::Timestamp(at)),
        ] {
            assert_eq!(text.parse::<ResetTo>(), Ok(to), "{text}");
            assert_eq!(to.to_string(), text);
        }
        assert_eq!(
            "2026-12-01T10:30:00.250+01:00".parse::<ResetTo>(),
            Ok(ResetTo::Timestamp(at + chrono::Duration::milliseconds(250)))
        );
        assert_eq!(
            ResetTo::Timestamp(at + chrono::Duration::milliseconds(250)).to_string(),
            "2026-12-01T09:30:00.250Z"
        );
    }

    #[test]
    fn other_targets_name_the_accepted_forms() {
        for text in [
            "",
            "Earliest",
            "-1",
            "+3",
            "1.5",
            "2026-12-01",
            "2026-12-01 09:30",
            "now",
        ] {
            let error = text.parse::<ResetTo>().unwrap_err();
            assert_eq!(error.to_string(), EXPECTED, "{text:?}");
        }
        assert_eq!(
            "99999999999999999999"
                .parse::<ResetTo>()
                .unwrap_err()
                .to_string(),
            "offset 99999999999999999999 is past the largest Kafka offset, 9223372036854775807"
        );
    }

    #[test]
    fn arguments_are_checked_before_any_broker() {
        let message = |result: Result<()>| result.unwrap_err().to_string();
        assert_eq!(
            message(check_arguments(" ", &["t"], ResetTo::Earliest)),
            "invalid setting `group`: is blank: name the consumer group whose offsets to reset"
        );
        assert_eq!(
            message(check_arguments("g", &[], ResetTo::Earliest)),
            "invalid setting `topics`: none given: name the topics whose offsets to reset"
        );
        assert_eq!(
            message(check_arguments("g", &["t"], ResetTo::Offset(-2))),
            "invalid setting `to`: offset -2 is negative: offsets start at 0"
        );
        assert!(check_arguments("g", &["t"], ResetTo::Offset(0)).is_ok());
    }

    #[test]
    fn a_refusal_names_the_group_its_state_and_members() {
        let member = |n: u32| GroupMember {
            id: format!("rdkafka-{n}"),
            client_id: "billing".into(),
            host: "10.0.0.7".into(),
        };
        let active = |members: Vec<GroupMember>| GroupResetError::Active {
            group: "billing".into(),
            state: "Stable".into(),
            members,
        };
        assert_eq!(
            active(vec![member(1)]).to_string(),
            "consumer group billing is active (state Stable, 1 member: billing on 10.0.0.7 \
             (member rdkafka-1)); stop its consumers first, then reset"
        );
        assert_eq!(
            active(vec![member(1), member(2)]).to_string(),
            "consumer group billing is active (state Stable, 2 members: billing on 10.0.0.7 \
             (member rdkafka-1), billing on 10.0.0.7 (member rdkafka-2)); stop its consumers \
             first, then reset"
        );
        assert_eq!(
            active(vec![]).to_string(),
            "consumer group billing is active (state Stable); stop its consumers first, then reset"
        );
        let unknown = GroupResetError::UnknownTopics {
            brokers: "b:9092".into(),
            topics: vec!["ordrs".into()],
        };
        assert_eq!(unknown.to_string(), "no topic ordrs at b:9092");
    }
}
