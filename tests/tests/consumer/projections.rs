//! Projections: consumers whose positions live in their database, as
//! processes of their own (`consumer-process --projection`): killed with
//! SIGKILL over and over, two through rebalances, and rebuilt from the
//! earliest records (interrupted, then run again).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use outbox::{Context, Event, HandlerError, message_controller};
use outbox_diesel::consumer::Projection;
use outbox_diesel::schema::outbox_projection_positions as pp;

use super::processes::{ConsumerProcess, committed, knob, sessions};
use super::support::{
    Env, OnTopic, PARTITIONS, RunningConsumer, TIMEOUT, User, applied,
    assert_applied_once_in_order, count_applied, count_inbox, round, users, users_of,
    wait_for_members, wait_until,
};

/// Stored positions of `projection`: `next_offset` per partition.
fn positions(conn: &mut PgConnection, projection: &str) -> BTreeMap<i32, (i64, Option<i64>)> {
    pp::table
        .filter(pp::projection.eq(projection))
        .select((pp::kafka_partition, pp::next_offset, pp::replay_until))
        .load::<(i32, i64, Option<i64>)>(conn)
        .expect("read positions")
        .into_iter()
        .map(|(partition, next, until)| (partition, (next, until)))
        .collect()
}

/// Whether a rebuild of `projection` started (its positions have an end)
/// and every partition has re-applied up to it.
fn rebuilt(conn: &mut PgConnection, projection: &str) -> bool {
    let stored = positions(conn, projection);
    stored.values().any(|(_, until)| until.is_some())
        && stored
            .values()
            .all(|(next, until)| until.is_none_or(|until| *next >= until))
}

/// The high watermark of each partition of `env`'s topic.
fn high_watermarks(env: &Env) -> BTreeMap<i32, i64> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let consumer: BaseConsumer = env
        .kafka
        .consumer_config(&env.group)
        .create()
        .expect("a consumer to read watermarks");
    (0..PARTITIONS)
        .map(|partition| {
            let (_, high) = consumer
                .fetch_watermarks(&env.topic, partition, Duration::from_secs(30))
                .expect("watermarks");
            (partition, high)
        })
        .collect()
}

/// Starts a projection process of `env`'s group; Kafka offsets are never
/// committed (an hour's interval): only the positions say where it stands.
fn projection(env: &Env, name: &str, apply_delay_ms: u64) -> ConsumerProcess {
    ConsumerProcess::start_with(
        env,
        name,
        &[("auto.commit.interval.ms", "3600000")],
        apply_delay_ms,
        &["--projection"],
    )
}

/// Every record applied once, in order per partition and per key, with no
/// inbox row; the positions at the high watermarks; the consumer's table
/// equal to the producer's.
fn assert_projected_once(env: &Env, producer: &mut PgConnection, total: i64, rounds: i64) {
    let mut conn = env.consumer_conn();
    let log = applied(&mut conn);
    assert_eq!(log.len() as i64, total, "each record applied once");
    let per_key = assert_applied_once_in_order(&log);
    let in_order: Vec<i64> = (0..rounds).collect();
    for (key, seqs) in &per_key {
        assert_eq!(seqs, &in_order, "key {key}");
    }
    assert_eq!(
        count_inbox(&mut conn),
        0,
        "a projection writes no inbox row"
    );
    let stored: BTreeMap<i32, i64> = positions(&mut conn, &env.group)
        .into_iter()
        .map(|(partition, (next, _))| (partition, next))
        .collect();
    assert_eq!(
        stored,
        high_watermarks(env),
        "positions at the high watermarks"
    );
    assert_eq!(users_of(&mut conn), users_of(producer));
}

