//! One keep-alive HTTP/1.1 connection to the registry, plain or TLS, opened
//! on first use and again after it breaks. Requests take turns on it: calls
//! are rare (callers cache ids), so one connection is enough.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

use super::endpoint::Endpoint;
use super::error::RegistryErrorKind;

/// The media type of the registry's requests and answers.
pub(super) const SCHEMA_REGISTRY_JSON: &str = "application/vnd.schemaregistry.v1+json";

/// What the client accepts: the registry's media types, then plain JSON.
const ACCEPTS: &str = "application/vnd.schemaregistry.v1+json, \
     application/vnd.schemaregistry+json; q=0.9, application/json; q=0.5";

/// The largest answer read: far above any schema, far below a problem.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// An answer: its status and whole body.
#[derive(Debug)]
pub(super) struct Answer {
    pub(super) status: u16,
    pub(super) body: Bytes,
}

/// A request that got no usable answer.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) kind: RegistryErrorKind,
    pub(super) message: String,
}

impl Failure {
    fn new(kind: RegistryErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind,
            message: message.into(),
        }
    }
}

/// The connection, and what every request carries.
pub(super) struct Http {
    endpoint: Endpoint,
    tls: Option<tokio_native_tls::TlsConnector>,
    /// `Basic ...`, marked sensitive.
    authorization: Option<HeaderValue>,
    host: HeaderValue,
    open: Mutex<Option<Open>>,
}

/// An open connection: the handle to send on, and the task that drives it.
struct Open {
    sender: SendRequest<Full<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Open {
    fn drop(&mut self) {
        // A request cut short by the timeout may leave the driver waiting on
        // a silent server: stop it, which closes the socket.
        self.driver.abort();
    }
}

impl Http {
    /// `authorization` is the whole header value, already marked sensitive.
    pub(super) fn new(
        endpoint: Endpoint,
        tls: Option<tokio_native_tls::TlsConnector>,
        authorization: Option<HeaderValue>,
    ) -> Result<Self, String> {
        let host = HeaderValue::from_str(&endpoint.authority)
            .map_err(|e| format!("`{}` is not a valid host: {e}", endpoint.authority))?;
        Ok(Http {
            endpoint,
            tls,
            authorization,
            host,
            open: Mutex::new(None),
        })
    }

