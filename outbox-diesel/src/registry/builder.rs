//! The client's settings, from code or from the environment, checked and
//! loaded (URL, credentials, certificate files) once, in `build`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hyper::header::HeaderValue;

use super::endpoint::{self, UserInfo};
use super::error::RegistryError;
use super::http::Http;
use super::{Inner, SchemaRegistry};

/// The timeout of a request when none is set.
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The environment variables [`SchemaRegistry::from_env`] reads: Confluent's
/// names, as its clients and tools use them.
const ENV: Names = Names {
    url: "SCHEMA_REGISTRY_URL",
    basic_auth: "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
    ca_file: "SCHEMA_REGISTRY_CA_LOCATION",
    cert: "SCHEMA_REGISTRY_CERT_LOCATION",
    key: "SCHEMA_REGISTRY_KEY_LOCATION",
};

/// The builder's methods, as errors name them.
const METHODS: Names = Names {
    url: "url",
    basic_auth: "basic_auth",
    ca_file: "ca_file",
    cert: "identity",
    key: "identity",
};

/// What the settings are called where they came from, for errors.
#[derive(Debug, Clone, Copy)]
struct Names {
    url: &'static str,
    basic_auth: &'static str,
    ca_file: &'static str,
    cert: &'static str,
    key: &'static str,
}

/// Settings of a [`SchemaRegistry`]; nothing is read or checked until
/// [`build`](Self::build).
///
/// Its `Debug` output masks the password.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use outbox_diesel::registry::SchemaRegistry;
///
/// let registry = SchemaRegistry::builder("https://registry.internal:8081")
///     .basic_auth("relay", "s3cret")
///     .timeout(Duration::from_secs(2))
///     .build()?;
/// assert!(!format!("{registry:?}").contains("s3cret"));
/// # Ok::<(), outbox_diesel::registry::RegistryError>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct SchemaRegistryBuilder {
    url: String,
    basic_auth: Option<(String, String)>,
    ca_file: Option<PathBuf>,
    identity: Option<(PathBuf, PathBuf)>,
    timeout: Duration,
    names: Names,
}

impl SchemaRegistryBuilder {
    pub(super) fn new(url: &str) -> Self {
        SchemaRegistryBuilder {
            url: url.to_owned(),
            basic_auth: None,
            ca_file: None,
            identity: None,
            timeout: DEFAULT_TIMEOUT,
            names: METHODS,
        }
    }

    /// The builder of `SCHEMA_REGISTRY_*`: see [`SchemaRegistry::from_env`].
    /// An empty variable counts as unset.
    ///
    /// # Errors
    ///
    /// A [`Config`](super::RegistryErrorKind::Config) error naming the
    /// variable: `SCHEMA_REGISTRY_URL` unset, user info without `:`, a
    /// certificate without its key or a key without its certificate.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use outbox_diesel::registry::SchemaRegistryBuilder;
    ///
    /// let registry = SchemaRegistryBuilder::from_env()?
    ///     .timeout(Duration::from_secs(10))
    ///     .build()?;
    /// # Ok::<(), outbox_diesel::registry::RegistryError>(())
    /// ```
    pub fn from_env() -> Result<Self, RegistryError> {
        Self::from_vars(|name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        })
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, RegistryError> {
        let url = var(ENV.url).ok_or_else(|| {
            RegistryError::config(
                ENV.url,
                "not set: give the base URL of the registry's API \
                 (e.g. http://registry:8081, or http://apicurio:8080/apis/ccompat/v7)",
            )
        })?;
        let mut builder = SchemaRegistryBuilder {
            names: ENV,
            ..SchemaRegistryBuilder::new(&url)
        };
        if let Some(user_info) = var(ENV.basic_auth) {
            // The value is a secret: the error must not quote it.
            let (user, password) = user_info.split_once(':').ok_or_else(|| {
                RegistryError::config(ENV.basic_auth, "expected `user:password`, without a `:`")
            })?;
            builder = builder.basic_auth(user, password);
        }
        if let Some(ca) = var(ENV.ca_file) {
            builder = builder.ca_file(ca);
        }
        match (var(ENV.cert), var(ENV.key)) {
            (Some(cert), Some(key)) => builder = builder.identity(cert, key),
            (None, None) => {}
            (Some(_), None) => {
                return Err(RegistryError::config(
                    ENV.key,
                    format!(
                        "not set, but {} is: a client certificate needs its key",
                        ENV.cert
                    ),
                ));
            }
            (None, Some(_)) => {
                return Err(RegistryError::config(
                    ENV.cert,
                    format!("not set, but {} is: a key needs its certificate", ENV.key),
                ));
            }
        }
        Ok(builder)
    }

