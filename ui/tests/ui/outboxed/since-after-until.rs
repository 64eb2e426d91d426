#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2, 3])]
struct User {
    id: i64,
    #[outbox(since = 3, until = 2)]
    nickname: String,
}

fn main() {}
