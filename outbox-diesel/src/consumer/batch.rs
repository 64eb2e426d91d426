//! Several records of one partition in one transaction: their inbox rows
//! claimed in one statement, then each record's controller in offset order,
//! one commit. A record that fails rolls the whole transaction back and is
//! named, so the caller can apply the records before it and give it alone to
//! the one-record path (retries and failure policy).

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use diesel::prelude::*;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::FutureExt as _;
use outbox::{Context, Controller, Message};

use super::apply::{ApplyError, panic_text};
use crate::Outbox;
use crate::fault_injection::HandlerFault;
use crate::schema::outbox_inbox;

/// A decoded record ready to be applied.
pub(crate) struct Entry<'a> {
    pub(crate) controller: Arc<dyn Controller>,
    pub(crate) message: Message,
    pub(crate) offset: i64,
    pub(crate) fault: HandlerFault<'a>,
}

/// Why a batch did not commit.
#[derive(Debug)]
pub(crate) enum BatchError {
    /// The database, not a record: retry the batch once it is back.
    Infrastructure(Box<dyn std::error::Error + Send + Sync>),
    /// Record `index` failed (`error`: its controller's error, a refusal or
    /// a panic): nothing committed. The records before it may be applied
    /// again as a batch; this was the record's first attempt.
    At { index: usize, error: ApplyError },
    /// The transaction failed where no record can be blamed (the inbox
    /// statement, the commit): nothing committed.
    Unattributed(String),
}

/// What a committed batch did with each record, in order: `true` applied,
/// `false` already in the inbox.
pub(crate) type Claimed = Vec<bool>;

/// Why the batch's transaction rolled back.
enum Abort {
    /// A statement of the batch's own (the inbox claim, BEGIN, COMMIT).
    Database(ApplyError),
    /// A record failed: see the `failed` slot of [`apply_batch`].
    Record,
}

impl From<diesel::result::Error> for Abort {
    fn from(error: diesel::result::Error) -> Self {
        Abort::Database(error.into())
    }
}

/// Applies `entries` (records of `topic`/`partition`, in offset order) in one
/// transaction on `conn`.
pub(crate) async fn apply_batch(
    conn: &mut AsyncPgConnection,
    follow_ups: &Outbox,
    topic: &str,
    partition: i32,
    entries: &mut [Entry<'_>],
) -> Result<Claimed, BatchError> {
    // Set by the record that failed: whatever the rollback then says (after a
    // panic it may fail too), the record is named.
    let mut failed: Option<(usize, ApplyError)> = None;
    let result = conn
        .transaction::<_, Abort, _>(async |conn| {
            let claimed = claim_all(conn, topic, partition, entries).await?;
            for (index, entry) in entries.iter_mut().enumerate() {
                if !claimed[index] {
                    continue;
                }
                // Drawn once: applying the records before a failed one again
                // does not inject their faults twice.
                let fault = std::mem::replace(&mut entry.fault, HandlerFault::NONE);
                if let Err(error) = fault.inject().await {
                    failed = Some((index, ApplyError::Handler(error)));
                    return Err(Abort::Record);
                }
                let mut ctx =
                    Context::new(conn, &entry.message, partition, entry.offset, follow_ups);
                let handled = AssertUnwindSafe(entry.controller.handle(&mut ctx, &entry.message))
                    .catch_unwind()
                    .await;
                let error = match handled {
                    Ok(Ok(())) => continue,
                    Ok(Err(error)) => ApplyError::Handler(error),
                    Err(panic) => ApplyError::Panicked(panic_text(&*panic)),
                };
                failed = Some((index, error));
                return Err(Abort::Record);
            }
            Ok(claimed)
        })
        .await;
    match (result, failed) {
        (Ok(claimed), _) => Ok(claimed),
        (Err(_), Some((index, error))) => Err(BatchError::At { index, error }),
        (Err(Abort::Database(ApplyError::Infrastructure(error))), None) => {
            Err(BatchError::Infrastructure(error))
        }
        (Err(Abort::Database(ApplyError::Handler(error))), None) => {
            Err(BatchError::Unattributed(error.chain()))
        }
        (Err(Abort::Database(ApplyError::Panicked(text))), None) => {
            Err(BatchError::Unattributed(text))
        }
        (Err(Abort::Record), None) => Err(BatchError::Unattributed(
            "a record failed without being named".to_owned(),
        )),
    }
}

/// Inserts every entry's inbox row in one statement; for each entry, whether
/// its row is new. A message twice in the batch (a re-sent record) is claimed
/// by its first offset only.
async fn claim_all(
    conn: &mut AsyncPgConnection,
    topic: &str,
    partition: i32,
    entries: &[Entry<'_>],
) -> QueryResult<Claimed> {
    let rows: Vec<_> = entries
        .iter()
        .map(|entry| {
            (
                outbox_inbox::source.eq(entry.message.from.as_str()),
                outbox_inbox::message_id.eq(uuid::Uuid::from(entry.message.id)),
                outbox_inbox::topic.eq(topic),
                outbox_inbox::kafka_partition.eq(partition),
                outbox_inbox::kafka_offset.eq(entry.offset),
            )
        })
        .collect();
    let inserted: HashSet<i64> = diesel::insert_into(outbox_inbox::table)
        .values(rows)
        .on_conflict_do_nothing()
        .returning(outbox_inbox::kafka_offset)
        .get_results::<i64>(conn)
        .await?
        .into_iter()
        .collect();
    Ok(entries
        .iter()
        .map(|entry| inserted.contains(&entry.offset))
        .collect())
}
