//! A controller read from a topic of the test's own.

use outbox::{BoxFuture, Context, Controller, Event, HandlerError, Message};

/// A controller read from another topic: the models' topics are constants,
/// shared by every run, so each test sends them to a topic of its own and
/// points its controllers there. Everything else is the wrapped controller's.
///
/// # Examples
///
/// ```
/// use outbox::{BoxFuture, Context, Controller, Event, HandlerError, Message};
/// use outbox_tests::OnTopic;
///
/// struct Users;
/// impl Controller for Users {
///     fn route(&self) -> &str { "users" }
///     fn topics(&self) -> &[&str] { &["accounts"] }
///     fn handles(&self, _: &Event) -> bool { true }
///     fn handle<'a>(&'a self, _: &'a mut Context<'_>, _: &'a Message)
///         -> BoxFuture<'a, Result<(), HandlerError>> { Box::pin(async { Ok(()) }) }
/// }
///
/// let controller = OnTopic::new(Users, "accounts_my_test_1234");
/// assert_eq!(controller.topics(), ["accounts_my_test_1234"]);
/// assert_eq!(controller.route(), "users");
/// ```
pub struct OnTopic<C> {
    inner: C,
    topics: &'static [&'static str],
}

impl<C: Controller> OnTopic<C> {
    /// `inner`, reading `topic` instead of its own.
    pub fn new(inner: C, topic: &str) -> Self {
        // A consumer holds its controllers until the end of the test: leaking
        // one short name per test is what `Controller::topics` asks for.
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
