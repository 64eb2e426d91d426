#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    #[outbox(skip)]
    id: i64,
}

fn main() {}
