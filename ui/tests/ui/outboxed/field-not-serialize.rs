#[derive(serde::Deserialize)]
struct Locale(String);

#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User {
    id: i64,
    locale: Locale,
}

fn main() {}
