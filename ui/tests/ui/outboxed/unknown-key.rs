#[derive(outbox::Outboxed)]
#[outbox(topik = "accounts", route = "users")]
struct User {
    id: i64,
}

fn main() {}
