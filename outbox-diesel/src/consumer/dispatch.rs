//! The dispatcher: reads the consumer's records and hands each to its
//! partition's task; pauses, resumes and seeks partitions for them.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::Message as _;
use rdkafka::Offset;
use rdkafka::consumer::Consumer as _;
use rdkafka::error::KafkaError;
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;
use super::kafka::{Control, RevokedFlags, Tp};
use super::worker::{Item, PartitionTask, Queue, weight};

/// How long a seek may wait for librdkafka.
const SEEK_TIMEOUT: Duration = Duration::from_secs(10);

/// How long before a projection's refused seek is asked again.
const SEEK_RETRY: Duration = Duration::from_millis(200);

/// Stopped partitions: the stop row and the offset to read again from.
pub(crate) type StoppedMap = Arc<Mutex<HashMap<Tp, (i64, i64)>>>;

/// The partitions this process's consumers hold stopped. Each consumer adds
/// and removes its own (several may run in one process), and registers it at
/// start so that it shows, at 0, before any partition stops.
fn stopped_gauge() -> metrics::Gauge {
    metrics::gauge!("outbox_consumer_stopped_partitions")
}

struct Task {
    id: u64,
    /// The number of the task's latest seek to its stored position.
    seeks: Arc<std::sync::atomic::AtomicU64>,
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
    next_task_id: u64,
}

