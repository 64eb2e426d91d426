//! `relay-process`: an outbox relay in a process of its own, for the tests that
//! kill a relay with SIGKILL.
//!
//! ```text
//! relay-process --database-url URL --brokers HOST:PORT [--batch-size N] [--stop-on-stdin-close]
//! ```
//!
//! Runs with the relay tests' short waits (50 ms poll, 50 ms to 2 s backoff,
//! shares of shards checked every 200 ms) until SIGTERM or Ctrl-C, then finishes
//! its batch, prints `published N` on stdout and exits 0. With
//! `--stop-on-stdin-close` it also stops when its standard input closes, so a
//! test that dies does not leave it running. Exits 2 on bad arguments, 1 when
//! the relay cannot start.

use std::process::ExitCode;
use std::time::Duration;

use outbox::kafka::KafkaPublisher;
use outbox_diesel::Relay;
use tokio::signal::unix::{SignalKind, signal};

const USAGE: &str = "usage: relay-process --database-url URL --brokers HOST:PORT \
                     [--batch-size N] [--stop-on-stdin-close]";

struct Args {
    database_url: String,
    brokers: String,
    batch_size: Option<usize>,
    stop_on_stdin_close: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let (mut database_url, mut brokers, mut batch_size) = (None, None, None);
    let mut stop_on_stdin_close = false;
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--database-url" => database_url = Some(value("--database-url")?),
            "--brokers" => brokers = Some(value("--brokers")?),
            "--batch-size" => {
                let text = value("--batch-size")?;
                let rows = text
                    .parse()
                    .map_err(|_| format!("--batch-size {text:?} is not a number"))?;
                batch_size = Some(rows);
            }
            "--stop-on-stdin-close" => stop_on_stdin_close = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        database_url: database_url.ok_or("--database-url is required")?,
        brokers: brokers.ok_or("--brokers is required")?,
        batch_size,
        stop_on_stdin_close,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("relay-process: {error}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(published) => {
            println!("published {published}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("relay-process: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<u64, Box<dyn std::error::Error>> {
    let publisher = KafkaPublisher::new(&args.brokers)?;
    let mut builder = Relay::builder(&args.database_url, publisher)
        .poll_interval(Duration::from_millis(50))
        .backoff(Duration::from_millis(50), Duration::from_secs(2))
        .rebalance_interval(Duration::from_millis(200));
    if let Some(rows) = args.batch_size {
        builder = builder.batch_size(rows);
    }
    let relay = builder.build()?;
    relay.check().await?;

    let mut terminate = signal(SignalKind::terminate())?;
    let (stdin_closed, closed) = tokio::sync::oneshot::channel::<()>();
    if args.stop_on_stdin_close {
        std::thread::spawn(move || {
            // Reads until end of file (or an error): the parent has gone.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = stdin_closed.send(());
        });
    } else {
        // Never sent: the receiver waits for ever.
        std::mem::forget(stdin_closed);
    }
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = closed => {}
        }
    };
    eprintln!("relay-process: running (pid {})", std::process::id());
    let report = relay.run(shutdown).await?;
    Ok(report.published)
}
