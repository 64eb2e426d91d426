#[derive(outbox::Outboxed)]
#[outbox(topic = "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt", route = "users")]
struct User {
    id: i64,
    name: String,
}

fn main() {}
