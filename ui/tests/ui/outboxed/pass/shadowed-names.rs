//! The user's own `Result`, `Error`, `Option`, `Ok`, `serde`, `serde_json` and
//! `outbox` do not break the generated code.
#![deny(warnings)]
#![allow(dead_code)]

mod app {
    pub struct Result;
    pub struct Error;
    pub enum Option {
        Some,
        None,
    }
    pub struct Ok;
    pub struct Err;
    pub struct String;
    pub struct Vec;
    pub trait Default {}
    pub mod serde {}
    pub mod serde_json {}
    pub mod outbox {}
    pub mod core {}
    pub mod std {}

    #[derive(::outbox::Outboxed)]
    #[outbox(topic = "accounts", route = "users", versions = [1, 2])]
    pub struct User {
        pub id: i64,
        #[outbox(since = 2, default)]
        pub age: u32,
        #[outbox(skip)]
        pub cached: bool,
    }
}

fn main() {
    use outbox::Outboxed;
    let user = app::User { id: 1, age: 30, cached: true };
    let payload = user.to_payload(&outbox::Event::Created, 2).unwrap();
    assert_eq!(payload, serde_json::json!({"id": 1, "age": 30}));
    let back = app::User::from_payload(&outbox::Event::Created, 1, &serde_json::json!({"id": 1})).unwrap();
    assert_eq!((back.id, back.age, back.cached), (1, 0, false));
}
