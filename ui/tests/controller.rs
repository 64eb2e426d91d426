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
        accounts (id) {
            id -> BigInt,
            owner -> Text,
            rev -> Integer,
        }
    }

    diesel::table! {
        seats (team_id, seat) {
            team_id -> BigInt,
            seat -> Integer,
            holder -> Text,
            revision -> BigInt,
        }
    }

    diesel::table! {
        profiles (id) {
            id -> BigInt,
            email -> Text,
            nick -> Nullable<Text>,
            local_note -> Text,
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

use schema::{accounts, memberships, profiles, seats, users};

/// A model with a version field, in a renamed column.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = accounts, check_for_backend(diesel::pg::Pg))]
#[outbox(topic = "accounts", versions = [1, 2])]
struct Account {
    id: i64,
    owner: String,
    #[outbox(version, rename(v2 = "revision"))]
    #[diesel(column_name = rev)]
    revision: i32,
}

/// A composite key and a version field.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = seats, primary_key(team_id, seat))]
#[outbox(topic = "teams")]
struct Seat {
    team_id: i64,
    seat: i32,
    holder: String,
    #[outbox(version)]
    revision: i64,
}

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

/// A field only version 2 carries, in a renamed column, and one no
/// version carries: a version 1 message's update leaves both columns.
#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = profiles, treat_none_as_null = true)]
#[outbox(topic = "accounts", versions = [1, 2])]
struct Profile {
    id: i64,
    email: String,
    #[outbox(since = 2, default)]
    #[diesel(column_name = nick)]
    nickname: Option<String>,
    #[outbox(skip)]
    local_note: String,
}

/// Without hooks: grouped.
struct Profiles;

#[outbox::message_controller(model = Profile, table = profiles)]
impl Profiles {}

/// With a hook: one message at a time.
struct HookedProfiles;

#[outbox::message_controller(model = Profile, table = profiles, route = "hooked")]
impl HookedProfiles {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        profile: Profile,
    ) -> Result<Profile, HandlerError> {
        Ok(profile)
    }
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

/// A versioned model with every hook and a gap policy.
struct Accounts;

#[outbox::message_controller(model = Account, table = accounts, gap = "stop")]
impl Accounts {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        account: Account,
    ) -> Result<Account, HandlerError> {
        Ok(account)
    }

    async fn after_update(
        &self,
        _ctx: &mut Context<'_>,
        _account: &Account,
    ) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn before_destroy(&self, _ctx: &mut Context<'_>, _key: &i64) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn after_destroy(&self, _ctx: &mut Context<'_>, _key: &i64) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// A versioned model without hooks, the default gap policy.
struct Seats;

#[outbox::message_controller(model = Seat, table = seats)]
impl Seats {}

/// The same model, accepting gaps.
struct LenientSeats;

#[outbox::message_controller(model = Seat, table = seats, route = "lenient", gap = "accept")]
impl LenientSeats {}

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

#[test]
fn versioned_models_are_not_grouped() {
    assert_eq!(Account::VERSION_FIELD, Some("revision"));
    assert_eq!(Seat::VERSION_FIELD, Some("revision"));
    assert_eq!(User::VERSION_FIELD, None);
    for event in [Event::Created, Event::Updated] {
        assert!(!Seats.groups(&event) && !LenientSeats.groups(&event));
        assert!(!Accounts.groups(&event));
        assert!(Plain.groups(&event));
    }
    assert_controller(&Accounts);
}

#[test]
fn columns_not_carried_by_a_version_are_named() {
    assert_eq!(Profile::columns_not_carried(1), ["nick", "local_note"]);
    assert_eq!(Profile::columns_not_carried(2), ["local_note"]);
    assert!(User::columns_not_carried(1).is_empty());
    assert!(Account::columns_not_carried(2).is_empty());
    for event in [Event::Created, Event::Updated] {
        assert!(Profiles.groups(&event));
        assert!(!HookedProfiles.groups(&event));
    }
    assert_controller(&HookedProfiles);
}
