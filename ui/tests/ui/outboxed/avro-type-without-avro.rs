// `avro_type` without `avro` on the struct would be ignored, so it is refused at the key.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    #[outbox(avro_type = "string")]
    email: String,
}

fn main() {}
