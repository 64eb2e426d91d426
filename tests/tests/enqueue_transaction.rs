//! `Outbox::transaction` and `Outbox::transaction_async` against the real
//! PostgreSQL: the business rows and the messages commit together or not at
//! all, the messages ride in the round trip of the `COMMIT`, and Diesel's
//! transaction manager knows of no transaction afterwards.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use diesel::connection::{
    AnsiTransactionManager, InstrumentationEvent, SimpleConnection, TransactionManager,
};
use diesel::prelude::*;
use diesel::result::DatabaseErrorKind;
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};
use futures::FutureExt as _;
use outbox::{Event, Message, MessageId, Outboxed, Payloads};
use outbox_diesel::schema::outbox_messages;
use outbox_diesel::{Error, NulInText, Outbox, Pending};
use outbox_tests::TestDb;
use serde_json::json;

mod schema {
    #![allow(missing_docs)] // diesel's `table!` output
    diesel::table! {
        users (id) {
            id -> BigInt,
            email -> Text,
        }
    }
}
use schema::users;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable, Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "outbox_enqueue_transaction_users", route = "users")]
struct User {
    id: i64,
    email: String,
}

fn user(id: i64) -> User {
    User {
        id,
        email: format!("user{id}@example.com"),
    }
}

const PRODUCER: &str = "enqueue-transaction-tests";

/// A migrated schema with a `users` table.
fn setup(test: &str) -> TestDb {
    let db = TestDb::new(test);
    let mut conn = db.connect();
    outbox_diesel::migrations::run(&mut conn).expect("the outbox migrations run");
    conn.batch_execute("CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL)")
        .expect("users table");
    db
}

/// What another session sees committed: user ids, and message ids in table order.
fn committed(db: &TestDb) -> (Vec<i64>, Vec<MessageId>) {
    let mut conn = db.connect();
    let users = users::table
        .select(users::id)
        .order(users::id)
        .load(&mut conn)
        .expect("users");
    let messages = outbox_messages::table
        .select(outbox_messages::message_id)
        .order(outbox_messages::id)
        .load::<uuid::Uuid>(&mut conn)
        .expect("messages")
        .into_iter()
        .map(|id| MessageId::from_uuid(id).expect("a UUIDv7"))
        .collect();
    (users, messages)
}

fn depth(conn: &mut PgConnection) -> diesel::QueryResult<Option<NonZeroU32>> {
    AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()
}

fn depth_async(conn: &mut AsyncPgConnection) -> diesel::QueryResult<Option<NonZeroU32>> {
    use diesel_async::TransactionManager as _;
    diesel_async::AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()
}

/// The manager knows of no transaction, and the session takes a new one.
fn assert_usable(conn: &mut PgConnection, db: &TestDb, probe_id: i64) {
    assert_eq!(depth(conn).expect("manager not broken"), None);
    let outbox = Outbox::new(PRODUCER);
    let id = outbox
        .transaction(conn, |conn, pending| {
            diesel::insert_into(users::table)
                .values(&user(probe_id))
                .execute(conn)?;
            pending.enqueue(&user(probe_id), Event::Created)
        })
        .expect("a later transaction commits");
    assert_eq!(depth(conn).expect("manager not broken"), None);
    let (users, messages) = committed(db);
    assert!(users.contains(&probe_id), "{users:?}");
    assert!(messages.contains(&id), "{messages:?}");
}

async fn assert_usable_async(conn: &mut AsyncPgConnection, db: &TestDb, probe_id: i64) {
    assert_eq!(depth_async(conn).expect("manager not broken"), None);
    let outbox = Outbox::new(PRODUCER);
    let id = outbox
        .transaction_async(conn, async |conn, pending| {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into(users::table).values(&user(probe_id)),
                conn,
            )
            .await?;
            pending.enqueue(&user(probe_id), Event::Created)
        })
        .await
        .expect("a later transaction commits");
    assert_eq!(depth_async(conn).expect("manager not broken"), None);
    let (users, messages) = committed(db);
    assert!(users.contains(&probe_id), "{users:?}");
    assert!(messages.contains(&id), "{messages:?}");
}

/// The SQL of every statement the connection sends, in order.
#[derive(Clone, Default)]
struct Statements(Arc<Mutex<Vec<String>>>);

