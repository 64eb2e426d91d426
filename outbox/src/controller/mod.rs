//! The consuming half's seam: a [`Controller`] handles the messages of one
//! route inside the transaction the consumer opened for them.
//!
//! `#[message_controller]` writes the [`Controller`] impl from an impl block's
//! hooks; a controller can also be written by hand (see the trait's example).
//! The consumer that feeds controllers (Kafka, inbox, failure policies) lives in
//! `outbox-diesel`.

mod context;
mod error;

use std::future::Future;
use std::pin::Pin;

pub use context::{Context, FollowUps, VersionOutcome};
pub use error::{HandlerError, HandlerErrorKind};

use crate::{Event, Message};

/// Why [`Controller::handle_group`] did not apply a group.
///
/// # Examples
///
/// ```
/// use outbox::{GroupError, HandlerError};
///
/// let error = GroupError::At { index: 2, error: HandlerError::permanent("no `id`") };
/// assert!(matches!(error, GroupError::At { index: 2, .. }));
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum GroupError {
    /// Message `index` of the group failed before any statement ran (its
    /// payload): the consumer gives it alone to its failure policy.
    At {
        /// The message's position in the group.
        index: usize,
        /// Its error, as [`Controller::handle`] would have returned it.
        error: HandlerError,
    },
    /// A statement of the group failed: no single message can be blamed, so
    /// the consumer applies the group again one message at a time.
    Group(HandlerError),
    /// The database refused a statement of the group (a constraint, a lost
    /// connection): classified like the consumer's own statements, then
    /// handled as [`GroupError::Group`] unless the database is gone.
    Database(diesel::result::Error),
}

/// What `?` on a Diesel call gives inside a `handle_group`.
impl From<diesel::result::Error> for GroupError {
    fn from(error: diesel::result::Error) -> Self {
        GroupError::Database(error)
    }
}

impl std::error::Error for GroupError {}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupError::At { index, error } => write!(f, "message {index} of the group: {error}"),
            GroupError::Group(error) => write!(f, "the group failed: {error}"),
            GroupError::Database(error) => write!(f, "the group's statement failed: {error}"),
        }
    }
}

/// A boxed, `Send` future: what [`Controller::handle`] returns, so controllers
/// of different types sit side by side in one consumer.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Handles the messages of one route (header `to`), one at a time, inside the
/// consumer's transaction.
///
/// The consumer calls [`handle`](Controller::handle) only for events
/// [`handles`](Controller::handles) accepts; for any other event it
/// acknowledges the record and counts it as ignored, or, when
/// [`strict`](Controller::strict) is true, applies its failure policy.
///
/// `#[message_controller]` implements this trait; by hand it looks like this:
///
/// ```
/// use outbox::{BoxFuture, Context, Controller, Event, HandlerError, Message};
///
/// /// Counts password resets per user in a table of its own.
/// struct Resets;
///
/// impl Controller for Resets {
///     fn route(&self) -> &str {
///         "users"
///     }
///
///     fn topics(&self) -> &[&str] {
///         &["accounts"]
///     }
///
///     fn handles(&self, event: &Event) -> bool {
///         event.as_str() == "password_reset"
///     }
///
///     fn handle<'a>(
///         &'a self,
///         ctx: &'a mut Context<'_>,
///         message: &'a Message,
///     ) -> BoxFuture<'a, Result<(), HandlerError>> {
///         Box::pin(async move {
///             let (_version, payload) = message.payload_for(&[1]).map_err(HandlerError::permanent)?;
///             let user_id = payload["id"].as_i64().ok_or_else(|| HandlerError::permanent("no id"))?;
///             diesel_async::RunQueryDsl::execute(
///                 diesel::sql_query("INSERT INTO resets (user_id, n) VALUES ($1, 1) \
///                                    ON CONFLICT (user_id) DO UPDATE SET n = resets.n + 1")
///                     .bind::<diesel::sql_types::BigInt, _>(user_id),
///                 ctx.conn(),
///             )
///             .await?;
///             Ok(())
///         })
///     }
/// }
/// ```
pub trait Controller: Send + Sync + 'static {
    /// The route served: messages whose `to` header equals it come here.
    fn route(&self) -> &str;

    /// The topics those messages arrive on; the consumer subscribes to them.
    fn topics(&self) -> &[&str];

    /// Whether `event` has handling here.
    fn handles(&self, event: &Event) -> bool;

    /// When true, an event without handling is a failure (the failure policy
    /// applies) instead of being acknowledged and counted as ignored.
    fn strict(&self) -> bool {
        false
    }

    /// Applies `message` through `ctx` (its connection is inside the
    /// consumer's transaction: an error rolls everything back).
    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context<'_>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>>;

    /// Whether consecutive `event` messages may be applied together through
    /// [`handle_group`](Controller::handle_group) (the batched consumer then
    /// writes them in one statement). Default: no.
    ///
    /// `#[message_controller]` says yes for created and updated when they
    /// are handled by its built-in upsert without hooks.
    fn groups(&self, event: &Event) -> bool {
        let _ = event;
        false
    }

    /// Applies `messages` (each one an event [`groups`](Controller::groups)
    /// accepts, in offset order, at least two) on `conn`, inside the
    /// consumer's transaction, with the same result as [`handle`](Controller::handle)
    /// called for each in turn. Never called while `groups` is false; the
    /// default refuses, so the consumer applies the messages one at a time.
    ///
    /// # Errors
    ///
    /// [`GroupError::At`] names a message that cannot be applied whatever the
    /// others do (its payload); [`GroupError::Group`] and
    /// [`GroupError::Database`] make the consumer apply the group again one
    /// message at a time, through `handle`, to find the failing one.
    fn handle_group<'a>(
        &'a self,
        conn: &'a mut diesel_async::AsyncPgConnection,
        messages: &'a [&'a Message],
    ) -> BoxFuture<'a, Result<(), GroupError>> {
        let _ = (conn, messages);
        Box::pin(async {
            Err(GroupError::Group(HandlerError::permanent(
                "this controller does not apply messages in groups",
            )))
        })
    }
}
