//! What a handler returns when it does not apply a message.

use std::error::Error as StdError;
use std::fmt;

/// How the consumer treats a [`HandlerError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandlerErrorKind {
    /// Worth another attempt (a lock timeout, a lost connection): the consumer
    /// retries with backoff, then applies the failure policy. What `?` gives.
    Retriable,
    /// Will fail the same way every time (a payload this release cannot read):
    /// the failure policy applies at once, without retries.
    Permanent,
    /// A before hook refused the message on purpose: the transaction rolls back,
    /// the record is acknowledged and counted as refused, nothing is stopped.
    Refused,
}

/// An error from a controller's handling, with the kind that tells the
/// consumer what to do next.
///
/// Any error type converts into it with `?` (as [`HandlerErrorKind::Retriable`]),
/// the way `anyhow::Error` does; for that reason it does not implement
/// [`std::error::Error`] itself.
///
/// # Examples
///
/// ```
/// use outbox::{HandlerError, HandlerErrorKind};
///
/// fn parse(age: &str) -> Result<u8, HandlerError> {
///     Ok(age.parse::<u8>()?) // retriable by default
/// }
/// assert_eq!(parse("x").unwrap_err().kind(), HandlerErrorKind::Retriable);
///
/// let refused = HandlerError::refuse("users under 13 are not imported");
/// assert_eq!(refused.kind(), HandlerErrorKind::Refused);
/// assert_eq!(refused.to_string(), "refused: users under 13 are not imported");
///
/// let permanent = HandlerError::permanent("unknown plan `gold`");
/// assert_eq!(permanent.to_string(), "unknown plan `gold`");
/// ```
pub struct HandlerError {
    kind: HandlerErrorKind,
    source: Box<dyn StdError + Send + Sync + 'static>,
}

impl HandlerError {
    /// A retriable error (what `?` makes).
    pub fn retriable(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self::with_kind(HandlerErrorKind::Retriable, error)
    }

    /// An error that retries cannot fix.
    pub fn permanent(error: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self::with_kind(HandlerErrorKind::Permanent, error)
    }

    /// A deliberate refusal: the message is acknowledged without being applied.
    pub fn refuse(reason: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> Self {
        Self::with_kind(HandlerErrorKind::Refused, reason)
    }

    /// An error of the given kind.
    pub fn with_kind(
        kind: HandlerErrorKind,
        error: impl Into<Box<dyn StdError + Send + Sync + 'static>>,
    ) -> Self {
        HandlerError {
            kind,
            source: error.into(),
        }
    }

    /// What the consumer does with it.
    pub fn kind(&self) -> HandlerErrorKind {
        self.kind
    }

    /// The underlying error.
    pub fn source(&self) -> &(dyn StdError + Send + Sync + 'static) {
        &*self.source
    }

    /// The underlying error, owned.
    pub fn into_source(self) -> Box<dyn StdError + Send + Sync + 'static> {
        self.source
    }

    /// The error and its causes, joined with `: `; what the consumer records.
    ///
    /// ```
    /// let err = outbox::HandlerError::from(std::io::Error::other("disk full"));
    /// assert_eq!(err.chain(), "disk full");
    /// ```
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut cause = self.source.source();
        while let Some(error) = cause {
            text.push_str(": ");
            text.push_str(&error.to_string());
            cause = error.source();
        }
        text
    }
}

impl<E: StdError + Send + Sync + 'static> From<E> for HandlerError {
    fn from(error: E) -> Self {
        Self::retriable(error)
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kind == HandlerErrorKind::Refused {
            f.write_str("refused: ")?;
        }
        fmt::Display::fmt(&self.source, f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandlerError")
            .field("kind", &self.kind)
            .field("source", &self.source)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("upsert failed")
        }
    }
    impl StdError for Outer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn chain_joins_the_causes() {
        let err = HandlerError::from(Outer(std::io::Error::other("connection reset")));
        assert_eq!(err.kind(), HandlerErrorKind::Retriable);
        assert_eq!(err.chain(), "upsert failed: connection reset");
    }

    #[test]
    fn kinds_are_kept() {
        assert_eq!(
            HandlerError::permanent("x").kind(),
            HandlerErrorKind::Permanent
        );
        assert_eq!(HandlerError::refuse("x").kind(), HandlerErrorKind::Refused);
        assert_eq!(
            HandlerError::retriable("x").kind(),
            HandlerErrorKind::Retriable
        );
    }
}
