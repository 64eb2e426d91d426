//! Fault injection for staging: make a fraction of the consumer's handler
//! calls fail (retriably) or wait, and a fraction of the relay's publishes
//! fail, to see how your services behave when things go wrong.
//!
//! It is **off unless two things say on**: the builder call
//! ([`ConsumerBuilder::fault_injection`](crate::ConsumerBuilder::fault_injection),
//! [`RelayBuilder::fault_injection`](crate::RelayBuilder::fault_injection))
//! *and* the environment variable [`ENV_VAR`] set to exactly `on` in the
//! process when `build()` runs. A builder call without it is logged once
//! (warning: configured but off, and how to enable it); any other value of
//! the variable is logged too and keeps it off. So a configuration copied to
//! production does nothing there unless production also sets the variable.
//!
//! When on, `run` logs a warning listing the fractions, the delay, the
//! protected names and the seed; the gauge `outbox_fault_injection_enabled`,
//! label `component` = `relay` or `consumer`, is 1 while that run lasts (the
//! number of such runs in the process) and back to 0 when it returns; and
//! every fault is counted in `outbox_faults_injected_total`, label
//! `kind` = `handler_failure`, `handler_delay` or `publish_failure` (and in
//! [`FaultInjection::injected`]).
//!
//! What each fault is:
//!
//! - **handler failure**: inside the record's transaction, after the inbox
//!   claim and before the controller runs, the apply fails with a retriable
//!   [`HandlerError`] whose text says `injected`. The
//!   transaction rolls back (the claim with it), so nothing is lost or applied
//!   twice; the consumer's [`FailurePolicy`](crate::FailurePolicy) treats it
//!   as any transient handler error: retries with backoff, then stops the
//!   partition or dead-letters the record once its attempts are spent. Each
//!   attempt draws again, so with a fraction `f` and `n` attempts a record
//!   meets its policy with probability `f^n`: **a fraction near 1 exhausts
//!   the attempts** and stops (or dead-letters) records.
//! - **handler delay**: in the same place, the apply waits the delay first,
//!   holding its transaction and connection as a slow handler would.
//! - **publish failure**: the relay's publisher is not called for the row; the
//!   row fails with a retriable error whose text says `injected`: it counts an
//!   attempt, its key's later rows wait, and the relay retries it after the
//!   first delay of its [`backoff`](crate::RelayBuilder::backoff) (an injected
//!   failure never lengthens the backoff, so the relay keeps its pace). It is
//!   never parked, does not mark Kafka not ready in the relay's health, and
//!   does not overwrite the row's `last_error` when a real failure wrote one
//!   (the real cause stays visible; a row with none gets the injected text).
//!
//! [Protected](FaultInjection::protect) names are never touched: a consumer
//! record whose route (its `to`, the controller's route) or topic is
//! protected, a relay row whose topic is.
//!
//! # What a seed reproduces
//!
//! Each choice is a hash of the [seed](FaultInjection::seed), the kind and
//! what is tried:
//!
//! - a handler call: the message id, the record's offset, the stop the
//!   partition was resumed from (if it is the resumed record) and the attempt;
//! - a publish: the outbox row's id and its attempts so far (stored in the
//!   row, so a restarted relay goes on drawing anew).
//!
//! So the same seed over the same records (or rows) injects the same faults:
//! a rerun reproduces a run. And nothing stays stuck: a record stopped (or
//! dead-lettered) because its attempts met injected failures draws anew once
//! resumed (a new stop each time) or replayed (a new offset), in this process
//! or after a restart; a row draws anew at each retry. Without a seed one is
//! picked at random at each `build()` and logged.
//!
//! # Examples
//!
//! ```no_run
//! use std::time::Duration;
//! use outbox_diesel::fault_injection::FaultInjection;
//!
//! # fn f(consumer: outbox_diesel::ConsumerBuilder) -> Result<(), outbox_diesel::Error> {
//! // Active only when the process runs with OUTBOX_FAULT_INJECTION=on.
//! let faults = FaultInjection::new()
//!     .fail_handlers(0.05)
//!     .delay_handlers(0.10, Duration::from_millis(200))
//!     .protect("payments");
//! let consumer = consumer.fault_injection(faults.clone()).build()?;
//! // … later: what was injected so far (clones share the counts).
//! println!("{} handler failures injected", faults.injected().handler_failures);
//! # Ok(()) }
//! ```

