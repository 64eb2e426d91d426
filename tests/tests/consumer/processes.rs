//! Consumers as processes of their own (`consumer-process`, whose controller
//! is written by hand): one killed between its database commits and its
//! offset commit, and two sharing a group while one stops and restarts.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sql_types::Text;
use outbox_tests::TestKafka;
use outbox_tests::process::ChildProcess;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Offset, TopicPartitionList};

use super::support::{
    Env, PARTITIONS, TIMEOUT, applied, assert_applied_once_in_order, count_applied, count_inbox,
    round, users_of, wait_for_members, wait_until,
};

/// A number from the environment variable `name`, or `default`.
pub(crate) fn knob(name: &str, default: i64) -> i64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// The `consumer-process` binary on the test's consumer schema, killed on
/// drop if still running.
pub(crate) struct ConsumerProcess {
    process: ChildProcess,
    name: String,
}

impl ConsumerProcess {
    /// Starts one in `env`'s group; its database sessions are named `name`
    /// (`application_name`), and so are its rows in the apply log.
    pub(crate) fn start(
        env: &Env,
        name: &str,
        settings: &[(&str, &str)],
        apply_delay_ms: u64,
    ) -> Self {
        Self::start_with(env, name, settings, apply_delay_ms, &[])
    }

    /// [`start`](Self::start) with more arguments (`--projection`).
    pub(crate) fn start_with(
        env: &Env,
        name: &str,
        settings: &[(&str, &str)],
        apply_delay_ms: u64,
        arguments: &[&str],
    ) -> Self {
        let url = format!("{}&application_name={name}", env.consumer_db.url());
        let mut command = Command::new(env!("CARGO_BIN_EXE_consumer-process"));
        command
            .args(["--database-url", &url, "--brokers", env.kafka.brokers()])
            .args(["--group", &env.group, "--topic", &env.topic, "--name", name])
            .args(["--apply-delay-ms", &apply_delay_ms.to_string()])
            .args(["--set", &format!("client.id={name}")])
            .arg("--stop-on-stdin-close")
            .args(arguments);
        for (key, value) in settings {
            command.args(["--set", &format!("{key}={value}")]);
        }
        ConsumerProcess {
            process: ChildProcess::start(&format!("consumer-process {name}"), &mut command),
            name: name.to_owned(),
        }
    }

    /// SIGKILL: whatever was in flight is cut where it stands.
    pub(crate) fn kill(self) {
        self.process.kill();
    }

    /// SIGTERM, then its report (what it printed, as numbers by name).
    pub(crate) async fn terminate(self) -> BTreeMap<String, u64> {
        let out = self.process.terminate(TIMEOUT).await;
        let report: BTreeMap<String, u64> = out
            .split_whitespace()
            .filter_map(|pair| pair.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.parse().unwrap_or(u64::MAX)))
            .collect();
        assert!(
            report.contains_key("processed"),
            "consumer-process {} printed {out:?}",
            self.name
        );
        report
    }
}

/// Database sessions named `name`.
pub(crate) fn sessions(conn: &mut PgConnection, name: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        count: i64,
    }
    diesel::sql_query("SELECT count(*) AS count FROM pg_stat_activity WHERE application_name = $1")
        .bind::<Text, _>(name)
        .get_result::<Count>(conn)
        .expect("read pg_stat_activity")
        .count
}

/// The offsets `group` has committed on `topic`, per partition (`None`: none).
pub(crate) fn committed(kafka: &TestKafka, group: &str, topic: &str) -> Vec<Option<i64>> {
    let consumer: BaseConsumer = kafka
        .consumer_config(group)
        .create()
        .expect("a consumer to read offsets");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let offsets = consumer
        .committed_offsets(partitions, Duration::from_secs(30))
        .expect("read committed offsets");
    offsets
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => Some(offset),
            _ => None,
        })
        .collect()
}

/// 3. A consumer process applies part of a backlog and is killed (SIGKILL)
/// before it ever commits an offset: every apply it made is committed in
/// PostgreSQL, none in Kafka. Its successor reads everything again; the inbox
/// turns the re-delivered records into duplicates: nothing applies twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consumer_killed_between_its_commits_and_its_offset_commit_applies_nothing_twice() {
    const KEYS: i64 = 200;
    const ROUNDS: i64 = 3;
    let started = Instant::now();
    let env = Env::new("consumer_killed");
    let mut producer = env.producer();
    let mut total = 0;
    for seq in 0..ROUNDS {
        total += producer.write(&round(1..=KEYS, seq)).len() as i64;
    }
    let relay = env.relay();

    // Offsets stored after each apply would be committed within the hour:
    // the kill comes first.
    let first_name = env.kafka.unique_name("killed");
    let first = ConsumerProcess::start(
        &env,
        &first_name,
        &[("auto.commit.interval.ms", "3600000")],
        5,
    );
    let mut conn = env.consumer_conn();
    wait_until("a third of the backlog is applied", TIMEOUT, || {
        count_applied(&mut conn) >= total / 3
    })
    .await;
    first.kill();
    wait_until("the killed process's sessions are gone", TIMEOUT, || {
        sessions(&mut conn, &first_name) == 0
    })
    .await;
    let applied_before = count_applied(&mut conn);
    assert_eq!(count_inbox(&mut conn), applied_before);
    assert!(
        applied_before < total,
        "killed mid-run: {applied_before} of {total} applied"
    );
    assert_eq!(
        committed(&env.kafka, &env.group, &env.topic),
        vec![None; PARTITIONS as usize],
        "no offset was committed before the kill"
    );

    let second_name = env.kafka.unique_name("successor");
    let second = ConsumerProcess::start(&env, &second_name, &[], 0);
    wait_until("the successor applies the rest", TIMEOUT, || {
        count_inbox(&mut conn) == total
    })
    .await;
    let report = second.terminate().await;
    relay.stop().await;
    eprintln!(
        "killed after {applied_before} of {total} applies; successor: {report:?}; {:?}",
        started.elapsed()
    );

    assert_eq!(report["duplicates"] as i64, applied_before, "{report:?}");
    assert_eq!(
        report["processed"] as i64,
        total - applied_before,
        "{report:?}"
    );
    assert_eq!(report["failed"], 0, "{report:?}");
    let log = applied(&mut conn);
    assert_eq!(log.len() as i64, total);
    let per_key = assert_applied_once_in_order(&log);
    assert!(
        per_key
            .values()
            .all(|seqs| seqs == &(0..ROUNDS).collect::<Vec<_>>())
    );
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
}

