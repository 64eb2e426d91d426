//! Lags from a message's commit to a later sighting of it (acknowledged by
//! Kafka, consumed), in milliseconds.

use std::collections::HashMap;
use std::time::Instant;

use outbox::MessageId;

use crate::common::stats::percentile;

/// Of each sighting of a message in `commit_at`, how long after its commit
/// it came, in ms (sightings of other messages are left out).
pub(crate) fn lags_ms(
    commit_at: &HashMap<MessageId, Instant>,
    seen: &[(MessageId, Instant)],
) -> Vec<f64> {
    seen.iter()
        .filter_map(|(id, at)| {
            Some(
                at.saturating_duration_since(*commit_at.get(id)?)
                    .as_secs_f64()
                    * 1e3,
            )
        })
        .collect()
}

/// `p50 / p99 / max ms` of `lags`.
pub(crate) fn spread(lags: &[f64]) -> String {
    format!(
        "{:.1} / {:.1} / {:.1} ms",
        percentile(lags, 0.5),
        percentile(lags, 0.99),
        percentile(lags, 1.0)
    )
}
