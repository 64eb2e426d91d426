//! The log lines of a test process, for tests that count what was logged.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

/// Every `tracing` line of the process at info level and above, from the first
/// call on (one global subscriber: librdkafka's callbacks run on threads of
/// their own, which a per-test subscriber would miss). The lines also go to
/// stderr, so a failing test shows them.
///
/// # Examples
///
/// ```
/// let lines = outbox_tests::logs::capture();
/// tracing::warn!("disk almost full");
/// assert!(outbox_tests::logs::text_since(lines, 0).contains("disk almost full"));
/// ```
pub fn capture() -> &'static Arc<Mutex<Vec<u8>>> {
    static LINES: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LINES.get_or_init(|| {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let writer = Arc::clone(&lines);
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || Capture(Arc::clone(&writer)))
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global tracing subscriber in this test binary");
        lines
    })
}

/// What `lines` (from [`capture`]) holds past its first `from` bytes.
pub fn text_since(lines: &Mutex<Vec<u8>>, from: usize) -> String {
    let lines = lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    String::from_utf8_lossy(&lines[from.min(lines.len())..]).into_owned()
}

/// How many bytes `lines` holds: a mark for [`text_since`].
pub fn mark(lines: &Mutex<Vec<u8>>) -> usize {
    lines
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .len()
}

struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
