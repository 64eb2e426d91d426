//! The made-up business data the benchmarks' models carry.

use chrono::{DateTime, TimeZone, Utc};

/// Distinct Kafka keys (customers, accounts): message `n` is about `n % KEYS`.
pub(crate) const KEYS: i64 = 1_000;

/// Message `n`'s business time: 2026-11-24 09:30 UTC, plus `n` milliseconds.
pub(crate) fn timestamp(n: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 24, 9, 30, 0).unwrap() + chrono::Duration::milliseconds(n)
}

/// Key `id`'s postal address.
pub(crate) fn address(id: i64) -> String {
    format!("{id} Rue de la Paix, 75002 Paris, FR")
}
