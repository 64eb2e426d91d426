// `format` is "json" (the default) or "avro".
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", format = "protobuf")]
struct User {
    id: i64,
}

fn main() {}
