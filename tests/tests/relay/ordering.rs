//! Order and completeness under concurrency: many writers and two relays on
//! one outbox, a lower id that commits after a higher one was sent, and a
//! lower id that commits while the relay reads ahead of it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use diesel::Connection;
use diesel::connection::{AnsiTransactionManager, TransactionManager};
use outbox::MessageId;
use outbox_diesel::Outbox;

use super::support::{
    Env, PRODUCER, RECEIVE_TIMEOUT, RunningRelay, assert_key_order, blocking, count_rows, enqueue,
    id_counts, message, row_id, seq_of, wait_until_empty,
};

const WRITERS: u64 = 4;
const KEYS: u64 = 100;

/// `OUTBOX_STRESS_MESSAGES`, default 10,000.
fn stress_messages() -> u64 {
    match std::env::var("OUTBOX_STRESS_MESSAGES") {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("OUTBOX_STRESS_MESSAGES={value:?} is not a number")),
        Err(_) => 10_000,
    }
}

/// 4 writers (threads, each with its own connection, transactions of 1 to 8
/// messages) and two relays sharing 16 shards: every message arrives exactly
/// once, and per key in the order its writer enqueued it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_writers_two_relays_every_message_once_in_key_order() {
    let total = stress_messages();
    assert!(
        total >= WRITERS,
        "OUTBOX_STRESS_MESSAGES must be at least {WRITERS}"
    );
    let started = Instant::now();
    let env = Env::new("relay_stress");
    let relay = || {
        env.relay()
            .shards(16)
            .batch_size(100)
            .rebalance_interval(Duration::from_millis(200))
            .build()
            .unwrap()
    };
    let first = RunningRelay::spawn(relay());
    let second = RunningRelay::spawn(relay());
    let mut reader = env.reader();

    // Writer w owns the keys k with k % 4 == w and numbers each key's messages.
    let seed = super::support::Rng::seed_from_clock();
    eprintln!("stress: {total} messages, {KEYS} keys, {WRITERS} writers, seed {seed}");
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let url = env.db.url().to_owned();
            let topic = env.topic.clone();
            let count = total / WRITERS + u64::from(w < total % WRITERS);
            std::thread::spawn(move || {
                use diesel::Connection;
                let mut conn = diesel::PgConnection::establish(&url).expect("writer connects");
                let mut rng = super::support::Rng::new(seed ^ (w + 1).wrapping_mul(0x9e37_79b9));
                let keys: Vec<u64> = (0..KEYS).filter(|k| k % WRITERS == w).collect();
                let mut next_seq: HashMap<u64, u64> = HashMap::new();
                let mut written = Vec::with_capacity(count as usize);
                while (written.len() as u64) < count {
                    let size = (1 + rng.below(8)).min(count - written.len() as u64);
                    let batch: Vec<_> = (0..size)
                        .map(|_| {
                            let key = keys[rng.below(keys.len() as u64) as usize];
                            let seq = next_seq.entry(key).or_insert(0);
                            *seq += 1;
                            message(&topic, &format!("key-{key:03}"), *seq - 1)
                        })
                        .collect();
                    written.extend(enqueue(&mut conn, &batch));
                }
                written
            })
        })
        .collect();
    let ids: Vec<MessageId> = blocking(move || {
        writers
            .into_iter()
            .flat_map(|w| w.join().expect("a writer panicked"))
            .collect()
    })
    .await;
    assert_eq!(ids.len() as u64, total);
    let written_in = started.elapsed();

    // 60 s, or more for a larger OUTBOX_STRESS_MESSAGES.
    let timeout = RECEIVE_TIMEOUT.max(Duration::from_millis(5 * total));
    reader.read_ids(&ids, timeout).await;
    let mut conn = env.conn();
    wait_until_empty(&mut conn, timeout).await;
    let reports = (first.stop().await, second.stop().await);
    // Anything sent twice would show up by now.
    reader.read_rest(Duration::from_secs(2)).await;
    eprintln!(
        "stress: written in {written_in:?}, all read after {:?}; relays published {} + {} in {} + {} batches",
        started.elapsed(),
        reports.0.published,
        reports.1.published,
        reports.0.batches,
        reports.1.batches
    );

    let expected: HashSet<MessageId> = ids.iter().copied().collect();
    let counts = id_counts(&reader.received);
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{} messages arrived more than once, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(5)]
    );
    let strangers = counts.keys().filter(|id| !expected.contains(id)).count();
    assert_eq!(strangers, 0, "records of no writer on the topic");
    assert_eq!(counts.len() as u64, total, "every message arrives");
    assert_eq!(reports.0.published + reports.1.published, total);
    assert!(
        reports.0.published > 0 && reports.1.published > 0,
        "both relays took part: {reports:?}"
    );
    assert_eq!(reports.0.failed_attempts + reports.1.failed_attempts, 0);

    let received: Vec<_> = reader.received.iter().collect();
    let per_key = assert_key_order(&received);
    assert_eq!(per_key.len() as u64, KEYS.min(total));
    for (key, seqs) in per_key {
        let expected: Vec<u64> = (0..seqs.len() as u64).collect();
        assert!(seqs == expected, "key {key}: {seqs:?}");
    }
    assert!(
        total > 10_000 || started.elapsed() < Duration::from_secs(60),
        "the stress test took {:?}; keep it under a minute",
        started.elapsed()
    );
}

