// An Avro namespace is names joined by `.`: an empty segment is refused.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", avro(namespace = "com..acme"))]
struct User {
    id: i64,
}

fn main() {}
