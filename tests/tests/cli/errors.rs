//! Each mistake is reported on stderr as `error: ` and what failed where, with
//! the exit status: 2 for a wrong command line (as clap does), 1 for a command
//! that failed. Passwords never show.

use std::time::Duration;

use outbox_tests::TestDb;

use super::support::{
    assert_kafka_settings_are_checked, assert_unreachable_database_is_masked, migrated_db, outbox,
    outbox_on, run, run_with_kafka_setting, start,
};

#[test]
fn no_database_url() {
    for args in [&["status"][..], &["migrations", "run"], &["parked", "list"]] {
        let finished = run(&mut outbox(args));
        assert_eq!(finished.code, Some(2), "{args:?}: {finished:#?}");
        assert_eq!(
            finished.stderr, "error: no database: pass --database-url or set DATABASE_URL\n",
            "{args:?}"
        );
    }
}

#[test]
fn database_url_from_the_environment() {
    let db = migrated_db("cli_database_url_env");
    let finished = run(outbox(&["status"]).env("DATABASE_URL", db.url()));
    assert_eq!(
        finished.success(),
        "the outbox is empty: nothing waiting, nothing parked\n"
    );
}

#[test]
fn unreachable_database_is_named_with_its_password_masked() {
    for args in [
        &["status"][..],
        &["migrations", "run"],
        &["relay", "--brokers", "127.0.0.1:1"],
    ] {
        assert_unreachable_database_is_masked(args);
    }
}

#[test]
fn unreachable_broker_stops_the_relay_before_it_starts() {
    let db = migrated_db("cli_unreachable_broker");
    let finished = start(&mut outbox_on(&db, &["relay", "--brokers", "127.0.0.1:1"]))
        .wait(Duration::from_secs(30));
    let line = finished.one_line_failure();
    assert!(
        line.starts_with(
            "error: Kafka at 127.0.0.1:1: connection refused (is a broker listening on that port?): "
        ),
        "{line}"
    );
}

#[test]
fn missing_tables_say_to_run_the_migrations() {
    let db = TestDb::new("cli_missing_tables");
    let expected = format!(
        "error: no outbox tables at {} (search_path: {}): run `outbox migrations run` first",
        db.url(),
        db.schema()
    );
    for args in [
        &["status"][..],
        &["parked", "list"],
        &["parked", "retry", "--all"],
    ] {
        let finished = run(&mut outbox_on(&db, args));
        assert_eq!(finished.one_line_failure(), expected, "{args:?}");
    }
    let relay = run(&mut outbox_on(&db, &["relay", "--brokers", "127.0.0.1:1"]));
    assert_eq!(relay.one_line_failure(), expected);
}

#[test]
fn tables_of_an_older_release_say_to_run_the_migrations() {
    use diesel::connection::SimpleConnection;
    let db = TestDb::new("cli_older_tables");
    // Migration 1 alone: the tables before Avro values.
    db.connect()
        .batch_execute(outbox_diesel::migrations::ALL[0].up)
        .expect("migration 1");
    let expected = format!(
        "error: the outbox tables at {} (search_path: {}) lack the latest migration \
         (no outbox_schemas): run `outbox migrations run` first",
        db.url(),
        db.schema()
    );
    let status = run(&mut outbox_on(&db, &["status"]));
    assert_eq!(status.one_line_failure(), expected);
    let relay = run(&mut outbox_on(&db, &["relay", "--brokers", "127.0.0.1:1"]));
    assert_eq!(relay.one_line_failure(), expected);
}

#[test]
fn relay_settings_out_of_range() {
    // Settings are checked before any server is contacted.
    let url = "postgres://u:secret@127.0.0.1:1/x";
    let relay = |extra: &[&str]| {
        let mut args = vec!["--database-url", url, "relay", "--brokers", "127.0.0.1:1"];
        args.extend_from_slice(extra);
        run(&mut outbox(&args))
    };
    assert_eq!(
        relay(&["--batch-size", "0"]).one_line_failure(),
        "error: invalid setting `batch_size`: must be between 1 and 100000"
    );
    assert_eq!(
        relay(&["--shards", "5000"]).one_line_failure(),
        "error: invalid setting `shards`: must be between 1 and 4096"
    );
    assert_eq!(
        relay(&["--poll-interval-ms", "0"]).one_line_failure(),
        "error: invalid setting `poll_interval`: must be more than zero"
    );
    assert_eq!(
        relay(&["--batch-size", "many"]).failure(2),
        "error: invalid value 'many' for '--batch-size <ROWS>': invalid digit found in string"
    );
}

