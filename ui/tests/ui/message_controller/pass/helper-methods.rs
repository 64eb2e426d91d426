//! Methods that are neither hooks nor handlers are left as they are.
#![deny(warnings)]

use diesel::prelude::*;
use outbox::{Context, Controller, HandlerError, Outboxed};

mod schema {
    diesel::table! {
        users (id) {
            id -> BigInt,
            email -> Text,
        }
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset, Outboxed)]
#[diesel(table_name = schema::users)]
#[outbox(topic = "accounts")]
pub struct User {
    pub id: i64,
    pub email: String,
}

pub struct UsersController {
    domain: String,
}

#[outbox::message_controller(model = User, table = schema::users)]
impl UsersController {
    pub fn new(domain: &str) -> Self {
        UsersController { domain: domain.to_owned() }
    }

    const MAX_EMAIL: usize = 254;

    fn normalize(&self, email: &str) -> String {
        let email = email.trim().to_lowercase();
        if email.contains('@') { email } else { format!("{email}@{}", self.domain) }
    }

    async fn audit(&self, _ctx: &mut Context<'_>, _what: &str) -> Result<(), HandlerError> {
        Ok(())
    }

    async fn before_update(&self, ctx: &mut Context<'_>, mut user: User) -> Result<User, HandlerError> {
        user.email = self.normalize(&user.email);
        if user.email.len() > Self::MAX_EMAIL {
            return Err(HandlerError::refuse("email too long"));
        }
        self.audit(ctx, "update").await?;
        Ok(user)
    }
}

fn main() {
    let controller = UsersController::new("example.com");
    assert_eq!(controller.normalize(" Ada "), "ada@example.com");
    assert_eq!(controller.route(), "users");
}
