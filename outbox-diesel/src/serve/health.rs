//! What `/health/live` and `/health/ready` answer: the state of each relay and
//! consumer of the process, set by their loops and probes.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use serde::Serialize;

/// The health of the relays and consumers of one process, shared by them and
/// the [`MetricsServer`](super::MetricsServer) that reports it.
///
/// Each relay or consumer given this handle registers a [`Component`] when it
/// starts running, and the process is:
///
/// - **live** unless a component's loop has *died*: returned with an error
///   after it started, or panicked. With no component registered, it is live
///   as long as the server answers. A liveness probe failing is the signal to
///   restart the process.
/// - **ready** when it is live and every component is connected to both
///   PostgreSQL and Kafka: its last database session, checkout or probe
///   succeeded, and its last metadata request to the brokers did. For a relay,
///   Kafka is also not ready after a publish failed, until one succeeds or no
///   row is left to publish: brokers that answer metadata requests but refuse
///   every record (too few in-sync replicas, say) do not make it ready. A
///   component that has not reached a service yet is not ready.
///
/// When a component's loop ends:
///
/// - after a **shutdown** (the future given to `run` completed, or `run`'s
///   own future was dropped), the component is removed: a process that stops
///   a relay or consumer on purpose stays live;
/// - after a **failure**, it stays, marked not running with the reason, and
///   keeps the process not live **until a component of the same name
///   registers**, which replaces it. So a process that restarts a failed
///   relay or consumer in place (with the same `Health`) is live again once
///   the new one runs; one that does not is restarted by its supervisor.
///
/// A failed probe or session never makes a component not live: relays and
/// consumers wait outages out by themselves, so a failing *ready* is a reason
/// to look, not to restart. A partition a consumer stopped on a record it
/// could not apply does not make it unready either (the other partitions go
/// on, and restarting would not help); it shows in the gauge
/// `outbox_consumer_stopped_partitions` and in `outbox partitions list`, as
/// parked outbox rows do in `outbox_relay_rows_parked`.
///
/// Each state is the result of the latest attempt *started*: a slow check
/// that began before a newer one finished does not overwrite it.
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
///
/// // Its loop dies: not live, until a relay registers again.
/// relay.failed("the session panicked");
/// assert!(!health.report().live);
/// let restarted = health.component("relay");
/// assert!(health.report().live);
/// assert_eq!(health.report().components.len(), 1);
///
/// // A loop ended by shutdown leaves nothing behind.
/// restarted.finished();
/// assert!(health.report().components.is_empty());
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
/// let relay = health.component("relay");
/// relay.database_ok();
/// relay.kafka_ok();
/// assert!(health.report().ready);
///
/// // The brokers answer, but refuse records: not ready until one goes through.
/// relay.publish_failed("Broker: Not enough in-sync replicas");
/// relay.kafka_ok();
/// assert!(!health.report().ready);
/// relay.publish_ok();
/// assert!(health.report().ready);
/// ```
#[derive(Clone)]
pub struct Component {
    health: Health,
    state: Arc<State>,
}

struct State {
    name: String,
    /// `None` while the loop runs; why it died, once it has.
    failure: Mutex<Option<String>>,
    database: Check,
    /// The brokers answer (a metadata request).
    kafka: Check,
    /// The last publish went through (a relay's; nobody else sets it).
    publishing: Check,
}

/// The outcome of the latest attempt at one service, when it started.
#[derive(Default)]
struct Check {
    last: Mutex<Attempt>,
}

#[derive(Clone, Default)]
struct Attempt {
    started: Option<Instant>,
    outcome: Outcome,
}

#[derive(Clone, Default)]
enum Outcome {
    #[default]
    NotYet,
    Up,
    Down(String),
}

/// Locks, taking over a mutex poisoned by a panic elsewhere: every state here
/// is whole after each store.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Check {
    /// Records the outcome of an attempt begun at `started`, unless a later
    /// attempt has recorded its own.
    fn record(&self, started: Instant, outcome: Outcome) {
        let mut last = lock(&self.last);
        if last.started.is_some_and(|newer| newer > started) {
            return;
        }
        *last = Attempt {
            started: Some(started),
            outcome,
        };
    }

    fn outcome(&self) -> Outcome {
        lock(&self.last).outcome.clone()
    }
}

impl Outcome {
    fn of(result: Result<(), String>) -> Self {
        match result {
            Ok(()) => Outcome::Up,
            Err(reason) => Outcome::Down(reason),
        }
    }

