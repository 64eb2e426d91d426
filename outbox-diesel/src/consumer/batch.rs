//! Several records of one partition in one transaction: their inbox rows
//! claimed in one statement, then each record's controller in offset order,
//! one commit. Consecutive records of one controller whose events it
//! [`groups`](Controller::groups) go to its
//! [`handle_group`](Controller::handle_group) together (one statement for
//! the lot). A record that fails rolls the whole transaction back and is
//! named, so the caller can apply the records before it and give it alone to
//! the one-record path (retries and failure policy); a group that fails
//! names no record, so the caller applies the batch again without groups.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::{Array, BigInt, Integer, Text};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use futures::FutureExt as _;
use outbox::{Context, Controller, GroupError, Message, VersionOutcome};

use super::apply::{ApplyError, Claim, Muted, follow_ups_for, panic_text};
use super::positions;
use crate::Outbox;
use crate::fault_injection::HandlerFault;

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
    /// A group's statement failed (`error`; a panic is
    /// [`ApplyError::Panicked`]): nothing committed, no record named. Apply
    /// the batch again without groups to find the record.
    Group { error: ApplyError },
    /// The projection's position moved meanwhile: nothing applied; read it again.
    Moved,
}

/// Whether each record of a batch is new (`false`: already in the inbox).
pub(crate) type Claimed = Vec<bool>;

/// What a committed batch did with each record, in order: `None` already in
/// the inbox, else applied, with what its version guard reported.
pub(crate) type Handled = Vec<Option<Option<VersionOutcome>>>;

/// Why the batch's transaction rolled back.
enum Abort {
    /// A statement of the batch's own (the inbox claim, BEGIN, COMMIT).
    Database(ApplyError),
    /// A record failed: see the `failed` slot of [`apply_batch`].
    Record,
    /// The projection's position was not where the batch expected it.
    Moved,
}

impl From<diesel::result::Error> for Abort {
    fn from(error: diesel::result::Error) -> Self {
        Abort::Database(error.into())
    }
}