    /// Sends `method` to the URL's base path + `path` (which may end in a
    /// query) with `body` as JSON, and reads the whole answer, all within
    /// `timeout` (waiting for an earlier request included).
    pub(super) async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
        timeout: Duration,
    ) -> Result<Answer, Failure> {
        let uri: Uri = format!("{}{path}", self.endpoint.base_path)
            .parse()
            .map_err(|e| {
                Failure::new(
                    RegistryErrorKind::Protocol,
                    format!("could not build the request path `{path}`: {e}"),
                )
            })?;
        let deadline = Instant::now() + timeout;
        let timed_out = || {
            Failure::new(
                RegistryErrorKind::Timeout,
                format!("nothing within the client's timeout of {timeout:?}"),
            )
        };
        let mut open = timeout_at(deadline, self.open.lock())
            .await
            .map_err(|_| timed_out())?;
        match timeout_at(deadline, self.exchange(&mut open, &method, &uri, body)).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(failure)) => {
                *open = None;
                Err(failure)
            }
            Err(_) => {
                // The connection is mid-request: it cannot carry another.
                *open = None;
                Err(timed_out())
            }
        }
    }

    async fn exchange(
        &self,
        open: &mut Option<Open>,
        method: &Method,
        uri: &Uri,
        body: Option<Bytes>,
    ) -> Result<Answer, Failure> {
        if open.as_ref().is_some_and(|o| o.sender.is_closed()) {
            *open = None;
        }
        let reused = open.is_some();
        let connection = match open {
            Some(connection) => connection,
            None => open.insert(self.connect().await?),
        };
        match self.send(connection, method, uri, body.clone()).await {
            // The server may close an idle connection just as a request goes
            // out. Every request of this client can be sent twice (registering
            // a schema the subject holds returns its id), so try once more on
            // a new connection.
            Err(SendFailure::Connection(error)) if reused => {
                tracing::debug!(%error, "schema registry: the kept-alive connection broke; reconnecting");
                let connection = open.insert(self.connect().await?);
                self.send(connection, method, uri, body)
                    .await
                    .map_err(SendFailure::into_failure)
            }
            result => result.map_err(SendFailure::into_failure),
        }
    }

    async fn send(
        &self,
        open: &mut Open,
        method: &Method,
        uri: &Uri,
        body: Option<Bytes>,
    ) -> Result<Answer, SendFailure> {
        let has_body = body.is_some();
        let mut request = Request::new(Full::new(body.unwrap_or_default()));
        *request.method_mut() = method.clone();
        *request.uri_mut() = uri.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.host.clone());
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPTS));
        if has_body {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(SCHEMA_REGISTRY_JSON));
        }
        if let Some(authorization) = &self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        open.sender.ready().await.map_err(SendFailure::Connection)?;
        let response = open
            .sender
            .send_request(request)
            .await
            .map_err(SendFailure::Connection)?;
        let status = response.status().as_u16();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|error| match error.downcast::<hyper::Error>() {
                Ok(error) => SendFailure::Connection(*error),
                Err(error) => SendFailure::Other(Failure::new(
                    RegistryErrorKind::Protocol,
                    format!("HTTP {status} with a body of more than {MAX_BODY} bytes ({error})"),
                )),
            })?
            .to_bytes();
        Ok(Answer { status, body })
    }

    async fn connect(&self) -> Result<Open, Failure> {
        let (host, port) = (self.endpoint.host.as_str(), self.endpoint.port);
        let tcp = TcpStream::connect((host, port)).await.map_err(|e| {
            Failure::new(
                RegistryErrorKind::Unreachable,
                format!("could not connect to {}: {e}", self.endpoint.authority),
            )
        })?;
        // Requests are small and answered at once: do not wait to fill packets.
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => handshake(tcp).await,
            Some(tls) => {
                let stream = tls.connect(host, tcp).await.map_err(tls_failure)?;
                handshake(stream).await
            }
        }
    }
}

/// Why a request on an open connection failed.
enum SendFailure {
    /// The connection broke (or was closed) before a whole answer came.
    Connection(hyper::Error),
    Other(Failure),
}

impl SendFailure {
    fn into_failure(self) -> Failure {
        match self {
            SendFailure::Connection(error) => Failure::new(
                RegistryErrorKind::Unreachable,
                format!(
                    "the connection failed: {}",
                    crate::error::error_chain(&error)
                ),
            ),
            SendFailure::Other(failure) => failure,
        }
    }
}

/// HTTP/1.1 on `io`, driven by a task of its own.
async fn handshake<T>(io: T) -> Result<Open, Failure>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, connection) = http1::handshake(TokioIo::new(io)).await.map_err(|e| {
        Failure::new(
            RegistryErrorKind::Unreachable,
            format!("HTTP/1.1 handshake failed: {e}"),
        )
    })?;
    let driver = tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "schema registry: connection closed");
        }
    });
    Ok(Open { sender, driver })
}

/// A failed TLS handshake: [`Unreachable`](RegistryErrorKind::Unreachable)
/// when the connection itself broke (an I/O error under it), otherwise
/// [`Tls`](RegistryErrorKind::Tls): certificate or protocol.
fn tls_failure(error: native_tls::Error) -> Failure {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    let mut io = false;
    while let Some(cause) = source {
        io |= cause.is::<std::io::Error>();
        source = cause.source();
    }
    let kind = if io {
        RegistryErrorKind::Unreachable
    } else {
        RegistryErrorKind::Tls
    };
    Failure::new(kind, crate::error::error_chain(&error))
}
