//! Where this process's CPU goes (by thread group), and the relay's
//! PostgreSQL backend's and the broker's.

use std::collections::HashMap;

use crate::common::cpu::{self, pid_cpu, stat_cpu};

/// Thread groups of this process, by thread name.
const GROUPS: [&str; 4] = [
    "tokio workers",
    "librdkafka",
    "rdkafka poller",
    "other threads",
];

fn group_of(thread: &str) -> usize {
    if thread.starts_with("tokio-r") {
        0
    } else if thread.starts_with("rdk:") {
        1
    } else if thread.starts_with("producer pollin") {
        2
    } else {
        3
    }
}

/// CPU used so far by this process's threads, the broker and the machine.
#[derive(Clone, Default)]
pub(crate) struct CpuSnapshot {
    threads: HashMap<u32, (usize, f64)>,
    broker: Option<f64>,
    machine_busy: f64,
    machine_total: f64,
}

/// CPU so far of this process's threads, of the `broker` process and of the machine.
pub(crate) fn cpu_snapshot(broker: Option<u32>) -> CpuSnapshot {
    let mut threads = HashMap::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
                continue;
            };
            let name = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
            if let Some(cpu) = stat_cpu(&format!("/proc/self/task/{tid}/stat")) {
                threads.insert(tid, (group_of(name.trim()), cpu));
            }
        }
    }
    let (busy, total) = cpu::machine();
    CpuSnapshot {
        threads,
        broker: broker.and_then(pid_cpu),
        machine_busy: busy,
        machine_total: total,
    }
}

/// CPU seconds spent between two snapshots.
#[derive(Clone, Debug, Default)]
pub(crate) struct CpuUse {
    /// This process, by [`GROUPS`].
    pub(crate) groups: [f64; 4],
    /// The relay's PostgreSQL backends (their whole life: the relay's session and its gauges').
    pub(crate) backend: f64,
    pub(crate) broker: f64,
    pub(crate) machine_busy: f64,
    pub(crate) machine_total: f64,
}

impl CpuUse {
    pub(crate) fn between(before: &CpuSnapshot, after: &CpuSnapshot, backend: Option<f64>) -> Self {
        let mut groups = [0.0; 4];
        for (tid, (group, cpu)) in &after.threads {
            let earlier = before.threads.get(tid).map_or(0.0, |(_, c)| *c);
            groups[*group] += (cpu - earlier).max(0.0);
        }
        CpuUse {
            groups,
            backend: backend.unwrap_or(0.0),
            broker: match (before.broker, after.broker) {
                (Some(b), Some(a)) => a - b,
                _ => f64::NAN,
            },
            machine_busy: after.machine_busy - before.machine_busy,
            machine_total: after.machine_total - before.machine_total,
        }
    }

    /// This process, all its threads.
    pub(crate) fn process(&self) -> f64 {
        self.groups.iter().sum()
    }

    /// Milliseconds of CPU per 1,000 messages of this process, the backend, the broker.
    fn per_1k(&self, messages: usize) -> [f64; 3] {
        let k = messages as f64 / 1000.0;
        [
            self.process() / k * 1e3,
            self.backend / k * 1e3,
            self.broker / k * 1e3,
        ]
    }

    pub(crate) fn describe(&self, messages: usize) -> String {
        let k = messages as f64 / 1000.0;
        let [process, backend, broker] = self.per_1k(messages);
        let groups: Vec<String> = GROUPS
            .iter()
            .zip(self.groups)
            .filter(|(_, s)| *s > 0.0)
            .map(|(name, s)| format!("{name} {:.1}", s / k * 1e3))
            .collect();
        let busy = if self.machine_total > 0.0 {
            self.machine_busy / self.machine_total * 100.0
        } else {
            f64::NAN
        };
        format!(
            "CPU ms per 1k msgs: process {process:.1} ({}), PG backend {backend:.1}, broker {broker:.1}; machine busy {busy:.0}%",
            groups.join(", ")
        )
    }
}
