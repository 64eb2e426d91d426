//! The producing service: writer tasks, each on a session of its own, change
//! items and enqueue their messages in one transaction, record each message
//! in `chaos_committed` in that same transaction (the truth of what the
//! producer committed), roll some transactions back on purpose (their
//! messages kept in memory), hold some open for seconds, and ride through
//! PostgreSQL restarts. A commit whose outcome is unknown (the session lost
//! during `COMMIT`) is resolved by reading `chaos_committed`, never guessed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::QueryableByName;
use diesel::sql_types::{Array, BigInt, Bool, Integer, Text, Uuid};
use diesel_async::{AnsiTransactionManager, AsyncPgConnection, RunQueryDsl, TransactionManager};
use outbox::{Event, Message, Outboxed, Payloads};
use outbox_diesel::Outbox;
use serde::Serialize;

use super::model::{Item, PRODUCER};

/// Share of transactions rolled back on purpose, after their enqueues.
const ROLLBACK_SHARE: f64 = 0.05;
/// Share of transactions held open before their commit.
const LONG_SHARE: f64 = 0.02;
/// How long a long transaction is held: 0.5 to 3 s.
const LONG_HOLD_MS: (u64, u64) = (500, 3000);
/// How long a writer tries to learn a lost commit's outcome.
const RESOLVE_PATIENCE: Duration = Duration::from_secs(120);
/// Messages (keys) per transaction: 1 to 4.
const KEYS_PER_TRANSACTION: (usize, usize) = (1, 4);
/// Share of changes to an existing item that destroy it (the rest update it).
const DESTROY_SHARE: f64 = 0.15;

/// What the writers did, counted as they go.
#[derive(Debug, Default)]
pub(crate) struct Counts {
    pub(crate) committed: AtomicU64,
    pub(crate) rolled_back: AtomicU64,
    pub(crate) transactions: AtomicU64,
    pub(crate) long_transactions: AtomicU64,
    /// Transactions that failed before their commit (nothing committed).
    pub(crate) aborted: AtomicU64,
    /// Commits whose outcome was unknown, resolved as committed or not.
    pub(crate) unknown_committed: AtomicU64,
    pub(crate) unknown_not_committed: AtomicU64,
    /// Unknown outcomes where some messages of one transaction committed and
    /// others not: impossible unless atomicity broke (a bad count).
    pub(crate) partial_commits: AtomicU64,
    pub(crate) reconnects: AtomicU64,
    /// Unknown outcomes not learnt within [`RESOLVE_PATIENCE`].
    pub(crate) unresolved: AtomicU64,
}

/// The counts as numbers, for the report.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct WriterSummary {
    pub(crate) committed: u64,
    pub(crate) rolled_back: u64,
    pub(crate) transactions: u64,
    pub(crate) long_transactions: u64,
    pub(crate) aborted: u64,
    pub(crate) unknown_committed: u64,
    pub(crate) unknown_not_committed: u64,
    pub(crate) partial_commits: u64,
    pub(crate) reconnects: u64,
    pub(crate) unresolved: u64,
}

impl Counts {
    pub(crate) fn summary(&self) -> WriterSummary {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WriterSummary {
            committed: get(&self.committed),
            rolled_back: get(&self.rolled_back),
            transactions: get(&self.transactions),
            long_transactions: get(&self.long_transactions),
            aborted: get(&self.aborted),
            unknown_committed: get(&self.unknown_committed),
            unknown_not_committed: get(&self.unknown_not_committed),
            partial_commits: get(&self.partial_commits),
            reconnects: get(&self.reconnects),
            unresolved: get(&self.unresolved),
        }
    }
}

/// A message of a rolled-back transaction.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RolledBack {
    pub(crate) message_id: uuid::Uuid,
    pub(crate) key: i64,
    pub(crate) seq: i64,
}

