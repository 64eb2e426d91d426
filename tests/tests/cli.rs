//! The `outbox` command line, run as a process against the real PostgreSQL and
//! Kafka: what each command prints and changes, and how each mistake is reported
//! (one `error:` line, the exit status, no password).

mod cli {
    mod consumer_reset;
    mod dlq;
    mod errors;
    mod migrations;
    mod parked;
    mod partitions;
    mod projections;
    mod relay;
    mod schemas;
    mod secure;
    mod status;
    mod support;
    mod topics;
}
