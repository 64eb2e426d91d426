#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
enum User {
    Active { id: i64 },
}

fn main() {}
