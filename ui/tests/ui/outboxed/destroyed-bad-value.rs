#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", destroyed = "everything")]
struct User {
    id: i64,
}

fn main() {}
