//! The smallest controller: every built-in event applied as it comes.
#![deny(warnings)]

use diesel::prelude::*;
use outbox::{Controller, Event, Outboxed};

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "accounts")]
pub struct User {
    pub id: i64,
    pub email: String,
}

pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {}

fn main() {
    let controller = UsersController;
    assert_eq!(controller.route(), "users");
    assert!(controller.handles(&Event::Destroyed));
    assert!(!controller.handles(&Event::custom("password_reset").unwrap()));
}
