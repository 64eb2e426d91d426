//! Stack tests: what the later layers rely on, proven against the real
//! PostgreSQL and Kafka that `scripts/services.sh up` starts.

mod stack {
    mod diesel_transactions;
    mod kafka_consumer_group;
    mod kafka_producer;
    mod message_through_kafka;
    mod support;
}
