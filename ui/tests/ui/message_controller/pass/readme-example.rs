//! The README's controller, as it is printed there (keep them the same).
#![deny(warnings)]

use diesel::prelude::*;
use diesel_async::RunQueryDsl;
use outbox::{Context, Event, HandlerError, Message, Outboxed, message_controller};

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        locale -> Text,
    }
}

diesel::table! {
    sessions (id) {
        id -> BigInt,
        user_id -> BigInt,
    }
}

diesel::table! {
    welcomes (user_id) {
        user_id -> BigInt,
        email -> Text,
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = users, treat_none_as_null = true)] // a None in a message clears the column
#[outbox(topic = "accounts", versions = [1, 2])]
pub struct User {
    pub id: i64,
    pub email: String,
    #[outbox(since = 2, default)]
    pub locale: String,
}

/// What this service sends in turn (its own topic).
#[derive(Queryable, Insertable, Outboxed)]
#[diesel(table_name = welcomes, primary_key(user_id))]
#[outbox(topic = "welcomes", versions = [1])]
pub struct Welcome {
    pub user_id: i64,
    pub email: String,
}

pub struct UsersController;

#[message_controller(model = User, table = users)] // route and topic: User's
impl UsersController {
    async fn before_update(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        if user.email.ends_with("@test.invalid") {
            return Err(HandlerError::refuse("test accounts are not imported"));
        }
        Ok(User { email: user.email.to_lowercase(), ..user })
    }

    async fn after_create(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        let welcome = Welcome { user_id: user.id, email: user.email.clone() };
        ctx.enqueue(&welcome, Event::Created).await?; // sent only if this apply commits
        Ok(())
    }

    async fn after_destroy(&self, ctx: &mut Context<'_>, id: &<User as Outboxed>::Key) -> Result<(), HandlerError> {
        diesel::delete(sessions::table.filter(sessions::user_id.eq(*id)))
            .execute(ctx.conn())
            .await?;
        Ok(())
    }

    #[on("password_reset")]
    async fn password_reset(&self, _ctx: &mut Context<'_>, msg: &Message) -> Result<(), HandlerError> {
        let (_version, payload) = msg.payload_for(&[1]).map_err(HandlerError::permanent)?;
        println!("password reset asked for user {}", payload["id"]);
        Ok(())
    }
}

fn main() {}
