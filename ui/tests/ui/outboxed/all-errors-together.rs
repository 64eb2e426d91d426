// Every mistake in one derive is reported in one compile.
#[derive(outbox::Outboxed)]
#[outbox(topik = "accounts", versions = [2, 1], destroyed = "all")]
struct User {
    id: i64,
    #[outbox(since = 5)]
    locale: String,
    #[outbox(renme = "mail")]
    email: String,
    #[outbox(rename = "locale")]
    language: String,
    #[outbox(version, default)]
    revision: i32,
}

fn main() {}
