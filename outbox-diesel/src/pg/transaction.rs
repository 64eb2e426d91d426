//! [`Outbox::transaction`]: a business transaction whose messages are written in
//! the round trip of its `COMMIT`.
//!
//! The closure enqueues into a [`Pending`] collector (nothing is written then).
//! When it returns `Ok`, the collected rows go out as one simple-query message,
//! `INSERT INTO outbox_messages … VALUES (literals…); COMMIT`: PostgreSQL runs
//! the statements in order in the open transaction, and stops at the first
//! error, so a failed `INSERT` never reaches the `COMMIT` (the transaction is
//! rolled back and the error returned). The values are escape-string literals
//! in ASCII alone (`E'…'`, `\` and `'` doubled, characters past ASCII as
//! `\uXXXX` escapes, bytea as hex), read the same whatever
//! `standard_conforming_strings`, `backslash_quote` or the session's
//! `client_encoding` say; a NUL character, which PostgreSQL's `text` cannot
//! hold, is refused when the message is enqueued.
//!
//! diesel-async could pipeline a bound `INSERT` and a `COMMIT` as two futures
//! polled together, but their order on the wire would not be certain: an
//! `INSERT` whose statement is not yet prepared awaits the prepare's round trip
//! before it sends its `Bind`/`Execute`, and the `COMMIT` future, polled
//! meanwhile, goes first; the `INSERT` then runs on its own after the business
//! data has committed. One message has one order, so the async path sends the
//! same single message.

use std::future::Future;
use std::panic::{self, AssertUnwindSafe};

use diesel::PgConnection;
use diesel::connection::{
    AnsiTransactionManager, SimpleConnection, TransactionDepthChange, TransactionManager,
    TransactionManagerStatus, ValidTransactionManagerStatus,
};
use diesel::result::Error as DieselError;
use diesel_async::{AsyncPgConnection, SimpleAsyncConnection};
use futures::FutureExt as _;
use outbox::{Event, Message, MessageId, Outboxed};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::pg::avro::distinct;
use crate::pg::enqueue::{Ids, NewRow, Outbox, ROWS_PER_INSERT, Row, insert_rows};

/// A statement of literal rows is closed, and the next one started, past this
/// many bytes: a transaction enqueueing more than that sends its first
/// statements ahead of the last one, which carries the `COMMIT`.
const STATEMENT_BYTES: usize = 8 << 20;

const INSERT_INTO: &str = "INSERT INTO \"outbox_messages\" \
    (\"message_id\", \"topic\", \"partition_key\", \"headers\", \"payload\", \"value_schema\") VALUES ";

/// Avro values' schemas, written ahead of the messages in their statement.
const INSERT_SCHEMAS: &str = "INSERT INTO \"outbox_schemas\" \
    (\"schema_key\", \"subject\", \"schema\") VALUES ";

