// A lone `crate`, `self`, `super` or `Self` where a key names an item is
// refused at the key's value, naming the key and what it expects, not left
// to rustc as "expected `!`" on the generated call. In a `macro_rules!`
// fragment too.
#[derive(outbox::Outboxed)]
#[outbox(topic = "accounts", partition_key_with = crate, payload_with = self, crate = Self)]
#[diesel(table_name = super)]
struct User {
    id: i64,
    #[outbox(default = crate)]
    created: i64,
    #[outbox(default = "Self", since = 1)]
    updated: i64,
    #[outbox(with = Self)]
    name: String,
}

macro_rules! model {
    ($with:path, $default:expr) => {
        #[derive(outbox::Outboxed)]
        #[outbox(topic = "accounts", route = "accounts")]
        struct Account {
            id: i64,
            #[outbox(with = $with)]
            name: String,
            #[outbox(default = $default)]
            balance: i64,
        }
    };
}

model!(Self, super);

fn main() {}
