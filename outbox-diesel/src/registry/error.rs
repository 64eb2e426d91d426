//! What can go wrong talking to the registry, sorted by what a caller can do
//! about it.

use std::fmt;

use serde::Deserialize;

/// What went wrong with a registry request, by what a caller does next:
/// wait and retry ([`is_retriable`](RegistryErrorKind::is_retriable)), fix a
/// setting, or fix the schema.
///
/// `#[non_exhaustive]`: later releases may tell more cases apart.
///
/// # Examples
///
/// ```
/// use outbox_diesel::registry::RegistryErrorKind;
///
/// assert!(RegistryErrorKind::Timeout.is_retriable());
/// assert!(!RegistryErrorKind::Incompatible.is_retriable());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RegistryErrorKind {
    /// No connection: refused, reset, no route, the name does not resolve, or
    /// the connection broke during the request.
    Unreachable,
    /// The TLS handshake failed: the registry's certificate is not trusted,
    /// does not name the host, or the TLS settings do not match. Not
    /// retriable: trying again meets the same certificate.
    Tls,
    /// No complete answer within the client's timeout.
    Timeout,
    /// The registry answered 5xx or 429: it is there but cannot serve now.
    Unavailable,
    /// 401 or 403: the credentials are missing, wrong, or not allowed this.
    Unauthorized,
    /// 409: the schema is not compatible with the subject's versions at its
    /// compatibility level.
    Incompatible,
    /// 422: the schema is not valid Avro, or the request names an unknown level.
    Invalid,
    /// 404 with the registry's error code: no such subject, schema or version.
    NotFound,
    /// An answer that is not what the registry's API documents: unexpected
    /// status, JSON that does not fit, a 404 from something that is not the
    /// registry (a URL without the API's base path), a body too large.
    Protocol,
    /// A setting is not valid: the URL, a file that cannot be read, a
    /// certificate or key that does not parse.
    Config,
}

impl RegistryErrorKind {
    /// Whether the same request may succeed later without any change: the
    /// registry was unreachable, too slow, or unavailable.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::RegistryErrorKind;
    ///
    /// assert!(RegistryErrorKind::Unreachable.is_retriable());
    /// assert!(!RegistryErrorKind::Unauthorized.is_retriable());
    /// ```
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            RegistryErrorKind::Unreachable
                | RegistryErrorKind::Timeout
                | RegistryErrorKind::Unavailable
        )
    }

    /// The kind an error status means.
    pub(super) fn of_status(status: u16) -> RegistryErrorKind {
        match status {
            401 | 403 => RegistryErrorKind::Unauthorized,
            404 => RegistryErrorKind::NotFound,
            409 => RegistryErrorKind::Incompatible,
            422 => RegistryErrorKind::Invalid,
            408 | 429 | 500..=599 => RegistryErrorKind::Unavailable,
            _ => RegistryErrorKind::Protocol,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            RegistryErrorKind::Unreachable => "not reachable",
            RegistryErrorKind::Tls => "TLS handshake failed",
            RegistryErrorKind::Timeout => "no answer in time",
            RegistryErrorKind::Unavailable => "registry unavailable",
            RegistryErrorKind::Unauthorized => "not authorized",
            RegistryErrorKind::Incompatible => "incompatible schema",
            RegistryErrorKind::Invalid => "refused as invalid",
            RegistryErrorKind::NotFound => "not found",
            RegistryErrorKind::Protocol => "unexpected answer",
            RegistryErrorKind::Config => "invalid setting",
        }
    }
}