/// What the writers share.
pub(crate) struct Writers {
    /// The producer schema's sessions (`application_name` added per writer).
    pub(crate) url: String,
    pub(crate) topic: String,
    pub(crate) keys: i64,
    /// Messages per second for each writer (0: no pacing).
    pub(crate) rate_each: f64,
    pub(crate) counts: Counts,
    pub(crate) rolled_back: Mutex<Vec<RolledBack>>,
    pub(crate) stop: AtomicBool,
    /// Why transactions failed (`writers.log` of the run).
    pub(crate) log: Mutex<std::fs::File>,
}

/// One change planned: a key, and whether to roll back or hold.
struct Plan {
    keys: Vec<i64>,
    rollback: bool,
    hold: Option<Duration>,
}

/// One message written in the transaction.
struct Written {
    message_id: uuid::Uuid,
    key: i64,
    seq: i64,
}

/// How a transaction went wrong.
enum Failed {
    /// Before `COMMIT`: nothing of it committed.
    Before(String),
    /// During `COMMIT`: maybe committed; `pid` was the session's backend.
    During { ids: Vec<uuid::Uuid>, pid: i32 },
}

#[derive(QueryableByName)]
struct Seq {
    #[diesel(sql_type = BigInt)]
    seq: i64,
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = Bool)]
    exists: bool,
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = Integer)]
    pid: i32,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

impl Writers {
    /// Writer `index` until told to stop.
    pub(crate) async fn run(&self, index: usize, seed: u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let outbox = Outbox::new(PRODUCER);
        let url = super::setup::with_param(
            &self.url,
            "application_name",
            &format!("chaos-writer-{index}"),
        );
        let mut session: Option<(AsyncPgConnection, i32)> = None;
        let mut next = Instant::now();
        while !AtomicBool::load(&self.stop, Ordering::Relaxed) {
            let plan = self.plan(&mut rng);
            if self.rate_each > 0.0 {
                let now = Instant::now();
                if next > now {
                    tokio::time::sleep(next - now).await;
                } else if now - next > Duration::from_secs(1) {
                    next = now; // fell behind (an outage): no burst to catch up
                }
                next += Duration::from_secs_f64(plan.keys.len() as f64 / self.rate_each);
            }
            let (conn, pid) = match session.as_mut() {
                Some(session) => session,
                None => match connect(&url).await {
                    Some(connected) => {
                        self.counts.reconnects.fetch_add(1, Ordering::Relaxed);
                        session.insert(connected)
                    }
                    None => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        continue;
                    }
                },
            };
            let pid = *pid;
            match self
                .transaction(conn, pid, &outbox, &plan, index, &mut rng)
                .await
            {
                Ok(written) => {
                    let n = written.len() as u64;
                    self.counts.transactions.fetch_add(1, Ordering::Relaxed);
                    if plan.hold.is_some() {
                        self.counts
                            .long_transactions
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    if plan.rollback {
                        self.counts.rolled_back.fetch_add(n, Ordering::Relaxed);
                        let mut rolled_back =
                            self.rolled_back.lock().unwrap_or_else(|e| e.into_inner());
                        rolled_back.extend(written.iter().map(|w| RolledBack {
                            message_id: w.message_id,
                            key: w.key,
                            seq: w.seq,
                        }));
                    } else {
                        self.counts.committed.fetch_add(n, Ordering::Relaxed);
                    }
                }
                Err(Failed::Before(error)) => {
                    session = None; // the session may be gone; a new one
                    self.counts.aborted.fetch_add(1, Ordering::Relaxed);
                    self.note(
                        index,
                        &format!("transaction failed before its commit: {error}"),
                    );
                }
                Err(Failed::During { ids, pid }) => {
                    session = None;
                    self.note(
                        index,
                        &format!("commit of {} message(s) lost: outcome unknown", ids.len()),
                    );
                    self.resolve(index, &url, &ids, pid).await;
                }
            }
        }
    }

    fn note(&self, writer: usize, line: &str) {
        use std::io::Write as _;
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let _ = writeln!(
            log,
            "{} writer {writer}: {line}",
            chrono::Utc::now().to_rfc3339()
        );
    }

