#[derive(outbox::Outboxed)]
#[outbox]
struct User {
    id: i64,
}

fn main() {}
