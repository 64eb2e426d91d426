#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(rename(v1 = "mail", v3 = "email_address"))]
    email: String,
}

fn main() {}
