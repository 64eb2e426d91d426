// Mistakes in arguments a `macro_rules!` generator passes on are reported at
// the tokens the generator's caller wrote: a model that is not `Outboxed`, an
// invalid route, an invalid event name.
use diesel::prelude::*;

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
    }
}

#[derive(Queryable, Selectable, Insertable, AsChangeset)]
#[diesel(table_name = users)]
pub struct User {
    pub id: i64,
    pub email: String,
}

macro_rules! controller {
    ($name:ident for $model:ty, table $table:path, route $route:expr, on $event:literal) => {
        pub struct $name;

        #[outbox::message_controller(model = $model, table = $table, route = $route)]
        impl $name {
            #[on($event)]
            async fn custom(
                &self,
                _ctx: &mut outbox::Context<'_>,
                _msg: &outbox::Message,
            ) -> Result<(), outbox::HandlerError> {
                Ok(())
            }
        }
    };
}

controller!(Users for User, table users, route "users", on "user.reset");
controller!(Accounts for User, table users, route "user accounts", on "Reset");

fn main() {}
