#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", partition_key = 42)]
struct User {
    id: i64,
    name: String,
}

fn main() {}
