#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts")]
struct User {
    id: i64,
}

fn main() {}
