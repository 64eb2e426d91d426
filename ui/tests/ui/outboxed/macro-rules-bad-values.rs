// Mistakes in values a `macro_rules!` generator passes on are reported at the
// values the generator's caller wrote, not at the generator's `$fragment`s.
macro_rules! model {
    ($name:ident, topic $topic:literal, versions [$($version:literal),*], since $since:expr, with $with:expr) => {
        #[derive(outbox::Outboxed)]
        #[outbox(topic = $topic, route = "users", versions = [$($version),*])]
        pub struct $name {
            pub id: i64,
            #[outbox(since = $since, default, with = $with)]
            pub email: String,
        }
    };
}

model!(User, topic "user accounts", versions [1, 0], since "2", with 42);

fn main() {}