    fn report(self) -> CheckReport {
        match self {
            Outcome::Up => CheckReport {
                ready: true,
                reason: None,
            },
            Outcome::Down(reason) => CheckReport {
                ready: false,
                reason: Some(reason),
            },
            Outcome::NotYet => CheckReport {
                ready: false,
                reason: Some("not reached yet".to_owned()),
            },
        }
    }
}

impl State {
    fn report(&self) -> ComponentReport {
        let failure = lock(&self.failure).clone();
        // Brokers out of reach say more than the publish that then failed.
        let kafka = match (self.kafka.outcome(), self.publishing.outcome()) {
            (Outcome::Up, Outcome::Down(reason)) => Outcome::Down(reason),
            (reachable, _) => reachable,
        };
        ComponentReport {
            name: self.name.clone(),
            running: failure.is_none(),
            failure,
            database: self.database.outcome().report(),
            kafka: kafka.report(),
        }
    }

    fn is_failed(&self) -> bool {
        lock(&self.failure).is_some()
    }
}

impl Health {
    /// A health with no component: live and ready until one registers.
    pub fn new() -> Self {
        Health::default()
    }

    /// Registers a component named `name` (`relay`, `consumer`, or a name of
    /// yours), running and not yet connected. It takes the place of a failed
    /// component of the same name, if there is one (a restart); components
    /// that run are never replaced, so two of one name may run side by side.
    pub fn component(&self, name: impl Into<String>) -> Component {
        let state = Arc::new(State {
            name: name.into(),
            failure: Mutex::new(None),
            database: Check::default(),
            kafka: Check::default(),
            publishing: Check::default(),
        });
        let mut components = lock(&self.components);
        let failed = components
            .iter()
            .position(|other| other.name == state.name && other.is_failed());
        match failed {
            Some(index) => components[index] = Arc::clone(&state),
            None => components.push(Arc::clone(&state)),
        }
        Component {
            health: self.clone(),
            state,
        }
    }

    /// Whether the process is live and ready, and why not.
    pub fn report(&self) -> HealthReport {
        let components: Vec<ComponentReport> =
            lock(&self.components).iter().map(|s| s.report()).collect();
        let live = components.iter().all(|c| c.running);
        let ready = live && components.iter().all(|c| c.database.ready && c.kafka.ready);
        HealthReport {
            live,
            ready,
            components,
        }
    }

    fn remove(&self, state: &Arc<State>) {
        lock(&self.components).retain(|other| !Arc::ptr_eq(other, state));
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
        self.database_checked(Instant::now(), Ok(()));
    }

    /// The database could not be reached or used; `reason` says why (give it
    /// without passwords).
    pub fn database_failed(&self, reason: impl fmt::Display) {
        self.database_checked(Instant::now(), Err(reason.to_string()));
    }

    /// The component's last request to the brokers (a metadata request)
    /// succeeded.
    pub fn kafka_ok(&self) {
        self.kafka_checked(Instant::now(), Ok(()));
    }

    /// The brokers could not be reached or refused a request; `reason` says why.
    pub fn kafka_failed(&self, reason: impl fmt::Display) {
        self.kafka_checked(Instant::now(), Err(reason.to_string()));
    }

    /// A record was published, or none is left to publish: a failure recorded
    /// with [`publish_failed`](Self::publish_failed) no longer holds Kafka
    /// not ready.
    pub fn publish_ok(&self) {
        self.state.publishing.record(Instant::now(), Outcome::Up);
    }

    /// A publish failed and the record waits for a retry; `reason` says why.
    /// Kafka is not ready until [`publish_ok`](Self::publish_ok), whatever the
    /// brokers answer to metadata requests meanwhile.
    pub fn publish_failed(&self, reason: impl fmt::Display) {
        self.state
            .publishing
            .record(Instant::now(), Outcome::Down(reason.to_string()));
    }

    /// The component's loop returned on shutdown: it is removed from the
    /// health. Does nothing once it [`failed`](Self::failed).
    pub fn finished(&self) {
        if !self.state.is_failed() {
            self.health.remove(&self.state);
        }
    }

    /// The component's loop died (`reason` says how): the process is not live
    /// until a component of the same name registers. The first reason given
    /// is kept.
    pub fn failed(&self, reason: impl fmt::Display) {
        let mut failure = lock(&self.state.failure);
        if failure.is_none() {
            *failure = Some(reason.to_string());
        }
    }

    /// A database check begun at `started` ended with `result`.
    pub(crate) fn database_checked(&self, started: Instant, result: Result<(), String>) {
        self.state.database.record(started, Outcome::of(result));
    }

