//! The checks a running relay or consumer makes, between its own requests,
//! so that its readiness follows the services even while it is idle.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::SimpleAsyncConnection;
use rdkafka::consumer::Consumer as _;

use super::health::Component;
use super::{PROBE_INTERVAL, PROBE_TIMEOUT};
use crate::consumer::Shared;

/// Aborts a background task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Every [`PROBE_INTERVAL`], asks the brokers for their metadata with `fetch`
/// (a blocking librdkafka call, given its timeout) and records the answer in
/// `component`'s Kafka state.
pub(crate) fn probe_kafka(
    fetch: impl Fn(Duration) -> Result<(), String> + Send + Sync + 'static,
    component: Component,
) -> AbortOnDrop {
    let fetch = Arc::new(fetch);
    AbortOnDrop(tokio::spawn(async move {
        loop {
            let fetch = Arc::clone(&fetch);
            match tokio::task::spawn_blocking(move || fetch(PROBE_TIMEOUT)).await {
                Ok(Ok(())) => component.kafka_ok(),
                Ok(Err(reason)) => component.kafka_failed(reason),
                Err(_) => component.kafka_failed("the metadata request panicked"),
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }))
}

/// The consumer's probes: its pool (a checkout and `SELECT 1`) and its
/// Kafka client (a metadata request), every [`PROBE_INTERVAL`].
pub(crate) fn probe_consumer(shared: &Arc<Shared>, component: &Component) -> [AbortOnDrop; 2] {
    let kafka = {
        let shared = Arc::clone(shared);
        probe_kafka(
            move |timeout| {
                shared
                    .consumer
                    .fetch_metadata(None, timeout)
                    .map(drop)
                    .map_err(|error| format!("metadata request: {error}"))
            },
            component.clone(),
        )
    };
    let pool = shared.pool.clone();
    let health = component.clone();
    let database = AbortOnDrop(tokio::spawn(async move {
        loop {
            let checked = match crate::consumer::checkout(&pool).await {
                Ok(mut conn) => {
                    match tokio::time::timeout(PROBE_TIMEOUT, conn.batch_execute("SELECT 1")).await
                    {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(error)) => Err(format!("SELECT 1: {error}")),
                        Err(_) => Err(format!("SELECT 1: no answer within {PROBE_TIMEOUT:?}")),
                    }
                }
                Err(error) => Err(error),
            };
            match checked {
                Ok(()) => health.database_ok(),
                Err(reason) => health.database_failed(reason),
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }));
    [kafka, database]
}
