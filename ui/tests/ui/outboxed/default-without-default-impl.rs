#[derive(serde::Serialize, serde::Deserialize)]
struct Locale(String);

#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", versions = [1, 2])]
struct User {
    id: i64,
    #[outbox(since = 2, default)]
    locale: Locale,
}

fn main() {}
