//! The dispatcher: reads the consumer's records and hands each to its
//! partition's task; pauses, resumes and seeks partitions for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::Offset;
use rdkafka::consumer::Consumer as _;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;
use super::kafka::{Control, RevokedFlags, Tp};
use super::worker::{Item, PartitionTask, QUEUE_HIGH, Queue};

/// How long a seek may wait for librdkafka.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// Stopped partitions: the stop row and the offset to read again from.
pub(crate) type StoppedMap = Arc<Mutex<HashMap<Tp, (i64, i64)>>>;

struct Task {
    items: UnboundedSender<Item>,
    queue: Arc<Queue>,
    revoked: Arc<AtomicBool>,
    join: JoinHandle<()>,
}

pub(crate) struct Dispatcher {
    pub(crate) shared: Arc<Shared>,
    pub(crate) control: UnboundedReceiver<Control>,
    pub(crate) revoked: RevokedFlags,
    pub(crate) stopped: StoppedMap,
    pub(crate) shutdown: watch::Sender<bool>,
    tasks: HashMap<Tp, Task>,
    /// Tasks of revoked partitions, still finishing their record.
    retiring: HashMap<Tp, JoinHandle<()>>,
}

impl Dispatcher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        control: UnboundedReceiver<Control>,
        revoked: RevokedFlags,
        stopped: StoppedMap,
        shutdown: watch::Sender<bool>,
    ) -> Self {
        Dispatcher {
            shared,
            control,
            revoked,
            stopped,
            shutdown,
            tasks: HashMap::new(),
            retiring: HashMap::new(),
        }
    }

    /// Dispatches until `shutdown` completes; then lets every task finish the
    /// record in hand and commits what was applied.
    pub(crate) async fn run(mut self, shutdown: impl Future<Output = ()> + Send) {
        let shared = Arc::clone(&self.shared);
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(control) = self.control.recv() => self.on_control(control),
                record = shared.consumer.recv() => match record {
                    Ok(record) => self.dispatch(record.detach()),
                    Err(error) => {
                        tracing::warn!(%error, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let _ = self.shutdown.send(true);
        let joins: Vec<JoinHandle<()>> = self
            .tasks
            .drain()
            .map(|(_, task)| task.join)
            .chain(self.retiring.drain().map(|(_, join)| join))
            .collect();
        for join in joins {
            let _ = join.await;
        }
        if let Err(error) = shared
            .consumer
            .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        {
            tracing::debug!(%error, "final commit");
        }
    }

    fn dispatch(&mut self, record: rdkafka::message::OwnedMessage) {
        let tp = Tp::new(record.topic(), record.partition());
        let task = self.task(&tp);
        let queued = task.queue.len.fetch_add(1, Ordering::SeqCst) + 1;
        if task.items.send(Item::Record(record)).is_err() {
            // The task ended (shutdown): the record is read again next time.
            return;
        }
        if queued > QUEUE_HIGH && !task.queue.blocked.swap(true, Ordering::SeqCst) {
            self.pause(&tp);
        }
    }

    /// The live task of `tp`, started if there is none.
    fn task(&mut self, tp: &Tp) -> &Task {
        // A revoked task drops what it is sent: records of a partition assigned
        // again go to a new task, which starts after the old one ends.
        let live = self
            .tasks
            .get(tp)
            .is_some_and(|task| !task.revoked.load(Ordering::SeqCst) && !task.join.is_finished());
        if !live {
            let previous = self
                .retiring
                .remove(tp)
                .or_else(|| self.tasks.remove(tp).map(|task| task.join));
            let (items, receiver) = mpsc::unbounded_channel();
            let queue = Arc::new(Queue::default());
            let revoked = Arc::new(AtomicBool::new(false));
            if let Ok(mut flags) = self.revoked.lock() {
                flags.insert(tp.clone(), Arc::clone(&revoked));
            }
            let task = PartitionTask {
                shared: Arc::clone(&self.shared),
                tp: tp.clone(),
                items: receiver,
                queue: Arc::clone(&queue),
                revoked: Arc::clone(&revoked),
                previous,
                shutdown: self.shutdown.subscribe(),
            };
            let join = tokio::spawn(task.run());
            self.tasks.insert(
                tp.clone(),
                Task {
                    items,
                    queue,
                    revoked,
                    join,
                },
            );
        }
        &self.tasks[tp]
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Assigned(partitions) => {
                for tp in partitions {
                    // A fresh assignment reads; its task re-pauses it if the
                    // group has it stopped.
                    self.task(&tp);
                    self.resume(&tp);
                }
            }
            Control::Revoked(partitions) => {
                for tp in partitions {
                    if let Some(task) = self.tasks.remove(&tp) {
                        self.retiring.insert(tp.clone(), task.join);
                    }
                    self.forget_stop(&tp);
                }
                self.retiring.retain(|_, join| !join.is_finished());
            }
            Control::Stop {
                tp,
                stop_id,
                offset,
            } => {
                self.pause(&tp);
                if let Ok(mut stopped) = self.stopped.lock() {
                    stopped.insert(tp, (stop_id, offset));
                    metrics::gauge!("outbox_consumer_stopped_partitions").set(stopped.len() as f64);
                }
            }
            Control::Resumed {
                tp,
                stop_id,
                offset,
            } => {
                let current = self.stopped.lock().ok().and_then(|s| s.get(&tp).copied());
                if current.map(|(id, _)| id) != Some(stop_id) {
                    return;
                }
                // Seek while still paused, so nothing past `offset` is read first.
                self.seek(&tp, offset);
                self.forget_stop(&tp);
                let task = self.task(&tp);
                let _ = task.items.send(Item::Resume { offset });
                if !task.queue.blocked.load(Ordering::SeqCst) {
                    self.resume(&tp);
                }
                tracing::info!(partition = %tp, offset, "partition resumed");
            }
            Control::Unblock(tp) => {
                let stopped = self
                    .stopped
                    .lock()
                    .map(|s| s.contains_key(&tp))
                    .unwrap_or(false);
                if !stopped {
                    self.resume(&tp);
                }
            }
            Control::Reseek { tp, offset } => self.seek(&tp, offset),
        }
    }

    fn forget_stop(&self, tp: &Tp) {
        if let Ok(mut stopped) = self.stopped.lock()
            && stopped.remove(tp).is_some()
        {
            metrics::gauge!("outbox_consumer_stopped_partitions").set(stopped.len() as f64);
        }
    }

    fn pause(&self, tp: &Tp) {
        if let Err(error) = self.shared.consumer.pause(&tp.list()) {
            tracing::warn!(partition = %tp, %error, "pause failed");
        }
    }

    fn resume(&self, tp: &Tp) {
        if let Err(error) = self.shared.consumer.resume(&tp.list()) {
            tracing::debug!(partition = %tp, %error, "resume failed");
        }
    }

    fn seek(&self, tp: &Tp, offset: i64) {
        if let Err(error) = self.shared.consumer.seek(
            &tp.topic,
            tp.partition,
            Offset::Offset(offset),
            SEEK_TIMEOUT,
        ) {
            tracing::warn!(partition = %tp, offset, %error, "seek failed");
        }
    }
}