impl Outbox {
    /// Runs `f` in a new transaction on `conn` and commits it with the messages
    /// `f` enqueued into its [`Pending`] collector, written in the same round
    /// trip as the `COMMIT`.
    ///
    /// A business transaction that enqueues through [`enqueue`](Outbox::enqueue)
    /// pays one more round trip (its `INSERT`); this one pays none: `BEGIN`, the
    /// closure's own statements, then `INSERT … ; COMMIT` as one message. The
    /// messages and the closure's writes commit together or not at all: an
    /// error of the `INSERT` stops PostgreSQL before the `COMMIT`, the
    /// transaction is rolled back and the error returned.
    ///
    /// `BEGIN`, savepoints and rollbacks go through Diesel's transaction
    /// manager, so `conn.transaction(..)` inside `f` makes a savepoint as usual,
    /// and the manager knows of no transaction once this returns. Called while a
    /// transaction is already open on `conn`, this makes a savepoint, inserts
    /// the messages with a bound `INSERT` and releases it (no round trip saved).
    /// No message enqueued: a plain `COMMIT`.
    ///
    /// `f` returning `Err` rolls back (nothing is written) and returns its
    /// error. A panic in `f` rolls the transaction back, then goes on unwinding;
    /// if that rollback fails, the transaction manager is marked broken
    /// (Diesel's [`BrokenTransactionManager`](diesel::result::Error::BrokenTransactionManager)
    /// on the next transaction; pools discard the connection).
    ///
    /// # Errors
    ///
    /// `f`'s own error; otherwise, converted into `E`: [`Error::Database`] when
    /// `BEGIN` fails, when the messages' `INSERT` fails (nothing committed),
    /// when the `COMMIT` fails or the session ends before its answer — as for
    /// any `COMMIT`, a connection lost after PostgreSQL received it leaves the
    /// outcome unknown to the caller — or, carrying diesel's
    /// `RollbackErrorOnCommit`, when the rollback after a failed `INSERT` fails
    /// too (the connection is then marked broken).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use outbox::{Event, Outboxed};
    /// use outbox_diesel::Outbox;
    ///
    /// diesel::table! { users (id) { id -> BigInt, email -> Text } }
    ///
    /// #[derive(Queryable, Insertable, Outboxed)]
    /// #[diesel(table_name = users)]
    /// #[outbox(topic = "accounts")]
    /// struct User { id: i64, email: String }
    ///
    /// let mut conn = PgConnection::establish("postgres://localhost/app")?;
    /// let outbox = Outbox::new("accounts");
    /// let id = outbox.transaction(&mut conn, |conn, pending| {
    ///     let user: User = diesel::insert_into(users::table)
    ///         .values(&User { id: 1, email: "ada@example.com".into() })
    ///         .get_result(conn)?;
    ///     pending.enqueue(&user, Event::Created)?;
    ///     Ok::<_, outbox_diesel::Error>(user.id)
    /// })?;
    /// assert_eq!(id, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn transaction<T, E, F>(&self, conn: &mut PgConnection, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut PgConnection, &mut Pending) -> Result<T, E>,
        E: From<Error>,
    {
        AnsiTransactionManager::begin_transaction(conn).map_err(Error::from)?;
        let mut pending = Pending::new(self);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| f(conn, &mut pending)));
        match outcome {
            Ok(Ok(value)) => {
                commit(conn, &pending.rows)?;
                Ok(value)
            }
            Ok(Err(user_error)) => match AnsiTransactionManager::rollback_transaction(conn) {
                Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(user_error),
                Err(rollback_error) => Err(Error::Database(rollback_error).into()),
            },
            Err(panic) => {
                // A failed rollback marks the manager broken itself.
                let _ = AnsiTransactionManager::rollback_transaction(conn);
                panic::resume_unwind(panic)
            }
        }
    }

    /// [`transaction`](Outbox::transaction) on a diesel-async connection: `f`
    /// is an async closure; the messages are written in the round trip of the
    /// `COMMIT` likewise.
    ///
    /// While that last message is in flight the transaction manager is marked
    /// broken, so a future dropped then leaves the connection clearly broken
    /// (its outcome unknown) rather than looking idle; pools discard it. A
    /// future dropped while `f` runs leaves the transaction open, as
    /// diesel-async's own `transaction` does.
    ///
    /// # Errors
    ///
    /// As for [`transaction`](Outbox::transaction).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
    /// use outbox::{Event, Outboxed};
    /// use outbox_diesel::Outbox;
    ///
    /// diesel::table! { users (id) { id -> BigInt, email -> Text } }
    ///
    /// #[derive(diesel::Queryable, diesel::Insertable, Outboxed)]
    /// #[diesel(table_name = users)]
    /// #[outbox(topic = "accounts")]
    /// struct User { id: i64, email: String }
    ///
    /// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
    /// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
    /// let outbox = Outbox::new("accounts");
    /// let id = outbox
    ///     .transaction_async(&mut conn, async |conn, pending| {
    ///         let user: User = diesel::insert_into(users::table)
    ///             .values(&User { id: 1, email: "ada@example.com".into() })
    ///             .get_result(conn)
    ///             .await?;
    ///         pending.enqueue(&user, Event::Created)?;
    ///         Ok::<_, outbox_diesel::Error>(user.id)
    ///     })
    ///     .await?;
    /// assert_eq!(id, 1);
    /// # Ok(()) }
    /// ```
    pub async fn transaction_async<T, E, F>(
        &self,
        conn: &mut AsyncPgConnection,
        f: F,
    ) -> Result<T, E>
    where
        for<'c, 'p> F: AsyncFnOnce(&'c mut AsyncPgConnection, &'p mut Pending) -> Result<T, E>
            + TransactionFn<&'c mut AsyncPgConnection, &'p mut Pending, Result<T, E>, Fut: Send>
            + Send,
        T: Send,
        E: From<Error> + Send,
    {
        use diesel_async::{AnsiTransactionManager as Manager, TransactionManager as _};
        Manager::begin_transaction(conn)
            .await
            .map_err(Error::from)?;
        let mut pending = Pending::new(self);
        let outcome = AssertUnwindSafe(f(&mut *conn, &mut pending))
            .catch_unwind()
            .await;
        match outcome {
            Ok(Ok(value)) => {
                commit_async(conn, &pending.rows).await?;
                Ok(value)
            }
            Ok(Err(user_error)) => match Manager::rollback_transaction(conn).await {
                Ok(()) | Err(DieselError::BrokenTransactionManager) => Err(user_error),
                Err(rollback_error) => Err(Error::Database(rollback_error).into()),
            },
            Err(panic) => {
                let _ = Manager::rollback_transaction(conn).await;
                panic::resume_unwind(panic)
            }
        }
    }
}

