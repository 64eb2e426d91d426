//! `outbox relay`: checks the database and the brokers, then runs the relay
//! until Ctrl-C or SIGTERM.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::Args;
use outbox::kafka::KafkaPublisher;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use super::kafka_args::KafkaArgs;
use super::{Failure, db};
use crate::error::Error;
use crate::registry::SchemaRegistry;
use crate::relay::{
    DEFAULT_BATCH_SIZE, DEFAULT_POLL_INTERVAL, DEFAULT_SHARDS, DEFAULT_SHUTDOWN_GRACE, Relay,
    RelayReport,
};

#[derive(Debug, Args)]
#[command(mut_arg("settings", |arg| arg
    .long("producer-setting")
    .visible_alias("kafka-setting")
    .help("A librdkafka producer setting, e.g. -X compression.type=lz4 (repeatable; overrides \
           the relay's defaults)")))]
pub(super) struct RelayArgs {
    #[command(flatten)]
    kafka: KafkaArgs,

    /// Rows read and sent per batch (1 to 100000)
    #[arg(long, value_name = "ROWS", default_value_t = DEFAULT_BATCH_SIZE)]
    batch_size: usize,

    /// Wait between reads when no NOTIFY arrives, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_POLL_INTERVAL.as_millis() as u64)]
    poll_interval_ms: u64,

    /// Shards of the key space shared by the relays of one outbox (1 to 4096);
    /// every relay of the outbox must use the same number
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SHARDS)]
    shards: u32,

    /// Batches sent before the oldest is acknowledged (1 to 64); an abrupt stop
    /// re-sends at most this many batches [default: enough batches for 800
    /// rows, at least 2: 2 at the default batch size, 8 at 100]
    #[arg(long, value_name = "N")]
    batches_in_flight: Option<usize>,

    /// Once asked to stop (Ctrl-C, SIGTERM), how long to wait for the
    /// broker to acknowledge the batches in flight, in seconds; rows still
    /// unacknowledged then stay in the outbox for the next relay
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_SHUTDOWN_GRACE.as_secs())]
    shutdown_grace_secs: u64,

    /// Serve /metrics (Prometheus), /health/live and /health/ready on this
    /// address while the relay runs, e.g. 127.0.0.1:9464 (a host name is
    /// resolved: localhost:9464)
    #[arg(long, value_name = "ADDR", value_parser = parse_listen_addr)]
    metrics_addr: Option<SocketAddr>,

    /// Only look up the schemas of Avro values in the schema registry
    /// (SCHEMA_REGISTRY_URL), never register them: rows of a schema not
    /// registered wait until `outbox schemas register` has run
    #[arg(long)]
    no_auto_register: bool,
}

/// The schema registry of `SCHEMA_REGISTRY_URL` (and the other
/// `SCHEMA_REGISTRY_*` settings), `None` when the variable is unset or blank.
fn registry_from_env() -> Result<Option<SchemaRegistry>, Failure> {
    SchemaRegistry::from_env_if_set()
        .map_err(|e| Failure::from_error(Some("relay: the schema registry"), &e))
}

/// Parses the address to serve metrics on: `IP:PORT`, or `HOST:PORT` with a
/// host name that resolves (its first address).
fn parse_listen_addr(text: &str) -> Result<SocketAddr, String> {
    const EXPECTED: &str = "expected HOST:PORT or IP:PORT, e.g. 127.0.0.1:9464 or 0.0.0.0:9464";
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    // Without a port, or not split at one: the shape is wrong.
    let has_port = text
        .rsplit_once(':')
        .is_some_and(|(_, port)| port.parse::<u16>().is_ok());
    match text.to_socket_addrs() {
        Ok(mut addrs) => addrs
            .next()
            .ok_or_else(|| format!("{text} resolves to no address; {EXPECTED}")),
        Err(_) if !has_port => Err(EXPECTED.to_owned()),
        Err(error) => Err(format!("cannot resolve {text} ({error}); {EXPECTED}")),
    }
}

