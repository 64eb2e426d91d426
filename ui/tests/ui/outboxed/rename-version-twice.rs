#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(rename(v1 = "full_name", v1 = "fullName"))]
    name: String,
}

fn main() {}
