#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2, 2])]
struct User {
    id: i64,
}

fn main() {}