/// T1 inserts id n, T2 inserts id n+1 on the same key; T2 commits and is sent
/// while T1 is still open; then T1 commits. A relay that kept a "last id sent"
/// cursor would skip n for ever; this one sends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_id_committed_after_a_higher_one_is_sent() {
    let env = Env::new("relay_late_commit");
    let relay = RunningRelay::spawn(env.relay().build().unwrap());
    let mut reader = env.reader();
    let outbox = Outbox::new(PRODUCER);
    let (late, early) = (env.message("k", 0), env.message("k", 1));

    let mut t1 = env.conn();
    AnsiTransactionManager::begin_transaction(&mut t1).unwrap();
    outbox.enqueue_message(&mut t1, &late).expect("T1 enqueue");
    let late_row = row_id(&mut t1, late.id);

    let mut t2 = env.conn();
    AnsiTransactionManager::begin_transaction(&mut t2).unwrap();
    outbox.enqueue_message(&mut t2, &early).expect("T2 enqueue");
    let early_row = row_id(&mut t2, early.id);
    AnsiTransactionManager::commit_transaction(&mut t2).expect("T2 commits");
    assert!(
        late_row < early_row,
        "T1 has the lower id: {late_row} vs {early_row}"
    );

    reader.read_ids(&[early.id], RECEIVE_TIMEOUT).await;
    // The relay goes on past T2's row while T1 is open: another key's message is
    // sent after it, and several polls go by.
    let other = env.message("other", 0);
    enqueue(&mut t2, std::slice::from_ref(&other));
    reader.read_ids(&[other.id], RECEIVE_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count_rows(&mut t2), 0, "T1's row is not visible yet");

    AnsiTransactionManager::commit_transaction(&mut t1).expect("T1 commits");
    reader.read_ids(&[late.id], RECEIVE_TIMEOUT).await;
    wait_until_empty(&mut t2, Duration::from_secs(30)).await;
    reader.read_rest(Duration::from_secs(1)).await;
    let report = relay.stop().await;

    let counts = id_counts(&reader.received);
    for (what, id) in [
        ("T1's", late.id),
        ("T2's", early.id),
        ("the other", other.id),
    ] {
        assert_eq!(counts.get(&id), Some(&1), "{what} message, sent once");
    }
    assert_eq!(counts.len(), 3);
    assert_eq!(report.published, 3, "{report:?}");
}

