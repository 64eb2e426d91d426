//! `outbox_diesel::registry::SchemaRegistry` against the real registry (the
//! Apicurio Registry of `scripts/services.sh up`, or `SCHEMA_REGISTRY_URL`),
//! directly and through a TLS proxy that checks basic authentication.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use outbox::Outboxed;
use outbox_diesel::registry::{RegistryError, RegistryErrorKind, SchemaRegistry};
use outbox_tests::TestRegistry;
use outbox_tests::registry_proxy::RegistryProxy;
use outbox_tests::secure::{ca_path, other_ca_path, tls_dir};
use serde_json::{Value, json};

fn default_currency() -> String {
    "EUR".to_owned()
}

/// An order over three versions: `currency` comes in version 2 with a
/// default, `note` in version 3.
#[derive(Outboxed)]
#[allow(dead_code)]
#[outbox(topic = "registry_client.orders", route = "orders", versions = [1, 2, 3], avro)]
struct Order {
    id: i64,
    total_cents: i64,
    #[outbox(since = 2, default = default_currency)]
    currency: String,
    #[outbox(since = 3, default)]
    note: Option<String>,
}

/// The proxy's user and password (a fixed test value, looked for in every
/// error text).
const USER: &str = "relay";
const PASSWORD: &str = "pr0xy-p@ss:w/rd";
/// [`PASSWORD`] as a URL writes it.
const PASSWORD_IN_URL: &str = "pr0xy-p%40ss%3Aw%2Frd";

fn avro(version: u32) -> &'static str {
    Order::avro_schema(version).unwrap_or_else(|e| panic!("version {version}: {e}"))
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// `schema` with `change` applied to its field `name`.
fn with_field(schema: &str, name: &str, change: impl FnOnce(&mut Value)) -> String {
    let mut schema = parsed(schema);
    let fields = schema["fields"].as_array_mut().expect("a record's fields");
    let field = fields
        .iter_mut()
        .find(|f| f["name"] == name)
        .unwrap_or_else(|| panic!("no field `{name}`"));
    change(field);
    schema.to_string()
}

fn client(registry: &TestRegistry) -> SchemaRegistry {
    SchemaRegistry::builder(registry.url())
        .build()
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Nothing secret in the error, however it is printed.
fn no_password(err: &RegistryError) {
    for text in [err.to_string(), format!("{err:?}")] {
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains(PASSWORD_IN_URL), "{text}");
    }
}

#[tokio::test]
async fn register_lookup_and_fetch_round_trip() {
    let registry = TestRegistry::new("client_round_trip");
    let subject = registry.subject("orders");
    let client = client(&registry);

    let started = Instant::now();
    let id = client.register(&subject, avro(1)).await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    let again = client.register(&subject, avro(1)).await.unwrap();
    let repeat = started.elapsed();
    eprintln!("register over http://: first {first:?}, repeat {repeat:?}");
    assert_eq!(again, id, "the same text, the same id");
    assert_eq!(client.versions(&subject).await.unwrap(), [1]);

    assert_eq!(client.lookup(&subject, avro(1)).await.unwrap(), Some(id));
    assert_eq!(parsed(&client.schema(id).await.unwrap()), parsed(avro(1)));

    // Not registered: none, under the subject or a subject that does not exist.
    assert_eq!(client.lookup(&subject, avro(2)).await.unwrap(), None);
    let unknown = registry.subject("unknown");
    assert_eq!(client.lookup(&unknown, avro(1)).await.unwrap(), None);
    assert_eq!(client.versions(&unknown).await.unwrap(), Vec::<u32>::new());

    let missing = 2_000_000_000;
    let err = client.schema(missing).await.unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::NotFound, "{err}");
    assert_eq!(
        (err.status(), err.code()),
        (Some(404), Some(40403)),
        "{err}"
    );
    assert_eq!(err.schema_id(), Some(missing));
    assert!(!err.is_retriable());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "fetching schema id {missing} at {}: not found (HTTP 404, error_code 40403)",
            registry.url()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_subject_with_a_slash_and_spaces_is_one_subject() {
    let registry = TestRegistry::new("client_subject_encoding");
    let subject = registry.value_subject(&format!("{}/a b%", registry.subject("odd")));
    let client = client(&registry);
    let id = client.register(&subject, avro(1)).await.unwrap();
    assert_eq!(client.versions(&subject).await.unwrap(), [1]);
    assert_eq!(client.lookup(&subject, avro(1)).await.unwrap(), Some(id));
    assert!(
        registry.subjects(false).contains(&subject),
        "registered under its own name: {subject}"
    );
}

