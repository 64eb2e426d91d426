//! One record's transaction: claim it in the inbox, run its controller, commit.

use std::error::Error as StdError;

use std::any::Any;
use std::panic::AssertUnwindSafe;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use futures::FutureExt as _;
use outbox::{Context, Controller, HandlerError, HandlerErrorKind, Message};

use super::inbox::{self, Received};
use crate::Outbox;
use crate::fault_injection::HandlerFault;

/// How an apply ended.
#[derive(Debug)]
pub(crate) enum Applied {
    /// The controller ran and the transaction committed.
    Processed,
    /// The inbox already had the message: nothing ran.
    Duplicate,
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
/// transaction on `conn`, with the `fault` injected before the controller runs.
pub(crate) async fn apply(
    conn: &mut AsyncPgConnection,
    controller: &dyn Controller,
    follow_ups: &Outbox,
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
    let result = conn
        .transaction::<_, ApplyError, _>(async |conn| {
            if !inbox::claim(conn, &received).await? {
                return Ok(Applied::Duplicate);
            }
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
            Ok(Applied::Processed)
        })
        .await;
    result.or_else(refused_or)
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
