#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User;

fn main() {}