/// The messages enqueued in an [`Outbox::transaction`], written when it commits.
///
/// Its methods mirror [`Outbox`]'s: each builds the message (payloads
/// serialized, id made) at once and returns its id; nothing reaches the
/// database before the commit.
///
/// # Examples
///
/// ```no_run
/// # use outbox::{Event, Outboxed};
/// # #[derive(Outboxed)] #[outbox(topic = "accounts", route = "users")] struct User { id: i64 }
/// use diesel::prelude::*;
///
/// let mut conn = PgConnection::establish("postgres://localhost/app")?;
/// let outbox = outbox_diesel::Outbox::new("accounts");
/// outbox.transaction(&mut conn, |_conn, pending| {
///     assert!(pending.is_empty());
///     let id = pending.enqueue(&User { id: 7 }, Event::Updated)?;
///     assert_eq!(pending.ids().collect::<Vec<_>>(), [id]);
///     Ok::<_, outbox_diesel::Error>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Pending {
    outbox: Outbox,
    rows: Vec<Row>,
}

impl Pending {
    fn new(outbox: &Outbox) -> Self {
        Pending {
            outbox: outbox.clone(),
            rows: Vec::new(),
        }
    }

    /// Collects `event` of `model`; returns the message's id.
    ///
    /// # Errors
    ///
    /// [`Error::Message`] when a payload serializer fails; [`Error::Database`]
    /// holding a [`NulInText`] when the partition key or a header holds a NUL
    /// character. Nothing is collected then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use outbox::{Event, Outboxed};
    /// # #[derive(Outboxed)] #[outbox(topic = "accounts", route = "users")] struct User { id: i64 }
    /// # let mut conn = <diesel::PgConnection as diesel::Connection>::establish("postgres://localhost/app")?;
    /// let outbox = outbox_diesel::Outbox::new("accounts");
    /// let id = outbox.transaction(&mut conn, |_conn, pending| {
    ///     pending.enqueue(&User { id: 7 }, Event::Created)
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn enqueue<M: Outboxed>(&mut self, model: &M, event: Event) -> Result<MessageId> {
        let row = self.outbox.model_row(model, &event)?;
        check_text(&row)?;
        let id = row.id;
        self.rows.push(row);
        Ok(id)
    }

