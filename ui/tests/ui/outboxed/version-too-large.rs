#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 4294967296])]
struct User {
    id: i64,
}

fn main() {}
