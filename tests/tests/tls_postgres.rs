//! PostgreSQL over TLS, against the services script's cluster (`ssl = on`, a
//! certificate from the test CA for `localhost` and `127.0.0.1`): the
//! diesel-async connection and pool (`outbox_diesel::establish`, `pool`) and
//! sync Diesel (libpq) with each `sslmode`, the failures (an untrusted CA, a
//! host name mismatch, a TLS-only role without TLS), and a relay publishing
//! through a `verify-full` URL.

use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Bool;
use diesel_async::AsyncPgConnection;
use outbox::kafka::KafkaPublisher;
use outbox::{Event, Message, Payloads};
use outbox_diesel::schema::outbox_messages;
use outbox_diesel::{Outbox, Relay};
use outbox_tests::secure::{
    self, SslMode, TLS_ONLY_ROLE, database_url_tls, database_url_tls_as,
    database_url_verify_full_with,
};
use outbox_tests::{
    RunningRelay, TestDb, TestKafka, TopicReader, database_url, header, relay_test_settings,
};

/// A failure to connect must come within this, never after a retry loop.
const FAIL_FAST: Duration = Duration::from_secs(5);

#[derive(QueryableByName)]
struct Ssl {
    #[diesel(sql_type = Bool)]
    ssl: bool,
}

const SESSION_SSL: &str = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()";

async fn is_encrypted(conn: &mut AsyncPgConnection) -> bool {
    let row: Ssl = diesel_async::RunQueryDsl::get_result(diesel::sql_query(SESSION_SSL), conn)
        .await
        .expect("read pg_stat_ssl");
    row.ssl
}

fn is_encrypted_sync(conn: &mut PgConnection) -> bool {
    let row: Ssl = diesel::sql_query(SESSION_SSL)
        .get_result(conn)
        .expect("read pg_stat_ssl");
    row.ssl
}

async fn connect(url: &str) -> AsyncPgConnection {
    outbox_diesel::establish(url)
        .await
        .unwrap_or_else(|e| panic!("{}", chain(&e)))
}

/// Whether a connection from a fresh pool of `url` is encrypted.
async fn pooled_is_encrypted(url: &str) -> bool {
    let pool = outbox_diesel::pool(url, 1).expect("a pool");
    let mut conn = pool.get().await.unwrap_or_else(|e| panic!("{}", chain(&e)));
    is_encrypted(&mut conn).await
}

/// `error` and its causes on one line, as the CLI and the logs print them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The connection error of `url` and how long it took to come.
async fn refused(url: &str) -> (String, Duration) {
    let started = Instant::now();
    match outbox_diesel::establish(url).await {
        Ok(_) => panic!("{url} connected; it should have been refused"),
        Err(error) => (chain(&error), started.elapsed()),
    }
}

#[tokio::test]
async fn verify_full_encrypts_the_connection_and_the_pool() {
    let url = database_url_tls(SslMode::VerifyFull);
    assert!(is_encrypted(&mut connect(&url).await).await);
    assert!(pooled_is_encrypted(&url).await);
}

#[tokio::test]
async fn require_encrypts_without_checking_the_certificate() {
    let url = database_url_tls(SslMode::Require);
    assert!(!url.contains("sslrootcert"), "{url}");
    assert!(is_encrypted(&mut connect(&url).await).await);
    assert!(pooled_is_encrypted(&url).await);
}

#[tokio::test]
async fn require_with_a_root_certificate_checks_the_chain_as_libpq_does() {
    let untrusted = format!(
        "{}&sslrootcert={}",
        database_url_tls(SslMode::Require),
        secure::other_ca_path().display()
    );
    let (error, _) = refused(&untrusted).await;
    assert!(error.contains("certificate verify failed"), "{error}");
    let trusted = format!(
        "{}&sslrootcert={}",
        database_url_tls(SslMode::Require),
        secure::ca_path().display()
    );
    assert!(is_encrypted(&mut connect(&trusted).await).await);
}

#[tokio::test]
async fn disable_keeps_the_plaintext_path() {
    let url = database_url_tls(SslMode::Disable);
    assert!(!is_encrypted(&mut connect(&url).await).await);
    assert!(!pooled_is_encrypted(&url).await);
}