use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use outbox::{HandlerError, PublishError};

/// The environment variable that must be exactly `on` for fault injection to
/// be active (besides the builder call).
pub const ENV_VAR: &str = "OUTBOX_FAULT_INJECTION";

/// The counter of injected faults, with label `kind`.
const COUNTER: &str = "outbox_faults_injected_total";
/// The gauge of relays (label `component="relay"`) or consumers
/// (`component="consumer"`) of the process running with faults injected.
const GAUGE: &str = "outbox_fault_injection_enabled";

/// The text of an injected publish failure (the relay's errors are text).
const PUBLISH_FAILURE: &str =
    "injected publish failure (fault injection is on: OUTBOX_FAULT_INJECTION=on)";

/// Which faults to inject, and where not; see the [module](self) docs.
///
/// Everything is off by default (fractions 0). Clones share the counts of
/// [`injected`](Self::injected).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use outbox_diesel::fault_injection::FaultInjection;
///
/// let faults = FaultInjection::new()
///     .fail_handlers(0.3)
///     .delay_handlers(0.2, Duration::from_millis(20))
///     .fail_publishes(0.1)
///     .protect("payments")
///     .seed(42);
/// assert_eq!(faults.injected().handler_failures, 0);
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct FaultInjection {
    fail_handlers: f64,
    delay_handlers: f64,
    delay: Duration,
    fail_publishes: f64,
    protected: BTreeSet<String>,
    seed: Option<u64>,
    counts: Arc<Counts>,
}

/// Faults injected so far, by kind (from [`FaultInjection::injected`]).
///
/// # Examples
///
/// ```
/// let injected = outbox_diesel::fault_injection::FaultInjection::new().injected();
/// assert_eq!(injected, Default::default());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Injected {
    /// Handler calls made to fail (`kind="handler_failure"`).
    pub handler_failures: u64,
    /// Handler calls delayed (`kind="handler_delay"`).
    pub handler_delays: u64,
    /// Relay publishes made to fail (`kind="publish_failure"`).
    pub publish_failures: u64,
}

#[derive(Debug, Default)]
struct Counts {
    handler_failures: AtomicU64,
    handler_delays: AtomicU64,
    publish_failures: AtomicU64,
}

/// The error of an injected handler failure: its text says `injected`.
///
/// # Examples
///
/// ```
/// let error = outbox_diesel::fault_injection::InjectedFault;
/// assert!(error.to_string().starts_with("injected handler failure"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("injected handler failure (fault injection is on: OUTBOX_FAULT_INJECTION=on)")]
pub struct InjectedFault;

impl FaultInjection {
    /// No faults: add them with the other methods.
    ///
    /// # Examples
    ///
    /// ```
    /// let faults = outbox_diesel::fault_injection::FaultInjection::new();
    /// # let _ = faults;
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Fails `fraction` (0.0 to 1.0) of the consumer's handler calls with a
    /// retriable error, inside the apply transaction and before the handler
    /// runs (so it rolls back). Retried as the failure policy says; a
    /// fraction near 1 exhausts the attempts.
    ///
    /// # Examples
    ///
    /// ```
    /// let faults = outbox_diesel::fault_injection::FaultInjection::new().fail_handlers(0.05);
    /// # let _ = faults;
    /// ```
    pub fn fail_handlers(mut self, fraction: f64) -> Self {
        self.fail_handlers = fraction;
        self
    }

