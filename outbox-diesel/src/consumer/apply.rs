//! One record's transaction: claim it in the inbox, run its controller, commit.

use std::error::Error as StdError;

use diesel_async::{AsyncConnection, AsyncPgConnection};
use outbox::{Context, Controller, HandlerError, HandlerErrorKind, Message};

use super::inbox::{self, Received};
use crate::Outbox;

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
}

// The transaction's error type: diesel's own errors are infrastructure.
impl From<diesel::result::Error> for ApplyError {
    fn from(error: diesel::result::Error) -> Self {
        ApplyError::Infrastructure(Box::new(error))
    }
}

/// Applies `message` (read at `partition`/`offset`) through `controller` in one
/// transaction on `conn`.
pub(crate) async fn apply(
    conn: &mut AsyncPgConnection,
    controller: &dyn Controller,
    follow_ups: &Outbox,
    message: &Message,
    partition: i32,
    offset: i64,
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
            let mut ctx = Context::new(conn, message, partition, offset, follow_ups);
            controller
                .handle(&mut ctx, message)
                .await
                .map_err(ApplyError::Handler)?;
            Ok(Applied::Processed)
        })
        .await;
    match result {
        Err(ApplyError::Handler(error)) if error.kind() == HandlerErrorKind::Refused => {
            Ok(Applied::Refused(error.chain()))
        }
        other => other,
    }
}
