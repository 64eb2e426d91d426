#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts/eu", route = "users")]
struct User {
    id: i64,
    name: String,
}

fn main() {}
