//! A three-node Kafka cluster of a test's own: the services script run with
//! its own folder and ports, beside the shared bench, which it leaves alone.

use std::ffi::OsString;
use std::path::PathBuf;

use super::{Services, Signal, address, connects, services_dir};

/// Node 1's PLAINTEXT, controller and SASL_SSL ports; node `n`'s are
/// 100 × (n - 1) above. Apart from the bench's (59092-59294); the script
/// reserves them like the bench's, out of the ephemeral range.
const PORTS: [(&str, u16); 3] = [
    ("KAFKA_PORT", 58092),
    ("KAFKA_CONTROLLER_PORT", 58093),
    ("KAFKA_SASL_PORT", 58094),
];
const NODES: usize = 3;

/// A private three-node KRaft cluster (replication factor 3,
/// `min.insync.replicas` 2, as `up --brokers 3` makes it), whatever the
/// shared bench runs: `scripts/services.sh up --only kafka --brokers 3` with
/// `SVC_DIR=target/services-cluster` and node `n` on `127.0.0.1:58092 + 100 ×
/// (n - 1)`. It uses the bench's Kafka jars (nothing is downloaded twice) and
/// needs no PostgreSQL.
///
/// Stopped when dropped, also when the test fails; its storage is kept, so
/// the next start skips formatting. One test at a time per checkout: a
/// second would share (and stop) this one.
///
/// # Examples
///
/// ```no_run
/// use outbox_tests::broker::{PrivateCluster, Signal};
///
/// let cluster = PrivateCluster::start();
/// let brokers = cluster.bootstrap(); // "127.0.0.1:58092,127.0.0.1:58192,127.0.0.1:58292"
/// let down = cluster.stop_node(2, Signal::Kill);
/// assert!(!cluster.node_answers(2));
/// down.start();
/// drop(cluster); // stops all three nodes
/// ```
#[derive(Debug)]
#[must_use = "the cluster stops when dropped"]
pub struct PrivateCluster {
    services: Services,
}

impl PrivateCluster {
    /// Starts the cluster (at once when it runs) and returns once every node
    /// answers.
    ///
    /// # Panics
    ///
    /// When the services script fails, with its output.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let cluster = outbox_tests::broker::PrivateCluster::start();
    /// assert!(cluster.node_answers(3));
    /// ```
    pub fn start() -> Self {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/services-cluster");
        let mut env: Vec<(&'static str, OsString)> = vec![("SVC_DIR", dir.into())];
        env.extend(PORTS.map(|(name, port)| (name, port.to_string().into())));
        if std::env::var_os("KAFKA_JARS").is_none() {
            // The bench's jars, also when its SVC_DIR is not the default.
            env.push(("KAFKA_JARS", services_dir().join("kafka").into()));
        }
        let cluster = PrivateCluster {
            services: Services { env },
        };
        let nodes = NODES.to_string();
        cluster
            .services
            .run_ok(&["up", "--only", "kafka", "--brokers", &nodes]);
        cluster
    }

    /// The PLAINTEXT address of node `n` (1-based).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let cluster = outbox_tests::broker::PrivateCluster::start();
    /// assert_eq!(cluster.node_address(2), "127.0.0.1:58192");
    /// ```
    pub fn node_address(&self, n: usize) -> String {
        address(PORTS[0].1, n)
    }

    /// Every node's address, comma separated: a bootstrap list that still
    /// works while one node is down.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let cluster = outbox_tests::broker::PrivateCluster::start();
    /// assert_eq!(cluster.bootstrap().split(',').count(), 3);
    /// ```
    pub fn bootstrap(&self) -> String {
        (1..=NODES)
            .map(|n| self.node_address(n))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Whether node `n` accepts a TCP connection on its PLAINTEXT port.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// let cluster = outbox_tests::broker::PrivateCluster::start();
    /// assert!(cluster.node_answers(1));
    /// ```
    pub fn node_answers(&self, n: usize) -> bool {
        connects(&self.node_address(n))
    }

    /// Stops node `n` of this cluster, as [`stop_node`](super::stop_node)
    /// does on the bench; the guard starts it again when dropped, unless the
    /// test is failing (the cluster then stops anyway: waiting for the node
    /// would only delay the failure).
    ///
    /// # Panics
    ///
    /// When the script fails (no such node, or it does not exit).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_tests::broker::{PrivateCluster, Signal};
    ///
    /// let cluster = PrivateCluster::start();
    /// let down = cluster.stop_node(1, Signal::Kill);
    /// assert_eq!(down.node(), 1);
    /// ```
    #[must_use = "the node starts again when the guard is dropped"]
    pub fn stop_node(&self, n: usize, signal: Signal) -> PrivateNodeOutage<'_> {
        self.services.stop_node(n, signal);
        PrivateNodeOutage {
            cluster: self,
            node: n,
            started: false,
        }
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        // No panic here: this may run while a failed test unwinds. `down`
        // stops Kafka only (DATABASE_URL is set, see `Services::run`).
        let output = self.services.run(&["down"]);
        if !output.status.success() {
            eprintln!(
                "warning: the private cluster did not stop ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }
}

/// A stopped node of a [`PrivateCluster`]; see [`PrivateCluster::stop_node`].
/// It borrows the cluster, so that it cannot start a node of a cluster that
/// has stopped.
#[derive(Debug)]
pub struct PrivateNodeOutage<'a> {
    cluster: &'a PrivateCluster,
    node: usize,
    started: bool,
}

impl PrivateNodeOutage<'_> {
    /// The stopped node's number.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_tests::broker::{PrivateCluster, Signal};
    ///
    /// let cluster = PrivateCluster::start();
    /// let down = cluster.stop_node(3, Signal::Term);
    /// assert!(!cluster.node_answers(down.node()));
    /// ```
    pub fn node(&self) -> usize {
        self.node
    }

    /// Starts the node again and returns once it answers (which needs a
    /// second node running: a quorum of controllers).
    ///
    /// # Panics
    ///
    /// When the services script fails, with its output (the end of the
    /// node's log).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// use outbox_tests::broker::{PrivateCluster, Signal};
    ///
    /// let cluster = PrivateCluster::start();
    /// let down = cluster.stop_node(2, Signal::Kill);
    /// down.start();
    /// assert!(cluster.node_answers(2));
    /// ```
    pub fn start(mut self) {
        self.started = true;
        if let Err(failure) = self.cluster.services.start_node(self.node) {
            panic!("{failure}");
        }
    }
}

impl Drop for PrivateNodeOutage<'_> {
    fn drop(&mut self) {
        if !self.started && !std::thread::panicking() {
            let _ = self.cluster.services.start_node(self.node);
        }
    }
}
