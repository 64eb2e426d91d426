//! One record's transaction: claim it in the inbox, run its controller, commit.

use std::error::Error as StdError;

use std::any::Any;
use std::panic::AssertUnwindSafe;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::FutureExt as _;
use outbox::{
    Context, Controller, FollowUps, HandlerError, HandlerErrorKind, Message, VersionOutcome,
};

use super::inbox::{self, Received};
use super::positions::{self, Position};
use crate::Outbox;
use crate::fault_injection::HandlerFault;

/// How an apply makes sure a record takes effect once.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Claim<'a> {
    /// A row per message in `outbox_inbox`: a message seen before is skipped.
    Inbox,
    /// The projection's position in the partition, moved from `expected` past
    /// the records applied; one that moved meanwhile applies nothing.
    Position {
        projection: &'a str,
        expected: Option<i64>,
        /// Whether follow-ups are sent while a rebuild re-applies records.
        follow_ups_in_rebuild: bool,
    },
}

/// Follow-ups of a record a rebuild re-applies: they were sent the first
/// time, so they are dropped (counted) rather than sent again.
pub(crate) struct Muted<'a>(pub(crate) &'a Outbox);

impl FollowUps for Muted<'_> {
    fn producer(&self) -> &str {
        FollowUps::producer(self.0)
    }

    fn insert<'a>(
        &'a self,
        _conn: &'a mut AsyncPgConnection,
        _id: outbox::MessageId,
        _topic: &'a str,
        _encoded: outbox::EncodedMessage,
    ) -> outbox::BoxFuture<'a, Result<(), Box<dyn StdError + Send + Sync + 'static>>> {
        metrics::counter!("outbox_consumer_follow_ups_muted_total").increment(1);
        Box::pin(async { Ok(()) })
    }
}

/// The follow-ups of the records of a claim: muted while a rebuild
/// re-applies them, unless the projection asks for them.
pub(crate) fn follow_ups_for<'a>(
    claim: Claim<'_>,
    position: Option<Position>,
    offset: i64,
    outbox: &'a Outbox,
    muted: &'a Muted<'a>,
) -> &'a dyn FollowUps {
    match (claim, position) {
        (
            Claim::Position {
                follow_ups_in_rebuild: false,
                ..
            },
            Some(position),
        ) if position.replaying(offset) => muted,
        _ => outbox,
    }
}

/// How an apply ended.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The controller ran and the transaction committed, its version guard
    /// (if any) reporting what it found.
    Processed(Option<VersionOutcome>),
    /// The inbox already had the message: nothing ran.
    Duplicate,
    /// The projection's position moved meanwhile (another process, a
    /// rebuild): nothing ran; read it again.
    Moved,
    /// A hook refused it: rolled back, acknowledged.
    Refused(String),
}

/// Why an apply did not commit.
#[derive(Debug)]
pub(crate) enum ApplyError {
    /// The database, not the record: retried for as long as it takes.
    Infrastructure(Box<dyn StdError + Send + Sync>),
    /// The controller's error.
    Handler(HandlerError),
    /// The controller panicked: rolled back, and the connection is not to be
    /// reused (the panic may have left it mid-query).
    Panicked(String),
}

// The transaction's error type (its own statements: BEGIN, the inbox claim,
// COMMIT). A lost connection is the infrastructure's fault and waits for it; any
// other refusal (a serialization failure, a constraint checked at COMMIT, a
// value PostgreSQL rejects) is the record's, retried and then given to the
// failure policy.
impl From<diesel::result::Error> for ApplyError {
    fn from(error: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match error {
            Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            )
            | Error::BrokenTransactionManager => ApplyError::Infrastructure(Box::new(error)),
            other => ApplyError::Handler(HandlerError::retriable(other)),
        }
    }
}

pub(crate) fn panic_text(panic: &(dyn Any + Send)) -> String {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("a non-text payload");
    format!("the handler panicked: {text}")
}

/// Applies `message` (read at `partition`/`offset`) through `controller` in one
/// transaction on `conn`, claimed as `claim` says, with the `fault` injected
/// before the controller runs.
#[allow(clippy::too_many_arguments)] // one record's whole apply, each named
pub(crate) async fn apply(
    conn: &mut AsyncPgConnection,
    controller: &dyn Controller,
    follow_ups: &Outbox,
    claim: Claim<'_>,
    message: &Message,
    partition: i32,
    offset: i64,
    fault: HandlerFault<'_>,
) -> Result<Applied, ApplyError> {
    let received = Received {
        source: &message.from,
        message_id: message.id.into(),
        topic: &message.topic,
        partition,
        offset,
    };
    let muted = Muted(follow_ups);
    let result = conn
        .transaction::<_, ApplyError, _>(async |conn| {
            let position = match claim {
                Claim::Inbox => {
                    if !inbox::claim(conn, &received).await? {
                        return Ok(Applied::Duplicate);
                    }
                    None
                }
                Claim::Position {
                    projection,
                    expected,
                    ..
                } => {
                    let moved = positions::advance(
                        conn,
                        projection,
                        &message.topic,
                        partition,
                        expected,
                        offset + 1,
                    )
                    .await?;
                    match moved {
                        Some(position) => Some(position),
                        None => return Ok(Applied::Moved),
                    }
                }
            };
            let follow_ups = follow_ups_for(claim, position, offset, follow_ups, &muted);
            // Inside the transaction, before the handler: an injected failure
            // rolls the claim back like a real one.
            fault.inject().await.map_err(ApplyError::Handler)?;
            let mut ctx = Context::new(conn, message, partition, offset, follow_ups);
            // A panic is the record's failure like any other: caught, it rolls
            // back and meets the failure policy instead of ending the task.
            match AssertUnwindSafe(controller.handle(&mut ctx, message))
                .catch_unwind()
                .await
            {
                Ok(handled) => handled.map_err(ApplyError::Handler)?,
                Err(panic) => return Err(ApplyError::Panicked(panic_text(&*panic))),
            }
            Ok(Applied::Processed(ctx.version_outcome()))
        })
        .await;
    result.or_else(refused_or)
}

/// Counts a record the controller handled: stale (nothing written), or
/// processed (and a gap accepted, if so).
pub(crate) fn count_handled(
    counters: &super::report::Counters,
    topic: &str,
    outcome: Option<VersionOutcome>,
) {
    use super::report::Outcome;
    match outcome {
        Some(VersionOutcome::Stale { .. }) => counters.count(Outcome::Stale, topic),
        Some(VersionOutcome::Gap { .. }) => {
            counters.count(Outcome::Processed, topic);
            counters.count(Outcome::Gap, topic);
        }
        _ => counters.count(Outcome::Processed, topic),
    }
}

/// A failed attempt as an outcome: a refusal is acknowledged, not a failure.
pub(crate) fn refused_or(error: ApplyError) -> Result<Applied, ApplyError> {
    match error {
        ApplyError::Handler(error) if error.kind() == HandlerErrorKind::Refused => {
            Ok(Applied::Refused(error.chain()))
        }
        other => Err(other),
    }
}
