// A row keeps its key; the version counts its changes.
diesel::table! {
    users (id) {
        id -> BigInt,
    }
}

#[derive(outbox::Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "accounts")]
struct User {
    #[outbox(version)]
    id: i64,
}

fn main() {}
