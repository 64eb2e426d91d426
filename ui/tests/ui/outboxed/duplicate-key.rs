#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
#[outbox(topic = "users")]
struct User {
    id: i64,
}

fn main() {}