#[tokio::test]
async fn check_compares_with_every_version_under_full_transitive() {
    let registry = TestRegistry::new("client_check");
    let subject = registry.subject("orders");
    registry
        .set_compatibility(&subject, "FULL_TRANSITIVE")
        .unwrap();
    let client = client(&registry);
    assert_eq!(client.level(&subject).await.unwrap(), "FULL_TRANSITIVE");

    // No versions yet: anything goes.
    let empty = client.check(&subject, avro(1)).await.unwrap();
    assert!(empty.compatible && empty.messages.is_empty(), "{empty:?}");
    client.register(&subject, avro(1)).await.unwrap();
    client.register(&subject, avro(2)).await.unwrap();

    // The model's next version is compatible.
    let next = client.check(&subject, avro(3)).await.unwrap();
    assert!(next.compatible, "{next:?}");

    // A field without a default: not readable both ways.
    let mut region = parsed(avro(3));
    region["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "region", "type": "string"}));
    let region = region.to_string();
    let found = client.check(&subject, &region).await.unwrap();
    assert!(!found.compatible, "{found:?}");
    // The registry's reasons, if it gives any (Apicurio 3.3's compatibility
    // endpoint gives none, verbose or not: the 409 below names the field).
    assert!(
        found.messages.is_empty() || found.messages.iter().any(|m| m.contains("region")),
        "{found:?}"
    );
    let err = client.register(&subject, &region).await.unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Incompatible, "{err}");
    assert_eq!((err.status(), err.code()), (Some(409), Some(409)), "{err}");
    assert!(err.message().contains("region"), "{err}");
    assert_eq!(err.subject(), Some(subject.as_str()));
    assert!(!err.is_retriable());
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "registering a schema under subject `{subject}` at {}: incompatible schema \
             (HTTP 409, error_code 409): ",
            registry.url()
        )),
        "{text}"
    );
    assert_eq!(client.versions(&subject).await.unwrap(), [1, 2]);

    // Without `currency`'s default, version 3 reads version 2's messages but
    // not version 1's: the latest alone would pass it, every version does not.
    let no_default = with_field(avro(3), "currency", |field| {
        field.as_object_mut().unwrap().remove("default");
    });
    assert!(
        registry.check(&subject, &no_default).unwrap(),
        "latest only"
    );
    let found = client.check(&subject, &no_default).await.unwrap();
    assert!(!found.compatible, "{found:?}");

    // Not Avro at all.
    let err = client
        .check(&subject, r#"{"type": "recrod"}"#)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Invalid, "{err}");
    assert_eq!(
        (err.status(), err.code()),
        (Some(422), Some(42201)),
        "{err}"
    );
    let err = client
        .register(&subject, r#"{"type": "recrod"}"#)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Invalid, "{err}");
}

#[tokio::test]
async fn the_level_is_the_subjects_else_the_registrys() {
    let registry = TestRegistry::new("client_level");
    let client = client(&registry);
    // Apicurio answers 404 40401 for a subject without versions or level:
    // the client then asks for the registry's level.
    let global = client.level(&registry.subject("none")).await.unwrap();
    assert!(!global.is_empty());
    // A subject with versions and no level of its own: the registry's too.
    let plain = registry.subject("plain");
    client.register(&plain, avro(1)).await.unwrap();
    assert_eq!(client.level(&plain).await.unwrap(), global);
    // Its own, also before its first version.
    let own = registry.subject("own");
    let level = if global == "FORWARD" {
        "BACKWARD"
    } else {
        "FORWARD"
    };
    registry.set_compatibility(&own, level).unwrap();
    assert_eq!(client.level(&own).await.unwrap(), level);
}

#[tokio::test]
async fn nothing_listening_is_unreachable_and_retriable() {
    let port = {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/apis/ccompat/v7");
    let client = SchemaRegistry::builder(&url).build().unwrap();
    let err = client.versions("orders-value").await.unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Unreachable, "{err}");
    assert!(err.is_retriable());
    assert_eq!(err.status(), None);
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "listing the versions of subject `orders-value` at {url}: not reachable: \
             could not connect to 127.0.0.1:{port}: "
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_registry_that_never_answers_times_out() {
    // The kernel completes the handshake for the backlog: the connection is
    // up, and no answer ever comes.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", silent.local_addr().unwrap());
    let timeout = Duration::from_millis(300);
    let client = SchemaRegistry::builder(&url)
        .timeout(timeout)
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.schema(1).await.unwrap_err();
    let elapsed = started.elapsed();
    assert_eq!(err.kind(), RegistryErrorKind::Timeout, "{err}");
    assert!(err.is_retriable());
    assert!(
        elapsed >= timeout && elapsed < timeout * 5,
        "{elapsed:?} for a timeout of {timeout:?}"
    );
    assert!(err.message().contains("300ms"), "{err}");
    // The next request does not wait behind the first.
    let started = Instant::now();
    let err = client.schema(2).await.unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Timeout, "{err}");
    assert!(started.elapsed() < timeout * 5);
}

/// A registry stand-in on a free port: for each connection it reads one
/// request and, when `answer`, answers `[1]` (keep-alive by HTTP/1.1's
/// rules) and then closes the connection anyway, as a server does when an
/// idle connection times out. Returns its URL and the connections it accepted.
fn closing_server(answer: bool) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counted = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
                if line == "\r\n" {
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    break;
                }
            }
            if answer {
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 3\r\n\r\n[1]",
                );
            }
            // Dropped: closed.
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn a_connection_the_registry_closed_is_opened_again() {
    let (url, accepted) = closing_server(true);
    let client = SchemaRegistry::builder(&url).build().unwrap();
    for round in 1..=3 {
        assert_eq!(
            client.versions("orders-value").await.unwrap(),
            [1],
            "round {round}"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_connection_closed_before_the_answer_is_unreachable() {
    let (url, accepted) = closing_server(false);
    let client = SchemaRegistry::builder(&url).build().unwrap();
    let err = client.versions("orders-value").await.unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Unreachable, "{err}");
    assert!(err.is_retriable());
    assert!(
        err.message().starts_with("the connection failed: "),
        "{err}"
    );
    // A new connection, not a resend on it: the first one was not kept alive.
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_url_without_the_apis_base_path_is_named() {
    let registry = TestRegistry::new("client_base_path");
    let root = registry
        .url()
        .split("/apis/")
        .next()
        .expect("a URL")
        .to_owned();
    let client = SchemaRegistry::builder(&root).build().unwrap();
    let err = client.versions("orders-value").await.unwrap_err();
    if registry.url() == root {
        // A registry at the root (Confluent's): nothing to strip.
        assert!(err.kind() == RegistryErrorKind::NotFound, "{err}");
        return;
    }
    // Apicurio's 404 for an unknown path is not the registry's error body.
    assert_eq!(err.kind(), RegistryErrorKind::Protocol, "{err}");
    assert_eq!((err.status(), err.code()), (Some(404), None), "{err}");
    assert!(err.message().contains("/apis/ccompat/v7"), "{err}");
}

#[test]
fn bad_settings_are_config_errors_naming_them() {
    let err = SchemaRegistry::builder("registry:8081")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Config);
    assert_eq!(err.setting(), Some("url"));
    assert_eq!(
        err.to_string(),
        "invalid schema registry setting `url`: `registry:8081` does not start with \
         http:// or https://"
    );
    let err = SchemaRegistry::builder(&format!("https://{USER}:{PASSWORD_IN_URL}@[::1"))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), Some("url"), "{err}");
    no_password(&err);

    let missing = tls_dir().join("no-such-ca.pem");
    let err = SchemaRegistry::builder("https://localhost:8081")
        .ca_file(&missing)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), RegistryErrorKind::Config);
    assert_eq!(err.setting(), Some("ca_file"));
    assert!(
        err.to_string().starts_with(&format!(
            "invalid schema registry setting `ca_file`: could not read {}: ",
            missing.display()
        )),
        "{err}"
    );

    // A certificate where the key should be.
    let err = SchemaRegistry::builder("https://localhost:8081")
        .identity(tls_dir().join("server.pem"), tls_dir().join("ca.pem"))
        .build()
        .unwrap_err();
    assert_eq!(err.setting(), Some("identity"), "{err}");
    assert!(err.message().contains("PKCS#8"), "{err}");
    // The services' certificate and key make an identity.
    SchemaRegistry::builder("https://localhost:8081")
        .identity(tls_dir().join("server.pem"), tls_dir().join("server.key"))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn over_tls_with_basic_auth_through_a_proxy() {
    let registry = TestRegistry::new("client_tls");
    let subject = registry.subject("orders");
    let proxy = RegistryProxy::start(registry.url(), USER, PASSWORD);
    let client = SchemaRegistry::builder(proxy.url())
        .ca_file(ca_path())
        .basic_auth(USER, PASSWORD)
        .build()
        .unwrap();
    assert!(!format!("{client:?}").contains(PASSWORD));

    let started = Instant::now();
    let id = client.register(&subject, avro(1)).await.unwrap();
    let first = started.elapsed();
    let started = Instant::now();
    assert_eq!(client.register(&subject, avro(1)).await.unwrap(), id);
    let repeat = started.elapsed();
    eprintln!("register over https:// (proxy): first {first:?}, repeat {repeat:?}");
    assert_eq!(parsed(&client.schema(id).await.unwrap()), parsed(avro(1)));
    assert_eq!(client.lookup(&subject, avro(1)).await.unwrap(), Some(id));
    assert_eq!(client.versions(&subject).await.unwrap(), [1]);
    // Concurrent requests take turns on the connection.
    let lookups = (0..8).map(|_| {
        let client = client.clone();
        let subject = subject.clone();
        tokio::spawn(async move { client.lookup(&subject, avro(1)).await })
    });
    for lookup in futures::future::join_all(lookups).await {
        assert_eq!(lookup.unwrap().unwrap(), Some(id));
    }
    // One kept-alive connection for all of them.
    assert_eq!((proxy.connections(), proxy.forwarded()), (1, 13));

    // Credentials in the URL work as `basic_auth` does.
    let in_url = proxy
        .url()
        .replace("https://", &format!("https://{USER}:{PASSWORD_IN_URL}@"));
    let from_url = SchemaRegistry::builder(&in_url)
        .ca_file(ca_path())
        .build()
        .unwrap();
    assert_eq!(
        from_url.url(),
        proxy.url(),
        "the URL shown has no credentials"
    );
    assert!(!format!("{from_url:?}").contains(PASSWORD));
    assert_eq!(from_url.lookup(&subject, avro(1)).await.unwrap(), Some(id));
}

