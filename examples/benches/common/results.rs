//! The benchmarks' figures as JSON lines, for `bench-report`
//! (`examples/src/bin/bench-report.rs`) to read and chart.
//!
//! A benchmark builds a [`Figure`] per number it reports and calls
//! [`Figure::record`]. When the environment variable [`RESULTS_VAR`]
//! (`OUTBOX_BENCH_RESULTS`) names a file, the figure is appended to it as
//! one JSON object on one line; otherwise nothing is written (the
//! benchmark's own printing is unchanged). Each figure carries its rounds'
//! values and, when it is compared with a baseline measured in the same run,
//! the ratio of each round's pair and their median: the figure a benchmark is
//! judged by (never the best round).
//!
//! ```ignore
//! use common::results::{Better, Figure};
//!
//! // relay ÷ raw produce at batch 100, three interleaved rounds
//! let raw = [410_000.0, 395_000.0, 402_000.0];
//! let relay = [95_000.0, 91_000.0, 99_000.0];
//! Figure::new("relay", "drain", "relay", "throughput", "msg/s")
//!     .case("batch 100")
//!     .rounds(&relay)
//!     .against("raw produce", &raw)
//!     .target_at_least(0.3)
//!     .record();
//! ```
//!
//! This file is shared: the benchmarks include it through `common/mod.rs`
//! (or directly with `#[path]`), and `bench-report` includes it to read the
//! same format back, so both sides always agree on it.

use std::io::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The environment variable naming the JSON-lines file figures are appended to.
pub(crate) const RESULTS_VAR: &str = "OUTBOX_BENCH_RESULTS";

/// Which way a metric improves; says how to read its ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Better {
    /// More is better (throughput): a ratio above 1 means faster than the baseline.
    #[default]
    Higher,
    /// Less is better (time, latency, memory, CPU): a ratio above 1 costs more.
    Lower,
}

/// A target on the median paired ratio.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Target {
    /// The ratio must be at least this.
    AtLeast(f64),
    /// The ratio must be at most this.
    AtMost(f64),
}

impl Target {
    /// Whether `ratio` meets the target (a NaN ratio never does).
    ///
    /// ```ignore
    /// assert!(Target::AtLeast(0.5).met(0.52));
    /// assert!(!Target::AtMost(1.15).met(1.3));
    /// ```
    pub(crate) fn met(self, ratio: f64) -> bool {
        match self {
            Target::AtLeast(t) => ratio >= t,
            Target::AtMost(t) => ratio <= t,
        }
    }

    /// `≥ 0.5`, `≤ 1.15`.
    pub(crate) fn label(self) -> String {
        match self {
            Target::AtLeast(t) => format!("≥ {t}"),
            Target::AtMost(t) => format!("≤ {t}"),
        }
    }
}

/// One measured figure: what was measured, on which side, its value (the
/// median of its rounds when it has rounds) and, when compared, its median
/// paired ratio against the baseline side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Figure {
    /// The benchmark binary: `payload`, `relay`, `consumer`.
    pub(crate) bench: String,
    /// Its part: `drain`, `enqueue`, `latency`, `catchup`, `encode`, …
    pub(crate) part: String,
    /// The point of the part this figure belongs to (a chart's x axis):
    /// `batch 100`, `8 clients`, `p99`; empty when the part has one.
    #[serde(default)]
    pub(crate) case: String,
    /// Who was measured: `relay`, `raw produce`, `outbox`, `hand`, …
    pub(crate) side: String,
    /// What was measured: `throughput`, `transaction time`, `VmHWM`, …
    pub(crate) metric: String,
    /// The unit of `value` and `rounds`: `msg/s`, `µs`, `ms`, `MiB`, `ns`.
    pub(crate) unit: String,
    /// The figure: the median of `rounds` when there are rounds (JSON has no
    /// NaN: a missing value is written `null` and read back as NaN).
    #[serde(deserialize_with = "nan_if_null")]
    pub(crate) value: f64,
    /// Each round's value, in the order the rounds ran.
    #[serde(default, deserialize_with = "nans_if_null")]
    pub(crate) rounds: Vec<f64>,
    /// Which way the metric improves.
    #[serde(default)]
    pub(crate) better: Better,
    /// The side this figure is compared with, measured in the same run.
    #[serde(default)]
    pub(crate) baseline: Option<String>,
    /// The median of the per-round ratios `rounds[i] / baseline[i]`.
    #[serde(default)]
    pub(crate) ratio: Option<f64>,
    /// The per-round ratios the median was taken of.
    #[serde(default, deserialize_with = "nans_if_null")]
    pub(crate) ratio_rounds: Vec<f64>,
    /// What the ratio should meet.
    #[serde(default)]
    pub(crate) target: Option<Target>,
    /// The load average (1, 5, 15 minutes) when the figure was recorded.
    #[serde(default)]
    pub(crate) load: Vec<f64>,
    /// Anything a reader needs to read the figure right.
    #[serde(default)]
    pub(crate) note: String,
}

