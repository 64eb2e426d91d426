//! `outbox relay` end to end: it publishes the outbox to Kafka, and stops
//! cleanly on SIGTERM with a report.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use outbox_tests::TestKafka;
use rdkafka::Message as _;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;

use super::support::{count, enqueue, migrated_db, outbox_on, start};

const MESSAGES: usize = 20;

#[test]
fn relay_publishes_the_outbox_and_stops_on_sigterm() {
    let db = migrated_db("cli_relay");
    let kafka = TestKafka::new("cli_relay");
    let topic = kafka.create_topic("events", 2);
    let mut conn = db.connect();
    let keys: Vec<String> = (0..MESSAGES).map(|n| (n % 5).to_string()).collect();
    let rows: Vec<(&str, &str)> = keys.iter().map(|k| (topic.as_str(), k.as_str())).collect();
    let ids = enqueue(&mut conn, &rows);

    let relay = start(&mut outbox_on(
        &db,
        &[
            "relay",
            "--brokers",
            kafka.brokers(),
            "--batch-size",
            "7",
            "-X",
            "linger.ms=0",
        ],
    ));

    // The relay deletes each row once Kafka has acknowledged it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&mut conn, "true") > 0 {
        if Instant::now() > deadline {
            let left = count(&mut conn, "true");
            let (stdout, stderr) = relay.kill();
            panic!(
                "{left} of {MESSAGES} rows still in the outbox after 60 s\n\
                 stdout:\n{stdout}\nstderr:\n{stderr}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }

    let pid = relay.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success(), "kill -TERM {pid}");
    let finished = relay.wait(Duration::from_secs(10));
    assert_eq!(finished.code, Some(0), "{finished:#?}");
    assert!(
        finished.stdout.starts_with(&format!(
            "relay stopped: published {MESSAGES}, parked 0 (0 failed attempts, "
        )),
        "{finished:#?}"
    );
    assert!(finished.stderr.contains("SIGTERM"), "{finished:#?}");

    // Every message is on the topic, once.
    let group = kafka.group("check");
    let consumer: BaseConsumer = kafka.consumer_config(&group).create().unwrap();
    consumer.subscribe(&[&topic]).unwrap();
    let mut received = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.len() < MESSAGES && Instant::now() < deadline {
        if let Some(record) = consumer.poll(Duration::from_millis(200)) {
            let record = record.unwrap();
            let message_id = record
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "message_id"))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
                .expect("a message_id header");
            received.push(message_id);
        }
    }
    let expected: BTreeSet<String> = ids.iter().map(ToString::to_string).collect();
    let got: BTreeSet<String> = received.iter().cloned().collect();
    assert_eq!(
        received.len(),
        MESSAGES,
        "duplicates or missing: {received:?}"
    );
    assert_eq!(got, expected);
}
