// With `avro`, every field needs an Avro type: a `u64` (Avro has no unsigned
// integer) and a type of the user's are reported at the field's type, with
// the way out (`avro_type`) in the note.
#[derive(serde::Serialize, serde::Deserialize)]
struct Money {
    cents: i64,
}

#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", avro)]
struct User {
    id: i64,
    visits: u64,
    balance: Money,
}

fn main() {}
