// With `avro`, a `with` field must give its Avro type: the module decides the serialized form.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", avro)]
struct User {
    id: i64,
    #[outbox(with = chrono::serde::ts_seconds)]
    created_at: chrono::DateTime<chrono::Utc>,
}

fn main() {}
