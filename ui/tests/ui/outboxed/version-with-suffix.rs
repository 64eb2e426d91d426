#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2u8])]
struct User {
    id: i64,
    name: String,
}

fn main() {}
