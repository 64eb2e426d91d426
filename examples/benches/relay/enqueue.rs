//! The `enqueue` part: what enqueueing adds to a business transaction.

use std::sync::Barrier;
use std::time::Instant;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use outbox::Event;
use outbox_diesel::Outbox;

use crate::Bench;
use crate::common::db::pg;
use crate::common::report::group;
use crate::common::results::Figure;
use crate::common::stats::{percentile, upper_median};
use crate::model::{NewUser, User, bench_users};

/// The ways a round runs its transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// The user insert alone (`conn.transaction`).
    Without,
    /// The user insert and `Outbox::enqueue` (one more round trip).
    Enqueue,
    /// As `Enqueue`, the `NOTIFY` trigger disabled (a diagnostic).
    Quiet,
    /// The user insert in `Outbox::transaction`, its message written in the
    /// round trip of the `COMMIT`.
    Transaction,
    /// As `Transaction`, the `NOTIFY` trigger replaced by a rule `ON INSERT DO
    /// ALSO NOTIFY` (a diagnostic: what the trigger's PL/pgSQL call costs).
    Rule,
}

const SIDES: [Side; 5] = [
    Side::Without,
    Side::Enqueue,
    Side::Quiet,
    Side::Transaction,
    Side::Rule,
];

impl Bench {
    pub(crate) fn enqueue(&mut self) {
        let rounds = self.config.rounds.max(3) + 4;
        println!(
            "\n== enqueue cost: user insert (+ enqueue) per transaction, {rounds} interleaved rounds \
             (the order of the sides turns each round): without, with `enqueue`, with `enqueue` \
             and the NOTIFY trigger disabled (a diagnostic), with `Outbox::transaction`, and with it \
             the trigger replaced by a NOTIFY rule (a diagnostic) =="
        );
        let users = "CREATE TABLE bench_users (id bigserial PRIMARY KEY, email text NOT NULL, \
                     name text NOT NULL, locale text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())";
        let schema = self.db.schema("enq");
        pg(&schema.url).batch_execute(users).expect("users table");
        let quiet = self.db.schema("enqq");
        pg(&quiet.url)
            .batch_execute(&format!(
                "{users}; ALTER TABLE outbox_messages DISABLE TRIGGER outbox_messages_notify"
            ))
            .expect("users table, trigger off");
        let rule = self.db.schema("enqr");
        pg(&rule.url)
            .batch_execute(&format!(
                "{users}; DROP TRIGGER outbox_messages_notify ON outbox_messages; \
                 CREATE RULE outbox_messages_notify AS ON INSERT TO outbox_messages \
                 DO ALSO NOTIFY outbox_messages"
            ))
            .expect("users table, NOTIFY rule");
        let mut conns: Vec<PgConnection> = (0..8).map(|_| pg(&schema.url)).collect();
        let mut quiet_conns: Vec<PgConnection> = (0..8).map(|_| pg(&quiet.url)).collect();
        let mut rule_conns: Vec<PgConnection> = (0..8).map(|_| pg(&rule.url)).collect();
        for clients in [1usize, 8] {
            let per_client = if clients == 1 { 2_000 } else { 500 };
            let mut sides: [Vec<f64>; 5] = Default::default();
            // An untimed round of each first.
            for r in 0..=rounds {
                for k in 0..SIDES.len() {
                    let at = (k + r) % SIDES.len();
                    let side = SIDES[at];
                    let conns = match side {
                        Side::Quiet => &mut quiet_conns[..clients],
                        Side::Rule => &mut rule_conns[..clients],
                        _ => &mut conns[..clients],
                    };
                    let secs = txn_round(conns, per_client, side);
                    if r > 0 {
                        sides[at].push(secs / (clients * per_client) as f64 * 1e6);
                    }
                }
            }
            let [without, with, quiet_with, via_transaction, via_rule] = &sides;
            record_figures(clients, &sides);
            let fastest = |v: &[f64]| percentile(v, 0.0);
            let paired =
                |v: &[f64]| -> Vec<f64> { v.iter().zip(without).map(|(w, o)| w / o).collect() };
            let ratio_best = fastest(with) / fastest(without);
            let transaction_best = fastest(via_transaction) / fastest(without);
            let (with_paired, quiet_paired, transaction_paired, rule_paired) = (
                upper_median(&paired(with)),
                upper_median(&paired(quiet_with)),
                upper_median(&paired(via_transaction)),
                upper_median(&paired(via_rule)),
            );
            println!(
                "{clients} client(s), us per transaction (wall time / transactions): without {without:.0?}, \
                 with {with:.0?}, with, no NOTIFY {quiet_with:.0?}, via Outbox::transaction {via_transaction:.0?}, \
                 via Outbox::transaction with a NOTIFY rule {via_rule:.0?}"
            );
            println!(
                "{clients} client(s), ÷ without, median of paired per-round ratios: \
                 with enqueue {with_paired:.3}, with enqueue, no NOTIFY {quiet_paired:.3}, \
                 via Outbox::transaction {transaction_paired:.3} (rounds: {:.3?}), \
                 via Outbox::transaction with a NOTIFY rule {rule_paired:.3}",
                paired(via_transaction)
            );
            self.summary.check(
                format!(
                    "enqueue cost, {clients} client(s): with ÷ without (fastest / paired median)"
                ),
                format!("{ratio_best:.3} / {with_paired:.3}"),
                "<= 1.3",
                ratio_best <= 1.3,
            );
            self.summary.check(
                format!(
                    "enqueue cost via Outbox::transaction, {clients} client(s): ÷ without \
                     (paired median / fastest)"
                ),
                format!("{transaction_paired:.3} / {transaction_best:.3}"),
                "<= 1.15",
                transaction_paired <= 1.15,
            );
            self.summary.add(
                "  us per transaction (fastest round): without | with | with, no NOTIFY | via transaction",
                format!(
                    "{:.0} | {:.0} | {:.0} | {:.0} ({} | {} | {} | {} txn/s)",
                    fastest(without),
                    fastest(with),
                    fastest(quiet_with),
                    fastest(via_transaction),
                    group(1e6 / fastest(without)),
                    group(1e6 / fastest(with)),
                    group(1e6 / fastest(quiet_with)),
                    group(1e6 / fastest(via_transaction))
                ),
            );
        }
        drop(conns);
        drop(quiet_conns);
        drop(rule_conns);
        self.db.drop_schema(&schema);
        self.db.drop_schema(&quiet);
        self.db.drop_schema(&rule);
    }
}

