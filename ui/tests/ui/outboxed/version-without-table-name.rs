// The consumer reads the row's version from the model's Diesel table.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    #[outbox(version)]
    revision: i32,
}

fn main() {}
