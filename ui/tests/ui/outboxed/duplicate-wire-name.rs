#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(until = 1)]
    email: String,
    #[outbox(rename = "email")]
    email_address: String,
}

fn main() {}