/// A projection process killed with SIGKILL many times
/// (`OUTBOX_PROJECTION_KILLS`, default 6) while it applies a backlog, Kafka
/// offsets never committed: each successor seeks to the positions its
/// predecessors' transactions stored, so every record is applied exactly
/// once, with no inbox row.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projection_killed_many_times_applies_every_record_once() {
    let kills = knob("OUTBOX_PROJECTION_KILLS", 6);
    const KEYS: i64 = 300;
    const ROUNDS: i64 = 8;
    let started = Instant::now();
    let env = Env::new("projection_killed");
    let mut producer = env.producer();
    let mut total = 0;
    for seq in 0..ROUNDS {
        total += producer.write(&round(1..=KEYS, seq)).len() as i64;
    }
    let relay = env.relay();
    let mut conn = env.consumer_conn();
    let mut at_kills = Vec::new();
    for kill in 0..kills {
        let name = env.kafka.unique_name(&format!("killed{kill}"));
        let before = count_applied(&mut conn);
        // 10 ms inside each apply: a kill is likely to cut one, and
        // finds the backlog not yet done.
        let process = projection(&env, &name, 10);
        let step = (total / (kills + 2)).max(1);
        wait_until("the process applies its share", TIMEOUT, || {
            count_applied(&mut conn) >= (before + step).min(total)
        })
        .await;
        process.kill();
        wait_until("the killed process's sessions are gone", TIMEOUT, || {
            sessions(&mut conn, &name) == 0
        })
        .await;
        at_kills.push(count_applied(&mut conn));
    }
    // Batches commit up to 100 records at once: the last kills may come
    // after everything is applied; most must not.
    let mid_run = at_kills.iter().filter(|applied| **applied < total).count() as i64;
    assert!(
        mid_run >= kills - 1,
        "killed mid-run only {mid_run} times: {at_kills:?} of {total}"
    );
    assert_eq!(
        committed(&env.kafka, &env.group, &env.topic),
        vec![None; PARTITIONS as usize],
        "no Kafka offset was ever committed"
    );
    let last = projection(&env, &env.kafka.unique_name("last"), 0);
    wait_until("the last process applies the rest", TIMEOUT, || {
        count_applied(&mut conn) == total
    })
    .await;
    let report = last.terminate().await;
    relay.stop().await;
    eprintln!(
        "projection killed {kills} times at {at_kills:?} of {total} applies; last: {report:?}; {:?}",
        started.elapsed()
    );
    assert_eq!(report["failed"], 0, "{report:?}");
    assert_projected_once(&env, &mut producer.conn, total, ROUNDS);
}

/// Two projection processes in one group; one is killed mid-run and another
/// takes its place: through the rebalances every record is applied once, in
/// order per key, and the positions end at the high watermarks. Then a
/// rebuild while both run re-applies everything once more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_projection_processes_through_rebalances() {
    const KEYS: i64 = 400;
    const ROUNDS: i64 = 4;
    let env = Env::new("projection_two");
    let names: Vec<String> = ["a", "b", "b_again"]
        .iter()
        .map(|n| env.kafka.unique_name(n))
        .collect();
    let a = projection(&env, &names[0], 1);
    let b = projection(&env, &names[1], 1);
    wait_for_members(&env.kafka, &env.group, &[&names[0], &names[1]]).await;
    let relay = env.relay();
    let mut producer = env.producer();
    let mut conn = env.consumer_conn();
    let mut total = 0;
    for seq in 0..2 {
        total += producer.write(&round(1..=KEYS, seq)).len() as i64;
    }
    wait_until("half of the first rounds are applied", TIMEOUT, || {
        count_applied(&mut conn) >= total / 2
    })
    .await;
    b.kill();
    total += producer.write(&round(1..=KEYS, 2)).len() as i64;
    let b_again = projection(&env, &names[2], 1);
    wait_for_members(&env.kafka, &env.group, &[&names[0], &names[2]]).await;
    total += producer.write(&round(1..=KEYS, 3)).len() as i64;
    wait_until("every record is applied", TIMEOUT, || {
        count_applied(&mut conn) == total
    })
    .await;
    // Rebuilt while both run: one of them does it, the other reads its
    // positions again when it sees the rebuild, its idle partitions too.
    assert!(Projection::request_rebuild(&mut conn, &env.group).expect("request"));
    wait_until("the rebuild resets and catches up", TIMEOUT, || {
        rebuilt(&mut conn, &env.group) && count_applied(&mut conn) == total
    })
    .await;
    let reports = [a.terminate().await, b_again.terminate().await];
    relay.stop().await;
    for report in &reports {
        assert_eq!(report["failed"], 0, "{report:?}");
    }
    let log = applied(&mut conn);
    for name in [&names[0], &names[2]] {
        assert!(
            log.iter().any(|row| &row.consumer == name),
            "{name} applied nothing"
        );
    }
    assert_projected_once(&env, &mut producer.conn, total, ROUNDS);
}

