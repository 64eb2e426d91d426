#[derive(outbox::Outboxed)]
#[outbox(route = "users")]
struct User {
    id: i64,
}

fn main() {}
