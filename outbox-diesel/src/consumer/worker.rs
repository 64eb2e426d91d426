//! A partition's task: applies its records one at a time, in offset order, and
//! applies the failure policy to a record that cannot be applied.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::time::Duration;

use outbox::avro::WriterSchema;
use outbox::kafka::RawHeader;
use outbox::{Controller, Message};
use rdkafka::Message as _;
use rdkafka::consumer::Consumer as _;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureRecord;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::apply::{Applied, ApplyError, Claim, apply, count_handled, refused_or};
use super::batch::{BatchError, Entry, apply_batch};
use super::error_events::{self, ErrorEventSent};
use super::kafka::{Control, Tp};
use super::policy::{FailurePolicy, OnFailure};
use super::positions::{self, Position};
use super::report::Outcome;
use super::schemas::{SchemaError, WriterSchemas};
use super::{Shared, checkout};
use crate::backoff::Backoff;
use crate::dead_letter;
use crate::error::error_chain;
use crate::fault_injection::{HandlerFault, HandlerTry};
use crate::stopped::{self, NewStop};

/// What a queued record weighs against the partition buffer: its key and
/// value, and a little for the rest.
pub(crate) fn weight(record: &OwnedMessage) -> usize {
    const OVERHEAD: usize = 128;
    OVERHEAD + record.key().map_or(0, <[u8]>::len) + record.payload().map_or(0, <[u8]>::len)
}

/// Waits between tries when the database, not the record, is failing.
const INFRASTRUCTURE_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(5));

/// Tries to send a record to its dead-letter topic before stopping instead.
const DEAD_LETTER_TRIES: u32 = 5;

/// What the dispatcher hands a task.
#[derive(Debug)]
pub(crate) enum Item {
    Record(OwnedMessage),
    /// The partition was resumed and reads again from `offset`: after a stop
    /// (`seek` is `None`), or after the task's own seek number `seek` (a
    /// projection's stored position).
    Resume {
        offset: i64,
        seek: Option<u64>,
    },
    /// A rebuild reset the projection's positions: read yours again.
    Reposition,
}

/// The task's queued bytes, whether the dispatcher paused it for that, and
/// the offset of the record in hand (-1 when none): where to read again from
/// should the task end unexpectedly.
#[derive(Debug)]
pub(crate) struct Queue {
    pub(crate) bytes: AtomicUsize,
    pub(crate) blocked: AtomicBool,
    pub(crate) in_hand: AtomicI64,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            bytes: AtomicUsize::new(0),
            blocked: AtomicBool::new(false),
            in_hand: AtomicI64::new(-1),
        }
    }
}

/// Why a record was not applied.
pub(crate) struct Failure {
    pub(crate) kind: &'static str,
    pub(crate) error: String,
    pub(crate) message_id: Option<uuid::Uuid>,
    pub(crate) attempts: u32,
    pub(crate) policy: FailurePolicy,
}

/// What happens after a record.
enum Next {
    /// Done with it (applied, skipped, dead-lettered): its offset is stored.
    Done,
    /// The partition stopped on it: the stop's id and the record's offset.
    Stopped(i64, i64),
    /// Shutdown or revocation came first: neither applied nor acknowledged.
    Abandoned,
    /// The projection's position moved (another process, a rebuild):
    /// nothing applied; read it again and seek there.
    Moved,
}

#[derive(Debug, Clone)]
enum State {
    Running,
    /// Stopped (stop `stop_id`, on the record at `offset`): records are
    /// dropped until the partition is resumed.
    Stopped {
        stop_id: i64,
        offset: i64,
    },
    /// A projection waiting for the dispatcher to seek to its stored
    /// position (its seek number `seek`): records read before are dropped,
    /// and markers of earlier seeks ignored.
    Seeking {
        seek: u64,
    },
    /// Resumed from `offset` (after stop `from`), or sought there: the
    /// dispatcher sought before sending the marker, so every record after it
    /// was read after the seek.
    Resuming {
        offset: i64,
        from: Option<i64>,
    },
}

pub(crate) struct PartitionTask {
    /// Tells this task's messages to the dispatcher from those of an earlier
    /// task of the same partition.
    pub(crate) id: u64,
    pub(crate) shared: Arc<Shared>,
    pub(crate) tp: Tp,
    pub(crate) items: UnboundedReceiver<Item>,
    pub(crate) queue: Arc<Queue>,
    pub(crate) revoked: Arc<AtomicBool>,
    /// The task this one replaces after a rebalance: it finishes first.
    pub(crate) previous: Option<JoinHandle<()>>,
    pub(crate) shutdown: watch::Receiver<bool>,
    /// A projection's position in the partition, as last read or moved;
    /// `None` for an inbox consumer.
    pub(crate) position: Option<Position>,
    /// Records skipped in this partition (`outbox partitions skip`), by
    /// offset, with their message ids when known: read again, they are
    /// acknowledged, not applied.
    pub(crate) skipped: std::collections::HashMap<i64, Option<uuid::Uuid>>,
    /// The number of this task's last seek to a projection's position.
    pub(crate) seeks: u64,
    /// A projection's last record acknowledged without moving its position
    /// (ignored, refused, dead-lettered, skipped): the position is moved
    /// past it when the queue runs dry, so a restart or a rebuild's progress
    /// does not wait for the next applied record.
    pub(crate) unsaved: Option<i64>,
}