    /// Sends HTTP basic authentication with every request. It replaces
    /// credentials written in the URL.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let builder = SchemaRegistry::builder("https://registry:8081").basic_auth("relay", "s3cret");
    /// assert!(format!("{builder:?}").contains("relay:***"));
    /// ```
    pub fn basic_auth(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
        self.basic_auth = Some((user.into(), password.into()));
        self
    }

    /// Trusts the CA certificates of the PEM file at `path`, as well as the
    /// system's. Only for `https://` URLs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let registry = SchemaRegistry::builder("https://registry:8081")
    ///     .ca_file("/etc/registry/ca.pem")
    ///     .build()?;
    /// # Ok::<(), outbox_diesel::registry::RegistryError>(())
    /// ```
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// Presents the client certificate of the PEM file `cert` (its chain may
    /// follow it), with the PKCS#8 PEM key of `key` (`-----BEGIN PRIVATE
    /// KEY-----`): mutual TLS. Only for `https://` URLs.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let registry = SchemaRegistry::builder("https://registry:8081")
    ///     .identity("/etc/relay/client.pem", "/etc/relay/client.key")
    ///     .build()?;
    /// # Ok::<(), outbox_diesel::registry::RegistryError>(())
    /// ```
    pub fn identity(mut self, cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        self.identity = Some((cert.into(), key.into()));
        self
    }

    /// How long one request may take, from waiting for the connection to the
    /// last byte of the answer (default 5 s). Past it the request fails with
    /// [`Timeout`](super::RegistryErrorKind::Timeout).
    ///
    /// # Examples
    ///
    /// ```
    /// use std::time::Duration;
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let registry = SchemaRegistry::builder("http://registry:8081")
    ///     .timeout(Duration::from_millis(500))
    ///     .build()?;
    /// # Ok::<(), outbox_diesel::registry::RegistryError>(())
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks the settings and reads the certificate files. It opens no
    /// connection: the first request does.
    ///
    /// # Errors
    ///
    /// A [`Config`](super::RegistryErrorKind::Config) error naming the
    /// setting: a URL that is not `http[s]://host[:port][/path]` (or has a
    /// query), TLS files with an `http://` URL, a file that cannot be read, a
    /// certificate or key that does not parse.
    ///
    /// # Examples
    ///
    /// ```
    /// use outbox_diesel::registry::SchemaRegistry;
    ///
    /// let err = SchemaRegistry::builder("https://registry:8081")
    ///     .ca_file("/nonexistent/ca.pem")
    ///     .build()
    ///     .unwrap_err();
    /// assert_eq!(err.setting(), Some("ca_file"));
    /// assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    /// ```
    pub fn build(self) -> Result<SchemaRegistry, RegistryError> {
        let names = self.names;
        let (endpoint, from_url) =
            endpoint::parse(&self.url).map_err(|e| RegistryError::config(names.url, e))?;
        let credentials = match &self.basic_auth {
            Some((user, password)) => Some(UserInfo {
                user: user.clone(),
                password: password.clone(),
            }),
            None => from_url,
        };
        let tls = if endpoint.tls {
            Some(self.tls_connector()?)
        } else {
            if self.ca_file.is_some() || self.identity.is_some() {
                let setting = if self.ca_file.is_some() {
                    names.ca_file
                } else {
                    names.cert
                };
                return Err(RegistryError::config(
                    setting,
                    format!(
                        "set for `{}`, which is plain http://: use https://, or drop the TLS setting",
                        endpoint.display()
                    ),
                ));
            }
            None
        };
        let password = credentials.as_ref().map(|c| c.password.clone());
        let authorization = credentials
            .as_ref()
            .map(|c| basic_authorization(c, names))
            .transpose()?;
        let url = endpoint.display();
        let http = Http::new(endpoint, tls, authorization)
            .map_err(|e| RegistryError::config(names.url, e))?;
        Ok(SchemaRegistry {
            inner: Arc::new(Inner {
                http,
                url,
                user: credentials.map(|c| c.user),
                password,
                timeout: self.timeout,
            }),
        })
    }