    /// Collects `event` of every model in `models`, in order; returns their ids
    /// in the same order.
    ///
    /// # Errors
    ///
    /// As for [`enqueue`](Pending::enqueue); on error none of them is collected.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use outbox::{Event, Outboxed};
    /// # #[derive(Outboxed)] #[outbox(topic = "accounts", route = "users")] struct User { id: i64 }
    /// # let mut conn = <diesel::PgConnection as diesel::Connection>::establish("postgres://localhost/app")?;
    /// let users = [User { id: 1 }, User { id: 2 }];
    /// let ids = outbox_diesel::Outbox::new("accounts").transaction(&mut conn, |_conn, pending| {
    ///     pending.enqueue_all(&users, Event::Updated)
    /// })?;
    /// assert_eq!(ids.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn enqueue_all<'m, M: Outboxed + 'm>(
        &mut self,
        models: impl IntoIterator<Item = &'m M>,
        event: Event,
    ) -> Result<Vec<MessageId>> {
        let rows = self.outbox.model_rows(models, &event)?;
        rows.iter().try_for_each(check_text)?;
        let ids = rows.iter().map(|row| row.id).collect();
        self.rows.extend(rows);
        Ok(ids)
    }

    /// Collects a message built by hand (its own id, `from`, trace and payloads
    /// are kept as they are).
    ///
    /// # Errors
    ///
    /// [`Error::Message`] with [`outbox::Error::InvalidTopic`] when the
    /// message's topic breaks Kafka's rule; [`Error::Database`] holding a
    /// [`NulInText`] when a text value holds a NUL character. Nothing is
    /// collected then.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox::{Event, Message, Payloads};
    /// # let mut conn = <diesel::PgConnection as diesel::Connection>::establish("postgres://localhost/app")?;
    ///
    /// let message = Message::new(Event::custom("password_reset")?, "accounts", "users", "accounts", "42",
    ///     Payloads::new(1, serde_json::json!({"id": 42}))?)?;
    /// outbox_diesel::Outbox::new("accounts")
    ///     .transaction(&mut conn, |_conn, pending| pending.enqueue_message(&message))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn enqueue_message(&mut self, message: &Message) -> Result<MessageId> {
        // Its fields are public: the topic may have changed since `Message::new`.
        Message::check_topic(&message.topic)?;
        let row = Row::from_message(message);
        check_text(&row)?;
        let id = row.id;
        self.rows.push(row);
        Ok(id)
    }

    /// How many messages are collected.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use outbox::{Event, Outboxed};
    /// # #[derive(Outboxed)] #[outbox(topic = "accounts", route = "users")] struct User { id: i64 }
    /// # let mut conn = <diesel::PgConnection as diesel::Connection>::establish("postgres://localhost/app")?;
    /// outbox_diesel::Outbox::new("accounts").transaction(&mut conn, |_conn, pending| {
    ///     pending.enqueue_all(&[User { id: 1 }, User { id: 2 }], Event::Created)?;
    ///     assert_eq!(pending.len(), 2);
    ///     Ok::<_, outbox_diesel::Error>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether no message is collected (the transaction then commits plainly).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let mut conn = <diesel::PgConnection as diesel::Connection>::establish("postgres://localhost/app")?;
    /// outbox_diesel::Outbox::new("accounts").transaction(&mut conn, |_conn, pending| {
    ///     assert!(pending.is_empty());
    ///     Ok::<_, outbox_diesel::Error>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The ids of the collected messages, in the order they were enqueued.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use outbox::{Event, Outboxed};
    /// # #[derive(Outboxed)] #[outbox(topic = "accounts", route = "users")] struct User { id: i64 }
    /// # let mut conn = <diesel::PgConnection as diesel::Connection>::establish("postgres://localhost/app")?;
    /// outbox_diesel::Outbox::new("accounts").transaction(&mut conn, |_conn, pending| {
    ///     let first = pending.enqueue(&User { id: 1 }, Event::Created)?;
    ///     assert_eq!(pending.ids().next(), Some(first));
    ///     Ok::<_, outbox_diesel::Error>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ids(&self) -> impl ExactSizeIterator<Item = MessageId> + '_ {
        self.rows.iter().map(|row| row.id)
    }

    /// The outbox the transaction runs for (its producer name and trace).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # let mut conn = <diesel::PgConnection as diesel::Connection>::establish("postgres://localhost/app")?;
    /// outbox_diesel::Outbox::new("accounts").transaction(&mut conn, |_conn, pending| {
    ///     assert_eq!(pending.outbox().producer(), "accounts");
    ///     Ok::<_, outbox_diesel::Error>(())
    /// })?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn outbox(&self) -> &Outbox {
        &self.outbox
    }
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("producer", &self.outbox.producer())
            .field("ids", &Ids(&self.rows))
            .finish()
    }
}