/// The request that failed, for the error's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Operation {
    /// Building the client: the setting (builder method or environment variable).
    Configure(&'static str),
    Register(String),
    Lookup(String),
    Schema(u32),
    Check(String),
    Level(String),
    Versions(String),
    Version(String, u32),
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Operation::Configure(setting) => write!(f, "schema registry setting `{setting}`"),
            Operation::Register(subject) => {
                write!(f, "registering a schema under subject `{subject}`")
            }
            Operation::Lookup(subject) => {
                write!(f, "looking up a schema under subject `{subject}`")
            }
            Operation::Schema(id) => write!(f, "fetching schema id {id}"),
            Operation::Check(subject) => {
                write!(f, "checking compatibility with subject `{subject}`")
            }
            Operation::Level(subject) => {
                write!(f, "reading the compatibility level of subject `{subject}`")
            }
            Operation::Versions(subject) => {
                write!(f, "listing the versions of subject `{subject}`")
            }
            Operation::Version(subject, version) => {
                write!(f, "fetching version {version} of subject `{subject}`")
            }
        }
    }
}

/// A registry request that failed, or a client that could not be built.
///
/// It carries the [kind](RegistryErrorKind), the HTTP status and the
/// registry's `error_code` when there was an answer, and the registry's
/// `message` (or what the connection, TLS or the settings said). Its text
/// names the operation, the subject or schema id, and the registry's URL
/// without credentials; a password never appears in it.
///
/// The cause is part of [`message`](Self::message), not a `source()`, so the
/// error can be cloned: one failed request may answer many waiting rows.
///
/// # Examples
///
/// ```
/// use outbox_diesel::registry::{RegistryErrorKind, SchemaRegistry};
///
/// let err = SchemaRegistry::builder("ftp://registry:8081").build().unwrap_err();
/// assert_eq!(err.kind(), RegistryErrorKind::Config);
/// assert_eq!(err.setting(), Some("url"));
/// assert!(err.to_string().starts_with("invalid schema registry setting `url`"), "{err}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    kind: RegistryErrorKind,
    status: Option<u16>,
    code: Option<u32>,
    message: String,
    operation: Operation,
    /// The registry's URL without credentials; empty for a setting.
    url: String,
}

impl RegistryError {
    /// A setting that is not valid; `message` says what is wrong and names
    /// the value (a URL masked).
    pub(super) fn config(setting: &'static str, message: impl Into<String>) -> Self {
        RegistryError {
            kind: RegistryErrorKind::Config,
            status: None,
            code: None,
            message: message.into(),
            operation: Operation::Configure(setting),
            url: String::new(),
        }
    }

    /// A failure without an answer (connection, TLS, timeout), or an answer
    /// that does not fit.
    pub(super) fn new(
        kind: RegistryErrorKind,
        operation: Operation,
        url: &str,
        message: impl Into<String>,
    ) -> Self {
        RegistryError {
            kind,
            status: None,
            code: None,
            message: message.into(),
            operation,
            url: url.to_owned(),
        }
    }

    /// The refusal of an answer with an error status: the registry's
    /// `{"error_code", "message"}` body, or the start of the body as it is.
    pub(super) fn refusal(operation: Operation, url: &str, status: u16, body: &[u8]) -> Self {
        let parsed = serde_json::from_slice::<RegistryBody>(body).ok();
        let code = parsed.as_ref().and_then(|body| body.error_code);
        let mut kind = RegistryErrorKind::of_status(status);
        let mut message = match parsed.and_then(|body| body.message) {
            Some(message) => message,
            None => excerpt(body),
        };
        if status == 404 && code.is_none() {
            // Every 404 of the registry's API carries its error code: this one
            // comes from something else at that address.
            kind = RegistryErrorKind::Protocol;
            message = format!(
                "an answer without the registry's error_code: is the URL the base of a \
                 Confluent-compatible API (Apicurio's ends in /apis/ccompat/v7)? {message}"
            );
        }
        RegistryError {
            kind,
            status: Some(status),
            code,
            message,
            operation,
            url: url.to_owned(),
        }
    }

