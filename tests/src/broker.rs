//! Stopping and starting the shared Kafka broker, for the outage tests.
//!
//! Stopping the broker fails every other test that uses it at the same time.
//! `cargo test` runs test binaries one after another (only the tests inside one
//! binary run in parallel), so each outage test lives alone in a binary of its
//! own (`tests/tests/*_broker_outage.rs`).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

fn services_script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/services.sh")
}

/// Runs `scripts/services.sh <command>` with `DATABASE_URL` set, so only Kafka
/// is touched (and `KAFKA_BROKERS` unset, so the script does manage Kafka).
///
/// # Panics
///
/// When the script fails, with its output.
pub fn services(command: &str) {
    let output = Command::new("bash")
        .arg(services_script())
        .arg(command)
        .env("DATABASE_URL", crate::database_url())
        .env_remove("KAFKA_BROKERS")
        .output()
        .unwrap_or_else(|e| panic!("could not run scripts/services.sh {command}: {e}"));
    assert!(
        output.status.success(),
        "scripts/services.sh {command} failed ({}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
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
    let first = brokers.split(',').next().unwrap_or_default().to_owned();
    std::net::TcpStream::connect_timeout(
        &first
            .parse()
            .expect("KAFKA_BROKERS holds host:port addresses"),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Stops the test broker (`scripts/services.sh down` for Kafka only) and
/// returns a guard that starts it again when dropped, even when the test
/// fails half-way.
///
/// # Panics
///
/// When the broker still answers afterwards: it was not started by this
/// checkout's services script, so the test cannot stop it.
///
/// # Examples
///
/// ```no_run
/// let outage = outbox_tests::broker::stop();
/// // … the broker is down …
/// outage.start(); // or drop it
/// ```
#[must_use = "the broker starts again when the guard is dropped"]
pub fn stop() -> Outage {
    let outage = Outage { started: false };
    services("down");
    assert!(
        !answers(),
        "the broker still answers after scripts/services.sh down: it was not started by \
         this checkout's scripts/services.sh, so this test cannot stop it"
    );
    outage
}

/// A stopped broker; see [`stop`].
#[derive(Debug)]
pub struct Outage {
    started: bool,
}

impl Outage {
    /// Starts the broker again and waits until it answers.
    ///
    /// # Panics
    ///
    /// When the services script fails.
    pub fn start(mut self) {
        self.started = true;
        services("up");
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if !self.started && !answers() {
            let _ = Command::new("bash")
                .arg(services_script())
                .arg("up")
                .env("DATABASE_URL", crate::database_url())
                .env_remove("KAFKA_BROKERS")
                .status();
        }
    }
}
