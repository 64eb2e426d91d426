#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", destroyed = full)]
struct User {
    id: i64,
    name: String,
}

fn main() {}
