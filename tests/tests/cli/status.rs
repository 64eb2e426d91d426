//! `outbox status [--json]`.

use diesel::connection::SimpleConnection;

use super::support::{enqueue, migrated_db, outbox_on, park, run, snapshots};

/// Two topics: `accounts` with a parked row (id 1), a row of the same key held
/// back behind it (2) and a row of another key (3); `orders` with one row (4).
/// Ages are fixed hours in the past, so the table's ages read the same each run.
fn two_topics(test: &str) -> outbox_tests::TestDb {
    let db = migrated_db(test);
    let mut conn = db.connect();
    enqueue(
        &mut conn,
        &[
            ("accounts", "1"),
            ("accounts", "1"),
            ("accounts", "2"),
            ("orders", "9"),
        ],
    );
    park(&mut conn, &[1], "Broker: Message size too large");
    conn.batch_execute(
        "UPDATE outbox_messages SET created_at = now() - interval '3 hours' WHERE id = 1; \
         UPDATE outbox_messages SET created_at = now() - interval '2 hours' WHERE id = 2; \
         UPDATE outbox_messages SET created_at = now() - interval '1 hour' WHERE id = 3; \
         UPDATE outbox_messages SET created_at = now() - interval '90 minutes' WHERE id = 4;",
    )
    .unwrap();
    db
}

/// `text` with the number after each `"oldest_waiting_seconds": ` replaced by
/// `[age]`, once checked to be within `range` seconds.
fn redact_ages(text: &str, range: std::ops::Range<f64>) -> String {
    text.lines()
        .map(|line| {
            let key = "\"oldest_waiting_seconds\": ";
            match line.find(key) {
                Some(at) if !line[at + key.len()..].starts_with("null") => {
                    let value = &line[at + key.len()..];
                    let number = value.trim_end_matches(',');
                    let seconds: f64 = number.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
                    assert!(range.contains(&seconds), "age {seconds} not in {range:?}");
                    format!("{}[age]{}", &line[..at + key.len()], &value[number.len()..])
                }
                _ => line.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn status_json_counts_waiting_parked_and_held_back_rows_per_topic() {
    let db = two_topics("cli_status_json");
    let finished = run(&mut outbox_on(&db, &["status", "--json"]));
    let json = finished.success();

    let value: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(value["waiting"], 3);
    assert_eq!(value["parked"], 1);
    assert_eq!(value["held_back"], 1);
    let topics = value["topics"].as_array().unwrap();
    assert_eq!(topics[0]["topic"], "accounts");
    assert_eq!(topics[1]["topic"], "orders");

    // Field names and order are an interface: pinned (ages are a few ms past
    // the hours set, so only their range is checked).
    let redacted = redact_ages(json, 3600.0..3600.0 * 2.0 + 60.0);
    snapshots().bind(|| insta::assert_snapshot!("cli__status_json", redacted));
}

#[test]
fn status_prints_a_summary_and_a_table_of_topics() {
    let db = two_topics("cli_status_table");
    let finished = run(&mut outbox_on(&db, &["status"]));
    let table = finished.success();
    snapshots().bind(|| insta::assert_snapshot!("cli__status_table", table));
}

#[test]
fn status_of_an_empty_outbox() {
    let db = migrated_db("cli_status_empty");
    assert_eq!(
        run(&mut outbox_on(&db, &["status"])).success(),
        "the outbox is empty: nothing waiting, nothing parked\n"
    );
    assert_eq!(
        run(&mut outbox_on(&db, &["status", "--json"])).success(),
        "{\n  \"waiting\": 0,\n  \"parked\": 0,\n  \"held_back\": 0,\n  \
         \"oldest_waiting_seconds\": null,\n  \"topics\": []\n}\n"
    );
}
