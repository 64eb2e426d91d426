#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", route = "users")]
struct User<'a> {
    id: i64,
    name: &'a str,
}

fn main() {}