pub(super) fn run(url: &str, args: RelayArgs) -> Result<String, Failure> {
    let brokers = args.kafka.brokers()?;

    // Settings first: they fail without waiting for any server.
    let mut publisher = KafkaPublisher::builder(&brokers).client_name("relay");
    for (key, value) in args.kafka.settings() {
        publisher = publisher.set(&key, &value);
    }
    let publisher = publisher
        .build()
        .map_err(|e| Failure::from_error(None, &e))?;
    let mut relay = Relay::builder(db::with_connect_timeout(url), publisher);
    if let Some(addr) = args.metrics_addr {
        relay = relay.serve_metrics(addr);
    }
    let registry = registry_from_env()?;
    let registry_url = registry.as_ref().map(|r| r.url().to_owned());
    if let Some(registry) = registry {
        relay = relay
            .schema_registry(registry)
            .auto_register(!args.no_auto_register);
    } else if args.no_auto_register {
        return Err(Failure::usage(
            "--no-auto-register needs a schema registry: set SCHEMA_REGISTRY_URL",
        ));
    }
    let mut relay = relay
        .batch_size(args.batch_size)
        .poll_interval(Duration::from_millis(args.poll_interval_ms))
        .shards(args.shards);
    if let Some(batches) = args.batches_in_flight {
        relay = relay.batches_in_flight(batches);
    }
    let relay = relay
        .shutdown_grace(Duration::from_secs(args.shutdown_grace_secs))
        .build()
        .map_err(|e| Failure::from_error(None, &e))?;

    // PostgreSQL next (it answers or refuses at once; the outbox tables named
    // with the URL as given), then the relay's own check: the database again
    // and the brokers (which may take the whole timeout).
    drop(db::connect_to_outbox(url)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::from_error(Some("starting the async runtime"), &e))?;
    runtime
        .block_on(relay.check())
        .map_err(|error| match error {
            // The relay's URL has our connect_timeout; name the one the user gave.
            Error::Connection { source, .. } => Failure::from_error(
                None,
                &Error::Connection {
                    url: crate::mask_password(url),
                    source,
                },
            ),
            Error::Database(_) => db::failure(url, "relay check", &error),
            // The brokers' error names them and the cause.
            other => Failure::from_error(None, &other),
        })?;

    init_logging();
    let report = runtime.block_on(async move {
        let shutdown = shutdown_signal()?;
        tracing::info!(
            url = %crate::mask_password(url),
            brokers = %brokers,
            schema_registry = registry_url.as_deref().unwrap_or("none (Avro rows wait)"),
            "relay: starting; stop with Ctrl-C or SIGTERM"
        );
        relay
            .run(shutdown)
            .await
            .map_err(|e| Failure::from_error(Some("relay"), &e))
    })?;
    Ok(report_line(&report))
}

fn report_line(report: &RelayReport) -> String {
    format!(
        "relay stopped: published {}, parked {} ({} failed attempts, {} batches)\n",
        report.published, report.parked, report.failed_attempts, report.batches
    )
}

/// Log lines on stderr, filtered by `RUST_LOG` (default `info`).
fn init_logging() {
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

/// A future that completes on the first Ctrl-C or SIGTERM; the relay then
/// finishes the batch in flight. A second one exits at once: the rows of that
/// batch stay in the outbox and are sent again by the next relay (at least once).
fn shutdown_signal() -> Result<impl Future<Output = ()> + Send + 'static, Failure> {
    let mut signals = Signals::new()?;
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let name = signals.next().await;
        tracing::info!("relay: {name}: finishing the batch in flight (again to stop at once)");
        let _ = stop.send(true);
        let name = signals.next().await;
        eprintln!(
            "error: {name} again: stopped without finishing the batch in flight \
             (its rows stay in the outbox and are sent again)"
        );
        std::process::exit(1);
    });
    Ok(async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    })
}

/// Ctrl-C (SIGINT) and, on Unix, SIGTERM.
struct Signals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Signals {
    #[cfg(unix)]
    fn new() -> Result<Self, Failure> {
        use tokio::signal::unix::{SignalKind, signal};
        let listen =
            |kind| signal(kind).map_err(|e| Failure::from_error(Some("listening for signals"), &e));
        Ok(Signals {
            terminate: listen(SignalKind::terminate())?,
            interrupt: listen(SignalKind::interrupt())?,
        })
    }

    #[cfg(not(unix))]
    fn new() -> Result<Self, Failure> {
        Ok(Signals {})
    }

    /// Waits for the next signal; returns its name.
    #[cfg(unix)]
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    #[cfg(not(unix))]
    async fn next(&mut self) -> &'static str {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metrics_address_is_ip_and_port_or_a_host_that_resolves() {
        assert_eq!(
            parse_listen_addr("0.0.0.0:9464"),
            Ok("0.0.0.0:9464".parse().unwrap())
        );
        assert_eq!(
            parse_listen_addr("[::1]:9464"),
            Ok("[::1]:9464".parse().unwrap())
        );
        let local = parse_listen_addr("localhost:9464").expect("localhost resolves");
        assert!(local.ip().is_loopback(), "{local}");
        assert_eq!(local.port(), 9464);
        let expected = "expected HOST:PORT or IP:PORT, e.g. 127.0.0.1:9464 or 0.0.0.0:9464";
        assert_eq!(parse_listen_addr("9464"), Err(expected.to_owned()));
        assert_eq!(parse_listen_addr("localhost"), Err(expected.to_owned()));
        assert_eq!(
            parse_listen_addr("127.0.0.1:http"),
            Err(expected.to_owned())
        );
        let unknown = parse_listen_addr("no-such-host.invalid:9464").unwrap_err();
        assert!(
            unknown.starts_with("cannot resolve no-such-host.invalid:9464 (")
                && unknown.ends_with(expected),
            "{unknown}"
        );
    }
}
