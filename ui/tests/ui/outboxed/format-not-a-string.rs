// `format` takes a string.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", format = avro)]
struct User {
    id: i64,
}

fn main() {}
