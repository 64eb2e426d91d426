//! A record no fix can make applicable, under the stop policy: skipped past
//! with `stopped::skip_async` (the library call) or `outbox partitions skip`
//! (the binary). The running consumer reads the partition again from the
//! record after it; the skipped record is never applied, the stop keeps the
//! reason, and a consumer started once the running one went past it does not
//! read it again. A skip made while no consumer holds the partition is not
//! honoured yet (the ignored test at the end).

use std::process::Output;

use outbox::{Context, HandlerError, Message, message_controller};
use outbox_diesel::StoppedPartition;
use outbox_diesel::consumer::FailurePolicy;
use outbox_diesel::stopped;
use outbox_tests::TestDb;
use rdkafka::Message as _;

use super::support::{
    Env, OnTopic, RunningConsumer, RunningRelay, TIMEOUT, User, active_stops, applied,
    assert_applied_once_in_order, inbox_offsets, log_apply, quick_retries, read_from_start,
    record_of, round, seq_of_user, users, users_of, wait_until,
};

const KEYS: i64 = 16;
const SEQS: i64 = 4;
/// The update no fix can make applicable: user 5's `seq` 1.
const POISON: (i64, i64) = (5, 1);

/// Applies users and logs each update; refuses [`POISON`] for good.
struct Unapplicable;

#[message_controller(model = User, table = users)]
impl Unapplicable {
    async fn before_update(
        &self,
        _ctx: &mut Context<'_>,
        user: User,
    ) -> Result<User, HandlerError> {
        if (user.id, user.seq) == POISON {
            return Err(HandlerError::permanent(format!(
                "user {} #{} refers to an account deleted upstream",
                user.id, user.seq
            )));
        }
        Ok(user)
    }

    async fn after_update(&self, ctx: &mut Context<'_>, user: &User) -> Result<(), HandlerError> {
        log_apply(ctx, user.id, Some(user.seq)).await
    }
}

/// A consumer stopped on [`POISON`]'s record, the other partitions done.
struct Stopped {
    env: Env,
    consumer: RunningConsumer,
    relay: RunningRelay,
    sent: Vec<Message>,
    poisoned: Message,
    /// The partition stopped.
    partition: i32,
    /// The offsets of that partition's records, the stopped one included.
    offsets: Vec<i64>,
    stop: StoppedPartition,
}

fn consumer(env: &Env) -> RunningConsumer {
    RunningConsumer::spawn(env.consumer().controller_with(
        OnTopic::new(Unapplicable, &env.topic),
        quick_retries(FailurePolicy::stop(), 3),
    ))
}

async fn stopped_on_poison(test: &str) -> Stopped {
    let env = Env::new(test);
    let partition = env.partition_of(POISON.0);
    let consumer = consumer(&env);
    let relay = env.relay();
    let mut producer = env.producer();
    let sent: Vec<Message> = (0..SEQS)
        .flat_map(|seq| producer.write(&round(1..=KEYS, seq)))
        .collect();
    let poisoned = sent
        .iter()
        .find(|m| {
            m.partition_key == POISON.0.to_string()
                && m.payloads.get(1).and_then(|p| p["seq"].as_i64()) == Some(POISON.1)
        })
        .expect("the poisoned message")
        .clone();

    let mut conn = env.consumer_conn();
    let others: Vec<i64> = (1..=KEYS)
        .filter(|k| env.partition_of(*k) != partition)
        .collect();
    assert!(!others.is_empty());
    wait_until("the partition stops and the others finish", TIMEOUT, || {
        !active_stops(&mut conn, &env.group).is_empty()
            && others
                .iter()
                .all(|k| seq_of_user(&mut conn, *k) == Some(SEQS - 1))
    })
    .await;

    let topic = read_from_start(&env.kafka, &env.topic, "every record", sent.len()).await;
    let failed_offset = record_of(&topic.records, poisoned.id).offset();
    let offsets: Vec<i64> = topic
        .records
        .iter()
        .filter(|r| r.partition() == partition)
        .map(|r| r.offset())
        .collect();
    assert!(
        offsets.last() > Some(&failed_offset),
        "records follow the poisoned one: {offsets:?}"
    );
    let [stop]: [StoppedPartition; 1] = active_stops(&mut conn, &env.group)
        .try_into()
        .expect("one stop");
    assert_eq!(
        (
            stop.topic.as_str(),
            stop.kafka_partition,
            stop.kafka_offset,
            stop.message_id,
            stop.skip_reason.as_deref(),
        ),
        (
            env.topic.as_str(),
            partition,
            failed_offset,
            Some(poisoned.id.as_uuid()),
            None
        ),
        "{stop:?}"
    );
    assert!(
        stop.error
            .contains("user 5 #1 refers to an account deleted upstream"),
        "{}",
        stop.error
    );
    let before: Vec<i64> = offsets
        .iter()
        .copied()
        .filter(|o| *o < failed_offset)
        .collect();
    assert_eq!(inbox_offsets(&mut conn, partition), before);
    Stopped {
        env,
        consumer,
        relay,
        sent,
        poisoned,
        partition,
        offsets,
        stop,
    }
}

