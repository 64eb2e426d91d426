// A version is an `i16`, `i32` or `i64`: the error lands on the field's type.
diesel::table! {
    users (id) {
        id -> BigInt,
        revision -> Text,
    }
}

#[derive(outbox::Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "accounts")]
struct User {
    id: i64,
    #[outbox(version)]
    revision: String,
}

fn main() {}
