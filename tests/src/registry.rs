//! Subjects of the test's own in a Confluent-compatible schema registry: the
//! one `scripts/services.sh up` starts (Apicurio Registry, in memory, at
//! [`DEFAULT_SCHEMA_REGISTRY_URL`]) or the one `SCHEMA_REGISTRY_URL` names.
//!
//! The registry's API is a handful of JSON requests, so this module speaks
//! HTTP/1.1 itself over a [`TcpStream`] (plain `http://` only): one request
//! per connection (`Connection: close`), bodies with `Content-Length` or
//! chunked.

use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Value, json};

use crate::names;

/// Where the services script starts the registry, unless `SCHEMA_REGISTRY_URL`
/// says otherwise: the base of Apicurio's Confluent-compatible API.
pub const DEFAULT_SCHEMA_REGISTRY_URL: &str = "http://127.0.0.1:58086/apis/ccompat/v7";

/// How to start the registry, for failure messages.
const HOW_TO_START: &str = "start it with `bash scripts/services.sh up` \
     (or point SCHEMA_REGISTRY_URL at a running Confluent-compatible registry)";

/// The media type of the registry's requests.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// The registry to test against: `SCHEMA_REGISTRY_URL` (without a final `/`),
/// or the services script's default. An empty variable counts as unset, as
/// in the script.
///
/// # Examples
///
/// ```
/// assert!(outbox_tests::registry::schema_registry_url().starts_with("http"));
/// ```
pub fn schema_registry_url() -> String {
    url_or_default(std::env::var("SCHEMA_REGISTRY_URL").ok())
}

fn url_or_default(given: Option<String>) -> String {
    let url = given
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_SCHEMA_REGISTRY_URL.to_owned());
    url.trim().trim_end_matches('/').to_owned()
}

/// A request the registry refused: the HTTP status, and the registry's
/// `{"error_code", "message"}` body (the raw body as the message when it
/// is not that).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryFailure {
    /// The HTTP status, e.g. 409 for an incompatible schema.
    pub status: u16,
    /// The registry's `error_code` (Confluent's: 409, 40401 subject not
    /// found, 42201 invalid schema, ...).
    pub error_code: Option<i64>,
    /// The registry's `message`.
    pub message: String,
}

impl fmt::Display for RegistryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        if let Some(code) = self.error_code {
            write!(f, " (error_code {code})")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for RegistryFailure {}

/// The test's subjects in the schema registry, deleted (soft, then
/// permanently) when the value is dropped, even if the test panics.
///
/// Subject names are unique to the test, so tests run in parallel. Every
/// subject a method is given is deleted at the end, also one not made by
/// [`subject`](Self::subject). The registry's compatibility level defaults to
/// NONE on Apicurio (BACKWARD on Confluent's): tests set the level they rely on.
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::TestRegistry;
///
/// let registry = TestRegistry::new("registers_a_schema");
/// let subject = registry.subject("orders"); // "orders_registers_a_schema_<random>-value"
/// registry.set_compatibility(&subject, "FULL_TRANSITIVE")?;
/// let id = registry.register(&subject, r#"{"type": "record", "name": "Order", "fields": []}"#)?;
/// assert_eq!(registry.versions(&subject), [1]);
/// assert!(registry.schema(id).contains("Order"));
/// # Ok::<(), outbox_tests::registry::RegistryFailure>(())
/// ```
pub struct TestRegistry {
    url: String,
    endpoint: Endpoint,
    test_name: String,
    subjects: Mutex<Vec<String>>,
}

impl TestRegistry {
    /// Connects to the registry of [`schema_registry_url`] and checks that it
    /// answers.
    ///
    /// # Panics
    ///
    /// When the registry does not answer, with a message saying how to start it.
    pub fn new(test_name: &str) -> Self {
        Self::on_url(schema_registry_url(), test_name)
    }

