// An Avro record name is `[A-Za-z_][A-Za-z0-9_]*`; the error is on the literal.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", avro(name = "user-record"))]
struct User {
    id: i64,
}

fn main() {}
