// A skipped field is in no schema, so its `avro_type` has no effect.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", avro)]
struct User {
    id: i64,
    #[outbox(skip, avro_type = "string")]
    password_hash: String,
}

fn main() {}
