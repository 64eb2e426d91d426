use outbox::Outboxed;

#[derive(Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(since = 2)]
    locale: String,
}

fn main() {}