    fn tls_connector(&self) -> Result<tokio_native_tls::TlsConnector, RegistryError> {
        let names = self.names;
        let mut tls = native_tls::TlsConnector::builder();
        if let Some(path) = &self.ca_file {
            for certificate in
                certificates(path).map_err(|e| RegistryError::config(names.ca_file, e))?
            {
                tls.add_root_certificate(certificate);
            }
        }
        if let Some((cert, key)) = &self.identity {
            let cert_pem = read(cert).map_err(|e| RegistryError::config(names.cert, e))?;
            let key_pem = read(key).map_err(|e| RegistryError::config(names.key, e))?;
            let identity = native_tls::Identity::from_pkcs8(&cert_pem, &key_pem).map_err(|e| {
                RegistryError::config(
                    names.key,
                    format!(
                        "{} with {}: not a PEM certificate with its PKCS#8 PEM key \
                         (`-----BEGIN PRIVATE KEY-----`): {e}",
                        cert.display(),
                        key.display()
                    ),
                )
            })?;
            tls.identity(identity);
        }
        let connector = tls
            .build()
            .map_err(|e| RegistryError::config(names.ca_file, format!("TLS setup failed: {e}")))?;
        Ok(connector.into())
    }
}

impl fmt::Debug for SchemaRegistryBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaRegistryBuilder")
            .field("url", &crate::mask_password(&self.url))
            .field(
                "basic_auth",
                &self
                    .basic_auth
                    .as_ref()
                    .map(|(user, _)| format!("{user}:***")),
            )
            .field("ca_file", &self.ca_file)
            .field("identity", &self.identity)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `Basic base64(user:password)`, marked sensitive so it is not logged.
fn basic_authorization(credentials: &UserInfo, names: Names) -> Result<HeaderValue, RegistryError> {
    if credentials.user.contains(':') {
        return Err(RegistryError::config(
            names.basic_auth,
            format!(
                "the user `{}` contains a `:`, which basic authentication cannot send",
                credentials.user
            ),
        ));
    }
    let token = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", credentials.user, credentials.password));
    // Base64 is printable ASCII: always a valid header value.
    let mut value = HeaderValue::from_str(&format!("Basic {token}"))
        .map_err(|e| RegistryError::config(names.basic_auth, e.to_string()))?;
    value.set_sensitive(true);
    Ok(value)
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("could not read {}: {e}", path.display()))
}

