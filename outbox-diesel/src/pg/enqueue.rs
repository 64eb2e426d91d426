//! Enqueue: messages written in the caller's transaction, beside the data they describe.

use std::sync::Arc;

use chrono::Utc;
use diesel::PgConnection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use diesel::prelude::*;
use diesel_async::AsyncPgConnection;
use outbox::{EncodedMessage, Event, Message, MessageId, Outboxed, TraceContext};
use tracing::Instrument;

use crate::error::{Error, Result};
use crate::pg::avro::{SchemaRow, WithSchemas, distinct};
use crate::pg::realtime::Realtime;
use crate::registry::SubjectStrategy;
use crate::schema::outbox_messages;

/// PostgreSQL allows 65,535 bind parameters per statement; a row takes 6 (and
/// each distinct schema of the chunk 3 more).
pub(super) const ROWS_PER_INSERT: usize = 10_000;

/// Writes messages into `outbox_messages` in the caller's transaction, for the
/// relay to publish once it commits.
///
/// The producer name is sent as each message's `from`. An `Outbox` is cheap to
/// clone; keep one per service.
///
/// Each enqueue is one `INSERT` (one row per message, all payload versions in its
/// value, written by the model's generated serializers straight into bytes). The
/// table's trigger issues `NOTIFY outbox_messages` in the same transaction, so the
/// relay wakes when it commits and never for a rollback.
///
/// A model with `#[outbox(format = "avro")]` is written as an Avro frame whose
/// schema id is still 0; the same statement stores its schema in
/// `outbox_schemas` (once: `ON CONFLICT DO NOTHING`) under the subject of the
/// outbox's [`SubjectStrategy`]. No schema registry is called in a business
/// transaction: the relay registers the schema and writes its id.
///
/// [`Outbox::transaction`] (and [`Outbox::transaction_async`]) runs the
/// transaction itself and writes the messages it collects in the round trip of
/// its `COMMIT`: the enqueue then costs no round trip of its own.
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
/// conn.transaction(|conn| {
///     let user: User = diesel::insert_into(users::table)
///         .values(&User { id: 1, email: "ada@example.com".into() })
///         .get_result(conn)?;
///     outbox.enqueue(conn, &user, Event::Created)?;
///     Ok::<_, outbox_diesel::Error>(())
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Outbox {
    producer: Arc<str>,
    trace: Option<TraceContext>,
    subjects: SubjectStrategy,
}

impl Outbox {
    /// An outbox for the producing service `producer` (the `from` of its messages).
    pub fn new(producer: impl Into<String>) -> Self {
        Outbox {
            producer: producer.into().into(),
            trace: None,
            subjects: SubjectStrategy::TopicName,
        }
    }

    /// The same outbox, naming the registry subjects of its Avro models'
    /// schemas with `strategy` (default [`SubjectStrategy::TopicName`],
    /// `<topic>-value`; a topic carrying several Avro records needs
    /// `RecordName` or `TopicRecordName`). Give `outbox schemas register` the same.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::Outbox;
    /// use outbox_diesel::registry::SubjectStrategy;
    ///
    /// let outbox = Outbox::new("billing").with_subject_strategy(SubjectStrategy::RecordName);
    /// assert_eq!(outbox.subject_strategy(), SubjectStrategy::RecordName);
    /// ```
    #[must_use]
    pub fn with_subject_strategy(&self, strategy: SubjectStrategy) -> Self {
        Outbox {
            subjects: strategy,
            ..self.clone()
        }
    }

    /// How the subjects of Avro models' schemas are named.
    pub fn subject_strategy(&self) -> SubjectStrategy {
        self.subjects
    }

