// The model must derive `Outboxed`: the error lands on the `model` argument.
use diesel::prelude::*;

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub email: String,
}

pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {}

fn main() {}
