// `format = "avro"` needs the schemas `payload_with` cannot give.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", payload_with = payload, format = "avro")]
struct User {
    id: i64,
}

fn payload(
    user: &User,
    _event: &outbox::Event,
    _version: u32,
) -> Result<serde_json::Value, outbox::Error> {
    Ok(serde_json::json!({ "id": user.id }))
}

fn main() {}
