#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    #[outbox(renam = "mail")]
    email: String,
}

fn main() {}
