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

pub use context::{Context, FollowUps};
pub use error::{HandlerError, HandlerErrorKind};

use crate::{Event, Message};

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
}