/// A live projection is rebuilt on request while it runs: its reset
/// truncates its tables, it re-applies from the earliest records; killed
/// mid-rebuild, a successor goes on with the replay; asked again and
/// restarted, it starts over. It ends with the tables of the live run.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_interrupted_and_run_again_gives_the_live_tables() {
    const KEYS: i64 = 300;
    const ROUNDS: i64 = 3;
    let env = Env::new("projection_rebuild");
    let mut producer = env.producer();
    let mut total = 0;
    for seq in 0..ROUNDS {
        total += producer.write(&round(1..=KEYS, seq)).len() as i64;
    }
    let relay = env.relay();
    let mut conn = env.consumer_conn();
    let live = projection(&env, &env.kafka.unique_name("live"), 0);
    wait_until("the live run applies everything", TIMEOUT, || {
        count_applied(&mut conn) == total
    })
    .await;
    let live_users: Vec<User> = users_of(&mut conn);
    assert_eq!(live_users, users_of(&mut producer.conn));

    // Asked while it runs: picked up within its resume poll interval.
    assert!(Projection::request_rebuild(&mut conn, &env.group).expect("request"));
    wait_until("the rebuild resets and starts re-applying", TIMEOUT, || {
        let stored = positions(&mut conn, &env.group);
        !stored.is_empty() && stored.values().all(|(_, until)| until.is_some())
    })
    .await;
    live.kill();
    let replayed = count_applied(&mut conn);
    assert!(
        replayed < total,
        "interrupted mid-rebuild: {replayed} of {total}"
    );

    // A successor goes on with the replay where the positions stand.
    let successor = projection(&env, &env.kafka.unique_name("successor"), 2);
    wait_until("the successor re-applies some more", TIMEOUT, || {
        count_applied(&mut conn) > replayed
    })
    .await;
    successor.kill();

    // Asked again, from the start, with no process running.
    assert!(Projection::request_rebuild(&mut conn, &env.group).expect("request"));
    let again = projection(&env, &env.kafka.unique_name("again"), 0);
    wait_until("the rebuild catches up", TIMEOUT, || {
        count_applied(&mut conn) == total && rebuilt(&mut conn, &env.group)
    })
    .await;
    let report = again.terminate().await;
    relay.stop().await;
    assert_eq!(report["failed"], 0, "{report:?}");
    assert_eq!(
        users_of(&mut conn),
        live_users,
        "the rebuilt table equals the live one"
    );
    assert_projected_once(&env, &mut producer.conn, total, ROUNDS);
}

/// Welcomes each user created, with a follow-up message in this service's
/// outbox (no relay runs on it here: the rows stay to be counted).
struct Welcomer;

#[message_controller(model = User, table = users)]
impl Welcomer {
    async fn after_create(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        ctx.enqueue(user, Event::Updated).await?;
        Ok(())
    }
}

fn follow_ups(conn: &mut PgConnection) -> i64 {
    outbox_diesel::schema::outbox_messages::table
        .count()
        .get_result(conn)
        .expect("count outbox_messages")
}

/// A rebuild re-applies the records without sending their follow-ups again
/// (counted in the report's `processed`, the follow-ups dropped); records
/// after the rebuild's end send theirs as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebuild_mutes_follow_ups() {
    const KEYS: i64 = 50;
    let env = Env::new("projection_follow_ups");
    let relay = env.relay();
    let mut producer = env.producer();
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller(OnTopic::new(Welcomer, &env.topic))
            .projection(Projection::new().reset_sql("TRUNCATE users")),
    );
    producer.write(&round(1..=KEYS, 0));
    let mut conn = env.consumer_conn();
    wait_until("every user is welcomed", TIMEOUT, || {
        follow_ups(&mut conn) == KEYS
    })
    .await;
    assert!(Projection::request_rebuild(&mut conn, &env.group).expect("request"));
    wait_until("the rebuild catches up", TIMEOUT, || {
        rebuilt(&mut conn, &env.group)
    })
    .await;
    assert_eq!(users_of(&mut conn).len() as i64, KEYS, "the users are back");
    assert_eq!(follow_ups(&mut conn), KEYS, "no follow-up sent twice");
    producer.write(&round(KEYS + 1..=KEYS + 10, 0));
    wait_until("new users are welcomed", TIMEOUT, || {
        follow_ups(&mut conn) == KEYS + 10
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;
    assert_eq!(report.processed, (2 * KEYS + 10) as u64, "{report:?}");
    assert_eq!(count_inbox(&mut conn), 0);
}

/// Applies users; refuses user 7's update #1 while `broken` is set, with an
/// error no retry fixes.
struct Picky {
    broken: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[message_controller(model = User, table = users)]
impl Picky {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        if (user.id, user.seq) == (7, 1) && self.broken.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(HandlerError::permanent("user 7 #1 cannot be taken yet"));
        }
        Ok(user)
    }
}

