// `version` is a flag: it takes no value.
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
    #[outbox(version = true)]
    revision: i32,
}

fn main() {}