impl Figure {
    /// A figure without value yet (`NaN`); give it one with [`Figure::value`]
    /// or [`Figure::rounds`].
    pub(crate) fn new(bench: &str, part: &str, side: &str, metric: &str, unit: &str) -> Self {
        Figure {
            bench: bench.into(),
            part: part.into(),
            case: String::new(),
            side: side.into(),
            metric: metric.into(),
            unit: unit.into(),
            value: f64::NAN,
            rounds: Vec::new(),
            better: Better::Higher,
            baseline: None,
            ratio: None,
            ratio_rounds: Vec::new(),
            target: None,
            load: load_average(),
            note: String::new(),
        }
    }

    /// The point of the part: `batch 100`, `8 clients`, `p99`.
    pub(crate) fn case(mut self, case: impl Into<String>) -> Self {
        self.case = case.into();
        self
    }

    /// A single value (no rounds).
    pub(crate) fn value(mut self, value: f64) -> Self {
        self.value = value;
        self
    }

    /// The rounds' values; the figure's value becomes their median.
    pub(crate) fn rounds(mut self, rounds: &[f64]) -> Self {
        self.rounds = rounds.to_vec();
        self.value = median(rounds);
        self
    }

    /// Less is better for this metric (time, latency, memory).
    pub(crate) fn lower_is_better(mut self) -> Self {
        self.better = Better::Lower;
        self
    }

    /// Compared with `side`, whose rounds (paired by index with this
    /// figure's, as they were interleaved) are `baseline`: the ratio of each
    /// pair, and the median of those ratios. Without rounds on either side,
    /// the ratio of the two values (give a single-value baseline as a
    /// one-element slice).
    pub(crate) fn against(mut self, side: &str, baseline: &[f64]) -> Self {
        self.baseline = Some(side.into());
        let ours = if self.rounds.is_empty() {
            vec![self.value]
        } else {
            self.rounds.clone()
        };
        self.ratio_rounds = paired_ratios(&ours, baseline);
        self.ratio = Some(median(&self.ratio_rounds)).filter(|r| r.is_finite());
        self
    }

    /// The median paired ratio must be at least `t`.
    pub(crate) fn target_at_least(mut self, t: f64) -> Self {
        self.target = Some(Target::AtLeast(t));
        self
    }

    /// The median paired ratio must be at most `t`.
    pub(crate) fn target_at_most(mut self, t: f64) -> Self {
        self.target = Some(Target::AtMost(t));
        self
    }

    /// A note for the reader.
    pub(crate) fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }

    /// Appends the figure to the file [`RESULTS_VAR`] names; does nothing when
    /// it is not set. A file that cannot be written is reported on stderr,
    /// once per figure, and the benchmark goes on.
    pub(crate) fn record(self) {
        if let Some(path) = std::env::var_os(RESULTS_VAR)
            && let Err(error) = self.append_to(Path::new(&path))
        {
            eprintln!(
                "{RESULTS_VAR}: cannot append to {}: {error}",
                Path::new(&path).display()
            );
        }
    }

    /// Appends the figure to `path` as one JSON line.
    pub(crate) fn append_to(&self, path: &Path) -> std::io::Result<()> {
        let mut line = serde_json::to_string(self).map_err(std::io::Error::other)?;
        line.push('\n');
        // One write of a whole line with O_APPEND: lines of concurrent writers do not interleave.
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?
            .write_all(line.as_bytes())
    }

    /// Whether the ratio meets the target: `None` without a target or a ratio.
    pub(crate) fn verdict(&self) -> Option<bool> {
        Some(self.target?.met(self.ratio?))
    }
}

/// The figures of a JSON-lines text, in order, and the lines that are not
/// figures (1-based line number and the parse error), which a reader reports
/// rather than drops silently. Blank lines are skipped.
///
/// ```ignore
/// let (figures, bad) = parse_lines("{\"bench\":\"payload\", …}\nnot json\n");
/// assert_eq!(bad[0].0, 2);
/// ```
pub(crate) fn parse_lines(text: &str) -> (Vec<Figure>, Vec<(usize, String)>) {
    let mut figures = Vec::new();
    let mut bad = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Figure>(line) {
            Ok(figure) => figures.push(figure),
            Err(error) => bad.push((i + 1, error.to_string())),
        }
    }
    (figures, bad)
}