    /// Like [`TestRegistry::new`], on the registry whose Confluent-compatible
    /// API is at `url` (`http://host:port/base/path`; a final `/` is ignored).
    ///
    /// # Panics
    ///
    /// When `url` is not a plain `http://` URL, or the registry does not
    /// answer `GET /subjects` with a list, with a message saying how to start it.
    pub fn on_url(url: String, test_name: &str) -> Self {
        let url = url.trim_end_matches('/').to_owned();
        let endpoint = Endpoint::parse(&url).unwrap_or_else(|e| panic!("{e}"));
        let registry = TestRegistry {
            url,
            endpoint,
            test_name: test_name.to_owned(),
            subjects: Mutex::new(Vec::new()),
        };
        let answer = registry
            .endpoint
            .send("GET", "/subjects", None)
            .unwrap_or_else(|e| {
                panic!(
                    "the schema registry at {} is not reachable: {e}; {HOW_TO_START}",
                    registry.url
                )
            });
        if answer.status != 200 || !matches!(answer.json(), Ok(Value::Array(_))) {
            panic!(
                "{} answers GET /subjects with HTTP {}: {}; is it the base URL of a \
                 Confluent-compatible API (Apicurio's ends in /apis/ccompat/v7)? {HOW_TO_START}",
                registry.url,
                answer.status,
                answer.body.trim()
            );
        }
        registry
    }

    /// The base URL of the registry's Confluent-compatible API.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A subject unique to this test, named for the value schemas of a topic
    /// unique to it (`<what>_<test>_<random>-value`, Confluent's
    /// TopicNameStrategy); deleted when `self` is dropped.
    pub fn subject(&self, what: &str) -> String {
        self.value_subject(&names::unique(what, &self.test_name))
    }

    /// The subject of the value schemas of `topic` (`<topic>-value`), e.g. a
    /// topic of [`TestKafka`](crate::TestKafka); deleted when `self` is dropped.
    pub fn value_subject(&self, topic: &str) -> String {
        let subject = format!("{topic}-value");
        self.remember(&subject);
        subject
    }

    /// Registers the Avro schema `schema` (its JSON text) under `subject` and
    /// returns its id. Registering a schema the subject holds returns the id
    /// it has, and adds no version.
    ///
    /// # Errors
    ///
    /// The registry's refusal: 409 for a schema incompatible with the
    /// subject's versions at its compatibility level, 422 for an invalid one.
    ///
    /// # Panics
    ///
    /// When the registry does not answer, or answers success without an id.
    pub fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryFailure> {
        self.remember(subject);
        let path = format!("/subjects/{}/versions", segment(subject));
        let answer = self.call("POST", &path, Some(json!({ "schema": schema })))?;
        Ok(self.number(&answer, "id", &path))
    }

    /// Sets the compatibility level of `subject` (`BACKWARD`, `FORWARD`,
    /// `FULL`, their `_TRANSITIVE` forms, or `NONE`), also before its first
    /// version.
    ///
    /// # Errors
    ///
    /// The registry's refusal, e.g. 422 for an unknown level.
    ///
    /// # Panics
    ///
    /// When the registry does not answer.
    pub fn set_compatibility(&self, subject: &str, level: &str) -> Result<(), RegistryFailure> {
        self.remember(subject);
        let path = format!("/config/{}", segment(subject));
        self.call("PUT", &path, Some(json!({ "compatibility": level })))?;
        Ok(())
    }

    /// The compatibility level set on `subject` (`GET /config/{subject}`).
    ///
    /// # Errors
    ///
    /// The registry's refusal: 404 when the subject has no level of its own.
    ///
    /// # Panics
    ///
    /// When the registry does not answer, or answers without `compatibilityLevel`.
    pub fn compatibility(&self, subject: &str) -> Result<String, RegistryFailure> {
        let path = format!("/config/{}", segment(subject));
        let answer = self.call("GET", &path, None)?;
        match answer.get("compatibilityLevel") {
            Some(Value::String(level)) => Ok(level.clone()),
            _ => panic!(
                "GET {}{path} answered without compatibilityLevel: {answer}",
                self.url
            ),
        }
    }

