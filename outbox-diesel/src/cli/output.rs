//! What the commands print: tables for people, JSON for programs, errors on one line.

use std::fmt::Write as _;

use serde::Serialize;

use super::Failure;
use crate::ops::{ParkedRow, Status};

/// `error` and its sources joined by `": "`, on one line (drivers' messages
/// span lines), a source left out when the text so far already holds it
/// (drivers often print their cause and return it as `source()` too, with
/// other line breaks), and a repeated label (`database error: database
/// error: …`) said once.
pub(super) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = words(&error.to_string());
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = words(&cause.to_string());
        let repeated = cause_text.is_empty()
            || text.contains(&cause_text)
            || text.split(": ").any(|part| part == cause_text);
        if !repeated {
            // A cause that starts with the label the text ends with says it again.
            let cause_text = match text.rsplit(": ").next() {
                Some(last) if cause_text.starts_with(&format!("{last}: ")) => {
                    cause_text[last.len() + 2..].to_owned()
                }
                _ => cause_text,
            };
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `text` on one line, runs of whitespace as one space.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `value` as pretty JSON and a newline.
pub(super) fn json(value: &impl Serialize) -> Result<String, Failure> {
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Failure::from_error(Some("writing JSON"), &e))?;
    text.push('\n');
    Ok(text)
}

/// A duration in seconds, as a person reads it: `0.4 s`, `12 s`, `3 min 20 s`,
/// `2 h 05 min`, `3 d 4 h`.
pub(super) fn age(seconds: f64) -> String {
    let seconds = seconds.max(0.0);
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let whole = seconds.round() as u64;
    match whole {
        0..60 => format!("{whole} s"),
        60..3600 => format!("{} min {:02} s", whole / 60, whole % 60),
        3600..86_400 => format!("{} h {:02} min", whole / 3600, whole % 3600 / 60),
        _ => format!("{} d {} h", whole / 86_400, whole % 86_400 / 3600),
    }
}

/// The status as a summary line and a table of topics.
pub(super) fn status(status: &Status) -> String {
    if status.topics.is_empty() {
        return "the outbox is empty: nothing waiting, nothing parked\n".to_owned();
    }
    let mut out = String::new();
    let oldest = status
        .oldest_waiting_seconds
        .map(|s| format!(" (oldest {})", age(s)))
        .unwrap_or_default();
    let _ = write!(
        out,
        "{} waiting{oldest}, {} parked",
        status.waiting, status.parked
    );
    if status.held_back > 0 {
        let _ = write!(out, ", {} held back behind parked rows", status.held_back);
    }
    out.push('\n');
    let rows: Vec<Vec<String>> = status
        .topics
        .iter()
        .map(|t| {
            vec![
                t.topic.clone(),
                t.waiting.to_string(),
                t.parked.to_string(),
                t.held_back.to_string(),
                t.oldest_waiting_seconds
                    .map(age)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out.push('\n');
    out.push_str(&table(
        &["TOPIC", "WAITING", "PARKED", "HELD BACK", "OLDEST WAITING"],
        &[false, true, true, true, true],
        &rows,
    ));
    if status.parked > 0 {
        out.push_str(
            "\nparked rows: `outbox parked list`, then `outbox parked retry` or `discard`\n",
        );
    }
    out
}

/// Parked rows as a table; `more` when the list was cut at `--limit`.
pub(super) fn parked(rows: &[ParkedRow], more: bool) -> String {
    if rows.is_empty() {
        return "no parked rows\n".to_owned();
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            vec![
                row.id.to_string(),
                row.topic.clone(),
                row.partition_key.clone(),
                row.attempts.to_string(),
                row.parked_at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
                row.payload_bytes.to_string(),
                row.message_id.to_string(),
                row.last_error
                    .as_deref()
                    .map(|e| e.split_whitespace().collect::<Vec<_>>().join(" "))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "ID",
            "TOPIC",
            "KEY",
            "ATTEMPTS",
            "PARKED AT",
            "BYTES",
            "MESSAGE ID",
            "LAST ERROR",
        ],
        &[true, false, false, true, false, true, false, false],
        &cells,
    );
    if more {
        out.push_str("… more parked rows: pass a larger --limit to see them\n");
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; the last column is
/// not padded.
pub(super) fn table(headers: &[&str], right: &[bool], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if right[i] {
                line.push_str(&" ".repeat(pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                if i < last {
                    line.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_like_a_person_writes_them() {
        assert_eq!(age(0.04), "0.0 s");
        assert_eq!(age(2.46), "2.5 s");
        assert_eq!(age(42.4), "42 s");
        assert_eq!(age(200.0), "3 min 20 s");
        assert_eq!(age(7_500.0), "2 h 05 min");
        assert_eq!(age(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 4 h");
        assert_eq!(age(-1.0), "0.0 s");
    }

    #[test]
    fn tables_align_their_columns() {
        let rows = vec![
            vec!["accounts".to_owned(), "3".to_owned(), "x".to_owned()],
            vec!["o".to_owned(), "12".to_owned(), "long text".to_owned()],
        ];
        assert_eq!(
            table(&["TOPIC", "N", "NOTE"], &[false, true, false], &rows),
            "TOPIC      N  NOTE\n\
             accounts   3  x\n\
             o         12  long text\n"
        );
    }

    /// An error whose text ends with a label its cause starts with.
    #[derive(Debug)]
    struct Labelled(&'static str, Option<Box<Labelled>>);

    impl std::fmt::Display for Labelled {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Labelled {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn a_cause_is_said_once() {
        let inner = Labelled("database error: relation \"x\"\n  does not exist", None);
        let middle = Labelled("database error", Some(Box::new(inner)));
        let outer = Labelled("status at postgres://h/d", Some(Box::new(middle)));
        assert_eq!(
            one_line(&outer),
            "status at postgres://h/d: database error: relation \"x\" does not exist"
        );
        // The cause printed by the error itself, on other lines.
        let inner = Labelled("connection refused\n\tIs the server running?", None);
        let outer = Labelled(
            "could not connect: connection refused Is the server running?",
            Some(Box::new(inner)),
        );
        assert_eq!(
            one_line(&outer),
            "could not connect: connection refused Is the server running?"
        );
    }

    #[test]
    fn an_error_chain_fits_on_one_line() {
        let source = std::io::Error::other("connection refused\n\tIs the server running?");
        let error = crate::Error::Io {
            path: "/tmp/x".into(),
            source,
        };
        assert_eq!(
            one_line(&error),
            "/tmp/x: connection refused Is the server running?"
        );
    }
}
