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
use crate::common::stats::{percentile, upper_median};
use crate::model::{NewUser, User, bench_users};

impl Bench {
    pub(crate) fn enqueue(&mut self) {
        let rounds = self.config.rounds.max(3) + 4;
        println!(
            "\n== enqueue cost: user insert (+ enqueue) per transaction, {rounds} interleaved rounds: \
             without, with, with the NOTIFY trigger disabled (a diagnostic) =="
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
        let mut conns: Vec<PgConnection> = (0..8).map(|_| pg(&schema.url)).collect();
        let mut quiet_conns: Vec<PgConnection> = (0..8).map(|_| pg(&quiet.url)).collect();
        for clients in [1usize, 8] {
            let per_client = if clients == 1 { 2_000 } else { 500 };
            let mut sides: [Vec<f64>; 3] = Default::default();
            // An untimed round of each first.
            for r in 0..=rounds {
                for (side, times) in sides.iter_mut().enumerate() {
                    let conns = if side == 2 {
                        &mut quiet_conns[..clients]
                    } else {
                        &mut conns[..clients]
                    };
                    let secs = txn_round(conns, per_client, side > 0);
                    if r > 0 {
                        times.push(secs / (clients * per_client) as f64 * 1e6);
                    }
                }
            }
            let [without, with, quiet_with] = &sides;
            let fastest = |v: &[f64]| percentile(v, 0.0);
            let ratio_best = fastest(with) / fastest(without);
            let paired: Vec<f64> = with.iter().zip(without).map(|(w, o)| w / o).collect();
            println!(
                "{clients} client(s), us per transaction (wall time / transactions): without {without:.0?}, \
                 with {with:.0?}, with, no NOTIFY {quiet_with:.0?}"
            );
            self.summary.check(
                format!(
                    "enqueue cost, {clients} client(s): with ÷ without (fastest / paired median)"
                ),
                format!("{ratio_best:.3} / {:.3}", upper_median(&paired)),
                "<= 1.3",
                ratio_best <= 1.3,
            );
            self.summary.add(
                "  us per transaction (fastest round): without | with | with, no NOTIFY",
                format!(
                    "{:.0} | {:.0} | {:.0} ({} | {} | {} txn/s)",
                    fastest(without),
                    fastest(with),
                    fastest(quiet_with),
                    group(1e6 / fastest(without)),
                    group(1e6 / fastest(with)),
                    group(1e6 / fastest(quiet_with))
                ),
            );
        }
        drop(conns);
        drop(quiet_conns);
        self.db.drop_schema(&schema);
        self.db.drop_schema(&quiet);
    }
}

/// `clients` threads, each running `per_client` transactions on its own
/// connection; returns the wall time.
fn txn_round(conns: &mut [PgConnection], per_client: usize, enqueue: bool) -> f64 {
    let outbox = Outbox::new("accounts-service");
    let barrier = Barrier::new(conns.len() + 1);
    let mut start = Instant::now();
    std::thread::scope(|scope| {
        for (c, conn) in conns.iter_mut().enumerate() {
            let (barrier, outbox) = (&barrier, &outbox);
            scope.spawn(move || {
                let email = format!("client{c}@example.com");
                barrier.wait();
                for _ in 0..per_client {
                    conn.transaction(|conn| {
                        let user: User = diesel::insert_into(bench_users::table)
                            .values(&NewUser {
                                email: &email,
                                name: "Ada Lovelace",
                                locale: "en-GB",
                            })
                            .get_result(conn)?;
                        if enqueue {
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
