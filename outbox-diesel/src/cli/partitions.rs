//! `outbox partitions list | resume | skip`: the partitions consumers stopped
//! on a record they could not apply.

use clap::Subcommand;

use diesel::prelude::*;
use diesel::sql_types::Text;

use super::{Failure, db, output};
use crate::mask_password;
use crate::stopped::{self, StoppedPartition};

#[derive(Debug, Subcommand)]
pub(super) enum PartitionsCommand {
    /// List stopped partitions, oldest stop first, with the offset and the error
    /// they stopped on
    List {
        /// Only the stops of this consumer group
        #[arg(long, value_name = "GROUP")]
        group: Option<String>,
        /// Resumed stops too, not only the active ones
        #[arg(long)]
        all: bool,
        /// Print the stops as JSON
        #[arg(long)]
        json: bool,
    },
    /// Resume a stopped partition (fix the cause first): a running consumer of
    /// the group reads it again from the offset it stopped at
    Resume {
        /// The consumer group that stopped
        #[arg(long, value_name = "GROUP")]
        group: String,
        /// The topic of the partition
        #[arg(long, value_name = "TOPIC")]
        topic: String,
        /// The partition
        #[arg(long, value_name = "PARTITION", allow_negative_numbers = true,
              value_parser = clap::value_parser!(i32).range(0..))]
        partition: i32,
    },
    /// Resume a stopped partition past its record, for a record no fix can make
    /// applicable: a running consumer of the group reads it again from the next
    /// offset, and the record is never applied
    Skip {
        /// The consumer group that stopped
        #[arg(long, value_name = "GROUP")]
        group: String,
        /// The topic of the partition
        #[arg(long, value_name = "TOPIC")]
        topic: String,
        /// The partition
        #[arg(long, value_name = "PARTITION", allow_negative_numbers = true,
              value_parser = clap::value_parser!(i32).range(0..))]
        partition: i32,
        /// Why the record is skipped, kept with the stop (`partitions list --all`)
        #[arg(long, value_name = "REASON", value_parser = reason)]
        reason: String,
        /// Print the skipped stop as JSON
        #[arg(long)]
        json: bool,
    },
}

/// A `--reason` that says something (trimmed).
fn reason(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        Err("say why the record can never be applied".to_owned())
    } else {
        Ok(text.to_owned())
    }
}

/// Runs `command` on the outbox at `url`; `url_shown` when the URL was given
/// with `--database-url`, so that the commands printed carry it too.
pub(super) fn run(
    url: &str,
    url_shown: bool,
    command: PartitionsCommand,
) -> Result<String, Failure> {
    let mut conn = db::connect_to_outbox(url)?;
    match command {
        PartitionsCommand::List { group, all, json } => {
            let stops = stopped::list(&mut conn, group.as_deref(), all)
                .map_err(|e| db::failure(url, "partitions list", &e))?;
            if json {
                output::json(&stops)
            } else {
                let shown = url_shown.then(|| ShownUrl::of(url));
                Ok(list(&stops, group.as_deref(), all, shown.as_ref()))
            }
        }
        PartitionsCommand::Resume {
            group,
            topic,
            partition,
        } => {
            let resumed = stopped::resume(&mut conn, &group, &topic, partition)
                .map_err(|e| db::failure(url, "partitions resume", &e))?;
            match resumed {
                Some(stop) => Ok(format!(
                    "resumed {}[{}] for group {}: a running consumer of the group reads it \
                     again from offset {}\n",
                    stop.topic, stop.kafka_partition, stop.consumer_group, stop.kafka_offset
                )),
                None => Err(nothing_stopped(
                    &mut conn, url, "resume", &group, &topic, partition,
                )),
            }
        }
        PartitionsCommand::Skip {
            group,
            topic,
            partition,
            reason,
            json,
        } => {
            let skipped = stopped::skip(&mut conn, &group, &topic, partition, &reason)
                .map_err(|e| db::failure(url, "partitions skip", &e))?;
            match skipped {
                Some(stop) if json => output::json(&stop),
                Some(stop) => Ok(skipped_text(&stop)),
                None => Err(nothing_stopped(
                    &mut conn, url, "skip", &group, &topic, partition,
                )),
            }
        }
    }
}

/// What `partitions skip` did: the record skipped, and where the partition
/// goes on.
fn skipped_text(stop: &StoppedPartition) -> String {
    let message = stop.message_id.map_or_else(
        || "a record that could not be decoded".to_owned(),
        |id| format!("message {id}"),
    );
    format!(
        "skipped offset {} of {}[{}] for group {} ({message}): a running consumer of the \
         group reads it again from offset {}; the record is never applied\n",
        stop.kafka_offset,
        stop.topic,
        stop.kafka_partition,
        stop.consumer_group,
        stop.resume_offset()
    )
}

