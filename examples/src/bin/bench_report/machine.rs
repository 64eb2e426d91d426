//! The machine and the source a run measured: CPU, cores, memory, kernel
//! from `/proc`, the git commit, the date and the load average.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

/// Where and when a run measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub(crate) struct Machine {
    /// `model name` of `/proc/cpuinfo`.
    pub(crate) cpu: String,
    /// Cores this process may use.
    pub(crate) cores: usize,
    /// `MemTotal` of `/proc/meminfo`, in GiB.
    pub(crate) memory_gib: f64,
    /// `/proc/sys/kernel/osrelease`.
    pub(crate) kernel: String,
    /// `git rev-parse --short=12 HEAD`, with ` (+ uncommitted changes)` when
    /// the work tree differs.
    pub(crate) commit: String,
    /// When the run started, UTC.
    pub(crate) date: String,
}

impl Machine {
    /// This machine, and the commit of the work tree at `workspace`.
    pub(crate) fn here(workspace: &Path) -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cpu: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown CPU".into()),
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: mem_total_kib(&meminfo).map_or(f64::NAN, |kib| kib / 1024.0 / 1024.0),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            commit: commit(workspace),
            date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }

    /// `AMD EPYC, 2 cores, 23.5 GiB memory, Linux 6.8.0`.
    pub(crate) fn describe(&self) -> String {
        let mut out = format!(
            "{}, {} cores, {:.1} GiB memory",
            self.cpu, self.cores, self.memory_gib
        );
        if !self.kernel.is_empty() {
            out.push_str(&format!(", Linux {}", self.kernel));
        }
        out
    }
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub(crate) fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .filter_map(|line| line.split_once(':'))
        .find(|(key, _)| key.trim() == "model name")
        .map(|(_, value)| value.trim().to_string())
        .filter(|model| !model.is_empty())
}

/// `MemTotal` of a `/proc/meminfo` text, in KiB.
pub(crate) fn mem_total_kib(meminfo: &str) -> Option<f64> {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

fn commit(workspace: &Path) -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .current_dir(workspace)
            .args(args)
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => "unknown".into(),
        Some(head) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{head} (+ uncommitted changes)"),
            _ => head,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc() {
        let cpuinfo = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(cpu_model(cpuinfo).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(cpu_model("processor : 0\n"), None);
        let meminfo = "MemTotal:       24683584 kB\nMemFree:         1000 kB\n";
        assert_eq!(mem_total_kib(meminfo), Some(24_683_584.0));
        let machine = Machine {
            cpu: "AMD EPYC 7B13".into(),
            cores: 2,
            memory_gib: 24_683_584.0 / 1024.0 / 1024.0,
            kernel: "6.8.0".into(),
            commit: "abc".into(),
            date: String::new(),
        };
        assert_eq!(
            machine.describe(),
            "AMD EPYC 7B13, 2 cores, 23.5 GiB memory, Linux 6.8.0"
        );
    }
}
