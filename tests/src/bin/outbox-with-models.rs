//! The `outbox` command line as a service embeds it (`main_with`), knowing
//! models, for the tests of `outbox schemas` (`tests/tests/cli/schemas.rs`).
//! `OUTBOX_TEST_MODELS` picks the set: `producer` (an account in versions 1–3),
//! `consumer` (a consumer built before versions 2 and 3), `strict` (that
//! consumer without a default for the field version 3 drops).

use std::process::ExitCode;

use outbox::Outboxed;
use outbox_diesel::cli::Schemas;

fn default_locale() -> String {
    "en".to_owned()
}

#[derive(Outboxed)]
#[allow(dead_code)]
#[outbox(topic = "identity.accounts", route = "accounts", versions = [1, 2, 3], avro)]
struct Account {
    id: i64,
    #[outbox(rename(v1 = "mail"))]
    email: String,
    #[outbox(since = 2, default = default_locale)]
    locale: String,
    #[outbox(until = 2, default)]
    legacy_flags: u32,
    #[outbox(since = 3, default)]
    last_login: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Outboxed)]
#[allow(dead_code)]
#[outbox(
    topic = "identity.accounts",
    route = "accounts",
    avro(name = "Account")
)]
struct OldAccount {
    id: i64,
    #[outbox(rename = "mail")]
    email: String,
    #[outbox(default)]
    legacy_flags: u32,
}

#[derive(Outboxed)]
#[allow(dead_code)]
#[outbox(
    topic = "identity.accounts",
    route = "accounts",
    avro(name = "Account")
)]
struct StrictOldAccount {
    id: i64,
    #[outbox(rename = "mail")]
    email: String,
    legacy_flags: u32,
}

fn main() -> ExitCode {
    let schemas = match std::env::var("OUTBOX_TEST_MODELS").as_deref() {
        Ok("producer") => Schemas::new().produces::<Account>(),
        Ok("consumer") => Schemas::new().consumes::<OldAccount>(),
        Ok("strict") => Schemas::new().consumes::<StrictOldAccount>(),
        _ => Schemas::new(),
    };
    outbox_diesel::cli::main_with(schemas)
}
