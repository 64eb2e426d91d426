//! `consumer-process`: an outbox consumer in a process of its own, for the
//! consumer tests that kill one (SIGKILL) or stop and restart one (SIGTERM).
//!
//! ```text
//! consumer-process --database-url URL --brokers HOST:PORT --group GROUP --topic TOPIC
//!                  --name NAME [--set KEY=VALUE]... [--apply-delay-ms N] [--stop-on-stdin-close]
//!                  [--dead-letter] [--projection]
//! ```
//!
//! Applies the consumer tests' users (route `users`, version 1) from `TOPIC`
//! into the `users` table of the database's schema, and logs each apply in
//! `applies` with `NAME`, in the apply's transaction: a message applied twice
//! would show there twice. Its controller is written by hand against
//! `outbox::Controller`. `--apply-delay-ms` sleeps inside each apply's
//! transaction; `--set` passes librdkafka settings (after the tests' own,
//! `outbox_tests::consumer_test_settings`: 200 ms auto-commit interval, 6 s
//! session timeout). `--dead-letter` sends records that cannot be applied to
//! `TOPIC.dlq` (the failure policy of its controller and of records of other
//! routes); by default they stop their partition. `--projection` makes it a
//! projection named `GROUP` (positions in the database, no inbox rows) whose
//! rebuild truncates `users` and `applies`.
//!
//! Runs until SIGTERM or Ctrl-C (or, with `--stop-on-stdin-close`, until its
//! standard input closes), then prints its report on stdout as
//! `processed=N duplicates=N ignored=N refused=N failed=N retries=N dead_lettered=N stopped=N`
//! and exits 0. Exits 2 on bad arguments, 1 when the consumer cannot start.

use std::process::ExitCode;
use std::time::Duration;

use diesel::sql_types::{BigInt, Integer, Nullable, Text, Uuid};
use diesel_async::RunQueryDsl;
use outbox::{BoxFuture, Context, Controller, Event, HandlerError, Message};
use outbox_diesel::consumer::{self, Consumer, FailurePolicy, Projection};
use outbox_tests::consumer_test_settings;
use outbox_tests::process::{self, Arguments, required};

const USAGE: &str = "usage: consumer-process --database-url URL --brokers HOST:PORT --group GROUP \
                     --topic TOPIC --name NAME [--set KEY=VALUE]... [--apply-delay-ms N] \
                     [--stop-on-stdin-close] [--dead-letter] [--projection]";

struct Args {
    database_url: String,
    brokers: String,
    group: String,
    topic: String,
    name: String,
    settings: Vec<(String, String)>,
    apply_delay: Duration,
    stop_on_stdin_close: bool,
    dead_letter: bool,
    projection: bool,
}

fn parse(mut args: Arguments) -> Result<Args, String> {
    let (mut database_url, mut brokers, mut group, mut topic, mut name) =
        (None, None, None, None, None);
    let mut settings = Vec::new();
    let mut apply_delay = Duration::ZERO;
    let mut stop_on_stdin_close = false;
    let mut dead_letter = false;
    let mut projection = false;
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--database-url" => database_url = Some(args.value("--database-url")?),
            "--brokers" => brokers = Some(args.value("--brokers")?),
            "--group" => group = Some(args.value("--group")?),
            "--topic" => topic = Some(args.value("--topic")?),
            "--name" => name = Some(args.value("--name")?),
            "--set" => {
                let text = args.value("--set")?;
                let (key, value) = text
                    .split_once('=')
                    .ok_or_else(|| format!("--set {text:?} is not KEY=VALUE"))?;
                settings.push((key.to_owned(), value.to_owned()));
            }
            "--apply-delay-ms" => {
                apply_delay = Duration::from_millis(args.number("--apply-delay-ms")?);
            }
            "--stop-on-stdin-close" => stop_on_stdin_close = true,
            "--dead-letter" => dead_letter = true,
            "--projection" => projection = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        database_url: required(database_url, "--database-url")?,
        brokers: required(brokers, "--brokers")?,
        group: required(group, "--group")?,
        topic: required(topic, "--topic")?,
        name: required(name, "--name")?,
        settings,
        apply_delay,
        stop_on_stdin_close,
        dead_letter,
        projection,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    process::main("consumer-process", USAGE, parse, run).await
}