impl PartitionTask {
    pub(crate) async fn run(mut self) {
        if let Some(previous) = self.previous.take() {
            let _ = previous.await;
        }
        // The stop first: a skip committed after it is read with the
        // skipped records below.
        let stop = match self.active_stop().await {
            Some(stop) => stop,
            None => return,
        };
        if !self.load_skipped().await {
            return;
        }
        let mut state = match stop {
            Some((stop_id, offset)) => {
                // A projection's position is known even while stopped: its
                // applies after the resume move it.
                if self.shared.projection.is_some() && !self.read_position().await {
                    return;
                }
                State::Stopped { stop_id, offset }
            }
            None if self.shared.projection.is_some() => match self.seek_position().await {
                Some(state) => state,
                None => return,
            },
            None => State::Running,
        };
        // An item taken from the queue while gathering a batch, not a record.
        let mut held: Option<Item> = None;
        loop {
            let item = match held.take() {
                Some(item) => item,
                None => {
                    if self.unsaved.is_some()
                        && self.items.is_empty()
                        && !self.save_position().await
                    {
                        return;
                    }
                    match self.items.recv().await {
                        Some(item) => item,
                        None => return,
                    }
                }
            };
            if self.gone() {
                return;
            }
            match item {
                Item::Reposition => {
                    if !self.load_skipped().await {
                        return;
                    }
                    // A stopped partition reads from its position when resumed.
                    if !matches!(state, State::Stopped { .. }) {
                        state = match self.seek_position().await {
                            Some(state) => state,
                            None => return,
                        };
                    }
                }
                Item::Resume { offset, seek } => {
                    let Some(next) = self.on_resume(&state, offset, seek).await else {
                        return;
                    };
                    state = next;
                }
                Item::Record(record) => {
                    self.dequeued(weight(&record));
                    // The resumed record draws other injected faults than
                    // those that stopped it.
                    let resumed_from = match state {
                        State::Stopped { .. } | State::Seeking { .. } => continue,
                        State::Resuming { offset, from } => {
                            if record.offset() > offset {
                                // Only when the record is gone from the topic (retention).
                                tracing::warn!(partition = %self.tp, expected = offset,
                                    first = record.offset(), "the record to read again from no longer exists (retention): reading on from the next one");
                            }
                            from
                        }
                        State::Running => None,
                    };
                    state = State::Running;
                    if self.was_skipped(&record) {
                        tracing::info!(partition = %self.tp, offset = record.offset(),
                            "record skipped with `outbox partitions skip`: acknowledged, not applied");
                        self.shared.counters.count(Outcome::Ignored, &self.tp.topic);
                        self.store_offset(record.offset());
                        self.acknowledged(record.offset());
                        continue;
                    }
                    if self.applied_before(&record) {
                        self.shared
                            .counters
                            .count(Outcome::Duplicate, &self.tp.topic);
                        continue;
                    }
                    let mut records = vec![record];
                    if resumed_from.is_none() {
                        held = self.gather(&mut records);
                    }
                    let next = if records.len() == 1 {
                        let record = &records[0];
                        self.queue.in_hand.store(record.offset(), Ordering::SeqCst);
                        let next = self.process(record, resumed_from, None).await;
                        if let Next::Done = next {
                            self.store_offset(record.offset());
                        }
                        next
                    } else {
                        self.process_batch(&records).await
                    };
                    let last = records.last().map_or(-1, |record| record.offset());
                    match next {
                        Next::Done => self.acknowledged(last),
                        Next::Stopped(stop_id, offset) => {
                            state = State::Stopped { stop_id, offset }
                        }
                        Next::Abandoned => return,
                        Next::Moved => {
                            tracing::info!(partition = %self.tp,
                                "projection position moved (another process or a rebuild); reading it again");
                            state = match self.seek_position().await {
                                Some(state) => state,
                                None => return,
                            };
                        }
                    }
                    self.queue.in_hand.store(-1, Ordering::SeqCst);
                }
            }
        }
    }

    /// Adds the records already queued behind `records`' first one, up to the
    /// batch size; never waits for more (live traffic keeps its latency).
    /// Returns the item that ended the gathering if it is not a record.
    ///
    /// A batch also stops at the partition's read-ahead in bytes: records taken
    /// from the queue free room for more to be fetched, so a batch counted in
    /// records alone would hold up to `batch_size` large records at once.
    fn gather(&mut self, records: &mut Vec<OwnedMessage>) -> Option<Item> {
        let mut bytes: usize = records.iter().map(weight).sum();
        while records.len() < self.shared.batch_size && bytes < self.shared.partition_buffer {
            match self.items.try_recv() {
                // A skipped record ends the batch: acknowledged only after
                // the records before it are applied.
                Ok(Item::Record(record)) if self.was_skipped(&record) => {
                    return Some(Item::Record(record));
                }
                Ok(Item::Record(record)) => {
                    let taken = weight(&record);
                    self.dequeued(taken);
                    bytes += taken;
                    records.push(record);
                }
                Ok(other) => return Some(other),
                Err(_) => return None,
            }
        }
        None
    }

