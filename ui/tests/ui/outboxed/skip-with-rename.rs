#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    #[outbox(skip, rename = "hash")]
    password_hash: String,
}

fn main() {}
