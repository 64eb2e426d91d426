//! Metrics and health over HTTP (`outbox_diesel::serve`), against the real
//! PostgreSQL and Kafka: a relay and a consumer serving `/metrics`,
//! `/health/live` and `/health/ready`, ready only while they reach both
//! services; and `outbox relay --metrics-addr`.
//!
//! The `metrics` recorder is global to this test binary, so each test asserts
//! only on names and its own health, never on a counter's value; each server
//! listens on a port of its own.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel::Connection;
use outbox::kafka::KafkaPublisher;
use outbox::{Event, Message, Payloads};
use outbox_diesel::consumer::{self, Consumer};
use outbox_diesel::serve::{Health, MetricsServer};
use outbox_diesel::{Outbox, Relay};
use outbox_tests::{
    Accept, RunningConsumer, RunningRelay, TestDb, TestKafka, consumer_test_settings,
    relay_test_settings,
};
use serde_json::json;

/// Time a relay or consumer has to become ready, or a probe to see a change
/// (probes run every 5 s; a first fetch on a fresh broker is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(40);

/// An HTTP response: status and body.
#[derive(Debug)]
struct Response {
    status: u16,
    body: String,
}

/// `method path` on the server at `addr`, HTTP/1.1 with `Connection: close`.
fn request(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok(Response {
        status,
        body: body.to_owned(),
    })
}

