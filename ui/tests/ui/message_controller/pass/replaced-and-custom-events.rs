//! Replaced built-in events and several custom events, on a composite key.
#![deny(warnings)]

use diesel::prelude::*;
use outbox::{Context, Controller, Event, HandlerError, Message, Outboxed};

diesel::table! {
    memberships (team_id, user_id) {
        team_id -> BigInt,
        user_id -> BigInt,
        role -> Text,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = memberships, primary_key(team_id, user_id))]
#[outbox(topic = "teams", versions = [1, 2])]
pub struct Membership {
    pub team_id: i64,
    pub user_id: i64,
    pub role: String,
}

pub struct MembershipsController;

#[outbox::message_controller(model = Membership, table = memberships)]
impl MembershipsController {
    /// Created messages are only counted, not applied.
    async fn created(&self, ctx: &mut Context<'_>, msg: &Message) -> Result<(), HandlerError> {
        diesel_count(ctx, msg).await
    }

    /// `before_update` still serves `updated`.
    async fn before_update(&self, _ctx: &mut Context<'_>, membership: Membership) -> Result<Membership, HandlerError> {
        Ok(membership)
    }

    async fn destroyed(&self, _ctx: &mut Context<'_>, msg: &Message) -> Result<(), HandlerError> {
        let (version, payload) = msg.payload_for(Membership::VERSIONS).map_err(HandlerError::permanent)?;
        let (_team, _user) = Membership::key_from_payload(version, payload).map_err(HandlerError::permanent)?;
        Ok(())
    }

    #[on("membership.promoted")]
    #[on("membership.demoted")]
    async fn role_changed(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }

    #[on("team.archived")]
    async fn r#archived(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
        Ok(())
    }
}

async fn diesel_count(_ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    let controller = MembershipsController;
    // The route defaults to the model's.
    assert_eq!(controller.route(), "memberships");
    assert_eq!(controller.topics(), ["teams"]);
    for name in ["membership.promoted", "membership.demoted", "team.archived"] {
        assert!(controller.handles(&Event::custom(name).unwrap()), "{name}");
    }
    assert!(!controller.handles(&Event::custom("team.created").unwrap()));
    assert!(controller.handles(&Event::Created));
}
