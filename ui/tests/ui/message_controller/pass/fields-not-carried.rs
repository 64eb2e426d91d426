//! A model whose versions do not carry every field (`since`, `until`,
//! `skip`, a renamed column, a raw-identifier one): the upserts leave those
//! columns on update, grouped or not, with hooks or without. Builds without
//! a warning.
#![deny(warnings)]

use diesel::prelude::*;
use outbox::{Context, Controller, Event, HandlerError, Outboxed};

diesel::table! {
    profiles (id) {
        id -> BigInt,
        email -> Text,
        nick -> Nullable<Text>,
        r#type -> Text,
        legacy -> Bool,
        local_note -> Text,
    }
}

fn default_type() -> String {
    "person".to_owned()
}

#[derive(Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = profiles, treat_none_as_null = true)]
#[outbox(topic = "accounts", versions = [1, 2, 3])]
pub struct Profile {
    pub id: i64,
    pub email: String,
    #[outbox(since = 2, default)]
    #[diesel(column_name = nick)]
    pub nickname: Option<String>,
    #[outbox(since = 3, default = default_type)]
    pub r#type: String,
    #[outbox(until = 2, default)]
    pub legacy: bool,
    #[outbox(skip)]
    pub local_note: String,
}

pub struct Profiles;

#[outbox::message_controller(model = Profile, table = profiles)]
impl Profiles {}

pub struct HookedProfiles;

#[outbox::message_controller(model = Profile, table = profiles, route = "hooked")]
impl HookedProfiles {
    async fn after_update(
        &self,
        _ctx: &mut Context<'_>,
        _profile: &Profile,
    ) -> Result<(), HandlerError> {
        Ok(())
    }
}

fn main() {
    assert_eq!(
        Profile::columns_not_carried(1),
        ["nick", "type", "local_note"]
    );
    assert_eq!(Profile::columns_not_carried(2), ["type", "local_note"]);
    assert_eq!(Profile::columns_not_carried(3), ["legacy", "local_note"]);
    assert!(Profiles.groups(&Event::Updated));
    assert!(!HookedProfiles.groups(&Event::Updated));
}
