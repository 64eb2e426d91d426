//! The TLS/SASL test bench itself: the listeners `scripts/services.sh up`
//! opens accept the settings `outbox_tests::secure` hands out, and refuse
//! what they should, so the product's TLS tests stand on something real.

use std::sync::Mutex;
use std::time::Duration;

use diesel::sql_types::{Bool, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use outbox_tests::secure::{self, SslMode};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};
use rdkafka::{ClientConfig, ClientContext};

const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// librdkafka retries a refused connection until the request times out.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(4);

#[derive(QueryableByName)]
struct Session {
    #[diesel(sql_type = Bool)]
    ssl: bool,
    #[diesel(sql_type = Text)]
    user: String,
}

fn session(url: &str) -> Result<Session, String> {
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    diesel::sql_query(
        "SELECT ssl, current_user::text AS user FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
    )
    .get_result(&mut conn)
    .map_err(|e| e.to_string())
}

/// Keeps librdkafka's error reports: `fetch_metadata` says only "broker
/// transport failure", the cause comes through the client context.
#[derive(Default)]
struct Errors(Mutex<Vec<String>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0.lock().unwrap().push(format!("{error}: {reason}"));
    }
}

impl ProducerContext for Errors {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

fn producer(overrides: &[(&str, &str)]) -> BaseProducer<Errors> {
    let mut config: ClientConfig = secure::kafka_sasl_ssl_config();
    for (key, value) in overrides {
        config.set(*key, *value);
    }
    config
        .create_with_context(Errors::default())
        .expect("SASL_SSL producer")
}

/// The metadata request fails, and librdkafka reports `cause`.
fn assert_refused(overrides: &[(&str, &str)], cause: &str) {
    let producer = producer(overrides);
    let result = producer.client().fetch_metadata(None, REFUSAL_TIMEOUT);
    assert!(result.is_err(), "metadata fetched with {overrides:?}");
    // Error events reach the context when the producer is polled.
    producer.poll(Duration::from_millis(100));
    let errors = producer.context().0.lock().unwrap().join("\n");
    assert!(
        errors.contains(cause),
        "{overrides:?}: expected {cause:?} in:\n{errors}"
    );
}

#[test]
fn kafka_sasl_ssl_listener_accepts_the_test_user() {
    let metadata = producer(&[])
        .client()
        .fetch_metadata(None, METADATA_TIMEOUT)
        .expect("metadata over SASL_SSL");
    let broker = &metadata.brokers()[0];
    let advertised = format!("{}:{}", broker.host(), broker.port());
    assert_eq!(advertised, secure::kafka_sasl_ssl_brokers());
}

#[test]
fn kafka_sasl_ssl_listener_refuses_a_wrong_password() {
    assert_refused(
        &[("sasl.password", "not-the-password")],
        "Authentication failed",
    );
}

#[test]
fn kafka_sasl_ssl_listener_refuses_a_certificate_from_another_ca() {
    let other_ca = secure::other_ca_path();
    let other_ca = other_ca.to_str().expect("UTF-8 path");
    assert_refused(
        &[("ssl.ca.location", other_ca)],
        "certificate verify failed",
    );
}

#[test]
fn postgres_verify_full_session_is_encrypted() {
    let url = secure::database_url_tls(SslMode::VerifyFull);
    let verified = session(&url).unwrap();
    assert!(verified.ssl, "{url}: not encrypted");
    assert_eq!(verified.user, "postgres");

    let plain = session(&secure::database_url_tls(SslMode::Disable)).unwrap();
    assert!(!plain.ssl, "sslmode=disable gave a TLS session");
}

#[test]
fn postgres_tls_only_role_needs_tls_and_an_untrusted_ca_is_refused() {
    let role = secure::tls_only_role();
    let over_tls = session(&secure::database_url_tls_as(role, SslMode::Require)).unwrap();
    assert!(over_tls.ssl);
    assert_eq!(over_tls.user, role);

    let refused = session(&secure::database_url_tls_as(role, SslMode::Disable)).err();
    let refused = refused.expect("the TLS-only role connected without TLS");
    assert!(refused.contains("no encryption"), "{refused}");

    let untrusted = secure::database_url_verify_full_with(&secure::other_ca_path());
    let error = session(&untrusted).err().expect("untrusted CA accepted");
    assert!(error.contains("certificate verify failed"), "{error}");
}
