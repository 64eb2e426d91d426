// `gap` configures the version check: the model needs a version field.
use diesel::prelude::*;

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
    }
}

#[derive(Insertable, AsChangeset, outbox::Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "accounts")]
pub struct User {
    pub id: i64,
    pub email: String,
}

pub struct UsersController;

#[outbox::message_controller(model = User, table = users, gap = "stop")]
impl UsersController {}

fn main() {}
