#[derive(outbox::Outboxed)]
#[outbox(topic = "..", route = "users")]
struct User {
    id: i64,
    name: String,
}

fn main() {}
