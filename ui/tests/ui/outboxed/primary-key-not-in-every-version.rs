#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2])]
struct User {
    #[outbox(since = 2, default)]
    id: i64,
}

fn main() {}
