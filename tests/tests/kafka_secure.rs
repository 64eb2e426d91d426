//! Kafka over TLS and SASL/SCRAM, against the services' `SASL_SSL` listener
//! (`outbox_tests::secure`): the relay, the consumer and `dlq replay` work
//! through it; each wrong setting (password, CA, listener) fails their start
//! checks within seconds, with its cause named and no secret shown; an
//! unreachable broker says whether the host is unknown or the connection
//! refused; a consumer that cannot start logs a handful of lines, not a flood.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Uuid};
use outbox::kafka::{CHECK_TIMEOUT, Cause, ConnectError, KafkaPublisher};
use outbox::{BoxFuture, Context, Controller, Event, HandlerError, Message, Payloads};
use outbox_diesel::consumer::{self, Consumer};
use outbox_diesel::{Outbox, Relay, dead_letter};
use outbox_tests::secure;
use outbox_tests::{
    RunningConsumer, RunningRelay, TestDb, TestKafka, TopicReader, consumer_test_settings,
    kafka_brokers, relay_test_settings,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;

/// A wrong setting must fail the start checks within this (librdkafka
/// reports a refused login or certificate within a second or two; the
/// plaintext client on a TLS port is found out after 2 s of silence), well
/// below the checks' own limit, [`CHECK_TIMEOUT`].
const FAST: Duration = Duration::from_secs(10);

/// An unreachable broker (connection refused, unknown host) must fail the
/// start checks within this: they return as soon as the cause is clear.
const UNREACHABLE_FAST: Duration = Duration::from_secs(5);

/// Long enough for a group join and a record through on two shared cores.
const TIMEOUT: Duration = Duration::from_secs(60);

/// The password the wrong-password case uses.
const WRONG_PASSWORD: &str = "not-the-password";

/// A client setup that cannot work, what it must fail with, and what its
/// message must say.
struct Wrong {
    name: &'static str,
    brokers: String,
    settings: Vec<(String, String)>,
    cause: Cause,
    says: &'static str,
}

fn replaced(settings: &[(String, String)], key: &str, value: &str) -> Vec<(String, String)> {
    settings
        .iter()
        .map(|(k, v)| {
            let v = if k == key { value } else { v.as_str() };
            (k.clone(), v.to_owned())
        })
        .collect()
}

/// Each wrong setting of the issue: password, CA, listener (both ways).
fn wrong_settings() -> Vec<Wrong> {
    let good = secure::kafka_sasl_ssl_settings();
    let other_ca = secure::other_ca_path().display().to_string();
    vec![
        Wrong {
            name: "wrong password",
            brokers: secure::kafka_sasl_ssl_brokers(),
            settings: replaced(&good, "sasl.password", WRONG_PASSWORD),
            cause: Cause::Authentication,
            says: "authentication failed (check `sasl.mechanism`, `sasl.username` and `sasl.password`)",
        },
        Wrong {
            name: "untrusted CA",
            brokers: secure::kafka_sasl_ssl_brokers(),
            settings: replaced(&good, "ssl.ca.location", &other_ca),
            cause: Cause::UntrustedCertificate,
            says: "the broker's certificate is not trusted (set `ssl.ca.location` to the CA that signed it)",
        },
        Wrong {
            name: "plaintext client on the SASL_SSL port",
            brokers: secure::kafka_sasl_ssl_brokers(),
            settings: Vec::new(),
            cause: Cause::ExpectsTls,
            says: "the listener expects TLS",
        },
        Wrong {
            name: "SASL_SSL client on the plaintext port",
            brokers: kafka_brokers(),
            settings: good,
            cause: Cause::NotTls,
            says: "the listener does not speak TLS",
        },
    ]
}

/// Asserts `error` is `wrong`'s, named, fast and without a secret.
#[track_caller]
fn assert_named(wrong: &Wrong, error: &ConnectError, took: Duration) {
    let text = format!("{error}: {}", error.detail());
    eprintln!("{}: {text} ({took:?})", wrong.name);
    assert_eq!(error.cause(), wrong.cause, "{}: {text}", wrong.name);
    assert!(
        text.starts_with(&format!("Kafka at {}: {}", wrong.brokers, wrong.says)),
        "{}: {text}",
        wrong.name
    );
    assert!(took < FAST, "{}: took {took:?}", wrong.name);
    assert_no_secret(&format!("{text} {error:?}"));
}

#[track_caller]
fn assert_no_secret(text: &str) {
    for secret in [secure::kafka_sasl_password().as_str(), WRONG_PASSWORD] {
        assert!(!text.contains(secret), "a password shows: {text}");
    }
}

fn publisher(brokers: &str, settings: &[(String, String)]) -> KafkaPublisher {
    let mut builder = KafkaPublisher::builder(brokers);
    for (key, value) in settings {
        builder = builder.set(key, value);
    }
    builder.build().expect("the settings are valid")
}

#[test]
fn publisher_check_names_each_wrong_setting_within_seconds() {
    for wrong in wrong_settings() {
        let publisher = publisher(&wrong.brokers, &wrong.settings);
        let started = Instant::now();
        let error = publisher
            .check_brokers(CHECK_TIMEOUT)
            .expect_err(wrong.name);
        assert_named(&wrong, &error, started.elapsed());
        // The relay's error type says the same.
        let relay_error = publisher.check_connection(CHECK_TIMEOUT).unwrap_err();
        assert!(
            relay_error.to_string().contains(wrong.says),
            "{relay_error}"
        );
    }
}

#[test]
fn refused_and_unknown_host_read_differently() {
    let cases = [
        (
            "127.0.0.1:1",
            Cause::ConnectionRefused,
            "Kafka at 127.0.0.1:1: connection refused (is a broker listening on that port?): ",
        ),
        (
            "no-such-host.invalid:9092",
            Cause::UnknownHost,
            "Kafka at no-such-host.invalid:9092: unknown host (check the host names of the brokers): ",
        ),
    ];
    for (brokers, cause, starts) in cases {
        let started = Instant::now();
        let error = publisher(brokers, &[])
            .check_brokers(CHECK_TIMEOUT)
            .unwrap_err();
        let text = format!("{error}: {}", error.detail());
        eprintln!("{brokers}: {text}");
        assert_eq!(error.cause(), cause, "{text}");
        assert!(text.starts_with(starts), "{text}");
        assert!(
            started.elapsed() < UNREACHABLE_FAST,
            "{brokers}: took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_check_names_each_wrong_kafka_setting_after_the_database() {
    let db = TestDb::new("secure_relay_check");
    outbox_diesel::migrations::run(&mut db.connect()).expect("migrations run");
    for wrong in wrong_settings() {
        let relay = Relay::builder(db.url(), publisher(&wrong.brokers, &wrong.settings))
            .build()
            .unwrap();
        let started = Instant::now();
        let error = relay.check().await.expect_err(wrong.name);
        let took = started.elapsed();
        let outbox_diesel::Error::Publish(error) = error else {
            panic!("{}: not the publisher's check: {error:?}", wrong.name);
        };
        let text = error.to_string();
        eprintln!("relay check, {}: {text} ({took:?})", wrong.name);
        assert!(
            text.starts_with(&format!("Kafka at {}: {}", wrong.brokers, wrong.says)),
            "{}: {text}",
            wrong.name
        );
        assert!(took < FAST, "{}: took {took:?}", wrong.name);
        assert_no_secret(&format!("{text} {error:?}"));
    }
    let good = Relay::builder(
        db.url(),
        publisher(
            &secure::kafka_sasl_ssl_brokers(),
            &secure::kafka_sasl_ssl_settings(),
        ),
    )
    .build()
    .unwrap();
    good.check()
        .await
        .expect("the database and SASL_SSL brokers pass");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_check_and_run_say_to_run_the_migrations() {
    let lines = outbox_tests::logs::capture();
    let bare = TestDb::new("secure_relay_bare");
    let relay = Relay::builder(bare.url(), publisher(&kafka_brokers(), &[]))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .build()
        .unwrap();
    let error = relay.check().await.unwrap_err();
    assert!(
        matches!(error, outbox_diesel::Error::NotReady { .. }),
        "{error:?}"
    );
    let text = error.to_string();
    eprintln!("{text}");
    let url = outbox_diesel::mask_password(bare.url());
    assert!(
        text.starts_with(&format!("no outbox_messages at {url} (search_path: ")),
        "{text}"
    );
    assert!(text.contains(bare.schema()), "the search_path: {text}");
    assert!(
        text.ends_with("): run `outbox migrations run` first"),
        "{text}"
    );

    // `run` retries, and its log says why (not "cannot connect").
    let running = RunningRelay::spawn(relay);
    let deadline = Instant::now() + Duration::from_secs(10);
    let said = |lines: &Mutex<Vec<u8>>| {
        outbox_tests::logs::text_since(lines, 0)
            .lines()
            .find(|line| line.contains(bare.schema()) && line.contains("relay: "))
            .map(str::to_owned)
    };
    let line = loop {
        if let Some(line) = said(lines) {
            break line;
        }
        assert!(Instant::now() < deadline, "no log line about the relay");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    running.stop().await;
    eprintln!("{line}");
    assert!(
        line.contains("relay: outbox tables missing: run `outbox migrations run`; retrying"),
        "{line}"
    );
    assert!(!line.contains("cannot connect"), "{line}");
}

/// Every client refuses a file setting naming a missing file before
/// librdkafka sees it ("ssl.ca.location failed: error:05880002:x509
/// certificate routines::system lib"), naming the setting, path and cause.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_certificate_file_is_named_by_every_client() {
    let missing = "/nonexistent/ca.pem";
    let says = "Kafka setting `ssl.ca.location`: cannot read /nonexistent/ca.pem: No such file or \
                directory (os error 2)";
    let settings = replaced(
        &secure::kafka_sasl_ssl_settings(),
        "ssl.ca.location",
        missing,
    );
    let brokers = secure::kafka_sasl_ssl_brokers();

    let mut builder = KafkaPublisher::builder(&brokers);
    for (key, value) in &settings {
        builder = builder.set(key, value);
    }
    let error = builder.build().unwrap_err();
    assert_eq!(error.to_string(), says);

    let db = consumer_db("secure_missing_file");
    let error = consumer_on(&db, &brokers, "never-joined", "events", &settings)
        .build()
        .err()
        .expect("refused");
    let outbox_diesel::Error::KafkaClient(outbox::kafka::ClientError::File(file)) = &error else {
        panic!("not a file error: {error:?}");
    };
    assert_eq!(file.setting(), "ssl.ca.location");
    assert_eq!(file.path(), std::path::Path::new(missing));
    assert_eq!(chain(&error), says);

    let error = dead_letter::replay(&brokers, "x.dlq", "never-joined", &settings)
        .await
        .unwrap_err();
    assert_eq!(chain(&error), says);

    let mut config = rdkafka::ClientConfig::new();
    config.set("bootstrap.servers", &brokers);
    for (key, value) in &settings {
        config.set(key, value);
    }
    let started = Instant::now();
    let error = outbox::kafka::check_brokers(&config, "test", CHECK_TIMEOUT).unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "no broker asked"
    );
    assert_eq!(error.cause(), Cause::Settings);
    assert_eq!(error.detail(), says);
}

/// `error` and its causes, as the CLI prints them.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

/// Writes one row per message applied.
struct Applied {
    topics: &'static [&'static str],
}

impl Controller for Applied {
    fn route(&self) -> &str {
        "things"
    }

    fn topics(&self) -> &[&str] {
        self.topics
    }

    fn handles(&self, _: &Event) -> bool {
        true
    }

    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context<'_>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let insert = diesel::sql_query("INSERT INTO applied (message_id) VALUES ($1)")
                .bind::<Uuid, _>(message.id.as_uuid());
            diesel_async::RunQueryDsl::execute(insert, ctx.conn()).await?;
            Ok(())
        })
    }
}

