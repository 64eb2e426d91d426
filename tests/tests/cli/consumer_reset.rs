//! `outbox consumer reset`, and `outbox_diesel::group_reset` under it, on the
//! real broker: where each `--to` puts the group's committed offsets, that a
//! dry run commits nothing, and that a group with a running member is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use outbox_diesel::Error;
use outbox_diesel::group_reset::{self, GroupResetError, ResetTo};
use outbox_tests::TestKafka;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::support::{Finished, assert_kafka_settings_are_checked, outbox, run};

const TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `count` records to `topic`'s `partition`, with the timestamp `at`
/// (milliseconds since 1970) when given, and waits for their acks.
fn produce(kafka: &TestKafka, topic: &str, partition: i32, count: usize, at: Option<i64>) {
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    futures::executor::block_on(async {
        for n in 0..count {
            let key = n.to_string();
            let mut record = FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload("{}");
            if let Some(at) = at {
                record = record.timestamp(at);
            }
            producer
                .send(record, TIMEOUT)
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    });
}

/// A client of `group` that never joins it: reads and commits its offsets.
fn client_of(kafka: &TestKafka, group: &str) -> BaseConsumer {
    kafka.consumer_config(group).create().unwrap()
}

/// `group`'s committed offset in each of the first `partitions` partitions of `topic`.
fn committed(kafka: &TestKafka, group: &str, topic: &str, partitions: i32) -> Vec<Option<i64>> {
    let mut asked = TopicPartitionList::new();
    for partition in 0..partitions {
        asked.add_partition(topic, partition);
    }
    let read = client_of(kafka, group)
        .committed_offsets(asked, TIMEOUT)
        .unwrap();
    (0..partitions)
        .map(
            |partition| match read.find_partition(topic, partition).unwrap().offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            },
        )
        .collect()
}

/// Commits `offsets` (by partition) of `topic` for `group`, as a consumer
/// that has read that far would.
fn commit(kafka: &TestKafka, group: &str, topic: &str, offsets: &[i64]) {
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets.iter().enumerate() {
        list.add_partition_offset(topic, partition as i32, Offset::Offset(*offset))
            .unwrap();
    }
    client_of(kafka, group)
        .commit(&list, CommitMode::Sync)
        .unwrap();
}

/// Deletes the records of `topic`'s `partition` before `offset` (its low
/// watermark becomes `offset`).
fn delete_before(kafka: &TestKafka, topic: &str, partition: i32, offset: i64) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", kafka.brokers())
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    let options = AdminOptions::new().operation_timeout(Some(TIMEOUT));
    let deleted = futures::executor::block_on(admin.delete_records(&list, &options)).unwrap();
    for element in deleted.elements() {
        element.error().unwrap();
    }
}

/// `outbox consumer reset --group <group> --topic <topic>… <args> --brokers <kafka>`.
fn reset(kafka: &TestKafka, group: &str, topics: &[&str], args: &[&str]) -> Finished {
    let mut command = outbox(&["consumer", "reset", "--group", group]);
    for topic in topics {
        command.args(["--topic", topic]);
    }
    run(command.args(args).args(["--brokers", kafka.brokers()]))
}

/// The rows of the printed table (after its header), as
/// `(topic, partition, from, to)`.
fn rows(stdout: &str) -> Vec<(String, String, String, String)> {
    let mut lines = stdout.lines().skip_while(|line| !line.starts_with("TOPIC"));
    assert_eq!(
        lines
            .next()
            .map(|header| header.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["TOPIC", "PARTITION", "FROM", "TO"]),
        "{stdout}"
    );
    lines
        .take_while(|line| !line.is_empty())
        .map(|line| {
            let cells: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(cells.len(), 4, "{line}");
            let [topic, partition, from, to] = [cells[0], cells[1], cells[2], cells[3]];
            (topic.into(), partition.into(), from.into(), to.into())
        })
        .collect()
}

fn row(topic: &str, partition: i32, from: &str, to: i64) -> (String, String, String, String) {
    (
        topic.to_owned(),
        partition.to_string(),
        from.to_owned(),
        to.to_string(),
    )
}