#[tokio::test]
async fn prefer_is_the_default_and_takes_tls_when_the_server_offers_it() {
    secure::ensure_postgres_tls();
    let url = database_url();
    assert!(!url.contains("sslmode"), "DATABASE_URL sets sslmode: {url}");
    assert!(is_encrypted(&mut connect(&url).await).await);
}

#[test]
fn sync_diesel_honours_sslmode() {
    let mut conn = PgConnection::establish(&database_url_tls(SslMode::VerifyFull))
        .expect("a verify-full libpq connection");
    assert!(is_encrypted_sync(&mut conn));
    let mut conn = PgConnection::establish(&database_url_tls(SslMode::Disable))
        .expect("a plaintext libpq connection");
    assert!(!is_encrypted_sync(&mut conn));

    let untrusted = database_url_verify_full_with(&secure::other_ca_path());
    let started = Instant::now();
    let error = PgConnection::establish(&untrusted)
        .err()
        .expect("an untrusted certificate is refused")
        .to_string();
    assert!(started.elapsed() < FAIL_FAST, "{:?}", started.elapsed());
    assert!(error.contains("certificate verify failed"), "{error}");
}

#[tokio::test]
async fn an_untrusted_certificate_fails_fast_with_the_cause_once() {
    let url = database_url_verify_full_with(&secure::other_ca_path());
    let (error, took) = refused(&url).await;
    assert!(took < FAIL_FAST, "took {took:?}");
    let expected_start = format!(
        "could not connect to PostgreSQL at {}: TLS: certificate verify failed (",
        outbox_diesel::mask_password(&url)
    );
    assert!(error.starts_with(&expected_start), "{error}");
    assert_eq!(
        error.matches("certificate verify failed").count(),
        1,
        "{error}"
    );
    assert!(!error.contains("error performing TLS handshake"), "{error}");

    // The pool says the same, naming the URL too.
    let pool = outbox_diesel::pool(&url, 1).expect("a pool");
    let started = Instant::now();
    let error = chain(&pool.get().await.err().expect("the pool refuses"));
    assert!(started.elapsed() < FAIL_FAST);
    assert!(error.contains(&expected_start), "{error}");
}

/// The certificate names `localhost` and `127.0.0.1`: reach the server at
/// 127.0.0.1 (`hostaddr`) under another name (`host`), the name TLS checks.
#[tokio::test]
async fn a_host_name_mismatch_fails_under_verify_full_only() {
    let url = database_url_tls(SslMode::VerifyFull);
    assert!(
        url.contains("@localhost:"),
        "DATABASE_URL_TLS is not on localhost: {url}"
    );
    let renamed = format!(
        "{}&hostaddr=127.0.0.1",
        url.replacen("@localhost:", "@outbox-db.invalid:", 1)
    );
    let (error, took) = refused(&renamed).await;
    assert!(took < FAIL_FAST, "took {took:?}");
    assert!(
        error.contains("TLS: certificate verify failed (hostname mismatch)"),
        "{error}"
    );
    let sync_error = PgConnection::establish(&renamed)
        .err()
        .expect("libpq refuses the name too")
        .to_string();
    assert!(
        sync_error.contains("does not match host name"),
        "{sync_error}"
    );

    // verify-ca checks the chain, not the name.
    let chain_only = renamed.replace("sslmode=verify-full", "sslmode=verify-ca");
    assert!(is_encrypted(&mut connect(&chain_only).await).await);
}

#[tokio::test]
async fn the_tls_only_role_needs_tls() {
    let (error, took) = refused(&database_url_tls_as(TLS_ONLY_ROLE, SslMode::Disable)).await;
    assert!(took < FAIL_FAST, "took {took:?}");
    assert!(error.contains("no encryption"), "{error}");
    assert!(error.contains(TLS_ONLY_ROLE), "{error}");

    let url = database_url_tls_as(TLS_ONLY_ROLE, SslMode::Require);
    assert!(is_encrypted(&mut connect(&url).await).await);
    // allow: plaintext first, then TLS once the server refuses plaintext.
    let url = url.replace("sslmode=require", "sslmode=allow");
    assert!(is_encrypted(&mut connect(&url).await).await);
}

