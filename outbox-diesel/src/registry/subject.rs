//! Subject names: which subject a topic's value schemas go under, and how a
//! subject is written in a request's path.

use std::fmt::Write as _;

/// How the subject of a topic's value schemas is named: Confluent's
/// `value.subject.name.strategy`.
///
/// There is no key strategy: the Kafka key stays the partition key in UTF-8,
/// without a schema.
///
/// # Examples
///
/// ```
/// use outbox_diesel::registry::SubjectStrategy;
///
/// let name = "com.acme.billing.Invoice";
/// assert_eq!(SubjectStrategy::TopicName.subject("invoices", name), "invoices-value");
/// assert_eq!(SubjectStrategy::RecordName.subject("invoices", name), name);
/// assert_eq!(
///     SubjectStrategy::TopicRecordName.subject("invoices", name),
///     "invoices-com.acme.billing.Invoice"
/// );
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SubjectStrategy {
    /// `<topic>-value`: one subject per topic, so all of a topic's messages
    /// share one record (Confluent's default).
    #[default]
    TopicName,
    /// `<namespace>.<Name>`: one subject per record, shared by every topic
    /// that carries it.
    RecordName,
    /// `<topic>-<namespace>.<Name>`: one subject per record and topic, for
    /// topics that carry several records.
    TopicRecordName,
}

impl SubjectStrategy {
    /// The subject of the value schemas of `topic` whose record's full name
    /// (`namespace.Name`, or `Name` without a namespace) is `record_full_name`.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SubjectStrategy;
    ///
    /// assert_eq!(SubjectStrategy::default().subject("orders", "Order"), "orders-value");
    /// ```
    pub fn subject(&self, topic: &str, record_full_name: &str) -> String {
        match self {
            SubjectStrategy::TopicName => format!("{topic}-value"),
            SubjectStrategy::RecordName => record_full_name.to_owned(),
            SubjectStrategy::TopicRecordName => format!("{topic}-{record_full_name}"),
        }
    }
}

/// `subject` as one path segment: every byte but RFC 3986's unreserved
/// characters percent-encoded, so a `/`, `%`, `?` or space stays in the name.
pub(super) fn path_segment(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{SubjectStrategy, path_segment};

    #[test]
    fn each_strategy_names_the_value_subject() {
        for (strategy, with_namespace, without) in [
            (
                SubjectStrategy::TopicName,
                "billing.invoices-value",
                "billing.invoices-value",
            ),
            (SubjectStrategy::RecordName, "com.acme.Invoice", "Invoice"),
            (
                SubjectStrategy::TopicRecordName,
                "billing.invoices-com.acme.Invoice",
                "billing.invoices-Invoice",
            ),
        ] {
            assert_eq!(
                strategy.subject("billing.invoices", "com.acme.Invoice"),
                with_namespace,
                "{strategy:?}"
            );
            assert_eq!(
                strategy.subject("billing.invoices", "Invoice"),
                without,
                "{strategy:?}"
            );
        }
        assert_eq!(SubjectStrategy::default(), SubjectStrategy::TopicName);
    }

    #[test]
    fn a_subject_is_one_path_segment() {
        assert_eq!(path_segment("orders-value"), "orders-value");
        assert_eq!(path_segment("a.b_c~d"), "a.b_c~d");
        assert_eq!(path_segment("a b/c%?#"), "a%20b%2Fc%25%3F%23");
        assert_eq!(path_segment("é"), "%C3%A9");
    }
}
