#[derive(outbox::Outboxed)]
#[outbox(topic = "user accounts", route = "users")]
struct User {
    id: i64,
}

fn main() {}
