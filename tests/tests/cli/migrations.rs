//! `outbox migrations run | print | write`.

use diesel::prelude::*;
use diesel::sql_types::Text;
use outbox_tests::TestDb;

use super::support::{outbox, outbox_on, run, snapshots};

#[test]
fn print_shows_the_migration_sql() {
    let finished = run(&mut outbox(&["migrations", "print"]));
    let sql = finished.success();
    assert_eq!(sql, outbox_diesel::migrations::sql());
    snapshots().bind(|| insta::assert_snapshot!("cli__migrations_print", sql));
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Table {
    #[diesel(sql_type = Text)]
    table_name: String,
}

#[test]
fn run_creates_the_tables_then_is_up_to_date() {
    let db = TestDb::new("cli_migrations_run");
    let first = run(&mut outbox_on(&db, &["migrations", "run"]));
    assert_eq!(
        first.success(),
        "applied migration 20261124000000, 20261203000000, 20261204000000\n"
    );

    let mut conn = db.connect();
    let tables: Vec<String> = diesel::sql_query(
        "SELECT table_name::text AS table_name FROM information_schema.tables \
         WHERE table_schema = current_schema() AND table_name LIKE 'outbox%' ORDER BY 1",
    )
    .load::<Table>(&mut conn)
    .unwrap()
    .into_iter()
    .map(|t| t.table_name)
    .collect();
    assert_eq!(
        tables,
        [
            "outbox_inbox",
            "outbox_messages",
            "outbox_projection_positions",
            "outbox_projections",
            "outbox_schemas",
            "outbox_stopped_partitions"
        ]
    );

    let second = run(&mut outbox_on(&db, &["migrations", "run"]));
    assert_eq!(
        second.success(),
        "up to date: every outbox migration is applied\n"
    );
}

#[test]
fn write_puts_a_diesel_migration_folder_in_the_directory() {
    let dir = std::env::temp_dir().join(format!("outbox-cli-write-{}", uuid::Uuid::now_v7()));
    let dir_arg = dir.to_str().unwrap();
    let all = outbox_diesel::migrations::ALL;
    let folder = dir.join(all[0].name);

    let finished = run(&mut outbox(&["migrations", "write", dir_arg]));
    let expected: String = all
        .iter()
        .map(|m| format!("wrote {} (up.sql, down.sql)\n", dir.join(m.name).display()))
        .collect();
    assert_eq!(finished.success(), expected);
    for migration in all {
        let read =
            |name: &str| std::fs::read_to_string(dir.join(migration.name).join(name)).unwrap();
        assert_eq!(read("up.sql"), migration.up);
        assert_eq!(read("down.sql"), migration.down);
    }

    // Again: the same content is left as it is; other content is not overwritten.
    run(&mut outbox(&["migrations", "write", dir_arg])).success();
    std::fs::write(folder.join("up.sql"), "-- edited\n").unwrap();
    let refused = run(&mut outbox(&["migrations", "write", dir_arg]));
    assert_eq!(
        refused.one_line_failure(),
        format!(
            "error: migrations write: {} exists with different content; remove it or write elsewhere",
            folder.display()
        )
    );
    assert_eq!(
        std::fs::read_to_string(folder.join("up.sql")).unwrap(),
        "-- edited\n"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
