//! Lints the model allows are not raised again by the generated code.
#![deny(warnings)]

#[deprecated(note = "use Locale2")]
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Locale(String);

#[allow(non_snake_case, deprecated)]
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
pub struct User {
    pub id: i64,
    #[outbox(with = chrono::serde::ts_milliseconds)]
    pub createdAt: chrono::DateTime<chrono::Utc>,
    #[outbox(default)]
    pub preferredLocale: Locale,
}

fn main() {}
