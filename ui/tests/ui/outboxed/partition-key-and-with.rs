#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", partition_key = id, partition_key_with = key)]
struct User {
    id: i64,
}

fn key(user: &User) -> String {
    user.id.to_string()
}

fn main() {}