impl Stopped {
    /// Once skipped with `reason`: the rest of the partition is applied, not
    /// the skipped record; the stop is resumed with the reason; a consumer
    /// started afterwards does not read the skipped record again.
    async fn assert_skipped_past(self, reason: &str) {
        let Stopped {
            env,
            consumer: first,
            relay,
            sent,
            poisoned,
            partition,
            offsets,
            stop,
        } = self;
        let mut conn = env.consumer_conn();
        let mut producer_conn = env.producer_conn();
        let expected = users_of(&mut producer_conn);
        // The poisoned update is followed by later ones of its key: skipping it
        // still ends on the producer's rows.
        wait_until(
            "the partition goes on past the skipped record",
            TIMEOUT,
            || users_of(&mut conn) == expected,
        )
        .await;
        let after: Vec<i64> = offsets
            .iter()
            .copied()
            .filter(|o| *o != stop.kafka_offset)
            .collect();
        wait_until(
            "every other record of the partition is in the inbox",
            TIMEOUT,
            || inbox_offsets(&mut conn, partition) == after,
        )
        .await;

        let log = applied(&mut conn);
        assert!(
            log.iter()
                .all(|row| row.message_id != poisoned.id.as_uuid()),
            "the skipped record was applied"
        );
        let per_key = assert_applied_once_in_order(&log);
        let every: Vec<i64> = (0..SEQS).collect();
        let but_poison: Vec<i64> = (0..SEQS).filter(|seq| *seq != POISON.1).collect();
        assert_eq!(per_key[&POISON.0], but_poison, "#1 skipped");
        assert!(
            per_key
                .iter()
                .filter(|(key, _)| **key != POISON.0)
                .all(|(_, seqs)| *seqs == every),
            "{per_key:?}"
        );
        assert!(active_stops(&mut conn, &env.group).is_empty());
        let history = stopped::list(&mut conn, Some(&env.group), true).expect("list stops");
        let [row]: [StoppedPartition; 1] = history.try_into().expect("one stop");
        assert_eq!(row.id, stop.id);
        assert!(row.resumed_at.is_some() && !row.is_active(), "{row:?}");
        assert_eq!(row.skip_reason.as_deref(), Some(reason));
        assert_eq!(row.resume_offset(), stop.kafka_offset + 1);
        assert_eq!(
            StoppedPartition {
                resumed_at: None,
                skip_reason: None,
                ..row
            },
            stop,
            "only resumed_at and skip_reason change"
        );

        let first = first.stop().await;
        assert_eq!(
            (first.failed, first.stopped, first.retries, first.duplicates),
            (1, 1, 0, 0),
            "{first:?}"
        );
        assert_eq!(first.processed, sent.len() as u64 - 1, "{first:?}");

        // Committed past the skipped record: a new consumer applies a new
        // round and does not stop on it again.
        let second = consumer(&env);
        env.producer().write(&round(1..=KEYS, SEQS));
        let expected = users_of(&mut producer_conn);
        wait_until("the new round is applied", TIMEOUT, || {
            users_of(&mut conn) == expected
        })
        .await;
        let second = second.stop().await;
        relay.stop().await;
        assert_eq!(
            (second.failed, second.stopped, second.duplicates),
            (0, 0, 0),
            "{second:?}"
        );
        assert_eq!(second.processed, KEYS as u64, "{second:?}");
        assert!(active_stops(&mut conn, &env.group).is_empty());
    }
}

