//! Grouped upserts: generated for created and updated when they have no hook,
//! for a composite key whose type has no `==` (each row then goes alone) and
//! a model with an optional field; `group = false` turns them off. Builds
//! without a warning.
#![deny(warnings)]

use diesel::prelude::*;
use outbox::{Context, Controller, Event, HandlerError, Outboxed};
use serde::{Deserialize, Serialize};

diesel::table! {
    lines (order_id, line) {
        order_id -> BigInt,
        line -> BigInt,
        note -> Nullable<Text>,
    }
}

/// A key part without `PartialEq`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, diesel::expression::AsExpression)]
#[diesel(sql_type = diesel::sql_types::BigInt)]
pub struct LineNo(i64);

/// The partition key is made of the key fields' text.
impl std::fmt::Display for LineNo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl diesel::serialize::ToSql<diesel::sql_types::BigInt, diesel::pg::Pg> for LineNo {
    fn to_sql<'b>(
        &'b self,
        out: &mut diesel::serialize::Output<'b, '_, diesel::pg::Pg>,
    ) -> diesel::serialize::Result {
        <i64 as diesel::serialize::ToSql<diesel::sql_types::BigInt, diesel::pg::Pg>>::to_sql(
            &self.0, out,
        )
    }
}

#[derive(Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = lines, primary_key(order_id, line))]
#[outbox(topic = "orders")]
pub struct Line {
    pub order_id: i64,
    pub line: LineNo,
    pub note: Option<String>,
}

pub struct Lines;

#[outbox::message_controller(model = Line, table = lines)]
impl Lines {}

pub struct Ungrouped;

#[outbox::message_controller(model = Line, table = lines, group = false)]
impl Ungrouped {}

pub struct Grouped;

#[outbox::message_controller(model = Line, table = lines, group = true)]
impl Grouped {}

/// A hook on create: only updated goes in groups.
pub struct CreateHook;

#[outbox::message_controller(model = Line, table = lines)]
impl CreateHook {
    async fn before_create(&self, _ctx: &mut Context<'_>, line: Line) -> Result<Line, HandlerError> {
        Ok(line)
    }
}

fn main() {
    assert!(Lines.groups(&Event::Created) && Lines.groups(&Event::Updated));
    assert!(!Lines.groups(&Event::Destroyed));
    assert!(!Ungrouped.groups(&Event::Created) && !Ungrouped.groups(&Event::Updated));
    assert!(Grouped.groups(&Event::Updated));
    assert!(!CreateHook.groups(&Event::Created) && CreateHook.groups(&Event::Updated));
}
