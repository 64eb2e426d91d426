//! `outbox parked list | retry | discard`.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Integer, Nullable, Text};

use super::support::{count, enqueue, migrated_db, outbox_on, park, run};

const TOO_LARGE: &str = "Broker: Message size too large";

#[derive(QueryableByName, Debug, PartialEq)]
struct RowState {
    #[diesel(sql_type = BigInt)]
    id: i64,
    #[diesel(sql_type = Integer)]
    attempts: i32,
    #[diesel(sql_type = Nullable<Text>)]
    last_error: Option<String>,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    parked: bool,
}

fn rows(conn: &mut PgConnection) -> Vec<RowState> {
    diesel::sql_query(
        "SELECT id, attempts, last_error, parked_at IS NOT NULL AS parked \
         FROM outbox_messages ORDER BY id",
    )
    .load(conn)
    .unwrap()
}

#[test]
fn list_shows_parked_rows_by_id_with_their_error() {
    let db = migrated_db("cli_parked_list");
    let mut conn = db.connect();
    let ids = enqueue(
        &mut conn,
        &[("accounts", "1"), ("accounts", "2"), ("orders", "3")],
    );
    park(&mut conn, &[3, 1], TOO_LARGE);

    let json = run(&mut outbox_on(&db, &["parked", "list", "--json"]));
    let value: serde_json::Value = serde_json::from_str(json.success()).unwrap();
    let listed = value.as_array().unwrap();
    assert_eq!(listed.len(), 2);
    let first = listed[0].as_object().unwrap();
    let fields: Vec<&str> = first.keys().map(String::as_str).collect();
    let mut expected = [
        "attempts",
        "created_at",
        "id",
        "last_error",
        "message_id",
        "parked_at",
        "partition_key",
        "payload_bytes",
        "topic",
    ];
    expected.sort_unstable();
    assert_eq!(fields, expected);
    assert_eq!(first["id"], 1);
    assert_eq!(first["message_id"], ids[0].to_string());
    assert_eq!(first["topic"], "accounts");
    assert_eq!(first["partition_key"], "1");
    assert_eq!(first["attempts"], 3);
    assert_eq!(first["last_error"], TOO_LARGE);
    assert!(first["payload_bytes"].as_i64().unwrap() > 0);
    for at in ["parked_at", "created_at"] {
        let text = first[at].as_str().unwrap();
        chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{at} {text}: {e}"));
    }
    assert_eq!(listed[1]["id"], 3);
    assert_eq!(listed[1]["topic"], "orders");

    let table = run(&mut outbox_on(&db, &["parked", "list"]));
    let lines: Vec<&str> = table.success().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    let columns: Vec<&str> = lines[0]
        .split("  ")
        .filter(|c| !c.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        columns,
        [
            "ID",
            "TOPIC",
            "KEY",
            "ATTEMPTS",
            "PARKED AT",
            "BYTES",
            "MESSAGE ID",
            "LAST ERROR"
        ]
    );
    assert!(lines[1].starts_with(" 1  accounts  1  "), "{}", lines[1]);
    assert!(lines[1].contains(&ids[0].to_string()), "{}", lines[1]);
    assert!(lines[1].ends_with(TOO_LARGE), "{}", lines[1]);
    assert!(lines[2].starts_with(" 3  orders    3  "), "{}", lines[2]);

    let limited = run(&mut outbox_on(&db, &["parked", "list", "--limit", "1"]));
    let lines: Vec<&str> = limited.success().lines().collect();
    assert_eq!(lines.len(), 3, "{lines:#?}");
    assert!(lines[1].starts_with(" 1  accounts"), "{}", lines[1]);
    assert_eq!(
        lines[2],
        "… more parked rows: pass a larger --limit to see them"
    );
}

#[test]
fn list_of_no_parked_rows() {
    let db = migrated_db("cli_parked_list_empty");
    enqueue(&mut db.connect(), &[("accounts", "1")]);
    assert_eq!(
        run(&mut outbox_on(&db, &["parked", "list"])).success(),
        "no parked rows\n"
    );
    assert_eq!(
        run(&mut outbox_on(&db, &["parked", "list", "--json"])).success(),
        "[]\n"
    );
}

