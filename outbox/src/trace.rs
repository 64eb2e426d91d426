//! W3C Trace Context carried with a message.

use std::fmt;

use crate::error::{Error, Truncated};

/// The trace a message belongs to: a W3C `traceparent`, and `tracestate` when present.
///
/// The producer captures the active trace at enqueue; the consumer continues it.
///
/// # Examples
///
/// ```
/// use outbox::TraceContext;
///
/// let trace = TraceContext::new("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None)?;
/// assert_eq!(trace.traceparent(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
/// assert!(TraceContext::new("garbage", None).is_err());
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TraceContext {
    traceparent: String,
    tracestate: Option<String>,
}

impl TraceContext {
    /// Validates a `traceparent` (version `00`: `00-<32 hex>-<16 hex>-<2 hex>`, lowercase)
    /// and keeps `tracestate` as given.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidTraceparent`] when `traceparent` is not of that form.
    pub fn new(traceparent: &str, tracestate: Option<&str>) -> Result<Self, Error> {
        if !is_valid_traceparent(traceparent) {
            return Err(Error::InvalidTraceparent {
                value: Truncated::new(traceparent),
            });
        }
        Ok(TraceContext {
            traceparent: traceparent.to_owned(),
            tracestate: tracestate.map(str::to_owned),
        })
    }

    /// The `traceparent` header value.
    pub fn traceparent(&self) -> &str {
        &self.traceparent
    }

    /// The `tracestate` header value, if any.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("TraceContext");
        s.field("traceparent", &self.traceparent);
        if let Some(state) = &self.tracestate {
            s.field("tracestate", state);
        }
        s.finish()
    }
}

fn is_valid_traceparent(value: &str) -> bool {
    let lower_hex = |s: &str, len: usize| {
        s.len() == len && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    };
    let parts: Vec<&str> = value.split('-').collect();
    matches!(parts.as_slice(), [version, trace_id, parent_id, flags]
        if *version == "00"
            && lower_hex(trace_id, 32) && trace_id.bytes().any(|b| b != b'0')
            && lower_hex(parent_id, 16) && parent_id.bytes().any(|b| b != b'0')
            && lower_hex(flags, 2))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_traceparent() {
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert!(TraceContext::new(good, Some("congo=t61rcWkgMzE")).is_ok());
        for bad in [
            "",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::new(bad, None).is_err(), "{bad:?}");
        }
    }
}