    fn plan(&self, rng: &mut fastrand::Rng) -> Plan {
        let n = rng.usize(KEYS_PER_TRANSACTION.0..=KEYS_PER_TRANSACTION.1);
        let mut keys: Vec<i64> = Vec::with_capacity(n);
        while keys.len() < n.min(self.keys as usize) {
            let key = rng.i64(1..=self.keys);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        // One lock order for every writer: no deadlock between them.
        keys.sort_unstable();
        let rollback = rng.f64() < ROLLBACK_SHARE;
        let hold = (rng.f64() < LONG_SHARE)
            .then(|| Duration::from_millis(rng.u64(LONG_HOLD_MS.0..=LONG_HOLD_MS.1)));
        Plan {
            keys,
            rollback,
            hold,
        }
    }

    /// One transaction of `plan`; the messages it wrote.
    async fn transaction(
        &self,
        conn: &mut AsyncPgConnection,
        pid: i32,
        outbox: &Outbox,
        plan: &Plan,
        writer: usize,
        rng: &mut fastrand::Rng,
    ) -> Result<Vec<Written>, Failed> {
        let before = |e: diesel::result::Error| Failed::Before(e.to_string());
        AnsiTransactionManager::begin_transaction(conn)
            .await
            .map_err(before)?;
        let mut written = Vec::with_capacity(plan.keys.len());
        let body = async {
            for &key in &plan.keys {
                written.push(self.change(conn, outbox, key, writer, rng).await?);
            }
            if let Some(hold) = plan.hold {
                tokio::time::sleep(hold).await;
            }
            Ok::<_, Failed>(())
        };
        if let Err(failed) = body.await {
            let _ = AnsiTransactionManager::rollback_transaction(conn).await;
            return Err(failed);
        }
        if plan.rollback {
            AnsiTransactionManager::rollback_transaction(conn)
                .await
                .map_err(before)?;
            // Rolled back whether or not the rollback answered: never committed.
            return Ok(written);
        }
        match AnsiTransactionManager::commit_transaction(conn).await {
            Ok(()) => Ok(written),
            Err(_) => Err(Failed::During {
                ids: written.iter().map(|w| w.message_id).collect(),
                pid,
            }),
        }
    }

    /// Changes `key` (create, update or destroy) and enqueues the message.
    async fn change(
        &self,
        conn: &mut AsyncPgConnection,
        outbox: &Outbox,
        key: i64,
        writer: usize,
        rng: &mut fastrand::Rng,
    ) -> Result<Written, Failed> {
        let failed = |e: diesel::result::Error| Failed::Before(e.to_string());
        // The key's lock, held to the end: per key, seq grows in commit order.
        let seq = diesel::sql_query(
            "INSERT INTO chaos_key_seqs (id, seq) VALUES ($1, 1) \
             ON CONFLICT (id) DO UPDATE SET seq = chaos_key_seqs.seq + 1 RETURNING seq",
        )
        .bind::<BigInt, _>(key)
        .get_result::<Seq>(conn)
        .await
        .map_err(failed)?
        .seq;
        let exists =
            diesel::sql_query("SELECT EXISTS (SELECT 1 FROM chaos_items WHERE id = $1) AS exists")
                .bind::<BigInt, _>(key)
                .get_result::<Exists>(conn)
                .await
                .map_err(failed)?
                .exists;
        let item = Item {
            id: key,
            seq,
            value: format!("{key}-{seq}-{:08x}", rng.u32(..)),
        };
        let event = if !exists {
            Event::Created
        } else if rng.f64() < DESTROY_SHARE {
            Event::Destroyed
        } else {
            Event::Updated
        };
        let changed = match event {
            Event::Created => {
                diesel::sql_query("INSERT INTO chaos_items (id, seq, value) VALUES ($1, $2, $3)")
                    .bind::<BigInt, _>(item.id)
                    .bind::<BigInt, _>(item.seq)
                    .bind::<Text, _>(&item.value)
                    .execute(conn)
                    .await
            }
            Event::Destroyed => {
                diesel::sql_query("DELETE FROM chaos_items WHERE id = $1")
                    .bind::<BigInt, _>(item.id)
                    .execute(conn)
                    .await
            }
            _ => {
                diesel::sql_query("UPDATE chaos_items SET seq = $2, value = $3 WHERE id = $1")
                    .bind::<BigInt, _>(item.id)
                    .bind::<BigInt, _>(item.seq)
                    .bind::<Text, _>(&item.value)
                    .execute(conn)
                    .await
            }
        };
        changed.map_err(failed)?;
        let message = self
            .message(&item, event.clone())
            .map_err(|e| Failed::Before(e.to_string()))?;
        outbox
            .enqueue_message_async(conn, &message)
            .await
            .map_err(|e| Failed::Before(e.to_string()))?;
        let message_id = message.id.as_uuid();
        diesel::sql_query(
            "INSERT INTO chaos_committed (message_id, key, seq, event, writer) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind::<Uuid, _>(message_id)
        .bind::<BigInt, _>(key)
        .bind::<BigInt, _>(seq)
        .bind::<Text, _>(event.as_str())
        .bind::<Integer, _>(writer as i32)
        .execute(conn)
        .await
        .map_err(failed)?;
        Ok(Written {
            message_id,
            key,
            seq,
        })
    }

    /// The message of `event` of `item`, every payload version, to the run's topic.
    fn message(&self, item: &Item, event: Event) -> Result<Message, outbox::Error> {
        let mut payloads: Option<Payloads> = None;
        for version in Item::VERSIONS {
            let payload = item.to_payload(&event, *version)?;
            match &mut payloads {
                None => payloads = Some(Payloads::new(*version, payload)?),
                Some(payloads) => {
                    payloads.insert(*version, payload)?;
                }
            }
        }
        let payloads = payloads.expect("a model has at least one version");
        Message::new(
            event,
            PRODUCER,
            Item::ROUTE,
            &self.topic,
            item.partition_key(),
            payloads,
        )
    }

    /// Whether the transaction of `ids` committed, read from `chaos_committed`
    /// once its old backend `pid` is gone (so its outcome is final).
    async fn resolve(&self, index: usize, url: &str, ids: &[uuid::Uuid], pid: i32) {
        let started = Instant::now();
        while started.elapsed() < RESOLVE_PATIENCE {
            let Some((mut conn, _)) = connect(url).await else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            self.counts.reconnects.fetch_add(1, Ordering::Relaxed);
            let found = async {
                for _ in 0..300 {
                    let alive = diesel::sql_query(
                        "SELECT count(*) AS count FROM pg_stat_activity WHERE pid = $1",
                    )
                    .bind::<Integer, _>(pid)
                    .get_result::<Count>(&mut conn)
                    .await?
                    .count;
                    if alive == 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                diesel::sql_query(
                    "SELECT count(*) AS count FROM chaos_committed WHERE message_id = ANY($1)",
                )
                .bind::<Array<Uuid>, _>(ids)
                .get_result::<Count>(&mut conn)
                .await
            };
            let Ok(found) = found.await.map(|c| c.count as usize) else {
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            };
            let outcome = match found {
                n if n == ids.len() => "committed",
                0 => "not committed",
                _ => "PARTLY committed",
            };
            self.note(
                index,
                &format!("a lost commit of {} message(s): {outcome}", ids.len()),
            );
            if found == ids.len() {
                self.counts
                    .unknown_committed
                    .fetch_add(1, Ordering::Relaxed);
                self.counts
                    .committed
                    .fetch_add(ids.len() as u64, Ordering::Relaxed);
                self.counts.transactions.fetch_add(1, Ordering::Relaxed);
            } else if found == 0 {
                self.counts
                    .unknown_not_committed
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                self.counts.partial_commits.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        // The audit reads `chaos_committed` anyway; only this count is unsure.
        self.counts.unresolved.fetch_add(1, Ordering::Relaxed);
    }
}

/// A session of the producer schema and its backend's pid, within 10 s.
async fn connect(url: &str) -> Option<(AsyncPgConnection, i32)> {
    let connect = async {
        let mut conn = outbox_diesel::establish(url).await.ok()?;
        let pid = diesel::sql_query("SELECT pg_backend_pid() AS pid")
            .get_result::<Pid>(&mut conn)
            .await
            .ok()?
            .pid;
        Some((conn, pid))
    };
    tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .ok()
        .flatten()
}
