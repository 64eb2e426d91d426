#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    #[outbox(with = chrono::serde::ts_seconds)]
    created_at: String,
}

fn main() {}
