//! A `metrics` recorder that sees only the counters and histograms a
//! benchmark follows: the code under test is watched from the outside, through
//! the metrics it emits anyway.

use metrics::{
    Counter, CounterFn, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder,
    SharedString, Unit,
};

/// Hands out, by metric name, what `counter` and `histogram` give (a no-op
/// for `None`, for gauges and descriptions).
pub(crate) struct Watch {
    pub(crate) counter: fn(&str) -> Option<Counter>,
    pub(crate) histogram: fn(&str) -> Option<Histogram>,
}

impl Watch {
    /// Installs `self` as the global recorder (once per process).
    pub(crate) fn install(self) {
        metrics::set_global_recorder(self).expect("metrics recorder");
    }
}

impl Recorder for Watch {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        (self.counter)(key.name()).unwrap_or_else(Counter::noop)
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        (self.histogram)(key.name()).unwrap_or_else(Histogram::noop)
    }
}

/// A counter whose increments call the function (absolute values are ignored).
pub(crate) struct OnIncrement(pub(crate) fn(u64));

impl CounterFn for OnIncrement {
    fn increment(&self, value: u64) {
        (self.0)(value);
    }

    fn absolute(&self, _value: u64) {}
}

/// A histogram whose records call the function.
pub(crate) struct OnRecord(pub(crate) fn(f64));

impl HistogramFn for OnRecord {
    fn record(&self, value: f64) {
        (self.0)(value);
    }
}
