//! A client of a Confluent-compatible schema registry (Confluent Schema
//! Registry, Apicurio Registry's `/apis/ccompat/v7`, ...): register and look
//! up Avro value schemas, fetch a writer's schema by id, check compatibility.
//!
//! It keeps one HTTP/1.1 connection (TLS when the URL is `https://`) and
//! opens it again when it breaks; requests take turns on it, each bounded by
//! the [timeout](SchemaRegistryBuilder::timeout). Ids are **not cached**
//! here: an id never changes meaning, so callers keep the ones they resolved
//! (the relay per schema, the consumer per id) and call the registry once
//! per schema, not per message.
//!
//! Subjects are named by a [`SubjectStrategy`]. Errors are
//! [`RegistryError`]s whose [kind](RegistryErrorKind) says whether waiting
//! helps ([`is_retriable`](RegistryError::is_retriable)).
//!
//! # Examples
//!
//! ```no_run
//! use outbox_diesel::registry::{SchemaRegistry, SubjectStrategy};
//!
//! # async fn run() -> Result<(), outbox_diesel::registry::RegistryError> {
//! // SCHEMA_REGISTRY_URL=http://127.0.0.1:58086/apis/ccompat/v7, ...
//! let registry = SchemaRegistry::from_env()?;
//! let subject = SubjectStrategy::TopicName.subject("orders", "com.acme.Order");
//! let schema = r#"{"type": "record", "name": "Order", "namespace": "com.acme", "fields": []}"#;
//! let id = registry.register(&subject, schema).await?;
//! assert_eq!(registry.lookup(&subject, schema).await?, Some(id));
//! let text = registry.schema(id).await?;
//! # Ok(()) }
//! ```

mod builder;
mod endpoint;
mod error;
mod http;
mod subject;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use hyper::body::Bytes;
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use builder::SchemaRegistryBuilder;
pub use error::{RegistryError, RegistryErrorKind};
pub use subject::SubjectStrategy;

use error::{Operation, excerpt};
use http::{Answer, Http};
use subject::path_segment;

/// One version of a subject, as the registry holds it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RegisteredSchema {
    /// The subject's version number.
    pub version: u32,
    /// The schema's id (shared by every subject holding the same schema).
    pub id: u32,
    /// The schema's text.
    pub schema: String,
}

/// A Confluent-compatible schema registry.
///
/// Cloning is cheap, and clones share the connection. `Debug` shows the URL
/// and user, never the password.
///
/// # Examples
///
/// ```no_run
/// use outbox_diesel::registry::SchemaRegistry;
///
/// # async fn run() -> Result<(), outbox_diesel::registry::RegistryError> {
/// let registry = SchemaRegistry::builder("http://127.0.0.1:58086/apis/ccompat/v7").build()?;
/// let versions = registry.versions("orders-value").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct SchemaRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    http: Http,
    /// The URL without credentials.
    url: String,
    user: Option<String>,
    /// Masked in every error message that would hold it.
    password: Option<String>,
    timeout: Duration,
}

/// What [`SchemaRegistry::check`] found: whether a schema may be registered
/// under the subject, and why not.
///
/// # Examples
///
/// ```
/// use outbox_diesel::registry::Compatibility;
///
/// let compatible = Compatibility { compatible: true, messages: Vec::new() };
/// assert!(compatible.compatible);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compatibility {
    /// Whether the schema is compatible with every version the subject's
    /// level compares it with.
    pub compatible: bool,
    /// The registry's reasons when it is not. Confluent's registry names the
    /// fields; Apicurio's (3.3) sends none: the 409 of
    /// [`register`](SchemaRegistry::register) carries its reasons.
    pub messages: Vec<String>,
}

impl SchemaRegistry {
    /// Settings for the registry whose API is at `url`
    /// (`http[s]://[user:password@]host[:port][/base/path]`: the root for
    /// Confluent's registry, `.../apis/ccompat/v7` for Apicurio's). A user and
    /// password in the URL are sent as basic authentication.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let registry = SchemaRegistry::builder("http://relay:s3cret@registry:8081").build()?;
    /// assert_eq!(registry.url(), "http://registry:8081");
    /// # Ok::<(), outbox_diesel::registry::RegistryError>(())
    /// ```
    pub fn builder(url: &str) -> SchemaRegistryBuilder {
        SchemaRegistryBuilder::new(url)
    }

