//! Consumer tests: messages enqueued in a producer's schema, published by a
//! relay, applied by a consumer in another schema, against the real
//! PostgreSQL and Kafka that `scripts/services.sh up` starts. Each test has
//! its own schemas, topics and consumer groups. The crash and rebalance tests
//! run consumers as child processes (`consumer-process`) to kill them;
//! `regressions` pins the fixes of the consumer review (panics, values
//! PostgreSQL refuses, backpressure, a rebalance while records fail);
//! `retention` the deletion of old inbox rows; `grouped` the grouped upserts
//! of hook-free controllers; `avro` Avro records read with the writer's
//! schema from the real schema registry; `carried_columns` the upserts of
//! messages whose version does not carry every field.

mod consumer {
    mod avro;
    mod batches;
    mod carried_columns;
    mod error_events;
    mod failures;
    mod flow;
    mod grouped;
    mod processes;
    mod projections;
    mod readme_projection;
    mod regressions;
    mod retention;
    mod skip;
    mod support;
    mod versions;
}
