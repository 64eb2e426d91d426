//! Consumer tests: messages enqueued in a producer's schema, published by a
//! relay, applied by a consumer in another schema, against the real
//! PostgreSQL and Kafka that `scripts/services.sh up` starts. Each test has
//! its own schemas, topics and consumer groups. The crash and rebalance tests
//! run consumers as child processes (`consumer-process`) to kill them.

mod consumer {
    mod failures;
    mod flow;
    mod processes;
    mod support;
}
