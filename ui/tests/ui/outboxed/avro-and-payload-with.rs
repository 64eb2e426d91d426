// `avro` cannot describe the JSON a `payload_with` function returns.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", payload_with = payload, avro)]
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
