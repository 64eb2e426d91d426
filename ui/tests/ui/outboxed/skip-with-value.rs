#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    #[outbox(skip = true)]
    name: String,
}

fn main() {}
