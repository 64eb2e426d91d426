//! The run's children seen from the run: started (stderr to a log file of
//! their own), killed with SIGKILL and started again, watched for exits of
//! their own (each one a bad count), and, for consumers, their metrics
//! scraped (every second and right before a kill) for the handler failures
//! the library injected and the redeliveries its inbox caught.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// What a consumer's metrics say, summed over the lives of a child.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Scraped {
    /// `outbox_faults_injected_total{kind="handler_failure"}`.
    pub(crate) handler_failures: u64,
    /// `outbox_consumer_duplicates_total`: records the inbox caught as
    /// already applied.
    pub(crate) duplicates: u64,
    /// `outbox_consumer_retries_total`.
    pub(crate) retries: u64,
}

impl Scraped {
    fn add(&mut self, other: Scraped) {
        self.handler_failures += other.handler_failures;
        self.duplicates += other.duplicates;
        self.retries += other.retries;
    }

    /// The counters in a Prometheus text page (absent: 0).
    pub(crate) fn parse(page: &str) -> Scraped {
        let mut scraped = Scraped::default();
        for line in page.lines().filter(|l| !l.starts_with('#')) {
            let Some((name, value)) = line.rsplit_once(' ') else {
                continue;
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            let value = value as u64;
            if name.starts_with("outbox_faults_injected_total")
                && name.contains("kind=\"handler_failure\"")
            {
                scraped.handler_failures += value;
            } else if name.starts_with("outbox_consumer_duplicates_total") {
                scraped.duplicates += value;
            } else if name.starts_with("outbox_consumer_retries_total") {
                scraped.retries += value;
            }
        }
        scraped
    }
}

/// Which kind of child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Relay,
    Consumer,
}

/// How to start one child.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) role: Role,
    pub(crate) name: String,
    /// Arguments after the program (subcommand first).
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

/// An exit the run did not cause.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct UnexpectedExit {
    pub(crate) child: String,
    pub(crate) status: String,
    pub(crate) log: PathBuf,
}

struct Slot {
    spec: Spec,
    child: Option<Child>,
    starts: u32,
    /// The metrics port of the running consumer.
    port: Option<u16>,
    /// Counters of earlier lives, and the last scrape of this one.
    earlier: Scraped,
    current: Scraped,
}

/// The run's children.
pub(crate) struct Processes {
    exe: PathBuf,
    log_dir: PathBuf,
    seed: u64,
    slots: Mutex<Vec<Slot>>,
    unexpected: Mutex<Vec<UnexpectedExit>>,
}

