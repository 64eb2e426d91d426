//! The consumer: Kafka records applied exactly once through controllers.