    /// The registry of Confluent's environment variables:
    ///
    /// | Variable | Meaning |
    /// |---|---|
    /// | `SCHEMA_REGISTRY_URL` | required, see [`builder`](Self::builder) |
    /// | `SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO` | `user:password`, see [`basic_auth`](SchemaRegistryBuilder::basic_auth) |
    /// | `SCHEMA_REGISTRY_CA_LOCATION` | see [`ca_file`](SchemaRegistryBuilder::ca_file) |
    /// | `SCHEMA_REGISTRY_CERT_LOCATION`, `SCHEMA_REGISTRY_KEY_LOCATION` | see [`identity`](SchemaRegistryBuilder::identity) |
    ///
    /// An empty variable counts as unset. For more settings, start from
    /// [`SchemaRegistryBuilder::from_env`].
    ///
    /// # Errors
    ///
    /// A [`Config`](RegistryErrorKind::Config) error naming the variable.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let registry = SchemaRegistry::from_env()?;
    /// # Ok::<(), outbox_diesel::registry::RegistryError>(())
    /// ```
    pub fn from_env() -> Result<SchemaRegistry, RegistryError> {
        SchemaRegistryBuilder::from_env()?.build()
    }

    /// [`from_env`](SchemaRegistry::from_env) when `SCHEMA_REGISTRY_URL` names
    /// a registry, `None` when it is unset or blank: how the relay's and the
    /// consumer's defaults pick one up.
    ///
    /// # Errors
    ///
    /// As for [`from_env`](SchemaRegistry::from_env).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// match SchemaRegistry::from_env_if_set()? {
    ///     Some(registry) => println!("Avro schemas at {}", registry.url()),
    ///     None => println!("no schema registry"),
    /// }
    /// # Ok::<(), outbox_diesel::registry::RegistryError>(())
    /// ```
    pub fn from_env_if_set() -> Result<Option<SchemaRegistry>, RegistryError> {
        let set = std::env::var_os("SCHEMA_REGISTRY_URL")
            .is_some_and(|url| !url.to_string_lossy().trim().is_empty());
        set.then(SchemaRegistry::from_env).transpose()
    }

    /// The registry's URL, without credentials.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let registry = SchemaRegistry::builder("https://registry:8081/").build()?;
    /// assert_eq!(registry.url(), "https://registry:8081");
    /// # Ok::<(), outbox_diesel::registry::RegistryError>(())
    /// ```
    pub fn url(&self) -> &str {
        &self.inner.url
    }