    /// Delays `fraction` (0.0 to 1.0) of the consumer's handler calls by
    /// `delay`, inside the apply transaction, before the handler runs.
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// let faults = outbox_diesel::fault_injection::FaultInjection::new()
    ///     .delay_handlers(0.1, Duration::from_millis(250));
    /// # let _ = faults;
    /// ```
    pub fn delay_handlers(mut self, fraction: f64, delay: Duration) -> Self {
        self.delay_handlers = fraction;
        self.delay = delay;
        self
    }

    /// Fails `fraction` (0.0 to 1.0) of the relay's publishes, row by row,
    /// with a retriable error: retried after the relay's backoff, never parked.
    ///
    /// # Examples
    ///
    /// ```
    /// let faults = outbox_diesel::fault_injection::FaultInjection::new().fail_publishes(0.02);
    /// # let _ = faults;
    /// ```
    pub fn fail_publishes(mut self, fraction: f64) -> Self {
        self.fail_publishes = fraction;
        self
    }

    /// Never injects a fault into records of this consumer route or topic, nor
    /// into relay rows of this topic. May be called several times.
    ///
    /// # Examples
    ///
    /// ```
    /// let faults = outbox_diesel::fault_injection::FaultInjection::new()
    ///     .fail_handlers(0.1)
    ///     .protect("payments")
    ///     .protect("audit-events");
    /// # let _ = faults;
    /// ```
    pub fn protect(mut self, route_or_topic: impl Into<String>) -> Self {
        self.protected.insert(route_or_topic.into());
        self
    }

    /// Makes the choices reproducible: the same seed injects the same faults
    /// into the same records and rows, attempt by attempt (default: a random
    /// seed at each `build()`, logged). A record resumed or replayed, and a row
    /// retried, draw anew; see [what a seed reproduces](self#what-a-seed-reproduces).
    ///
    /// # Examples
    ///
    /// ```
    /// let faults = outbox_diesel::fault_injection::FaultInjection::new().fail_handlers(0.1).seed(7);
    /// # let _ = faults;
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Faults injected so far by the relays and consumers given this value or
    /// a clone of it.
    ///
    /// # Examples
    ///
    /// ```
    /// let faults = outbox_diesel::fault_injection::FaultInjection::new();
    /// assert_eq!(faults.injected().publish_failures, 0);
    /// ```
    pub fn injected(&self) -> Injected {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Injected {
            handler_failures: get(&self.counts.handler_failures),
            handler_delays: get(&self.counts.handler_delays),
            publish_failures: get(&self.counts.publish_failures),
        }
    }

    /// What is wrong with the settings: each a setting and why, for the
    /// builders' [`Error::Config`](crate::Error::Config).
    pub(crate) fn problems(&self) -> Vec<(&'static str, String)> {
        [
            ("fail_handlers", self.fail_handlers),
            ("delay_handlers", self.delay_handlers),
            ("fail_publishes", self.fail_publishes),
        ]
        .into_iter()
        .filter(|(_, fraction)| !(0.0..=1.0).contains(fraction))
        .map(|(name, fraction)| {
            (
                name,
                format!("fault injection fraction must be between 0.0 and 1.0, not {fraction}"),
            )
        })
        .collect()
    }

    /// The injector of a `component` ("consumer", "relay") built now: `Some`
    /// only when [`ENV_VAR`] is `on` in the process; otherwise logs why not.
    pub(crate) fn activate(&self, component: &'static str) -> Option<Arc<Injector>> {
        let value = std::env::var_os(ENV_VAR);
        match gate(value.as_ref().map(|v| v.to_string_lossy()).as_deref()) {
            Gate::On => Some(Arc::new(Injector {
                settings: self.clone(),
                seed: self.seed.unwrap_or_else(|| fastrand::u64(..)),
            })),
            Gate::Unset => {
                tracing::warn!(
                    component,
                    "fault injection is configured but off: set {ENV_VAR}=on in the environment to enable it"
                );
                None
            }
            Gate::Other(value) => {
                tracing::warn!(
                    component,
                    value = %value,
                    "fault injection is off: {ENV_VAR} is {value:?}, and only `on` enables it"
                );
                None
            }
        }
    }
}