    /// Whether `schema` is compatible with the latest version of `subject`, at
    /// the subject's level (`POST /compatibility/subjects/{subject}/versions/latest`).
    ///
    /// Against the latest version only, also at a `_TRANSITIVE` level (as
    /// Confluent's registry does): what registering checks is [`check_all`](Self::check_all).
    ///
    /// # Errors
    ///
    /// The registry's refusal, e.g. 404 (error_code 40401) for a subject
    /// without versions.
    ///
    /// # Panics
    ///
    /// When the registry does not answer, or answers without `is_compatible`.
    pub fn check(&self, subject: &str, schema: &str) -> Result<bool, RegistryFailure> {
        self.compatible(
            &format!(
                "/compatibility/subjects/{}/versions/latest",
                segment(subject)
            ),
            schema,
        )
    }

    /// Whether `schema` is compatible with the versions of `subject` its level
    /// compares it with: all of them at a `_TRANSITIVE` level, as registering
    /// does (`POST /compatibility/subjects/{subject}/versions`).
    ///
    /// # Errors
    ///
    /// The registry's refusal.
    ///
    /// # Panics
    ///
    /// When the registry does not answer, or answers without `is_compatible`.
    pub fn check_all(&self, subject: &str, schema: &str) -> Result<bool, RegistryFailure> {
        self.compatible(
            &format!("/compatibility/subjects/{}/versions", segment(subject)),
            schema,
        )
    }

    /// The text of the schema with id `id` (`GET /schemas/ids/{id}`).
    ///
    /// # Panics
    ///
    /// When the registry does not answer or has no such schema.
    pub fn schema(&self, id: u32) -> String {
        let path = format!("/schemas/ids/{id}");
        let answer = self.call("GET", &path, None).unwrap_or_else(|failure| {
            panic!("GET {}{path}: {failure}", self.url);
        });
        match answer.get("schema") {
            Some(Value::String(schema)) => schema.clone(),
            _ => panic!("GET {}{path} answered without a schema: {answer}", self.url),
        }
    }

    /// The version numbers of `subject`, oldest first (`GET /subjects/{subject}/versions`).
    ///
    /// # Panics
    ///
    /// When the registry does not answer or has no such subject.
    pub fn versions(&self, subject: &str) -> Vec<u32> {
        let path = format!("/subjects/{}/versions", segment(subject));
        let answer = self.call("GET", &path, None).unwrap_or_else(|failure| {
            panic!("GET {}{path}: {failure}", self.url);
        });
        answer
            .as_array()
            .and_then(|versions| {
                versions
                    .iter()
                    .map(|v| v.as_u64().and_then(|v| u32::try_from(v).ok()))
                    .collect()
            })
            .unwrap_or_else(|| {
                panic!(
                    "GET {}{path} answered no list of versions: {answer}",
                    self.url
                )
            })
    }

