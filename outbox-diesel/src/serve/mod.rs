//! Metrics and health over HTTP, for a relay or consumer run as its own
//! process (or beside your service's own endpoints).
//!
//! | endpoint | answers |
//! |---|---|
//! | `GET /metrics` | every `metrics` counter, gauge and histogram of the process, in Prometheus' text format |
//! | `GET /health/live` | 200 unless the loop of a registered relay or consumer has died (and not been restarted), else 503 |
//! | `GET /health/ready` | 200 when live and every relay and consumer reaches both PostgreSQL and Kafka, else 503 |
//!
//! Both health endpoints answer with a JSON [`HealthReport`] naming, per
//! component, what is not ready and why:
//!
//! ```text
//! {"live":true,"ready":false,"components":[{"name":"relay","running":true,
//!   "database":{"ready":false,"reason":"could not connect to PostgreSQL at postgres://app:***@db/app: …"},
//!   "kafka":{"ready":true}}]}
//! ```
//!
//! Any other path is a 404, any method but `GET` (and `HEAD`) a 405. See
//! [`Health`] for what *live* and *ready* mean exactly, and when each
//! component's state is updated.
//!
//! The relay ([`RelayBuilder::serve_metrics`](crate::RelayBuilder::serve_metrics)),
//! the consumer ([`ConsumerBuilder::serve_metrics`](crate::ConsumerBuilder::serve_metrics))
//! and `outbox relay --metrics-addr` start a server for themselves; to serve
//! several of them (or your own checks) on one address, start a
//! [`MetricsServer`] and give its [`Health`] to each with `.health(..)`.
//!
//! Metrics go through the process-global recorder of the `metrics` crate:
//! [`install_recorder`] installs a Prometheus one once and hands out its
//! handle on every later call.

mod health;
mod http;
mod probe;

use std::net::SocketAddr;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

pub use health::{CheckReport, Component, ComponentReport, Health, HealthReport};
pub(crate) use probe::{AbortOnDrop, probe_consumer, probe_kafka};

use crate::error::{Error, Result};

/// How often a running relay or consumer checks that it reaches the brokers
/// (a metadata request), and a consumer its database (a checkout and `SELECT 1`).
pub const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// How long one probe may take before it counts as failed: the metadata
/// request, or the checkout and `SELECT 1` together (shorter than the
/// consumer's own checkout timeout, so that readiness follows an outage
/// within one interval).
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// The handle of the Prometheus recorder this crate installed.
static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();
/// Held while installing, so that two threads do not both try.
static INSTALLING: Mutex<()> = Mutex::new(());

/// Installs a Prometheus recorder as the process's `metrics` recorder, once;
/// later calls return the handle of the same recorder.
///
/// # Errors
///
/// [`Error::MetricsRecorder`] when another recorder was installed in this
/// process (by you or another library): render that one yourself, or give a
/// handle to [`MetricsServer::start_with`].
///
/// # Examples
///
/// ```
/// let handle = outbox_diesel::serve::install_recorder()?;
/// metrics::counter!("orders_total").increment(1);
/// assert!(handle.render().contains("orders_total 1"));
/// // Installing again hands out the same recorder.
/// assert!(outbox_diesel::serve::install_recorder()?.render().contains("orders_total"));
/// # Ok::<(), outbox_diesel::Error>(())
/// ```
pub fn install_recorder() -> Result<PrometheusHandle> {
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let _installing = INSTALLING.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = RECORDER.get() {
        return Ok(handle.clone());
    }
    let recorder = PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| Error::MetricsRecorder)?;
    Ok(RECORDER.get_or_init(|| handle).clone())
}

