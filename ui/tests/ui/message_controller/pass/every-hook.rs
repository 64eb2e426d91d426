//! A controller with every hook and a custom event builds without a warning.
#![deny(warnings)]

use diesel::prelude::*;
use outbox::{Context, Controller, Event, HandlerError, Message, Outboxed};

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        nickname -> Nullable<Text>,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = users, treat_none_as_null = true, check_for_backend(diesel::pg::Pg))]
#[outbox(topic = "accounts")]
pub struct User {
    pub id: i64,
    pub email: String,
    pub nickname: Option<String>,
}

pub struct UsersController;

#[outbox::message_controller(model = User, table = users, route = "users")]
impl UsersController {
    async fn before_create(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
        Ok(user)
    }

    async fn after_create(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        ctx.enqueue(user, Event::custom("welcome")?).await?;
        Ok(())
    }

    async fn before_update(&self, _ctx: &mut Context<'_>, mut user: User) -> Result<User, HandlerError> {
        user.email = user.email.to_lowercase();
        Ok(user)
    }

    async fn after_update(&self, _ctx: &mut Context<'_>, _user: &User) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn before_destroy(&self, _ctx: &mut Context<'_>, key: &<User as Outboxed>::Key) -> Result<(), HandlerError> {
        if *key == 0 {
            return Err(HandlerError::refuse("user 0 is kept"));
        }
        Ok(())
    }

    async fn after_destroy(&self, _ctx: &mut Context<'_>, _key: &i64) -> Result<(), HandlerError> {
        Ok(())
    }

    #[on("password_reset")]
    async fn password_reset(&self, _ctx: &mut Context<'_>, msg: &Message) -> Result<(), HandlerError> {
        msg.payload_for(<User as Outboxed>::VERSIONS).map_err(HandlerError::permanent)?;
        Ok(())
    }
}

fn main() {
    let controller = UsersController;
    assert_eq!(controller.route(), "users");
    assert_eq!(controller.topics(), ["accounts"]);
    assert!(controller.handles(&Event::Created));
    assert!(controller.handles(&Event::Updated));
    assert!(controller.handles(&Event::Destroyed));
    assert!(controller.handles(&Event::custom("password_reset").unwrap()));
    assert!(!controller.handles(&Event::custom("welcome").unwrap()));
    assert!(!controller.strict());
}
