// A misspelt key inside `avro(..)` lists the valid ones and suggests the nearest.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
#[outbox(avro(nmae = "User"))]
struct User {
    id: i64,
}

fn main() {}