#[tokio::test]
async fn a_wrong_password_is_unauthorized_and_not_retriable() {
    let registry = TestRegistry::new("client_wrong_password");
    let proxy = RegistryProxy::start(registry.url(), USER, PASSWORD);
    let subject = registry.subject("orders");
    for client in [
        SchemaRegistry::builder(proxy.url()).basic_auth(USER, "not-the-password"),
        // The right password of the wrong user.
        SchemaRegistry::builder(proxy.url()).basic_auth("other", PASSWORD),
        SchemaRegistry::builder(proxy.url()),
    ] {
        let client = client.ca_file(ca_path()).build().unwrap();
        let err = client.register(&subject, avro(1)).await.unwrap_err();
        assert_eq!(err.kind(), RegistryErrorKind::Unauthorized, "{err}");
        assert_eq!(err.status(), Some(401), "{err}");
        assert!(!err.is_retriable());
        assert!(
            err.to_string().starts_with(&format!(
                "registering a schema under subject `{subject}` at {}: not authorized (HTTP 401",
                proxy.url()
            )),
            "{err}"
        );
        no_password(&err);
    }
    assert_eq!((proxy.refused(), proxy.forwarded()), (3, 0));
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let registry = TestRegistry::new("client_untrusted");
    let proxy = RegistryProxy::start(registry.url(), USER, PASSWORD);
    let in_url = proxy
        .url()
        .replace("https://", &format!("https://{USER}:{PASSWORD_IN_URL}@"));
    for client in [
        SchemaRegistry::builder(&in_url).ca_file(other_ca_path()),
        // The system's CAs alone do not know the test CA either.
        SchemaRegistry::builder(&in_url),
    ] {
        let client = client.build().unwrap();
        let err = client.schema(1).await.unwrap_err();
        assert_eq!(err.kind(), RegistryErrorKind::Tls, "{err}");
        assert!(!err.is_retriable());
        assert!(err.message().contains("certificate"), "{err}");
        assert!(
            err.to_string().starts_with(&format!(
                "fetching schema id 1 at {}: TLS handshake failed: ",
                proxy.url()
            )),
            "{err}"
        );
        no_password(&err);
    }
    assert_eq!(proxy.forwarded(), 0);
}