#[test]
fn producer_settings() {
    let relay = [
        "--database-url",
        "postgres://u:secret@127.0.0.1:1/x",
        "relay",
        "--brokers",
        "127.0.0.1:1",
    ];
    assert_kafka_settings_are_checked(&relay, "producer-setting", "producer");
    assert_eq!(
        run_with_kafka_setting(&relay, "acks=banana").one_line_failure(),
        "error: invalid Kafka producer settings: Client config error: \
         Invalid value for configuration property \"request.required.acks\" acks banana"
    );
}

#[test]
fn no_brokers() {
    let finished = run(&mut outbox(&[
        "--database-url",
        "postgres://127.0.0.1:1/x",
        "relay",
    ]));
    assert_eq!(
        finished.stderr,
        "error: no Kafka brokers: pass --brokers or set KAFKA_BROKERS\n"
    );
    assert_eq!(finished.code, Some(2));
}

#[test]
fn command_line_mistakes() {
    let first_line = |args: &[&str]| run(&mut outbox(args)).failure(2).to_owned();
    assert_eq!(
        first_line(&["frobnicate"]),
        "error: unrecognized subcommand 'frobnicate'"
    );
    assert_eq!(
        first_line(&["parked", "retry"]),
        "error: the following required arguments were not provided:"
    );
    assert_eq!(
        first_line(&["parked", "retry", "1", "--all"]),
        "error: the argument '[ID]...' cannot be used with '--all'"
    );
    assert_eq!(
        first_line(&["parked", "discard", "seven"]),
        "error: invalid value 'seven' for '[ID]...': invalid digit found in string"
    );
    assert_eq!(
        first_line(&["parked", "list", "--limit", "0"]),
        "error: invalid value '0' for '--limit <ROWS>': must be at least 1"
    );
    assert_eq!(
        first_line(&["migrations", "write"]),
        "error: the following required arguments were not provided:"
    );
    assert_eq!(
        first_line(&[]),
        "Transactional outbox and idempotent inbox on PostgreSQL and Kafka: migrations, the relay and \
         the rows it has not sent yet, the partitions consumers stopped, and dead-letter topics"
    );
}

#[test]
fn help_and_version_succeed() {
    let help = run(&mut outbox(&["--help"]));
    let text = help.success();
    for command in [
        "migrations",
        "relay",
        "status",
        "parked",
        "partitions",
        "dlq",
        "schemas",
    ] {
        assert!(text.contains(command), "{text}");
    }
    // The environment's URL is never shown (it may hold a password).
    for args in [&["--help"][..], &["status", "--help"], &["relay", "--help"]] {
        let help = run(outbox(args).env("DATABASE_URL", "postgres://u:hunter2@h/d"));
        assert!(!help.success().contains("hunter2"), "{args:?}");
    }
    let version = run(&mut outbox(&["--version"]));
    assert_eq!(
        version.success(),
        format!("outbox {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_database_error_names_the_database_and_is_said_once() {
    use diesel::connection::SimpleConnection as _;

    let db = TestDb::new("cli_database_error_once");
    // Tables of the outbox's names without their columns: the query fails.
    db.connect()
        .batch_execute(
            "CREATE TABLE outbox_messages (id bigint); CREATE TABLE outbox_schemas (id bigint)",
        )
        .expect("tables");
    let with_password = db.url().replace("postgres@", "postgres:s3cret@");
    let finished = run(&mut outbox(&["--database-url", &with_password, "status"]));
    let line = finished.one_line_failure();
    let masked = db.url().replace("postgres@", "postgres:***@");
    assert!(
        line.starts_with(&format!(
            "error: status at {masked}: database error: column "
        )),
        "{line}"
    );
    assert!(line.ends_with("does not exist"), "{line}");
    assert_eq!(line.matches("database error").count(), 1, "{line}");
    assert_eq!(line.matches("does not exist").count(), 1, "{line}");
    assert!(!finished.stderr.contains("s3cret"), "{finished:#?}");
}
