// The upsert needs `AsChangeset`: the error lands on the `model` argument.
use diesel::prelude::*;
use outbox::Outboxed;

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
    }
}

#[derive(Queryable, Selectable, Insertable, Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "accounts")]
pub struct User {
    pub id: i64,
    pub email: String,
}

pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {}

fn main() {}