/// The same while the relay drains a backlog in full batches (where it may read
/// the next batch ahead, after the last id of the one in flight): T1's row,
/// lower than the whole backlog, commits in the middle of it and is still sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lower_id_committed_during_a_backlog_is_sent() {
    const BACKLOG: u64 = 8_000;
    let env = Env::new("relay_late_commit_backlog");
    let outbox = Outbox::new(PRODUCER);
    let late = env.message("late", 0);
    let mut t1 = env.conn();
    AnsiTransactionManager::begin_transaction(&mut t1).unwrap();
    outbox.enqueue_message(&mut t1, &late).expect("T1 enqueue");
    let late_row = row_id(&mut t1, late.id);

    let mut conn = env.conn();
    let backlog: Vec<_> = (0..BACKLOG)
        .map(|i| env.message(&format!("key-{}", i % 13), i))
        .collect();
    let ids = enqueue(&mut conn, &backlog);
    let first_backlog_row = row_id(&mut conn, ids[0]);
    assert!(late_row < first_backlog_row);

    let relay = RunningRelay::spawn(env.relay().batch_size(100).build().unwrap());
    super::support::wait_until(
        "the relay is half-way through the backlog",
        RECEIVE_TIMEOUT,
        || count_rows(&mut conn) <= (BACKLOG / 2) as i64,
    )
    .await;
    AnsiTransactionManager::commit_transaction(&mut t1).expect("T1 commits");
    let committed_at = Instant::now();
    let left = count_rows(&mut conn);
    assert!(
        left > 500,
        "the backlog is still draining when T1 commits: {left} rows left"
    );

    let mut reader = env.reader();
    reader.read_ids(&[late.id], RECEIVE_TIMEOUT).await;
    let late_after = committed_at.elapsed();
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    reader.read_ids(&ids, RECEIVE_TIMEOUT).await;
    reader.read_rest(Duration::from_secs(1)).await;
    let report = relay.stop().await;
    eprintln!("late commit: sent {late_after:?} after its commit, {left} backlog rows left then");

    let counts = id_counts(&reader.received);
    assert_eq!(counts.get(&late.id), Some(&1), "T1's message, sent once");
    assert!(counts.values().all(|n| *n == 1), "each message once");
    assert_eq!(counts.len() as u64, BACKLOG + 1);
    assert_eq!(report.published, BACKLOG + 1, "{report:?}");
    let received: Vec<_> = reader.received.iter().collect();
    assert_key_order(&received);
}

/// Commit order is key order: T1 enqueues A (key "k", id n) and stays open
/// while a backlog of other keys (ids above n) drains in full batches; T1
/// commits, then B (key "k") is enqueued and committed. A committed before B
/// was even inserted, so every consumer must see A before B. A relay that reads
/// ahead after the last id it sent passes over A (not yet committed when it
/// read past n) and sends B first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_holds_for_a_lower_id_committed_while_the_relay_reads_ahead() {
    const BACKLOG: u64 = 20_000;
    let env = Env::new("relay_commit_order");
    let outbox = Outbox::new(PRODUCER);
    let (a, b) = (env.message("k", 0), env.message("k", 1));
    let mut t1 = env.conn();
    AnsiTransactionManager::begin_transaction(&mut t1).unwrap();
    outbox.enqueue_message(&mut t1, &a).expect("T1 enqueue");

    let mut conn = env.conn();
    let backlog: Vec<_> = (0..BACKLOG)
        .map(|i| env.message(&format!("other-{}", i % 13), i))
        .collect();
    let backlog_ids = enqueue(&mut conn, &backlog);

    // Small batches and no rebalance during the test: the relay goes through
    // the backlog batch after batch without starting again from the oldest row.
    let relay = RunningRelay::spawn(
        env.relay()
            .batch_size(20)
            .rebalance_interval(Duration::from_secs(600))
            .build()
            .unwrap(),
    );
    super::support::wait_until("the relay is draining the backlog", RECEIVE_TIMEOUT, || {
        count_rows(&mut conn) <= (BACKLOG - 1_000) as i64
    })
    .await;
    // Row ids are read inside each transaction: once committed, the relay may
    // send and delete a row before this test looks at it.
    let a_row = row_id(&mut t1, a.id);
    AnsiTransactionManager::commit_transaction(&mut t1).expect("T1 commits");
    let b_row = conn
        .transaction(|conn| {
            outbox.enqueue_message(conn, &b)?;
            Ok::<_, outbox_diesel::Error>(row_id(conn, b.id))
        })
        .expect("B commits");
    let left = count_rows(&mut conn);
    assert!(
        left > 2_000,
        "the backlog is still draining when B commits: {left} rows left"
    );
    assert!(a_row < b_row, "A has the lower id: {a_row} vs {b_row}");

    let mut reader = env.reader();
    reader.read_ids(&[a.id, b.id], RECEIVE_TIMEOUT).await;
    wait_until_empty(&mut conn, RECEIVE_TIMEOUT).await;
    reader.read_ids(&backlog_ids, RECEIVE_TIMEOUT).await;
    relay.stop().await;

    let of_k: Vec<(u64, i64)> = reader
        .received
        .iter()
        .filter(|r| r.message.partition_key == "k")
        .map(|r| (seq_of(&r.message), r.offset))
        .collect();
    assert_eq!(
        of_k.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        [0, 1],
        "key k: A (#0, committed first, lower id) must reach Kafka before B (#1); \
         got (seq, offset) {of_k:?}"
    );
}
