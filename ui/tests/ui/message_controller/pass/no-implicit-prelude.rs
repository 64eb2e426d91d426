//! The generated code names everything by absolute path.
#![deny(warnings)]

// Diesel's derives need the prelude: the model lives outside.
mod models {
    use diesel::prelude::*;

    diesel::table! {
        users (id) {
            id -> BigInt,
            email -> Text,
        }
    }

    #[derive(Insertable, AsChangeset, outbox::Outboxed)]
    #[diesel(table_name = users)]
    #[outbox(topic = "accounts")]
    pub struct User {
        pub id: i64,
        pub email: String,
    }
}

mod controllers {
    #![no_implicit_prelude]

    use super::models::{User, users};
    use ::outbox::{Context, HandlerError, Message};
    use ::std::result::Result::{self, Ok};

    pub struct UsersController;

    #[::outbox::message_controller(model = User, table = users)]
    impl UsersController {
        async fn before_update(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
            Ok(user)
        }

        async fn after_destroy(&self, _ctx: &mut Context<'_>, _key: &i64) -> Result<(), HandlerError> {
            Ok(())
        }

        #[on("password_reset")]
        async fn password_reset(&self, _ctx: &mut Context<'_>, _msg: &Message) -> Result<(), HandlerError> {
            Ok(())
        }
    }
}

fn main() {
    use outbox::Controller;
    assert_eq!(controllers::UsersController.route(), "users");
    assert!(controllers::UsersController.handles(&outbox::Event::custom("password_reset").unwrap()));
}
