// `crate`, `self` and `super` alone are module paths, so they stay valid
// where a key names a module: `crate = crate` when the crate root re-exports
// `outbox`, `with = self` when the serde functions are beside the model.
pub use outbox::*;

pub mod timestamps {
    pub fn serialize<S: serde::Serializer>(value: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        let text: String = serde::Deserialize::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }

    #[derive(outbox::Outboxed)]
    #[outbox(topic = "accounts", route = "users", crate = crate)]
    pub struct User {
        pub id: i64,
        #[outbox(with = self)]
        pub created: i64,
    }

    pub mod nested {
        #[derive(outbox::Outboxed)]
        #[outbox(topic = "accounts", route = "accounts", crate = crate)]
        pub struct Account {
            pub id: i64,
            #[outbox(with = super)]
            pub created: i64,
        }
    }
}

fn main() {
    use outbox::Outboxed;
    let user = timestamps::User { id: 1, created: 7 };
    let payload = user.to_payload(&outbox::Event::Created, 1).unwrap();
    assert_eq!(payload["created"], "7");
    let account = timestamps::nested::Account { id: 2, created: 9 };
    assert_eq!(account.to_payload(&outbox::Event::Created, 1).unwrap()["created"], "9");
}
