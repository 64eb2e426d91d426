#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
union User {
    id: i64,
}

fn main() {}
