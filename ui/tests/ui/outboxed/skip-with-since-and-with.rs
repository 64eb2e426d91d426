#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(skip, since = 2, with = chrono::serde::ts_seconds)]
    name: String,
}

fn main() {}
