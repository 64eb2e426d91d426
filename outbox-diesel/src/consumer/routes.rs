//! Which controller serves a record: by its `to` header.

use std::collections::HashMap;
use std::sync::Arc;

use outbox::Controller;

use super::policy::FailurePolicy;
use crate::error::{Error, Result};

/// A controller and its failure policy.
pub(crate) struct Route {
    pub(crate) controller: Arc<dyn Controller>,
    pub(crate) policy: FailurePolicy,
}

/// Controllers by route, and the topics they read.
pub(crate) struct Routes {
    by_route: HashMap<String, Route>,
    topics: Vec<String>,
    pub(crate) default_policy: FailurePolicy,
    /// Records whose route no controller serves are acknowledged and
    /// counted as ignored, instead of failing under `default_policy`.
    pub(crate) ignore_unknown: bool,
}

impl Routes {
    /// Checks the controllers: at least one, one per route, each with a topic.
    pub(crate) fn new(
        controllers: Vec<(Arc<dyn Controller>, Option<FailurePolicy>)>,
        default_policy: FailurePolicy,
        ignore_unknown: bool,
    ) -> Result<Self> {
        if controllers.is_empty() {
            return Err(Error::Config {
                name: "controller",
                reason: "a consumer needs at least one controller".into(),
            });
        }
        let mut by_route = HashMap::new();
        let mut topics: Vec<String> = Vec::new();
        let mut problems = Vec::new();
        let policies = controllers.iter().filter_map(|(_, policy)| policy.as_ref());
        for topic in policies
            .chain([&default_policy])
            .filter_map(FailurePolicy::error_topic)
        {
            if let Err(error) = outbox::Message::check_topic(topic) {
                let problem = format!("the error-event topic: {error}");
                if !problems.contains(&problem) {
                    problems.push(problem);
                }
            }
        }
        for (controller, policy) in controllers {
            let route = controller.route().to_owned();
            if controller.topics().is_empty() {
                problems.push(format!("the controller of route `{route}` reads no topic"));
            }
            for topic in controller.topics() {
                if !topics.iter().any(|t| t == topic) {
                    topics.push((*topic).to_owned());
                }
            }
            let route_entry = Route {
                controller,
                policy: policy.unwrap_or_else(|| default_policy.clone()),
            };
            if by_route.insert(route.clone(), route_entry).is_some() {
                problems.push(format!("two controllers serve route `{route}`"));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Config {
                name: "controller",
                reason: problems.join("; "),
            });
        }
        Ok(Routes {
            by_route,
            topics,
            default_policy,
            ignore_unknown,
        })
    }

    pub(crate) fn get(&self, route: &str) -> Option<&Route> {
        self.by_route.get(route)
    }

    /// The policy for a record whose route is `route` (if it could be read).
    pub(crate) fn policy_for(&self, route: Option<&str>) -> FailurePolicy {
        route
            .and_then(|route| self.get(route))
            .map_or_else(|| self.default_policy.clone(), |route| route.policy.clone())
    }

    pub(crate) fn topics(&self) -> &[String] {
        &self.topics
    }
}