/// Applies `entries` (records of `topic`/`partition`, in offset order) in one
/// transaction on `conn`; with `grouping`, consecutive records a controller
/// [`groups`](Controller::groups) go to it together.
#[allow(clippy::too_many_arguments)] // one batch's whole apply, each named
pub(crate) async fn apply_batch(
    conn: &mut AsyncPgConnection,
    follow_ups: &Outbox,
    claim: Claim<'_>,
    topic: &str,
    partition: i32,
    entries: &mut [Entry<'_>],
    grouping: bool,
) -> Result<Handled, BatchError> {
    // Set by the record that failed: whatever the rollback then says (after a
    // panic it may fail too), the record is named.
    let mut failed: Option<(usize, ApplyError)> = None;
    // Set by the group that failed.
    let mut group_failed: Option<ApplyError> = None;
    let muted = Muted(follow_ups);
    let result = conn
        .transaction::<_, Abort, _>(async |conn| {
            let (claimed, position) = match claim {
                Claim::Inbox => (claim_all(conn, topic, partition, entries).await?, None),
                Claim::Position {
                    projection,
                    expected,
                    ..
                } => {
                    let end = entries.last().map_or(0, |entry| entry.offset + 1);
                    match positions::advance(conn, projection, topic, partition, expected, end)
                        .await?
                    {
                        Some(position) => (vec![true; entries.len()], Some(position)),
                        None => return Err(Abort::Moved),
                    }
                }
            };
            let mut handled: Handled = claimed.iter().map(|&new| new.then_some(None)).collect();
            let mut next = 0;
            for index in 0..entries.len() {
                if index < next || !claimed[index] {
                    continue;
                }
                let members = if grouping {
                    group_at(entries, &claimed, index)
                } else {
                    Vec::new()
                };
                if members.len() > 1 {
                    next = members[members.len() - 1] + 1;
                    for &member in &members {
                        let fault =
                            std::mem::replace(&mut entries[member].fault, HandlerFault::NONE);
                        if let Err(error) = fault.inject().await {
                            failed = Some((member, ApplyError::Handler(error)));
                            return Err(Abort::Record);
                        }
                    }
                    let messages: Vec<&Message> =
                        members.iter().map(|&k| &entries[k].message).collect();
                    let controller = &entries[index].controller;
                    let handled = AssertUnwindSafe(controller.handle_group(conn, &messages))
                        .catch_unwind()
                        .await;
                    let error = match handled {
                        Ok(Ok(())) => {
                            metrics::histogram!("outbox_consumer_group_rows")
                                .record(members.len() as f64);
                            continue;
                        }
                        Ok(Err(GroupError::At { index, error })) if index < members.len() => {
                            failed = Some((members[index], ApplyError::Handler(error)));
                            return Err(Abort::Record);
                        }
                        Ok(Err(GroupError::Database(error))) => match ApplyError::from(error) {
                            // The database, not the group: the batch waits for it.
                            infrastructure @ ApplyError::Infrastructure(_) => {
                                return Err(Abort::Database(infrastructure));
                            }
                            other => other,
                        },
                        Ok(Err(GroupError::Group(error))) => ApplyError::Handler(error),
                        Ok(Err(other)) => {
                            ApplyError::Handler(outbox::HandlerError::retriable(other.to_string()))
                        }
                        Err(panic) => ApplyError::Panicked(panic_text(&*panic)),
                    };
                    group_failed = Some(error);
                    return Err(Abort::Record);
                }
                let entry = &mut entries[index];
                // Drawn once: applying the records before a failed one again
                // does not inject their faults twice.
                let fault = std::mem::replace(&mut entry.fault, HandlerFault::NONE);
                if let Err(error) = fault.inject().await {
                    failed = Some((index, ApplyError::Handler(error)));
                    return Err(Abort::Record);
                }
                let follow_ups = follow_ups_for(claim, position, entry.offset, follow_ups, &muted);
                let mut ctx =
                    Context::new(conn, &entry.message, partition, entry.offset, follow_ups);
                let outcome = AssertUnwindSafe(entry.controller.handle(&mut ctx, &entry.message))
                    .catch_unwind()
                    .await;
                let error = match outcome {
                    Ok(Ok(())) => {
                        handled[index] = Some(ctx.version_outcome());
                        continue;
                    }
                    Ok(Err(error)) => ApplyError::Handler(error),
                    Err(panic) => ApplyError::Panicked(panic_text(&*panic)),
                };
                failed = Some((index, error));
                return Err(Abort::Record);
            }
            Ok(handled)
        })
        .await;
    if result.is_err()
        && failed.is_none()
        && let Some(error) = group_failed
    {
        return Err(BatchError::Group { error });
    }
    match (result, failed) {
        (Ok(handled), _) => Ok(handled),
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
        (Err(Abort::Moved), None) => Err(BatchError::Moved),
        (Err(Abort::Record), None) => Err(BatchError::Unattributed(
            "a record failed without being named".to_owned(),
        )),
    }
}

/// The claimed entries that go in one group with entry `index`: it and the
/// claimed entries after it with the same controller, whose events it
/// groups (duplicates in between are skipped; anything else ends the group).
/// Fewer than two: no group.
fn group_at(entries: &[Entry<'_>], claimed: &[bool], index: usize) -> Vec<usize> {
    let first = &entries[index];
    if !first.controller.groups(&first.message.event) {
        return Vec::new();
    }
    let mut members = vec![index];
    for (k, entry) in entries.iter().enumerate().skip(index + 1) {
        if !claimed[k] {
            continue;
        }
        if !Arc::ptr_eq(&entry.controller, &first.controller)
            || !entry.controller.groups(&entry.message.event)
        {
            break;
        }
        members.push(k);
    }
    members
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
    let claim = ClaimAll {
        sources: entries.iter().map(|e| e.message.from.as_str()).collect(),
        message_ids: entries
            .iter()
            .map(|e| uuid::Uuid::from(e.message.id))
            .collect(),
        offsets: entries.iter().map(|e| e.offset).collect(),
        topic,
        partition,
    };
    let inserted: HashSet<i64> = claim.get_results::<i64>(conn).await?.into_iter().collect();
    Ok(entries
        .iter()
        .map(|entry| inserted.contains(&entry.offset))
        .collect())
}

/// The inbox rows of a batch as one statement whose text does not depend on
/// the batch's size (the rows are three arrays), so it is prepared once per
/// connection: `INSERT … SELECT … FROM unnest($3, $4, $5) ON CONFLICT DO
/// NOTHING RETURNING kafka_offset`. `unnest` yields the rows in array order,
/// so a message twice is claimed by its first offset, as with `VALUES`.
struct ClaimAll<'a> {
    sources: Vec<&'a str>,
    message_ids: Vec<uuid::Uuid>,
    offsets: Vec<i64>,
    topic: &'a str,
    partition: i32,
}

impl QueryId for ClaimAll<'_> {
    type QueryId = ClaimAll<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

impl Query for ClaimAll<'_> {
    type SqlType = BigInt;
}

impl QueryFragment<Pg> for ClaimAll<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql(
            "INSERT INTO outbox_inbox (source, message_id, topic, kafka_partition, kafka_offset) \
             SELECT claim.source, claim.message_id, ",
        );
        out.push_bind_param::<Text, _>(self.topic)?;
        out.push_sql(", ");
        out.push_bind_param::<Integer, _>(&self.partition)?;
        out.push_sql(", claim.kafka_offset FROM unnest(");
        out.push_bind_param::<Array<Text>, _>(&self.sources)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<diesel::sql_types::Uuid>, _>(&self.message_ids)?;
        out.push_sql(", ");
        out.push_bind_param::<Array<BigInt>, _>(&self.offsets)?;
        out.push_sql(
            ") AS claim (source, message_id, kafka_offset) \
             ON CONFLICT DO NOTHING RETURNING kafka_offset",
        );
        Ok(())
    }
}