    /// What went wrong, by what a caller can do about it.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::{RegistryErrorKind, SchemaRegistry};
    ///
    /// let err = SchemaRegistry::builder("not a url").build().unwrap_err();
    /// assert_eq!(err.kind(), RegistryErrorKind::Config);
    /// ```
    pub fn kind(&self) -> RegistryErrorKind {
        self.kind
    }

    /// Whether the same request may succeed later unchanged: see
    /// [`RegistryErrorKind::is_retriable`].
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let err = SchemaRegistry::builder("not a url").build().unwrap_err();
    /// assert!(!err.is_retriable());
    /// ```
    pub fn is_retriable(&self) -> bool {
        self.kind.is_retriable()
    }

    /// The HTTP status, when the registry answered.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let err = SchemaRegistry::builder("not a url").build().unwrap_err();
    /// assert_eq!(err.status(), None);
    /// ```
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The registry's `error_code`, when its answer had one: Confluent's
    /// 40401 (subject not found), 40403 (schema not found), 409
    /// (incompatible), 42201 (invalid schema), 42203 (invalid level), ...
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let err = SchemaRegistry::builder("not a url").build().unwrap_err();
    /// assert_eq!(err.code(), None);
    /// ```
    pub fn code(&self) -> Option<u32> {
        self.code
    }

    /// The registry's message, or what the connection, TLS or the setting
    /// said.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let err = SchemaRegistry::builder("not a url").build().unwrap_err();
    /// assert!(err.message().contains("http:// or https://"), "{err}");
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The subject of the failed request, if it had one.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let err = SchemaRegistry::builder("not a url").build().unwrap_err();
    /// assert_eq!(err.subject(), None);
    /// ```
    pub fn subject(&self) -> Option<&str> {
        match &self.operation {
            Operation::Register(subject)
            | Operation::Lookup(subject)
            | Operation::Check(subject)
            | Operation::Level(subject)
            | Operation::Versions(subject)
            | Operation::Version(subject, _) => Some(subject),
            Operation::Configure(_) | Operation::Schema(_) => None,
        }
    }

    /// The schema id of a failed [`schema`](super::SchemaRegistry::schema) request.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let err = SchemaRegistry::builder("not a url").build().unwrap_err();
    /// assert_eq!(err.schema_id(), None);
    /// ```
    pub fn schema_id(&self) -> Option<u32> {
        match self.operation {
            Operation::Schema(id) => Some(id),
            _ => None,
        }
    }