fn applied(topic: &str) -> Applied {
    let topic: &'static str = Box::leak(topic.to_owned().into_boxed_str());
    Applied {
        topics: Box::leak(vec![topic].into_boxed_slice()),
    }
}

/// A consumer schema: migrated, with the `applied` table.
fn consumer_db(test: &str) -> TestDb {
    let db = TestDb::new(test);
    let mut conn = db.connect();
    outbox_diesel::migrations::run(&mut conn).expect("migrations run");
    conn.batch_execute("CREATE TABLE applied (message_id uuid PRIMARY KEY)")
        .expect("the applied table");
    db
}

fn message(topic: &str, key: &str) -> Message {
    let payloads = Payloads::new(1, json!({"id": key})).unwrap();
    Message::new(Event::Created, "tests", "things", topic, key, payloads).expect("valid")
}

/// Sends `message` over the plaintext listener and waits for the ack.
async fn produce(kafka: &TestKafka, topic: &str, message: &Message) {
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    let encoded = message.encode();
    let record = FutureRecord::to(topic)
        .key(&encoded.key[..])
        .payload(&encoded.value[..])
        .headers(outbox::kafka::record_headers(&encoded));
    producer
        .send(record, Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .expect("produced");
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

fn applied_count(conn: &mut PgConnection) -> i64 {
    diesel::sql_query("SELECT count(*) AS count FROM applied")
        .get_result::<Count>(conn)
        .expect("count")
        .count
}

fn consumer_on(
    db: &TestDb,
    brokers: &str,
    group: &str,
    topic: &str,
    settings: &[(String, String)],
) -> outbox_diesel::consumer::ConsumerBuilder {
    let pool = consumer::pool(db.url(), 4).expect("a pool");
    let mut builder =
        consumer_test_settings(Consumer::builder(brokers, group, pool)).controller(applied(topic));
    for (key, value) in settings {
        builder = builder.set(key, value);
    }
    builder
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_publishes_over_sasl_ssl() {
    let db = TestDb::new("secure_relay");
    let mut conn = db.connect();
    outbox_diesel::migrations::run(&mut conn).expect("migrations run");
    let kafka = TestKafka::new("secure_relay");
    let topic = kafka.create_topic("events", 2);
    let sent = message(&topic, "42");
    conn.transaction(|conn| Outbox::new("tests").enqueue_message(conn, &sent))
        .expect("enqueued");

    let publisher = publisher(
        &secure::kafka_sasl_ssl_brokers(),
        &secure::kafka_sasl_ssl_settings(),
    );
    let known = publisher
        .check_brokers(CHECK_TIMEOUT)
        .expect("SASL_SSL works");
    assert!(known.contains(&topic), "{known:?}");
    let relay = RunningRelay::spawn(
        relay_test_settings(Relay::builder(db.url(), publisher))
            .build()
            .unwrap(),
    );
    let mut reader = TopicReader::from_start(&kafka, &topic);
    reader
        .read_until("the message", TIMEOUT, |records| !records.is_empty())
        .await;
    let received = outbox::kafka::decode_record(&reader.records[0]).unwrap();
    assert_eq!(received.id, sent.id);
    let report = relay.stop().await;
    assert_eq!(report.published, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_applies_over_sasl_ssl() {
    let db = consumer_db("secure_consumer");
    let kafka = TestKafka::new("secure_consumer");
    let topic = kafka.create_topic("events", 2);
    let group = kafka.group("secure");
    let builder = consumer_on(
        &db,
        &secure::kafka_sasl_ssl_brokers(),
        &group,
        &topic,
        &secure::kafka_sasl_ssl_settings(),
    );
    let checked = builder.build().unwrap();
    checked.check().await.expect("the consumer's check passes");
    let consumer = RunningConsumer::start("the consumer", |shutdown| checked.run(shutdown));
    produce(&kafka, &topic, &message(&topic, "1")).await;
    produce(&kafka, &topic, &message(&topic, "2")).await;
    let mut conn = db.connect();
    let deadline = Instant::now() + TIMEOUT;
    while applied_count(&mut conn) < 2 {
        consumer.assert_running();
        assert!(Instant::now() < deadline, "not applied within {TIMEOUT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = consumer.stop().await;
    assert_eq!(report.processed, 2, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_check_and_run_fail_fast_for_each_wrong_setting() {
    let db = consumer_db("secure_consumer_wrong");
    let kafka = TestKafka::new("secure_consumer_wrong");
    let topic = kafka.create_topic("events", 1);
    let group = kafka.group("wrong");
    for wrong in wrong_settings() {
        let consumer = consumer_on(&db, &wrong.brokers, &group, &topic, &wrong.settings)
            .build()
            .unwrap();
        let started = Instant::now();
        let error = consumer.check().await.expect_err(wrong.name);
        let outbox_diesel::Error::KafkaConnect(error) = error else {
            panic!("{}: not a Kafka connect error: {error:?}", wrong.name);
        };
        assert_named(&wrong, &error, started.elapsed());

        // `run` refuses to start the same way, instead of retrying forever.
        let started = Instant::now();
        let error = tokio::time::timeout(FAST, consumer.run(std::future::pending()))
            .await
            .unwrap_or_else(|_| panic!("{}: run did not return within {FAST:?}", wrong.name))
            .expect_err(wrong.name);
        let outbox_diesel::Error::KafkaConnect(error) = error else {
            panic!("{}: not a Kafka connect error: {error:?}", wrong.name);
        };
        assert_named(&wrong, &error, started.elapsed());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_check_says_to_run_the_migrations_and_names_missing_topics() {
    let kafka = TestKafka::new("secure_consumer_setup");
    let topic = kafka.create_topic("events", 1);
    let group = kafka.group("setup");

    let bare = TestDb::new("secure_consumer_bare");
    let error = consumer_on(&bare, &kafka_brokers(), &group, &topic, &[])
        .database_name(bare.url())
        .build()
        .unwrap()
        .check()
        .await
        .unwrap_err()
        .to_string();
    eprintln!("{error}");
    assert!(
        error.starts_with("no outbox_inbox, outbox_stopped_partitions, outbox_messages, outbox_projection_positions at "),
        "{error}"
    );
    assert!(error.contains(bare.schema()), "the search_path: {error}");
    assert!(
        error.ends_with(": run `outbox migrations run` first"),
        "{error}"
    );

    let db = consumer_db("secure_consumer_topics");
    let missing = kafka.unique_name("missing");
    let error = consumer_on(&db, &kafka_brokers(), &group, &missing, &[])
        .build()
        .unwrap()
        .check()
        .await
        .unwrap_err()
        .to_string();
    eprintln!("{error}");
    assert!(
        error.starts_with(&format!(
            "no topic {missing} at Kafka {}: create it first (`outbox topics create`)",
            kafka_brokers()
        )),
        "{error}"
    );

    // Unreachable database: named (password masked), with the driver's cause.
    let url = "postgres://u:secret@127.0.0.1:1/x";
    let pool = consumer::pool(url, 1).unwrap();
    let error = Consumer::builder(&kafka_brokers(), &group, pool)
        .controller(applied(&topic))
        .database_name(url)
        .build()
        .unwrap()
        .check()
        .await
        .unwrap_err();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    eprintln!("{text}");
    assert!(
        text.starts_with("the consumer's database is not reachable: "),
        "{text}"
    );
    assert_eq!(
        text.matches("postgres://u:***@127.0.0.1:1/x").count(),
        1,
        "named once: {text}"
    );
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(!text.contains("secret"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlq_replay_over_sasl_ssl_and_its_wrong_password() {
    let kafka = TestKafka::new("secure_dlq");
    let topic = kafka.create_topic("orders", 1);
    let dlq = kafka.create_topic("orders_dlq", 1);
    let sent = message(&topic, "7");
    let encoded = sent.encode();
    let headers = dead_letter::dead_letter_headers(
        Some(&outbox::kafka::record_headers(&encoded)),
        &dead_letter::Failure {
            topic: &topic,
            partition: 0,
            offset: 0,
            group: "billing",
            kind: dead_letter::KIND_HANDLER,
            error: "boom",
            attempts: 1,
        },
    );
    let producer: FutureProducer = kafka.producer_config().create().unwrap();
    producer
        .send(
            FutureRecord::to(&dlq)
                .key(&encoded.key[..])
                .payload(&encoded.value[..])
                .headers(headers),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();

    let group = kafka.group("replay");
    let brokers = secure::kafka_sasl_ssl_brokers();
    let settings = secure::kafka_sasl_ssl_settings();
    let report = dead_letter::replay(&brokers, &dlq, &group, &settings)
        .await
        .expect("replayed over SASL_SSL");
    assert_eq!(report.replayed, 1, "{report:?}");
    let mut reader = TopicReader::from_start(&kafka, &topic);
    reader
        .read_until("the replayed record", TIMEOUT, |records| {
            !records.is_empty()
        })
        .await;
    assert_eq!(
        outbox::kafka::decode_record(&reader.records[0]).unwrap().id,
        sent.id
    );

    let wrong = &wrong_settings()[0];
    let started = Instant::now();
    let error = dead_letter::replay(&wrong.brokers, &dlq, &group, &wrong.settings)
        .await
        .unwrap_err();
    let outbox_diesel::Error::KafkaConnect(error) = error else {
        panic!("not a Kafka connect error: {error:?}");
    };
    assert_named(wrong, &error, started.elapsed());
}

/// A consumer whose brokers do not answer (a TLS client on the plaintext
/// port, retried by librdkafka many times a second) fails its start with the
/// cause, and logs a handful of warnings, not one per retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_whose_brokers_refuse_it_logs_a_handful_of_lines() {
    let lines = outbox_tests::logs::capture();
    let db = consumer_db("secure_consumer_quiet");
    let kafka = TestKafka::new("secure_consumer_quiet");
    let topic = kafka.create_topic("events", 1);
    // Brokers named in a way no other test of this binary uses, to pick this
    // test's lines out.
    let brokers = format!(
        "localhost:{}",
        secure::kafka_sasl_ssl_brokers().rsplit(':').next().unwrap()
    );
    let settings = replaced(
        &secure::kafka_sasl_ssl_settings(),
        "sasl.password",
        WRONG_PASSWORD,
    );
    let started = Instant::now();
    let mut attempts = 0;
    // Restarted for ~5 s, as a supervisor would restart it.
    while started.elapsed() < Duration::from_secs(5) {
        attempts += 1;
        let consumer = consumer_on(&db, &brokers, &kafka.group("quiet"), &topic, &settings)
            .build()
            .unwrap();
        let error = consumer.run(std::future::pending()).await.unwrap_err();
        assert!(
            error.to_string().contains("authentication failed"),
            "{error}"
        );
    }
    let text = outbox_tests::logs::text_since(lines, 0);
    let ours: Vec<&str> = text
        .lines()
        .filter(|line| {
            line.contains(&brokers) && (line.contains(" WARN ") || line.contains("ERROR"))
        })
        .collect();
    eprintln!(
        "{attempts} starts, {} lines:\n{}",
        ours.len(),
        ours.join("\n")
    );
    assert!(attempts >= 3, "each start failed fast: {attempts}");
    // The refused login once, said by whichever client met it first; its
    // repeats (every client, every start) summarised.
    assert!(
        (1..=3).contains(&ours.len()),
        "{} warn lines for {attempts} starts:\n{}",
        ours.len(),
        ours.join("\n")
    );
    assert_no_secret(&text);
}