/// A text value of a message holds a NUL character, which PostgreSQL's `text`
/// cannot store: the message is refused when enqueued into a [`Pending`]
/// collector, inside [`Error::Database`] as diesel's `SerializationError`.
///
/// # Examples
///
/// ```
/// use outbox_diesel::{Error, NulInText};
///
/// # fn check(error: Error) {
/// // What `pending.enqueue_message(&message)` returns for a key "a\0b":
/// if let Error::Database(diesel::result::Error::SerializationError(cause)) = &error {
///     if let Some(nul) = cause.downcast_ref::<NulInText>() {
///         assert_eq!(nul.field, "partition key");
///     }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "message {message_id}: its {field} holds a NUL character, which PostgreSQL text cannot \
     store (the message was not enqueued)"
)]
#[non_exhaustive]
pub struct NulInText {
    /// The message refused.
    pub message_id: MessageId,
    /// Which value: `topic`, `partition key`, `header name` or `` header `name` ``.
    pub field: String,
}

/// The bound on [`Outbox::transaction_async`]'s closure: an async closure taking
/// the connection and the [`Pending`] collector, whose future is `Send`.
/// Implemented for every such closure; there is nothing to implement.
///
/// It names the closure's future so that its `Send` bound can be written, as
/// diesel-async's `AsyncFunc` does for `AsyncConnection::transaction`.
///
/// # Examples
///
/// ```
/// use diesel_async::AsyncPgConnection;
/// use outbox_diesel::{Pending, TransactionFn};
///
/// fn sendable<F>(f: F) -> F
/// where
///     for<'c, 'p> F: TransactionFn<&'c mut AsyncPgConnection, &'p mut Pending, Result<(), outbox_diesel::Error>, Fut: Send>,
/// {
///     f
/// }
/// let _ = sendable(async |_conn: &mut AsyncPgConnection, pending: &mut Pending| {
///     assert!(pending.is_empty());
///     Ok(())
/// });
/// ```
pub trait TransactionFn<C, P, R>: AsyncFnOnce(C, P) -> R + FnOnce(C, P) -> Self::Fut {
    /// The closure's future.
    type Fut: Future<Output = R>;
}

impl<F, C, P, Fut, R> TransactionFn<C, P, R> for F
where
    F: AsyncFnOnce(C, P) -> R + FnOnce(C, P) -> Fut,
    Fut: Future<Output = R>,
{
    type Fut = Fut;
}

/// Refuses a row whose text values hold a NUL character.
fn check_text(row: &Row) -> Result<()> {
    let refuse = |field: String| {
        Err(Error::Database(DieselError::SerializationError(Box::new(
            NulInText {
                message_id: row.id,
                field,
            },
        ))))
    };
    if row.topic.contains('\0') {
        return refuse("topic".into());
    }
    if row.partition_key.contains('\0') {
        return refuse("partition key".into());
    }
    for pair in row.headers.chunks(2) {
        let name = &pair[0];
        if name.contains('\0') {
            return refuse("header name".into());
        }
        if pair.get(1).is_some_and(|value| value.contains('\0')) {
            return refuse(format!("header `{name}`"));
        }
    }
    Ok(())
}

/// The depth of the transaction Diesel's manager knows of.
fn depth(status: &TransactionManagerStatus) -> Result<Option<u32>> {
    Ok(status.transaction_depth()?.map(std::num::NonZeroU32::get))
}

/// No transaction open: what the manager knows once the `COMMIT` went through.
fn no_transaction() -> TransactionManagerStatus {
    TransactionManagerStatus::Valid(ValidTransactionManagerStatus::default())
}

/// Commits the transaction begun by [`Outbox::transaction`], with `rows`.
fn commit(conn: &mut PgConnection, rows: &[Row]) -> Result<()> {
    let status = AnsiTransactionManager::transaction_manager_status_mut(conn);
    if rows.is_empty() || depth(status)? != Some(1) {
        // A savepoint (or nothing to write): Diesel's way.
        if !rows.is_empty() {
            let span = commit_span(rows);
            let _entered = span.enter();
            if let Err(error) = insert_bound(conn, rows) {
                return Err(roll_back(conn, error));
            }
        }
        AnsiTransactionManager::commit_transaction(conn)?;
        return Ok(());
    }
    let span = commit_span(rows);
    let _entered = span.enter();
    let mut statements = literal_inserts(rows);
    let last = statements.pop().unwrap_or_default() + "; COMMIT";
    for statement in &statements {
        if let Err(error) = conn.batch_execute(statement) {
            return Err(roll_back(conn, error));
        }
    }
    match conn.batch_execute(&last) {
        Ok(()) => {
            // PgConnection saw the session idle and said so already; make sure.
            *AnsiTransactionManager::transaction_manager_status_mut(conn) = no_transaction();
            Ok(())
        }
        Err(error) => Err(roll_back(conn, error)),
    }
}

