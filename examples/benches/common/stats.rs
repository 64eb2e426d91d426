//! Small statistics over the rounds' figures.

/// The median; of an even count, the mean of the two middle values.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let sorted = sorted(values);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// The value at quantile `q` (0 to 1), nearest rank: `percentile(v, 1.0)` is
/// the largest.
pub(crate) fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let sorted = sorted(values);
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// The median by nearest rank: of an even count, the upper of the two middle
/// values.
pub(crate) fn upper_median(values: &[f64]) -> f64 {
    percentile(values, 0.5)
}

/// The largest value (NaN when there is none).
pub(crate) fn best(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NAN, f64::max)
}

fn sorted(values: &[f64]) -> Vec<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted
}
