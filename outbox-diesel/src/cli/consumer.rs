//! `outbox consumer reset`: moves the committed offsets of a stopped
//! consumer group (the re-init of an inbox consumer).

use clap::{Args, Subcommand};
use rdkafka::ClientConfig;
use serde::Serialize;

use super::kafka_args::KafkaArgs;
use super::{Failure, output};
use crate::group_reset::{self, PartitionReset, ResetTo};

#[derive(Debug, Subcommand)]
pub(super) enum ConsumerCommand {
    /// Move a consumer group's committed offsets in every partition of its topics
    ///
    /// Stop the group's consumers first: a group with members is refused. Started
    /// again, they read from the new offsets; the inbox skips the messages it has
    /// already applied (within its retention).
    Reset(ResetArgs),
}

#[derive(Debug, Args)]
#[command(mut_arg("settings", |arg| arg.help(
    "A librdkafka setting of the consumer that commits, e.g. -X security.protocol=SASL_SSL \
     (repeatable)")))]
pub(super) struct ResetArgs {
    /// The consumer group whose offsets to reset
    #[arg(long, value_name = "GROUP")]
    group: String,

    /// A topic the group reads: all its partitions are reset (repeatable)
    #[arg(long = "topic", value_name = "TOPIC", required = true)]
    topics: Vec<String>,

    /// Where to: `earliest` (the first record held), `latest` (the end), an RFC 3339
    /// timestamp (the first record at or after it, e.g. 2026-12-01T09:30:00Z) or an
    /// offset (in every partition, clamped to what each holds)
    #[arg(long, value_name = "earliest|latest|TIME|OFFSET", allow_negative_numbers = true,
          value_parser = parse_to)]
    to: ResetTo,

    /// Print what would be committed, and commit nothing
    #[arg(long)]
    dry_run: bool,

    /// Print the partitions as JSON
    #[arg(long)]
    json: bool,

    #[command(flatten)]
    kafka: KafkaArgs,
}

fn parse_to(text: &str) -> Result<ResetTo, String> {
    text.parse()
        .map_err(|e: group_reset::ParseResetToError| e.to_string())
}

pub(super) fn run(command: ConsumerCommand) -> Result<String, Failure> {
    let ConsumerCommand::Reset(args) = command;
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", args.kafka.brokers()?);
    for (key, value) in args.kafka.settings() {
        config.set(key, value);
    }
    let partitions = group_reset::reset(&config, &args.group, &args.topics, args.to, args.dry_run)
        .map_err(|e| Failure::from_error(None, &e))?;
    if args.json {
        output::json(&Report {
            group: &args.group,
            to: args.to.to_string(),
            dry_run: args.dry_run,
            partitions: &partitions,
        })
    } else {
        Ok(report(&args.group, args.to, args.dry_run, &partitions))
    }
}

/// The JSON form of a reset.
#[derive(Serialize)]
struct Report<'a> {
    group: &'a str,
    to: String,
    dry_run: bool,
    partitions: &'a [PartitionReset],
}

/// What was reset (or would be, in a dry run): a line, a table of the
/// partitions, and a line for each offset clamped.
fn report(group: &str, to: ResetTo, dry_run: bool, partitions: &[PartitionReset]) -> String {
    let target = match to {
        ResetTo::Offset(offset) => format!("offset {offset}"),
        other => other.to_string(),
    };
    let count = match partitions.len() {
        1 => "1 partition".to_owned(),
        n => format!("{n} partitions"),
    };
    let mut out = if dry_run {
        format!(
            "dry run, nothing committed: consumer group {group} would be reset to {target} ({count})\n"
        )
    } else {
        format!("reset consumer group {group} to {target} ({count})\n")
    };
    let rows: Vec<Vec<String>> = partitions
        .iter()
        .map(|p| {
            vec![
                p.topic.clone(),
                p.partition.to_string(),
                p.from
                    .map_or_else(|| "-".to_owned(), |from| from.to_string()),
                p.to.to_string(),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&output::table(
        &["TOPIC", "PARTITION", "FROM", "TO"],
        &[false, true, true, true],
        &rows,
    ));
    let clamped: Vec<&PartitionReset> = partitions.iter().filter(|p| p.clamped).collect();
    if !clamped.is_empty() {
        out.push('\n');
    }
    for p in clamped {
        out.push_str(&format!(
            "{}[{}] holds offsets {} to {}: {target} is outside them, so it is reset to {}\n",
            p.topic, p.partition, p.low, p.high, p.to
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partition(n: i32, from: Option<i64>, to: i64, clamped: bool) -> PartitionReset {
        PartitionReset {
            topic: "orders".into(),
            partition: n,
            from,
            to,
            low: 0,
            high: 12,
            clamped,
        }
    }

    #[test]
    fn the_report_is_a_line_and_a_table() {
        let partitions = [
            partition(0, Some(12), 0, false),
            partition(1, None, 12, true),
        ];
        assert_eq!(
            report("billing", ResetTo::Offset(500), false, &partitions),
            "reset consumer group billing to offset 500 (2 partitions)\n\
             \n\
             TOPIC   PARTITION  FROM  TO\n\
             orders          0    12   0\n\
             orders          1     -  12\n\
             \n\
             orders[1] holds offsets 0 to 12: offset 500 is outside them, so it is reset to 12\n"
        );
        assert_eq!(
            report("billing", ResetTo::Earliest, true, &partitions[..1]),
            "dry run, nothing committed: consumer group billing would be reset to earliest \
             (1 partition)\n\
             \n\
             TOPIC   PARTITION  FROM  TO\n\
             orders          0    12   0\n"
        );
    }

    #[test]
    fn a_bad_target_names_the_accepted_forms() {
        assert!(
            parse_to("later")
                .unwrap_err()
                .starts_with("expected `earliest`, `latest`")
        );
        assert_eq!(parse_to("7"), Ok(ResetTo::Offset(7)));
    }
}