#[test]
fn retry_makes_parked_rows_wait_again_and_keeps_their_history() {
    let db = migrated_db("cli_parked_retry");
    let mut conn = db.connect();
    enqueue(
        &mut conn,
        &[("accounts", "1"), ("accounts", "2"), ("orders", "3")],
    );
    park(&mut conn, &[1, 3], TOO_LARGE);

    let retried = run(&mut outbox_on(&db, &["parked", "retry", "1"]));
    assert_eq!(
        retried.success(),
        "retried 1 parked row: waiting for the relay again\n"
    );
    let after = rows(&mut conn);
    let state = |id: i64| after.iter().find(|r| r.id == id).unwrap();
    assert!(!state(1).parked);
    assert_eq!(state(1).attempts, 3, "attempts are kept");
    assert_eq!(
        state(1).last_error.as_deref(),
        Some(TOO_LARGE),
        "the error is kept"
    );
    assert!(state(3).parked, "only the row asked for");

    // Row 1 is waiting now, 2 never was parked, 99 does not exist: nothing to
    // retry, and the command says so for each.
    let again = run(&mut outbox_on(&db, &["parked", "retry", "99", "1", "2"]));
    assert_eq!(
        again.one_line_failure(),
        "error: not parked, left as they are: 1 (waiting for the relay), \
         2 (waiting for the relay), 99 (not in the outbox); nothing retried"
    );
    assert_eq!(again.stdout, "");

    // A parked row among them is still retried, and reported on stdout.
    let mixed = run(&mut outbox_on(&db, &["parked", "retry", "3", "2"]));
    assert_eq!(
        mixed.one_line_failure(),
        "error: not parked, left as they are: 2 (waiting for the relay); retried 1 parked row"
    );
    assert_eq!(
        mixed.stdout,
        "retried 1 parked row: waiting for the relay again\n"
    );
    assert_eq!(count(&mut conn, "parked_at IS NOT NULL"), 0);

    park(&mut conn, &[1, 2], TOO_LARGE);
    let all = run(&mut outbox_on(&db, &["parked", "retry", "--all"]));
    assert_eq!(
        all.success(),
        "retried 2 parked rows: waiting for the relay again\n"
    );
    assert_eq!(count(&mut conn, "parked_at IS NOT NULL"), 0);
    assert_eq!(count(&mut conn, "true"), 3);
    let none = run(&mut outbox_on(&db, &["parked", "retry", "--all"]));
    assert_eq!(none.success(), "no parked rows: nothing to do\n");
}

#[test]
fn discard_deletes_only_parked_rows() {
    let db = migrated_db("cli_parked_discard");
    let mut conn = db.connect();
    enqueue(
        &mut conn,
        &[
            ("accounts", "1"),
            ("accounts", "1"),
            ("accounts", "2"),
            ("orders", "3"),
        ],
    );
    park(&mut conn, &[1, 4], TOO_LARGE);

    let refused = run(&mut outbox_on(&db, &["parked", "discard", "2"]));
    assert_eq!(
        refused.one_line_failure(),
        "error: not parked, left as they are: 2 (waiting for the relay); nothing discarded"
    );
    assert_eq!(count(&mut conn, "true"), 4, "nothing was deleted");

    let one = run(&mut outbox_on(&db, &["parked", "discard", "1"]));
    assert_eq!(
        one.success(),
        "discarded 1 parked row: deleted without publishing\n"
    );
    let ids: Vec<i64> = rows(&mut conn).iter().map(|r| r.id).collect();
    assert_eq!(ids, [2, 3, 4]);

    let gone = run(&mut outbox_on(&db, &["parked", "discard", "1"]));
    assert_eq!(
        gone.one_line_failure(),
        "error: not parked, left as they are: 1 (not in the outbox); nothing discarded"
    );

    let all = run(&mut outbox_on(&db, &["parked", "discard", "--all"]));
    assert_eq!(
        all.success(),
        "discarded 1 parked row: deleted without publishing\n"
    );
    let ids: Vec<i64> = rows(&mut conn).iter().map(|r| r.id).collect();
    assert_eq!(ids, [2, 3], "the waiting rows are left");
}