#[tokio::test]
async fn key_value_connection_strings_take_the_tls_settings_too() {
    let url = database_url_tls(SslMode::VerifyFull);
    let (port, dbname) = url
        .split_once("@localhost:")
        .and_then(|(_, rest)| rest.split_once('/'))
        .and_then(|(port, rest)| Some((port, rest.split_once('?')?.0)))
        .unwrap_or_else(|| panic!("no port and database in {url}"));
    let conninfo = format!(
        "host=localhost port={port} user={TLS_ONLY_ROLE} dbname={dbname} \
         sslmode = 'verify-full' sslrootcert='{}'",
        secure::ca_path().display()
    );
    assert!(is_encrypted(&mut connect(&conninfo).await).await);
}

/// Settings only libpq knows: taken out when they ask for what is done anyway,
/// refused by name otherwise (sync Diesel, through libpq, still reads them).
#[tokio::test]
async fn libpq_only_settings_are_named_when_not_supported() {
    let url = database_url_tls(SslMode::VerifyFull);
    let same_anyway = format!("{url}&gssencmode=disable&sslsni=1&sslcompression=0");
    assert!(is_encrypted(&mut connect(&same_anyway).await).await);

    let with_crl = format!("{url}&sslcrl=/etc/ssl/db.crl&password=hunter22");
    let (error, took) = refused(&with_crl).await;
    assert!(took < FAIL_FAST, "took {took:?}");
    assert!(
        error.ends_with(
            "password=***: invalid `sslcrl`: a libpq setting the async connections \
             (tokio-postgres) do not support: remove it from the connection string"
        ),
        "{error}"
    );
    assert!(!error.contains("hunter22"), "{error}");
}

/// A password in a `key=value` string, quoted with a space, never shows in
/// the error (the server refuses the untrusted certificate first).
#[tokio::test]
async fn a_quoted_key_value_password_is_masked_in_errors() {
    let url = database_url_tls(SslMode::VerifyFull);
    let (host, port) = secure::host_port(&url)
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("no port in {url}"));
    let conninfo = format!(
        "host={host} port={port} password = 'my secret' sslmode=verify-full sslrootcert='{}'",
        secure::other_ca_path().display()
    );
    let (error, _) = refused(&conninfo).await;
    assert!(error.contains("password = ***"), "{error}");
    assert!(!error.contains("secret"), "{error}");
    assert!(error.contains("certificate verify failed"), "{error}");
}

#[tokio::test]
async fn a_relay_publishes_through_a_verify_full_url() {
    let db = TestDb::new("tls_relay");
    let mut conn = db.connect();
    outbox_diesel::migrations::run(&mut conn).expect("the outbox migrations run");
    let kafka = TestKafka::new("tls_relay");
    let topic = kafka.create_topic("events", 2);
    let mut reader = TopicReader::from_start(&kafka, &topic);

    let outbox = Outbox::new("tls-tests");
    conn.transaction(|conn| {
        for n in 0..3 {
            let message = Message::new(
                Event::Created,
                "tls-tests",
                "things",
                &topic,
                n.to_string(),
                Payloads::new(1, serde_json::json!({ "n": n })).expect("version 1"),
            )?;
            outbox.enqueue_message(conn, &message)?;
        }
        Ok::<_, outbox_diesel::Error>(())
    })
    .expect("enqueue commits");

    let url = format!(
        "{}&options=-c%20search_path%3D{}",
        database_url_tls(SslMode::VerifyFull),
        db.schema()
    );
    let publisher = KafkaPublisher::new(kafka.brokers()).expect("a publisher");
    let relay = relay_test_settings(Relay::builder(&url, publisher))
        .build()
        .expect("the relay builds");
    let relay = RunningRelay::spawn(relay);
    reader
        .read_until("the 3 messages", Duration::from_secs(60), |records| {
            records.len() >= 3
        })
        .await;
    let report = relay.stop().await;
    assert_eq!(report.published, 3, "{report:?}");
    let producers: Vec<Option<String>> = reader.records.iter().map(|r| header(r, "from")).collect();
    assert_eq!(producers, vec![Some("tls-tests".to_owned()); 3]);
    let left: i64 = outbox_messages::table
        .count()
        .get_result(&mut conn)
        .expect("count outbox_messages");
    assert_eq!(left, 0);
}