impl Processes {
    pub(crate) fn new(exe: PathBuf, log_dir: PathBuf, seed: u64) -> Self {
        Processes {
            exe,
            log_dir,
            seed,
            slots: Mutex::new(Vec::new()),
            unexpected: Mutex::new(Vec::new()),
        }
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a child of `spec` and keeps it.
    pub(crate) fn add(&self, spec: Spec) -> std::io::Result<()> {
        let mut slot = Slot {
            spec,
            child: None,
            starts: 0,
            port: None,
            earlier: Scraped::default(),
            current: Scraped::default(),
        };
        self.start(&mut slot)?;
        self.slots().push(slot);
        Ok(())
    }

    fn log_path(&self, name: &str) -> PathBuf {
        self.log_dir.join(format!("{name}.log"))
    }

    fn start(&self, slot: &mut Slot) -> std::io::Result<()> {
        slot.starts += 1;
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(&slot.spec.name))?;
        writeln!(
            log,
            "=== chaos: start {} of {} at {} ===",
            slot.starts,
            slot.spec.name,
            chrono::Utc::now().to_rfc3339()
        )?;
        let mut command = Command::new(&self.exe);
        command.args(&slot.spec.args);
        if slot.spec.role == Role::Consumer {
            let port = free_port()?;
            // Each life draws other handler failures, reproducibly.
            let fault_seed = self
                .seed
                .wrapping_mul(31)
                .wrapping_add(u64::from(slot.starts))
                .wrapping_add(hash(&slot.spec.name));
            command.args([
                "--metrics-port".to_owned(),
                port.to_string(),
                "--fault-seed".to_owned(),
                fault_seed.to_string(),
            ]);
            slot.port = Some(port);
        }
        command
            .envs(slot.spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(log);
        slot.child = Some(command.spawn()?);
        Ok(())
    }

    /// Names of the children of `role`.
    pub(crate) fn names(&self, role: Role) -> Vec<String> {
        self.slots()
            .iter()
            .filter(|s| s.spec.role == role)
            .map(|s| s.spec.name.clone())
            .collect()
    }

    /// SIGKILLs child `name` (its metrics scraped first), waits until it is
    /// gone, and starts it again after `pause`.
    pub(crate) async fn kill_and_restart(
        &self,
        name: &str,
        pause: Duration,
    ) -> std::io::Result<()> {
        self.scrape_one(name).await;
        {
            let mut slots = self.slots();
            let slot = slots
                .iter_mut()
                .find(|s| s.spec.name == name)
                .ok_or_else(|| std::io::Error::other(format!("no child {name}")))?;
            if let Some(mut child) = slot.child.take() {
                child.kill()?;
                child.wait()?;
            }
            slot.end_life();
        }
        tokio::time::sleep(pause).await;
        let mut slots = self.slots();
        let slot = slots
            .iter_mut()
            .find(|s| s.spec.name == name)
            .ok_or_else(|| std::io::Error::other(format!("no child {name}")))?;
        self.start(slot)
    }

    /// Children that exited by themselves: recorded, and started again.
    pub(crate) fn watch(&self) {
        let mut slots = self.slots();
        for slot in slots.iter_mut() {
            let exited = match slot.child.as_mut().map(Child::try_wait) {
                Some(Ok(Some(status))) => Some(status.to_string()),
                Some(Err(error)) => Some(format!("cannot be waited for: {error}")),
                _ => None,
            };
            if let Some(status) = exited {
                slot.child = None;
                slot.end_life();
                self.unexpected
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(UnexpectedExit {
                        child: slot.spec.name.clone(),
                        status,
                        log: self.log_path(&slot.spec.name),
                    });
                if let Err(error) = self.start(slot) {
                    eprintln!("chaos: cannot start {} again: {error}", slot.spec.name);
                }
            }
        }
    }

    /// Scrapes every consumer's metrics.
    pub(crate) async fn scrape(&self) {
        for name in self.names(Role::Consumer) {
            self.scrape_one(&name).await;
        }
    }

    async fn scrape_one(&self, name: &str) {
        let target = self
            .slots()
            .iter()
            .find(|s| s.spec.name == name && s.child.is_some())
            .and_then(|s| Some((s.port?, s.starts)));
        let Some((port, starts)) = target else { return };
        let Some(page) = get_metrics(port).await else {
            return; // not serving yet, or gone: the next scrape
        };
        let scraped = Scraped::parse(&page);
        let mut slots = self.slots();
        if let Some(slot) = slots
            .iter_mut()
            .find(|s| s.spec.name == name && s.starts == starts)
        {
            slot.current = scraped;
        }
    }

    /// The consumers' counters so far, every life of every consumer.
    pub(crate) fn scraped(&self) -> Scraped {
        let mut total = Scraped::default();
        for slot in self.slots().iter() {
            total.add(slot.earlier);
            total.add(slot.current);
        }
        total
    }

    pub(crate) fn unexpected_exits(&self) -> Vec<UnexpectedExit> {
        self.unexpected
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Scrapes, then stops every child with SIGTERM (SIGKILL after `timeout`).
    pub(crate) async fn stop_all(&self, timeout: Duration) {
        self.scrape().await;
        let mut children: Vec<(String, Child)> = Vec::new();
        for slot in self.slots().iter_mut() {
            if let Some(child) = slot.child.take() {
                children.push((slot.spec.name.clone(), child));
            }
        }
        for (_, child) in &children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        let started = Instant::now();
        for (name, mut child) in children {
            loop {
                match child.try_wait() {
                    Ok(Some(status)) if !status.success() => {
                        eprintln!("chaos: {name} stopped with {status}");
                        break;
                    }
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if started.elapsed() > timeout => {
                        eprintln!("chaos: {name} did not stop within {timeout:?}: SIGKILL");
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        }
    }
}

impl Slot {
    fn end_life(&mut self) {
        self.earlier.add(self.current);
        self.current = Scraped::default();
        self.port = None;
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for slot in self.slots().iter_mut() {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// A port of 127.0.0.1 free right now.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// The body of `GET /metrics` on `port`, within a second.
async fn get_metrics(port: u16) -> Option<String> {
    let fetch = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        stream
            // HTTP/1.0: a plain body (no chunks), and the server closes.
            .write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .ok()?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await.ok()?;
        let response = String::from_utf8(response).ok()?;
        let (head, body) = response.split_once("\r\n\r\n")?;
        (head.split(' ').nth(1) == Some("200")).then(|| body.to_owned())
    };
    tokio::time::timeout(Duration::from_secs(1), fetch)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_a_metrics_page() {
        let page = "# TYPE outbox_consumer_duplicates_total counter\n\
            outbox_consumer_duplicates_total{topic=\"a\"} 3\n\
            outbox_consumer_duplicates_total{topic=\"b\"} 2\n\
            outbox_faults_injected_total{kind=\"handler_failure\"} 7\n\
            outbox_faults_injected_total{kind=\"handler_delay\"} 9\n\
            outbox_consumer_retries_total{topic=\"a\"} 8\n";
        assert_eq!(
            Scraped::parse(page),
            Scraped {
                handler_failures: 7,
                duplicates: 5,
                retries: 8
            }
        );
    }
}
