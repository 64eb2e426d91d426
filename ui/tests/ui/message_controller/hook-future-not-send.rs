// A hook's future must be `Send` (partitions run on several threads): rustc
// points into the hook at what is held across an `.await`.
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

pub struct UsersController;

#[outbox::message_controller(model = User, table = users)]
impl UsersController {
    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        let seen = std::rc::Rc::new(user.id);
        ctx.enqueue(user, outbox::Event::Updated).await?;
        drop(seen);
        Ok(())
    }
}

fn main() {}
