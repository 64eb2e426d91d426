#[derive(outbox::Outboxed)]
#[diesel(table_name = users, primary_key(user_id))]
#[outbox(topic = "accounts")]
struct User {
    id: i64,
}

fn main() {}
