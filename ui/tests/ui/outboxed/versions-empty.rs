#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [])]
struct User {
    id: i64,
}

fn main() {}
