//! `relay-process`: an outbox relay in a process of its own, for the tests that
//! kill a relay with SIGKILL.
//!
//! ```text
//! relay-process --database-url URL --brokers HOST:PORT [--batch-size N] [--stop-on-stdin-close]
//! ```
//!
//! Runs with the relay tests' short waits (`outbox_tests::relay_test_settings`:
//! 50 ms poll, 50 ms to 2 s backoff, shares of shards checked every 200 ms)
//! until SIGTERM or Ctrl-C, then finishes its batch, prints `published N` on
//! stdout and exits 0. With `--stop-on-stdin-close` it also stops when its
//! standard input closes, so a test that dies does not leave it running.
//! Exits 2 on bad arguments, 1 when the relay cannot start.

use std::process::ExitCode;

use outbox::kafka::KafkaPublisher;
use outbox_diesel::Relay;
use outbox_tests::process::{self, Arguments, required};
use outbox_tests::relay_test_settings;

const USAGE: &str = "usage: relay-process --database-url URL --brokers HOST:PORT \
                     [--batch-size N] [--stop-on-stdin-close]";

struct Args {
    database_url: String,
    brokers: String,
    batch_size: Option<usize>,
    stop_on_stdin_close: bool,
}

fn parse(mut args: Arguments) -> Result<Args, String> {
    let (mut database_url, mut brokers, mut batch_size) = (None, None, None);
    let mut stop_on_stdin_close = false;
    while let Some(flag) = args.flag() {
        match flag.as_str() {
            "--database-url" => database_url = Some(args.value("--database-url")?),
            "--brokers" => brokers = Some(args.value("--brokers")?),
            "--batch-size" => batch_size = Some(args.number("--batch-size")?),
            "--stop-on-stdin-close" => stop_on_stdin_close = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        database_url: required(database_url, "--database-url")?,
        brokers: required(brokers, "--brokers")?,
        batch_size,
        stop_on_stdin_close,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    process::main("relay-process", USAGE, parse, run).await
}

/// Runs the relay until told to stop; returns `published N`.
async fn run(args: Args) -> Result<String, Box<dyn std::error::Error>> {
    let publisher = KafkaPublisher::new(&args.brokers)?;
    let mut builder = relay_test_settings(Relay::builder(&args.database_url, publisher));
    if let Some(rows) = args.batch_size {
        builder = builder.batch_size(rows);
    }
    let relay = builder.build()?;
    relay.check().await?;

    let shutdown = process::shutdown(args.stop_on_stdin_close)?;
    eprintln!("relay-process: running (pid {})", std::process::id());
    let report = relay.run(shutdown).await?;
    Ok(format!("published {}", report.published))
}
