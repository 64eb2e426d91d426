#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [2, 3])]
struct User {
    id: i64,
    #[outbox(until = 1)]
    name: String,
}

fn main() {}
