//! What a handler gets: the transaction's connection, the message's metadata,
//! and an outbox for follow-up messages.

use std::error::Error as StdError;

use chrono::{DateTime, Utc};
use diesel_async::AsyncPgConnection;

use super::{BoxFuture, HandlerError};
use crate::{EncodedMessage, Event, Message, MessageId, Outboxed, TraceContext};

/// Writes follow-up messages into the consuming service's own outbox, on the
/// connection of the apply transaction. `outbox_diesel::Outbox` implements it;
/// the consumer hands one to every [`Context`].
pub trait FollowUps: Send + Sync {
    /// The producer name follow-ups are sent `from`.
    fn producer(&self) -> &str;

    /// Inserts one encoded message (id `id`, topic `topic`) on `conn`.
    fn insert<'a>(
        &'a self,
        conn: &'a mut AsyncPgConnection,
        id: MessageId,
        topic: &'a str,
        encoded: EncodedMessage,
    ) -> BoxFuture<'a, Result<(), Box<dyn StdError + Send + Sync + 'static>>>;
}

/// The handling of one record: the connection inside the consumer's
/// transaction, where the record came from, and an outbox whose messages
/// commit (or roll back) with the apply.
///
/// # Examples
///
/// ```
/// use outbox::{Context, HandlerError};
///
/// async fn audit(ctx: &mut Context<'_>) -> Result<(), HandlerError> {
///     let line = format!("{} {} from {} at {}/{}@{}", ctx.message_id(), ctx.event(), ctx.from(),
///                        ctx.topic(), ctx.partition(), ctx.offset());
///     diesel_async::RunQueryDsl::execute(
///         diesel::sql_query("INSERT INTO audit (line) VALUES ($1)")
///             .bind::<diesel::sql_types::Text, _>(line),
///         ctx.conn(),
///     )
///     .await?;
///     Ok(())
/// }
/// ```
pub struct Context<'c> {
    conn: &'c mut AsyncPgConnection,
    message: &'c Message,
    partition: i32,
    offset: i64,
    follow_ups: &'c dyn FollowUps,
    version_outcome: Option<VersionOutcome>,
}

/// What the per-key version guard of a `#[message_controller]` found, when
/// it was not the plain case (a message one version past its row's, or a
/// row not there yet): recorded on the [`Context`] for the consumer, which
/// reads it after the handler returns and counts it.
///
/// A model's version field is `#[outbox(version)]`; the guard is described
/// under "Per-key versions" in the docs of
/// [`message_controller`](macro@crate::message_controller). A hand-written
/// controller with a guard of its own records its outcomes the same way,
/// with [`Context::set_version_outcome`].
///
/// # Examples
///
/// ```
/// use outbox::VersionOutcome;
///
/// fn describe(outcome: Option<VersionOutcome>) -> String {
///     match outcome {
///         None => "applied in sequence".to_owned(),
///         Some(VersionOutcome::Stale { stored, received }) => {
///             format!("version {received} skipped: the row is at {stored}")
///         }
///         Some(VersionOutcome::Gap { stored, received }) => {
///             format!("version {received} applied over {stored}, a gap accepted")
///         }
///         Some(other) => format!("{other:?}"),
///     }
/// }
///
/// let stale = VersionOutcome::Stale { stored: 3, received: 2 };
/// assert_eq!(describe(Some(stale)), "version 2 skipped: the row is at 3");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VersionOutcome {
    /// The message is not newer than the row (`received <= stored`: a
    /// replay, a duplicate under another message id, an older message
    /// arriving late): nothing was written, no hook ran, and the record is
    /// acknowledged.
    Stale {
        /// The row's version.
        stored: i64,
        /// The message's.
        received: i64,
    },
    /// The message is more than one version past the row's
    /// (`received > stored + 1`) and was applied anyway, as the controller's
    /// `gap = "accept"` says: the versions between were never applied.
    Gap {
        /// The row's version before the message.
        stored: i64,
        /// The message's, now the row's.
        received: i64,
    },
}