    /// Applies `records` (in offset order), as many at a time as can go in
    /// one transaction: a run of records the batch path takes (decoded, with
    /// a controller that handles their event), and each other record alone.
    /// A record that fails in a batch is found and given alone to
    /// [`process`](Self::process): the records before it are applied, those
    /// after it not yet. Stores each applied record's offset.
    async fn process_batch(&mut self, records: &[OwnedMessage]) -> Next {
        let mut rest = records;
        while let Some(first) = rest.first() {
            if self.gone() {
                return Next::Abandoned;
            }
            let messages = self.batchable(rest);
            let (alone, first_attempt) = if messages.len() <= 1 {
                (Some(first), None)
            } else {
                let run = &rest[..messages.len()];
                let (applied, failed) = match self.apply_run(run, messages).await {
                    Ok(done) => done,
                    Err(next) => return next,
                };
                if applied > 0 {
                    self.applied_to(run[applied - 1].offset());
                    self.store_offset(run[applied - 1].offset());
                }
                rest = &rest[applied..];
                ((applied < run.len()).then(|| &rest[0]), failed)
            };
            if let Some(record) = alone {
                self.queue.in_hand.store(record.offset(), Ordering::SeqCst);
                match self.process(record, None, first_attempt).await {
                    Next::Done => self.store_offset(record.offset()),
                    other => return other,
                }
                rest = &rest[1..];
            }
        }
        Next::Done
    }

