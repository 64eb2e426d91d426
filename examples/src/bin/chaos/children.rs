//! The run's children, as the run starts them (`chaos relay …`, `chaos
//! consumer …`): the library's relay and consumer, each in a process of its
//! own so the fault injector can SIGKILL it. Each stops on SIGTERM, or when
//! its standard input closes (the run that started it has gone).

use std::time::Duration;

use outbox::kafka::KafkaPublisher;
use outbox::{BoxFuture, Context, Controller, Event, HandlerError, Message};
use outbox_diesel::Relay;
use outbox_diesel::consumer::{self, Consumer, ConsumerBuilder};
use outbox_diesel::fault_injection::FaultInjection;
use tokio::signal::unix::{SignalKind, signal};

use super::cli::{ConsumerArgs, RelayArgs};
use super::model::Items;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Logs of the library (warnings of outages, retries) on stderr, which the
/// run sends to the child's log file.
fn log_to_stderr() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
}

/// SIGTERM, Ctrl-C, or the end of standard input.
fn shutdown() -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate())?;
    let (closed_tx, closed) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
        let _ = closed_tx.send(());
    });
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = closed => {}
        }
    })
}

/// A relay with short waits (the run's faults are short).
pub(crate) async fn relay(args: RelayArgs) -> Result<(), BoxError> {
    log_to_stderr();
    let publisher = KafkaPublisher::new(&args.brokers)?;
    let relay = Relay::builder(&args.database_url, publisher)
        .poll_interval(Duration::from_millis(50))
        .backoff(Duration::from_millis(50), Duration::from_secs(2))
        .rebalance_interval(Duration::from_millis(200))
        .build()?;
    let stop = shutdown()?;
    eprintln!("chaos relay: running (pid {})", std::process::id());
    let report = relay.run(stop).await?;
    println!("published {}", report.published);
    Ok(())
}

/// The consumer of a child: the run's group and controller, its metrics
/// served, the library's handler failures injected.
fn build_consumer(args: &ConsumerArgs) -> Result<Consumer, BoxError> {
    let pool = consumer::pool(&args.database_url, 8)?;
    let controller = OnTopic::new(
        Items {
            consumer: args.name.clone(),
        },
        &args.topic,
    );
    let builder = Consumer::builder(&args.brokers, &args.group, pool)
        .controller(controller)
        .serve_metrics(([127, 0, 0, 1], args.metrics_port).into())
        .resume_poll_interval(Duration::from_millis(200))
        .set("auto.commit.interval.ms", args.auto_commit_ms.to_string())
        .set("fetch.wait.max.ms", "100")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500");
    let builder = handler_failures(builder, args.handler_failure_rate, args.fault_seed);
    Ok(builder.build()?)
}

/// A consumer child: waits until it can start, runs until told to stop.
pub(crate) async fn consumer(args: ConsumerArgs) -> Result<(), BoxError> {
    log_to_stderr();
    let mut stop = Box::pin(shutdown()?);
    // `run` refuses to start while the database or the brokers are down (it
    // says so at once, by design); a child started during an outage waits
    // for them instead, as a supervisor restarting it would. `run` checks
    // again as it starts, and a fault may land between the two checks: then
    // it is built and started again.
    let report = loop {
        let consumer = build_consumer(&args)?;
        let mut waited = 0;
        while let Err(error) = consumer.check().await {
            if waited % 10 == 0 {
                eprintln!("chaos consumer {}: waiting to start: {error}", args.name);
            }
            waited += 1;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        eprintln!(
            "chaos consumer {}: running (pid {})",
            args.name,
            std::process::id()
        );
        match consumer.run(&mut stop).await {
            Err(error @ outbox_diesel::Error::NotReady { .. }) => {
                eprintln!(
                    "chaos consumer {}: could not start after its check: {error}; trying again",
                    args.name
                );
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            other => break other?,
        }
    };
    println!(
        "processed={} duplicates={} retries={} failed={} stopped={} dead_lettered={}",
        report.processed,
        report.duplicates,
        report.retries,
        report.failed,
        report.stopped,
        report.dead_lettered
    );
    Ok(())
}

/// Handler failures injected by the library's fault injection (active only
/// with `OUTBOX_FAULT_INJECTION=on`, which the run sets on its consumers),
/// counted in `outbox_faults_injected_total{kind="handler_failure"}`.
fn handler_failures(builder: ConsumerBuilder, rate: f64, seed: u64) -> ConsumerBuilder {
    if rate <= 0.0 {
        return builder;
    }
    builder.fault_injection(FaultInjection::new().fail_handlers(rate).seed(seed))
}

/// A controller read from the run's topic: the model's topic is a constant,
/// each run sends its messages to a topic of its own.
struct OnTopic<C> {
    inner: C,
    topics: &'static [&'static str],
}

impl<C: Controller> OnTopic<C> {
    fn new(inner: C, topic: &str) -> Self {
        // One short name per process, held until it exits.
        let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
        OnTopic {
            inner,
            topics: Box::leak(vec![topic].into_boxed_slice()),
        }
    }
}

impl<C: Controller> Controller for OnTopic<C> {
    fn route(&self) -> &str {
        self.inner.route()
    }

    fn topics(&self) -> &[&str] {
        self.topics
    }

    fn handles(&self, event: &Event) -> bool {
        self.inner.handles(event)
    }

    fn strict(&self) -> bool {
        self.inner.strict()
    }

    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context<'_>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        self.inner.handle(ctx, message)
    }
}