    /// Every subject the registry holds, of every test; soft-deleted ones too
    /// when `deleted` (`GET /subjects?deleted=true`).
    ///
    /// # Panics
    ///
    /// When the registry does not answer.
    pub fn subjects(&self, deleted: bool) -> Vec<String> {
        let path = if deleted {
            "/subjects?deleted=true"
        } else {
            "/subjects"
        };
        let answer = self.call("GET", path, None).unwrap_or_else(|failure| {
            panic!("GET {}{path}: {failure}", self.url);
        });
        answer
            .as_array()
            .and_then(|subjects| {
                subjects
                    .iter()
                    .map(|s| s.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_else(|| {
                panic!(
                    "GET {}{path} answered no list of subjects: {answer}",
                    self.url
                )
            })
    }

    fn compatible(&self, path: &str, schema: &str) -> Result<bool, RegistryFailure> {
        let answer = self.call("POST", path, Some(json!({ "schema": schema })))?;
        match answer.get("is_compatible") {
            Some(Value::Bool(compatible)) => Ok(*compatible),
            _ => panic!(
                "POST {}{path} answered without is_compatible: {answer}",
                self.url
            ),
        }
    }

    fn number(&self, answer: &Value, key: &str, path: &str) -> u32 {
        answer
            .get(key)
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or_else(|| panic!("{}{path} answered without `{key}`: {answer}", self.url))
    }

    fn remember(&self, subject: &str) {
        let mut subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
        if !subjects.iter().any(|s| s == subject) {
            subjects.push(subject.to_owned());
        }
    }

    /// A request whose success carries a JSON body; a refusal as a
    /// [`RegistryFailure`]. Panics when the registry does not answer.
    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, RegistryFailure> {
        let answer = self
            .endpoint
            .send(method, path, body.map(|b| b.to_string()).as_deref())
            .unwrap_or_else(|e| {
                panic!(
                    "the schema registry at {} did not answer {method} {path}: {e}; {HOW_TO_START}",
                    self.url
                )
            });
        if !(200..300).contains(&answer.status) {
            return Err(answer.failure());
        }
        answer.json().map_err(|e| RegistryFailure {
            status: answer.status,
            error_code: None,
            message: format!("not JSON ({e}): {}", answer.body),
        })
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let subjects =
            std::mem::take(&mut *self.subjects.lock().unwrap_or_else(|e| e.into_inner()));
        // Failures are ignored: a subject given to `set_compatibility` only,
        // or refused its first version, has no versions to delete.
        for subject in subjects {
            let subject = segment(&subject);
            for path in [
                format!("/subjects/{subject}"),
                format!("/subjects/{subject}?permanent=true"),
                // A level set on a subject that never had a version outlives it.
                format!("/config/{subject}"),
            ] {
                let _ = self.endpoint.send("DELETE", &path, None);
            }
        }
    }
}

/// `subject` as one path segment: everything but RFC 3986's unreserved
/// characters percent-encoded.
fn segment(subject: &str) -> String {
    let mut out = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Where the requests go: the host and port of an `http://` URL, and the
/// path its requests' paths follow.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    /// The URL's host, without an IPv6 address's brackets.
    host: String,
    port: u16,
    /// `host[:port]` as the URL writes it: the `Host` header.
    authority: String,
    /// The URL's path, without a final `/` (`/apis/ccompat/v7`, or empty).
    base_path: String,
}

impl Endpoint {
    fn parse(url: &str) -> Result<Endpoint, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!(
                "the test registry client speaks plain http:// only, not {url}: \
                 set SCHEMA_REGISTRY_URL to an http:// registry"
            )
        })?;
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if authority.is_empty() || authority.contains('@') {
            return Err(format!(
                "no host, or credentials, in {url}: the test registry client takes \
                 http://host[:port]/path without a user"
            ));
        }
        let (host, port) = match authority.rfind(':') {
            // `[::1]` alone has colons but no port.
            Some(colon) if !authority[colon..].contains(']') => {
                let port = authority[colon + 1..]
                    .parse()
                    .map_err(|e| format!("bad port in {url}: {e}"))?;
                (&authority[..colon], port)
            }
            _ => (authority, 80),
        };
        Ok(Endpoint {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned(),
            port,
            authority: authority.to_owned(),
            base_path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// One request on a connection of its own.
    fn send(&self, method: &str, path: &str, body: Option<&str>) -> io::Result<Answer> {
        let mut stream = self.connect()?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let mut request = format!(
            "{method} {}{path} HTTP/1.1\r\nHost: {}\r\nAccept: {CONTENT_TYPE}, application/json\r\n\
             Connection: close\r\n",
            self.base_path, self.authority
        );
        if body.is_some() {
            request.push_str(&format!("Content-Type: {CONTENT_TYPE}\r\n"));
        }
        if body.is_some() || method != "GET" {
            request.push_str(&format!("Content-Length: {}\r\n", body.map_or(0, str::len)));
        }
        request.push_str("\r\n");
        request.push_str(body.unwrap_or_default());
        stream.write_all(request.as_bytes())?;
        stream.flush()?;
        read_answer(&mut BufReader::new(stream))
    }

    fn connect(&self) -> io::Result<TcpStream> {
        let mut last = None;
        for address in (self.host.as_str(), self.port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&address, CONNECT_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} has no address", self.host),
            )
        }))
    }
}

