//! The services script's fault commands, through [`outbox_tests::broker`].
//!
//! On the shared bench: Kafka node 1 stopped (SIGTERM, then SIGKILL) and
//! started again, a producer that lived through it delivering afterwards;
//! PostgreSQL restarted (fast and immediate shutdown). These stop the shared
//! services: this binary holds them and nothing else.
//!
//! On a private three-node cluster of this test's own (whatever the bench
//! runs, so also on CI's one broker): the leader of a partition replicated
//! three times is killed; the leadership moves, and an `acks=all` produce
//! succeeds with two of three replicas in sync; the node then starts again and
//! rejoins.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use outbox_tests::TestKafka;
use outbox_tests::broker::{self, PgShutdown, PrivateCluster, Signal};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};

const METADATA_TIMEOUT: Duration = Duration::from_secs(5);
/// Long enough for a leader change: the dead node's session (9 s) expires first.
const DELIVERY_TIMEOUT_MS: &str = "60000";
const REJOIN_TIMEOUT: Duration = Duration::from_secs(90);

/// The bench's node 1 (its only one, or the first of three) stopped by
/// SIGTERM, then by SIGKILL, each time started again; a producer made before
/// delivers after each restart.
#[test]
fn a_bench_node_stops_and_starts_again() {
    let brokers = broker::bootstrap();
    let kafka = TestKafka::on_brokers(brokers, "cluster_bench_node");
    let topic = kafka.create_topic("restarts", 1);
    let producer = producer(&kafka);
    assert_eq!(send(&producer, &topic, "before"), (0, 0));
    for (round, signal) in [Signal::Term, Signal::Kill].into_iter().enumerate() {
        let started = Instant::now();
        let down = broker::stop_node(1, signal);
        let stopped_in = started.elapsed();
        assert!(!broker::node_answers(1), "node 1 answers after {signal:?}");

        let started = Instant::now();
        down.start();
        let started_in = started.elapsed();
        assert!(
            broker::node_answers(1),
            "node 1 does not answer once started"
        );
        let offset = i64::try_from(round).unwrap() + 1;
        assert_eq!(send(&producer, &topic, "after"), (0, offset));
        eprintln!("node 1, {signal:?}: stopped in {stopped_in:?}, started in {started_in:?}");
    }
}

/// A private three-node cluster: the leader of a partition with three
/// replicas is killed; the produce with acks=all waits for the new leader and
/// succeeds with two replicas in sync; the node starts again and is back in
/// sync. The cluster stops at the end, also when the test fails.
#[test]
fn a_killed_leader_moves_and_acks_all_still_succeeds() {
    let began = Instant::now();
    let cluster = PrivateCluster::start();
    let cluster_started_in = began.elapsed();
    let brokers = cluster.bootstrap();
    let kafka = TestKafka::on_brokers(brokers.clone(), "cluster_leader");
    let topic = ReplicatedTopic::create(&brokers, kafka.unique_name("leader"));
    let probe: BaseConsumer = client_config(&brokers).create().expect("metadata client");
    let before = wait_for(&probe, &topic.name, "three replicas in sync", |p| {
        p.leader >= 1 && p.isr.len() == 3
    });
    assert_eq!(before.replicas.len(), 3, "{before:?}");
    let producer = producer(&kafka);
    assert_eq!(send(&producer, &topic.name, "before"), (0, 0));

    let leader = usize::try_from(before.leader).expect("a node id");
    let killed = Instant::now();
    let down = cluster.stop_node(leader, Signal::Kill);
    assert!(!cluster.node_answers(leader));
    assert_eq!(send(&producer, &topic.name, "during"), (0, 1));
    let delivered_in = killed.elapsed();
    let after = wait_for(&probe, &topic.name, "a new leader", |p| {
        p.leader >= 1 && p.leader != before.leader
    });
    assert_eq!(after.isr.len(), 2, "two of three in sync: {after:?}");
    assert!(!after.isr.contains(&before.leader), "{after:?}");

    let restarted = Instant::now();
    down.start();
    let started_in = restarted.elapsed();
    let rejoined = wait_for(&probe, &topic.name, "the node back in sync", |p| {
        p.isr.len() == 3
    });
    let rejoined_in = restarted.elapsed();
    assert_eq!(send(&producer, &topic.name, "after"), (0, 2));
    eprintln!(
        "private cluster up in {cluster_started_in:?}; leader {} killed: acks=all \
         delivered after {delivered_in:?} by leader {} (in sync {:?}); node {leader} \
         started in {started_in:?}, in sync after {rejoined_in:?} ({:?}); {:?} in all \
         before the cluster stops",
        before.leader,
        after.leader,
        after.isr,
        rejoined.isr,
        began.elapsed()
    );
}

