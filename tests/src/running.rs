//! The relay and the consumer run as tasks of the test's runtime, until the
//! test stops them.

use std::fmt::Debug;
use std::pin::Pin;
use std::time::Duration;

use outbox::kafka::KafkaPublisher;
use outbox_diesel::consumer::{ConsumerBuilder, ConsumerReport};
use outbox_diesel::{Relay, RelayBuilder, RelayReport};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a service has to stop once asked to.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// What a service running as a [`Running`] task waits on to stop.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A service (the relay, a consumer) running as a task until the test
/// [`stop`](Self::stop)s it, for its report `R`; aborted where it stands if
/// dropped first.
///
/// # Examples
///
/// ```no_run
/// # async fn example() {
/// use outbox_tests::{RunningRelay, relay_test_settings};
///
/// let publisher = outbox::kafka::KafkaPublisher::new(&outbox_tests::kafka_brokers()).unwrap();
/// let relay = relay_test_settings(outbox_diesel::Relay::builder("postgres://...", publisher));
/// let relay = RunningRelay::spawn(relay.build().unwrap());
/// // ... enqueue, and wait until it is sent ...
/// assert!(!relay.is_finished());
/// let report = relay.stop().await;
/// # }
/// ```
pub struct Running<R> {
    what: &'static str,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<outbox_diesel::Result<R>>>,
}

impl<R: Send + 'static> Running<R> {
    /// Spawns `run(shutdown)`: `what` runs until `shutdown` resolves. `what`
    /// names it in failure messages ("the relay").
    pub fn start<F>(what: &'static str, run: impl FnOnce(Shutdown) -> F) -> Self
    where
        F: Future<Output = outbox_diesel::Result<R>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(run(Box::pin(async {
            stopped.await.ok();
        })));
        Running {
            what,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks it to stop and returns its report.
    ///
    /// # Panics
    ///
    /// When it panicked, returned an error or took longer than
    /// [`STOP_TIMEOUT`] to stop.
    pub async fn stop(mut self) -> R {
        self.stop.take().expect("not stopped yet").send(()).ok();
        let task = self.task.take().expect("not stopped yet");
        let what = self.what;
        match tokio::time::timeout(STOP_TIMEOUT, task).await {
            Err(_) => panic!("{what} did not stop within {STOP_TIMEOUT:?} of being asked to"),
            Ok(Err(join)) => panic!("{what}'s task failed: {join}"),
            Ok(Ok(Err(error))) => panic!("{what} returned an error: {error:?}"),
            Ok(Ok(Ok(report))) => report,
        }
    }

    /// Aborts its task where it stands (as a crash of the task would) and
    /// waits until it is gone.
    ///
    /// # Panics
    ///
    /// When it had ended on its own or its task panicked.
    pub async fn abort(mut self)
    where
        R: Debug,
    {
        let task = self.task.take().expect("not stopped yet");
        task.abort();
        match task.await {
            Err(join) if join.is_cancelled() => {}
            Err(join) => panic!("{}'s task failed: {join}", self.what),
            Ok(result) => panic!(
                "{} stopped on its own before the abort: {result:?}",
                self.what
            ),
        }
    }

    /// Whether its task has ended (it never should before being stopped).
    pub fn is_finished(&self) -> bool {
        self.task.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Fails the test if its task has ended.
    pub fn assert_running(&self) {
        assert!(!self.is_finished(), "{} stopped on its own", self.what);
    }
}

impl<R> Drop for Running<R> {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// A relay running as a task.
pub type RunningRelay = Running<RelayReport>;

impl Running<RelayReport> {
    /// Runs `relay` until stopped.
    pub fn spawn(relay: Relay<KafkaPublisher>) -> Self {
        Running::start("the relay", |shutdown| relay.run(shutdown))
    }
}

/// A consumer running as a task.
pub type RunningConsumer = Running<ConsumerReport>;

impl Running<ConsumerReport> {
    /// Builds the consumer and runs it until stopped.
    ///
    /// # Panics
    ///
    /// When it does not build.
    pub fn spawn(builder: ConsumerBuilder) -> Self {
        let consumer = builder.build().expect("the consumer builds");
        Running::start("the consumer", |shutdown| consumer.run(shutdown))
    }
}

/// The relay settings of the tests, so they run fast: 50 ms poll, backoff
/// from 50 ms to 2 s, shares of shards checked every 200 ms.
///
/// # Examples
///
/// ```no_run
/// let publisher = outbox::kafka::KafkaPublisher::new("127.0.0.1:59092")?;
/// let relay = outbox_tests::relay_test_settings(outbox_diesel::Relay::builder(
///     "postgres://postgres@127.0.0.1:54329/outbox_test",
///     publisher,
/// ))
/// .batch_size(100)
/// .build()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn relay_test_settings<P: outbox::Publisher>(builder: RelayBuilder<P>) -> RelayBuilder<P> {
    builder
        .poll_interval(Duration::from_millis(50))
        .backoff(Duration::from_millis(50), Duration::from_secs(2))
        .rebalance_interval(Duration::from_millis(200))
}

/// The consumer settings of the tests: resumes seen within 100 ms, offsets
/// committed every 200 ms, fetches answered within 100 ms, a group member
/// declared dead after 6 s (the broker's minimum).
///
/// # Examples
///
/// ```no_run
/// use outbox_diesel::consumer::{self, Consumer};
///
/// let pool = consumer::pool("postgres://postgres@127.0.0.1:54329/outbox_test", 8)?;
/// let builder = outbox_tests::consumer_test_settings(Consumer::builder(
///     "127.0.0.1:59092",
///     "billing",
///     pool,
/// ));
/// # Ok::<(), outbox_diesel::Error>(())
/// ```
pub fn consumer_test_settings(builder: ConsumerBuilder) -> ConsumerBuilder {
    builder
        .resume_poll_interval(Duration::from_millis(100))
        .set("auto.commit.interval.ms", "200")
        .set("fetch.wait.max.ms", "100")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
}
