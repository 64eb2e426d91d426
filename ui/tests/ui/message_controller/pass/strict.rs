//! `strict`: an event without handling is a failure, not ignored.
#![deny(warnings)]

use diesel::prelude::*;
use outbox::{Controller, Outboxed};

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

#[outbox::message_controller(model = User, table = users, route = "accounts.users", strict)]
impl UsersController {}

fn main() {
    let controller = UsersController;
    assert!(controller.strict());
    assert_eq!(controller.route(), "accounts.users");
}