/// What the environment variable says.
#[derive(Debug, PartialEq, Eq)]
enum Gate {
    On,
    Unset,
    Other(String),
}

fn gate(value: Option<&str>) -> Gate {
    match value {
        Some("on") => Gate::On,
        None | Some("") => Gate::Unset,
        Some(other) => Gate::Other(other.to_owned()),
    }
}

/// An active fault injection, shared by a relay's or consumer's tasks.
#[derive(Debug)]
pub(crate) struct Injector {
    settings: FaultInjection,
    seed: u64,
}

/// One try of a handler call, as the draws see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandlerTry {
    pub(crate) message_id: uuid::Uuid,
    /// The record's offset: a replayed dead letter is a new record.
    pub(crate) offset: i64,
    /// The stop the partition was resumed from, when this is the resumed
    /// record: each resume draws anew.
    pub(crate) resumed_from: Option<i64>,
    /// 1 for the first attempt.
    pub(crate) attempt: u32,
}

/// While alive, counts its component in the gauge; back to 0 when dropped
/// (the end of the component's run, however it ends).
#[derive(Debug)]
#[must_use = "the gauge goes back down when this is dropped"]
pub(crate) struct Announced {
    component: &'static str,
}

impl Drop for Announced {
    fn drop(&mut self) {
        metrics::gauge!(GAUGE, "component" => self.component).decrement(1.0);
    }
}

/// Salts telling the kinds' draws apart.
const FAIL_HANDLER: u64 = 1;
const DELAY_HANDLER: u64 = 2;
const FAIL_PUBLISH: u64 = 3;

impl Injector {
    /// Says loudly, at the start of `component`'s run, that faults are
    /// injected and which; counts the run in the gauge until the returned
    /// value is dropped.
    pub(crate) fn announce(&self, component: &'static str) -> Announced {
        let s = &self.settings;
        tracing::warn!(
            component,
            fail_handlers = s.fail_handlers,
            delay_handlers = s.delay_handlers,
            delay = ?s.delay,
            fail_publishes = s.fail_publishes,
            protected = ?s.protected,
            seed = self.seed,
            "FAULT INJECTION IS ON ({ENV_VAR}=on): faults are injected on purpose; never in production"
        );
        metrics::gauge!(GAUGE, "component" => component).increment(1.0);
        Announced { component }
    }

    /// The faults for `try_` of a record read from `topic`, for `route`.
    pub(crate) fn handler_fault(
        &self,
        route: &str,
        topic: &str,
        try_: HandlerTry,
    ) -> HandlerFault<'_> {
        let s = &self.settings;
        if s.protected.contains(route) || s.protected.contains(topic) {
            return HandlerFault::NONE;
        }
        let id = try_.message_id.as_u128();
        let subject = [
            id as u64,
            (id >> 64) as u64,
            try_.offset as u64,
            // Stop ids are positive: `None` cannot meet one.
            try_.resumed_from.map_or(0, |stop| stop as u64),
            u64::from(try_.attempt),
        ];
        let chosen = |kind, fraction| draw(self.seed, kind, &subject) < fraction;
        HandlerFault {
            counts: Some(&s.counts),
            delay: chosen(DELAY_HANDLER, s.delay_handlers).then_some(s.delay),
            fail: chosen(FAIL_HANDLER, s.fail_handlers),
        }
    }

    /// An injected failure for the publish of outbox row `row_id` of `topic`,
    /// which failed `attempts` times before, counted; or `None`.
    pub(crate) fn publish_fault(
        &self,
        topic: &str,
        row_id: i64,
        attempts: i32,
    ) -> Option<PublishError> {
        let s = &self.settings;
        if s.fail_publishes <= 0.0 || s.protected.contains(topic) {
            return None;
        }
        let subject = [row_id as u64, attempts as u64];
        if draw(self.seed, FAIL_PUBLISH, &subject) >= s.fail_publishes {
            return None;
        }
        s.counts.publish_failures.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(COUNTER, "kind" => "publish_failure").increment(1);
        Some(PublishError::retriable(PUBLISH_FAILURE))
    }
}

