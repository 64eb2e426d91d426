//! The user's own `outbox`, `diesel`, `core`, `std`, `Box`, `Result`, `Ok`,
//! `Clone` and `Self`-like names do not break the generated code.
#![deny(warnings)]
#![allow(dead_code)]

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

mod app {
    pub mod outbox {}
    pub mod diesel {}
    pub mod diesel_async {}
    pub mod core {}
    pub mod std {}
    pub struct Box;
    pub struct Result;
    pub struct Ok;
    pub struct Err;
    pub struct Message;
    pub struct Event;
    pub trait Clone {}
    pub trait RunQueryDsl {}
    pub trait QueryDsl {}
    pub trait Table {}
    pub const TOPICS: &[&str] = &[];

    use super::models::{User, users};

    pub struct UsersController;

    #[::outbox::message_controller(model = User, table = users)]
    impl UsersController {
        async fn before_update(
            &self,
            _ctx: &mut ::outbox::Context<'_>,
            user: User,
        ) -> ::std::result::Result<User, ::outbox::HandlerError> {
            ::std::result::Result::Ok(user)
        }

        async fn after_destroy(
            &self,
            _ctx: &mut ::outbox::Context<'_>,
            _key: &i64,
        ) -> ::std::result::Result<(), ::outbox::HandlerError> {
            ::std::result::Result::Ok(())
        }

        #[on("password_reset")]
        async fn password_reset(
            &self,
            _ctx: &mut ::outbox::Context<'_>,
            _msg: &::outbox::Message,
        ) -> ::std::result::Result<(), ::outbox::HandlerError> {
            ::std::result::Result::Ok(())
        }
    }
}

fn main() {
    use outbox::Controller;
    assert_eq!(app::UsersController.topics(), ["accounts"]);
    assert!(app::UsersController.handles(&outbox::Event::custom("password_reset").unwrap()));
}
