//! Helpers shared by the stack tests.

use std::time::Duration;

use futures::StreamExt;
use rdkafka::Message as _;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::OwnedMessage;

/// The first receive after a group join on a fresh broker takes seconds; be generous.
pub(crate) const RECEIVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Receives `count` records, failing the test on a Kafka error or a timeout.
pub(crate) async fn receive(consumer: &StreamConsumer, count: usize) -> Vec<OwnedMessage> {
    let mut stream = consumer.stream();
    let mut received = Vec::with_capacity(count);
    while received.len() < count {
        let next = tokio::time::timeout(RECEIVE_TIMEOUT, stream.next())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "received {} of {count} records before timing out after {RECEIVE_TIMEOUT:?}",
                    received.len()
                )
            });
        let record = next
            .expect("the consumer stream never ends")
            .unwrap_or_else(|e| panic!("Kafka error while consuming: {e}"));
        received.push(record.detach());
    }
    received
}

/// Asserts that nothing more arrives within `quiet`.
pub(crate) async fn assert_nothing_more(consumer: &StreamConsumer, quiet: Duration) {
    let mut stream = consumer.stream();
    if let Ok(Some(extra)) = tokio::time::timeout(quiet, stream.next()).await {
        let extra = extra.map(|m| (m.partition(), m.offset()));
        panic!("expected no more records, got {extra:?}");
    }
}