/// A response: its status and body.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    status: u16,
    body: String,
}

impl Answer {
    fn json(&self) -> serde_json::Result<Value> {
        serde_json::from_str(&self.body)
    }

    /// The registry's `{"error_code", "message"}`, or the body as it is.
    fn failure(&self) -> RegistryFailure {
        let parsed = self.json().ok();
        let field = |key: &str| parsed.as_ref().and_then(|body| body.get(key).cloned());
        RegistryFailure {
            status: self.status,
            error_code: field("error_code").and_then(|code| code.as_i64()),
            message: match field("message") {
                Some(Value::String(message)) => message,
                _ => self.body.trim().to_owned(),
            },
        }
    }
}

/// Reads a response: the status line, headers, and a body of `Content-Length`
/// bytes, chunked, or up to the end of the connection (none for 204 or 304).
/// Interim 1xx responses are skipped.
fn read_answer(reader: &mut impl BufRead) -> io::Result<Answer> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
    loop {
        let status_line = read_line(reader)?;
        let status: u16 = match status_line.split(' ').collect::<Vec<_>>()[..] {
            [version, code, ..] if version.starts_with("HTTP/1.") => code
                .parse()
                .map_err(|_| invalid(format!("bad status line {status_line:?}")))?,
            _ => return Err(invalid(format!("bad status line {status_line:?}"))),
        };
        let mut length = None;
        let mut chunked = false;
        loop {
            let line = read_line(reader)?;
            if line.is_empty() {
                break;
            }
            let Some((name, value)) = line.split_once(':') else {
                return Err(invalid(format!("bad header line {line:?}")));
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(
                    value
                        .parse::<usize>()
                        .map_err(|_| invalid(format!("bad Content-Length {value:?}")))?,
                );
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|last| last.trim().eq_ignore_ascii_case("chunked"));
            }
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut body = Vec::new();
        if status != 204 && status != 304 {
            if chunked {
                read_chunks(reader, &mut body)?;
            } else if let Some(length) = length {
                body.resize(length, 0);
                reader.read_exact(&mut body)?;
            } else {
                reader.read_to_end(&mut body)?;
            }
        }
        let body =
            String::from_utf8(body).map_err(|e| invalid(format!("a body not in UTF-8: {e}")))?;
        return Ok(Answer { status, body });
    }
}

/// A chunked body: `size[;extensions]` CRLF, that many bytes, CRLF; a chunk of
/// size 0 ends it, then trailer lines up to an empty one.
fn read_chunks(reader: &mut impl BufRead, body: &mut Vec<u8>) -> io::Result<()> {
    loop {
        let line = read_line(reader)?;
        let size = line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("bad chunk size {line:?}"),
            )
        })?;
        if size == 0 {
            while !read_line(reader)?.is_empty() {}
            return Ok(());
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..])?;
        if !read_line(reader)?.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a chunk longer than its size",
            ));
        }
    }
}

