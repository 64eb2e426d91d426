//! Relay tests: the enqueue path and the relay against the real PostgreSQL and
//! Kafka that `scripts/services.sh up` starts, each test in its own schema and
//! topics. The broker outage test stops the shared broker, so it lives in a
//! binary of its own (`relay_broker_outage.rs`).

mod relay {
    mod avro;
    mod enqueue;
    mod failures;
    mod ordering;
    mod plans;
    mod support;
}
