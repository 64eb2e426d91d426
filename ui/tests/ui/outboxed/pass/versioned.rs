//! Models with a version field: written out and from a `macro_rules!`
//! generator (the field, its column and the crate path as fragments), with a
//! composite key, in a module without the implicit prelude. They build
//! without a warning; a keys-only destroyed payload carries the version.
#![deny(warnings)]

// `table!` needs the prelude: the tables live outside.
mod schema {
    ::diesel::table! {
        accounts (id) {
            id -> BigInt,
            owner -> Text,
            rev -> SmallInt,
        }
    }

    ::diesel::table! {
        seats (team_id, seat) {
            team_id -> BigInt,
            seat -> Integer,
            revision -> BigInt,
        }
    }
}

/// What a library re-exporting `outbox` for its generator looks like.
pub mod reexport {
    pub use ::outbox;
}

mod models {
    #![no_implicit_prelude]

    use super::schema::{accounts, seats};

    #[derive(::outbox::Outboxed)]
    #[diesel(table_name = accounts)]
    #[outbox(topic = "accounts", versions = [1, 2])]
    pub struct Account {
        pub id: i64,
        pub owner: ::std::string::String,
        #[outbox(version, rename(v1 = "rev"))]
        #[diesel(column_name = rev, serialize_as = i16)]
        pub revision: i16,
    }

    macro_rules! versioned {
        ($name:ident in $table:ident, crate $krate:path, $version:ident => $column:ident: $ty:ty) => {
            #[derive(::outbox::Outboxed)]
            #[diesel(table_name = $table, primary_key(team_id, seat))]
            #[outbox(topic = "teams", crate = $krate)]
            pub struct $name {
                pub team_id: i64,
                pub seat: i32,
                #[outbox(version)]
                #[diesel(column_name = $column)]
                pub $version: $ty,
            }
        };
    }

    versioned!(Seat in seats, crate super::reexport::outbox, changes => revision: i64);
}

fn main() {
    use ::outbox::Outboxed;
    use ::std::assert_eq;

    let account = models::Account { id: 7, owner: ::std::string::ToString::to_string("ada"), revision: 3 };
    assert_eq!(models::Account::VERSION_FIELD, ::std::option::Option::Some("revision"));
    assert_eq!(account.version(), ::std::option::Option::Some(3));
    let destroyed = account.to_payload(&::outbox::Event::Destroyed, 1).unwrap();
    assert_eq!(destroyed, ::serde_json::json!({"id": 7, "rev": 3}));
    assert_eq!(models::Account::key_from_payload(1, &destroyed).unwrap(), 7);

    let seat = models::Seat { team_id: 1, seat: 2, changes: 9 };
    assert_eq!(models::Seat::VERSION_FIELD, ::std::option::Option::Some("changes"));
    let destroyed = seat.to_payload(&::outbox::Event::Destroyed, 1).unwrap();
    assert_eq!(destroyed, ::serde_json::json!({"team_id": 1, "seat": 2, "changes": 9}));
}
