//! `outbox topics create`: the topics of your models and their `.dlq` topics.

use clap::{Args, Subcommand};

use super::Failure;
use super::kafka_args::KafkaArgs;
use crate::error::Error;
use crate::topics::{CreateTopics, TopicOutcome, TopicStatus};

#[derive(Debug, Subcommand)]
pub(super) enum TopicsCommand {
    /// Create topics (and with --dlq their .dlq topics) that do not exist; an
    /// existing topic is reported and left as it is
    Create(CreateArgs),
}

#[derive(Debug, Args)]
#[command(mut_arg("settings", |arg| arg.help(
    "A librdkafka setting of the admin client, e.g. -X security.protocol=SASL_SSL (repeatable)")))]
pub(super) struct CreateArgs {
    /// The topics, e.g. the `topic` of each of your models
    #[arg(value_name = "TOPIC", required = true)]
    topics: Vec<String>,

    /// Also create <TOPIC>.dlq for each topic, for consumers that dead-letter
    #[arg(long)]
    dlq: bool,

    /// Partitions of each topic (at least 1): the most consumers of a group
    /// that can share it
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    partitions: i32,

    /// Copies of each partition (at least 1, at most the number of brokers)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(i32).range(1..))]
    replication_factor: i32,

    #[command(flatten)]
    kafka: KafkaArgs,
}

pub(super) fn run(command: TopicsCommand) -> Result<String, Failure> {
    let TopicsCommand::Create(args) = command;
    let brokers = args.kafka.brokers()?;
    let mut create =
        CreateTopics::new(brokers, args.partitions, args.replication_factor).dead_letter(args.dlq);
    for (key, value) in args.kafka.settings() {
        create = create.set(key, value);
    }
    let topics: Vec<&str> = args.topics.iter().map(String::as_str).collect();
    // A bad name fails before any broker is contacted.
    create
        .names(&topics)
        .map_err(|e| Failure::from_error(None, &e))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::from_error(Some("starting the async runtime"), &e))?;
    match runtime.block_on(create.create(&topics)) {
        Ok(outcomes) => Ok(report(&outcomes, args.partitions, args.replication_factor)),
        // What was created or exists goes to stdout all the same.
        Err(Error::TopicsRefused(refused)) => {
            let mut failure = Failure::from_error(None, &refused);
            failure.output = report(refused.outcomes(), args.partitions, args.replication_factor);
            Err(failure)
        }
        Err(error) => Err(Failure::from_error(None, &error)),
    }
}

/// One line per topic: created, or exists (and how many partitions when not
/// those asked for).
fn report(outcomes: &[TopicOutcome], partitions: i32, replication: i32) -> String {
    let plural = |n: usize| if n == 1 { "partition" } else { "partitions" };
    let mut out = String::new();
    for outcome in outcomes {
        let name = &outcome.name;
        let line = match outcome.status {
            TopicStatus::Created => format!(
                "created {name} ({partitions} {}, replication factor {replication})",
                plural(partitions as usize)
            ),
            TopicStatus::Exists { partitions: has } if (has as i64) < i64::from(partitions) => {
                format!(
                    "exists  {name} ({has} {}, fewer than the {partitions} asked for: left as it \
                     is; add partitions with `kafka-topics.sh --alter`, knowing keys then move \
                     to other partitions)",
                    plural(has)
                )
            }
            TopicStatus::Exists { partitions: has } => {
                format!("exists  {name} ({has} {})", plural(has))
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_says_what_became_of_each_topic() {
        let outcome = |name: &str, status| TopicOutcome {
            name: name.into(),
            status,
        };
        let text = report(
            &[
                outcome("a", TopicStatus::Created),
                outcome("b", TopicStatus::Exists { partitions: 3 }),
                outcome("c", TopicStatus::Exists { partitions: 1 }),
            ],
            3,
            2,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "created a (3 partitions, replication factor 2)");
        assert_eq!(lines[1], "exists  b (3 partitions)");
        assert!(
            lines[2]
                .starts_with("exists  c (1 partition, fewer than the 3 asked for: left as it is;"),
            "{text}"
        );
    }
}