/// A line without its CRLF (or LF); an error at the end of the stream.
fn read_line(reader: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the connection closed before the response ended",
        ));
    }
    let end = line.trim_end_matches(['\r', '\n']).len();
    line.truncate(end);
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::{Answer, DEFAULT_SCHEMA_REGISTRY_URL, Endpoint, read_answer};

    fn read(response: &str) -> Answer {
        read_answer(&mut response.as_bytes()).unwrap()
    }

    #[test]
    fn the_url_is_the_variable_or_the_scripts_default() {
        assert_eq!(super::url_or_default(None), DEFAULT_SCHEMA_REGISTRY_URL);
        assert_eq!(
            super::url_or_default(Some(" ".into())),
            DEFAULT_SCHEMA_REGISTRY_URL
        );
        assert_eq!(
            super::url_or_default(Some("http://registry:8081/".into())),
            "http://registry:8081"
        );
    }

    #[test]
    fn urls_give_host_port_and_base_path() {
        let endpoint = |url| Endpoint::parse(url).unwrap();
        assert_eq!(
            endpoint(DEFAULT_SCHEMA_REGISTRY_URL),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 58086,
                authority: "127.0.0.1:58086".into(),
                base_path: "/apis/ccompat/v7".into(),
            }
        );
        let bare = endpoint("http://registry");
        assert_eq!(
            (bare.host.as_str(), bare.port, bare.base_path.as_str()),
            ("registry", 80, "")
        );
        let v6 = endpoint("http://[::1]:8081/");
        assert_eq!(
            (v6.host.as_str(), v6.port, v6.authority.as_str()),
            ("::1", 8081, "[::1]:8081")
        );
        assert_eq!(endpoint("http://[::1]/x").port, 80);
        assert!(
            Endpoint::parse("https://registry/x")
                .unwrap_err()
                .contains("plain http://")
        );
        assert!(Endpoint::parse("http://me:secret@registry/x").is_err());
        assert!(Endpoint::parse("http://registry:port/x").is_err());
    }

    #[test]
    fn subjects_are_one_path_segment() {
        assert_eq!(super::segment("orders_t_1a-value"), "orders_t_1a-value");
        assert_eq!(super::segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn bodies_are_read_by_length_chunks_or_to_the_end() {
        let sized = "HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"id\":1}trailing";
        assert_eq!(
            read(sized),
            Answer {
                status: 200,
                body: "{\"id\":1}".into()
            }
        );
        let chunked = "HTTP/1.1 409 Conflict\r\ntransfer-encoding: chunked\r\n\r\n\
                       4;ext=1\r\n{\"er\r\nA\r\nror_code\":\r\n4\r\n409}\r\n0\r\nX-Trailer: 1\r\n\r\n";
        assert_eq!(
            read(chunked),
            Answer {
                status: 409,
                body: "{\"error_code\":409}".into()
            }
        );
        let to_the_end = "HTTP/1.0 404 Not Found\nContent-Type: text/plain\n\nno such thing\n";
        assert_eq!(read(to_the_end).body, "no such thing\n");
        let interim = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        assert_eq!(
            read(interim),
            Answer {
                status: 204,
                body: String::new()
            }
        );
        assert!(
            read_answer(&mut "HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}".as_bytes()).is_err()
        );
        assert!(read_answer(&mut "SSH-2.0-OpenSSH\r\n".as_bytes()).is_err());
    }

    #[test]
    fn a_refusal_carries_the_registrys_code_and_message() {
        let answer = read(
            "HTTP/1.1 409 Conflict\r\nContent-Length: 43\r\n\r\n{\"message\":\"Incompatible\",\"error_code\":409}",
        );
        let failure = answer.failure();
        assert_eq!((failure.status, failure.error_code), (409, Some(409)));
        assert_eq!(
            failure.to_string(),
            "HTTP 409 (error_code 409): Incompatible"
        );
        let plain = read("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 4\r\n\r\nnope").failure();
        assert_eq!((plain.error_code, plain.message.as_str()), (None, "nope"));
    }

    #[test]
    fn an_unreachable_registry_fails_and_says_how_to_start_it() {
        let panic = std::panic::catch_unwind(|| {
            super::TestRegistry::on_url("http://127.0.0.1:1/apis/ccompat/v7".into(), "unreachable")
        });
        let message = *panic.err().unwrap().downcast::<String>().unwrap();
        assert!(
            message.starts_with(
                "the schema registry at http://127.0.0.1:1/apis/ccompat/v7 is not reachable"
            ),
            "{message}"
        );
        assert!(message.contains("bash scripts/services.sh up"), "{message}");
    }
}
