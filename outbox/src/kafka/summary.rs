//! Repeated log lines, summarised: the first one is logged, the repeats within
//! a window are counted, and the next one logged after the window says how
//! many there were.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a line is held back after it was logged, by default.
pub const SUMMARY_WINDOW: Duration = Duration::from_secs(30);

/// Keys remembered at most: past this the oldest are forgotten (a forgotten
/// key is logged again the next time, which is harmless).
const MAX_KEYS: usize = 256;

/// Holds back repeats of a log line for a window, and counts them.
///
/// A service whose broker or database is down hits the same error many times
/// a second; a [`Summarizer`] lets the first one through, holds back the same
/// one (same key) for [`SUMMARY_WINDOW`], and lets the next one through with
/// how many were held back: `Kafka client error (repeated 57 times in 30 s)`.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use outbox::kafka::Summarizer;
///
/// let summary = Summarizer::new(Duration::from_secs(30));
/// let first = summary.admit("Connect to 127.0.0.1:9092 failed").expect("logged");
/// assert_eq!(first.to_string(), "");
/// assert!(summary.admit("Connect to 127.0.0.1:9092 failed").is_none()); // held back
/// assert!(summary.admit("another error").is_some()); // another key
/// ```
#[derive(Debug)]
pub struct Summarizer {
    window: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    logged_at: Instant,
    held_back: u64,
}

/// The repeats of a line held back since it was last logged: shown as
/// ` (repeated 57 times in 30 s)` after the line, or nothing when there were none.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use outbox::kafka::Repeats;
///
/// let repeats = Repeats { count: 57, over: Duration::from_secs(30) };
/// assert_eq!(format!("Kafka client error{repeats}"), "Kafka client error (repeated 57 times in 30 s)");
/// assert_eq!(Repeats::default().to_string(), "");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Repeats {
    /// How many times the line was held back.
    pub count: u64,
    /// Since when: the time since the line was last logged.
    pub over: Duration,
}

impl fmt::Display for Repeats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.count {
            0 => Ok(()),
            1 => write!(f, " (repeated once in {} s)", self.over.as_secs()),
            n => write!(f, " (repeated {n} times in {} s)", self.over.as_secs()),
        }
    }
}

impl Default for Summarizer {
    fn default() -> Self {
        Self::new(SUMMARY_WINDOW)
    }
}

impl Summarizer {
    /// Holds repeats back for `window` after a line is logged.
    pub fn new(window: Duration) -> Self {
        Summarizer {
            window,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log the line `key` now: `Some` with the repeats held back
    /// since it was last logged, or `None` to hold it back (it is counted).
    pub fn admit(&self, key: &str) -> Option<Repeats> {
        let now = Instant::now();
        let Ok(mut seen) = self.seen.lock() else {
            return Some(Repeats::default());
        };
        if let Some(entry) = seen.get_mut(key) {
            let since = now.duration_since(entry.logged_at);
            if since < self.window {
                entry.held_back += 1;
                return None;
            }
            let repeats = Repeats {
                count: entry.held_back,
                over: since,
            };
            *entry = Seen {
                logged_at: now,
                held_back: 0,
            };
            return Some(repeats);
        }
        if seen.len() >= MAX_KEYS {
            let window = self.window;
            seen.retain(|_, entry| now.duration_since(entry.logged_at) < window);
            if seen.len() >= MAX_KEYS {
                seen.clear();
            }
        }
        seen.insert(
            key.to_owned(),
            Seen {
                logged_at: now,
                held_back: 0,
            },
        );
        Some(Repeats::default())
    }
}

/// `line` without the parts librdkafka varies between repeats of one error
/// (` (after 12ms in state CONNECT, 3 identical error(s) suppressed)`), to
/// summarise the repeats under one key and show the line once.
///
/// # Examples
///
/// ```
/// use outbox::kafka::steady_text;
///
/// assert_eq!(
///     steady_text("127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused (after 0ms in state CONNECT)"),
///     "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
/// );
/// ```
pub fn steady_text(line: &str) -> &str {
    let line = line.trim();
    // Log lines start with the thread's name: `[thrd:sasl_ssl://b:9094/bootstrap]: `.
    let line = match line
        .strip_prefix("[thrd:")
        .and_then(|rest| rest.split_once("]: "))
    {
        Some((_, rest)) => rest,
        None => line,
    };
    match line.rfind(" (after ") {
        Some(at) if line.ends_with(')') => line[..at].trim_end(),
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_are_counted_and_reported_after_the_window() {
        let summary = Summarizer::new(Duration::from_millis(50));
        assert_eq!(summary.admit("a"), Some(Repeats::default()));
        for _ in 0..5 {
            assert_eq!(summary.admit("a"), None);
        }
        std::thread::sleep(Duration::from_millis(60));
        let repeats = summary.admit("a").expect("logged after the window");
        assert_eq!(repeats.count, 5);
        assert!(repeats.over >= Duration::from_millis(50));
        assert!(repeats.to_string().starts_with(" (repeated 5 times in "));
        assert_eq!(summary.admit("a"), None);
    }

    #[test]
    fn many_keys_do_not_grow_without_bound() {
        let summary = Summarizer::new(Duration::from_secs(60));
        for i in 0..(MAX_KEYS * 3) {
            assert!(summary.admit(&i.to_string()).is_some());
        }
        assert!(summary.seen.lock().unwrap().len() <= MAX_KEYS);
    }

    #[test]
    fn the_varying_suffix_is_left_out() {
        assert_eq!(
            steady_text(
                "b:9/bootstrap: SSL handshake failed: Disconnected: connecting to a PLAINTEXT broker listener? (after 3ms in state SSL_HANDSHAKE, 2 identical error(s) suppressed)"
            ),
            "b:9/bootstrap: SSL handshake failed: Disconnected: connecting to a PLAINTEXT broker listener?"
        );
        assert_eq!(steady_text("no suffix (here)"), "no suffix (here)");
        assert_eq!(
            steady_text(
                "[thrd:b:9/bootstrap]: b:9/bootstrap: Connect to b:9 failed: Connection refused (after 0ms in state CONNECT)"
            ),
            "b:9/bootstrap: Connect to b:9 failed: Connection refused"
        );
    }
}
