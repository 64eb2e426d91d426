// rustc's type error lands on the hook's parameter type, not on the attribute.
use diesel::prelude::*;
use outbox::{Context, HandlerError, Outboxed};

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

pub struct Account;

pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn before_update(&self, _ctx: &mut Context<'_>, account: Account) -> Result<Account, HandlerError> {
        Ok(account)
    }
}

fn main() {}
