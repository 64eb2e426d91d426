#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    #[outbox(with = 42)]
    name: String,
}

fn main() {}