/// Partition 0 of a topic, as metadata tells it.
#[derive(Debug)]
struct Partition {
    leader: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
}

fn partition_zero(probe: &BaseConsumer, topic: &str) -> Option<Partition> {
    let metadata = probe.fetch_metadata(Some(topic), METADATA_TIMEOUT).ok()?;
    let topic = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())?;
    let partition = topic.partitions().iter().find(|p| p.id() == 0)?;
    Some(Partition {
        leader: partition.leader(),
        replicas: partition.replicas().to_vec(),
        isr: partition.isr().to_vec(),
    })
}

fn wait_for(
    probe: &BaseConsumer,
    topic: &str,
    what: &str,
    done: impl Fn(&Partition) -> bool,
) -> Partition {
    let deadline = Instant::now() + REJOIN_TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        last = partition_zero(probe, topic);
        if let Some(partition) = last.take_if(|p| done(p)) {
            return partition;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{topic}/0: no {what} in {REJOIN_TIMEOUT:?}; last seen {last:?}");
}

fn client_config(brokers: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers)
        .set("log_level", "3");
    config
}

fn producer(kafka: &TestKafka) -> FutureProducer {
    kafka
        .producer_config()
        .set("message.timeout.ms", DELIVERY_TIMEOUT_MS)
        .set("log_level", "3")
        .create()
        .expect("producer")
}

/// Sends one record and waits for its acknowledgement: (partition, offset).
fn send(producer: &FutureProducer, topic: &str, value: &str) -> (i32, i64) {
    let record = FutureRecord::to(topic).key("k").payload(value);
    let delivery = futures::executor::block_on(producer.send(record, Duration::ZERO))
        .unwrap_or_else(|(e, _)| panic!("{value:?} to {topic} not delivered: {e}"));
    (delivery.partition, delivery.offset)
}

/// A topic with one partition replicated on all three nodes, deleted at the end.
struct ReplicatedTopic {
    name: String,
    admin: AdminClient<DefaultClientContext>,
}

impl ReplicatedTopic {
    fn create(brokers: &str, name: String) -> Self {
        let admin: AdminClient<DefaultClientContext> =
            client_config(brokers).create().expect("admin client");
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let topic = NewTopic::new(&name, 1, TopicReplication::Fixed(3));
        let results = futures::executor::block_on(admin.create_topics([&topic], &options))
            .unwrap_or_else(|e| panic!("could not create topic {name}: {e}"));
        for result in results {
            result.unwrap_or_else(|(topic, code)| panic!("could not create topic {topic}: {code}"));
        }
        ReplicatedTopic { name, admin }
    }
}

impl Drop for ReplicatedTopic {
    fn drop(&mut self) {
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        if let Err(e) =
            futures::executor::block_on(self.admin.delete_topics(&[&self.name], &options))
        {
            eprintln!("warning: could not delete topic {}: {e}", self.name);
        }
    }
}

#[derive(QueryableByName, Debug, PartialEq)]
struct Server {
    #[diesel(sql_type = Text)]
    started: String,
    #[diesel(sql_type = BigInt)]
    rows: i64,
}

/// PostgreSQL restarted with each shutdown mode: a new server answers, the
/// open session is gone, and what was committed just before is still there
/// (with `synchronous_commit = off`, as the bench had, an immediate restart
/// lost such commits).
#[test]
fn postgres_restarts_fast_and_immediate() {
    let db = outbox_tests::TestDb::new("cluster_pg_restart");
    let mut conn = db.connect();
    conn.batch_execute("CREATE TABLE kept (id bigint PRIMARY KEY)")
        .expect("table");
    for (round, mode) in [PgShutdown::Fast, PgShutdown::Immediate]
        .into_iter()
        .enumerate()
    {
        conn.batch_execute(&format!("INSERT INTO kept VALUES ({round})"))
            .expect("insert");
        let before = server(&mut conn);

        let started = Instant::now();
        broker::restart_postgres(mode);
        let restarted_in = started.elapsed();

        assert!(
            conn.batch_execute("SELECT 1").is_err(),
            "the session opened before the {mode:?} restart still answers"
        );
        conn = PgConnection::establish(db.url()).expect("PostgreSQL answers after the restart");
        let after = server(&mut conn);
        assert_ne!(after.started, before.started, "the server did not restart");
        assert_eq!(after.rows, i64::try_from(round).unwrap() + 1);
        eprintln!("postgres restart {mode:?}: {restarted_in:?}");
    }
}

fn server(conn: &mut PgConnection) -> Server {
    diesel::sql_query(
        "SELECT pg_postmaster_start_time()::text AS started, \
         (SELECT count(*) FROM kept) AS rows",
    )
    .get_result(conn)
    .expect("server facts")
}
