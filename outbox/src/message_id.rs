//! Globally unique, time-ordered message ids.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use crate::error::{Error, Truncated};

/// The id of a message: a UUIDv7, made when the message is enqueued.
///
/// Version 7 UUIDs start with a millisecond timestamp, so ids made later sort
/// later (within one process, ids made in the same millisecond still sort in
/// the order they were made). Consumers use the id to recognise a duplicate.
///
/// # Examples
///
/// ```
/// use outbox::MessageId;
///
/// let first = MessageId::new();
/// let second = MessageId::new();
/// assert!(first < second);
///
/// let parsed: MessageId = first.to_string().parse()?;
/// assert_eq!(parsed, first);
/// assert!("not-a-uuid".parse::<MessageId>().is_err());
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(Uuid);

impl MessageId {
    /// Makes a new id from the current time.
    #[allow(clippy::new_without_default)] // a default id would hide that each call makes a new one
    pub fn new() -> Self {
        MessageId(Uuid::now_v7())
    }

    /// Wraps a UUID that is already a version 7 UUID.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessageId`] when `uuid` is not version 7.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::MessageId;
    ///
    /// assert!(MessageId::from_uuid(uuid::Uuid::now_v7()).is_ok());
    /// assert!(MessageId::from_uuid(uuid::Uuid::nil()).is_err());
    /// ```
    pub fn from_uuid(uuid: Uuid) -> Result<Self, Error> {
        match uuid.get_version_num() {
            7 => Ok(MessageId(uuid)),
            other => Err(Error::InvalidMessageId {
                value: Truncated::new(&uuid.to_string()),
                reason: format!("a UUID of version {other}, expected version 7"),
            }),
        }
    }

    /// Parses the hyphenated form (`0193…-7…`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidMessageId`] when `s` is not a version 7 UUID.
    pub fn parse(s: &str) -> Result<Self, Error> {
        let uuid = Uuid::try_parse(s).map_err(|e| Error::InvalidMessageId {
            value: Truncated::new(s),
            reason: format!("not a hyphenated UUID ({e})"),
        })?;
        Self::from_uuid(uuid)
    }

    /// The UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Milliseconds since the Unix epoch when the id was made.
    pub fn unix_millis(&self) -> u64 {
        let (secs, nanos) = self
            .0
            .get_timestamp()
            .map(|ts| ts.to_unix())
            .unwrap_or_default();
        secs * 1000 + u64::from(nanos) / 1_000_000
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({})", self.0.hyphenated())
    }
}

impl FromStr for MessageId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        MessageId::parse(s)
    }
}

impl From<MessageId> for Uuid {
    fn from(id: MessageId) -> Uuid {
        id.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_in_the_order_they_were_made() {
        let ids: Vec<MessageId> = (0..10_000).map(|_| MessageId::new()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn timestamp_is_now() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(MessageId::new().unix_millis().abs_diff(now) < 5_000);
    }

    #[test]
    fn rejects_other_uuid_versions() {
        let v4 = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        let err = MessageId::parse(v4).unwrap_err().to_string();
        assert!(err.contains("version 4, expected version 7"), "{err}");
        let err = MessageId::parse("0193").unwrap_err().to_string();
        assert!(err.contains("\"0193\""), "{err}");
    }
}