/// A consumer of the group, subscribed and polling on a thread of its own
/// until dropped.
struct Member {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Member {
    /// Joins `group` on `topic` as `client.id` `client_id`; returns once it
    /// has its partitions.
    fn join(kafka: &TestKafka, group: &str, topic: &str, client_id: &str) -> Self {
        let mut config = kafka.consumer_config(group);
        config.set("client.id", client_id);
        let consumer: BaseConsumer = config.create().unwrap();
        consumer.subscribe(&[topic]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while consumer.assignment().unwrap().count() == 0 {
            assert!(Instant::now() < deadline, "no assignment for {group}");
            let _ = consumer.poll(Duration::from_millis(100));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let stop = Arc::clone(&stop);
            move || {
                while !stop.load(Ordering::Relaxed) {
                    let _ = consumer.poll(Duration::from_millis(100));
                }
                // Dropped here: it leaves the group.
            }
        });
        Member {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn earliest_after_the_group_consumed_everything() {
    let kafka = TestKafka::new("cli_consumer_reset_earliest");
    let topic = kafka.create_topic("orders", 2);
    produce(&kafka, &topic, 0, 5, None);
    produce(&kafka, &topic, 1, 2, None);
    // Partition 0 no longer holds its first two records.
    delete_before(&kafka, &topic, 0, 2);
    let group = kafka.group("billing");
    // A consumer that read everything and left.
    drop(Member::join(&kafka, &group, &topic, "billing-1"));
    commit(&kafka, &group, &topic, &[5, 2]);

    let finished = reset(&kafka, &group, &[&topic], &["--to", "earliest"]);
    let stdout = finished.success();
    assert!(
        stdout.starts_with(&format!(
            "reset consumer group {group} to earliest (2 partitions)\n\n"
        )),
        "{stdout}"
    );
    assert_eq!(
        rows(stdout),
        [row(&topic, 0, "5", 2), row(&topic, 1, "2", 0)],
        "{stdout}"
    );
    assert_eq!(
        committed(&kafka, &group, &topic, 2),
        [Some(2), Some(0)],
        "the low watermarks"
    );
}

#[test]
fn latest_skips_everything_held() {
    let kafka = TestKafka::new("cli_consumer_reset_latest");
    let topic = kafka.create_topic("orders", 2);
    produce(&kafka, &topic, 0, 3, None);
    produce(&kafka, &topic, 1, 1, None);
    let group = kafka.group("billing");

    let finished = reset(&kafka, &group, &[&topic], &["--to", "latest", "--json"]);
    let json: serde_json::Value = serde_json::from_str(finished.success()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "group": group,
            "to": "latest",
            "dry_run": false,
            "partitions": [
                {"topic": topic, "partition": 0, "from": null, "to": 3, "low": 0, "high": 3,
                 "clamped": false},
                {"topic": topic, "partition": 1, "from": null, "to": 1, "low": 0, "high": 1,
                 "clamped": false},
            ],
        })
    );
    assert_eq!(committed(&kafka, &group, &topic, 2), [Some(3), Some(1)]);
}

#[test]
fn a_timestamp_lands_on_the_first_record_at_or_after_it() {
    let kafka = TestKafka::new("cli_consumer_reset_timestamp");
    let topic = kafka.create_topic("orders", 2);
    let first = chrono::Utc::now() - chrono::Duration::hours(2);
    let second = first + chrono::Duration::hours(1);
    // Partition 0: three records, then two an hour later; partition 1: the
    // first batch only.
    produce(&kafka, &topic, 0, 3, Some(first.timestamp_millis()));
    produce(&kafka, &topic, 0, 2, Some(second.timestamp_millis()));
    produce(&kafka, &topic, 1, 4, Some(first.timestamp_millis()));
    let group = kafka.group("billing");
    commit(&kafka, &group, &topic, &[5, 4]);

    let between = (first + chrono::Duration::minutes(30)).to_rfc3339();
    let finished = reset(&kafka, &group, &[&topic], &["--to", &between]);
    let stdout = finished.success();
    assert_eq!(
        rows(stdout),
        // Nothing that recent in partition 1: its end.
        [row(&topic, 0, "5", 3), row(&topic, 1, "4", 4)],
        "{stdout}"
    );
    assert_eq!(committed(&kafka, &group, &topic, 2), [Some(3), Some(4)]);

    // The exact time of the first batch: its first record.
    let finished = reset(&kafka, &group, &[&topic], &["--to", &first.to_rfc3339()]);
    assert_eq!(
        rows(finished.success()),
        [row(&topic, 0, "3", 0), row(&topic, 1, "4", 0)]
    );
    assert_eq!(committed(&kafka, &group, &topic, 2), [Some(0), Some(0)]);
}

#[test]
fn an_offset_is_clamped_to_what_each_partition_holds() {
    let kafka = TestKafka::new("cli_consumer_reset_offset");
    let topic = kafka.create_topic("orders", 3);
    produce(&kafka, &topic, 0, 6, None);
    produce(&kafka, &topic, 1, 2, None);
    produce(&kafka, &topic, 2, 9, None);
    delete_before(&kafka, &topic, 2, 5);
    let group = kafka.group("billing");
    commit(&kafka, &group, &topic, &[6, 2, 9]);

    let finished = reset(&kafka, &group, &[&topic], &["--to", "4"]);
    let stdout = finished.success();
    assert!(
        stdout.starts_with(&format!(
            "reset consumer group {group} to offset 4 (3 partitions)\n"
        )),
        "{stdout}"
    );
    assert_eq!(
        rows(stdout),
        [
            row(&topic, 0, "6", 4),
            row(&topic, 1, "2", 2),
            row(&topic, 2, "9", 5)
        ],
        "{stdout}"
    );
    assert!(
        stdout.ends_with(&format!(
            "\n{topic}[1] holds offsets 0 to 2: offset 4 is outside them, so it is reset to 2\n\
             {topic}[2] holds offsets 5 to 9: offset 4 is outside them, so it is reset to 5\n"
        )),
        "{stdout}"
    );
    assert_eq!(
        committed(&kafka, &group, &topic, 3),
        [Some(4), Some(2), Some(5)]
    );
}

#[test]
fn a_dry_run_commits_nothing() {
    let kafka = TestKafka::new("cli_consumer_reset_dry_run");
    let topic = kafka.create_topic("orders", 1);
    let other = kafka.create_topic("invoices", 1);
    produce(&kafka, &topic, 0, 3, None);
    produce(&kafka, &other, 0, 2, None);
    let group = kafka.group("billing");
    commit(&kafka, &group, &topic, &[3]);

    let finished = reset(
        &kafka,
        &group,
        &[&topic, &other],
        &["--to", "earliest", "--dry-run"],
    );
    let stdout = finished.success();
    assert!(
        stdout.starts_with(&format!(
            "dry run, nothing committed: consumer group {group} would be reset to earliest \
             (2 partitions)\n"
        )),
        "{stdout}"
    );
    assert_eq!(
        rows(stdout),
        [row(&topic, 0, "3", 0), row(&other, 0, "-", 0)],
        "{stdout}"
    );
    assert_eq!(committed(&kafka, &group, &topic, 1), [Some(3)]);
    assert_eq!(committed(&kafka, &group, &other, 1), [None]);
}

#[test]
fn a_group_with_a_running_member_is_refused() {
    let kafka = TestKafka::new("cli_consumer_reset_active");
    let topic = kafka.create_topic("orders", 2);
    produce(&kafka, &topic, 0, 3, None);
    let group = kafka.group("billing");
    commit(&kafka, &group, &topic, &[3, 0]);
    let client_id = kafka.unique_name("member");
    let member = Member::join(&kafka, &group, &topic, &client_id);

    for dry_run in [&[][..], &["--dry-run"][..]] {
        let mut args = vec!["--to", "earliest"];
        args.extend(dry_run);
        let finished = reset(&kafka, &group, &[&topic], &args);
        let line = finished.one_line_failure();
        assert!(
            line.starts_with(&format!(
                "error: consumer group {group} is active (state Stable, 1 member: {client_id} on "
            )),
            "{line}"
        );
        assert!(
            line.ends_with("); stop its consumers first, then reset"),
            "{line}"
        );
        assert_eq!(finished.stdout, "");
    }
    assert_eq!(committed(&kafka, &group, &topic, 2), [Some(3), Some(0)]);

    // The library says the same, typed.
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.brokers());
    let error = group_reset::reset(&config, &group, &[&topic], ResetTo::Latest, false).unwrap_err();
    let Error::GroupReset(GroupResetError::Active { state, members, .. }) = error else {
        panic!("{error:?}");
    };
    assert_eq!(state, "Stable");
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0].client_id, client_id);
    assert!(!members[0].host.is_empty() && !members[0].host.starts_with('/'));

    // Once it has left, the reset goes through.
    drop(member);
    let finished = reset(&kafka, &group, &[&topic], &["--to", "earliest"]);
    assert_eq!(
        rows(finished.success()),
        [row(&topic, 0, "3", 0), row(&topic, 1, "0", 0)]
    );
}