/// Whether a relay's publish error is an injected one.
pub(crate) fn is_injected(error: &PublishError) -> bool {
    error.to_string() == PUBLISH_FAILURE
}

/// The faults of one handler call, injected by [`inject`](Self::inject).
#[derive(Debug, Clone, Copy)]
pub(crate) struct HandlerFault<'a> {
    counts: Option<&'a Counts>,
    delay: Option<Duration>,
    fail: bool,
}

impl HandlerFault<'_> {
    /// No fault.
    pub(crate) const NONE: HandlerFault<'static> = HandlerFault {
        counts: None,
        delay: None,
        fail: false,
    };

    /// Waits, fails, both or neither; each counted as it happens (a record
    /// found in the inbox never gets here).
    pub(crate) async fn inject(self) -> Result<(), HandlerError> {
        let Some(counts) = self.counts else {
            return Ok(());
        };
        if let Some(delay) = self.delay {
            counts.handler_delays.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(COUNTER, "kind" => "handler_delay").increment(1);
            tokio::time::sleep(delay).await;
        }
        if self.fail {
            counts.handler_failures.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(COUNTER, "kind" => "handler_failure").increment(1);
            return Err(HandlerError::retriable(InjectedFault));
        }
        Ok(())
    }
}

/// A number in `[0, 1)` from the seed, the kind and the parts of what is
/// tried (splitmix64 steps).
fn draw(seed: u64, kind: u64, subject: &[u64]) -> f64 {
    let h = subject.iter().fold(
        mix(seed ^ kind.wrapping_mul(0xA076_1D64_78BD_642F)),
        |h, part| mix(h ^ part),
    );
    (h >> 11) as f64 / (1u64 << 53) as f64
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} handler failures, {} handler delays, {} publish failures",
            self.handler_failures, self.handler_delays, self.publish_failures
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_on_enables_it() {
        assert_eq!(gate(Some("on")), Gate::On);
        assert_eq!(gate(None), Gate::Unset);
        assert_eq!(gate(Some("")), Gate::Unset);
        for other in ["ON", "1", "true", "yes", " on"] {
            assert_eq!(gate(Some(other)), Gate::Other(other.to_owned()));
        }
    }

    #[test]
    fn fractions_out_of_range_are_named() {
        let faults = FaultInjection::new()
            .fail_handlers(1.5)
            .delay_handlers(f64::NAN, Duration::ZERO)
            .fail_publishes(-0.1);
        let problems = faults.problems();
        let names: Vec<&str> = problems.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, ["fail_handlers", "delay_handlers", "fail_publishes"]);
        assert!(problems[0].1.ends_with("not 1.5"), "{problems:?}");
        assert!(problems[1].1.ends_with("not NaN"), "{problems:?}");
        assert!(
            FaultInjection::new()
                .fail_handlers(1.0)
                .fail_publishes(0.0)
                .problems()
                .is_empty()
        );
    }

    fn injector(settings: FaultInjection) -> Injector {
        Injector { settings, seed: 7 }
    }

    #[test]
    fn draws_follow_the_fraction_and_the_seed() {
        let n = 20_000u64;
        let hits = (0..n)
            .filter(|i| draw(7, FAIL_HANDLER, &[*i, 1]) < 0.3)
            .count() as f64;
        let share = hits / n as f64;
        assert!((0.28..0.32).contains(&share), "{share}");
        assert_eq!(
            draw(7, FAIL_HANDLER, &[99, 3]),
            draw(7, FAIL_HANDLER, &[99, 3]),
            "same seed, same draw"
        );
        assert_ne!(
            draw(7, FAIL_HANDLER, &[99, 3]),
            draw(8, FAIL_HANDLER, &[99, 3])
        );
        assert_ne!(
            draw(7, FAIL_HANDLER, &[99, 3]),
            draw(7, FAIL_HANDLER, &[99, 4])
        );
        assert_ne!(
            draw(7, FAIL_HANDLER, &[99, 3]),
            draw(7, FAIL_PUBLISH, &[99, 3])
        );
    }

    /// The attempts of a record that met its policy, the same after a restart
    /// with the same seed, differ once resumed, and again at the next resume,
    /// and once replayed at a new offset.
    #[test]
    fn a_resumed_or_replayed_record_draws_anew_and_a_seed_reproduces_the_rest() {
        let faults = FaultInjection::new().fail_handlers(0.5).fail_publishes(0.5);
        let (first, restarted) = (injector(faults.clone()), injector(faults));
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef);
        let pattern = |injector: &Injector, offset: i64, resumed_from: Option<i64>| {
            (1..=64)
                .map(|attempt| {
                    let try_ = HandlerTry {
                        message_id: id,
                        offset,
                        resumed_from,
                        attempt,
                    };
                    injector.handler_fault("users", "t", try_).fail
                })
                .collect::<Vec<bool>>()
        };
        let stopped = pattern(&first, 10, None);
        assert_eq!(
            stopped,
            pattern(&restarted, 10, None),
            "same seed, same faults"
        );
        let resumed = pattern(&first, 10, Some(1));
        assert_ne!(stopped, resumed, "a resume draws anew");
        assert_ne!(resumed, pattern(&first, 10, Some(2)), "each resume does");
        assert_ne!(stopped, pattern(&first, 11, None), "a replay draws anew");

        // A row: by its attempts, the same in a relay started again.
        let row = |injector: &Injector| {
            (0..64)
                .map(|attempts| injector.publish_fault("events", 42, attempts).is_some())
                .collect::<Vec<bool>>()
        };
        let rows = row(&first);
        assert_eq!(rows, row(&restarted));
        assert!(rows.contains(&true) && rows.contains(&false), "{rows:?}");
    }

    #[tokio::test]
    async fn protected_names_are_never_touched() {
        let injector = injector(
            FaultInjection::new()
                .fail_handlers(1.0)
                .delay_handlers(1.0, Duration::ZERO)
                .fail_publishes(1.0)
                .protect("payments")
                .protect("audit"),
        );
        let id = HandlerTry {
            message_id: uuid::Uuid::from_u128(5),
            offset: 0,
            resumed_from: None,
            attempt: 1,
        };
        assert!(
            injector
                .handler_fault("payments", "t", id)
                .inject()
                .await
                .is_ok()
        );
        assert!(
            injector
                .handler_fault("users", "audit", id)
                .inject()
                .await
                .is_ok()
        );
        assert!(injector.publish_fault("audit", 1, 0).is_none());
        assert_eq!(injector.settings.injected(), Injected::default());

        let error = injector
            .handler_fault("users", "t", id)
            .inject()
            .await
            .expect_err("fraction 1 fails");
        assert_eq!(error.kind(), outbox::HandlerErrorKind::Retriable);
        assert!(error.chain().contains("injected"), "{}", error.chain());
        let error = injector
            .publish_fault("events", 1, 0)
            .expect("fraction 1 fails");
        assert!(!error.is_permanent() && is_injected(&error));
        assert_eq!(
            injector.settings.injected(),
            Injected {
                handler_failures: 1,
                handler_delays: 1,
                publish_failures: 1
            }
        );
    }
}