    /// The same outbox, attaching `trace` (its `traceparent`/`tracestate`) to the
    /// messages it enqueues.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::TraceContext;
    /// use outbox_diesel::Outbox;
    ///
    /// let trace = TraceContext::new("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None)?;
    /// let traced = Outbox::new("accounts").with_trace(Some(trace.clone()));
    /// assert_eq!(traced.trace(), Some(&trace));
    /// # Ok::<(), outbox::Error>(())
    /// ```
    #[must_use]
    pub fn with_trace(&self, trace: Option<TraceContext>) -> Self {
        Outbox {
            trace,
            ..self.clone()
        }
    }

    /// The producer name.
    pub fn producer(&self) -> &str {
        &self.producer
    }

    /// The trace attached to enqueued messages, if any.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.trace.as_ref()
    }

    /// Writes the schema of `M`'s Avro messages (its highest version, under
    /// this outbox's subject) into `outbox_schemas` now, as enqueue would,
    /// and returns whether the row is new; a JSON model writes nothing.
    ///
    /// Enqueue writes the row itself, so this is never needed for
    /// correctness. Run at start-up or deploy, outside business
    /// transactions (committed at once when no transaction is open), it
    /// makes sure the first enqueues of a new schema never wait for a
    /// still-open transaction that happened to write the row first.
    ///
    /// # Errors
    ///
    /// [`Error::Message`] when the model's schema cannot be built;
    /// [`Error::Database`] when the insert fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use outbox::Outboxed;
    /// use outbox_diesel::Outbox;
    ///
    /// #[derive(Outboxed)]
    /// #[outbox(topic = "billing", route = "invoices", format = "avro")]
    /// struct Invoice { id: i64 }
    ///
    /// let mut conn = PgConnection::establish("postgres://localhost/app")?;
    /// let outbox = Outbox::new("billing");
    /// outbox.store_schema::<Invoice>(&mut conn)?; // at start-up
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store_schema<M: Outboxed>(&self, conn: &mut PgConnection) -> Result<bool> {
        let Some(row) = self.schema_row::<M>()? else {
            return Ok(false);
        };
        Ok(store_schema_query(&row).execute(conn)? == 1)
    }

    /// [`store_schema`](Outbox::store_schema) on a diesel-async connection.
    ///
    /// # Errors
    ///
    /// As for [`store_schema`](Outbox::store_schema).
    pub async fn store_schema_async<M: Outboxed>(
        &self,
        conn: &mut AsyncPgConnection,
    ) -> Result<bool> {
        let Some(row) = self.schema_row::<M>()? else {
            return Ok(false);
        };
        Ok(diesel_async::RunQueryDsl::execute(store_schema_query(&row), conn).await? == 1)
    }

    /// The schema row of `M`'s Avro messages; `None` for a JSON model.
    fn schema_row<M: Outboxed>(&self) -> Result<Option<SchemaRow>> {
        if M::FORMAT != outbox::Format::Avro {
            return Ok(None);
        }
        let version = M::VERSIONS.last().copied().unwrap_or(1);
        let schema = M::avro_schema(version)?;
        Ok(Some(SchemaRow::new(self.subjects, M::TOPIC, schema)))
    }

    /// A helper for realtime notifications published to `topic`.
    pub fn realtime(&self, topic: impl Into<String>) -> Realtime {
        Realtime::new(self.clone(), topic.into())
    }

    /// Enqueues `event` of `model` in the transaction open on `conn`; returns the
    /// message's id.
    ///
    /// # Errors
    ///
    /// [`Error::NotInTransaction`] when `conn` has no open transaction (nothing is
    /// written); [`Error::Message`] when a payload serializer fails;
    /// [`Error::Database`] when the insert fails.
    pub fn enqueue<M: Outboxed>(
        &self,
        conn: &mut PgConnection,
        model: &M,
        event: Event,
    ) -> Result<MessageId> {
        let row = self.model_row(model, &event)?;
        ensure_transaction(conn)?;
        let _span = enqueue_span(M::TOPIC, &event, std::slice::from_ref(&row)).entered();
        insert_rows(std::slice::from_ref(&row), &[row.as_new()]).execute(conn)?;
        Ok(row.id)
    }

    /// [`enqueue`](Outbox::enqueue) on a diesel-async connection.
    ///
    /// # Errors
    ///
    /// As for [`enqueue`](Outbox::enqueue).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # use outbox::{Event, Outboxed};
    /// # #[derive(Outboxed)] #[outbox(topic = "accounts", route = "users")] struct User { id: i64 }
    /// use diesel_async::{AsyncConnection, AsyncPgConnection};
    ///
    /// # async fn f(user: User) -> Result<(), Box<dyn std::error::Error>> {
    /// let mut conn = AsyncPgConnection::establish("postgres://localhost/app").await?;
    /// let outbox = outbox_diesel::Outbox::new("accounts");
    /// conn.transaction(async |conn| {
    ///     outbox.enqueue_async(conn, &user, Event::Updated).await?;
    ///     Ok::<_, outbox_diesel::Error>(())
    /// }).await?;
    /// # Ok(()) }
    /// ```
    pub async fn enqueue_async<M: Outboxed>(
        &self,
        conn: &mut AsyncPgConnection,
        model: &M,
        event: Event,
    ) -> Result<MessageId> {
        let row = self.model_row(model, &event)?;
        ensure_transaction_async(conn)?;
        let span = enqueue_span(M::TOPIC, &event, std::slice::from_ref(&row));
        let new = [row.as_new()];
        diesel_async::RunQueryDsl::execute(insert_rows(std::slice::from_ref(&row), &new), conn)
            .instrument(span)
            .await?;
        Ok(row.id)
    }

    /// Enqueues `event` of every model in `models`, in order, with one `INSERT`
    /// (per 10,000 messages); returns their ids in the same order.
    ///
    /// # Errors
    ///
    /// As for [`enqueue`](Outbox::enqueue); on error nothing is written.
    pub fn enqueue_all<'m, M: Outboxed + 'm>(
        &self,
        conn: &mut PgConnection,
        models: impl IntoIterator<Item = &'m M>,
        event: Event,
    ) -> Result<Vec<MessageId>> {
        let rows = self.model_rows(models, &event)?;
        ensure_transaction(conn)?;
        let _span = enqueue_span(M::TOPIC, &event, &rows).entered();
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let new: Vec<NewRow<'_>> = chunk.iter().map(Row::as_new).collect();
            insert_rows(chunk, &new).execute(conn)?;
        }
        Ok(rows.iter().map(|row| row.id).collect())
    }

    /// [`enqueue_all`](Outbox::enqueue_all) on a diesel-async connection.
    ///
    /// # Errors
    ///
    /// As for [`enqueue`](Outbox::enqueue).
    pub async fn enqueue_all_async<'m, M: Outboxed + 'm>(
        &self,
        conn: &mut AsyncPgConnection,
        models: impl IntoIterator<Item = &'m M>,
        event: Event,
    ) -> Result<Vec<MessageId>> {
        let rows = self.model_rows(models, &event)?;
        ensure_transaction_async(conn)?;
        let span = enqueue_span(M::TOPIC, &event, &rows);
        for chunk in rows.chunks(ROWS_PER_INSERT) {
            let new: Vec<NewRow<'_>> = chunk.iter().map(Row::as_new).collect();
            diesel_async::RunQueryDsl::execute(insert_rows(chunk, &new), conn)
                .instrument(span.clone())
                .await?;
        }
        Ok(rows.iter().map(|row| row.id).collect())
    }

    /// Enqueues a message built by hand (its own id, `from`, trace and payloads
    /// are kept as they are).
    ///
    /// # Errors
    ///
    /// [`Error::NotInTransaction`] or [`Error::Database`], as for [`enqueue`](Outbox::enqueue);
    /// [`Error::Message`] with [`outbox::Error::InvalidTopic`] when the message's
    /// topic breaks Kafka's rule (nothing is written: such a row could never be published).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use diesel::prelude::*;
    /// use outbox::{Event, Message, Payloads};
    ///
    /// let mut conn = PgConnection::establish("postgres://localhost/app")?;
    /// let message = Message::new(Event::custom("password_reset")?, "accounts", "users", "accounts", "42",
    ///     Payloads::new(1, serde_json::json!({"id": 42}))?)?;
    /// conn.transaction(|conn| outbox_diesel::Outbox::new("accounts").enqueue_message(conn, &message))?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn enqueue_message(&self, conn: &mut PgConnection, message: &Message) -> Result<MessageId> {
        // Its fields are public: the topic may have changed since `Message::new`.
        Message::check_topic(&message.topic)?;
        ensure_transaction(conn)?;
        let row = Row::from_message(message);
        let _span =
            enqueue_span(&message.topic, &message.event, std::slice::from_ref(&row)).entered();
        insert_rows(std::slice::from_ref(&row), &[row.as_new()]).execute(conn)?;
        Ok(row.id)
    }

    /// [`enqueue_message`](Outbox::enqueue_message) on a diesel-async connection.
    ///
    /// # Errors
    ///
    /// As for [`enqueue_message`](Outbox::enqueue_message).
    pub async fn enqueue_message_async(
        &self,
        conn: &mut AsyncPgConnection,
        message: &Message,
    ) -> Result<MessageId> {
        Message::check_topic(&message.topic)?;
        ensure_transaction_async(conn)?;
        let row = Row::from_message(message);
        let span = enqueue_span(&message.topic, &message.event, std::slice::from_ref(&row));
        let new = [row.as_new()];
        diesel_async::RunQueryDsl::execute(insert_rows(std::slice::from_ref(&row), &new), conn)
            .instrument(span)
            .await?;
        Ok(row.id)
    }

    pub(super) fn model_rows<'m, M: Outboxed + 'm>(
        &self,
        models: impl IntoIterator<Item = &'m M>,
        event: &Event,
    ) -> Result<Vec<Row>> {
        models
            .into_iter()
            .map(|model| self.model_row(model, event))
            .collect()
    }

    pub(super) fn model_row<M: Outboxed>(&self, model: &M, event: &Event) -> Result<Row> {
        let id = MessageId::new();
        let encoded = Message::encode_model(
            model,
            event,
            &self.producer,
            id,
            Utc::now(),
            self.trace.as_ref(),
        )?;
        Ok(Row::new(id, M::TOPIC.to_owned(), encoded, self.subjects))
    }
}

