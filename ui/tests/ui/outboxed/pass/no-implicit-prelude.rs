//! The generated code names everything by absolute path.
#![no_implicit_prelude]
#![deny(warnings)]

extern crate std;

mod models {
    #![no_implicit_prelude]

    #[derive(::outbox::Outboxed)]
    #[outbox(topic = "accounts", route = "users", versions = [1, 2])]
    pub struct User {
        pub id: i64,
        #[outbox(rename(v1 = "mail"))]
        pub email: ::std::string::String,
        #[outbox(since = 2, default)]
        pub tags: ::std::vec::Vec<::std::string::String>,
        #[outbox(skip)]
        pub secret: ::std::option::Option<::std::string::String>,
    }

    #[derive(::outbox::Outboxed)]
    #[outbox(topic = "orders", route = "lines", partition_key = order_id)]
    #[diesel(primary_key(order_id, line))]
    pub struct Line {
        pub order_id: i64,
        pub line: i32,
    }
}

fn main() {
    use ::outbox::Outboxed;
    let user = models::User {
        id: 1,
        email: ::std::string::ToString::to_string("a@example.com"),
        tags: ::std::vec::Vec::new(),
        secret: ::std::option::Option::None,
    };
    let payload = user.to_payload(&::outbox::Event::Created, 1).unwrap();
    ::std::assert_eq!(models::User::from_payload(&::outbox::Event::Created, 1, &payload).unwrap().email, "a@example.com");
    let line = models::Line { order_id: 7, line: 1 };
    ::std::assert_eq!(line.partition_key(), "7");
    ::std::assert_eq!(models::Line::key_from_payload(1, &line.to_payload(&::outbox::Event::Destroyed, 1).unwrap()).unwrap(), (7, 1));
}
