//! CPU time read from `/proc`: of a process or thread, of the processes of
//! the machine (PostgreSQL, the Kafka broker), and of the machine.

use std::path::{Path, PathBuf};

/// Linux's `USER_HZ` (clock ticks in `/proc/*/stat`), 100 on every x86 build.
const TICKS: f64 = 100.0;

/// CPU seconds in the `stat` file at `path`, summed over the fields after the
/// command name in `fields` (11 `utime`, 12 `stime`, 13 `cutime`, 14 `cstime`).
fn stat_seconds(path: &str, fields: std::ops::Range<usize>) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    let ticks = stat[stat.rfind(')')? + 1..]
        .split_whitespace()
        .collect::<Vec<_>>()
        .get(fields)?
        .iter()
        .map(|f| f.parse::<f64>().ok())
        .sum::<Option<f64>>()?;
    Some(ticks / TICKS)
}

/// CPU seconds (user + system) of a process or thread from its `stat` file.
pub(crate) fn stat_cpu(path: &str) -> Option<f64> {
    stat_seconds(path, 11..13)
}

/// CPU seconds (user + system) of a process and of its children it has
/// waited for (`cutime`, `cstime`): for PostgreSQL's postmaster, the sessions
/// that ended, whose CPU would otherwise vanish from a sum over live processes.
pub(crate) fn pid_cpu_with_reaped(pid: u32) -> Option<f64> {
    stat_seconds(&format!("/proc/{pid}/stat"), 11..15)
}

/// CPU seconds (user + system) of process `pid`.
pub(crate) fn pid_cpu(pid: u32) -> Option<f64> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// The machine's CPU seconds so far, all cores: busy (user, nice, system,
/// irq, softirq, steal), and in all (busy + idle + iowait).
pub(crate) fn machine() -> (f64, f64) {
    let Some(line) = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| s.lines().next().map(str::to_owned))
    else {
        return (0.0, 0.0);
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    if v.len() < 8 {
        return (0.0, 0.0);
    }
    let busy = (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICKS;
    (busy, busy + (v[3] + v[4]) / TICKS)
}

/// The machine's processes: pid and `/proc/<pid>` directory.
pub(crate) fn processes() -> impl Iterator<Item = (u32, PathBuf)> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            Some((pid, entry.path()))
        })
}

/// Whether the process of `/proc/<pid>` directory `dir` is a Kafka broker (a
/// JVM running `kafka.Kafka`).
pub(crate) fn is_broker(dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(dir.join("cmdline")) else {
        return false;
    };
    let cmdline = String::from_utf8_lossy(&cmdline);
    (cmdline.starts_with("java") || cmdline.contains("/java")) && cmdline.contains("kafka.Kafka")
}

/// The Kafka broker's process, when it runs on this machine.
pub(crate) fn broker_pid() -> Option<u32> {
    processes()
        .find(|(_, dir)| is_broker(dir))
        .map(|(pid, _)| pid)
}
