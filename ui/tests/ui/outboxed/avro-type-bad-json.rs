// `avro_type` JSON text that does not parse is reported with the parser's message.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", avro)]
struct User {
    id: i64,
    #[outbox(avro_type = r#"{"type": "enum", "name": "Kind", "symbols": ["A", "B",]}"#)]
    kind: String,
}

fn main() {}
