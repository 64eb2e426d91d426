//! A controller that accepts every record and counts its calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use outbox::{BoxFuture, Context, Controller, Event, HandlerError, Message};

/// A controller of one route on one topic that handles every event, applies
/// nothing and counts its calls: for tests about the consumer around the
/// handler (health, fault injection), not about what it applies.
///
/// # Examples
///
/// ```
/// use outbox::Controller;
/// use outbox_tests::Accept;
///
/// let accept = Accept::new("things", "things_my_test_1234");
/// let calls = accept.calls();
/// assert_eq!((accept.route(), accept.topics()), ("things", &["things_my_test_1234"][..]));
/// assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
/// ```
pub struct Accept {
    route: &'static str,
    topics: &'static [&'static str],
    calls: Arc<AtomicUsize>,
}

impl Accept {
    /// Accepts the records of `route` read from `topic`.
    pub fn new(route: &'static str, topic: &str) -> Self {
        // A consumer holds its controllers until the end of the test: one
        // short name leaked per test is what `Controller::topics` asks for.
        let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
        Accept {
            route,
            topics: Box::leak(vec![topic].into_boxed_slice()),
            calls: Arc::default(),
        }
    }

    /// The count of its calls, shared: read it after the controller moved
    /// into a consumer.
    pub fn calls(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.calls)
    }
}

impl Controller for Accept {
    fn route(&self) -> &str {
        self.route
    }

    fn topics(&self) -> &[&str] {
        self.topics
    }

    fn handles(&self, _: &Event) -> bool {
        true
    }

    fn handle<'a>(
        &'a self,
        _: &'a mut Context<'_>,
        _: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}
