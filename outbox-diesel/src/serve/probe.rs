//! The checks a running relay or consumer makes, between its own requests,
//! so that its readiness follows the services even while it is idle.

use std::sync::Arc;
use std::time::{Duration, Instant};

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
/// (a blocking librdkafka call, given [`PROBE_TIMEOUT`]) and records the
/// answer in `component`'s Kafka state (whether the brokers answer; a relay's
/// publishes are recorded apart).
pub(crate) fn probe_kafka(
    fetch: impl Fn(Duration) -> Result<(), String> + Send + Sync + 'static,
    component: Component,
) -> AbortOnDrop {
    let fetch = Arc::new(fetch);
    AbortOnDrop(tokio::spawn(async move {
        loop {
            let fetch = Arc::clone(&fetch);
            let started = Instant::now();
            let result = tokio::task::spawn_blocking(move || fetch(PROBE_TIMEOUT))
                .await
                .unwrap_or_else(|_| Err("the metadata request panicked".to_owned()));
            component.kafka_checked(started, result);
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
            let started = Instant::now();
            let checked = match tokio::time::timeout(PROBE_TIMEOUT, select_one(&pool)).await {
                Ok(checked) => checked,
                Err(_) => Err(format!(
                    "no connection and answer to SELECT 1 within {PROBE_TIMEOUT:?}"
                )),
            };
            health.database_checked(started, checked);
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    }));
    [kafka, database]
}

/// A checkout and `SELECT 1`, bounded by the caller: the probe as a whole
/// has [`PROBE_TIMEOUT`], not the consumer's longer checkout timeout.
async fn select_one(pool: &crate::consumer::Pool) -> Result<(), String> {
    let mut conn = pool
        .get()
        .await
        .map_err(|error| crate::error::error_chain(&error))?;
    conn.batch_execute("SELECT 1")
        .await
        .map_err(|error| format!("SELECT 1: {error}"))
}
