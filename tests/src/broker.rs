//! Stopping and starting the shared Kafka nodes, and restarting the shared
//! PostgreSQL, through `scripts/services.sh`: for the outage tests and the
//! chaos run.
//!
//! Stopping a broker fails every other test that uses it at the same time.
//! `cargo test` runs test binaries one after another (only the tests inside one
//! binary run in parallel), so each outage test lives alone in a binary of its
//! own (`tests/tests/*_broker_outage.rs`, `tests/tests/cluster.rs`).
//!
//! The bench runs one Kafka node (`scripts/services.sh up`) or three
//! (`up --brokers 3`; a bare `up` then keeps three); [`node_count`] says
//! which. Node `n` listens on `127.0.0.1:59092 + 100 × (n - 1)` and has the
//! node id `n` (the script's `KAFKA_PORT` and `SVC_DIR` are honoured here too).
//!
//! [`PrivateCluster`] is a three-node Kafka of a test's own, beside the bench
//! (its own folder and ports), so that a leader kill is tested whatever the
//! bench runs.

mod private;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

pub use private::{PrivateCluster, PrivateNodeOutage};

/// The PLAINTEXT port of node 1 (the script's default); node `n`'s is
/// 100 × (n - 1) above it.
const FIRST_NODE_PORT: u16 = 59092;

fn first_node_port() -> u16 {
    std::env::var("KAFKA_PORT")
        .ok()
        .and_then(|port| port.parse().ok())
        .unwrap_or(FIRST_NODE_PORT)
}

fn services_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// Which services the script acts on: the bench (the environment as it is),
/// or a private set with its own folder and ports (the variables set here).
#[derive(Debug, Default)]
struct Services {
    env: Vec<(&'static str, OsString)>,
}

impl Services {
    /// The shared bench.
    fn bench() -> Self {
        Services::default()
    }

    /// Runs the script with `args`, `DATABASE_URL` set so that `up` and
    /// `down` touch Kafka only, and `KAFKA_BROKERS` unset so that the script
    /// manages it.
    fn run(&self, args: &[&str]) -> Output {
        Command::new("bash")
            .arg(services_script())
            .args(args)
            .env("DATABASE_URL", crate::database_url())
            .env_remove("KAFKA_BROKERS")
            .envs(self.env.iter().map(|(name, value)| (name, value)))
            .output()
            .unwrap_or_else(|e| panic!("could not run scripts/services.sh {}: {e}", args.join(" ")))
    }

    /// `kafka-node stop n --signal …`: returns once the node has exited.
    fn stop_node(&self, n: usize, signal: Signal) {
        let n = n.to_string();
        self.run_ok(&["kafka-node", "stop", &n, "--signal", signal.name()]);
    }

    /// `kafka-node start n`: returns once the node answers; the script's
    /// output when it fails.
    fn start_node(&self, n: usize) -> Result<(), String> {
        self.check(&["kafka-node", "start", &n.to_string()])
    }

    fn run_ok(&self, args: &[&str]) {
        if let Err(failure) = self.check(args) {
            panic!("{failure}");
        }
    }

