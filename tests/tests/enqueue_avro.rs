//! Enqueue of Avro models against the real PostgreSQL: the row holds the
//! Confluent frame with schema id 0 and points at its schema in
//! `outbox_schemas`, written once per schema in the business transaction by
//! every enqueue path, and gone with a rollback.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use outbox::avro::WriterSchema;
use outbox::{Event, Outboxed};
use outbox_diesel::Outbox;
use outbox_diesel::registry::SubjectStrategy;
use outbox_diesel::schema::outbox_messages;
use outbox_tests::TestDb;

const TOPIC: &str = "outbox_enqueue_avro_users";

#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_enqueue_avro_users", route = "users", versions = [1, 2], format = "avro")]
struct User {
    id: i64,
    #[outbox(rename(v1 = "mail"))]
    email: String,
    #[outbox(since = 2, default)]
    nick: Option<String>,
}

/// A JSON model beside it: its rows have no schema.
#[derive(Debug, Clone, PartialEq, Outboxed)]
#[outbox(topic = "outbox_enqueue_avro_users", route = "notes")]
struct Note {
    id: i64,
}

fn user(id: i64) -> User {
    User {
        id,
        email: format!("user{id}@example.com"),
        nick: Some(format!("u{id}")),
    }
}

fn setup(test: &str) -> TestDb {
    let db = TestDb::new(test);
    outbox_diesel::migrations::run(&mut db.connect()).expect("the outbox migrations run");
    db
}

#[derive(QueryableByName, Debug, PartialEq)]
struct SchemaRow {
    #[diesel(sql_type = BigInt)]
    schema_key: i64,
    #[diesel(sql_type = Text)]
    subject: String,
    #[diesel(sql_type = Text)]
    schema: String,
}

fn schemas(conn: &mut PgConnection) -> Vec<SchemaRow> {
    diesel::sql_query("SELECT schema_key, subject, schema FROM outbox_schemas ORDER BY subject")
        .load(conn)
        .expect("outbox_schemas")
}

/// `(value_schema, payload, headers)` of every row, in table order.
type Stored = (Option<i64>, Vec<u8>, Vec<String>);

fn rows(conn: &mut PgConnection) -> Vec<Stored> {
    outbox_messages::table
        .order(outbox_messages::id)
        .select((
            outbox_messages::value_schema,
            outbox_messages::payload,
            outbox_messages::headers,
        ))
        .load(conn)
        .expect("outbox_messages")
}

fn header<'h>(headers: &'h [String], name: &str) -> Option<&'h str> {
    headers
        .chunks(2)
        .find(|pair| pair[0] == name)
        .map(|pair| pair[1].as_str())
}

/// What the relay and a consumer read back from a stored Avro row.
fn read_back(stored: &Stored) -> User {
    let (_, payload, headers) = stored;
    assert_eq!(
        &payload[..5],
        b"\x00\x00\x00\x00\x00",
        "schema id 0 at enqueue"
    );
    assert_eq!(header(headers, "content-type"), Some("application/avro"));
    assert_eq!(header(headers, "versions"), Some("2"));
    let writer = WriterSchema::parse(User::avro_schema(2).unwrap()).unwrap();
    User::read_avro_from(&writer, 2, &payload[5..]).expect("a datum of version 2")
}

#[test]
fn every_sync_path_stores_the_frame_and_its_schema_once() {
    let db = setup("enqueue_avro_sync_paths");
    let mut conn = db.connect();
    let outbox = Outbox::new("avro-tests");
    conn.transaction(|conn| {
        outbox.enqueue(conn, &user(1), Event::Created)?;
        outbox.enqueue(conn, &Note { id: 1 }, Event::Created)?;
        outbox.enqueue_all(conn, &[user(2), user(3)], Event::Updated)?;
        Ok::<_, outbox_diesel::Error>(())
    })
    .unwrap();
    outbox
        .transaction(&mut conn, |_conn, pending| {
            pending.enqueue(&user(4), Event::Destroyed)?;
            pending.enqueue_all(&[user(5)], Event::Created)?;
            pending.enqueue(&Note { id: 2 }, Event::Created)
        })
        .unwrap();
    // A savepoint: the bound insert inside an open transaction.
    conn.transaction(|conn| {
        outbox.transaction(conn, |_conn, pending| {
            pending.enqueue(&user(6), Event::Created)
        })
    })
    .unwrap();

    let stored = schemas(&mut conn);
    assert_eq!(stored.len(), 1, "one row per schema");
    assert_eq!(stored[0].subject, format!("{TOPIC}-value"));
    assert_eq!(stored[0].schema, User::avro_schema(2).unwrap());

    let rows = rows(&mut conn);
    let users: Vec<User> = rows
        .iter()
        .filter(|row| row.0.is_some())
        .inspect(|row| assert_eq!(row.0, Some(stored[0].schema_key)))
        .map(read_back)
        .collect();
    assert_eq!(users, (1..=6).map(user).collect::<Vec<_>>());
    let notes: Vec<&Stored> = rows.iter().filter(|row| row.0.is_none()).collect();
    assert_eq!(notes.len(), 2);
    for (_, payload, headers) in notes {
        assert_eq!(header(headers, "content-type"), Some("application/json"));
        assert_eq!(payload[0], b'{');
    }
}