/// The sides' µs per transaction for `bench-report`, each paired with the
/// business insert alone; the 1.15 target is on `Outbox::transaction`.
fn record_figures(clients: usize, sides: &[Vec<f64>; 5]) {
    let [without, with, quiet_with, via_transaction, via_rule] = sides;
    let case = if clients == 1 {
        "1 client".to_string()
    } else {
        format!("{clients} clients")
    };
    let us = |side: &str, rounds: &[f64]| {
        Figure::new("relay", "enqueue", side, "time per transaction", "µs")
            .case(&case)
            .rounds(rounds)
            .lower_is_better()
    };
    let alone = "business insert alone";
    us(alone, without).record();
    us("+ enqueue", with).against(alone, without).record();
    us("+ enqueue, no NOTIFY (diagnostic)", quiet_with)
        .against(alone, without)
        .record();
    us("+ Outbox::transaction", via_transaction)
        .against(alone, without)
        .target_at_most(1.15)
        .record();
    us("+ Outbox::transaction, NOTIFY rule (diagnostic)", via_rule)
        .against(alone, without)
        .record();
}

/// `clients` threads, each running `per_client` transactions of `side` on its
/// own connection; returns the wall time.
fn txn_round(conns: &mut [PgConnection], per_client: usize, side: Side) -> f64 {
    let outbox = Outbox::new("accounts-service");
    let barrier = Barrier::new(conns.len() + 1);
    let mut start = Instant::now();
    std::thread::scope(|scope| {
        for (c, conn) in conns.iter_mut().enumerate() {
            let (barrier, outbox) = (&barrier, &outbox);
            scope.spawn(move || {
                let email = format!("client{c}@example.com");
                let new_user = || NewUser {
                    email: &email,
                    name: "Ada Lovelace",
                    locale: "en-GB",
                };
                barrier.wait();
                for _ in 0..per_client {
                    if matches!(side, Side::Transaction | Side::Rule) {
                        outbox
                            .transaction(conn, |conn, pending| {
                                let user: User = diesel::insert_into(bench_users::table)
                                    .values(&new_user())
                                    .get_result(conn)?;
                                pending.enqueue(&user, Event::Created)?;
                                Ok::<_, outbox_diesel::Error>(())
                            })
                            .expect("transaction");
                        continue;
                    }
                    conn.transaction(|conn| {
                        let user: User = diesel::insert_into(bench_users::table)
                            .values(&new_user())
                            .get_result(conn)?;
                        if side != Side::Without {
                            outbox.enqueue(conn, &user, Event::Created)?;
                        }
                        Ok::<_, outbox_diesel::Error>(())
                    })
                    .expect("transaction");
                }
            });
        }
        barrier.wait();
        start = Instant::now();
    });
    start.elapsed().as_secs_f64()
}
