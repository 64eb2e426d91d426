//! `outbox relay` and `outbox dlq replay` over Kafka's `SASL_SSL` listener
//! with `-X` settings, and each wrong setting failing their start at once
//! with its cause on one line, no password shown.

use std::process::Command;
use std::time::{Duration, Instant};

use outbox_tests::{TestKafka, kafka_brokers, secure};

use super::support::{count, enqueue, migrated_db, outbox, outbox_on, run, start};

/// A wrong setting must fail the command within this (the checks' own limit
/// is 10 s; a refused login or certificate is reported within a second or
/// two, and a process starts in well under one).
const FAST: Duration = Duration::from_secs(10);

/// `-X key=value` for each setting.
fn dash_x(settings: &[(String, String)]) -> Vec<String> {
    settings
        .iter()
        .flat_map(|(key, value)| ["-X".to_owned(), format!("{key}={value}")])
        .collect()
}

fn with(settings: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| (k.clone(), if k == key { value } else { v }.to_owned()))
        .collect()
}

/// A wrong setting: its name, the brokers, the settings, and the first
/// words of its error.
type Wrong = (&'static str, String, Vec<(String, String)>, &'static str);

/// Each wrong setting of the issue: password, CA, listener (both ways).
fn wrong_settings() -> Vec<Wrong> {
    let good = secure::kafka_sasl_ssl_settings();
    let sasl = secure::kafka_sasl_ssl_brokers();
    let other_ca = secure::other_ca_path().display().to_string();
    vec![
        (
            "wrong password",
            sasl.clone(),
            with(&good, "sasl.password", "not-the-password"),
            "authentication failed",
        ),
        (
            "untrusted CA",
            sasl.clone(),
            with(&good, "ssl.ca.location", &other_ca),
            "the broker's certificate is not trusted",
        ),
        (
            "plaintext client on the SASL_SSL port",
            sasl,
            Vec::new(),
            "the listener expects TLS",
        ),
        (
            "SASL_SSL client on the plaintext port",
            kafka_brokers(),
            good,
            "the listener does not speak TLS",
        ),
    ]
}

#[test]
fn relay_publishes_over_sasl_ssl() {
    let db = migrated_db("cli_secure_relay");
    let kafka = TestKafka::new("cli_secure_relay");
    let topic = kafka.create_topic("events", 1);
    let mut conn = db.connect();
    enqueue(&mut conn, &[(topic.as_str(), "1"), (topic.as_str(), "2")]);

    let brokers = secure::kafka_sasl_ssl_brokers();
    let mut args = vec!["relay".to_owned(), "--brokers".to_owned(), brokers];
    args.extend(dash_x(&secure::kafka_sasl_ssl_settings()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let relay = start(&mut outbox_on(&db, &args));
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&mut conn, "true") > 0 {
        if Instant::now() > deadline {
            let (stdout, stderr) = relay.kill();
            panic!("not published over SASL_SSL\nstdout:\n{stdout}\nstderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = relay.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let finished = relay.wait(Duration::from_secs(10));
    assert_eq!(finished.code, Some(0), "{finished:#?}");
    assert!(
        finished
            .stdout
            .starts_with("relay stopped: published 2, parked 0"),
        "{finished:#?}"
    );
    assert!(
        !finished.stderr.contains(&secure::kafka_sasl_password()),
        "{finished:#?}"
    );
}

#[test]
fn dlq_replay_over_sasl_ssl() {
    let kafka = TestKafka::new("cli_secure_dlq");
    // An empty dead-letter topic: the replay connects, reads its offsets and
    // says there is nothing to replay.
    let dlq = kafka.create_topic("orders_dlq", 1);
    let group = kafka.group("replay");
    let mut args = vec![
        "dlq".to_owned(),
        "replay".to_owned(),
        dlq.clone(),
        "--group".to_owned(),
        group.clone(),
        "--brokers".to_owned(),
        secure::kafka_sasl_ssl_brokers(),
    ];
    args.extend(dash_x(&secure::kafka_sasl_ssl_settings()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let finished = run(&mut outbox(&args));
    assert_eq!(
        finished.success(),
        format!("nothing to replay: {dlq} has no records past the offsets of group {group}\n")
    );
}

#[test]
fn each_wrong_setting_fails_relay_and_dlq_replay_at_once_with_its_cause() {
    let db = migrated_db("cli_secure_wrong");
    for (name, brokers, settings, says) in wrong_settings() {
        let x = dash_x(&settings);
        let relay: Vec<&str> = ["relay", "--brokers", brokers.as_str()]
            .into_iter()
            .chain(x.iter().map(String::as_str))
            .collect();
        let replay: Vec<&str> = ["dlq", "replay", "x.dlq", "--brokers", brokers.as_str()]
            .into_iter()
            .chain(x.iter().map(String::as_str))
            .collect();
        for (command, mut process) in [
            ("relay", outbox_on(&db, &relay)),
            ("dlq replay", outbox(&replay)),
        ] {
            let started = Instant::now();
            let finished = start(&mut process).wait(Duration::from_secs(30));
            let took = started.elapsed();
            let line = finished.one_line_failure();
            eprintln!("{command}, {name}: {line} ({took:?})");
            assert!(
                line.starts_with(&format!("error: Kafka at {brokers}: {says}")),
                "{command}, {name}: {line}"
            );
            assert!(took < FAST, "{command}, {name}: took {took:?}");
            assert!(
                !finished.stderr.contains("not-the-password"),
                "{finished:#?}"
            );
            assert!(
                !finished.stderr.contains(&secure::kafka_sasl_password()),
                "{finished:#?}"
            );
        }
    }
}

#[test]
fn a_refused_secret_setting_is_not_shown() {
    // Misspelt: librdkafka refuses it, quoting the value, which stays hidden.
    let finished = run(&mut outbox(&[
        "dlq",
        "replay",
        "x.dlq",
        "--brokers",
        "127.0.0.1:1",
        "-X",
        "sasl.pasword=outbox-secret",
    ]));
    let line = finished.one_line_failure();
    assert!(line.contains("sasl.pasword"), "{line}");
    assert!(!finished.stderr.contains("outbox-secret"), "{finished:#?}");
}

#[test]
fn a_missing_certificate_file_is_named_by_every_command_before_anything_is_contacted() {
    // librdkafka alone says "ssl.ca.location failed: error:05880002:x509
    // certificate routines::system lib", naming neither the file nor why.
    let says = "error: Kafka setting `ssl.ca.location`: cannot read /nonexistent/ca.pem: No such \
                file or directory (os error 2)";
    let kafka = [
        "--brokers",
        "127.0.0.1:1",
        "-X",
        "security.protocol=SSL",
        "-X",
        "ssl.ca.location=/nonexistent/ca.pem",
    ];
    let commands: [&[&str]; 3] = [
        // No database either: the settings are checked before it is contacted.
        &[
            "--database-url",
            "postgres://u:secret@127.0.0.1:1/x",
            "relay",
        ],
        &["dlq", "replay", "x.dlq"],
        &[
            "topics",
            "create",
            "x",
            "--partitions",
            "1",
            "--replication-factor",
            "1",
        ],
    ];
    for command in commands {
        let args: Vec<&str> = command.iter().chain(&kafka).copied().collect();
        let finished = run(&mut outbox(&args));
        assert_eq!(finished.one_line_failure(), says, "{command:?}");
        assert_eq!(finished.stdout, "", "{command:?}");
    }
}