/// A message as stored: what the relay sends.
pub(super) struct Row {
    pub(super) id: MessageId,
    pub(super) topic: String,
    pub(super) partition_key: String,
    /// Name, value, name, value, …
    pub(super) headers: Vec<String>,
    pub(super) payload: Vec<u8>,
    /// An Avro value's schema, for the relay to register.
    pub(super) schema: Option<SchemaRow>,
}

#[derive(Insertable)]
#[diesel(table_name = outbox_messages)]
pub(super) struct NewRow<'a> {
    message_id: uuid::Uuid,
    topic: &'a str,
    partition_key: &'a str,
    headers: &'a [String],
    payload: &'a [u8],
    value_schema: Option<i64>,
}

impl Row {
    fn new(
        id: MessageId,
        topic: String,
        encoded: EncodedMessage,
        subjects: SubjectStrategy,
    ) -> Self {
        let schema = encoded
            .avro_schema
            .map(|schema| SchemaRow::new(subjects, &topic, schema));
        let mut headers = Vec::with_capacity(encoded.headers.len() * 2);
        for (name, value) in encoded.headers {
            headers.push(name.to_owned());
            headers.push(value);
        }
        // The key is the partition key's UTF-8 bytes, so this never loses anything.
        let partition_key = String::from_utf8(encoded.key)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        Row {
            id,
            topic,
            partition_key,
            headers,
            payload: encoded.value,
            schema,
        }
    }

