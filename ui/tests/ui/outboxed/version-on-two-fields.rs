// One field counts the row's changes.
diesel::table! {
    users (id) {
        id -> BigInt,
        revision -> Integer,
        edits -> Integer,
    }
}

#[derive(outbox::Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "accounts")]
struct User {
    id: i64,
    #[outbox(version)]
    revision: i32,
    #[outbox(version)]
    edits: i32,
}

fn main() {}
