// An `avro_type` that is neither a known type name nor JSON suggests the nearest names.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", avro)]
struct User {
    id: i64,
    #[outbox(avro_type = "timestamp")]
    created_at: chrono::DateTime<chrono::Utc>,
}

fn main() {}
