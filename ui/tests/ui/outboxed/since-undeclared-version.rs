#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(since = 3)]
    locale: String,
}

fn main() {}