/// After `error` in the commit: rolls back what is still open. PgConnection has
/// updated the manager from the session's state: still in the transaction (the
/// `INSERT` failed), ended (the `COMMIT` failed), or broken (the session is gone).
fn roll_back(conn: &mut PgConnection, error: DieselError) -> Error {
    let status = AnsiTransactionManager::transaction_manager_status_mut(conn);
    if !matches!(depth(status), Ok(Some(_))) {
        return Error::Database(error);
    }
    match AnsiTransactionManager::rollback_transaction(conn) {
        Ok(()) => Error::Database(error),
        Err(rollback_error) => {
            AnsiTransactionManager::transaction_manager_status_mut(conn).set_in_error();
            Error::Database(DieselError::RollbackErrorOnCommit {
                rollback_error: Box::new(rollback_error),
                commit_error: Box::new(error),
            })
        }
    }
}

/// [`commit`] on a diesel-async connection.
async fn commit_async(conn: &mut AsyncPgConnection, rows: &[Row]) -> Result<()> {
    use diesel_async::{AnsiTransactionManager as Manager, TransactionManager as _};
    if rows.is_empty() || depth(Manager::transaction_manager_status_mut(conn))? != Some(1) {
        if !rows.is_empty() {
            let outcome = insert_bound_async(conn, rows)
                .instrument(commit_span(rows))
                .await;
            if let Err(error) = outcome {
                return Err(roll_back_async(conn, error).await);
            }
        }
        Manager::commit_transaction(conn).await?;
        return Ok(());
    }
    let mut statements = literal_inserts(rows);
    let last = statements.pop().unwrap_or_default() + "; COMMIT";
    // Broken while in flight: a future dropped now leaves an unknown outcome,
    // which must not look like an idle connection.
    Manager::transaction_manager_status_mut(conn).set_in_error();
    let sent = async {
        for statement in &statements {
            conn.batch_execute(statement).await?;
        }
        conn.batch_execute(&last).await
    }
    .instrument(commit_span(rows))
    .await;
    let status = Manager::transaction_manager_status_mut(conn);
    *status = no_transaction();
    match sent {
        Ok(()) => Ok(()),
        Err(error) => {
            // Still in the transaction (an `INSERT` failed) or not (the `COMMIT`
            // failed, or the session is gone): tokio-postgres does not say, and a
            // `ROLLBACK` outside a transaction only warns.
            if let TransactionManagerStatus::Valid(valid) = status {
                valid.change_transaction_depth(TransactionDepthChange::IncreaseDepth)?;
            }
            Err(roll_back_async(conn, error).await)
        }
    }
}

/// [`roll_back`] on a diesel-async connection.
async fn roll_back_async(conn: &mut AsyncPgConnection, error: DieselError) -> Error {
    use diesel_async::{AnsiTransactionManager as Manager, TransactionManager as _};
    match Manager::rollback_transaction(conn).await {
        Ok(()) | Err(DieselError::BrokenTransactionManager) => Error::Database(error),
        Err(rollback_error) => {
            Manager::transaction_manager_status_mut(conn).set_in_error();
            Error::Database(DieselError::RollbackErrorOnCommit {
                rollback_error: Box::new(rollback_error),
                commit_error: Box::new(error),
            })
        }
    }
}

/// The rows with bound parameters, as [`Outbox::enqueue_all`] writes them.
fn insert_bound(conn: &mut PgConnection, rows: &[Row]) -> std::result::Result<(), DieselError> {
    use diesel::RunQueryDsl as _;
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let new: Vec<NewRow<'_>> = chunk.iter().map(Row::as_new).collect();
        insert_rows(chunk, &new).execute(conn)?;
    }
    Ok(())
}

