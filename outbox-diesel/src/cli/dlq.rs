//! `outbox dlq replay`: sends dead-lettered records back to their topic.

use clap::{Args, Subcommand};

use super::Failure;
use super::kafka_args::KafkaArgs;
use crate::dead_letter::{self, DEFAULT_REPLAY_GROUP, ReplayReport};

#[derive(Debug, Subcommand)]
pub(super) enum DlqCommand {
    /// Send the records of a dead-letter topic back to the topic they came from
    /// (fix the cause first); what was replayed is committed, so a second replay
    /// sends only what was dead-lettered since
    Replay(ReplayArgs),
}

#[derive(Debug, Args)]
#[command(mut_arg("settings", |arg| arg.help(
    "A librdkafka setting for the consumer and the producer, e.g. -X security.protocol=ssl \
     (repeatable)")))]
pub(super) struct ReplayArgs {
    /// The dead-letter topic, e.g. orders.dlq
    #[arg(value_name = "DLQ_TOPIC")]
    dlq_topic: String,

    /// Consumer group whose committed offsets record what was replayed
    #[arg(long, value_name = "GROUP", default_value = DEFAULT_REPLAY_GROUP)]
    group: String,

    #[command(flatten)]
    kafka: KafkaArgs,
}

pub(super) fn run(command: DlqCommand) -> Result<String, Failure> {
    let DlqCommand::Replay(args) = command;
    let brokers = args.kafka.brokers()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::from_error(Some("starting the async runtime"), &e))?;
    let settings = args.kafka.settings();
    let report = runtime
        .block_on(dead_letter::replay(
            &brokers,
            &args.dlq_topic,
            &args.group,
            &settings,
        ))
        .map_err(|e| Failure::from_error(None, &e))?;
    Ok(report_line(&report, &args.group))
}

fn report_line(report: &ReplayReport, group: &str) -> String {
    if report.replayed == 0 {
        return format!(
            "nothing to replay: {} has no records past the offsets of group {group}\n",
            report.dlq_topic
        );
    }
    let records = |n: u64| if n == 1 { "record" } else { "records" };
    let topics: Vec<String> = report
        .topics
        .iter()
        .map(|(topic, count)| format!("{count} to {topic}"))
        .collect();
    format!(
        "replayed {} {} from {}: {}\n",
        report.replayed,
        records(report.replayed),
        report.dlq_topic,
        topics.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_names_each_topic() {
        let mut report = ReplayReport {
            dlq_topic: "orders.dlq".into(),
            ..ReplayReport::default()
        };
        assert_eq!(
            report_line(&report, "g"),
            "nothing to replay: orders.dlq has no records past the offsets of group g\n"
        );
        report.replayed = 1;
        report.topics.insert("orders".into(), 1);
        assert_eq!(
            report_line(&report, "g"),
            "replayed 1 record from orders.dlq: 1 to orders\n"
        );
        report.replayed = 3;
        report.topics.insert("invoices".into(), 2);
        assert_eq!(
            report_line(&report, "g"),
            "replayed 3 records from orders.dlq: 2 to invoices, 1 to orders\n"
        );
    }
}