    fn check(&self, args: &[&str]) -> Result<(), String> {
        let output = self.run(args);
        if output.status.success() {
            return Ok(());
        }
        Err(format!(
            "scripts/services.sh {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// Where the services script keeps its data: `SVC_DIR`, as the script reads it.
fn services_dir() -> PathBuf {
    std::env::var_os("SVC_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/services"),
        PathBuf::from,
    )
}

/// Runs `scripts/services.sh <command> --only kafka` (with `KAFKA_BROKERS`
/// unset, so the script does manage Kafka): PostgreSQL and the schema
/// registry are left as they are.
///
/// # Panics
///
/// When the script fails, with its output.
///
/// # Examples
///
/// ```no_run
/// // Kafka as the bench had it (a bare `up` keeps the node count).
/// outbox_tests::broker::services("up");
/// ```
pub fn services(command: &str) {
    Services::bench().run_ok(&[command, "--only", "kafka"]);
}

/// How many Kafka nodes the bench runs: the count the services script
/// recorded beside the storage it formatted (1 for storage formatted before
/// clusters existed).
///
/// # Panics
///
/// When this checkout's services script has never started Kafka.
///
/// # Examples
///
/// ```no_run
/// let nodes = outbox_tests::broker::node_count();
/// assert!(nodes == 1 || nodes == 3);
/// ```
pub fn node_count() -> usize {
    let kafka = services_dir().join("kafka");
    match std::fs::read_to_string(kafka.join("nodes")) {
        Ok(text) => text.trim().parse().unwrap_or_else(|e| {
            panic!(
                "{}/nodes holds no node count ({text:?}): {e}",
                kafka.display()
            )
        }),
        Err(_) if kafka.join("data/meta.properties").exists() => 1,
        Err(e) => panic!(
            "no Kafka of this checkout's services script ({}/nodes: {e}); {}",
            kafka.display(),
            crate::HOW_TO_START
        ),
    }
}

/// The PLAINTEXT address of node `n` (1-based).
///
/// # Examples
///
/// ```
/// assert_eq!(outbox_tests::broker::node_address(2), "127.0.0.1:59192");
/// ```
pub fn node_address(n: usize) -> String {
    address(first_node_port(), n)
}

/// Node `n`'s address when node 1 listens on `first_port`.
fn address(first_port: u16, n: usize) -> String {
    let offset = u16::try_from(n.saturating_sub(1) * 100).expect("a node number below 600");
    format!("127.0.0.1:{}", first_port + offset)
}

/// Every node's address, comma separated: a bootstrap list that still works
/// while one node is down.
///
/// # Examples
///
/// ```no_run
/// let brokers = outbox_tests::broker::bootstrap();
/// assert!(brokers.starts_with("127.0.0.1:59092"));
/// ```
pub fn bootstrap() -> String {
    (1..=node_count())
        .map(node_address)
        .collect::<Vec<_>>()
        .join(",")
}

fn connects(address: &str) -> bool {
    let address = address.parse().expect("host:port addresses");
    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(1)).is_ok()
}

/// Whether the first of the test brokers accepts a TCP connection.
///
/// # Examples
///
/// ```no_run
/// assert!(outbox_tests::broker::answers());
/// ```
pub fn answers() -> bool {
    let brokers = crate::kafka_brokers();
    connects(brokers.split(',').next().unwrap_or_default())
}

/// Whether node `n` accepts a TCP connection on its PLAINTEXT port.
///
/// # Examples
///
/// ```no_run
/// assert!(outbox_tests::broker::node_answers(1));
/// ```
pub fn node_answers(n: usize) -> bool {
    connects(&node_address(n))
}

/// Stops every test broker (`scripts/services.sh down` for Kafka only) and
/// returns a guard that starts them again when dropped, even when the test
/// fails half-way.
///
/// # Panics
///
/// When a broker still answers afterwards: it was not started by this
/// checkout's services script, so the test cannot stop it.
///
/// # Examples
///
/// ```no_run
/// let outage = outbox_tests::broker::stop();
/// // … the brokers are down …
/// outage.start(); // or drop it
/// ```
#[must_use = "the brokers start again when the guard is dropped"]
pub fn stop() -> Outage {
    let outage = Outage {
        nodes: node_count(),
        started: false,
    };
    services("down");
    assert!(
        !answers() && !(1..=outage.nodes).any(node_answers),
        "a broker still answers after scripts/services.sh down: it was not started by \
         this checkout's scripts/services.sh, so this test cannot stop it"
    );
    outage
}

/// Stopped brokers; see [`stop`].
#[derive(Debug)]
pub struct Outage {
    nodes: usize,
    started: bool,
}

impl Outage {
    /// Starts the brokers again (as many as before) and waits until they answer.
    ///
    /// # Panics
    ///
    /// When the services script fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let outage = outbox_tests::broker::stop();
    /// assert!(!outbox_tests::broker::answers());
    /// outage.start();
    /// assert!(outbox_tests::broker::answers());
    /// ```
    pub fn start(mut self) {
        self.started = true;
        let nodes = self.nodes.to_string();
        Services::bench().run_ok(&["up", "--only", "kafka", "--brokers", &nodes]);
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.started {
            // No panic here: this may run while a failed test unwinds. The
            // count is explicit, although a bare `up` keeps it too.
            let nodes = self.nodes.to_string();
            let _ = Services::bench().run(&["up", "--only", "kafka", "--brokers", &nodes]);
        }
    }
}

/// How [`stop_node`] stops a node.
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::broker::{self, Signal};
///
/// // A crash, then a controlled shutdown; each node starts again when its
/// // guard is dropped.
/// drop(broker::stop_node(1, Signal::Kill));
/// drop(broker::stop_node(1, Signal::Term));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGTERM: a controlled shutdown, waited for (the script kills the
    /// node if it takes longer than 30 s).
    Term,
    /// SIGKILL, at once: a crash.
    Kill,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Signal::Term => "TERM",
            Signal::Kill => "KILL",
        }
    }
}