/// [`insert_bound`] on a diesel-async connection.
async fn insert_bound_async(
    conn: &mut AsyncPgConnection,
    rows: &[Row],
) -> std::result::Result<(), DieselError> {
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let new: Vec<NewRow<'_>> = chunk.iter().map(Row::as_new).collect();
        diesel_async::RunQueryDsl::execute(insert_rows(chunk, &new), conn).await?;
    }
    Ok(())
}

/// The `outbox.enqueue` span of a commit: count and message ids.
fn commit_span(rows: &[Row]) -> tracing::Span {
    tracing::debug_span!("outbox.enqueue", count = rows.len(), ids = ?Ids(rows), with_commit = true)
}

/// `rows` as `INSERT` statements with literal values, in order; each closes
/// past [`STATEMENT_BYTES`]. Never empty when `rows` is not. The first one
/// starts with the insert of the Avro values' schemas, if any.
fn literal_inserts(rows: &[Row]) -> Vec<String> {
    let mut statements = Vec::new();
    let mut sql = literal_schemas(rows);
    for row in rows {
        if sql.len() >= STATEMENT_BYTES {
            statements.push(std::mem::take(&mut sql));
        }
        if sql.is_empty() || sql.ends_with("; ") {
            sql.reserve(INSERT_INTO.len() + row_bytes(row) * rows.len().min(64));
            sql.push_str(INSERT_INTO);
        } else {
            sql.push_str(", ");
        }
        push_row(&mut sql, row);
    }
    if !sql.is_empty() {
        statements.push(sql);
    }
    statements
}

/// `INSERT INTO outbox_schemas … ON CONFLICT DO NOTHING; ` for the schemas of
/// the rows' Avro values, or nothing.
fn literal_schemas(rows: &[Row]) -> String {
    let schemas = distinct(rows.iter().filter_map(|row| row.schema.as_ref()));
    if schemas.is_empty() {
        return String::new();
    }
    let mut sql = String::from(INSERT_SCHEMAS);
    for (i, schema) in schemas.iter().enumerate() {
        sql.push_str(if i == 0 { "(" } else { ", (" });
        sql.push_str(&schema.key.to_string());
        sql.push_str(", ");
        push_text(&mut sql, &schema.subject);
        sql.push_str(", ");
        push_text(&mut sql, schema.schema);
        sql.push(')');
    }
    sql.push_str(" ON CONFLICT DO NOTHING; ");
    sql
}

/// About the length of a row's literal.
fn row_bytes(row: &Row) -> usize {
    64 + row.topic.len()
        + row.partition_key.len()
        + row.headers.iter().map(|h| h.len() + 6).sum::<usize>()
        + row.payload.len() * 2
}

