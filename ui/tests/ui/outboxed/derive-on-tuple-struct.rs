#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User(i64, String);

fn main() {}
