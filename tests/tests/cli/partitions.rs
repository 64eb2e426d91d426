//! `outbox partitions list | resume`, and the stopped-partitions API under them
//! (`outbox_diesel::stopped`).

use diesel::connection::SimpleConnection;
use outbox_diesel::StoppedPartition;
use outbox_diesel::stopped::{self, NewStop};
use outbox_tests::TestDb;

use super::support::{
    OUTBOX, assert_unreachable_database_is_masked, migrated_db, outbox, outbox_on, run, snapshots,
};

const MESSAGE_ID: &str = "0190f3c2-7a4b-7c1d-9e2f-3a4b5c6d7e8f";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Records each stop with `stopped::record_async`, as a consumer does.
fn record(db: &TestDb, stops: &[NewStop<'_>]) -> Vec<StoppedPartition> {
    runtime().block_on(async {
        let mut conn = db.connect_async().await;
        let mut recorded = Vec::new();
        for stop in stops {
            recorded.push(stopped::record_async(&mut conn, stop).await.unwrap());
        }
        recorded
    })
}

fn stop<'a>(group: &'a str, topic: &'a str, partition: i32, offset: i64) -> NewStop<'a> {
    NewStop {
        consumer_group: group,
        topic,
        kafka_partition: partition,
        kafka_offset: offset,
        message_id: None,
        error: "handler: invoice 42 has no customer",
    }
}

/// Three stops: billing on orders[2] (id 1) and on invoices[0] (id 2, a record
/// that could not be decoded), shipping on orders[1] (id 3, resumed). Times are
/// fixed so that the output reads the same each run.
fn three_stops(test: &str) -> TestDb {
    let db = migrated_db(test);
    let message_id = MESSAGE_ID.parse().unwrap();
    let recorded = record(
        &db,
        &[
            NewStop {
                message_id: Some(message_id),
                ..stop("billing", "orders", 2, 17)
            },
            NewStop {
                error: "decode: missing header `message_id`\n  (offset 3)",
                ..stop("billing", "invoices", 0, 3)
            },
            stop("shipping", "orders", 1, 5),
        ],
    );
    assert_eq!(recorded.iter().map(|s| s.id).collect::<Vec<_>>(), [1, 2, 3]);
    let mut conn = db.connect();
    assert!(
        stopped::resume(&mut conn, "shipping", "orders", 1)
            .unwrap()
            .is_some()
    );
    conn.batch_execute(
        "UPDATE outbox_stopped_partitions \
           SET stopped_at = timestamptz '2026-11-24 10:00:00Z' + id * interval '1 minute'; \
         UPDATE outbox_stopped_partitions \
           SET resumed_at = timestamptz '2026-11-24 11:00:00Z' WHERE resumed_at IS NOT NULL;",
    )
    .unwrap();
    db
}

#[test]
fn list_json_holds_the_active_stops() {
    let db = three_stops("cli_partitions_list_json");
    let finished = run(&mut outbox_on(&db, &["partitions", "list", "--json"]));
    let json = finished.success();
    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    let listed = value.as_array().unwrap();
    assert_eq!(listed.len(), 2, "{json}");
    assert_eq!(listed[0]["message_id"], MESSAGE_ID);
    assert_eq!(listed[1]["message_id"], serde_json::Value::Null);
    // Field names, order and formats are an interface: pinned.
    snapshots().bind(|| insta::assert_snapshot!("cli__partitions_list_json", json));

    let all = run(&mut outbox_on(
        &db,
        &["partitions", "list", "--all", "--json"],
    ));
    let value: serde_json::Value = serde_json::from_str(all.success()).unwrap();
    let listed = value.as_array().unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(listed[2]["consumer_group"], "shipping");
    assert_eq!(listed[2]["resumed_at"], "2026-11-24T11:00:00Z");

    let none = run(&mut outbox_on(
        &db,
        &["partitions", "list", "--group", "nobody", "--json"],
    ));
    assert_eq!(none.success(), "[]\n");
}

#[test]
fn list_prints_a_table_and_how_to_resume() {
    let db = three_stops("cli_partitions_list_table");
    let active = run(&mut outbox_on(&db, &["partitions", "list"]));
    assert_eq!(
        active.success(),
        format!(
            "ID  GROUP    TOPIC     PARTITION  OFFSET  STOPPED AT            MESSAGE ID                            ERROR\n\
         \x201  billing  orders            2      17  2026-11-24T10:01:00Z  0190f3c2-7a4b-7c1d-9e2f-3a4b5c6d7e8f  handler: invoice 42 has no customer\n\
         \x202  billing  invoices          0       3  2026-11-24T10:02:00Z  -                                     decode: missing header `message_id` (offset 3)\n\
         \n\
         resume once the cause is fixed: outbox --database-url '{}' partitions resume --group billing --topic orders --partition 2\n",
            db.url()
        )
    );

    let all = run(&mut outbox_on(&db, &["partitions", "list", "--all"]));
    let lines: Vec<&str> = all.success().lines().collect();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(
        lines[0].contains("  STOPPED AT            RESUMED AT            MESSAGE ID"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("  2026-11-24T10:01:00Z  -                     0190f3c2-"),
        "{}",
        lines[1]
    );
    assert!(
        lines[3].starts_with(
            " 3  shipping  orders            1       5  2026-11-24T10:03:00Z  2026-11-24T11:00:00Z  -  "
        ),
        "{}",
        lines[3]
    );

    let shipping = |extra: &[&str]| {
        let mut args = vec!["partitions", "list", "--group", "shipping"];
        args.extend_from_slice(extra);
        run(&mut outbox_on(&db, &args)).success().to_owned()
    };
    assert_eq!(shipping(&[]), "no stopped partitions for group shipping\n");
    let resumed = shipping(&["--all"]);
    assert_eq!(resumed.lines().count(), 2, "{resumed}");
    assert!(
        !resumed.contains("resume once"),
        "nothing to resume: {resumed}"
    );
}

#[test]
fn list_of_no_stops() {
    let db = migrated_db("cli_partitions_list_empty");
    assert_eq!(
        run(&mut outbox_on(&db, &["partitions", "list"])).success(),
        "no stopped partitions\n"
    );
    assert_eq!(
        run(&mut outbox_on(&db, &["partitions", "list", "--all"])).success(),
        "no stopped partitions, active or resumed\n"
    );
}

#[test]
fn resume_marks_the_active_stop_resumed_and_keeps_it_as_history() {
    let db = migrated_db("cli_partitions_resume");
    let [first] = record(&db, &[stop("billing", "orders", 2, 17)])
        .try_into()
        .unwrap();
    let resume = [
        "--group",
        "billing",
        "--topic",
        "orders",
        "--partition",
        "2",
    ];

    let resumed = run(&mut outbox_on(
        &db,
        &[&["partitions", "resume"][..], &resume].concat(),
    ));
    assert_eq!(
        resumed.success(),
        "resumed orders[2] for group billing: a running consumer of the group reads it again \
         from offset 17\n"
    );
    let (active, by_id) = runtime().block_on(async {
        let mut conn = db.connect_async().await;
        (
            stopped::active_async(&mut conn, "billing", "orders", 2)
                .await
                .unwrap(),
            stopped::by_id_async(&mut conn, first.id).await.unwrap(),
        )
    });
    assert_eq!(active, None);
    let by_id = by_id.unwrap();
    assert!(!by_id.is_active());
    assert_eq!(
        StoppedPartition {
            resumed_at: None,
            ..by_id.clone()
        },
        first,
        "only resumed_at changes"
    );
    assert!(by_id.resumed_at.unwrap() >= by_id.stopped_at);

    // Nothing active any more: said so, exit 1 (as `parked retry` of a row
    // that is not parked).
    let again = run(&mut outbox_on(
        &db,
        &[&["partitions", "resume"][..], &resume].concat(),
    ));
    assert_eq!(
        again.one_line_failure(),
        format!(
            "error: nothing to resume: orders[2] has no active stop for group billing \
             in schema {} at {} (see `outbox partitions list --all`)",
            db.schema(),
            db.url()
        )
    );
    assert_eq!(again.stdout, "");

    // The partition may stop again: a new stop, the old one kept.
    let [second] = record(&db, &[stop("billing", "orders", 2, 40)])
        .try_into()
        .unwrap();
    assert_ne!(second.id, first.id);
    assert_eq!(second.kafka_offset, 40);
    let history = stopped::list(&mut db.connect(), Some("billing"), true).unwrap();
    assert_eq!(
        history
            .iter()
            .map(|s| (s.id, s.is_active()))
            .collect::<Vec<_>>(),
        [(first.id, false), (second.id, true)]
    );

    // Another group's stop of the same partition is not touched.
    record(&db, &[stop("shipping", "orders", 2, 9)]);
    let resumed = runtime().block_on(async {
        let mut conn = db.connect_async().await;
        stopped::resume_async(&mut conn, "billing", "orders", 2)
            .await
            .unwrap()
    });
    assert_eq!(resumed.map(|s| s.id), Some(second.id));
    let active = stopped::list(&mut db.connect(), None, false).unwrap();
    assert_eq!(
        active
            .iter()
            .map(|s| s.consumer_group.as_str())
            .collect::<Vec<_>>(),
        ["shipping"]
    );
}

#[test]
fn record_returns_the_active_stop_unchanged() {
    let db = migrated_db("cli_partitions_record_twice");
    let recorded = record(
        &db,
        &[
            stop("billing", "orders", 2, 17),
            NewStop {
                error: "later error",
                ..stop("billing", "orders", 2, 18)
            },
            stop("billing", "orders", 3, 18),
        ],
    );
    assert_eq!(recorded[1], recorded[0], "the first stop is kept");
    assert_eq!(recorded[1].kafka_offset, 17);
    assert_ne!(recorded[2].id, recorded[0].id, "another partition");
}

/// Consumers of one group stopping the same partition at once: one row, and
/// every one of them gets it.
#[test]
fn record_is_safe_against_concurrent_stops() {
    let db = migrated_db("cli_partitions_record_race");
    let rows = runtime().block_on(async {
        let mut conns = Vec::new();
        for _ in 0..8 {
            conns.push(db.connect_async().await);
        }
        let tasks = conns
            .into_iter()
            .enumerate()
            .map(|(n, mut conn)| async move {
                let error = format!("consumer {n}");
                let stop = NewStop {
                    error: &error,
                    ..stop("billing", "orders", 2, 100 + n as i64)
                };
                stopped::record_async(&mut conn, &stop).await.unwrap()
            });
        futures::future::join_all(tasks).await
    });
    assert!(rows.iter().all(|row| *row == rows[0]), "{rows:#?}");
    let all = stopped::list(&mut db.connect(), None, true).unwrap();
    assert_eq!(all, [rows[0].clone()]);
}

#[test]
fn command_line_mistakes() {
    let first_line = |args: &[&str]| run(&mut outbox(args)).failure(2).to_owned();
    let resume = |partition: &[&str]| {
        let mut args = vec!["partitions", "resume", "--group", "g", "--topic", "t"];
        args.extend_from_slice(partition);
        first_line(&args)
    };
    assert_eq!(
        resume(&[]),
        "error: the following required arguments were not provided:"
    );
    assert_eq!(
        resume(&["--partition", "two"]),
        "error: invalid value 'two' for '--partition <PARTITION>': invalid digit found in string"
    );
    for negative in [&["--partition=-1"][..], &["--partition", "-1"]] {
        assert_eq!(
            resume(negative),
            "error: invalid value '-1' for '--partition <PARTITION>': -1 is not in 0..=2147483647"
        );
    }
    assert_eq!(
        first_line(&["partitions", "list"]),
        "error: no database: pass --database-url or set DATABASE_URL"
    );
    assert_eq!(
        first_line(&["partitions"]),
        "Partitions consumers stopped on a record they could not apply: list, resume or skip them"
    );
}

#[test]
fn unreachable_database_is_named_with_its_password_masked() {
    for args in [
        &["partitions", "list"][..],
        &[
            "partitions",
            "resume",
            "--group",
            "g",
            "--topic",
            "t",
            "--partition",
            "0",
        ],
    ] {
        assert_unreachable_database_is_masked(args);
    }
}

#[test]
fn missing_tables_say_to_run_the_migrations() {
    let db = TestDb::new("cli_partitions_missing_tables");
    let finished = run(&mut outbox_on(&db, &["partitions", "list"]));
    assert_eq!(
        finished.one_line_failure(),
        format!(
            "error: no outbox tables at {} (search_path: {}): run `outbox migrations run` first",
            db.url(),
            db.schema()
        )
    );
}

#[test]
fn resume_of_nothing_names_the_database_and_the_schema_it_looked_in() {
    let db = migrated_db("cli_partitions_resume_nothing");
    let finished = run(&mut outbox_on(
        &db,
        &[
            "partitions",
            "resume",
            "--group",
            "billing",
            "--topic",
            "orders",
            "--partition",
            "4",
        ],
    ));
    assert_eq!(
        finished.one_line_failure(),
        format!(
            "error: nothing to resume: orders[4] has no active stop for group billing in schema \
             {} at {} (see `outbox partitions list --all`)",
            db.schema(),
            db.url()
        )
    );
}

#[test]
fn the_resume_hint_carries_the_database_url_only_when_given_on_the_command_line() {
    let db = three_stops("cli_partitions_hint_url");
    let from_env = run(outbox(&["partitions", "list"]).env("DATABASE_URL", db.url()));
    assert!(
        from_env.success().ends_with(
            "resume once the cause is fixed: outbox partitions resume --group billing \
             --topic orders --partition 2\n"
        ),
        "{from_env:#?}"
    );
    // A password on the command line is left out of the command printed,
    // which reads the URL from DATABASE_URL instead: a masked one would not run.
    let with_password = db.url().replace("postgres@", "postgres:s3cret@");
    let given = run(&mut outbox(&[
        "--database-url",
        &with_password,
        "partitions",
        "list",
    ]));
    let printed = given.success();
    assert!(
        printed.ends_with(
            "resume once the cause is fixed: outbox --database-url \"$DATABASE_URL\" partitions \
             resume --group billing --topic orders --partition 2\n\
             (the password is left out: set DATABASE_URL to the URL given with --database-url)\n"
        ),
        "{given:#?}"
    );
    assert!(
        !printed.contains("s3cret") && !printed.contains("***"),
        "{given:#?}"
    );
    // The command runs as printed, by a shell, with the URL in DATABASE_URL.
    let command = printed
        .lines()
        .find_map(|line| line.strip_prefix("resume once the cause is fixed: outbox "))
        .expect("a resume hint");
    let resume = run(std::process::Command::new("sh")
        .args(["-c", &format!("\"$OUTBOX\" {command}")])
        .env("OUTBOX", OUTBOX)
        .env("DATABASE_URL", &with_password)
        .env_remove("KAFKA_BROKERS")
        .env_remove("RUST_LOG"));
    assert!(
        resume
            .success()
            .starts_with("resumed orders[2] for group billing"),
        "{resume:#?}"
    );
}