/// Every certificate of the PEM file at `path` (a bundle may hold several;
/// `Certificate::from_pem` reads only the first).
fn certificates(path: &Path) -> Result<Vec<native_tls::Certificate>, String> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let bytes = read(path)?;
    let text = String::from_utf8_lossy(&bytes);
    let mut certificates = Vec::new();
    let mut rest = text.as_ref();
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            return Err(format!(
                "{}: a certificate without its END line",
                path.display()
            ));
        };
        let end = start + len + END.len();
        let certificate =
            native_tls::Certificate::from_pem(&rest.as_bytes()[start..end]).map_err(|e| {
                format!(
                    "{}: certificate {} does not parse: {e}",
                    path.display(),
                    certificates.len() + 1
                )
            })?;
        certificates.push(certificate);
        rest = &rest[end..];
    }
    if certificates.is_empty() {
        return Err(format!(
            "{}: no PEM certificate (`{BEGIN}`) in it",
            path.display()
        ));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::SchemaRegistryBuilder;
    use crate::registry::RegistryErrorKind;

    fn from(
        vars: &[(&str, &str)],
    ) -> Result<SchemaRegistryBuilder, crate::registry::RegistryError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        SchemaRegistryBuilder::from_vars(|name| vars.get(name).cloned())
    }

    #[test]
    fn the_environment_fills_the_builder() {
        let builder = from(&[
            ("SCHEMA_REGISTRY_URL", "https://registry:8081"),
            ("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "relay:pa:ss"),
            ("SCHEMA_REGISTRY_CA_LOCATION", "/ca.pem"),
            ("SCHEMA_REGISTRY_CERT_LOCATION", "/c.pem"),
            ("SCHEMA_REGISTRY_KEY_LOCATION", "/c.key"),
        ])
        .unwrap();
        assert_eq!(builder.url, "https://registry:8081");
        assert_eq!(builder.basic_auth, Some(("relay".into(), "pa:ss".into())));
        assert_eq!(builder.ca_file.as_deref(), Some("/ca.pem".as_ref()));
        assert!(builder.identity.is_some());
        assert!(!format!("{builder:?}").contains("pa:ss"));
    }

    #[test]
    fn environment_errors_name_the_variable_and_not_the_secret() {
        for (vars, variable) in [
            (&[][..], "SCHEMA_REGISTRY_URL"),
            (
                &[
                    ("SCHEMA_REGISTRY_URL", "http://r"),
                    ("SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO", "hunter2"),
                ][..],
                "SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO",
            ),
            (
                &[
                    ("SCHEMA_REGISTRY_URL", "https://r"),
                    ("SCHEMA_REGISTRY_CERT_LOCATION", "/c.pem"),
                ][..],
                "SCHEMA_REGISTRY_KEY_LOCATION",
            ),
            (
                &[
                    ("SCHEMA_REGISTRY_URL", "https://r"),
                    ("SCHEMA_REGISTRY_KEY_LOCATION", "/c.key"),
                ][..],
                "SCHEMA_REGISTRY_CERT_LOCATION",
            ),
        ] {
            let err = from(vars).unwrap_err();
            assert_eq!(err.kind(), RegistryErrorKind::Config);
            assert_eq!(err.setting(), Some(variable), "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
        let err = from(&[("SCHEMA_REGISTRY_URL", "registry:8081")])
            .unwrap()
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), Some("SCHEMA_REGISTRY_URL"), "{err}");
    }

    #[test]
    fn tls_files_with_plain_http_are_refused() {
        let err = SchemaRegistryBuilder::new("http://registry:8081")
            .ca_file("/ca.pem")
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), Some("ca_file"));
        assert!(err.message().contains("plain http://"), "{err}");
    }

    #[test]
    fn a_user_with_a_colon_is_refused() {
        let err = SchemaRegistryBuilder::new("http://registry:8081")
            .basic_auth("a:b", "hunter2")
            .build()
            .unwrap_err();
        assert_eq!(err.setting(), Some("basic_auth"));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_file_without_certificates_is_named() {
        let path = std::env::temp_dir().join(format!("outbox-no-cert-{}.pem", std::process::id()));
        std::fs::write(&path, "not a certificate").unwrap();
        let err = SchemaRegistryBuilder::new("https://registry:8081")
            .ca_file(&path)
            .build()
            .unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert_eq!(err.setting(), Some("ca_file"));
        assert!(err.message().contains("no PEM certificate"), "{err}");
    }
}
