//! `topic` reads another topic than the model's (a renamed or mirrored one).
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

pub struct MirroredUsers;

#[outbox::message_controller(model = User, table = users, topic = "eu.accounts")]
impl MirroredUsers {}

fn main() {
    let controller = MirroredUsers;
    assert_eq!(controller.topics(), ["eu.accounts"]);
    assert_eq!(controller.route(), User::ROUTE);
}
