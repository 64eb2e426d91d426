//! `chaos inspect`: prints the records of a partition of a run's topic
//! (offset, key, event, message id), to investigate an audit's finding: a
//! lost message's record is on the broker or it is not.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::message::{Headers as _, Message as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::cli::InspectArgs;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub(crate) fn run(args: InspectArgs) -> Result<(), BoxError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", "outbox-chaos-inspect")
        .set("enable.auto.commit", "false")
        .create()?;
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(&args.topic, args.partition, Offset::Offset(args.from))?;
    consumer.assign(&assignment)?;
    let started = Instant::now();
    let mut printed = 0;
    while printed < args.count && started.elapsed() < Duration::from_secs(30) {
        let Some(record) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let record = record?;
        let header = |name: &str| {
            record.headers().and_then(|headers| {
                headers
                    .iter()
                    .find(|h| h.key == name)
                    .and_then(|h| h.value)
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            })
        };
        println!(
            "{}\t{}\t{}\t{}",
            record.offset(),
            String::from_utf8_lossy(record.key().unwrap_or_default()),
            header(outbox::headers::EVENT).unwrap_or_default(),
            header(outbox::headers::MESSAGE_ID).unwrap_or_default()
        );
        printed += 1;
    }
    Ok(())
}