impl Dispatcher {
    pub(crate) fn new(
        shared: Arc<Shared>,
        control: UnboundedReceiver<Control>,
        revoked: RevokedFlags,
        stopped: StoppedMap,
        shutdown: watch::Sender<bool>,
    ) -> Self {
        stopped_gauge().increment(0.0);
        Dispatcher {
            shared,
            control,
            revoked,
            stopped,
            shutdown,
            tasks: HashMap::new(),
            retiring: HashMap::new(),
            next_task_id: 0,
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
                        self.on_consumer_error(&error);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        let _ = self.shutdown.send(true);
        // Its stops stay in the table; this consumer no longer holds them.
        if let Ok(mut stopped) = self.stopped.lock() {
            stopped_gauge().decrement(stopped.len() as f64);
            stopped.clear();
        }
        tracing::info!(
            partitions = self.tasks.len() + self.retiring.len(),
            "shutting down: partition tasks finish the record in hand"
        );
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

    /// An error `recv` returned. librdkafka reported it to the consumer's
    /// context first, which logged it (repeats summarised): logging it again
    /// here would log every broker outage twice. A fatal one ends what the
    /// client can do, and is said loudly, once per window.
    fn on_consumer_error(&self, error: &KafkaError) {
        if let KafkaError::MessageConsumptionFatal(code) = error {
            if let Some(repeats) = self.shared.warnings.admit(&format!("fatal|{code}")) {
                tracing::error!(%error, "Kafka consumer stopped on a fatal error; restart it{repeats}");
            }
        } else {
            tracing::debug!(%error, "consumer error");
        }
    }

    fn dispatch(&mut self, record: rdkafka::message::OwnedMessage) {
        let tp = Tp::new(record.topic(), record.partition());
        let buffer = self.shared.partition_buffer;
        let task = self.task(&tp);
        let weight = weight(&record);
        let queued = task.queue.bytes.fetch_add(weight, Ordering::SeqCst) + weight;
        // Blocked before the record is sent: a task that drains its queue
        // from here on sees the flag and asks for the resume.
        let block = queued > buffer && !task.queue.blocked.swap(true, Ordering::SeqCst);
        // A send fails only when the task has ended: the dispatcher learns it
        // with the next record (see `task`), which reads this one again.
        let _ = task.items.send(Item::Record(record));
        if block {
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
            let previous = match self.tasks.remove(tp) {
                Some(task) => {
                    self.recover_from_crash(tp, &task);
                    Some(task.join)
                }
                None => self.retiring.remove(tp),
            };
            self.start_task(tp, previous);
        }
        &self.tasks[tp]
    }

    /// A task that ended though its partition was neither revoked nor shut
    /// down (a bug, since handler panics are caught): read its partition again
    /// from the record it had in hand, so nothing after it is stored first.
    fn recover_from_crash(&self, tp: &Tp, task: &Task) {
        if task.revoked.load(Ordering::SeqCst) || *self.shutdown.borrow() {
            return;
        }
        let in_hand = task.queue.in_hand.load(Ordering::SeqCst);
        tracing::error!(partition = %tp, in_hand, "partition task ended unexpectedly; reading again");
        if in_hand >= 0 {
            self.seek(tp, in_hand);
        }
        self.resume(tp);
    }

    fn start_task(&mut self, tp: &Tp, previous: Option<JoinHandle<()>>) {
        let (items, receiver) = mpsc::unbounded_channel();
        let queue = Arc::new(Queue::default());
        let revoked = Arc::new(AtomicBool::new(false));
        if let Ok(mut flags) = self.revoked.lock() {
            flags.insert(tp.clone(), Arc::clone(&revoked));
        }
        self.next_task_id += 1;
        let task = PartitionTask {
            id: self.next_task_id,
            shared: Arc::clone(&self.shared),
            tp: tp.clone(),
            items: receiver,
            queue: Arc::clone(&queue),
            revoked: Arc::clone(&revoked),
            previous,
            shutdown: self.shutdown.subscribe(),
            position: None,
            skipped: HashMap::new(),
            seeks: 0,
            unsaved: None,
        };
        let join = tokio::spawn(task.run());
        self.tasks.insert(
            tp.clone(),
            Task {
                id: self.next_task_id,
                seeks: Arc::default(),
                items,
                queue,
                revoked,
                join,
            },
        );
    }

    /// The live task of `tp` if it is task `id`: messages of an earlier task
    /// (one that lost its partition meanwhile) are ignored.
    fn current(&self, tp: &Tp, id: u64) -> Option<&Task> {
        self.tasks.get(tp).filter(|task| {
            task.id == id && !task.revoked.load(Ordering::SeqCst) && !task.join.is_finished()
        })
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Assigned(partitions) => {
                for tp in partitions {
                    let held = self.tasks.get(&tp).is_some_and(|task| {
                        !task.revoked.load(Ordering::SeqCst) && !task.join.is_finished()
                    });
                    self.task(&tp);
                    if self.shared.projection.is_some() && !held {
                        // Read from the stored position, once its new task
                        // has it (its `Seek` resumes the partition).
                        self.pause(&tp);
                    } else {
                        // A fresh assignment reads; its task re-pauses it if
                        // the group has it stopped.
                        self.resume(&tp);
                    }
                }
            }
            Control::Seek {
                tp,
                task,
                offset,
                seek,
            } => {
                let Some(live) = self.current(&tp, task) else {
                    return;
                };
                // A retry of a seek the task has asked again since: dropped.
                if live.seeks.load(Ordering::SeqCst) > seek {
                    return;
                }
                live.seeks.store(seek, Ordering::SeqCst);
                if let Some(offset) = offset {
                    self.pause(&tp);
                    // Right after an assignment librdkafka may not take a
                    // seek yet: asked again shortly, the task still waiting.
                    if !self.seek(&tp, offset) {
                        let control = self.shared.control.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(SEEK_RETRY).await;
                            let _ = control.send(Control::Seek {
                                tp,
                                task,
                                offset: Some(offset),
                                seek,
                            });
                        });
                        return;
                    }
                    // Records sent before this marker were read before the seek.
                    let _ = live.items.send(Item::Resume {
                        offset,
                        seek: Some(seek),
                    });
                    tracing::debug!(partition = %tp, offset, "projection sought to its stored position");
                }
                let blocked = live.queue.blocked.load(Ordering::SeqCst);
                let stopped = self
                    .stopped
                    .lock()
                    .map(|s| s.contains_key(&tp))
                    .unwrap_or(false);
                if !blocked && !stopped {
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
                task,
                stop_id,
                offset,
            } => {
                if self.current(&tp, task).is_none() {
                    return;
                }
                self.pause(&tp);
                if let Ok(mut stopped) = self.stopped.lock()
                    && stopped.insert(tp, (stop_id, offset)).is_none()
                {
                    stopped_gauge().increment(1.0);
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
                let live = self.tasks.get(&tp).filter(|task| {
                    !task.revoked.load(Ordering::SeqCst) && !task.join.is_finished()
                });
                let Some(task) = live else {
                    // Not ours any more: its next owner reads from the committed offset.
                    self.forget_stop(&tp);
                    return;
                };
                // Seek while still paused, so nothing past `offset` is read
                // first; on failure stay paused: the watcher asks again.
                if !self.seek(&tp, offset) {
                    return;
                }
                // Records sent before this marker were read before the seek.
                let _ = task.items.send(Item::Resume { offset, seek: None });
                let blocked = task.queue.blocked.load(Ordering::SeqCst);
                self.forget_stop(&tp);
                if !blocked {
                    self.resume(&tp);
                }
                tracing::info!(partition = %tp, offset, "partition resumed");
            }
            Control::Reposition => {
                for task in self.tasks.values() {
                    let _ = task.items.send(Item::Reposition);
                }
            }
            Control::Unblock { tp, task } => {
                let stopped = self
                    .stopped
                    .lock()
                    .map(|s| s.contains_key(&tp))
                    .unwrap_or(false);
                if self.current(&tp, task).is_some() && !stopped {
                    self.resume(&tp);
                }
            }
        }
    }

    fn forget_stop(&self, tp: &Tp) {
        if let Ok(mut stopped) = self.stopped.lock()
            && stopped.remove(tp).is_some()
        {
            stopped_gauge().decrement(1.0);
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

    /// Whether the seek took; a failure is logged (and retried by the caller).
    fn seek(&self, tp: &Tp, offset: i64) -> bool {
        let result = self.shared.consumer.seek(
            &tp.topic,
            tp.partition,
            Offset::Offset(offset),
            SEEK_TIMEOUT,
        );
        if let Err(error) = &result {
            tracing::warn!(partition = %tp, offset, %error, "seek failed");
        }
        result.is_ok()
    }
}