impl<'c> Context<'c> {
    /// A context for `message`, read at `partition`/`offset`, applied on `conn`
    /// (which should be inside a transaction). The consumer builds these; tests
    /// of a controller can too.
    pub fn new(
        conn: &'c mut AsyncPgConnection,
        message: &'c Message,
        partition: i32,
        offset: i64,
        follow_ups: &'c dyn FollowUps,
    ) -> Self {
        Context {
            conn,
            message,
            partition,
            offset,
            follow_ups,
            version_outcome: None,
        }
    }

    /// The connection, inside the apply transaction.
    pub fn conn(&mut self) -> &mut AsyncPgConnection {
        self.conn
    }

    /// The message being applied.
    pub fn message(&self) -> &Message {
        self.message
    }

    /// Its id.
    pub fn message_id(&self) -> MessageId {
        self.message.id
    }

    /// Its event.
    pub fn event(&self) -> &Event {
        &self.message.event
    }

    /// The service that sent it (header `from`).
    pub fn from(&self) -> &str {
        &self.message.from
    }

    /// The topic it was read from.
    pub fn topic(&self) -> &str {
        &self.message.topic
    }

    /// The partition it was read from.
    pub fn partition(&self) -> i32 {
        self.partition
    }

    /// Its offset in that partition.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// When the producer says it happened.
    pub fn occurred_at(&self) -> DateTime<Utc> {
        self.message.occurred_at
    }

    /// The trace it carries, if any; follow-ups carry it on.
    pub fn trace(&self) -> Option<&TraceContext> {
        self.message.trace.as_ref()
    }

    /// Records what the version guard found for this message (the last
    /// call wins). `#[message_controller]` calls it; a hand-written
    /// controller comparing versions of its own may too. It changes nothing
    /// in the transaction: the consumer reads it after the handler returns.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Context, HandlerError, VersionOutcome};
    ///
    /// /// Skips a change older than what the row holds.
    /// fn skip_stale(ctx: &mut Context<'_>, stored: i64, received: i64) -> Result<bool, HandlerError> {
    ///     if received <= stored {
    ///         ctx.set_version_outcome(VersionOutcome::Stale { stored, received });
    ///         return Ok(false);
    ///     }
    ///     Ok(true)
    /// }
    /// ```
    pub fn set_version_outcome(&mut self, outcome: VersionOutcome) {
        self.version_outcome = Some(outcome);
    }

    /// What the version guard found for this message, if it recorded
    /// anything (see [`VersionOutcome`]); `None` for a message applied in
    /// sequence, or handled without a guard.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::{Context, VersionOutcome};
    ///
    /// /// What a consumer does once the handler returned.
    /// fn count(ctx: &Context<'_>, stale: &mut u64, gaps: &mut u64) {
    ///     match ctx.version_outcome() {
    ///         Some(VersionOutcome::Stale { .. }) => *stale += 1,
    ///         Some(VersionOutcome::Gap { .. }) => *gaps += 1,
    ///         _ => {}
    ///     }
    /// }
    /// ```
    pub fn version_outcome(&self) -> Option<VersionOutcome> {
        self.version_outcome
    }

    /// Enqueues `event` of `model` in this service's outbox, in the apply
    /// transaction: it is sent only if the apply commits. It carries this
    /// message's trace.
    ///
    /// # Errors
    ///
    /// A serializer failure (permanent) or a database error (retriable).
    pub async fn enqueue<M: Outboxed>(
        &mut self,
        model: &M,
        event: Event,
    ) -> Result<MessageId, HandlerError> {
        let id = MessageId::new();
        let encoded = Message::encode_model(
            model,
            &event,
            self.follow_ups.producer(),
            id,
            Utc::now(),
            self.message.trace.as_ref(),
        )
        .map_err(HandlerError::permanent)?;
        self.follow_ups
            .insert(self.conn, id, M::TOPIC, encoded)
            .await
            .map_err(HandlerError::retriable)?;
        Ok(id)
    }

    /// Enqueues a message built by hand, as it is (its own id, `from`, trace).
    ///
    /// # Errors
    ///
    /// A database error (retriable).
    pub async fn enqueue_message(&mut self, message: &Message) -> Result<MessageId, HandlerError> {
        self.follow_ups
            .insert(self.conn, message.id, &message.topic, message.encode())
            .await
            .map_err(HandlerError::retriable)?;
        Ok(message.id)
    }
}