/// 7. Per-key order: `OUTBOX_CONSUMER_KEYS` keys (default 1,000) on 4
/// partitions, `OUTBOX_CONSUMER_ROUNDS` messages per key (default 4), two
/// consumer processes in one group; one is stopped mid-run (SIGTERM, or
/// SIGKILL with `OUTBOX_CONSUMER_STOP=kill`) and started again while the
/// other goes on. Every message applies once, each key's messages apply in
/// the order sent, every key ends right, and each process's report counts
/// the applies it committed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_consumer_processes_keep_per_key_order_across_a_restart() {
    let keys = knob("OUTBOX_CONSUMER_KEYS", 1_000);
    let rounds = knob("OUTBOX_CONSUMER_ROUNDS", 4);
    assert!(rounds >= 4, "OUTBOX_CONSUMER_ROUNDS must be at least 4");
    let kill = match std::env::var("OUTBOX_CONSUMER_STOP").as_deref() {
        Err(_) | Ok("term") => false,
        Ok("kill") => true,
        Ok(other) => panic!("OUTBOX_CONSUMER_STOP={other:?}: expected `term` or `kill`"),
    };
    // A minute, or more for more keys.
    let timeout = TIMEOUT.max(Duration::from_millis(5 * (keys * rounds) as u64));
    let started = Instant::now();
    let env = Env::new("consumer_two_processes");
    let names: Vec<String> = ["a", "b", "b_again"]
        .iter()
        .map(|n| env.kafka.unique_name(n))
        .collect();
    // 1 ms of work inside each apply: a stop is likely to find one in flight.
    let start = |name: &str| ConsumerProcess::start(&env, name, &[], 1);
    let a = start(&names[0]);
    let b = start(&names[1]);
    wait_for_members(&env.kafka, &env.group, &[&names[0], &names[1]]).await;
    let relay = env.relay();
    let mut producer = env.producer();
    let mut written = 0;
    let mut write = |seqs: std::ops::Range<i64>| {
        for seq in seqs {
            written += producer.write(&round(1..=keys, seq)).len() as i64;
        }
        written
    };

    // Half-way through the first two rounds, b stops.
    let mut conn = env.consumer_conn();
    let first_half = write(0..2);
    wait_until("half of the first rounds are applied", timeout, || {
        count_applied(&mut conn) >= first_half / 2
    })
    .await;
    let at_stop = count_applied(&mut conn);
    let b_report = if kill {
        b.kill();
        None
    } else {
        Some(b.terminate().await)
    };
    // While a is alone, the next round; b starts again half-way through it.
    let before_restart = write(2..3);
    wait_until("a applies on its own", timeout, || {
        count_applied(&mut conn) >= (first_half + before_restart) / 2
    })
    .await;
    let b_again = start(&names[2]);
    wait_for_members(&env.kafka, &env.group, &[&names[0], &names[2]]).await;
    let total = write(3..rounds);
    wait_until("every message is applied", timeout, || {
        count_inbox(&mut conn) == total
    })
    .await;
    let reports = [
        Some(a.terminate().await),
        b_report,
        Some(b_again.terminate().await),
    ];
    relay.stop().await;
    eprintln!(
        "two processes: {total} messages, {keys} keys; b {} at {at_stop} applies; \
         reports {reports:?}; {:?}",
        if kill { "killed" } else { "stopped" },
        started.elapsed()
    );

    let log = applied(&mut conn);
    assert_eq!(log.len() as i64, total, "each message applied once");
    let per_key = assert_applied_once_in_order(&log);
    assert_eq!(per_key.len() as i64, keys);
    let in_order: Vec<i64> = (0..rounds).collect();
    for (key, seqs) in &per_key {
        assert_eq!(seqs, &in_order, "key {key}");
    }
    assert_eq!(users_of(&mut conn), users_of(&mut producer.conn));
    assert_eq!(count_inbox(&mut conn), total);

    for (name, report) in names.iter().zip(&reports) {
        let applies = log.iter().filter(|row| &row.consumer == name).count() as u64;
        assert!(applies > 0, "{name} applied nothing: {report:?}");
        if let Some(report) = report {
            assert_eq!(report["processed"], applies, "{name}: {report:?}");
            assert_eq!(report["failed"], 0, "{name}: {report:?}");
        }
    }
}