#[test]
fn unknown_topics_are_named_together() {
    let kafka = TestKafka::new("cli_consumer_reset_unknown");
    let topic = kafka.create_topic("orders", 1);
    let (missing, also) = (kafka.unique_name("missing"), kafka.unique_name("also"));
    let group = kafka.group("billing");
    let finished = reset(
        &kafka,
        &group,
        &[&missing, &topic, &also],
        &["--to", "earliest"],
    );
    assert_eq!(
        finished.one_line_failure(),
        format!("error: no topics {missing}, {also} at {}", kafka.brokers())
    );
    assert_eq!(finished.stdout, "");
    assert_eq!(committed(&kafka, &group, &topic, 1), [None]);
}

#[test]
fn command_line_mistakes() {
    let base = ["consumer", "reset", "--group", "g", "--topic", "t"];
    let with = |args: &[&str]| {
        let mut command = outbox(&base);
        command.args(args).args(["--brokers", "127.0.0.1:1"]);
        run(&mut command)
    };
    assert_eq!(
        with(&["--to", "yesterday"]).failure(2),
        "error: invalid value 'yesterday' for '--to <earliest|latest|TIME|OFFSET>': expected \
         `earliest`, `latest`, an RFC 3339 timestamp (e.g. 2026-12-01T09:30:00Z) or an offset \
         (e.g. 42)"
    );
    assert!(with(&["--to", "-1"]).failure(2).starts_with(
        "error: invalid value '-1' for '--to <earliest|latest|TIME|OFFSET>': expected"
    ),);
    assert_eq!(
        run(&mut outbox(&[
            "consumer", "reset", "--group", "g", "--to", "latest"
        ]))
        .failure(2),
        "error: the following required arguments were not provided:"
    );
    let no_brokers = run(outbox(&base).args(["--to", "latest"]));
    assert_eq!(
        no_brokers.stderr,
        "error: no Kafka brokers: pass --brokers or set KAFKA_BROKERS\n"
    );
    assert_eq!(no_brokers.code, Some(2));
    let mut args = base.to_vec();
    args.extend(["--to", "latest", "--brokers", "127.0.0.1:1"]);
    assert_kafka_settings_are_checked(&args, "kafka-setting", "consumer");
}

#[test]
fn the_library_plans_without_committing() {
    let kafka = TestKafka::new("consumer_reset_library");
    let topic = kafka.create_topic("orders", 2);
    produce(&kafka, &topic, 0, 4, None);
    let group = kafka.group("billing");
    commit(&kafka, &group, &topic, &[4, 0]);
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", kafka.brokers());

    let plan =
        group_reset::reset(&config, &group, &[&topic, &topic], ResetTo::Offset(1), true).unwrap();
    let seen: Vec<_> = plan
        .iter()
        .map(|p| (p.partition, p.from, p.to, p.low, p.high, p.clamped))
        .collect();
    // The topic given twice is reset once.
    assert_eq!(
        seen,
        [(0, Some(4), 1, 0, 4, false), (1, Some(0), 0, 0, 0, true)]
    );
    assert!(plan.iter().all(|p| p.topic == topic));
    assert_eq!(committed(&kafka, &group, &topic, 2), [Some(4), Some(0)]);

    let plan = group_reset::reset(&config, &group, &[&topic], ResetTo::Offset(1), false).unwrap();
    assert_eq!(plan.len(), 2);
    assert_eq!(committed(&kafka, &group, &topic, 2), [Some(1), Some(0)]);
}