/// `stopped::skip_async`: refuses an empty reason (nothing written), returns
/// `None` for a partition that is not stopped, and skips the stopped one.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn skip_async_resumes_past_the_record() {
    let stopped = stopped_on_poison("consumer_skip").await;
    let (group, topic) = (stopped.env.group.clone(), stopped.env.topic.clone());
    let partition = stopped.partition;
    let mut conn = stopped.env.consumer_db.connect_async().await;

    for blank in ["", "  \n"] {
        let refused = stopped::skip_async(&mut conn, &group, &topic, partition, blank).await;
        assert!(
            matches!(
                refused,
                Err(outbox_diesel::Error::Config {
                    name: "skip reason",
                    ..
                })
            ),
            "{refused:?}"
        );
    }
    let active = stopped::active_async(&mut conn, &group, &topic, partition)
        .await
        .expect("read the stop");
    assert_eq!(active.as_ref(), Some(&stopped.stop), "still stopped");

    let other = (partition + 1) % stopped.env.partitions;
    let nothing = stopped::skip_async(&mut conn, &group, &topic, other, "not stopped")
        .await
        .expect("skip");
    assert_eq!(nothing, None);

    let reason = "user 5 #1 refers to an account deleted upstream";
    let skipped = stopped::skip_async(
        &mut conn,
        &group,
        &topic,
        partition,
        &format!(" {reason}\n"),
    )
    .await
    .expect("skip")
    .expect("the partition was stopped");
    assert_eq!(
        (
            skipped.id,
            skipped.kafka_offset,
            skipped.message_id,
            skipped.skip_reason.as_deref()
        ),
        (
            stopped.stop.id,
            stopped.stop.kafka_offset,
            Some(stopped.poisoned.id.as_uuid()),
            Some(reason)
        )
    );
    assert!(skipped.resumed_at.is_some());
    // Skipped once: nothing to skip any more.
    let again = stopped::skip_async(&mut conn, &group, &topic, partition, reason)
        .await
        .expect("skip");
    assert_eq!(again, None);
    stopped.assert_skipped_past(reason).await;
}