/// Stops Kafka node `n` (`scripts/services.sh kafka-node stop n --signal …`)
/// and returns a guard that starts it again when dropped. With one node,
/// node 1 is the broker.
///
/// # Panics
///
/// When the script fails (no such node, or it does not exit).
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::broker::{self, Signal};
///
/// let down = broker::stop_node(1, Signal::Kill);
/// assert!(!broker::node_answers(1));
/// down.start(); // returns once node 1 has started and answers; or drop it
/// ```
#[must_use = "the node starts again when the guard is dropped"]
pub fn stop_node(n: usize, signal: Signal) -> NodeOutage {
    Services::bench().stop_node(n, signal);
    NodeOutage {
        node: n,
        started: false,
    }
}

/// Starts Kafka node `n` (`scripts/services.sh kafka-node start n`) and
/// returns once it says it started and answers; at once when it runs. On a
/// cluster, it needs one other node running (a quorum of controllers).
///
/// # Panics
///
/// When the script fails, with its output (the end of the node's log).
///
/// # Examples
///
/// ```no_run
/// outbox_tests::broker::start_node(2);
/// assert!(outbox_tests::broker::node_answers(2));
/// ```
pub fn start_node(n: usize) {
    if let Err(failure) = Services::bench().start_node(n) {
        panic!("{failure}");
    }
}

/// A stopped node; see [`stop_node`].
#[derive(Debug)]
pub struct NodeOutage {
    node: usize,
    started: bool,
}

impl NodeOutage {
    /// The stopped node's number.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_tests::broker::{self, Signal};
    ///
    /// let down = broker::stop_node(1, Signal::Term);
    /// assert!(!broker::node_answers(down.node()));
    /// ```
    pub fn node(&self) -> usize {
        self.node
    }

    /// Starts the node again and returns once it answers; see [`start_node`].
    ///
    /// # Panics
    ///
    /// When the services script fails.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_tests::broker::{self, Signal};
    ///
    /// let down = broker::stop_node(1, Signal::Kill);
    /// down.start();
    /// assert!(broker::node_answers(1));
    /// ```
    pub fn start(mut self) {
        self.started = true;
        start_node(self.node);
    }
}

impl Drop for NodeOutage {
    fn drop(&mut self) {
        if !self.started {
            // No panic here: this may run while a failed test unwinds.
            let _ = Services::bench().start_node(self.node);
        }
    }
}

/// How [`restart_postgres`] shuts PostgreSQL down before starting it again.
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::broker::{PgShutdown, restart_postgres};
///
/// restart_postgres(PgShutdown::Fast); // sessions ended, a checkpoint written
/// restart_postgres(PgShutdown::Immediate); // a crash: recovery at start
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgShutdown {
    /// `pg_ctl -m fast`: sessions are ended, a checkpoint is written.
    Fast,
    /// `pg_ctl -m immediate`: no checkpoint; crash recovery at start.
    Immediate,
}

/// Restarts the services script's PostgreSQL
/// (`scripts/services.sh postgres restart fast|immediate`) and returns once
/// it answers again. Every open session is ended.
///
/// # Panics
///
/// When the script fails (for instance, PostgreSQL is not run by it).
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::broker::{PgShutdown, restart_postgres};
///
/// restart_postgres(PgShutdown::Immediate);
/// ```
pub fn restart_postgres(mode: PgShutdown) {
    let mode = match mode {
        PgShutdown::Fast => "fast",
        PgShutdown::Immediate => "immediate",
    };
    Services::bench().run_ok(&["postgres", "restart", mode]);
}