fn get(addr: SocketAddr, path: &str) -> Response {
    request(addr, "GET", path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"))
}

/// Polls `GET path` until `accept` takes the response; fails the test with the
/// last response after `timeout`.
async fn wait_for(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
    accept: impl Fn(&Response) -> bool,
) -> Response {
    let deadline = Instant::now() + timeout;
    loop {
        let path_owned = path.to_owned();
        let response = tokio::task::spawn_blocking(move || request(addr, "GET", &path_owned))
            .await
            .expect("the request does not panic");
        match response {
            Ok(response) if accept(&response) => return response,
            last if Instant::now() >= deadline => {
                panic!("GET {path} on {addr}: still {last:?} after {timeout:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// A free local port (bound, then released for the server under test).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

fn migrated_db(test: &str) -> TestDb {
    let db = TestDb::new(test);
    outbox_diesel::migrations::run(&mut db.connect()).expect("the migrations run");
    db
}

fn enqueue(db: &TestDb, topic: &str) {
    let payloads = Payloads::new(1, json!({"id": 1})).expect("version 1");
    let message = Message::new(
        Event::Created,
        "health-tests",
        "things",
        topic,
        "1",
        payloads,
    )
    .expect("a valid topic");
    db.connect()
        .transaction(|conn| Outbox::new("health-tests").enqueue_message(conn, &message))
        .expect("enqueue");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_serves_its_metrics_and_is_ready_with_both_services() {
    let db = migrated_db("health_relay_ready");
    let kafka = TestKafka::new("health_relay_ready");
    let topic = kafka.create_topic("events", 1);
    let addr = free_addr();
    let publisher = KafkaPublisher::new(kafka.brokers()).expect("a publisher");
    let relay = relay_test_settings(Relay::builder(db.url(), publisher))
        .serve_metrics(addr)
        .build()
        .expect("the relay builds");
    let running = RunningRelay::spawn(relay);

    let ready = wait_for(addr, "/health/ready", READY_TIMEOUT, |r| r.status == 200).await;
    assert!(ready.body.contains(r#""ready":true"#), "{ready:?}");
    assert!(ready.body.contains(r#""name":"relay""#), "{ready:?}");
    assert_eq!(get(addr, "/health/live").status, 200);

    enqueue(&db, &topic);
    let metrics = wait_for(addr, "/metrics", READY_TIMEOUT, |r| {
        r.body.contains("outbox_relay_published_total")
    })
    .await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains("# TYPE outbox_relay_published_total counter"),
        "{}",
        metrics.body
    );

    assert_eq!(get(addr, "/nothing").status, 404);
    assert_eq!(get(addr, "/health").status, 404);
    let post = request(addr, "POST", "/metrics").expect("POST");
    assert_eq!(post.status, 405, "{post:?}");
    assert_eq!(running.stop().await.published, 1);
    // Stopped: the server went with the relay.
    assert!(request(addr, "GET", "/health/live").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_without_its_database_is_live_but_not_ready_and_says_why() {
    let kafka = TestKafka::new("health_relay_no_db");
    let addr = free_addr();
    let publisher = KafkaPublisher::new(kafka.brokers()).expect("a publisher");
    let relay = relay_test_settings(Relay::builder(
        "postgres://app:secret@127.0.0.1:1/app?connect_timeout=2",
        publisher,
    ))
    .serve_metrics(addr)
    .build()
    .expect("the relay builds");
    let running = RunningRelay::spawn(relay);

    let not_ready = wait_for(addr, "/health/ready", READY_TIMEOUT, |r| {
        r.status == 503 && r.body.contains("could not connect to PostgreSQL")
    })
    .await;
    assert!(
        not_ready
            .body
            .contains("could not connect to PostgreSQL at postgres://app:***@127.0.0.1:1/app"),
        "{not_ready:?}"
    );
    assert!(not_ready.body.contains(r#""live":true"#), "{not_ready:?}");
    assert!(!not_ready.body.contains("secret"), "{not_ready:?}");
    // Kafka is reachable: only the database is named.
    let kafka_ready = wait_for(addr, "/health/ready", READY_TIMEOUT, |r| {
        r.body.contains(r#""kafka":{"ready":true}"#)
    })
    .await;
    assert_eq!(kafka_ready.status, 503);
    let live = get(addr, "/health/live");
    assert_eq!(
        live.status, 200,
        "the relay's loop runs, retrying: {live:?}"
    );
    running.stop().await;
}

/// A TCP forwarder to PostgreSQL that the test can cut: the database goes
/// away for whoever connects through it, without touching the real server.
struct Proxy {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a proxy port");
        let addr = listener.local_addr().expect("its address");
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Proxy { addr, task }
    }

    /// Closes the port and every connection through it.
    fn cut(&self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_is_ready_while_it_reaches_its_database() {
    let db = migrated_db("health_consumer");
    let kafka = TestKafka::new("health_consumer");
    let topic: &'static str = Box::leak(kafka.create_topic("events", 1).into_boxed_str());
    // The proxy forwards to the test database, wherever DATABASE_URL puts it.
    let server = outbox_tests::database_url();
    let host_port = outbox_tests::secure::host_port(&server);
    let postgres: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(host_port)
        .ok()
        .and_then(|mut addrs| addrs.next())
        .unwrap_or_else(|| panic!("`{host_port}` of the database URL is not a host:port"));
    let proxy = Proxy::start(postgres).await;
    let url = db.url().replace(host_port, &proxy.addr.to_string());
    assert_ne!(url, db.url(), "the database URL goes through the proxy");
    let addr = free_addr();
    let pool = consumer::pool(&url, 2).expect("a pool");
    let builder = consumer_test_settings(Consumer::builder(
        kafka.brokers(),
        &kafka.group("health"),
        pool,
    ))
    .controller(Accept::new("things", topic))
    .serve_metrics(addr);
    let running = RunningConsumer::spawn(builder);

    let ready = wait_for(addr, "/health/ready", READY_TIMEOUT, |r| r.status == 200).await;
    assert!(ready.body.contains(r#""name":"consumer""#), "{ready:?}");
    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    // Shown before any partition stops: an alert on it has a series to watch.
    assert!(
        metrics
            .body
            .contains("# TYPE outbox_consumer_stopped_partitions gauge\noutbox_consumer_stopped_partitions 0\n"),
        "{}",
        metrics.body
    );

    proxy.cut();
    let not_ready = wait_for(addr, "/health/ready", READY_TIMEOUT, |r| r.status == 503).await;
    assert!(
        not_ready.body.contains(r#""database":{"ready":false"#),
        "{not_ready:?}"
    );
    assert!(
        not_ready.body.contains(r#""kafka":{"ready":true}"#),
        "{not_ready:?}"
    );
    assert_eq!(
        get(addr, "/health/live").status,
        200,
        "the consumer waits the outage out"
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_reports_every_component_given_its_health() {
    let server = MetricsServer::start("127.0.0.1:0".parse().expect("an address"), Health::new())
        .await
        .expect("the server starts");
    let addr = server.local_addr();
    assert_ne!(addr.port(), 0);
    // Nothing registered: live and ready.
    assert_eq!(get(addr, "/health/ready").status, 200);

    let relay = server.health().component("relay");
    let worker = server.health().component("worker");
    relay.database_ok();
    relay.kafka_ok();
    worker.database_ok();
    let response = get(addr, "/health/ready");
    assert_eq!(response.status, 503);
    assert!(
        response
            .body
            .contains(r#""name":"worker","running":true,"database":{"ready":true},"kafka":{"ready":false,"reason":"not reached yet"}"#),
        "{response:?}"
    );
    worker.kafka_ok();
    assert_eq!(get(addr, "/health/ready").status, 200);
    worker.failed("its loop panicked");
    let dead = get(addr, "/health/live");
    assert_eq!(dead.status, 503);
    assert!(
        dead.body
            .contains(r#""name":"worker","running":false,"failure":"its loop panicked""#),
        "{dead:?}"
    );
    // Restarted in place: the new worker replaces the dead one.
    let restarted = server.health().component("worker");
    assert_eq!(get(addr, "/health/live").status, 200);
    restarted.finished();
    assert_eq!(get(addr, "/health/ready").status, 200);

    // The recorder is installed once; a second server shares it.
    let second = MetricsServer::start("127.0.0.1:0".parse().expect("an address"), Health::new())
        .await
        .expect("a second server starts");
    metrics::counter!("health_tests_shared_total").increment(1);
    assert!(
        get(second.local_addr(), "/metrics")
            .body
            .contains("health_tests_shared_total")
    );
    assert!(
        get(addr, "/metrics")
            .body
            .contains("health_tests_shared_total")
    );

    // A taken address is a clear error.
    let error = MetricsServer::start(addr, Health::new())
        .await
        .expect_err("the address is taken");
    assert_eq!(
        error.to_string(),
        format!("cannot serve metrics and health on {addr}")
    );
    assert!(std::error::Error::source(&error).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_restarted_with_the_same_health_is_live_and_ready_again() {
    let db = migrated_db("health_relay_restart");
    let kafka = TestKafka::new("health_relay_restart");
    let server = MetricsServer::start("127.0.0.1:0".parse().expect("an address"), Health::new())
        .await
        .expect("the server starts");
    let addr = server.local_addr();
    let relay = || {
        let publisher = KafkaPublisher::new(kafka.brokers()).expect("a publisher");
        relay_test_settings(Relay::builder(db.url(), publisher))
            .health(server.health().clone())
            .build()
            .expect("the relay builds")
    };

    let first = RunningRelay::spawn(relay());
    wait_for(addr, "/health/ready", READY_TIMEOUT, |r| r.status == 200).await;
    first.stop().await;
    // Stopped on purpose: it leaves nothing that keeps the process down.
    let after_shutdown = get(addr, "/health/live");
    assert_eq!(after_shutdown.status, 200, "{after_shutdown:?}");
    assert!(
        after_shutdown.body.contains(r#""components":[]"#),
        "{after_shutdown:?}"
    );

    // A relay whose loop died (as a panic marks it): not live until it is
    // restarted under the same name.
    server
        .health()
        .component("relay")
        .failed("its loop panicked");
    assert_eq!(get(addr, "/health/live").status, 503);
    let second = RunningRelay::spawn(relay());
    let ready = wait_for(addr, "/health/ready", READY_TIMEOUT, |r| r.status == 200).await;
    assert_eq!(
        ready.body.matches(r#""name":"relay""#).count(),
        1,
        "the new relay took the dead one's place: {ready:?}"
    );
    assert_eq!(get(addr, "/health/live").status, 200);
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_relay_serves_metrics_and_health_on_metrics_addr() {
    let db = migrated_db("health_cli_relay");
    let kafka = TestKafka::new("health_cli_relay");
    let addr = free_addr();
    let mut child = Command::new(env!("CARGO_BIN_EXE_outbox-cli"))
        .args([
            "--database-url",
            db.url(),
            "relay",
            "--brokers",
            kafka.brokers(),
        ])
        .args(["--metrics-addr", &addr.to_string()])
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the outbox-cli binary runs");
    let child_id = child.id();
    let ready = wait_for(addr, "/health/ready", READY_TIMEOUT, |r| r.status == 200).await;
    assert!(ready.body.contains(r#""name":"relay""#), "{ready:?}");
    let metrics = get(addr, "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("outbox_relay_"), "{metrics:?}");
    // SIGTERM: the relay finishes and exits 0.
    let _ = Command::new("kill")
        .args(["-TERM", &child_id.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("outbox relay did not stop on SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}
