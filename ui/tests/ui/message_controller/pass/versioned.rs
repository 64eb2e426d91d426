//! Controllers of models with a version field, each gap policy, one from a
//! `macro_rules!` generator (`gap = $gap`), in a module without the
//! implicit prelude: they build without a warning and never group.
#![deny(warnings)]

// Diesel's derives need the prelude: the models live outside.
mod models {
    use diesel::prelude::*;

    diesel::table! {
        users (id) {
            id -> BigInt,
            email -> Text,
            revision -> Integer,
        }
    }

    #[derive(Insertable, AsChangeset, outbox::Outboxed)]
    #[diesel(table_name = users)]
    #[outbox(topic = "accounts")]
    pub struct User {
        pub id: i64,
        pub email: String,
        #[outbox(version)]
        pub revision: i32,
    }
}

mod controllers {
    #![no_implicit_prelude]

    use super::models::{User, users};
    use ::outbox::{Context, HandlerError};
    use ::std::result::Result::{self, Ok};

    /// The default policy, with hooks.
    pub struct Waiting;

    #[::outbox::message_controller(model = User, table = users)]
    impl Waiting {
        async fn before_update(&self, _ctx: &mut Context<'_>, user: User) -> Result<User, HandlerError> {
            Ok(user)
        }

        async fn after_destroy(&self, _ctx: &mut Context<'_>, _key: &i64) -> Result<(), HandlerError> {
            Ok(())
        }
    }

    macro_rules! controller {
        ($name:ident, $route:literal, $gap:literal) => {
            pub struct $name;

            #[::outbox::message_controller(model = User, table = users, route = $route, gap = $gap)]
            impl $name {}
        };
    }

    controller!(Stopping, "stopping", "stop");
    controller!(Accepting, "accepting", "accept");
    controller!(WaitingToo, "waiting", "wait");
}

fn main() {
    use outbox::{Controller, Event};
    for event in [Event::Created, Event::Updated, Event::Destroyed] {
        assert!(!controllers::Waiting.groups(&event));
        assert!(!controllers::Stopping.groups(&event));
        assert!(!controllers::Accepting.groups(&event));
        assert!(!controllers::WaitingToo.groups(&event));
    }
    assert_eq!(controllers::Accepting.route(), "accepting");
}