/// `outbox partitions skip`: refuses an empty reason (exit 2), says when
/// nothing is stopped (exit 1), names the offset and message id skipped; `list
/// --all` shows the stop as skipped, with its reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn outbox_partitions_skip_resumes_past_the_record() {
    let stopped = stopped_on_poison("consumer_skip_cli").await;
    let db = &stopped.env.consumer_db;
    let partition = stopped.partition.to_string();
    let other = ((stopped.partition + 1) % stopped.env.partitions).to_string();
    let skip = |partition: &str, reason: &str| {
        let args = [
            "partitions",
            "skip",
            "--group",
            stopped.env.group.as_str(),
            "--topic",
            stopped.env.topic.as_str(),
            "--partition",
            partition,
            "--reason",
            reason,
        ];
        args.map(str::to_owned)
    };

    let blank = outbox_cli(db, &skip(&partition, " ")).await;
    assert_eq!(blank.status.code(), Some(2), "{blank:?}");
    assert_eq!(
        first_line(&blank.stderr),
        "error: invalid value ' ' for '--reason <REASON>': say why the record can never be applied"
    );
    let nothing = outbox_cli(db, &skip(&other, "not stopped")).await;
    assert_eq!(nothing.status.code(), Some(1), "{nothing:?}");
    assert_eq!(
        String::from_utf8_lossy(&nothing.stderr),
        format!(
            "error: nothing to skip: {}[{other}] has no active stop for group {} in schema {} \
             at {} (see `outbox partitions list --all`)\n",
            stopped.env.topic,
            stopped.env.group,
            db.schema(),
            db.url()
        )
    );
    assert_eq!(
        active_stops(&mut db.connect(), &stopped.env.group),
        std::slice::from_ref(&stopped.stop),
        "still stopped"
    );

    let reason = "written by hand: no account to apply it to";
    let skipped = outbox_cli(db, &skip(&partition, reason)).await;
    assert_eq!(
        (
            skipped.status.code(),
            String::from_utf8_lossy(&skipped.stderr)
        ),
        (Some(0), "".into()),
        "{skipped:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&skipped.stdout),
        format!(
            "skipped offset {offset} of {topic}[{partition}] for group {group} (message {id}): \
             a running consumer of the group reads it again from offset {next}; the record is \
             never applied\n",
            offset = stopped.stop.kafka_offset,
            topic = stopped.env.topic,
            group = stopped.env.group,
            id = stopped.poisoned.id,
            next = stopped.stop.kafka_offset + 1,
        )
    );

    let listed = outbox_cli(db, &["partitions", "list", "--all"].map(str::to_owned)).await;
    let text = String::from_utf8_lossy(&listed.stdout);
    assert_eq!(listed.status.code(), Some(0), "{listed:?}");
    assert!(
        text.lines()
            .nth(1)
            .unwrap_or_default()
            .contains("Z (skipped)  "),
        "{text}"
    );
    assert!(
        text.ends_with(&format!(
            "\nstop {} skipped offset {} of {}[{partition}]: {reason}\n",
            stopped.stop.id, stopped.stop.kafka_offset, stopped.env.topic
        )),
        "{text}"
    );
    assert!(!text.contains("resume once"), "nothing active: {text}");
    let json = outbox_cli(
        db,
        &["partitions", "list", "--all", "--json"].map(str::to_owned),
    )
    .await;
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(value[0]["skip_reason"], reason, "{value}");
    assert_eq!(value[0]["kafka_offset"], stopped.stop.kafka_offset);
    stopped.assert_skipped_past(reason).await;
}

/// `outbox --database-url <db> <args>` (the `outbox` command of this crate),
/// with none of the environment variables it reads.
async fn outbox_cli(db: &TestDb, args: &[String]) -> Output {
    let run = tokio::process::Command::new(env!("CARGO_BIN_EXE_outbox-cli"))
        .arg("--database-url")
        .arg(db.url())
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .env_remove("RUST_LOG")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(TIMEOUT, run)
        .await
        .expect("`outbox` exits in time")
        .expect("`outbox` runs")
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// A skip made while no consumer of the group holds the partition: the next
/// consumer reads from the committed offset, the skipped record's, and passes
/// over it (the partition task knows the offsets of skipped stops) instead of
/// stopping on it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_skip_made_while_no_consumer_runs_holds() {
    let Stopped {
        env,
        consumer: first,
        relay,
        poisoned,
        partition,
        offsets,
        stop,
        ..
    } = stopped_on_poison("consumer_skip_offline").await;
    let first = first.stop().await;
    assert_eq!((first.failed, first.stopped), (1, 1), "{first:?}");
    let mut conn = env.consumer_db.connect_async().await;
    let reason = "skipped while no consumer runs";
    stopped::skip_async(&mut conn, &env.group, &env.topic, partition, reason)
        .await
        .expect("skip")
        .expect("the partition was stopped");

    let second = consumer(&env);
    let mut sync = env.consumer_conn();
    let expected = users_of(&mut env.producer_conn());
    wait_until(
        "the partition goes on past the skipped record",
        TIMEOUT,
        || users_of(&mut sync) == expected,
    )
    .await;
    let second = second.stop().await;
    relay.stop().await;
    assert_eq!((second.failed, second.stopped), (0, 0), "{second:?}");
    let after: Vec<i64> = offsets
        .iter()
        .copied()
        .filter(|o| *o != stop.kafka_offset)
        .collect();
    assert_eq!(inbox_offsets(&mut sync, partition), after);
    assert!(
        applied(&mut sync)
            .iter()
            .all(|row| row.message_id != poisoned.id.as_uuid())
    );
    assert!(active_stops(&mut sync, &env.group).is_empty());
}
