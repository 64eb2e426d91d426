//! Diesel, sync and async, runs transactions in the test's own schema.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use outbox_tests::TestDb;

diesel::table! {
    notes (id) {
        id -> BigInt,
        body -> Text,
    }
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

#[derive(QueryableByName)]
struct SchemaName {
    #[diesel(sql_type = Text)]
    schema: String,
}

const CREATE: &str = "CREATE TABLE notes (id bigint PRIMARY KEY, body text NOT NULL)";

#[test]
fn sync_connection_commits_and_rolls_back_in_the_test_schema() {
    let db = TestDb::new("sync_transactions");
    let mut conn = db.connect();
    conn.batch_execute(CREATE).unwrap();

    let located: SchemaName = diesel::sql_query(
        "SELECT table_schema AS schema FROM information_schema.tables WHERE table_name = 'notes' AND table_schema = current_schema()",
    )
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(located.schema, db.schema());

    conn.transaction(|conn| {
        diesel::insert_into(notes::table)
            .values((notes::id.eq(1), notes::body.eq("kept")))
            .execute(conn)
    })
    .unwrap();
    let rolled_back = conn.transaction(|conn| {
        diesel::insert_into(notes::table)
            .values((notes::id.eq(2), notes::body.eq("rolled back")))
            .execute(conn)?;
        // Visible inside the transaction...
        assert_eq!(notes::table.count().get_result::<i64>(conn)?, 2);
        Err::<(), _>(diesel::result::Error::RollbackTransaction)
    });
    assert!(matches!(
        rolled_back,
        Err(diesel::result::Error::RollbackTransaction)
    ));

    // ...and gone after the rollback, also for another session.
    let bodies: Vec<String> = notes::table.select(notes::body).load(&mut conn).unwrap();
    assert_eq!(bodies, ["kept"]);
    assert_eq!(count_notes_elsewhere(&db), 1);
}

/// Counts the notes from a new session of the test's schema.
fn count_notes_elsewhere(db: &TestDb) -> i64 {
    let mut other = db.connect();
    let count: Count = diesel::sql_query("SELECT count(*) AS count FROM notes")
        .get_result(&mut other)
        .unwrap();
    count.count
}

#[test]
fn schemas_are_dropped_with_the_test() {
    let db = TestDb::new("dropped_schema");
    let schema = db.schema().to_owned();
    db.connect().batch_execute(CREATE).unwrap();
    drop(db);
    let mut conn = PgConnection::establish(&outbox_tests::database_url()).unwrap();
    let count: Count = diesel::sql_query(format!(
        "SELECT count(*) AS count FROM information_schema.schemata WHERE schema_name = '{schema}'"
    ))
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(count.count, 0, "schema {schema} is still there");
}

/// diesel-async has its own `RunQueryDsl` and `AsyncConnection`; keep them apart
/// from the sync traits of `diesel::prelude`.
mod async_connection {
    use diesel::{ExpressionMethods, QueryDsl};
    use diesel_async::{AsyncConnection, RunQueryDsl, SimpleAsyncConnection};
    use outbox_tests::TestDb;

    use super::{CREATE, count_notes_elsewhere, notes};

    #[tokio::test]
    async fn async_connection_commits_and_rolls_back_in_the_test_schema() {
        let db = TestDb::new("async_transactions");
        let mut conn = db.connect_async().await;
        conn.batch_execute(CREATE).await.unwrap();

        conn.transaction::<_, diesel::result::Error, _>(async |conn| {
            diesel::insert_into(notes::table)
                .values((notes::id.eq(1), notes::body.eq("kept")))
                .execute(conn)
                .await
        })
        .await
        .unwrap();
        let rolled_back = conn
            .transaction::<(), diesel::result::Error, _>(async |conn| {
                diesel::insert_into(notes::table)
                    .values((notes::id.eq(2), notes::body.eq("rolled back")))
                    .execute(conn)
                    .await?;
                Err(diesel::result::Error::RollbackTransaction)
            })
            .await;
        assert!(matches!(
            rolled_back,
            Err(diesel::result::Error::RollbackTransaction)
        ));

        let bodies: Vec<String> = notes::table
            .select(notes::body)
            .load(&mut conn)
            .await
            .unwrap();
        assert_eq!(bodies, ["kept"]);
        // The sync connection sees the same schema and the same single row.
        assert_eq!(count_notes_elsewhere(&db), 1);
    }
}
