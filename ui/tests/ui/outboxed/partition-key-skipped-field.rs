#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users", partition_key = tenant_id)]
struct User {
    id: i64,
    #[outbox(skip)]
    tenant_id: i64,
}

fn main() {}
