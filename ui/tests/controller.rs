//! Controllers built as an ordinary test target, so that
//! `cargo clippy --all-targets -- -D warnings` lints the code
//! `#[message_controller]` generates (trybuild runs rustc only).

use diesel::prelude::*;
use outbox::{Context, Controller, Event, HandlerError, Message, Outboxed};

/// Private, so that `table!`'s public items need no docs.
mod schema {
    diesel::table! {
        users (id) {
            id -> BigInt,
            email -> Text,
            nickname -> Nullable<Text>,
        }
    }

    diesel::table! {
        memberships (team_id, user_id) {
            team_id -> BigInt,
            user_id -> BigInt,
            role -> Text,
        }
    }
}

use schema::{memberships, users};

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = users, treat_none_as_null = true, check_for_backend(diesel::pg::Pg))]
#[outbox(topic = "accounts")]
struct User {
    id: i64,
    email: String,
    nickname: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = memberships, primary_key(team_id, user_id))]
#[outbox(topic = "teams", versions = [1, 2])]
struct Membership {
    team_id: i64,
    user_id: i64,
    role: String,
}

/// Every hook, and a custom event.
struct Users;

#[outbox::message_controller(model = User, table = users)]
impl Users {
    async fn before_create(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        Ok(user)
    }

    async fn after_create(&self, _ctx: &mut Context<'_>, _user: &User) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        mut user: User,
    ) -> Result<User, HandlerError> {
        user.email = user.email.to_lowercase();
        Ok(user)
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        ctx.enqueue(user, Event::Updated).await?;
        Ok(())
    }

    async fn before_destroy(
        &self,
        _ctx: &mut Context<'_>,
        key: &<User as Outboxed>::Key,
    ) -> Result<(), HandlerError> {
        if *key == 0 {
            return Err(HandlerError::refuse("user 0 is never deleted"));
        }
        Ok(())
    }

    async fn after_destroy(&self, _ctx: &mut Context<'_>, _key: &i64) -> Result<(), HandlerError> {
        Ok(())
    }

    #[on("password_reset")]
    async fn password_reset(
        &self,
        _ctx: &mut Context<'_>,
        msg: &Message,
    ) -> Result<(), HandlerError> {
        msg.payload_for(&[1]).map_err(HandlerError::permanent)?;
        Ok(())
    }
}

/// A composite key, replaced events, several custom events, strict.
struct Memberships;

#[outbox::message_controller(model = Membership, table = memberships, route = "team_members", strict)]
impl Memberships {
    async fn created(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn after_destroy(
        &self,
        _ctx: &mut Context<'_>,
        key: &(i64, i64),
    ) -> Result<(), HandlerError> {
        let (_team, _user) = key;
        Ok(())
    }

    #[on("membership.promoted")]
    #[on("membership.demoted")]
    async fn role_changed(
        &self,
        ctx: &mut Context<'_>,
        _msg: &Message,
    ) -> Result<(), HandlerError> {
        self.audit(ctx).await
    }

    /// A helper: not a hook, left alone.
    async fn audit(&self, _ctx: &mut Context<'_>) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// No hooks at all.
struct Plain;

#[outbox::message_controller(model = User, table = schema::users, route = "plain")]
impl Plain {}

fn assert_controller<C: Controller>(_: &C) {}

#[test]
fn the_generated_impls_describe_the_controllers() {
    let reset = Event::custom("password_reset").unwrap();
    assert_eq!(Users.route(), "users");
    assert_eq!(Users.topics(), ["accounts"]);
    assert!(
        Users.handles(&Event::Created) && Users.handles(&Event::Destroyed) && Users.handles(&reset)
    );
    assert!(!Users.handles(&Event::custom("other").unwrap()));
    assert!(!Users.strict());

    assert_eq!(Memberships.route(), "team_members");
    assert_eq!(Memberships.topics(), ["teams"]);
    assert!(Memberships.handles(&Event::custom("membership.demoted").unwrap()));
    assert!(!Memberships.handles(&reset));
    assert!(Memberships.strict());

    assert_eq!(Plain.route(), "plain");
    assert!(Plain.handles(&Event::Updated));
    assert!(!Plain.handles(&reset));
    assert_controller(&Plain);
}