/// The failure of `partitions <command>` when the partition has no active
/// stop: names the schema and the database looked in.
fn nothing_stopped(
    conn: &mut PgConnection,
    url: &str,
    command: &str,
    group: &str,
    topic: &str,
    partition: i32,
) -> Failure {
    let schema = match current_schema(conn) {
        Ok(schema) => schema,
        Err(e) => return db::failure(url, &format!("partitions {command}"), &e.into()),
    };
    Failure::runtime(format!(
        "nothing to {command}: {topic}[{partition}] has no active stop for group {group} in \
         schema {schema} at {} (see `outbox partitions list --all`)",
        mask_password(url)
    ))
}

/// The schema the outbox tables were found in (the first of the search path).
fn current_schema(conn: &mut PgConnection) -> diesel::QueryResult<String> {
    diesel::select(diesel::dsl::sql::<Text>("current_schema()")).get_result(conn)
}

/// The `--database-url` given, as the printed resume command carries it.
#[derive(Debug, PartialEq, Eq)]
enum ShownUrl {
    /// A URL without a password, printed as it is.
    Plain(String),
    /// A URL with a password: printed masked, it could not be run, so the
    /// command reads it from `DATABASE_URL` instead.
    Secret,
}

impl ShownUrl {
    fn of(url: &str) -> Self {
        let masked = mask_password(url);
        if masked == url {
            ShownUrl::Plain(masked)
        } else {
            ShownUrl::Secret
        }
    }
}

/// The stops as a table (with a RESUMED AT column when `all`, marking the
/// skipped ones, whose reasons follow the table), and how to resume one: with
/// the `--database-url` given, if one was.
fn list(
    stops: &[StoppedPartition],
    group: Option<&str>,
    all: bool,
    database_url: Option<&ShownUrl>,
) -> String {
    if stops.is_empty() {
        let of_group = group.map(|g| format!(" for group {g}")).unwrap_or_default();
        let resumed = if all { ", active or resumed" } else { "" };
        return format!("no stopped partitions{of_group}{resumed}\n");
    }
    let time = |at: &chrono::DateTime<chrono::Utc>| at.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let cells: Vec<Vec<String>> = stops
        .iter()
        .map(|stop| {
            let mut row = vec![
                stop.id.to_string(),
                stop.consumer_group.clone(),
                stop.topic.clone(),
                stop.kafka_partition.to_string(),
                stop.kafka_offset.to_string(),
                time(&stop.stopped_at),
            ];
            if all {
                row.push(match (&stop.resumed_at, stop.is_skipped()) {
                    (None, _) => "-".into(),
                    (Some(at), false) => time(at),
                    (Some(at), true) => format!("{} (skipped)", time(at)),
                });
            }
            row.push(
                stop.message_id
                    .map_or_else(|| "-".into(), |id| id.to_string()),
            );
            row.push(one_line(&stop.error));
            row
        })
        .collect();
    let mut headers = vec!["ID", "GROUP", "TOPIC", "PARTITION", "OFFSET", "STOPPED AT"];
    let mut right = vec![true, false, false, true, true, false];
    if all {
        headers.push("RESUMED AT");
        right.push(false);
    }
    headers.extend(["MESSAGE ID", "ERROR"]);
    right.extend([false, false]);
    let mut out = output::table(&headers, &right, &cells);
    let skipped: Vec<String> = stops
        .iter()
        .filter_map(|stop| {
            let reason = stop.skip_reason.as_deref()?;
            Some(format!(
                "stop {} skipped offset {} of {}[{}]: {}\n",
                stop.id,
                stop.kafka_offset,
                stop.topic,
                stop.kafka_partition,
                one_line(reason)
            ))
        })
        .collect();
    if !skipped.is_empty() {
        out.push('\n');
        out.extend(skipped);
    }
    if let Some(stop) = stops.iter().find(|stop| stop.is_active()) {
        let url = match database_url {
            Some(ShownUrl::Plain(url)) => format!("--database-url {} ", shell_word(url)),
            Some(ShownUrl::Secret) => "--database-url \"$DATABASE_URL\" ".to_owned(),
            None => String::new(),
        };
        out.push_str(&format!(
            "\nresume once the cause is fixed: outbox {url}partitions resume --group {} \
             --topic {} --partition {}\n",
            shell_word(&stop.consumer_group),
            shell_word(&stop.topic),
            stop.kafka_partition
        ));
        if database_url == Some(&ShownUrl::Secret) {
            out.push_str(
                "(the password is left out: set DATABASE_URL to the URL given with \
                 --database-url)\n",
            );
        }
    }
    out
}