    /// A metadata request begun at `started` ended with `result`.
    pub(crate) fn kafka_checked(&self, started: Instant, result: Result<(), String>) {
        self.state.kafka.record(started, Outcome::of(result));
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
    /// No component's loop has died.
    pub live: bool,
    /// Live, and every component reaches PostgreSQL and Kafka.
    pub ready: bool,
    /// Each component, in the order they registered (a restarted one in the
    /// place of the one it replaced).
    pub components: Vec<ComponentReport>,
}

/// One component of a [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ComponentReport {
    /// `relay`, `consumer`, or the name it registered with.
    pub name: String,
    /// Its loop runs (it has not died).
    pub running: bool,
    /// How its loop died, when it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    /// PostgreSQL.
    pub database: CheckReport,
    /// Kafka: the brokers answer and, for a relay, its last publish went
    /// through (or nothing is left to publish).
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
    use std::time::Duration;

    use super::*;

    fn connected(health: &Health, name: &str) -> Component {
        let component = health.component(name);
        component.database_ok();
        component.kafka_ok();
        component
    }

    #[test]
    fn ready_needs_every_component_on_both_services() {
        let health = Health::new();
        connected(&health, "relay");
        let consumer = health.component("consumer");
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
    fn a_failed_loop_is_neither_live_nor_ready_and_says_why() {
        let health = Health::new();
        let relay = connected(&health, "relay");
        relay.failed("the relay panicked");
        relay.failed("a later reason");
        relay.finished();
        let report = health.report();
        assert!(!report.live);
        assert!(!report.ready);
        assert_eq!(
            report.components[0].failure.as_deref(),
            Some("the relay panicked")
        );
        assert_eq!(
            serde_json::to_string(&report.components[0]).unwrap(),
            r#"{"name":"relay","running":false,"failure":"the relay panicked","database":{"ready":true},"kafka":{"ready":true}}"#
        );
    }

    #[test]
    fn a_restart_of_the_same_name_replaces_the_failed_component() {
        let health = Health::new();
        connected(&health, "consumer");
        connected(&health, "relay").failed("lost");
        // Another name does not stand in for it.
        connected(&health, "worker");
        assert!(!health.report().live);
        let restarted = connected(&health, "relay");
        let report = health.report();
        assert!(report.live && report.ready, "{report:?}");
        let names: Vec<&str> = report.components.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["consumer", "relay", "worker"]);
        // A running component is never replaced: two of one name side by side.
        let second = health.component("relay");
        assert_eq!(health.report().components.len(), 4);
        second.finished();
        restarted.finished();
        let names: Vec<String> = health
            .report()
            .components
            .into_iter()
            .map(|c| c.name)
            .collect();
        assert_eq!(names, ["consumer", "worker"]);
    }

    #[test]
    fn a_shutdown_removes_the_component() {
        let health = Health::new();
        let relay = connected(&health, "relay");
        relay.finished();
        let report = health.report();
        assert!(report.live && report.ready && report.components.is_empty());
        // Its probes may still report once: into a state no longer shown.
        relay.kafka_failed("late");
        assert!(health.report().components.is_empty());
    }

    #[test]
    fn a_publish_failure_holds_kafka_not_ready_while_the_brokers_answer() {
        let health = Health::new();
        let relay = connected(&health, "relay");
        relay.publish_failed("publishing: Broker: Not enough in-sync replicas");
        for _ in 0..3 {
            // The metadata probe every 5 s: the brokers answer.
            relay.kafka_ok();
            let report = health.report();
            assert!(report.live && !report.ready);
            assert_eq!(
                report.components[0].kafka.reason.as_deref(),
                Some("publishing: Broker: Not enough in-sync replicas")
            );
        }
        // Brokers out of reach: that is what is said.
        relay.kafka_failed("all brokers down");
        assert_eq!(
            health.report().components[0].kafka.reason.as_deref(),
            Some("all brokers down")
        );
        relay.kafka_ok();
        assert!(!health.report().ready);
        relay.publish_ok();
        assert!(health.report().ready);
    }

    #[test]
    fn a_slow_check_does_not_overwrite_a_newer_one() {
        let health = Health::new();
        let relay = connected(&health, "relay");
        let slow_probe_started = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        relay.kafka_ok();
        relay.database_ok();
        relay.kafka_checked(slow_probe_started, Err("timed out".into()));
        assert!(health.report().ready, "{:?}", health.report());
        relay.database_checked(slow_probe_started, Err("timed out".into()));
        assert!(health.report().ready, "{:?}", health.report());
        relay.kafka_checked(Instant::now(), Err("refused".into()));
        assert!(!health.report().ready);
    }
}
