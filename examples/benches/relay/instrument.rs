//! What the relay under test did, seen from outside it: its metrics (through
//! a recorder) and its publisher (through a wrapper).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, LazyLock, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use metrics::{Counter, Histogram};
use outbox::{Delivery, MessageId, OutgoingRecord, PublishError, Publisher};

use crate::common::recorder::{OnIncrement, OnRecord, Watch};

/// What the relay under test did, seen from outside it: its metrics (through a
/// recorder) and its publisher (through [`Instrumented`]). One relay runs at a
/// time. Nothing here depends on how the relay loop is organised.
pub(crate) struct Stats {
    base: Instant,
    pub(crate) published: AtomicU64,
    pub(crate) failed: AtomicU64,
    target: AtomicU64,
    /// When `published` reached `target` (ns since `base`; 0: not yet).
    pub(crate) reached_at: AtomicU64,
    pub(crate) first_send: AtomicU64,
    pub(crate) sends: AtomicU64,
    pub(crate) send_ns: AtomicU64,
    pub(crate) batches: AtomicU64,
    pub(crate) batch_ns: AtomicU64,
    /// Requests to the schema registry (`outbox_schema_registry_requests_total`).
    pub(crate) registry_requests: AtomicU64,
    track_ids: AtomicBool,
    pub(crate) acks: Mutex<Vec<(MessageId, Instant)>>,
}

pub(crate) static STATS: LazyLock<Stats> = LazyLock::new(|| Stats {
    base: Instant::now(),
    published: AtomicU64::new(0),
    failed: AtomicU64::new(0),
    target: AtomicU64::new(u64::MAX),
    reached_at: AtomicU64::new(0),
    first_send: AtomicU64::new(0),
    sends: AtomicU64::new(0),
    send_ns: AtomicU64::new(0),
    batches: AtomicU64::new(0),
    batch_ns: AtomicU64::new(0),
    registry_requests: AtomicU64::new(0),
    track_ids: AtomicBool::new(false),
    acks: Mutex::new(Vec::new()),
});

/// Nanoseconds since [`Stats::base`], plus one (0 stands for "not yet").
pub(crate) fn now_ns() -> u64 {
    STATS.base.elapsed().as_nanos() as u64 + 1
}

pub(crate) fn instant_of(ns: u64) -> Instant {
    STATS.base + Duration::from_nanos(ns)
}

/// Starts counting towards `target` published records, recording when each
/// message id is acknowledged if `track_ids`.
pub(crate) fn reset_stats(target: u64, track_ids: bool) {
    let s = &*STATS;
    for a in [
        &s.published,
        &s.failed,
        &s.reached_at,
        &s.first_send,
        &s.sends,
        &s.send_ns,
        &s.batches,
        &s.batch_ns,
        &s.registry_requests,
    ] {
        a.store(0, Relaxed);
    }
    s.target.store(target, Relaxed);
    s.track_ids.store(track_ids, Relaxed);
    s.acks.lock().unwrap().clear();
}

static PUBLISHED: LazyLock<Counter> = LazyLock::new(|| {
    Counter::from_arc(Arc::new(OnIncrement(|value| {
        let s = &*STATS;
        let total = s.published.fetch_add(value, Relaxed) + value;
        if total >= s.target.load(Relaxed) {
            let _ = s.reached_at.compare_exchange(0, now_ns(), Relaxed, Relaxed);
        }
    })))
});

static FAILED: LazyLock<Counter> = LazyLock::new(|| {
    Counter::from_arc(Arc::new(OnIncrement(|value| {
        STATS.failed.fetch_add(value, Relaxed);
    })))
});

static REGISTRY_REQUESTS: LazyLock<Counter> = LazyLock::new(|| {
    Counter::from_arc(Arc::new(OnIncrement(|value| {
        STATS.registry_requests.fetch_add(value, Relaxed);
    })))
});

/// `outbox_relay_batch_seconds`: how many batches, and their summed duration.
static BATCH: LazyLock<Histogram> = LazyLock::new(|| {
    Histogram::from_arc(Arc::new(OnRecord(|value| {
        STATS.batches.fetch_add(1, Relaxed);
        STATS.batch_ns.fetch_add((value * 1e9) as u64, Relaxed);
    })))
});

/// Sees the relay's counters and its batch histogram; ignores the rest.
pub(crate) const RECORDER: Watch = Watch {
    counter: |name| match name {
        "outbox_relay_published_total" => Some(PUBLISHED.clone()),
        "outbox_relay_failed_total" => Some(FAILED.clone()),
        "outbox_schema_registry_requests_total" => Some(REGISTRY_REQUESTS.clone()),
        _ => None,
    },
    histogram: |name| match name {
        "outbox_relay_batch_seconds" => Some(BATCH.clone()),
        _ => None,
    },
};

/// A publisher timing each `send` of the publisher it wraps (two clock reads
/// and three relaxed atomics per record) and, when asked, recording when each
/// message id was acknowledged.
pub(crate) struct Instrumented<P>(pub(crate) P);

pub(crate) struct InstrumentedAck<A> {
    inner: A,
    id: Option<MessageId>,
}

impl<A> Future for InstrumentedAck<A>
where
    A: Future<Output = Result<Delivery, PublishError>> + Unpin,
{
    type Output = A::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let result = Pin::new(&mut this.inner).poll(cx);
        if let (Poll::Ready(Ok(_)), Some(id)) = (&result, this.id) {
            STATS.acks.lock().unwrap().push((id, Instant::now()));
        }
        result
    }
}

impl<P> Publisher for Instrumented<P>
where
    P: Publisher,
    P::Ack: Unpin,
{
    type Ack = InstrumentedAck<P::Ack>;

    fn send(&self, record: &OutgoingRecord<'_>) -> Result<Self::Ack, PublishError> {
        let s = &*STATS;
        let started = now_ns();
        let _ = s.first_send.compare_exchange(0, started, Relaxed, Relaxed);
        let id = if s.track_ids.load(Relaxed) {
            record
                .headers
                .iter()
                .find(|(name, _)| *name == "message_id")
                .and_then(|(_, value)| MessageId::parse(value).ok())
        } else {
            None
        };
        let inner = self.0.send(record)?;
        s.send_ns.fetch_add(now_ns() - started, Relaxed);
        s.sends.fetch_add(1, Relaxed);
        Ok(InstrumentedAck { inner, id })
    }

    fn flush(&self, timeout: Duration) -> Result<(), PublishError> {
        self.0.flush(timeout)
    }
}

/// Acknowledges every record at once: the relay's database work alone.
pub(crate) struct NullPublisher;

impl Publisher for NullPublisher {
    type Ack = std::future::Ready<Result<Delivery, PublishError>>;

    fn send(&self, _record: &OutgoingRecord<'_>) -> Result<Self::Ack, PublishError> {
        Ok(std::future::ready(Ok(Delivery {
            partition: 0,
            offset: 0,
        })))
    }

    fn flush(&self, _timeout: Duration) -> Result<(), PublishError> {
        Ok(())
    }
}
