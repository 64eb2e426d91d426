//! The names `#[message_controller]` understands: its arguments, the `#[on]`
//! attribute, the hooks and the built-in events.

pub(crate) use crate::symbol::{ROUTE, TOPIC};

// #[message_controller(..)]
pub(crate) const MODEL: &str = "model";
pub(crate) const TABLE: &str = "table";
pub(crate) const STRICT: &str = "strict";
pub(crate) const GROUP: &str = "group";
pub(crate) const GAP: &str = "gap";

pub(crate) const ARGS: &[&str] = &[MODEL, TABLE, ROUTE, TOPIC, STRICT, GROUP, GAP];

// The values of `gap = ".."`.
pub(crate) const WAIT: &str = "wait";
pub(crate) const STOP: &str = "stop";
pub(crate) const ACCEPT: &str = "accept";

/// `#[on("event_name")]` on a method.
pub(crate) const ON: &str = "on";

// Hooks around the built-in handling of an event.
pub(crate) const BEFORE_CREATE: &str = "before_create";
pub(crate) const AFTER_CREATE: &str = "after_create";
pub(crate) const BEFORE_UPDATE: &str = "before_update";
pub(crate) const AFTER_UPDATE: &str = "after_update";
pub(crate) const BEFORE_DESTROY: &str = "before_destroy";
pub(crate) const AFTER_DESTROY: &str = "after_destroy";

pub(crate) const HOOKS: &[&str] = &[
    BEFORE_CREATE,
    AFTER_CREATE,
    BEFORE_UPDATE,
    AFTER_UPDATE,
    BEFORE_DESTROY,
    AFTER_DESTROY,
];

// The built-in events; a method of that name replaces their handling.
pub(crate) const CREATED: &str = "created";
pub(crate) const UPDATED: &str = "updated";
pub(crate) const DESTROYED: &str = "destroyed";

pub(crate) const EVENTS: &[&str] = &[CREATED, UPDATED, DESTROYED];
