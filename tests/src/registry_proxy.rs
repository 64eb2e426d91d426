//! A TLS-terminating reverse proxy that checks HTTP basic authentication,
//! in front of the test schema registry (which speaks plain HTTP without
//! authentication): how tests reach a registry over `https://` with a
//! password, as in production.
//!
//! It presents the services script's server certificate (`server.pem`, for
//! `localhost` and `127.0.0.1`, signed by `ca.pem`; see
//! [`secure::tls_dir`]), answers 401 with the
//! registry's error body to a request without the right `Authorization`, and
//! forwards the others unchanged. It counts the connections it accepts and
//! the requests it forwards.
//!
//! # Examples
//!
//! ```no_run
//! use outbox_tests::registry::schema_registry_url;
//! use outbox_tests::registry_proxy::RegistryProxy;
//!
//! let proxy = RegistryProxy::start(&schema_registry_url(), "relay", "relay-secret");
//! assert!(proxy.url().starts_with("https://localhost:"));
//! ```

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use base64::Engine as _;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use crate::secure;

/// A running proxy; it stops when dropped.
pub struct RegistryProxy {
    url: String,
    counts: Arc<Counts>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    forwarded: AtomicUsize,
    refused: AtomicUsize,
}

/// Where requests go, and what they must carry.
struct Upstream {
    /// `host:port` of the registry.
    address: String,
    expected: HeaderValue,
    counts: Arc<Counts>,
}

impl RegistryProxy {
    /// Starts a proxy on a free port of 127.0.0.1, in front of the plain
    /// `http://` registry at `registry_url`, letting in `user` with
    /// `password` only. Its [`url`](Self::url) has the registry's base path.
    ///
    /// # Panics
    ///
    /// When `registry_url` is not `http://host:port/...`, or the services
    /// script's certificate cannot be read (with how to make it).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_tests::registry_proxy::RegistryProxy;
    ///
    /// let proxy = RegistryProxy::start("http://127.0.0.1:58086/apis/ccompat/v7", "u", "p");
    /// assert!(proxy.url().ends_with("/apis/ccompat/v7"));
    /// ```
    pub fn start(registry_url: &str, user: &str, password: &str) -> RegistryProxy {
        let registry: Uri = registry_url
            .parse()
            .unwrap_or_else(|e| panic!("the registry URL {registry_url} does not parse: {e}"));
        let authority = match (registry.scheme_str(), registry.authority()) {
            (Some("http"), Some(authority)) => authority.as_str().to_owned(),
            _ => panic!("the proxy forwards to a plain http:// registry, not {registry_url}"),
        };
        let acceptor = acceptor();
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let counts = Arc::new(Counts::default());
        let upstream = Arc::new(Upstream {
            address: authority,
            expected: HeaderValue::from_str(&format!("Basic {token}"))
                .expect("base64 is a valid header value"),
            counts: counts.clone(),
        });

        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap_or_else(|e| panic!("the proxy could not listen on 127.0.0.1: {e}"));
        let port = listener.local_addr().expect("a bound address").port();
        listener
            .set_nonblocking(true)
            .expect("a listener can be made non-blocking");
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("registry-proxy".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("the proxy's runtime starts");
                runtime.block_on(async move {
                    let listener =
                        TcpListener::from_std(listener).expect("the listener joins the runtime");
                    tokio::select! {
                        _ = accept(listener, acceptor, upstream) => {}
                        _ = stopped => {}
                    }
                });
            })
            .expect("the proxy's thread starts");
        let base_path = registry.path().trim_end_matches('/');
        RegistryProxy {
            url: format!("https://localhost:{port}{base_path}"),
            counts,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The proxy's URL: `https://localhost:<port>` and the registry's base path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The connections accepted so far (whether their TLS handshake succeeded or not).
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// The requests forwarded to the registry so far.
    pub fn forwarded(&self) -> usize {
        self.counts.forwarded.load(Ordering::SeqCst)
    }

    /// The requests refused with 401 so far.
    pub fn refused(&self) -> usize {
        self.counts.refused.load(Ordering::SeqCst)
    }
}

impl Drop for RegistryProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The services script's server certificate and key.
fn acceptor() -> tokio_native_tls::TlsAcceptor {
    let dir = secure::tls_dir();
    let read = |name: &str| {
        std::fs::read(dir.join(name)).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; {}",
                dir.join(name).display(),
                secure::HOW_TO_START_TLS
            )
        })
    };
    let identity = native_tls::Identity::from_pkcs8(&read("server.pem"), &read("server.key"))
        .unwrap_or_else(|e| panic!("the server certificate and key in {}: {e}", dir.display()));
    native_tls::TlsAcceptor::new(identity)
        .expect("a TLS acceptor with the server certificate")
        .into()
}

async fn accept(
    listener: TcpListener,
    acceptor: tokio_native_tls::TlsAcceptor,
    upstream: Arc<Upstream>,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        upstream.counts.connections.fetch_add(1, Ordering::SeqCst);
        // Answers go out at once, not after the client's delayed ACK.
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let upstream = upstream.clone();
        tokio::spawn(async move {
            // A client that does not trust the certificate hangs up here.
            let Ok(stream) = acceptor.accept(stream).await else {
                return;
            };
            let service = hyper::service::service_fn(move |request| {
                let upstream = upstream.clone();
                async move { Ok::<_, Infallible>(upstream.answer(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

impl Upstream {
    async fn answer(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        if request.headers().get(AUTHORIZATION) != Some(&self.expected) {
            self.counts.refused.fetch_add(1, Ordering::SeqCst);
            let mut response = json(
                StatusCode::UNAUTHORIZED,
                r#"{"error_code":401,"message":"Unauthorized"}"#,
            );
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"registry\""),
            );
            return response;
        }
        match self.forward(request).await {
            Ok(response) => {
                self.counts.forwarded.fetch_add(1, Ordering::SeqCst);
                response
            }
            Err(error) => json(
                StatusCode::BAD_GATEWAY,
                &serde_json::json!({ "error_code": 502, "message": error }).to_string(),
            ),
        }
    }

    /// The request on a connection of its own to the registry.
    async fn forward(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, String> {
        let (mut parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading the request: {e}"))?
            .to_bytes();
        parts.headers.remove(AUTHORIZATION);
        parts.headers.insert(
            HOST,
            HeaderValue::from_str(&self.address).map_err(|e| e.to_string())?,
        );
        let stream = TcpStream::connect(&self.address)
            .await
            .map_err(|e| format!("connecting to the registry at {}: {e}", self.address))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("HTTP to the registry: {e}"))?;
        tokio::spawn(connection);
        let response = sender
            .send_request(Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(|e| format!("the registry's answer: {e}"))?;
        let (parts, body) = response.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("reading the registry's answer: {e}"))?
            .to_bytes();
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

fn json(status: StatusCode, body: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_owned())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/vnd.schemaregistry.v1+json"),
    );
    response
}