/// A projection stops a partition; a new process finds the stop at start,
/// and once resumed applies the rest through the positions (no inbox row),
/// which end at the high watermarks.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_projection_resumed_after_a_restart_keeps_to_its_positions() {
    const KEYS: i64 = 20;
    let env = Env::new("projection_stop_restart");
    let broken = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let consumer = || {
        RunningConsumer::spawn(
            env.consumer()
                .controller_with(
                    OnTopic::new(
                        Picky {
                            broken: std::sync::Arc::clone(&broken),
                        },
                        &env.topic,
                    ),
                    super::support::quick_retries(
                        outbox_diesel::consumer::FailurePolicy::stop(),
                        2,
                    ),
                )
                .projection(Projection::new()),
        )
    };
    let first = consumer();
    let relay = env.relay();
    let mut producer = env.producer();
    let mut total = 0;
    for seq in 0..3 {
        total += producer.write(&round(1..=KEYS, seq)).len() as i64;
    }
    let mut conn = env.consumer_conn();
    wait_until("the partition of user 7 stops", TIMEOUT, || {
        !super::support::active_stops(&mut conn, &env.group).is_empty()
    })
    .await;
    first.stop().await;
    broken.store(false, std::sync::atomic::Ordering::SeqCst);
    let second = consumer();
    // Its task finds the stop at start (once the group has assigned it the
    // partitions); then the stop is resumed.
    wait_until("the second consumer holds the partitions", TIMEOUT, || {
        let (state, members) = super::support::group_state(&env.kafka, &env.group);
        state == "Stable" && members.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut async_conn = env.consumer_db.connect_async().await;
    let partition = env.partition_of(7);
    outbox_diesel::consumer::Consumer::resume(&mut async_conn, &env.group, &env.topic, partition)
        .await
        .expect("resume")
        .expect("it was stopped");
    wait_until("every user reaches its last change", TIMEOUT, || {
        users_of(&mut conn) == users_of(&mut producer.conn)
    })
    .await;
    let stored = || -> BTreeMap<i32, i64> {
        positions(&mut env.consumer_conn(), &env.group)
            .into_iter()
            .map(|(partition, (next, _))| (partition, next))
            .collect()
    };
    wait_until("the positions reach the high watermarks", TIMEOUT, || {
        stored() == high_watermarks(&env)
    })
    .await;
    let report = second.stop().await;
    relay.stop().await;
    assert_eq!(count_inbox(&mut conn), 0, "no inbox row: {report:?}");
    assert!(
        report.processed > 0 && report.processed < total as u64,
        "{report:?}"
    );
}

/// Records no controller serves at the end of a partition (ignored) move
/// the position too, when the queue runs dry: a restart does not read them
/// again, and a rebuild's progress reaches its end.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ignored_records_move_the_position() {
    let env = Env::new("projection_ignored");
    let consumer = RunningConsumer::spawn(
        env.consumer()
            .controller(OnTopic::new(Welcomer, &env.topic))
            .ignore_unknown_routes(true)
            .projection(Projection::new()),
    );
    let relay = env.relay();
    let mut producer = env.producer();
    producer.write(&round(1..=10, 0));
    // Then messages of a route nobody here serves, on every partition.
    let others: Vec<outbox::Message> = (1..=40)
        .map(|id| {
            let mut message =
                super::support::message_of(&User::new(id, 0), Event::Created, &env.topic);
            message.to = "somebody_else".to_owned();
            message
        })
        .collect();
    producer
        .conn
        .transaction(|conn| {
            for message in &others {
                producer.outbox.enqueue_message(conn, message)?;
            }
            Ok::<_, outbox_diesel::Error>(())
        })
        .expect("enqueue the other route's messages");
    let want = high_watermarks_when(&env, 50).await;
    let mut conn = env.consumer_conn();
    wait_until("the positions pass the ignored records", TIMEOUT, || {
        positions(&mut conn, &env.group)
            .into_iter()
            .map(|(partition, (next, _))| (partition, next))
            .collect::<BTreeMap<_, _>>()
            == want
    })
    .await;
    let report = consumer.stop().await;
    relay.stop().await;
    assert_eq!((report.processed, report.ignored), (10, 40), "{report:?}");
}

/// The high watermarks once the topic holds `records` records.
async fn high_watermarks_when(env: &Env, records: i64) -> BTreeMap<i32, i64> {
    wait_until("the relay publishes everything", TIMEOUT, || {
        high_watermarks(env).values().sum::<i64>() == records
    })
    .await;
    high_watermarks(env)
}
