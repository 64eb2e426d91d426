//! `outbox projections list | rebuild [--wait]`, on projection rows written
//! as a projection's consumer writes them (its own runs are in the consumer
//! tests).

use std::time::Duration;

use diesel::connection::SimpleConnection;

use super::support::{migrated_db, outbox_on, run, start};

/// Projection `totals` on `orders`, two partitions at offsets 40 and 7.
const REGISTERED: &str = "
    INSERT INTO outbox_projections (name, topics) VALUES ('totals', '{orders}');
    INSERT INTO outbox_projection_positions (projection, topic, kafka_partition, next_offset)
    VALUES ('totals', 'orders', 0, 40), ('totals', 'orders', 1, 7);
";

#[test]
fn list_and_rebuild_requests() {
    let db = migrated_db("cli_projections");
    let none = run(&mut outbox_on(&db, &["projections", "list"]));
    assert_eq!(none.success(), "no projection has run here\n");
    let unknown = run(&mut outbox_on(&db, &["projections", "rebuild", "totals"]));
    assert_eq!(
        unknown.one_line_failure(),
        "error: no projection `totals` has run here (known: none)"
    );

    let mut conn = db.connect();
    conn.batch_execute(REGISTERED).unwrap();
    let listed = run(&mut outbox_on(&db, &["projections", "list"]));
    let table = listed.success();
    assert!(table.starts_with("PROJECTION"), "{table}");
    assert!(
        table.contains("orders[0]") && table.contains("40"),
        "{table}"
    );
    assert!(
        table.contains("orders[1]") && table.contains("7"),
        "{table}"
    );

    let requested = run(&mut outbox_on(&db, &["projections", "rebuild", "totals"]));
    assert!(
        requested
            .success()
            .starts_with("rebuild of `totals` requested"),
        "{}",
        requested.success()
    );
    let json = run(&mut outbox_on(&db, &["projections", "list", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(json.success()).unwrap();
    assert_eq!(listed[0]["name"], "totals");
    assert!(listed[0]["rebuild_requested_at"].is_string(), "{listed}");
    assert_eq!(listed[0]["partitions"][0]["next_offset"], 40);
    let table = run(&mut outbox_on(&db, &["projections", "list"]));
    assert!(
        table.success().contains("rebuild requested"),
        "{}",
        table.success()
    );
}

/// `--wait` waits for a consumer to take the request, follows the replay and
/// ends when every partition has caught up; the consumer's part is played
/// here by SQL, as a projection's consumer writes it.
#[test]
fn rebuild_wait_follows_the_replay() {
    let db = migrated_db("cli_projections_wait");
    let mut conn = db.connect();
    conn.batch_execute(REGISTERED).unwrap();
    let waiting = start(&mut outbox_on(
        &db,
        &["projections", "rebuild", "totals", "--wait"],
    ));
    std::thread::sleep(Duration::from_millis(600));
    // A consumer takes the request: positions back to 0, up to 40 and 7.
    conn.batch_execute(
        "UPDATE outbox_projections SET rebuild_requested_at = NULL, rebuilt_at = now();
         UPDATE outbox_projection_positions SET replay_until = next_offset, next_offset = 0;",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(600));
    conn.batch_execute("UPDATE outbox_projection_positions SET next_offset = replay_until + 3")
        .unwrap();
    let finished = waiting.wait(Duration::from_secs(30));
    assert_eq!(finished.code, Some(0), "{finished:?}");
    assert!(
        finished
            .stdout
            .starts_with("rebuilt `totals`: 47 records re-applied"),
        "{finished:?}"
    );
    // The request's line goes to stderr, with the progress bar (drawn only on
    // a terminal).
    assert!(
        finished.stderr.starts_with("rebuild of `totals` requested"),
        "{finished:?}"
    );
}
