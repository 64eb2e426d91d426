#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [2, 1])]
struct User {
    id: i64,
}

fn main() {}
