// A message without its version could not be ordered.
diesel::table! {
    users (id) {
        id -> BigInt,
        revision -> Integer,
    }
}

#[derive(outbox::Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "accounts")]
struct User {
    id: i64,
    #[outbox(version, default)]
    revision: i32,
}

fn main() {}