/// An HTTP server answering `/metrics`, `/health/live` and `/health/ready`
/// (see the [module documentation](self)); it stops when dropped.
///
/// # Examples
///
/// One server for a relay and a consumer of the same process:
///
/// ```no_run
/// use outbox::kafka::KafkaPublisher;
/// use outbox_diesel::Relay;
/// use outbox_diesel::serve::{Health, MetricsServer};
///
/// # async fn run() -> Result<(), outbox_diesel::Error> {
/// let server = MetricsServer::start("0.0.0.0:9464".parse().unwrap(), Health::new()).await?;
/// let publisher = KafkaPublisher::new("127.0.0.1:59092")?;
/// let relay = Relay::builder("postgres://localhost/app", publisher)
///     .health(server.health().clone())
///     .build()?;
/// // … and `.health(server.health().clone())` on the consumer's builder.
/// relay.run(async { tokio::signal::ctrl_c().await.ok(); }).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    health: Health,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsServer {
    /// Listens on `addr` (port 0 picks a free one: see
    /// [`local_addr`](Self::local_addr)) with this crate's Prometheus recorder
    /// ([`install_recorder`]) and `health`. Must be called within a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Serve`] when `addr` cannot be listened on (in use, not this
    /// host's); [`Error::MetricsRecorder`] when another recorder is installed.
    pub async fn start(addr: SocketAddr, health: Health) -> Result<MetricsServer> {
        Self::start_with(addr, health, install_recorder()?).await
    }

    /// [`start`](Self::start) with a Prometheus recorder of your own (built
    /// with your buckets or labels and installed by you).
    ///
    /// # Errors
    ///
    /// [`Error::Serve`] when `addr` cannot be listened on.
    pub async fn start_with(
        addr: SocketAddr,
        health: Health,
        metrics: PrometheusHandle,
    ) -> Result<MetricsServer> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Serve { addr, source })?;
        let local = listener
            .local_addr()
            .map_err(|source| Error::Serve { addr, source })?;
        let endpoints = http::Endpoints {
            metrics,
            health: health.clone(),
        };
        let task = tokio::spawn(http::serve(listener, endpoints));
        tracing::info!(addr = %local, "serving /metrics, /health/live and /health/ready");
        Ok(MetricsServer {
            addr: local,
            health,
            task,
        })
    }

    /// The address listened on (with the port picked, when it was 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The health it reports; give a clone to each relay and consumer.
    pub fn health(&self) -> &Health {
        &self.health
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The metrics and health settings of a relay or consumer builder.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observe {
    addr: Option<SocketAddr>,
    health: Option<Health>,
}

impl Observe {
    pub(crate) fn serve(&mut self, addr: SocketAddr) {
        self.addr = Some(addr);
    }

    pub(crate) fn health(&mut self, health: Health) {
        self.health = Some(health);
    }

    /// Starts the server asked for, and registers the component `name`.
    pub(crate) async fn start(&self, name: &str) -> Result<Observed> {
        let health = self.health.clone().unwrap_or_default();
        let server = match self.addr {
            Some(addr) => Some(MetricsServer::start(addr, health.clone()).await?),
            None => None,
        };
        if server.is_none() && self.health.is_none() {
            // Nobody reads it: a health of its own, never served.
            return Ok(Observed {
                component: Health::new().component(name),
                _server: None,
            });
        }
        Ok(Observed {
            component: health.component(name),
            _server: server,
        })
    }
}

/// A running component's health, and its server if it has one. Dropped when
/// its loop returns: a return (or the loop's future dropped) is a shutdown
/// and removes the component; a panic marks it failed. A loop that returns
/// an error marks it [`failed`](Component::failed) itself first.
pub(crate) struct Observed {
    pub(crate) component: Component,
    _server: Option<MetricsServer>,
}

impl Drop for Observed {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.component.failed("its loop panicked");
        } else {
            self.component.finished();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observe(health: &Health) -> Observe {
        let mut observe = Observe::default();
        observe.health(health.clone());
        observe
    }

    #[tokio::test]
    async fn a_loop_that_returns_leaves_nothing_and_a_restart_is_live() {
        let health = Health::new();
        let observed = observe(&health).start("relay").await.unwrap();
        observed.component.database_ok();
        observed.component.kafka_ok();
        assert_eq!(health.report().components.len(), 1);
        drop(observed);
        assert!(health.report().components.is_empty());
        let _again = observe(&health).start("relay").await.unwrap();
        let report = health.report();
        assert!(report.live && !report.ready, "{report:?}");
    }

    #[tokio::test]
    async fn a_loop_that_panics_is_not_live_until_its_restart() {
        let health = Health::new();
        let settings = observe(&health);
        let died = tokio::spawn(async move {
            let _observed = settings.start("consumer").await.unwrap();
            tokio::task::yield_now().await;
            panic!("a bug");
        })
        .await;
        assert!(died.is_err());
        let report = health.report();
        assert!(!report.live);
        assert_eq!(
            report.components[0].failure.as_deref(),
            Some("its loop panicked")
        );
        let restarted = observe(&health).start("consumer").await.unwrap();
        let report = health.report();
        assert!(report.live, "{report:?}");
        assert_eq!(report.components.len(), 1);
        drop(restarted);
        assert!(health.report().components.is_empty());
    }
}