    /// A hand-built message: an Avro one carries its schema id already.
    pub(super) fn from_message(message: &Message) -> Self {
        let topic = message.topic.clone();
        Row::new(
            message.id,
            topic,
            message.encode(),
            SubjectStrategy::TopicName,
        )
    }

    pub(super) fn as_new(&self) -> NewRow<'_> {
        NewRow {
            message_id: self.id.as_uuid(),
            topic: &self.topic,
            partition_key: &self.partition_key,
            headers: &self.headers,
            payload: &self.payload,
            value_schema: self.schema.as_ref().map(|schema| schema.key),
        }
    }
}

/// `row` into `outbox_schemas`, unless it is there.
fn store_schema_query(
    row: &SchemaRow,
) -> diesel::query_builder::BoxedSqlQuery<'_, diesel::pg::Pg, diesel::query_builder::SqlQuery> {
    use diesel::sql_types::{BigInt, Text};
    diesel::sql_query(
        "INSERT INTO outbox_schemas (schema_key, subject, schema) VALUES ($1, $2, $3) \
         ON CONFLICT DO NOTHING",
    )
    .into_boxed()
    .bind::<BigInt, _>(row.key)
    .bind::<Text, _>(&row.subject)
    .bind::<Text, _>(row.schema)
}

type InsertMessages<'a> = diesel::query_builder::InsertStatement<
    outbox_messages::table,
    <&'a [NewRow<'a>] as Insertable<outbox_messages::table>>::Values,