/// `text` on one line, its runs of whitespace (line breaks too) made one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `word` as one shell word: as it is when it is plain, else single-quoted.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn stop(id: i64, resumed: bool) -> StoppedPartition {
        let at = chrono::Utc
            .with_ymd_and_hms(2026, 11, 24, 10, 0, 0)
            .unwrap();
        StoppedPartition {
            id,
            consumer_group: "billing".into(),
            topic: "orders".into(),
            kafka_partition: 2,
            kafka_offset: 17,
            message_id: None,
            error: "handler:\n  no customer".into(),
            stopped_at: at,
            resumed_at: resumed.then(|| at + chrono::Duration::minutes(5)),
            skip_reason: None,
        }
    }

    fn skipped(id: i64, reason: &str) -> StoppedPartition {
        StoppedPartition {
            skip_reason: Some(reason.into()),
            ..stop(id, true)
        }
    }

    #[test]
    fn the_table_shows_resumed_at_only_with_all() {
        assert_eq!(
            list(&[stop(1, false)], None, false, None),
            "ID  GROUP    TOPIC   PARTITION  OFFSET  STOPPED AT            MESSAGE ID  ERROR\n\
             \x201  billing  orders          2      17  2026-11-24T10:00:00Z  -           handler: no customer\n\
             \n\
             resume once the cause is fixed: outbox partitions resume --group billing --topic orders --partition 2\n"
        );
        let text = list(&[stop(1, true), stop(2, false)], None, true, None);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("  STOPPED AT            RESUMED AT            MESSAGE ID"),
            "{text}"
        );
        assert!(
            lines[1].contains("  2026-11-24T10:00:00Z  2026-11-24T10:05:00Z  -  "),
            "{text}"
        );
        assert!(
            lines[2].contains("  2026-11-24T10:00:00Z  -                     -  "),
            "{text}"
        );
    }

    #[test]
    fn skipped_stops_are_marked_and_their_reasons_follow_the_table() {
        let text = list(
            &[
                stop(1, true),
                skipped(2, "not JSON:\n  written by hand"),
                stop(3, false),
            ],
            None,
            true,
            None,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("  STOPPED AT            RESUMED AT                      MESSAGE ID"),
            "{text}"
        );
        assert!(
            lines[1].contains("  2026-11-24T10:05:00Z            -  "),
            "{text}"
        );
        assert!(
            lines[2].contains("  2026-11-24T10:05:00Z (skipped)  -  "),
            "{text}"
        );
        assert!(
            lines[3].contains("  -                               -  "),
            "{text}"
        );
        assert_eq!(
            lines[4..],
            [
                "",
                "stop 2 skipped offset 17 of orders[2]: not JSON: written by hand",
                "",
                "resume once the cause is fixed: outbox partitions resume --group billing \
                 --topic orders --partition 2",
            ]
        );
    }

    #[test]
    fn skip_says_what_it_skipped_and_where_the_partition_goes_on() {
        let stop = skipped(2, "garbage");
        assert_eq!(
            skipped_text(&stop),
            "skipped offset 17 of orders[2] for group billing (a record that could not be \
             decoded): a running consumer of the group reads it again from offset 18; the \
             record is never applied\n"
        );
        let id = uuid::Uuid::nil();
        assert!(
            skipped_text(&StoppedPartition {
                message_id: Some(id),
                ..stop
            })
            .contains(" (message 00000000-0000-0000-0000-000000000000): "),
        );
        assert_eq!(reason("  garbage \n").as_deref(), Ok("garbage"));
        assert!(reason(" \t").is_err());
    }

    #[test]
    fn an_empty_list_says_what_was_asked() {
        assert_eq!(list(&[], None, false, None), "no stopped partitions\n");
        assert_eq!(
            list(&[], Some("billing"), true, None),
            "no stopped partitions for group billing, active or resumed\n"
        );
        // Only resumed stops: nothing to resume, no hint.
        assert!(
            !list(
                &[stop(1, true)],
                None,
                true,
                Some(&ShownUrl::of("postgres://h/d"))
            )
            .contains("resume once")
        );
        assert!(!list(&[stop(1, true)], None, true, None).contains("resume once"));
    }

    #[test]
    fn the_resume_hint_carries_the_database_url_given() {
        let url = "postgres://app@db/app?options=-c%20search_path%3Dbilling";
        let text = list(&[stop(1, false)], None, false, Some(&ShownUrl::of(url)));
        assert!(
            text.ends_with(
                "resume once the cause is fixed: outbox --database-url \
                 'postgres://app@db/app?options=-c%20search_path%3Dbilling' partitions resume \
                 --group billing --topic orders --partition 2\n"
            ),
            "{text}"
        );
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word("orders.v2"), "orders.v2");
    }

    #[test]
    fn a_url_with_a_password_is_left_to_database_url() {
        for url in [
            "postgres://app:s3cret@db/app",
            "postgres://app@db/app?password=s3cret",
        ] {
            assert_eq!(ShownUrl::of(url), ShownUrl::Secret, "{url}");
            let text = list(&[stop(1, false)], None, false, Some(&ShownUrl::of(url)));
            assert!(
                text.ends_with(
                    "resume once the cause is fixed: outbox --database-url \"$DATABASE_URL\" \
                     partitions resume --group billing --topic orders --partition 2\n\
                     (the password is left out: set DATABASE_URL to the URL given with \
                     --database-url)\n"
                ),
                "{text}"
            );
            assert!(!text.contains("s3cret") && !text.contains("***"), "{text}");
        }
        assert_eq!(
            ShownUrl::of("postgres://app@db/app"),
            ShownUrl::Plain("postgres://app@db/app".into())
        );
    }
}