    /// The setting that is not valid, for a [`Config`](RegistryErrorKind::Config)
    /// error: the builder method (`url`, `ca_file`, ...) or the environment
    /// variable (`SCHEMA_REGISTRY_URL`, ...) it came from.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let err = SchemaRegistry::builder("not a url").build().unwrap_err();
    /// assert_eq!(err.setting(), Some("url"));
    /// ```
    pub fn setting(&self) -> Option<&'static str> {
        match self.operation {
            Operation::Configure(setting) => Some(setting),
            _ => None,
        }
    }

    /// Masks `secret` wherever the message holds it (an echo of a request,
    /// say): the client's password stays out of every error.
    pub(super) fn without(mut self, secret: Option<&str>) -> Self {
        if let Some(secret) = secret.filter(|s| !s.is_empty())
            && self.message.contains(secret)
        {
            self.message = self.message.replace(secret, "***");
        }
        self
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Operation::Configure(_) = self.operation {
            return write!(f, "invalid {}: {}", self.operation, self.message);
        }
        write!(
            f,
            "{} at {}: {}",
            self.operation,
            self.url,
            self.kind.describe()
        )?;
        match (self.status, self.code) {
            (Some(status), Some(code)) => write!(f, " (HTTP {status}, error_code {code})")?,
            (Some(status), None) => write!(f, " (HTTP {status})")?,
            _ => {}
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RegistryError {}

/// The registry's error body.
#[derive(Deserialize)]
struct RegistryBody {
    error_code: Option<u32>,
    message: Option<String>,
}

/// How much of a body that is not the registry's error goes into a message:
/// enough for a proxy's one-line error, not a whole HTML page.
const EXCERPT_CHARS: usize = 300;

/// The start of `body` as text, trimmed.
pub(super) fn excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(EXCERPT_CHARS) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{Operation, RegistryError, RegistryErrorKind};

    const URL: &str = "http://registry:8081/apis/ccompat/v7";

    fn refusal(status: u16, body: &str) -> RegistryError {
        RegistryError::refusal(
            Operation::Register("orders-value".into()),
            URL,
            status,
            body.as_bytes(),
        )
    }

    #[test]
    fn statuses_map_to_kinds() {
        for (status, kind) in [
            (401, RegistryErrorKind::Unauthorized),
            (403, RegistryErrorKind::Unauthorized),
            (404, RegistryErrorKind::NotFound),
            (409, RegistryErrorKind::Incompatible),
            (422, RegistryErrorKind::Invalid),
            (429, RegistryErrorKind::Unavailable),
            (500, RegistryErrorKind::Unavailable),
            (503, RegistryErrorKind::Unavailable),
            (400, RegistryErrorKind::Protocol),
            (302, RegistryErrorKind::Protocol),
        ] {
            assert_eq!(RegistryErrorKind::of_status(status), kind, "{status}");
        }
    }

    #[test]
    fn the_registrys_body_gives_code_and_message() {
        let err = refusal(
            409,
            r#"{"error_code":409,"message":"Incompatible: region"}"#,
        );
        assert_eq!(err.kind(), RegistryErrorKind::Incompatible);
        assert_eq!((err.status(), err.code()), (Some(409), Some(409)));
        assert_eq!(err.message(), "Incompatible: region");
        assert_eq!(
            err.to_string(),
            "registering a schema under subject `orders-value` at \
             http://registry:8081/apis/ccompat/v7: incompatible schema \
             (HTTP 409, error_code 409): Incompatible: region"
        );
        assert!(!err.is_retriable());
    }

    #[test]
    fn another_body_is_quoted_briefly() {
        let err = refusal(502, "<html>bad gateway</html>");
        assert_eq!(err.kind(), RegistryErrorKind::Unavailable);
        assert_eq!((err.status(), err.code()), (Some(502), None));
        assert_eq!(err.message(), "<html>bad gateway</html>");
        assert!(err.is_retriable());
        let long = refusal(500, &"x".repeat(1000));
        assert_eq!(long.message().chars().count(), super::EXCERPT_CHARS + 1);
        assert_eq!(refusal(503, "").message(), "(empty body)");
    }

    #[test]
    fn a_404_without_the_registrys_code_is_not_a_missing_subject() {
        let err = refusal(404, r#"{"title":"Could not find resource"}"#);
        assert_eq!(err.kind(), RegistryErrorKind::Protocol);
        assert!(err.message().contains("/apis/ccompat/v7"), "{err}");
        let missing = refusal(404, r#"{"error_code":40401,"message":"Subject not found"}"#);
        assert_eq!(missing.kind(), RegistryErrorKind::NotFound);
    }

    #[test]
    fn a_secret_in_a_message_is_masked() {
        let err = refusal(400, "bad header: Basic hunter2").without(Some("hunter2"));
        assert_eq!(err.message(), "bad header: Basic ***");
        assert_eq!(
            refusal(400, "x").without(Some("")).message(),
            "x",
            "an empty password masks nothing"
        );
    }

    #[test]
    fn a_setting_error_names_the_setting() {
        let err = RegistryError::config("SCHEMA_REGISTRY_CA_LOCATION", "could not read /x");
        assert_eq!(
            err.to_string(),
            "invalid schema registry setting `SCHEMA_REGISTRY_CA_LOCATION`: could not read /x"
        );
        assert_eq!(err.setting(), Some("SCHEMA_REGISTRY_CA_LOCATION"));
        assert_eq!(err.subject(), None);
    }
}
