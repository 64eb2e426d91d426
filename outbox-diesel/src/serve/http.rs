//! The three endpoints, on hyper's HTTP/1 server.

use std::convert::Infallible;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

use super::health::Health;

/// How long a client may take to send its request headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Prometheus' text exposition format.
const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the endpoints read.
#[derive(Clone)]
pub(super) struct Endpoints {
    pub(super) metrics: PrometheusHandle,
    pub(super) health: Health,
}

/// Accepts connections until the task is aborted; the connections in
/// progress are aborted with it.
pub(super) async fn serve(listener: TcpListener, endpoints: Endpoints) {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: wait, do not spin.
                tracing::warn!(%error, "metrics server: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let response = endpoints.respond(request.method(), request.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "metrics server: connection failed");
            }
        });
    }
}

impl Endpoints {
    fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        let known = matches!(path, "/metrics" | "/health/live" | "/health/ready");
        if !known {
            return text(
                StatusCode::NOT_FOUND,
                "not found: try /metrics, /health/live or /health/ready\n",
            );
        }
        if method != Method::GET && method != Method::HEAD {
            let mut response = text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed: use GET\n",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return response;
        }
        match path {
            "/metrics" => {
                self.metrics.run_upkeep();
                let mut response = Response::new(Full::new(Bytes::from(self.metrics.render())));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static(PROMETHEUS_TEXT));
                response
            }
            "/health/live" => {
                let report = self.health.report();
                let status = if report.live {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, &report)
            }
            _ => {
                let report = self.health.report();
                let status = if report.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                json(status, &report)
            }
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Full<Bytes>> {
    // A report of strings and booleans always serializes.
    let mut body = serde_json::to_vec(value).unwrap_or_default();
    body.push(b'\n');
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints() -> Endpoints {
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        Endpoints {
            metrics: recorder.handle(),
            health: Health::new(),
        }
    }

    #[test]
    fn routes_answer_get_only() {
        let endpoints = endpoints();
        let status = |method: Method, path: &str| endpoints.respond(&method, path).status();
        assert_eq!(status(Method::GET, "/metrics"), StatusCode::OK);
        assert_eq!(status(Method::GET, "/health/live"), StatusCode::OK);
        assert_eq!(status(Method::GET, "/health/ready"), StatusCode::OK);
        assert_eq!(status(Method::GET, "/"), StatusCode::NOT_FOUND);
        assert_eq!(status(Method::GET, "/health"), StatusCode::NOT_FOUND);
        assert_eq!(
            status(Method::POST, "/metrics"),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(Method::DELETE, "/health/ready"),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn not_ready_is_503_and_says_why() {
        let endpoints = endpoints();
        let relay = endpoints.health.component("relay");
        relay.kafka_ok();
        relay.database_failed("could not connect to PostgreSQL at postgres://h/d");
        let response = endpoints.respond(&Method::GET, "/health/ready");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            endpoints.respond(&Method::GET, "/health/live").status(),
            StatusCode::OK
        );
    }
}
