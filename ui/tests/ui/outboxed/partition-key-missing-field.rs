#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", partition_key = tenant)]
struct User {
    id: i64,
    tenant_id: i64,
}

fn main() {}
