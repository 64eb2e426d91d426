#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    #[outbox(rename(version1 = "mail"))]
    email: String,
}

fn main() {}
