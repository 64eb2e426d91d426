#[derive(outbox::Outboxed)]
#[diesel(table_name = users, primary_key(users::id))]
#[outbox(topic = "accounts")]
struct User {
    id: i64,
    name: String,
}

fn main() {}
