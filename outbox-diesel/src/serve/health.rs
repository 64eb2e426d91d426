//! What `/health/live` and `/health/ready` answer: the state of each relay and
//! consumer of the process, set by their loops and probes.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

/// The health of the relays and consumers of one process, shared by them and
/// the [`MetricsServer`](super::MetricsServer) that reports it.
///
/// Each relay or consumer given this handle registers a [`Component`] when it
/// starts running. The process is:
///
/// - **live** while every registered component's loop runs (a loop that has
///   returned, after a failure or a shutdown, makes it not live); with no
///   component registered, it is live as long as the server answers;
/// - **ready** when it is live and every component is connected to both
///   PostgreSQL and Kafka: its last database session or checkout and its last
///   broker request (a metadata request or a publish) succeeded. A component
///   that has not reached a service yet is not ready.
///
/// A partition a consumer stopped on a record it could not apply does not make
/// it unready (the other partitions go on, and restarting would not help); it
/// shows in the gauge `outbox_consumer_stopped_partitions` and in
/// `outbox partitions list`.
///
/// # Examples
///
/// ```
/// use outbox_diesel::serve::Health;
///
/// let health = Health::new();
/// assert!(health.report().ready, "nothing registered: nothing to wait for");
///
/// let relay = health.component("relay");
/// assert!(!health.report().ready, "not connected yet");
/// relay.database_ok();
/// relay.kafka_ok();
/// assert!(health.report().ready);
///
/// relay.database_failed("connection refused");
/// let report = health.report();
/// assert!(report.live && !report.ready);
/// assert_eq!(report.components[0].database.reason.as_deref(), Some("connection refused"));
/// ```
#[derive(Clone, Default)]
pub struct Health {
    components: Arc<Mutex<Vec<Arc<State>>>>,
}

/// One relay or consumer's part of a [`Health`]: running or not, and whether
/// it reaches PostgreSQL and Kafka.
///
/// # Examples
///
/// ```
/// use outbox_diesel::serve::Health;
///
/// let health = Health::new();
/// let consumer = health.component("consumer");
/// consumer.database_ok();
/// consumer.kafka_failed("all brokers down");
/// assert!(!health.report().ready);
/// consumer.stopped();
/// assert!(!health.report().live);
/// ```
#[derive(Clone)]
pub struct Component {
    state: Arc<State>,
}

struct State {
    name: String,
    running: AtomicBool,
    database: Check,
    kafka: Check,
}

/// Not checked yet, up, or down with a reason.
struct Check {
    status: AtomicU8,
    reason: Mutex<Option<String>>,
}

const UNKNOWN: u8 = 0;
const UP: u8 = 1;
const DOWN: u8 = 2;

impl Check {
    fn new() -> Self {
        Check {
            status: AtomicU8::new(UNKNOWN),
            reason: Mutex::new(None),
        }
    }

    fn ok(&self) {
        self.status.store(UP, Ordering::Release);
    }

    fn failed(&self, reason: String) {
        *self.reason.lock().unwrap_or_else(PoisonError::into_inner) = Some(reason);
        self.status.store(DOWN, Ordering::Release);
    }

    fn report(&self) -> CheckReport {
        match self.status.load(Ordering::Acquire) {
            UP => CheckReport {
                ready: true,
                reason: None,
            },
            DOWN => CheckReport {
                ready: false,
                reason: self
                    .reason
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone(),
            },
            _ => CheckReport {
                ready: false,
                reason: Some("not reached yet".to_owned()),
            },
        }
    }
}

impl Health {
    /// A health with no component: live and ready until one registers.
    pub fn new() -> Self {
        Health::default()
    }

    /// Registers a component named `name` (`relay`, `consumer`, or a name of
    /// yours), running and not yet connected.
    pub fn component(&self, name: impl Into<String>) -> Component {
        let state = Arc::new(State {
            name: name.into(),
            running: AtomicBool::new(true),
            database: Check::new(),
            kafka: Check::new(),
        });
        self.components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&state));
        Component { state }
    }

    /// Whether the process is live and ready, and why not.
    pub fn report(&self) -> HealthReport {
        let components: Vec<ComponentReport> = self
            .components
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|state| ComponentReport {
                name: state.name.clone(),
                running: state.running.load(Ordering::Acquire),
                database: state.database.report(),
                kafka: state.kafka.report(),
            })
            .collect();
        let live = components.iter().all(|c| c.running);
        let ready = live && components.iter().all(|c| c.database.ready && c.kafka.ready);
        HealthReport {
            live,
            ready,
            components,
        }
    }
}

impl fmt::Debug for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Health").field(&self.report()).finish()
    }
}

impl Component {
    /// The component's last database session or checkout succeeded.
    pub fn database_ok(&self) {
        self.state.database.ok();
    }

    /// The database could not be reached or used; `reason` says why (give it
    /// without passwords).
    pub fn database_failed(&self, reason: impl fmt::Display) {
        self.state.database.failed(reason.to_string());
    }

    /// The component's last request to the brokers succeeded.
    pub fn kafka_ok(&self) {
        self.state.kafka.ok();
    }

    /// The brokers could not be reached or refused a request; `reason` says why.
    pub fn kafka_failed(&self, reason: impl fmt::Display) {
        self.state.kafka.failed(reason.to_string());
    }

    /// The component's loop has returned: the process is no longer live.
    pub fn stopped(&self) {
        self.state.running.store(false, Ordering::Release);
    }
}

impl fmt::Debug for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Component")
            .field("name", &self.state.name)
            .finish_non_exhaustive()
    }
}

/// A snapshot of a [`Health`], as `/health/ready` prints it (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// Every component's loop runs.
    pub live: bool,
    /// Live, and every component reaches PostgreSQL and Kafka.
    pub ready: bool,
    /// Each component, in the order they registered.
    pub components: Vec<ComponentReport>,
}

/// One component of a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ComponentReport {
    /// `relay`, `consumer`, or the name it registered with.
    pub name: String,
    /// Its loop runs.
    pub running: bool,
    /// PostgreSQL.
    pub database: CheckReport,
    /// Kafka.
    pub kafka: CheckReport,
}

/// Whether a component reaches one service, and why not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CheckReport {
    /// The last attempt succeeded.
    pub ready: bool,
    /// Why not: the last error, or `not reached yet`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_needs_every_component_on_both_services() {
        let health = Health::new();
        let relay = health.component("relay");
        let consumer = health.component("consumer");
        relay.database_ok();
        relay.kafka_ok();
        consumer.database_ok();
        assert!(!health.report().ready);
        assert_eq!(
            health.report().components[1].kafka.reason.as_deref(),
            Some("not reached yet")
        );
        consumer.kafka_ok();
        assert!(health.report().ready);
        consumer.kafka_failed("broker down");
        consumer.kafka_ok();
        assert!(health.report().ready, "the last attempt counts");
    }

    #[test]
    fn a_stopped_loop_is_neither_live_nor_ready() {
        let health = Health::new();
        let relay = health.component("relay");
        relay.database_ok();
        relay.kafka_ok();
        relay.stopped();
        let report = health.report();
        assert!(!report.live);
        assert!(!report.ready);
    }
}