    /// The messages of the longest run at the start of `records` that the
    /// batch path takes: decoded, routed to a controller that handles them,
    /// and for Avro, their writer schema cached (the record that needs one
    /// fetched goes alone: [`process`](Self::process) fetches it, and the
    /// records after it find it cached).
    fn batchable(&self, records: &[OwnedMessage]) -> Vec<(Message, Arc<dyn Controller>)> {
        let mut messages = Vec::new();
        for record in records {
            let headers: Vec<RawHeader<'_>> = record.headers().map_or_else(Vec::new, |headers| {
                outbox::kafka::read_headers(headers).collect()
            });
            let Ok(mut message) = outbox::kafka::decode_record_with(record, &headers) else {
                break;
            };
            match self.shared.routes.get(&message.to) {
                Some(route)
                    if route.controller.handles(&message.event)
                        && self.shared.schemas.attach_cached(&mut message) =>
                {
                    messages.push((message, Arc::clone(&route.controller)));
                }
                _ => break,
            }
        }
        messages
    }

    /// Applies `run` (decoded as `messages`) in one transaction, retried while
    /// the database is unavailable. Returns how many records at its start are
    /// applied (all of them, or those before the record that failed) and the
    /// error of the record that failed, when it was tried; `Err` on shutdown
    /// or revocation ([`Next::Abandoned`]), or when a projection's position
    /// moved ([`Next::Moved`]).
    async fn apply_run(
        &mut self,
        run: &[OwnedMessage],
        messages: Vec<(Message, Arc<dyn Controller>)>,
    ) -> Result<(usize, Option<ApplyError>), Next> {
        let shared = Arc::clone(&self.shared);
        let span = tracing::info_span!("outbox.consume_batch",
            topic = %self.tp.topic, partition = self.tp.partition,
            first_offset = run[0].offset(), records = run.len());
        self.queue.in_hand.store(run[0].offset(), Ordering::SeqCst);
        let mut entries: Vec<Entry<'_>> = Vec::with_capacity(run.len());
        for (record, (message, controller)) in run.iter().zip(messages) {
            let fault = shared
                .faults
                .as_deref()
                .map_or(HandlerFault::NONE, |faults| {
                    let try_ = HandlerTry {
                        message_id: message.id.into(),
                        offset: record.offset(),
                        resumed_from: None,
                        attempt: 1,
                    };
                    faults.handler_fault(&message.to, &self.tp.topic, try_)
                });
            entries.push(Entry {
                controller,
                message,
                offset: record.offset(),
                fault,
            });
        }
        let (base, cap) = INFRASTRUCTURE_BACKOFF;
        let mut infrastructure = Backoff::new(base, cap);
        let mut end = entries.len();
        let mut failed = None;
        // Off for one try after a group failed: the records then go one by
        // one, and the one that fails is named.
        let mut grouping = true;
        loop {
            let result = {
                let _permit = shared.permits.acquire().await;
                match checkout(&shared.pool).await {
                    Ok(mut conn) => {
                        let result = apply_batch(
                            &mut conn,
                            &shared.follow_ups,
                            self.claim(),
                            &self.tp.topic,
                            self.tp.partition,
                            &mut entries[..end],
                            grouping,
                        )
                        .instrument(span.clone())
                        .await;
                        if matches!(
                            result,
                            Err(BatchError::At {
                                error: ApplyError::Panicked(_),
                                ..
                            } | BatchError::Group {
                                error: ApplyError::Panicked(_)
                            })
                        ) {
                            // Not back to the pool: it may be mid-query.
                            drop(diesel_async::pooled_connection::deadpool::Object::take(
                                conn,
                            ));
                        }
                        result
                    }
                    Err(error) => Err(BatchError::Infrastructure(error.into())),
                }
            };
            match result {
                Ok(handled) => {
                    metrics::histogram!("outbox_consumer_batch_records").record(end as f64);
                    for record in handled {
                        match record {
                            Some(outcome) => {
                                count_handled(&shared.counters, &self.tp.topic, outcome)
                            }
                            None => shared.counters.count(Outcome::Duplicate, &self.tp.topic),
                        }
                    }
                    let failed = failed.take();
                    return Ok((end, failed));
                }
                Err(BatchError::Moved) => return Err(Next::Moved),
                Err(BatchError::Infrastructure(error)) => {
                    let error = error_chain(&*error);
                    if let Some(repeats) = shared.warnings.admit(&format!("database|{error}")) {
                        tracing::warn!(partition = %self.tp, %error, "database unavailable; retrying{repeats}");
                    }
                    if !self.pause(infrastructure.next_delay()).await {
                        return Err(Next::Abandoned);
                    }
                }
                // The records before it go again as a batch; it goes alone,
                // its first attempt made.
                Err(BatchError::At { index, error }) => {
                    grouping = true;
                    failed = Some(error);
                    if index == 0 {
                        return Ok((0, failed));
                    }
                    end = index;
                }
                // No record named: the same records again, one by one, to
                // find it (their faults were drawn: not injected twice).
                Err(BatchError::Group { error }) if grouping => {
                    let error = match error {
                        ApplyError::Handler(error) => error.chain(),
                        ApplyError::Panicked(text) => text,
                        ApplyError::Infrastructure(error) => error_chain(&*error),
                    };
                    tracing::debug!(partition = %self.tp, %error, records = end,
                        "a group failed; applying the batch again without groups");
                    grouping = false;
                }
                Err(BatchError::Group { error }) => {
                    tracing::warn!(partition = %self.tp, error = ?error, records = end,
                        "batch failed as a whole; applying its first record alone");
                    return Ok((0, None));
                }
                Err(BatchError::Unattributed(error)) => {
                    // No record to blame: the first goes alone (retries and
                    // failure policy), the others form the next batch.
                    tracing::warn!(partition = %self.tp, %error, records = end,
                        "batch failed as a whole; applying its first record alone");
                    return Ok((0, None));
                }
            }
        }
    }

    /// The active stop of this partition, if any (recorded by any consumer of
    /// the group); tells the dispatcher so it pauses it. `None` on shutdown.
    async fn active_stop(&mut self) -> Option<Option<(i64, i64)>> {
        let group = self.shared.group.clone();
        let tp = self.tp.clone();
        let found = self
            .with_database(move |conn| {
                let (group, tp) = (group.clone(), tp.clone());
                Box::pin(async move {
                    stopped::active_async(conn, &group, &tp.topic, tp.partition).await
                })
            })
            .await?;
        Some(found.map(|stop| {
            self.announce_stop(stop.id, stop.kafka_offset);
            (stop.id, stop.kafka_offset)
        }))
    }

    /// Reads the records skipped in this partition; `false` on shutdown or
    /// revocation.
    async fn load_skipped(&mut self) -> bool {
        let group = self.shared.group.clone();
        let tp = self.tp.clone();
        let skipped = self
            .with_database(move |conn| {
                let (group, tp) = (group.clone(), tp.clone());
                Box::pin(async move {
                    stopped::skipped_async(conn, &group, &tp.topic, tp.partition).await
                })
            })
            .await;
        match skipped {
            Some(skipped) => {
                self.skipped = skipped.into_iter().collect();
                true
            }
            None => false,
        }
    }

    /// Whether `record` is one skipped with `outbox partitions skip` (the
    /// same message, when its id was recorded).
    fn was_skipped(&self, record: &OwnedMessage) -> bool {
        match self.skipped.get(&record.offset()) {
            None => false,
            Some(None) => true,
            Some(Some(id)) => {
                let headers: Vec<RawHeader<'_>> =
                    record.headers().map_or_else(Vec::new, |headers| {
                        outbox::kafka::read_headers(headers).collect()
                    });
                raw_header(&headers, outbox::headers::MESSAGE_ID)
                    .and_then(|header| header.parse::<uuid::Uuid>().ok())
                    .is_some_and(|header| header == *id)
            }
        }
    }

    /// Whether a rebuild re-applies the record at `offset` with its
    /// follow-ups (and dead letters, error events) muted.
    fn muted(&self, offset: i64) -> bool {
        self.shared
            .projection
            .is_some_and(|projection| !projection.follow_ups_in_rebuild)
            && self
                .position
                .is_some_and(|position| position.replaying(offset))
    }

    /// How this task's applies claim their records.
    fn claim(&self) -> Claim<'_> {
        match (&self.shared.projection, self.position) {
            (Some(projection), Some(position)) => Claim::Position {
                projection: &self.shared.group,
                expected: position.next,
                follow_ups_in_rebuild: projection.follow_ups_in_rebuild,
            },
            _ => Claim::Inbox,
        }
    }

    /// Whether a projection applied `record` already (read again after a
    /// seek back, or before the seek to its position took).
    fn applied_before(&self, record: &OwnedMessage) -> bool {
        self.position
            .and_then(|position| position.next)
            .is_some_and(|next| record.offset() < next)
    }

    /// A projection's position after applying up to `offset`.
    fn applied_to(&mut self, offset: i64) {
        if let Some(position) = &mut self.position {
            position.next = Some(offset + 1);
        }
    }

    /// Reads the projection's stored position; `false` on shutdown or
    /// revocation.
    async fn read_position(&mut self) -> bool {
        let tp = self.tp.clone();
        let projection = self.shared.group.clone();
        let position = self
            .with_database(move |conn| {
                let (tp, projection) = (tp.clone(), projection.clone());
                Box::pin(async move {
                    positions::read(conn, &projection, &tp.topic, tp.partition)
                        .await
                        .map_err(crate::Error::from)
                })
            })
            .await;
        self.unsaved = None;
        match position {
            Some(position) => {
                self.position = Some(position);
                true
            }
            None => false,
        }
    }

    /// Reads the projection's stored position and asks the dispatcher to
    /// seek there (the group's committed offset is only a hint); `None` on
    /// shutdown or revocation.
    async fn seek_position(&mut self) -> Option<State> {
        if !self.read_position().await {
            return None;
        }
        let next = self.position.and_then(|position| position.next);
        self.seeks += 1;
        let _ = self.shared.control.send(Control::Seek {
            tp: self.tp.clone(),
            task: self.id,
            offset: next,
            seek: self.seeks,
        });
        Some(match next {
            Some(_) => State::Seeking { seek: self.seeks },
            None => State::Running,
        })
    }

    /// The state after the marker of a resume (`seek` `None`: a stop's,
    /// reading again from `offset`) or of a seek of this task's. A stop
    /// resumed past its record (a skip) adds the record to the skipped ones;
    /// a projection then reads from its stored position rather than the
    /// stop's (a rebuild may have moved it back meanwhile). `None` on
    /// shutdown or revocation.
    async fn on_resume(&mut self, state: &State, offset: i64, seek: Option<u64>) -> Option<State> {
        match (state, seek) {
            (
                State::Stopped {
                    stop_id,
                    offset: stopped_at,
                },
                None,
            ) => {
                if offset > *stopped_at {
                    self.skipped.insert(*stopped_at, None);
                }
                if self.shared.projection.is_some() {
                    tracing::info!(partition = %self.tp, stop_id, "partition resumed: reading from the projection's position");
                    return self.seek_position().await;
                }
                Some(State::Resuming {
                    offset,
                    from: Some(*stop_id),
                })
            }
            (State::Seeking { seek: awaited }, Some(seek)) if seek == *awaited => {
                Some(State::Resuming { offset, from: None })
            }
            // A marker of an earlier seek, or a stop's that came late.
            (state, _) => Some(state.clone()),
        }
    }

    /// Notes that a projection acknowledged the records up to `offset`
    /// without moving its position past them (ignored, refused,
    /// dead-lettered, skipped, or not yet known to have moved).
    fn acknowledged(&mut self, offset: i64) {
        if let Some(position) = self.position
            && offset >= 0
            && position.next.is_none_or(|next| next <= offset)
        {
            self.unsaved = Some(offset);
        }
    }

    /// Moves a projection's position past its records acknowledged without
    /// an apply; `false` on shutdown or revocation.
    async fn save_position(&mut self) -> bool {
        let (Some(last), Some(position)) = (self.unsaved.take(), self.position) else {
            return true;
        };
        let (tp, projection) = (self.tp.clone(), self.shared.group.clone());
        let moved = self
            .with_database(move |conn| {
                let (tp, projection) = (tp.clone(), projection.clone());
                Box::pin(async move {
                    positions::advance(
                        conn,
                        &projection,
                        &tp.topic,
                        tp.partition,
                        position.next,
                        last + 1,
                    )
                    .await
                    .map_err(crate::Error::from)
                })
            })
            .await;
        match moved {
            Some(Some(_)) => {
                self.applied_to(last);
                true
            }
            // Moved by another process or a rebuild: the next apply finds out.
            Some(None) => true,
            None => false,
        }
    }

    fn dequeued(&self, weight: usize) {
        let left = self
            .queue
            .bytes
            .fetch_sub(weight, Ordering::SeqCst)
            .saturating_sub(weight);
        if left <= self.shared.partition_buffer / 2
            && self.queue.blocked.swap(false, Ordering::SeqCst)
        {
            let _ = self.shared.control.send(Control::Unblock {
                tp: self.tp.clone(),
                task: self.id,
            });
        }
    }

    fn gone(&self) -> bool {
        self.revoked.load(Ordering::SeqCst) || *self.shutdown.borrow()
    }

    fn store_offset(&self, offset: i64) {
        if let Err(error) =
            self.shared
                .consumer
                .store_offset(&self.tp.topic, self.tp.partition, offset)
        {
            // Revoked meanwhile: the next owner re-reads it and its inbox skips it.
            tracing::debug!(partition = %self.tp, offset, %error, "offset not stored");
        }
    }

    /// Sleeps `delay` unless shutdown or revocation comes first (then `false`).
    async fn pause(&mut self, delay: Duration) -> bool {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.wait_for(|stop| *stop) => {}
        }
        !self.gone()
    }

    /// Runs `query` on a pooled connection until it succeeds, backing off while
    /// the database is unreachable; `None` on shutdown or revocation.
    async fn with_database<T>(
        &mut self,
        query: impl for<'c> Fn(
            &'c mut diesel_async::AsyncPgConnection,
        ) -> outbox::BoxFuture<'c, crate::Result<T>>,
    ) -> Option<T> {
        let (base, cap) = INFRASTRUCTURE_BACKOFF;
        let mut backoff = Backoff::new(base, cap);
        loop {
            let error = match checkout(&self.shared.pool).await {
                Ok(mut conn) => match query(&mut conn).await {
                    Ok(value) => return Some(value),
                    Err(error) => error_chain(&error),
                },
                Err(error) => error,
            };
            if let Some(repeats) = self.shared.warnings.admit(&format!("database|{error}")) {
                tracing::warn!(partition = %self.tp, %error, "database query failed; retrying{repeats}");
            }
            if !self.pause(backoff.next_delay()).await {
                return None;
            }
        }
    }

    /// Applies `record` (the record a resume from stop `resumed_from` starts
    /// at, if so); `first_attempt` is how its first attempt failed when it
    /// was made in a batch.
    async fn process(
        &mut self,
        record: &OwnedMessage,
        resumed_from: Option<i64>,
        mut first_attempt: Option<ApplyError>,
    ) -> Next {
        let span = tracing::info_span!("outbox.consume",
            topic = %self.tp.topic, partition = self.tp.partition, offset = record.offset(),
            message_id = tracing::field::Empty, event = tracing::field::Empty);
        let shared = Arc::clone(&self.shared);
        async {
            // Read once, as bytes: a header name that is not UTF-8 is data.
            let headers: Vec<RawHeader<'_>> = record
                .headers()
                .map_or_else(Vec::new, |headers| outbox::kafka::read_headers(headers).collect());
            let mut message = match outbox::kafka::decode_record_with(record, &headers) {
                Ok(message) => message,
                Err(error) => {
                    let route = raw_header(&headers, outbox::headers::TO);
                    let failure = Failure {
                        kind: dead_letter::KIND_DECODE,
                        error: error_chain(&error),
                        message_id: raw_header(&headers, outbox::headers::MESSAGE_ID)
                            .and_then(|id| id.parse().ok()),
                        attempts: 1,
                        policy: shared.routes.policy_for(route.as_deref()),
                    };
                    return self.fail(record, failure).await;
                }
            };
            let span = tracing::Span::current();
            span.record("message_id", tracing::field::display(message.id));
            span.record("event", message.event.as_str());
            let Some(route) = shared.routes.get(&message.to) else {
                if shared.routes.ignore_unknown {
                    tracing::debug!(route = %message.to, "consumer: no controller serves the route; ignored");
                    shared.counters.count(Outcome::Ignored, &self.tp.topic);
                    return Next::Done;
                }
                let failure = Failure {
                    kind: dead_letter::KIND_NO_CONTROLLER,
                    error: format!("no controller serves route `{}`", message.to),
                    message_id: Some(message.id.into()),
                    attempts: 1,
                    policy: shared.routes.default_policy.clone(),
                };
                return self.fail(record, failure).await;
            };
            if !route.controller.handles(&message.event) {
                if route.controller.strict() {
                    let failure = Failure {
                        kind: dead_letter::KIND_UNHANDLED_EVENT,
                        error: format!(
                            "the controller of route {:?} has no handling for event `{}` and is strict",
                            message.to, message.event
                        ),
                        message_id: Some(message.id.into()),
                        attempts: 1,
                        policy: route.policy.clone(),
                    };
                    return self.fail(record, failure).await;
                }
                shared.counters.count(Outcome::Ignored, &self.tp.topic);
                return Next::Done;
            }
            if let Some(id) = WriterSchemas::needed(&message) {
                match self.writer_schema(id).await {
                    Some(Ok(writer)) => message.payloads.set_writer_schema(writer),
                    Some(Err(error)) => {
                        let failure = Failure {
                            kind: dead_letter::KIND_DECODE,
                            error,
                            message_id: Some(message.id.into()),
                            attempts: 1,
                            policy: route.policy.clone(),
                        };
                        return self.fail(record, failure).await;
                    }
                    None => return Next::Abandoned,
                }
            }
            let retry = route.policy.retries();
            let mut backoff = Backoff::new(retry.base(), retry.cap());
            let (base, cap) = INFRASTRUCTURE_BACKOFF;
            let mut infrastructure = Backoff::new(base, cap);
            let mut attempts = 0;
            loop {
                attempts += 1;
                let result = if let Some(error) = first_attempt.take() {
                    refused_or(error)
                } else {
                    let _permit = shared.permits.acquire().await;
                    match checkout(&shared.pool).await {
                        Ok(mut conn) => {
                            let fault = shared.faults.as_deref().map_or(HandlerFault::NONE, |faults| {
                                let try_ = HandlerTry {
                                    message_id: message.id.into(),
                                    offset: record.offset(),
                                    resumed_from,
                                    attempt: attempts,
                                };
                                faults.handler_fault(&message.to, &self.tp.topic, try_)
                            });
                            let result = apply(&mut conn, &*route.controller, &shared.follow_ups,
                                self.claim(), &message, self.tp.partition, record.offset(), fault).await;
                            if matches!(result, Err(ApplyError::Panicked(_))) {
                                // Not back to the pool: it may be mid-query.
                                drop(diesel_async::pooled_connection::deadpool::Object::take(conn));
                            }
                            result
                        }
                        Err(error) => Err(ApplyError::Infrastructure(error.into())),
                    }
                };
                let error = match result {
                    Ok(Applied::Processed(outcome)) => {
                        self.applied_to(record.offset());
                        count_handled(&shared.counters, &self.tp.topic, outcome);
                        return Next::Done;
                    }
                    Ok(Applied::Moved) => return Next::Moved,
                    Ok(Applied::Duplicate) => {
                        tracing::debug!("duplicate: already in the inbox");
                        shared.counters.count(Outcome::Duplicate, &self.tp.topic);
                        return Next::Done;
                    }
                    Ok(Applied::Refused(reason)) => {
                        tracing::info!(%reason, "refused by the controller");
                        shared.counters.count(Outcome::Refused, &self.tp.topic);
                        return Next::Done;
                    }
                    Err(ApplyError::Infrastructure(error)) => {
                        // Not the record's fault: not an attempt.
                        attempts -= 1;
                        let error = error_chain(&*error);
                        // Every partition hits the same outage: summarised.
                        if let Some(repeats) = shared.warnings.admit(&format!("database|{error}")) {
                            tracing::warn!(%error, "database unavailable; retrying{repeats}");
                        }
                        if !self.pause(infrastructure.next_delay()).await {
                            return Next::Abandoned;
                        }
                        continue;
                    }
                    Err(ApplyError::Handler(error)) => error,
                    Err(ApplyError::Panicked(text)) => outbox::HandlerError::permanent(text),
                };
                let permanent = error.kind() == outbox::HandlerErrorKind::Permanent;
                if permanent || attempts >= retry.attempts() {
                    // A handler failing because the database went away is not
                    // the record's fault either: wait for the database, then retry.
                    if !permanent && !self.database_reachable().await {
                        attempts = 0;
                        if !self.pause(infrastructure.next_delay()).await {
                            return Next::Abandoned;
                        }
                        continue;
                    }
                    let failure = Failure {
                        kind: dead_letter::KIND_HANDLER,
                        error: error.chain(),
                        message_id: Some(message.id.into()),
                        attempts,
                        policy: route.policy.clone(),
                    };
                    return self.fail(record, failure).await;
                }
                shared.counters.count(Outcome::Retry, &self.tp.topic);
                tracing::warn!(attempt = attempts, error = %error.chain(), "handler failed; retrying");
                if !self.pause(backoff.next_delay()).await {
                    return Next::Abandoned;
                }
            }
        }
        .instrument(span)
        .await
    }

    /// The writer schema of id `id`, cached or fetched: waits while the
    /// registry cannot answer (not the record's fault: no attempt counted,
    /// no policy applied); `Err` when the record names a schema that cannot
    /// be had, `None` on shutdown or revocation.
    async fn writer_schema(&mut self, id: u32) -> Option<Result<Arc<WriterSchema>, String>> {
        let (base, cap) = INFRASTRUCTURE_BACKOFF;
        let mut backoff = Backoff::new(base, cap);
        loop {
            // The fetch is shared with the other partitions wanting `id`:
            // leaving it on shutdown or revocation (watched for by polling
            // its flag) leaves it to them.
            let revoked = &self.revoked;
            let fetched = tokio::select! {
                fetched = self.shared.schemas.get(id) => fetched,
                Ok(_) = self.shutdown.wait_for(|stop| *stop) => return None,
                () = async {
                    while !revoked.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                } => return None,
            };
            match fetched {
                Ok(writer) => return Some(Ok(writer)),
                Err(SchemaError::Permanent(error)) => return Some(Err(error)),
                // Logged by the cache, once per outage.
                Err(SchemaError::Unavailable(_)) => {
                    if !self.pause(backoff.next_delay()).await {
                        return None;
                    }
                }
            }
        }
    }

    async fn database_reachable(&self) -> bool {
        match checkout(&self.shared.pool).await {
            Ok(mut conn) => {
                diesel_async::RunQueryDsl::execute(diesel::sql_query("SELECT 1"), &mut conn)
                    .await
                    .is_ok()
            }
            Err(_) => false,
        }
    }

    /// Applies the failure policy to `record`.
    async fn fail(&mut self, record: &OwnedMessage, failure: Failure) -> Next {
        self.shared.counters.count(Outcome::Failed, &self.tp.topic);
        tracing::error!(kind = failure.kind, error = %failure.error, attempts = failure.attempts,
            policy = ?failure.policy.on_failure(), "record could not be applied");
        if failure.policy.on_failure() == OnFailure::ErrorEvent {
            match self.error_event(record, &failure).await {
                ErrorEventSent::Sent | ErrorEventSent::AlreadySent => return Next::Done,
                ErrorEventSent::Moved => return Next::Moved,
                ErrorEventSent::Abandoned => return Next::Abandoned,
                ErrorEventSent::Failed(error) => {
                    let failure = Failure {
                        error: format!("{}; error event failed: {error}", failure.error),
                        ..failure
                    };
                    return self.stop(record, &failure).await;
                }
            }
        }
        if failure.policy.on_failure() == OnFailure::DeadLetter && self.muted(record.offset()) {
            // Dead-lettered when first applied: a second copy would be
            // replayed twice into a projection, which has no inbox.
            tracing::info!(partition = %self.tp, offset = record.offset(),
                "a rebuild re-applies a record that fails: not dead-lettered again");
            return Next::Done;
        }
        if failure.policy.on_failure() == OnFailure::DeadLetter {
            match self.dead_letter(record, &failure).await {
                Ok(()) => {
                    self.shared
                        .counters
                        .count(Outcome::DeadLettered, &self.tp.topic);
                    return Next::Done;
                }
                Err(Some(error)) => {
                    let failure = Failure {
                        error: format!("{}; dead-letter failed: {error}", failure.error),
                        ..failure
                    };
                    return self.stop(record, &failure).await;
                }
                Err(None) => return Next::Abandoned,
            }
        }
        self.stop(record, &failure).await
    }

    /// Enqueues the error event about `record` in the consumer's outbox, in
    /// one transaction with its inbox row (or its projection's position):
    /// retried while the database is away.
    async fn error_event(&mut self, record: &OwnedMessage, failure: &Failure) -> ErrorEventSent {
        let producer = outbox::FollowUps::producer(&self.shared.follow_ups);
        let event = match error_events::event_of(record, failure, &self.shared.group, producer) {
            Ok(event) => event,
            Err(error) => return ErrorEventSent::Failed(error),
        };
        let (base, cap) = INFRASTRUCTURE_BACKOFF;
        let mut backoff = Backoff::new(base, cap);
        // Tries left for an error of the transaction itself that may pass
        // (a deadlock, a serialization failure).
        let mut retriable = DEAD_LETTER_TRIES;
        loop {
            let result = match checkout(&self.shared.pool).await {
                Ok(mut conn) => {
                    error_events::enqueue(
                        &mut conn,
                        &self.shared.follow_ups,
                        self.claim(),
                        &event,
                        failure.message_id,
                        self.tp.partition,
                        record.offset(),
                    )
                    .await
                }
                Err(error) => Err(ApplyError::Infrastructure(error.into())),
            };
            match result {
                Ok(sent) => {
                    if matches!(sent, ErrorEventSent::Sent) {
                        self.applied_to(record.offset());
                        self.shared
                            .counters
                            .count(Outcome::ErrorEvent, &self.tp.topic);
                    }
                    return sent;
                }
                Err(ApplyError::Infrastructure(error)) => {
                    let error = error_chain(&*error);
                    if let Some(repeats) = self.shared.warnings.admit(&format!("database|{error}"))
                    {
                        tracing::warn!(partition = %self.tp, %error, "error event: database unavailable; retrying{repeats}");
                    }
                    if !self.pause(backoff.next_delay()).await {
                        return ErrorEventSent::Abandoned;
                    }
                }
                Err(ApplyError::Handler(error))
                    if error.kind() == outbox::HandlerErrorKind::Retriable && retriable > 1 =>
                {
                    retriable -= 1;
                    tracing::warn!(partition = %self.tp, error = %error.chain(), "error event not written; retrying");
                    if !self.pause(backoff.next_delay()).await {
                        return ErrorEventSent::Abandoned;
                    }
                }
                Err(ApplyError::Handler(error)) => return ErrorEventSent::Failed(error.chain()),
                Err(ApplyError::Panicked(text)) => return ErrorEventSent::Failed(text),
            }
        }
    }

    /// Sends `record` to its dead-letter topic; `Err(None)` on shutdown.
    async fn dead_letter(
        &mut self,
        record: &OwnedMessage,
        failure: &Failure,
    ) -> Result<(), Option<String>> {
        let topic = dead_letter::dlq_topic(&self.tp.topic);
        let headers = dead_letter::record_dead_letter_headers(
            record.headers(),
            &dead_letter::Failure {
                topic: &self.tp.topic,
                partition: self.tp.partition,
                offset: record.offset(),
                group: &self.shared.group,
                kind: failure.kind,
                error: &failure.error,
                attempts: failure.attempts,
            },
        );
        let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
        let mut last_error = String::new();
        for _ in 0..DEAD_LETTER_TRIES {
            let mut out = FutureRecord::<[u8], [u8]>::to(&topic).headers(headers.clone());
            if let Some(key) = record.key() {
                out = out.key(key);
            }
            if let Some(value) = record.payload() {
                out = out.payload(value);
            }
            match self
                .shared
                .dead_letters
                .send(out, Duration::from_secs(30))
                .await
            {
                Ok(_) => return Ok(()),
                Err((error, _)) => last_error = format!("{topic}: {error}"),
            }
            tracing::warn!(error = %last_error, "dead-letter send failed; retrying");
            if !self.pause(backoff.next_delay()).await {
                return Err(None);
            }
        }
        Err(Some(last_error))
    }

    /// Records the stop and tells the dispatcher to pause the partition.
    async fn stop(&mut self, record: &OwnedMessage, failure: &Failure) -> Next {
        if self.gone() {
            // Revoked meanwhile: the next owner tries the record again.
            return Next::Abandoned;
        }
        let shared = Arc::clone(&self.shared);
        let tp = self.tp.clone();
        let (group, offset) = (shared.group.clone(), record.offset());
        // PostgreSQL text cannot hold NUL; the error may quote the record.
        let (message_id, error) = (failure.message_id, failure.error.replace('\0', "\\0"));
        let Some(stop) = self
            .with_database(move |conn| {
                let (group, tp, error) = (group.clone(), tp.clone(), error.clone());
                Box::pin(async move {
                    let new = NewStop {
                        consumer_group: &group,
                        topic: &tp.topic,
                        kafka_partition: tp.partition,
                        kafka_offset: offset,
                        message_id,
                        error: &error,
                    };
                    stopped::record_async(conn, &new).await
                })
            })
            .await
        else {
            return Next::Abandoned;
        };
        if self.revoked.load(Ordering::SeqCst) {
            // Revoked while the stop was written: take it back, or the next
            // owner, which may already have passed its check, would find a
            // stop for a record it is about to apply.
            self.withdraw(stop.id).await;
            return Next::Abandoned;
        }
        let tp = self.tp.clone();
        shared.counters.count(Outcome::Stopped, &self.tp.topic);
        tracing::error!(partition = %tp, offset = stop.kafka_offset, stop_id = stop.id,
            "partition stopped; resume with `outbox partitions resume` once the cause is fixed");
        self.announce_stop(stop.id, stop.kafka_offset);
        Next::Stopped(stop.id, stop.kafka_offset)
    }

    /// Marks stop `stop_id` resumed; best effort (a stop left behind is shown
    /// by `outbox partitions list` and only pauses the partition until resumed).
    async fn withdraw(&self, stop_id: i64) {
        let result = match checkout(&self.shared.pool).await {
            Ok(mut conn) => stopped::resume_by_id_async(&mut conn, stop_id)
                .await
                .map_err(|error| error_chain(&error)),
            Err(error) => Err(error),
        };
        if let Err(error) = result {
            tracing::warn!(partition = %self.tp, stop_id, %error,
                "could not withdraw the stop of a revoked partition");
        }
    }

    fn announce_stop(&self, stop_id: i64, offset: i64) {
        let _ = self.shared.control.send(Control::Stop {
            tp: self.tp.clone(),
            task: self.id,
            stop_id,
            offset,
        });
    }
}

/// A header's value as text, if present and UTF-8.
pub(crate) fn raw_header(headers: &[RawHeader<'_>], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|header| header.name == name.as_bytes())
        .and_then(|header| header.value)
        .and_then(|value| std::str::from_utf8(value).ok())
        .map(str::to_owned)
}