>;

/// One statement writing `new` (made from `rows`) and the schemas of their
/// Avro values.
pub(super) fn insert_rows<'a>(
    rows: &'a [Row],
    new: &'a [NewRow<'a>],
) -> WithSchemas<'a, InsertMessages<'a>> {
    WithSchemas {
        schemas: distinct(rows.iter().filter_map(|row| row.schema.as_ref())),
        insert: diesel::insert_into(outbox_messages::table).values(new),
    }
}

/// The `outbox.enqueue` span: topic, event, count, and the message ids at debug level.
fn enqueue_span(topic: &str, event: &Event, rows: &[Row]) -> tracing::Span {
    tracing::debug_span!("outbox.enqueue", topic, event = %event, count = rows.len(), ids = ?Ids(rows))
}

/// The message ids of rows, formatted only when a subscriber records them.
pub(super) struct Ids<'a>(pub(super) &'a [Row]);

impl std::fmt::Debug for Ids<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|row| row.id))
            .finish()
    }
}

fn ensure_transaction(conn: &mut PgConnection) -> Result<()> {
    let depth = AnsiTransactionManager::transaction_manager_status_mut(conn).transaction_depth()?;
    depth.map(drop).ok_or(Error::NotInTransaction)
}

fn ensure_transaction_async(conn: &mut AsyncPgConnection) -> Result<()> {
    use diesel_async::TransactionManager as _;
    let depth = diesel_async::AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()?;
    depth.map(drop).ok_or(Error::NotInTransaction)
}

/// Follow-ups of a consumer's controllers (`Context::enqueue`) go through here.
impl outbox::FollowUps for Outbox {
    fn producer(&self) -> &str {
        &self.producer
    }

    fn insert<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        id: MessageId,
        topic: &'a str,
        encoded: EncodedMessage,
    ) -> outbox::BoxFuture<'a, Result<(), Box<dyn std::error::Error + Send + Sync + 'static>>> {
        Box::pin(async move {
            ensure_transaction_async(conn)?;
            let row = Row::new(id, topic.to_owned(), encoded, self.subjects);
            let span = tracing::debug_span!("outbox.enqueue", topic, count = 1, ids = ?Ids(std::slice::from_ref(&row)));
            let new = [row.as_new()];
            diesel_async::RunQueryDsl::execute(insert_rows(std::slice::from_ref(&row), &new), conn)
                .instrument(span)
                .await?;
            Ok(())
        })
    }
}
