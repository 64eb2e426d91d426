//! What happened to a model: created, updated, destroyed, or a custom event.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Truncated};

/// What a message says happened.
///
/// The three lifecycle events have fixed names (`created`, `updated`,
/// `destroyed`); anything else is a [`Custom`](Event::Custom) event whose name
/// follows the rules of [`EventName`]. Parsing `"created"` gives
/// [`Event::Created`], never a custom event of that name, so each event has
/// exactly one representation.
///
/// # Examples
///
/// ```
/// use outbox::Event;
///
/// assert_eq!("created".parse::<Event>()?, Event::Created);
/// let reset = Event::custom("password_reset")?;
/// assert_eq!(reset.as_str(), "password_reset");
/// assert!(Event::custom("Password Reset").is_err());
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// A model was inserted.
    Created,
    /// A model was changed.
    Updated,
    /// A model was deleted.
    Destroyed,
    /// Any other event, by name.
    Custom(EventName),
}

impl Event {
    /// Parses a wire name: `created`, `updated` and `destroyed` give the
    /// lifecycle events, any other valid name a custom event.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEventName`] when `name` breaks a rule of [`EventName`].
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Event;
    ///
    /// assert_eq!(Event::parse("destroyed")?, Event::Destroyed);
    /// assert!(matches!(Event::parse("user.locked")?, Event::Custom(_)));
    /// assert!(Event::parse("").is_err());
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn parse(name: &str) -> Result<Self, Error> {
        Ok(match name {
            "created" => Event::Created,
            "updated" => Event::Updated,
            "destroyed" => Event::Destroyed,
            other => Event::Custom(EventName::validate(other)?),
        })
    }

    /// Makes a custom event; a lifecycle name gives the lifecycle event (same as [`Event::parse`]).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEventName`] when `name` breaks a rule of [`EventName`].
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox::Event;
    ///
    /// let event = Event::custom("password_reset")?;
    /// assert_eq!(event.to_string(), "password_reset");
    /// # Ok::<(), outbox::Error>(())
    /// ```
    pub fn custom(name: &str) -> Result<Self, Error> {
        Self::parse(name)
    }

    /// The name sent on the wire.
    ///
    /// # Examples
    ///
    /// ```
    /// assert_eq!(outbox::Event::Updated.as_str(), "updated");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Event::Created => "created",
            Event::Updated => "updated",
            Event::Destroyed => "destroyed",
            Event::Custom(name) => name.as_str(),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Event {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Event::parse(name)
    }
}

impl serde::Serialize for Event {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Event {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Event::parse(&name).map_err(serde::de::Error::custom)
    }
}

/// The name of a custom event: non-empty, at most 128 bytes of `[a-z0-9_.-]`,
/// and not one of the lifecycle names (`created`, `updated`, `destroyed`).
///
/// # Examples
///
/// ```
/// use outbox::EventName;
///
/// let name = EventName::new("invoice.paid")?;
/// assert_eq!(name.as_str(), "invoice.paid");
/// assert!(EventName::new("created").is_err()); // use Event::Created
/// assert!(EventName::new(&"a".repeat(129)).is_err());
/// # Ok::<(), outbox::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventName(String);

impl EventName {
    /// The longest name allowed, in bytes.
    pub const MAX_LEN: usize = 128;

    /// Validates a custom event name.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidEventName`] naming the rule `name` breaks.
    pub fn new(name: &str) -> Result<Self, Error> {
        Self::validate(name)
    }

    fn validate(name: &str) -> Result<Self, Error> {
        let invalid = |reason: String| Error::InvalidEventName {
            name: Truncated::new(name),
            reason,
        };
        if name.is_empty() {
            return Err(invalid("a name must not be empty".into()));
        }
        if name.len() > Self::MAX_LEN {
            return Err(invalid(format!(
                "{} bytes long, at most {} allowed",
                name.len(),
                Self::MAX_LEN
            )));
        }
        if let Some((at, c)) = name
            .char_indices()
            .find(|&(_, c)| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '.' | '-'))
        {
            return Err(invalid(format!(
                "character {c:?} at byte {at} is not one of [a-z0-9_.-]"
            )));
        }
        if matches!(name, "created" | "updated" | "destroyed") {
            return Err(invalid(format!(
                "`{name}` is a lifecycle event, not a custom one (use `Event::parse`)"
            )));
        }
        Ok(EventName(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EventName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for EventName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_names_parse_to_lifecycle_events() {
        assert_eq!(Event::parse("created").unwrap(), Event::Created);
        assert_eq!(Event::parse("updated").unwrap(), Event::Updated);
        assert_eq!(Event::parse("destroyed").unwrap(), Event::Destroyed);
        assert_eq!(Event::custom("created").unwrap(), Event::Created);
    }

    #[test]
    fn custom_names_are_validated() {
        for good in ["a", "password_reset", "user.locked-v2", &"z".repeat(128)] {
            let event = Event::parse(good).unwrap();
            assert_eq!(event.as_str(), good);
        }
        let cases = [
            ("", "must not be empty"),
            ("Upper", "character 'U' at byte 0"),
            ("with space", "character ' ' at byte 4"),
            ("café", "character 'é' at byte 3"),
            (&"a".repeat(129), "129 bytes long, at most 128"),
        ];
        for (bad, reason) in cases {
            let err = Event::parse(bad).unwrap_err().to_string();
            assert!(err.contains(reason), "{bad:?}: {err}");
        }
        assert!(EventName::new("updated").is_err());
    }

    #[test]
    fn serde_uses_the_wire_name() {
        let event = Event::custom("invoice.paid").unwrap();
        assert_eq!(serde_json::to_string(&event).unwrap(), "\"invoice.paid\"");
        let back: Event = serde_json::from_str("\"destroyed\"").unwrap();
        assert_eq!(back, Event::Destroyed);
        assert!(serde_json::from_str::<Event>("\"Bad Name\"").is_err());
    }
}
