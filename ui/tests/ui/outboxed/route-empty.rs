#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "")]
struct User {
    id: i64,
    name: String,
}

fn main() {}