#[tokio::test]
async fn the_async_paths_store_the_schema_too() {
    let db = setup("enqueue_avro_async_paths");
    let mut conn = AsyncPgConnection::establish(db.url()).await.unwrap();
    let outbox = Outbox::new("avro-tests");
    conn.transaction(async |conn| {
        outbox.enqueue_async(conn, &user(1), Event::Created).await?;
        outbox
            .enqueue_all_async(conn, &[user(2)], Event::Created)
            .await?;
        Ok::<_, outbox_diesel::Error>(())
    })
    .await
    .unwrap();
    outbox
        .transaction_async(&mut conn, async |_conn, pending| {
            pending.enqueue(&user(3), Event::Updated)
        })
        .await
        .unwrap();

    let mut sync = db.connect();
    assert_eq!(schemas(&mut sync).len(), 1);
    let users: Vec<User> = rows(&mut sync).iter().map(read_back).collect();
    assert_eq!(users, (1..=3).map(user).collect::<Vec<_>>());
}

#[test]
fn a_rollback_takes_the_schema_row_with_it_and_a_later_enqueue_writes_it_again() {
    let db = setup("enqueue_avro_rollback");
    let mut conn = db.connect();
    let outbox = Outbox::new("avro-tests");
    let rolled_back = conn.transaction(|conn| {
        outbox.enqueue(conn, &user(1), Event::Created)?;
        Err::<(), _>(outbox_diesel::Error::NotInTransaction)
    });
    assert!(rolled_back.is_err());
    assert!(schemas(&mut conn).is_empty());

    conn.transaction(|conn| outbox.enqueue(conn, &user(2), Event::Created))
        .unwrap();
    let stored = schemas(&mut conn);
    assert_eq!(stored.len(), 1);
    assert_eq!(rows(&mut conn)[0].0, Some(stored[0].schema_key));
}

#[test]
fn the_subject_strategy_names_the_subject() {
    let db = setup("enqueue_avro_subjects");
    let mut conn = db.connect();
    for strategy in [
        SubjectStrategy::RecordName,
        SubjectStrategy::TopicRecordName,
    ] {
        let outbox = Outbox::new("avro-tests").with_subject_strategy(strategy);
        conn.transaction(|conn| outbox.enqueue(conn, &user(1), Event::Created))
            .unwrap();
    }
    let subjects: Vec<String> = schemas(&mut conn).into_iter().map(|s| s.subject).collect();
    let record = format!("{TOPIC}.User");
    // Ordered by subject: `<topic>-…` sorts before `<topic>.…`.
    assert_eq!(subjects, [format!("{TOPIC}-{record}"), record]);
}

#[test]
fn two_first_enqueues_at_once_both_commit_with_one_schema_row() {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let db = setup("enqueue_avro_concurrent");
    let outbox = Outbox::new("avro-tests");
    let mut first = db.connect();
    AnsiTransactionManager::begin_transaction(&mut first).unwrap();
    outbox
        .enqueue(&mut first, &user(1), Event::Created)
        .unwrap();

    // The second waits on the first's uncommitted schema row, then finds it.
    let (url, second_outbox) = (db.url().to_owned(), outbox.clone());
    let second = std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        conn.transaction(|conn| second_outbox.enqueue(conn, &user(2), Event::Created))
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(!second.is_finished(), "the second waits for the first");
    AnsiTransactionManager::commit_transaction(&mut first).unwrap();
    second.join().unwrap().expect("the second commits too");

    let mut conn = db.connect();
    assert_eq!(schemas(&mut conn).len(), 1);
    assert_eq!(rows(&mut conn).len(), 2);
}

#[test]
fn a_schema_stored_ahead_lets_first_enqueues_go_without_waiting() {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    let db = setup("enqueue_avro_stored_ahead");
    let outbox = Outbox::new("avro-tests");
    let mut conn = db.connect();
    assert!(outbox.store_schema::<User>(&mut conn).unwrap(), "new");
    assert!(
        !outbox.store_schema::<User>(&mut conn).unwrap(),
        "there already"
    );
    assert!(
        !outbox.store_schema::<Note>(&mut conn).unwrap(),
        "JSON: nothing"
    );
    assert_eq!(schemas(&mut conn).len(), 1);

    // A long transaction enqueues first; another does not wait for it.
    let mut long = db.connect();
    AnsiTransactionManager::begin_transaction(&mut long).unwrap();
    outbox.enqueue(&mut long, &user(1), Event::Created).unwrap();
    let (url, other_outbox) = (db.url().to_owned(), outbox.clone());
    let other = std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        conn.transaction(|conn| other_outbox.enqueue(conn, &user(2), Event::Created))
    });
    let started = std::time::Instant::now();
    while !other.is_finished() && started.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(other.is_finished(), "the second enqueue did not wait");
    other.join().unwrap().expect("it committed");
    AnsiTransactionManager::commit_transaction(&mut long).unwrap();
    assert_eq!(rows(&mut conn).len(), 2);
}