    /// Registers the Avro schema `schema` (its JSON text) under `subject`, and
    /// returns its id (`POST /subjects/{subject}/versions`). A schema the
    /// subject holds already keeps its id and adds no version.
    ///
    /// Ids identify the text across subjects: the same text under another
    /// subject may get the same id.
    ///
    /// # Errors
    ///
    /// [`Incompatible`](RegistryErrorKind::Incompatible) (409) when the
    /// subject's level refuses it, with the registry's reasons;
    /// [`Invalid`](RegistryErrorKind::Invalid) (422) for a schema that is not
    /// valid Avro; and the errors of every request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(registry: outbox_diesel::registry::SchemaRegistry) -> Result<(), outbox_diesel::registry::RegistryError> {
    /// let id = registry
    ///     .register("orders-value", r#"{"type": "record", "name": "Order", "fields": []}"#)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let operation = Operation::Register(subject.to_owned());
        let path = format!("/subjects/{}/versions", path_segment(subject));
        let answer = self
            .call(&operation, Method::POST, &path, Some(schema))
            .await?;
        let registered: Id = self.success(&operation, answer)?;
        Ok(registered.id)
    }

    /// The id of `schema` if `subject` holds it (`POST /subjects/{subject}`),
    /// `None` if it does not, or the subject has no versions.
    ///
    /// # Errors
    ///
    /// The errors of every request; a schema that is not valid Avro may be
    /// refused with [`Invalid`](RegistryErrorKind::Invalid) (Confluent) or
    /// be `None` (Apicurio).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(registry: outbox_diesel::registry::SchemaRegistry) -> Result<(), outbox_diesel::registry::RegistryError> {
    /// let schema = r#"{"type": "record", "name": "Order", "fields": []}"#;
    /// if registry.lookup("orders-value", schema).await?.is_none() {
    ///     println!("not registered: run `outbox schemas register`");
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn lookup(&self, subject: &str, schema: &str) -> Result<Option<u32>, RegistryError> {
        let operation = Operation::Lookup(subject.to_owned());
        let path = format!("/subjects/{}", path_segment(subject));
        let answer = self
            .call(&operation, Method::POST, &path, Some(schema))
            .await?;
        match self.success::<Id>(&operation, answer) {
            Ok(found) => Ok(Some(found.id)),
            // 40401: no such subject; 40403: the subject does not hold it.
            Err(err) if err.kind() == RegistryErrorKind::NotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The text of the schema with id `id` (`GET /schemas/ids/{id}`): a
    /// writer's schema, for reading a message that names it.
    ///
    /// # Errors
    ///
    /// [`NotFound`](RegistryErrorKind::NotFound) when the registry has no
    /// such id; and the errors of every request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(registry: outbox_diesel::registry::SchemaRegistry) -> Result<(), outbox_diesel::registry::RegistryError> {
    /// let writer_schema: String = registry.schema(42).await?;
    /// # Ok(()) }
    /// ```
    pub async fn schema(&self, id: u32) -> Result<String, RegistryError> {
        let operation = Operation::Schema(id);
        let answer = self
            .call(&operation, Method::GET, &format!("/schemas/ids/{id}"), None)
            .await?;
        let found: SchemaText = self.success(&operation, answer)?;
        Ok(found.schema)
    }

    /// Whether `schema` may be registered under `subject`: compared with
    /// **every** version its level compares with, as registering does
    /// (`POST /compatibility/subjects/{subject}/versions?verbose=true`; the
    /// `/versions/latest` form compares with the latest only, also at a
    /// `_TRANSITIVE` level). A subject without versions accepts any schema.
    ///
    /// # Errors
    ///
    /// [`Invalid`](RegistryErrorKind::Invalid) for a schema that is not valid
    /// Avro; and the errors of every request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(registry: outbox_diesel::registry::SchemaRegistry) -> Result<(), outbox_diesel::registry::RegistryError> {
    /// let next = r#"{"type": "record", "name": "Order", "fields": []}"#;
    /// let found = registry.check("orders-value", next).await?;
    /// if !found.compatible {
    ///     eprintln!("incompatible: {}", found.messages.join("; "));
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn check(&self, subject: &str, schema: &str) -> Result<Compatibility, RegistryError> {
        let operation = Operation::Check(subject.to_owned());
        let path = format!(
            "/compatibility/subjects/{}/versions?verbose=true",
            path_segment(subject)
        );
        let answer = self
            .call(&operation, Method::POST, &path, Some(schema))
            .await?;
        match self.success::<Verdict>(&operation, answer) {
            Ok(verdict) => Ok(Compatibility {
                compatible: verdict.is_compatible,
                messages: verdict.messages.unwrap_or_default(),
            }),
            Err(err) if err.code() == Some(SUBJECT_NOT_FOUND) => Ok(Compatibility {
                compatible: true,
                messages: Vec::new(),
            }),
            Err(err) => Err(err),
        }
    }

    /// The compatibility level `subject` is held to: its own, else the
    /// registry's (`BACKWARD`, `FULL_TRANSITIVE`, `NONE`, ...).
    ///
    /// Asks `GET /config/{subject}?defaultToGlobal=true`, then `GET /config`
    /// when the subject has no level: Confluent's registry answers 404 40408
    /// for a subject without a level of its own, Apicurio's answers its global
    /// level for a subject with versions, and 404 40401 for one without.
    ///
    /// # Errors
    ///
    /// The errors of every request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(registry: outbox_diesel::registry::SchemaRegistry) -> Result<(), outbox_diesel::registry::RegistryError> {
    /// let level = registry.level("orders-value").await?;
    /// assert!(level.ends_with("TRANSITIVE"), "orders need every version readable: {level}");
    /// # Ok(()) }
    /// ```
    pub async fn level(&self, subject: &str) -> Result<String, RegistryError> {
        let operation = Operation::Level(subject.to_owned());
        let path = format!("/config/{}?defaultToGlobal=true", path_segment(subject));
        let answer = self.call(&operation, Method::GET, &path, None).await?;
        let level = match self.success::<Level>(&operation, answer) {
            Ok(level) => level,
            Err(err)
                if matches!(
                    err.code(),
                    Some(SUBJECT_NOT_FOUND | SUBJECT_LEVEL_NOT_CONFIGURED)
                ) =>
            {
                let answer = self.call(&operation, Method::GET, "/config", None).await?;
                self.success::<Level>(&operation, answer)?
            }
            Err(err) => return Err(err),
        };
        level.level.ok_or_else(|| {
            self.error(
                &operation,
                RegistryErrorKind::Protocol,
                "an answer without `compatibilityLevel`",
            )
        })
    }

    /// The version numbers of `subject`, oldest first
    /// (`GET /subjects/{subject}/versions`); none for a subject the registry
    /// does not know.
    ///
    /// # Errors
    ///
    /// The errors of every request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(registry: outbox_diesel::registry::SchemaRegistry) -> Result<(), outbox_diesel::registry::RegistryError> {
    /// let versions = registry.versions("orders-value").await?;
    /// println!("{} versions", versions.len());
    /// # Ok(()) }
    /// ```
    pub async fn versions(&self, subject: &str) -> Result<Vec<u32>, RegistryError> {
        let operation = Operation::Versions(subject.to_owned());
        let path = format!("/subjects/{}/versions", path_segment(subject));
        let answer = self.call(&operation, Method::GET, &path, None).await?;
        match self.success::<Vec<u32>>(&operation, answer) {
            Ok(versions) => Ok(versions),
            Err(err) if err.code() == Some(SUBJECT_NOT_FOUND) => Ok(Vec::new()),
            Err(err) => Err(err),
        }
    }

    /// Version `version` of `subject`: its schema id and text
    /// (`GET /subjects/{subject}/versions/{version}`).
    ///
    /// # Errors
    ///
    /// [`NotFound`](RegistryErrorKind::NotFound) for a subject or version
    /// that does not exist; and the errors of every request.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn run(registry: outbox_diesel::registry::SchemaRegistry) -> Result<(), outbox_diesel::registry::RegistryError> {
    /// for version in registry.versions("orders-value").await? {
    ///     let registered = registry.version("orders-value", version).await?;
    ///     println!("version {version}: id {}", registered.id);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn version(
        &self,
        subject: &str,
        version: u32,
    ) -> Result<RegisteredSchema, RegistryError> {
        let operation = Operation::Version(subject.to_owned(), version);
        let path = format!("/subjects/{}/versions/{version}", path_segment(subject));
        let answer = self.call(&operation, Method::GET, &path, None).await?;
        let found: RegisteredSchema = self.success(&operation, answer)?;
        Ok(found)
    }

    /// One request; `schema` goes in the body as `{"schema": "<text>"}`.
    async fn call(
        &self,
        operation: &Operation,
        method: Method,
        path: &str,
        schema: Option<&str>,
    ) -> Result<Answer, RegistryError> {
        let body =
            schema.map(|schema| Bytes::from(serde_json::json!({ "schema": schema }).to_string()));
        let started = Instant::now();
        let result = self
            .inner
            .http
            .request(method, path, body, self.inner.timeout)
            .await;
        tracing::debug!(
            operation = %operation,
            status = result.as_ref().ok().map(|a| a.status),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "schema registry request"
        );
        result.map_err(|failure| self.error(operation, failure.kind, failure.message))
    }

    /// The body of a 2xx answer as `T`; otherwise the registry's refusal.
    fn success<T: DeserializeOwned>(
        &self,
        operation: &Operation,
        answer: Answer,
    ) -> Result<T, RegistryError> {
        if !(200..300).contains(&answer.status) {
            return Err(RegistryError::refusal(
                operation.clone(),
                &self.inner.url,
                answer.status,
                &answer.body,
            )
            .without(self.inner.password.as_deref()));
        }
        serde_json::from_slice(&answer.body).map_err(|e| {
            self.error(
                operation,
                RegistryErrorKind::Protocol,
                format!(
                    "HTTP {} with a body that does not fit the API ({e}): {}",
                    answer.status,
                    excerpt(&answer.body)
                ),
            )
        })
    }

    fn error(
        &self,
        operation: &Operation,
        kind: RegistryErrorKind,
        message: impl Into<String>,
    ) -> RegistryError {
        RegistryError::new(kind, operation.clone(), &self.inner.url, message)
            .without(self.inner.password.as_deref())
    }
}

impl fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.inner.url)
            .field("user", &self.inner.user)
            .field("password", &self.inner.password.as_ref().map(|_| "***"))
            .field("timeout", &self.inner.timeout)
            .finish_non_exhaustive()
    }
}

/// Confluent's error code for a subject the registry does not know.
const SUBJECT_NOT_FOUND: u32 = 40401;
/// Confluent's error code for a subject without a level of its own.
const SUBJECT_LEVEL_NOT_CONFIGURED: u32 = 40408;

#[derive(Deserialize)]
struct Id {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaText {
    schema: String,
}

#[derive(Deserialize)]
struct Verdict {
    is_compatible: bool,
    messages: Option<Vec<String>>,
}

#[derive(Deserialize)]
struct Level {
    // `GET /config` answers `compatibilityLevel`; `PUT` answers `compatibility`.
    #[serde(rename = "compatibilityLevel", alias = "compatibility")]
    level: Option<String>,
}