impl Statements {
    fn recorder(&self) -> impl FnMut(InstrumentationEvent<'_>) + Send + 'static {
        let seen = self.0.clone();
        move |event| {
            if let InstrumentationEvent::StartQuery { query, .. } = event {
                seen.lock().unwrap().push(query.to_string());
            }
        }
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

/// `BEGIN`, the user's insert, then one message carrying the messages and the `COMMIT`.
fn assert_one_round_trip_for_messages(statements: &[String]) {
    assert_eq!(statements.len(), 3, "{statements:#?}");
    assert_eq!(statements[0], "BEGIN");
    assert!(
        statements[1].starts_with("INSERT INTO \"users\""),
        "{statements:#?}"
    );
    assert!(
        statements[2].starts_with("INSERT INTO \"outbox_messages\"")
            && statements[2].ends_with("; COMMIT"),
        "{statements:#?}"
    );
}

fn hand_built(key: &str) -> Message {
    Message::new(
        Event::custom("password_reset").unwrap(),
        PRODUCER,
        "users",
        "outbox_enqueue_transaction_misc",
        key,
        Payloads::new(1, json!({"key": key})).unwrap(),
    )
    .unwrap()
}

#[test]
fn sync_business_rows_and_messages_commit_together() {
    let db = setup("txn_commit_sync");
    let mut conn = db.connect();
    let statements = Statements::default();
    conn.set_instrumentation(statements.recorder());
    let outbox = Outbox::new(PRODUCER);
    let message = hand_built("k-1");

    let (ids, in_closure) = outbox
        .transaction(&mut conn, |conn, pending| {
            diesel::insert_into(users::table)
                .values(&[user(1), user(2)][..])
                .execute(conn)?;
            let first = pending.enqueue(&user(1), Event::Created)?;
            let more = pending.enqueue_all(&[user(2), user(1)], Event::Updated)?;
            let last = pending.enqueue_message(&message)?;
            assert_eq!(pending.len(), 4);
            let in_closure = pending.ids().collect::<Vec<_>>();
            let before = outbox_messages::table.count().get_result::<i64>(conn)?;
            assert_eq!(before, 0, "nothing is written before the commit");
            Ok::<_, Error>(([vec![first], more, vec![last]].concat(), in_closure))
        })
        .expect("the transaction commits");
    let recorded = statements.take();
    let without_count: Vec<String> = recorded
        .iter()
        .filter(|s| !s.starts_with("SELECT COUNT"))
        .cloned()
        .collect();
    assert_one_round_trip_for_messages(&without_count);

    assert_eq!(ids, in_closure);
    assert_eq!(ids[3], message.id);
    assert_eq!(committed(&db), (vec![1, 2], ids.clone()));
    assert_usable(&mut conn, &db, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_business_rows_and_messages_commit_together() {
    let db = setup("txn_commit_async");
    let mut conn = db.connect_async().await;
    let statements = Statements::default();
    conn.set_instrumentation(statements.recorder());
    let outbox = Outbox::new(PRODUCER);
    let message = hand_built("k-1");

    // Spawned: the future is `Send`.
    let task = tokio::spawn(async move {
        let ids = outbox
            .transaction_async(&mut conn, async |conn, pending| {
                diesel_async::RunQueryDsl::execute(
                    diesel::insert_into(users::table).values(&[user(1), user(2)][..]),
                    &mut *conn,
                )
                .await?;
                let first = pending.enqueue(&user(1), Event::Created)?;
                let more = pending.enqueue_all(&[user(2), user(1)], Event::Updated)?;
                let last = pending.enqueue_message(&message)?;
                Ok::<_, Error>([vec![first], more, vec![last]].concat())
            })
            .await;
        (conn, ids)
    });
    let (mut conn, ids) = task.await.expect("the task ends");
    let ids = ids.expect("the transaction commits");
    assert_one_round_trip_for_messages(&statements.take());
    assert_eq!(ids.len(), 4);
    assert_eq!(committed(&db), (vec![1, 2], ids));
    assert_usable_async(&mut conn, &db, 100).await;
}

/// The closure's own error type, to show it comes back as it was.
#[derive(Debug)]
enum AppError {
    Refused,
    Outbox(#[allow(dead_code)] Error), // read through `Debug` when a test fails
}

impl From<Error> for AppError {
    fn from(error: Error) -> Self {
        AppError::Outbox(error)
    }
}

impl From<diesel::result::Error> for AppError {
    fn from(error: diesel::result::Error) -> Self {
        AppError::Outbox(error.into())
    }
}

#[test]
fn sync_closure_error_writes_nothing() {
    let db = setup("txn_closure_error_sync");
    let mut conn = db.connect();
    let result = Outbox::new(PRODUCER).transaction(&mut conn, |conn, pending| {
        diesel::insert_into(users::table)
            .values(&user(1))
            .execute(conn)?;
        pending.enqueue(&user(1), Event::Created)?;
        Err::<(), _>(AppError::Refused)
    });
    assert!(matches!(result, Err(AppError::Refused)), "{result:?}");
    assert_eq!(committed(&db), (vec![], vec![]));
    assert_usable(&mut conn, &db, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_closure_error_writes_nothing() {
    let db = setup("txn_closure_error_async");
    let mut conn = db.connect_async().await;
    let result = Outbox::new(PRODUCER)
        .transaction_async(&mut conn, async |conn, pending| {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into(users::table).values(&user(1)),
                conn,
            )
            .await?;
            pending.enqueue(&user(1), Event::Created)?;
            Err::<(), _>(AppError::Refused)
        })
        .await;
    assert!(matches!(result, Err(AppError::Refused)), "{result:?}");
    assert_eq!(committed(&db), (vec![], vec![]));
    assert_usable_async(&mut conn, &db, 100).await;
}

/// Makes the messages' INSERT fail for a key: a CHECK constraint, or a trigger
/// that raises.
fn refuse_key(db: &TestDb, how: Refusal) {
    let sql = match how {
        Refusal::Check => {
            "ALTER TABLE outbox_messages ADD CONSTRAINT no_refused_key \
             CHECK (partition_key <> 'refused')"
        }
        Refusal::Trigger => {
            "CREATE FUNCTION refuse_key() RETURNS trigger LANGUAGE plpgsql AS $$ \
             BEGIN IF NEW.partition_key = 'refused' THEN \
             RAISE EXCEPTION 'key refused by trigger'; END IF; RETURN NEW; END $$; \
             CREATE TRIGGER refuse_key BEFORE INSERT ON outbox_messages \
             FOR EACH ROW EXECUTE FUNCTION refuse_key()"
        }
    };
    db.connect().batch_execute(sql).expect("refusal installed");
}

#[derive(Debug, Clone, Copy)]
enum Refusal {
    Check,
    Trigger,
}

fn assert_refused(error: &Error, how: Refusal) {
    match (how, error) {
        (
            Refusal::Check,
            Error::Database(diesel::result::Error::DatabaseError(
                DatabaseErrorKind::CheckViolation,
                info,
            )),
        ) => assert_eq!(info.constraint_name(), Some("no_refused_key")),
        (Refusal::Trigger, Error::Database(diesel::result::Error::DatabaseError(_, info))) => {
            assert_eq!(info.message(), "key refused by trigger")
        }
        _ => panic!("{how:?}: unexpected error {error:?}"),
    }
}

#[test]
fn sync_failing_message_insert_commits_nothing() {
    for how in [Refusal::Check, Refusal::Trigger] {
        let db = setup(&format!("txn_insert_fails_sync_{how:?}"));
        refuse_key(&db, how);
        let mut conn = db.connect();
        let result = Outbox::new(PRODUCER).transaction(&mut conn, |conn, pending| {
            diesel::insert_into(users::table)
                .values(&user(1))
                .execute(conn)?;
            pending.enqueue_message(&hand_built("fine"))?;
            pending.enqueue_message(&hand_built("refused"))?;
            Ok::<_, Error>(())
        });
        let error = result.expect_err("the refused message fails the transaction");
        assert_refused(&error, how);
        assert_eq!(committed(&db), (vec![], vec![]), "{how:?}");
        assert_usable(&mut conn, &db, 100);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_failing_message_insert_commits_nothing() {
    for how in [Refusal::Check, Refusal::Trigger] {
        let db = setup(&format!("txn_insert_fails_async_{how:?}"));
        refuse_key(&db, how);
        let mut conn = db.connect_async().await;
        let result = Outbox::new(PRODUCER)
            .transaction_async(&mut conn, async |conn, pending| {
                diesel_async::RunQueryDsl::execute(
                    diesel::insert_into(users::table).values(&user(1)),
                    conn,
                )
                .await?;
                pending.enqueue_message(&hand_built("fine"))?;
                pending.enqueue_message(&hand_built("refused"))?;
                Ok::<_, Error>(())
            })
            .await;
        let error = result.expect_err("the refused message fails the transaction");
        assert_refused(&error, how);
        assert_eq!(committed(&db), (vec![], vec![]), "{how:?}");
        assert_usable_async(&mut conn, &db, 100).await;
    }
}

#[test]
fn sync_nested_transactions_are_savepoints() {
    let db = setup("txn_nested_sync");
    let mut conn = db.connect();
    let ids = Outbox::new(PRODUCER)
        .transaction(&mut conn, |conn, pending| {
            diesel::insert_into(users::table)
                .values(&user(1))
                .execute(conn)?;
            let kept = conn.transaction(|conn| {
                diesel::insert_into(users::table)
                    .values(&user(2))
                    .execute(conn)?;
                pending.enqueue(&user(2), Event::Created)
            })?;
            let rolled_back = conn.transaction(|conn| {
                diesel::insert_into(users::table)
                    .values(&user(3))
                    .execute(conn)?;
                Err::<(), _>(diesel::result::Error::RollbackTransaction)
            });
            assert!(rolled_back.is_err());
            assert_eq!(depth(conn)?, NonZeroU32::new(1), "back at the top level");
            let first = pending.enqueue(&user(1), Event::Created)?;
            Ok::<_, Error>(vec![kept, first])
        })
        .expect("the transaction commits");
    assert_eq!(committed(&db), (vec![1, 2], ids));
    assert_usable(&mut conn, &db, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_nested_transactions_are_savepoints() {
    let db = setup("txn_nested_async");
    let mut conn = db.connect_async().await;
    let ids = Outbox::new(PRODUCER)
        .transaction_async(&mut conn, async |conn, pending| {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into(users::table).values(&user(1)),
                &mut *conn,
            )
            .await?;
            conn.transaction(async |conn| {
                diesel_async::RunQueryDsl::execute(
                    diesel::insert_into(users::table).values(&user(2)),
                    conn,
                )
                .await
            })
            .await?;
            let rolled_back = conn
                .transaction(async |conn| {
                    diesel_async::RunQueryDsl::execute(
                        diesel::insert_into(users::table).values(&user(3)),
                        conn,
                    )
                    .await?;
                    Err::<(), _>(diesel::result::Error::RollbackTransaction)
                })
                .await;
            assert!(rolled_back.is_err());
            assert_eq!(depth_async(conn)?, NonZeroU32::new(1));
            pending.enqueue_all(&[user(1), user(2)], Event::Created)
        })
        .await
        .expect("the transaction commits");
    assert_eq!(committed(&db), (vec![1, 2], ids));
    assert_usable_async(&mut conn, &db, 100).await;
}

#[test]
fn sync_inside_an_open_transaction_it_is_a_savepoint() {
    let db = setup("txn_inside_open_sync");
    let mut conn = db.connect();
    let outbox = Outbox::new(PRODUCER);
    let enqueue_user = |conn: &mut PgConnection, id: i64| {
        outbox.transaction(conn, |conn, pending| {
            diesel::insert_into(users::table)
                .values(&user(id))
                .execute(conn)?;
            pending.enqueue(&user(id), Event::Created)
        })
    };
    // The outer transaction rolls back: the inner one's rows go with it.
    let outer = conn.transaction(|conn| {
        enqueue_user(conn, 1)?;
        assert_eq!(
            depth(conn)?,
            NonZeroU32::new(1),
            "the savepoint is released"
        );
        Err::<(), _>(Error::Database(diesel::result::Error::RollbackTransaction))
    });
    assert!(outer.is_err());
    assert_eq!(committed(&db), (vec![], vec![]));
    // The outer transaction commits: so do they.
    let id = conn
        .transaction(|conn| enqueue_user(conn, 2))
        .expect("commits");
    assert_eq!(committed(&db), (vec![2], vec![id]));
    assert_usable(&mut conn, &db, 100);
}

#[test]
fn sync_no_messages_is_a_plain_commit() {
    let db = setup("txn_no_messages_sync");
    let mut conn = db.connect();
    let statements = Statements::default();
    conn.set_instrumentation(statements.recorder());
    Outbox::new(PRODUCER)
        .transaction(&mut conn, |conn, _pending| {
            diesel::insert_into(users::table)
                .values(&user(1))
                .execute(conn)
                .map_err(Error::from)
        })
        .expect("commits");
    let statements = statements.take();
    assert_eq!(statements.len(), 3, "{statements:#?}");
    assert_eq!(
        (statements[0].as_str(), statements[2].as_str()),
        ("BEGIN", "COMMIT")
    );
    assert_eq!(committed(&db), (vec![1], vec![]));
    assert_usable(&mut conn, &db, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_no_messages_is_a_plain_commit() {
    let db = setup("txn_no_messages_async");
    let mut conn = db.connect_async().await;
    let statements = Statements::default();
    conn.set_instrumentation(statements.recorder());
    Outbox::new(PRODUCER)
        .transaction_async(&mut conn, async |conn, _pending| {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into(users::table).values(&user(1)),
                conn,
            )
            .await
            .map_err(Error::from)
        })
        .await
        .expect("commits");
    let statements = statements.take();
    assert_eq!(statements.len(), 3, "{statements:#?}");
    assert_eq!(
        (statements[0].as_str(), statements[2].as_str()),
        ("BEGIN", "COMMIT")
    );
    assert_eq!(committed(&db), (vec![1], vec![]));
    assert_usable_async(&mut conn, &db, 100).await;
}

/// Terminates the session whose backend pid is `pid` from another session,
/// waiting until it is gone.
fn terminate(db: &TestDb, pid: i32) {
    #[derive(QueryableByName)]
    struct Done {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        done: bool,
    }
    let done: Done = diesel::sql_query("SELECT pg_terminate_backend($1, 10000) AS done")
        .bind::<diesel::sql_types::Integer, _>(pid)
        .get_result(&mut db.connect())
        .expect("pg_terminate_backend");
    assert!(done.done, "the session {pid} ended");
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

#[test]
fn sync_session_terminated_before_commit_commits_nothing() {
    let db = setup("txn_terminated_sync");
    let mut conn = db.connect();
    let result = Outbox::new(PRODUCER).transaction(&mut conn, |conn, pending| {
        diesel::insert_into(users::table)
            .values(&user(1))
            .execute(conn)?;
        pending.enqueue(&user(1), Event::Created)?;
        let Pid { pid } = diesel::sql_query("SELECT pg_backend_pid() AS pid").get_result(conn)?;
        terminate(&db, pid);
        Ok::<_, Error>(())
    });
    let error = result.expect_err("the commit cannot succeed on a terminated session");
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    assert_eq!(committed(&db), (vec![], vec![]));
    // The manager says the connection is broken, rather than idle.
    assert!(depth(&mut conn).is_err(), "{:?}", depth(&mut conn));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_session_terminated_before_commit_commits_nothing() {
    let db = setup("txn_terminated_async");
    let mut conn = db.connect_async().await;
    let db_ref = &db;
    let result = Outbox::new(PRODUCER)
        .transaction_async(&mut conn, async |conn, pending| {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into(users::table).values(&user(1)),
                &mut *conn,
            )
            .await?;
            pending.enqueue(&user(1), Event::Created)?;
            let Pid { pid } = diesel_async::RunQueryDsl::get_result(
                diesel::sql_query("SELECT pg_backend_pid() AS pid"),
                conn,
            )
            .await?;
            tokio::task::block_in_place(|| terminate(db_ref, pid));
            Ok::<_, Error>(())
        })
        .await;
    let error = result.expect_err("the commit cannot succeed on a terminated session");
    assert!(matches!(error, Error::Database(_)), "{error:?}");
    assert_eq!(committed(&db), (vec![], vec![]));
    assert!(
        depth_async(&mut conn).is_err(),
        "{:?}",
        depth_async(&mut conn)
    );
}

#[test]
fn sync_panic_in_the_closure_rolls_back() {
    let db = setup("txn_panic_sync");
    let mut conn = db.connect();
    let outbox = Outbox::new(PRODUCER);
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        outbox.transaction(&mut conn, |conn, pending| {
            diesel::insert_into(users::table)
                .values(&user(1))
                .execute(conn)?;
            pending.enqueue(&user(1), Event::Created)?;
            if pending.len() == 1 {
                panic!("a bug in the closure");
            }
            Ok::<_, Error>(())
        })
    }));
    assert!(panicked.is_err(), "the panic goes on");
    assert_eq!(committed(&db), (vec![], vec![]));
    assert_usable(&mut conn, &db, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_panic_in_the_closure_rolls_back() {
    let db = setup("txn_panic_async");
    let mut conn = db.connect_async().await;
    let outbox = Outbox::new(PRODUCER);
    let panicked =
        std::panic::AssertUnwindSafe(outbox.transaction_async(&mut conn, async |conn, pending| {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into(users::table).values(&user(1)),
                conn,
            )
            .await?;
            pending.enqueue(&user(1), Event::Created)?;
            if pending.len() == 1 {
                panic!("a bug in the closure");
            }
            Ok::<_, Error>(())
        }))
        .catch_unwind()
        .await;
    assert!(panicked.is_err(), "the panic goes on");
    assert_eq!(committed(&db), (vec![], vec![]));
    assert_usable_async(&mut conn, &db, 100).await;
}

/// Values that need escaping, as keys, producer names and payloads.
const HOSTILE: &[&str] = &[
    "it's",
    r"back\slash",
    r"\'",
    r"\\x41",
    "'); DROP TABLE users; --",
    "$$ dollar $tag$",
    "E'escape'",
    "line\nbreak\ttab\r",
    "ünïcødé ✓ 🚀",
    "",
    r#"double "quote" \" and {braces, commas}"#,
    "NULL",
    "  spaced  ",
    "{}",
];

/// The columns as stored, for a message id.
fn stored(conn: &mut PgConnection, id: MessageId) -> Vec<(String, String, Vec<String>, Vec<u8>)> {
    outbox_messages::table
        .filter(outbox_messages::message_id.eq(id.as_uuid()))
        .order(outbox_messages::id)
        .select((
            outbox_messages::topic,
            outbox_messages::partition_key,
            outbox_messages::headers,
            outbox_messages::payload,
        ))
        .load(conn)
        .expect("stored rows")
}

fn hostile_message(value: &str) -> Message {
    let mut message = Message::new(
        Event::custom("hostile").unwrap(),
        format!("producer {value}"),
        format!("route {value}"),
        "outbox_enqueue_transaction_misc",
        value,
        Payloads::new(1, json!({"value": value, "nested": {"v": [value]}})).unwrap(),
    )
    .unwrap();
    message
        .payloads
        .insert(2, json!({"raw": value.as_bytes()}))
        .unwrap();
    message
}

#[test]
fn sync_literals_store_what_bound_parameters_store() {
    let db = setup("txn_literals_sync");
    let mut conn = db.connect();
    let outbox = Outbox::new(PRODUCER);
    for value in HOSTILE {
        let message = hostile_message(value);
        // The same message twice: through the transaction's literals, and
        // through `enqueue_message`'s bound parameters.
        outbox
            .transaction(&mut conn, |_conn, pending| {
                pending.enqueue_message(&message)
            })
            .expect("literal insert");
        conn.transaction(|conn| outbox.enqueue_message(conn, &message))
            .expect("bound insert");
        let rows = stored(&mut conn, message.id);
        assert_eq!(rows.len(), 2, "{value:?}");
        assert_eq!(rows[0], rows[1], "{value:?}");
        assert_eq!(rows[0].1, *value);
    }
    assert_eq!(committed(&db).0, Vec::<i64>::new(), "users untouched");
}

/// A session whose `client_encoding` or `standard_conforming_strings` was
/// changed after connecting stores the same values: the literals are escape
/// strings in ASCII alone, so no multibyte character of SJIS or GBK can swallow
/// the quote or backslash after it, even with `backslash_quote` on.
#[test]
fn literals_hold_whatever_the_session_encoding_and_string_settings() {
    let db = setup("txn_literals_settings");
    let mut conn = db.connect();
    let mut check = db.connect();
    let outbox = Outbox::new(PRODUCER);
    let values = [
        // In SJIS, 0xC2 is a character and 0x81 starts one whose second byte
        // may be `\`: with the UTF-8 bytes sent raw, the doubled `\` would lose
        // its first half, the next one escape the quote, and the rest run as SQL.
        "\u{81}\\'); DROP TABLE users; --",
        r"ソ\'); DROP TABLE users; --",
        "ソ'); DROP TABLE users; --",
        "表'",
        "ünïcødé ✓ 🚀",
        r"\\x41'",
    ];
    for setting in [
        "SET client_encoding TO 'SJIS'; SET backslash_quote TO on",
        "SET client_encoding TO 'GBK'",
        "SET client_encoding TO 'UTF8'; SET standard_conforming_strings TO off",
        "SET standard_conforming_strings TO on",
    ] {
        conn.batch_execute(setting).expect(setting);
        for value in values {
            let message = hostile_message(value);
            outbox
                .transaction(&mut conn, |_conn, pending| {
                    pending.enqueue_message(&message)
                })
                .unwrap_or_else(|e| panic!("{setting}: {value:?}: {e}"));
            check
                .transaction(|conn| outbox.enqueue_message(conn, &message))
                .expect("bound insert");
            let rows = stored(&mut check, message.id);
            assert_eq!(rows.len(), 2, "{setting}: {value:?}");
            assert_eq!(rows[0], rows[1], "{setting}: {value:?}");
            assert_eq!(rows[0].1, value, "{setting}");
        }
    }
    assert_eq!(committed(&db).0, Vec::<i64>::new(), "users untouched");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_literals_store_what_bound_parameters_store() {
    let db = setup("txn_literals_async");
    let mut conn = db.connect_async().await;
    let mut check = db.connect();
    let outbox = Outbox::new(PRODUCER);
    for value in HOSTILE {
        let message = hostile_message(value);
        outbox
            .transaction_async(&mut conn, async |_conn, pending| {
                pending.enqueue_message(&message)
            })
            .await
            .expect("literal insert");
        check
            .transaction(|conn| outbox.enqueue_message(conn, &message))
            .expect("bound insert");
        let rows = stored(&mut check, message.id);
        assert_eq!(rows.len(), 2, "{value:?}");
        assert_eq!(rows[0], rows[1], "{value:?}");
    }
}

#[test]
fn nul_is_refused_when_enqueued() {
    let db = setup("txn_nul");
    let mut conn = db.connect();
    let outbox = Outbox::new(PRODUCER);
    let result = outbox.transaction(&mut conn, |conn, pending: &mut Pending| {
        diesel::insert_into(users::table)
            .values(&user(1))
            .execute(conn)?;
        pending.enqueue_message(&hand_built("fine"))?;
        let refused = pending.enqueue_message(&hand_built("a\0b"));
        assert_eq!(pending.len(), 1, "the refused message is not collected");
        refused
    });
    let error = result.expect_err("NUL refused");
    let Error::Database(diesel::result::Error::SerializationError(cause)) = &error else {
        panic!("{error:?}");
    };
    let nul = cause.downcast_ref::<NulInText>().expect("a NulInText");
    assert_eq!(nul.field, "partition key");
    assert!(
        error.source_text().contains("NUL"),
        "{}",
        error.source_text()
    );
    assert_eq!(committed(&db), (vec![], vec![]));

    // In a header (the producer name is `from`).
    let refused = Outbox::new("a\0b").transaction(&mut conn, |_conn, pending| {
        pending.enqueue(&user(1), Event::Created)
    });
    let error = refused.expect_err("NUL refused");
    assert!(
        error.source_text().contains("header `from`"),
        "{}",
        error.source_text()
    );
    assert_usable(&mut conn, &db, 100);
}

/// `Display` of an error and its sources.
trait SourceText {
    fn source_text(&self) -> String;
}

impl SourceText for Error {
    fn source_text(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            text.push_str(": ");
            text.push_str(&cause.to_string());
            source = cause.source();
        }
        text
    }
}

#[test]
fn many_large_messages_are_split_and_kept_in_order() {
    let db = setup("txn_large");
    let mut conn = db.connect();
    let statements = Statements::default();
    conn.set_instrumentation(statements.recorder());
    let big = "x".repeat(3 << 20);
    let messages: Vec<Message> = (0..5)
        .map(|i| {
            Message::new(
                Event::Created,
                PRODUCER,
                "users",
                "outbox_enqueue_transaction_misc",
                format!("k-{i}"),
                Payloads::new(1, json!({"i": i, "big": big})).unwrap(),
            )
            .unwrap()
        })
        .collect();
    let ids = Outbox::new(PRODUCER)
        .transaction(&mut conn, |_conn, pending| {
            messages
                .iter()
                .map(|m| pending.enqueue_message(m))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("commits");
    let statements = statements.take();
    assert!(
        statements.len() > 2,
        "several statements: {}",
        statements.len()
    );
    assert!(statements.last().unwrap().ends_with("; COMMIT"));
    assert!(
        statements[1..statements.len() - 1]
            .iter()
            .all(|s| !s.contains("COMMIT")),
        "only the last one commits"
    );
    assert_eq!(committed(&db).1, ids);
    let payload: Vec<u8> = outbox_messages::table
        .filter(outbox_messages::message_id.eq(ids[4].as_uuid()))
        .select(outbox_messages::payload)
        .first(&mut conn)
        .unwrap();
    assert_eq!(payload, messages[4].encode().value);
    assert_usable(&mut conn, &db, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_commit_failure_is_returned_and_rolled_back() {
    // A deferred constraint fails at COMMIT itself (after the INSERT succeeded).
    let db = setup("txn_commit_fails_async");
    db.connect()
        .batch_execute(
            "ALTER TABLE users ADD CONSTRAINT email_unique UNIQUE (email) \
             DEFERRABLE INITIALLY DEFERRED",
        )
        .unwrap();
    let mut conn = db.connect_async().await;
    let result = Outbox::new(PRODUCER)
        .transaction_async(&mut conn, async |conn, pending| {
            let mut twin = user(2);
            twin.email = user(1).email;
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into(users::table).values(&[user(1), twin][..]),
                conn,
            )
            .await?;
            pending.enqueue(&user(1), Event::Created)
        })
        .await;
    let error = result.expect_err("the deferred constraint fails the COMMIT");
    assert!(
        matches!(
            error,
            Error::Database(diesel::result::Error::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        ),
        "{error:?}"
    );
    assert_eq!(committed(&db), (vec![], vec![]));
    assert_usable_async(&mut conn, &db, 100).await;
    conn.batch_execute("SELECT 1").await.expect("usable");
}

#[test]
fn sync_commit_failure_is_returned() {
    let db = setup("txn_commit_fails_sync");
    db.connect()
        .batch_execute(
            "ALTER TABLE users ADD CONSTRAINT email_unique UNIQUE (email) \
             DEFERRABLE INITIALLY DEFERRED",
        )
        .unwrap();
    let mut conn = db.connect();
    let result = Outbox::new(PRODUCER).transaction(&mut conn, |conn, pending| {
        let mut twin = user(2);
        twin.email = user(1).email;
        diesel::insert_into(users::table)
            .values(&[user(1), twin][..])
            .execute(conn)?;
        pending.enqueue(&user(1), Event::Created)
    });
    let error = result.expect_err("the deferred constraint fails the COMMIT");
    assert!(
        matches!(
            error,
            Error::Database(diesel::result::Error::DatabaseError(
                DatabaseErrorKind::UniqueViolation,
                _
            ))
        ),
        "{error:?}"
    );
    assert_eq!(committed(&db), (vec![], vec![]));
    assert_usable(&mut conn, &db, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_future_dropped_during_commit_leaves_the_connection_broken() {
    let db = setup("txn_dropped_async");
    // Another session holds a lock the messages' INSERT waits for.
    let mut locker = db.connect();
    locker
        .batch_execute("BEGIN; LOCK TABLE outbox_messages IN ACCESS EXCLUSIVE MODE")
        .expect("lock taken");
    let mut conn = db.connect_async().await;
    let outbox = Outbox::new(PRODUCER);
    let dropped = tokio::time::timeout(
        std::time::Duration::from_millis(500),
        outbox.transaction_async(&mut conn, async |conn, pending| {
            diesel_async::RunQueryDsl::execute(
                diesel::insert_into(users::table).values(&user(1)),
                conn,
            )
            .await?;
            pending.enqueue(&user(1), Event::Created)
        }),
    )
    .await;
    assert!(
        dropped.is_err(),
        "the commit waits for the lock: {dropped:?}"
    );
    // The outcome is unknown to the caller: the manager says broken, not idle.
    assert!(
        depth_async(&mut conn).is_err(),
        "{:?}",
        depth_async(&mut conn)
    );

    // Once the lock goes, the server finishes what it received: all of it.
    locker.batch_execute("COMMIT").expect("lock released");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (users, messages) = loop {
        let seen = committed(&db);
        if !seen.0.is_empty() || std::time::Instant::now() > deadline {
            break seen;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(
        (users.len(), messages.len()),
        (1, 1),
        "{users:?} {messages:?}"
    );
}