/// `ours[i] / baseline[i]` for each pair of rounds (the shorter length wins);
/// a one-element `baseline` is divided into every round of `ours`.
pub(crate) fn paired_ratios(ours: &[f64], baseline: &[f64]) -> Vec<f64> {
    if baseline.len() == 1 {
        return ours.iter().map(|o| o / baseline[0]).collect();
    }
    ours.iter().zip(baseline).map(|(o, b)| o / b).collect()
}

/// The median (of an even count, the mean of the two middle values); NaN of
/// nothing. NaN values are left out.
pub(crate) fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(|a, b| a.total_cmp(b));
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// The load averages over 1, 5 and 15 minutes from `/proc/loadavg` (empty
/// where it cannot be read).
pub(crate) fn load_average() -> Vec<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .filter_map(|v| v.parse().ok())
        .collect()
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nans_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
    Ok(Vec::<Option<f64>>::deserialize(d)?
        .into_iter()
        .map(|v| v.unwrap_or(f64::NAN))
        .collect())
}

#[cfg(test)]
mod tests {
    // `cargo bench` builds a `harness = false` bench with `cfg(test)` but drops
    // its `#[test]` functions, leaving this import unused there.
    #[allow(unused_imports)]
    use super::*;

    #[test]
    fn the_ratio_is_the_median_of_paired_rounds() {
        let figure = Figure::new("relay", "drain", "relay", "throughput", "msg/s")
            .case("batch 100")
            .rounds(&[120.0, 110.0, 130.0, 100.0])
            .against("raw produce", &[400.0, 380.0, 410.0, 100.0])
            .target_at_least(0.3);
        // value: median of 100, 110, 120, 130
        assert_eq!(figure.value, 115.0);
        // ratios 0.3, 0.289, 0.317, 1.0: median (0.3 + 0.317) / 2; not the best round's 1.0
        let ratio = figure.ratio.unwrap();
        assert!(
            (ratio - (0.3 + 130.0 / 410.0) / 2.0).abs() < 1e-12,
            "{ratio}"
        );
        assert_eq!(figure.ratio_rounds.len(), 4);
        assert_eq!(figure.verdict(), Some(true));
        assert_eq!(Target::AtMost(1.15).label(), "≤ 1.15");
        assert!(!Target::AtMost(1.15).met(f64::NAN));
    }

    #[test]
    fn a_single_value_against_a_single_baseline() {
        let figure = Figure::new("relay", "memory", "relay", "VmHWM", "MiB")
            .value(30.0)
            .lower_is_better()
            .against("limit", &[50.0]);
        assert_eq!(figure.ratio, Some(0.6));
        assert_eq!(figure.verdict(), None);
    }

    #[test]
    fn figures_go_through_json_lines_and_nan_survives() {
        let path = std::env::temp_dir().join(format!("results-{}.jsonl", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let with_nan = Figure::new("consumer", "live", "outbox", "p99", "ms")
            .rounds(&[f64::NAN, 4.0, 6.0])
            .lower_is_better()
            .note("one round saw no record");
        let plain = Figure::new("payload", "encode", "serde", "time per call", "ns").value(98.5);
        with_nan.append_to(&path).unwrap();
        plain.append_to(&path).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        text.push_str("\nnot a figure\n");
        let (figures, bad) = parse_lines(&text);
        assert_eq!(figures.len(), 2);
        assert!(figures[0].rounds[0].is_nan());
        assert_eq!(figures[0].rounds[1..], [4.0, 6.0]);
        assert_eq!(figures[0].value, 5.0);
        assert_eq!(figures[0].better, Better::Lower);
        assert_eq!(figures[1], plain);
        assert_eq!(bad.len(), 1);
        assert_eq!(bad[0].0, 4);
    }

    #[test]
    fn older_or_smaller_lines_parse_with_defaults() {
        let (figures, bad) = parse_lines(
            r#"{"bench":"relay","part":"memory","side":"relay","metric":"VmHWM","unit":"MiB","value":null}"#,
        );
        assert!(bad.is_empty(), "{bad:?}");
        assert!(figures[0].value.is_nan());
        assert_eq!(figures[0].case, "");
        assert_eq!(figures[0].target, None);
    }
}