/// Runs the consumer until told to stop; returns its report as one line.
async fn run(args: Args) -> Result<String, Box<dyn std::error::Error>> {
    let pool = consumer::pool(&args.database_url, 8)?;
    let topic: &'static str = Box::leak(args.topic.into_boxed_str());
    let controller = Users {
        topics: Box::leak(vec![topic].into_boxed_slice()),
        name: args.name.clone(),
        apply_delay: args.apply_delay,
    };
    let policy = if args.dead_letter {
        FailurePolicy::dead_letter()
    } else {
        FailurePolicy::stop()
    };
    let mut builder = consumer_test_settings(Consumer::builder(&args.brokers, &args.group, pool))
        .failure_policy(policy)
        .controller(controller);
    for (key, value) in args.settings {
        builder = builder.set(key, value);
    }
    if args.projection {
        builder = builder.projection(Projection::new().reset_sql("TRUNCATE users, applies"));
    }
    let consumer = builder.build()?;

    let shutdown = process::shutdown(args.stop_on_stdin_close)?;
    eprintln!(
        "consumer-process {}: running (pid {})",
        args.name,
        std::process::id()
    );
    let report = consumer.run(shutdown).await?;
    Ok(format!(
        "processed={} duplicates={} ignored={} refused={} failed={} retries={} dead_lettered={} stopped={}",
        report.processed,
        report.duplicates,
        report.ignored,
        report.refused,
        report.failed,
        report.retries,
        report.dead_lettered,
        report.stopped
    ))
}

/// Upserts (created, updated) or deletes (destroyed) a user from its version 1
/// payload, and logs the apply.
struct Users {
    topics: &'static [&'static str],
    name: String,
    apply_delay: Duration,
}

/// The fields of a user's payload (version 1).
struct Fields {
    id: i64,
    email: String,
    name: Option<String>,
    seq: i64,
}

fn fields(message: &Message) -> Result<Fields, HandlerError> {
    let (_, payload) = message.payload_for(&[1]).map_err(HandlerError::permanent)?;
    let missing = |field: &str| HandlerError::permanent(format!("payload without `{field}`"));
    let id = payload["id"].as_i64().ok_or_else(|| missing("id"))?;
    if message.event == Event::Destroyed {
        return Ok(Fields {
            id,
            email: String::new(),
            name: None,
            seq: -1,
        });
    }
    Ok(Fields {
        id,
        email: payload["email"]
            .as_str()
            .ok_or_else(|| missing("email"))?
            .to_owned(),
        name: payload["name"].as_str().map(str::to_owned),
        seq: payload["seq"].as_i64().ok_or_else(|| missing("seq"))?,
    })
}

impl Controller for Users {
    fn route(&self) -> &str {
        "users"
    }

    fn topics(&self) -> &[&str] {
        self.topics
    }

    fn handles(&self, event: &Event) -> bool {
        matches!(event, Event::Created | Event::Updated | Event::Destroyed)
    }

    fn handle<'a>(
        &'a self,
        ctx: &'a mut Context<'_>,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move {
            let user = fields(message)?;
            let seq = if message.event == Event::Destroyed {
                diesel::sql_query("DELETE FROM users WHERE id = $1")
                    .bind::<BigInt, _>(user.id)
                    .execute(ctx.conn())
                    .await?;
                None
            } else {
                diesel::sql_query(
                    "INSERT INTO users (id, email, name, seq) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (id) DO UPDATE \
                     SET email = excluded.email, name = excluded.name, seq = excluded.seq",
                )
                .bind::<BigInt, _>(user.id)
                .bind::<Text, _>(&user.email)
                .bind::<Nullable<Text>, _>(&user.name)
                .bind::<BigInt, _>(user.seq)
                .execute(ctx.conn())
                .await?;
                Some(user.seq)
            };
            if !self.apply_delay.is_zero() {
                tokio::time::sleep(self.apply_delay).await;
            }
            let (partition, offset) = (ctx.partition(), ctx.offset());
            diesel::sql_query(
                "INSERT INTO applies \
                 (message_id, user_id, event, seq, kafka_partition, kafka_offset, consumer) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind::<Uuid, _>(message.id.as_uuid())
            .bind::<BigInt, _>(user.id)
            .bind::<Text, _>(message.event.as_str())
            .bind::<Nullable<BigInt>, _>(seq)
            .bind::<Integer, _>(partition)
            .bind::<BigInt, _>(offset)
            .bind::<Text, _>(&self.name)
            .execute(ctx.conn())
            .await?;
            Ok(())
        })
    }
}