/// `(uuid, topic, key, headers, payload, value_schema)` as literals.
fn push_row(sql: &mut String, row: &Row) {
    sql.push_str("('");
    sql.push_str(
        row.id
            .as_uuid()
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    sql.push_str("', ");
    push_text(sql, &row.topic);
    sql.push_str(", ");
    push_text(sql, &row.partition_key);
    sql.push_str(", ");
    push_text(sql, &array_literal(&row.headers));
    sql.push_str(", ");
    push_bytea(sql, &row.payload);
    match &row.schema {
        Some(schema) => {
            sql.push_str(", ");
            sql.push_str(&schema.key.to_string());
            sql.push(')');
        }
        None => sql.push_str(", NULL)"),
    }
}

/// `text` as an escape string constant, `E'…'`, in ASCII alone: `'` and `\`
/// doubled, every character past ASCII written as a Unicode escape (`\uXXXX`,
/// `\UXXXXXXXX`), the rest as is.
///
/// An escape string is read the same whatever `standard_conforming_strings`
/// says, and no other escape can start. Being ASCII, the statement also reads
/// the same in every client encoding: in a multibyte one such as SJIS or GBK,
/// raw UTF-8 bytes could pair with the `\` or `'` that follows them into one
/// character and end the literal early, were a session's `client_encoding`
/// changed from the `UTF8` Diesel sets. PostgreSQL turns the escapes into the
/// server's encoding as it converts bound text (a database whose encoding is
/// `SQL_ASCII` refuses them: the transaction fails and nothing is written).
/// The caller has refused NUL (see [`check_text`]).
fn push_text(sql: &mut String, text: &str) {
    use std::fmt::Write as _;
    sql.reserve(text.len() + 3);
    sql.push_str("E'");
    for c in text.chars() {
        match c {
            '\'' => sql.push_str("''"),
            '\\' => sql.push_str("\\\\"),
            c if c.is_ascii() => sql.push(c),
            c if u32::from(c) <= 0xFFFF => {
                // Writing into a String cannot fail.
                let _ = write!(sql, "\\u{:04X}", u32::from(c));
            }
            c => {
                let _ = write!(sql, "\\U{:08X}", u32::from(c));
            }
        }
    }
    sql.push('\'');
}

/// `values` as a `text[]` literal, `{"…","…"}`: every element quoted (so
/// `NULL`, spaces, commas and braces stay text), `\` and `"` escaped by a
/// backslash. One constant for PostgreSQL to read, cheaper than an `ARRAY[…]`
/// of one constant per element.
fn array_literal(values: &[String]) -> String {
    let mut literal = String::with_capacity(2 + values.iter().map(|v| v.len() + 3).sum::<usize>());
    literal.push('{');
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            literal.push(',');
        }
        literal.push('"');
        let mut rest = value.as_str();
        while let Some(at) = rest.find(['"', '\\']) {
            literal.push_str(&rest[..at]);
            literal.push('\\');
            literal.push(char::from(rest.as_bytes()[at]));
            rest = &rest[at + 1..];
        }
        literal.push_str(rest);
        literal.push('"');
    }
    literal.push('}');
    literal
}

/// `bytes` as a bytea in hex format, `E'\\x…'`.
fn push_bytea(sql: &mut String, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    sql.reserve(bytes.len() * 2 + 6);
    sql.push_str("E'\\\\x");
    for byte in bytes {
        sql.push(char::from(HEX[usize::from(byte >> 4)]));
        sql.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    sql.push('\'');
}

#[cfg(test)]
mod tests {
    use super::{array_literal, push_bytea, push_text};

    fn text(value: &str) -> String {
        let mut sql = String::new();
        push_text(&mut sql, value);
        sql
    }

    #[test]
    fn quotes_and_backslashes_are_doubled() {
        assert_eq!(text(""), "E''");
        assert_eq!(text("plain"), "E'plain'");
        assert_eq!(text("it's"), "E'it''s'");
        assert_eq!(text(r"a\b"), r"E'a\\b'");
        assert_eq!(text(r"\'"), r"E'\\'''");
        assert_eq!(text(r"'); DROP TABLE x; --"), r"E'''); DROP TABLE x; --'");
        assert_eq!(text("\n\t$$"), "E'\n\t$$'");
    }

    #[test]
    fn only_ascii_is_sent() {
        assert_eq!(text("é✓"), r"E'\u00E9\u2713'");
        assert_eq!(text("🚀x"), r"E'\U0001F680x'");
        // U+30BD is 0x83 0x5C in SJIS: its second byte is a `\`. Escaped, the
        // statement holds no byte past ASCII to pair with the next character.
        assert_eq!(text("ソ'"), r"E'\u30BD'''");
        assert!(text("ünïcødé ✓ 🚀 '\\ \u{7f}").is_ascii());
    }

    #[test]
    fn arrays_quote_every_element() {
        let values = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(array_literal(&[]), "{}");
        assert_eq!(
            array_literal(&values(&["a", "NULL", ""])),
            r#"{"a","NULL",""}"#
        );
        assert_eq!(
            array_literal(&values(&[r#"q"u\o"#, "{x, y}"])),
            r#"{"q\"u\\o","{x, y}"}"#
        );
        assert_eq!(text(&array_literal(&values(&[r"\'"]))), r#"E'{"\\\\''"}'"#);
    }

    #[test]
    fn bytes_are_hex() {
        let mut sql = String::new();
        push_bytea(&mut sql, &[0, 0x7f, 0xff, b'\'', b'\\']);
        assert_eq!(sql, r"E'\\x007fff275c'");
    }
}
