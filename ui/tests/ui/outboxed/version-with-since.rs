// Every payload version carries the version field.
diesel::table! {
    users (id) {
        id -> BigInt,
        revision -> Integer,
    }
}

#[derive(outbox::Outboxed)]
#[diesel(table_name = users)]
#[outbox(topic = "accounts", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(version, since = 2)]
    revision: i32,
}

fn main() {}
