//! `outbox topics create`: the topics and `.dlq` topics it makes on the real
//! broker, idempotently, and how it refuses bad names and unreachable brokers.

use std::time::Duration;

use outbox_tests::TestKafka;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;

use super::support::{outbox, run};

/// Topics this test made through the command, deleted when dropped.
struct Made {
    brokers: String,
    names: Vec<String>,
}

impl Drop for Made {
    fn drop(&mut self) {
        let admin: AdminClient<DefaultClientContext> = match ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .create()
        {
            Ok(admin) => admin,
            Err(e) => return eprintln!("warning: no admin client to delete test topics: {e}"),
        };
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        if let Err(e) = futures::executor::block_on(admin.delete_topics(&names, &options)) {
            eprintln!("warning: could not delete test topics {names:?}: {e}");
        }
    }
}

/// Partitions of `topic` as the broker reports them.
fn partitions(brokers: &str, topic: &str) -> usize {
    let consumer: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a client");
    let metadata = rdkafka::consumer::Consumer::fetch_metadata(
        &consumer,
        Some(topic),
        Duration::from_secs(10),
    )
    .expect("metadata");
    metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .map_or(0, |t| t.partitions().len())
}

#[test]
fn create_makes_topics_and_their_dlq_then_reports_them_as_existing() {
    let kafka = TestKafka::new("cli_topics_create");
    let accounts = kafka.unique_name("accounts");
    let billing = kafka.unique_name("billing");
    let made = Made {
        brokers: kafka.brokers().to_owned(),
        names: vec![
            accounts.clone(),
            format!("{accounts}.dlq"),
            billing.clone(),
            format!("{billing}.dlq"),
        ],
    };
    let create = |topics: &[&str], partitions: &str| {
        let mut args = vec!["topics", "create"];
        args.extend_from_slice(topics);
        args.extend([
            "--dlq",
            "--partitions",
            partitions,
            "--replication-factor",
            "1",
            "--brokers",
            kafka.brokers(),
        ]);
        run(&mut outbox(&args))
    };

    let first = create(&[&accounts], "3");
    assert_eq!(
        first.success(),
        format!(
            "created {accounts} (3 partitions, replication factor 1)\n\
             created {accounts}.dlq (3 partitions, replication factor 1)\n"
        )
    );
    assert_eq!(partitions(kafka.brokers(), &accounts), 3);
    assert_eq!(partitions(kafka.brokers(), &format!("{accounts}.dlq")), 3);

    // Again, with one more topic and more partitions asked for: the existing
    // ones are reported, left as they are, and are not an error.
    let second = create(&[&accounts, &billing], "4");
    let text = second.success();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with(&format!(
            "exists  {accounts} (3 partitions, fewer than the 4 asked for: left as it is;"
        )),
        "{text}"
    );
    assert!(
        lines[1].starts_with(&format!("exists  {accounts}.dlq (3 partitions, fewer")),
        "{text}"
    );
    assert_eq!(
        lines[2],
        format!("created {billing} (4 partitions, replication factor 1)")
    );
    assert_eq!(
        lines[3],
        format!("created {billing}.dlq (4 partitions, replication factor 1)")
    );
    assert_eq!(partitions(kafka.brokers(), &accounts), 3);

    let third = create(&[&billing], "4");
    assert_eq!(
        third.success(),
        format!("exists  {billing} (4 partitions)\nexists  {billing}.dlq (4 partitions)\n")
    );
    drop(made);
}

#[test]
fn a_bad_topic_name_is_refused_before_the_brokers_are_contacted() {
    // No broker listens on port 1: a name check that contacted it would fail otherwise.
    let finished = run(&mut outbox(&[
        "topics",
        "create",
        "good",
        "user accounts",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
        "--brokers",
        "127.0.0.1:1",
    ]));
    assert_eq!(
        finished.one_line_failure(),
        "error: invalid topic name \"user accounts\": contains ' '; Kafka topic names use only \
         ASCII letters, digits, `.`, `_` and `-`"
    );
    let long = "a".repeat(247);
    let finished = run(&mut outbox(&[
        "topics",
        "create",
        &long,
        "--dlq",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
        "--brokers",
        "127.0.0.1:1",
    ]));
    assert!(
        finished
            .one_line_failure()
            .ends_with("is 251 characters long; Kafka allows 249"),
        "{finished:#?}"
    );
}

#[test]
fn an_unreachable_broker_is_named_with_its_cause() {
    let finished = run(&mut outbox(&[
        "topics",
        "create",
        "accounts",
        "--partitions",
        "1",
        "--replication-factor",
        "1",
        "--brokers",
        "127.0.0.1:1",
    ]));
    let line = finished.one_line_failure();
    assert!(
        line.starts_with("error: Kafka at 127.0.0.1:1: connection refused"),
        "{line}"
    );
    assert_eq!(finished.stdout, "");
}

#[test]
fn command_line_mistakes() {
    // All of stderr: clap names a missing argument on a line of its own.
    let usage = |args: &[&str]| {
        let finished = run(&mut outbox(args));
        finished.failure(2);
        finished.stderr.trim_end().to_owned()
    };
    assert!(
        usage(&["topics", "create", "a", "--partitions", "1"]).contains("--replication-factor <N>"),
        "the replication factor is required"
    );
    assert!(
        usage(&[
            "topics",
            "create",
            "a",
            "--partitions",
            "0",
            "--replication-factor",
            "1"
        ])
        .contains("0 is not in 1.."),
    );
    assert!(
        usage(&[
            "topics",
            "create",
            "--partitions",
            "1",
            "--replication-factor",
            "1"
        ])
        .contains("<TOPIC>..."),
        "a topic is required"
    );
    assert_eq!(
        usage(&[
            "topics",
            "create",
            "a",
            "--partitions",
            "1",
            "--replication-factor",
            "1"
        ]),
        "error: no Kafka brokers: pass --brokers or set KAFKA_BROKERS"
    );
}

#[test]
fn refused_topics_are_listed_together_after_what_was_made() {
    let kafka = TestKafka::new("cli_topics_refused");
    // Kafka refuses a name that differs from an existing one only in `.`
    // against `_`.
    let existing = kafka.create_topic("dotted.one", 1);
    let twin = existing.replace('.', "_");
    let fresh = kafka.unique_name("fresh");
    let made = Made {
        brokers: kafka.brokers().to_owned(),
        names: vec![fresh.clone()],
    };
    let finished = run(&mut outbox(&[
        "topics",
        "create",
        &existing,
        &twin,
        &fresh,
        "--partitions",
        "1",
        "--replication-factor",
        "1",
        "--brokers",
        kafka.brokers(),
    ]));
    assert_eq!(
        finished.one_line_failure(),
        format!(
            "error: the brokers refused topic {twin} (InvalidTopic: an invalid name, or one that \
             collides with an existing topic (`.` and `_` count as the same)); the 2 others were \
             created or exist"
        )
    );
    assert_eq!(
        finished.stdout,
        format!(
            "exists  {existing} (1 partition)\ncreated {fresh} (1 partition, replication factor 1)\n"
        )
    );
    assert_eq!(partitions(kafka.brokers(), &fresh), 1);
    drop(made);
}
