#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = "1")]
struct User {
    id: i64,
}

fn main() {}
