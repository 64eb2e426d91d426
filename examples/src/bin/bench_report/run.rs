//! Running one step: the benchmark as a child process, its output kept in a
//! log file, a progress line while it runs, and its figures read back.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead as _, BufReader, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use crate::results::{self, Figure, RESULTS_VAR};
use crate::steps::Step;

/// How many of a failed step's last stderr lines the report quotes.
const TAIL: usize = 12;

/// What became of a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Outcome {
    /// The step's name.
    pub(crate) name: String,
    /// The command that ran it.
    pub(crate) command: String,
    /// Its exit status (`exit status: 0`), or why it did not start.
    pub(crate) status: String,
    /// Whether it exited successfully.
    pub(crate) success: bool,
    /// Its wall-clock time in seconds.
    pub(crate) secs: f64,
    /// How many figures it recorded.
    pub(crate) figures: usize,
    /// Its last stderr lines (kept when it failed or recorded nothing).
    pub(crate) stderr_tail: Vec<String>,
    /// Lines of its results file that were not figures.
    pub(crate) bad_lines: Vec<String>,
    /// Its full output.
    pub(crate) log: String,
}

impl Outcome {
    /// Why the step has no figures in the report, or `None` when it has some.
    pub(crate) fn missing_reason(&self) -> Option<String> {
        if self.figures > 0 {
            return None;
        }
        Some(if self.success {
            "it exited successfully but recorded no figures (its results calls are not in yet?)"
                .to_string()
        } else {
            format!("it failed ({})", self.status)
        })
    }
}

/// Where the steps run and write.
pub(crate) struct Runner {
    /// `cargo`, as the one running this binary (`$CARGO`), else from `PATH`.
    pub(crate) cargo: PathBuf,
    /// The workspace root.
    pub(crate) workspace: PathBuf,
    /// Logs and results files of the steps.
    pub(crate) work: PathBuf,
    /// Each bench's executable, from [`Runner::build`].
    pub(crate) executables: HashMap<String, PathBuf>,
}

/// The bench executables among cargo's JSON messages
/// (`--message-format=json`): target name → executable.
pub(crate) fn executables(messages: &[String]) -> HashMap<String, PathBuf> {
    let mut out = HashMap::new();
    for line in messages {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] != "compiler-artifact" {
            continue;
        }
        let is_bench = message["target"]["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == "bench"));
        if let (true, Some(name), Some(executable)) = (
            is_bench,
            message["target"]["name"].as_str(),
            message["executable"].as_str(),
        ) {
            out.insert(name.to_string(), PathBuf::from(executable));
        }
    }
    out
}

/// `2m10s`, `45s`, `1h02m`.
///
/// ```ignore
/// assert_eq!(elapsed(Duration::from_secs(130)), "2m10s");
/// ```
pub(crate) fn elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, s % 3600 / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

impl Runner {
    /// Builds the benches the steps need (`cargo bench --no-run`), so that
    /// compiling does not count in a step's time, and returns each bench's
    /// executable. The steps run those directly, as `cargo bench` would (in
    /// the package's folder, with `--bench`), so that no cargo holds the
    /// build folder's lock for the length of the run. A bench whose
    /// executable is not known (the build failed) runs through `cargo bench`,
    /// which then reports the error.
    pub(crate) fn build(&self, benches: &[&str]) -> HashMap<String, PathBuf> {
        let mut command = Command::new(&self.cargo);
        command.current_dir(&self.workspace).args([
            "bench",
            "--no-run",
            "--message-format=json-render-diagnostics",
            "-p",
            "outbox-examples",
        ]);
        for bench in benches {
            command.args(["--bench", bench]);
        }
        let name = format!("build benches ({})", benches.join(", "));
        let log = self.work.join("build.log");
        let (status, _, stdout) = self.watch(command, &name, "[build] ", &log);
        let executables = executables(&stdout);
        if !status.is_ok_and(|s| s.success()) {
            eprintln!(
                "[build] building failed (see {}); the steps will still run",
                log.display()
            );
        }
        executables
    }

    /// Runs `step` (the `index`-th of `total`) and reads its figures.
    pub(crate) fn run(&self, step: &Step, index: usize, total: usize) -> (Outcome, Vec<Figure>) {
        let slug = slug(&step.name);
        let results_path = self.work.join(format!("{slug}.jsonl"));
        let log = self.work.join(format!("{slug}.log"));
        let _ = std::fs::remove_file(&results_path);
        let mut command = match self.executables.get(step.bench) {
            Some(executable) => {
                let mut command = Command::new(executable);
                command
                    .current_dir(self.workspace.join("examples"))
                    .arg("--bench")
                    .args(&step.args);
                command
            }
            None => {
                let mut command = Command::new(&self.cargo);
                command.current_dir(&self.workspace).args([
                    "bench",
                    "-p",
                    "outbox-examples",
                    "--bench",
                    step.bench,
                ]);
                if !step.args.is_empty() {
                    command.arg("--").args(&step.args);
                }
                command
            }
        };
        for (name, value) in &step.env {
            // The caller's own settings win over the plan's.
            if std::env::var_os(name).is_none() {
                command.env(name, value);
            }
        }
        command.env(RESULTS_VAR, &results_path);
        let started = Instant::now();
        let prefix = format!("[{index}/{total}] ");
        let (status, tail, _) = self.watch(command, &step.name, &prefix, &log);
        let secs = started.elapsed().as_secs_f64();
        let text = std::fs::read_to_string(&results_path).unwrap_or_default();
        let (figures, bad) = results::parse_lines(&text);
        let success = status.as_ref().is_ok_and(|s| s.success());
        let outcome = Outcome {
            name: step.name.clone(),
            command: step.command(),
            status: match &status {
                Ok(status) => status.to_string(),
                Err(error) => format!("could not start {}: {error}", self.cargo.display()),
            },
            success,
            secs,
            figures: figures.len(),
            stderr_tail: if success && !figures.is_empty() {
                Vec::new()
            } else {
                tail
            },
            bad_lines: bad
                .into_iter()
                .map(|(line, error)| format!("line {line}: {error}"))
                .collect(),
            log: log.display().to_string(),
        };
        let verdict = match outcome.missing_reason() {
            None => format!("{} figures", figures.len()),
            Some(reason) => format!("NO FIGURES: {reason}"),
        };
        eprintln!(
            "{prefix}{} … {} ({verdict}; log {})",
            step.name,
            elapsed(started.elapsed()),
            log.display()
        );
        (outcome, figures)
    }

    /// Runs `command` with its output teed to `log`, showing a progress line
    /// (`[3/9] relay drain batch 100 … 2m10s  <its last line>`) while it runs.
    /// Returns its status, its last stderr lines and its stdout lines.
    fn watch(
        &self,
        mut command: Command,
        name: &str,
        prefix: &str,
        log: &Path,
    ) -> (
        std::io::Result<std::process::ExitStatus>,
        Vec<String>,
        Vec<String>,
    ) {
        let bar = progress(prefix, name);
        let file = match std::fs::File::create(log) {
            Ok(file) => Arc::new(Mutex::new(file)),
            Err(error) => {
                bar.finish_and_clear();
                return (Err(error), Vec::new(), Vec::new());
            }
        };
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                bar.finish_and_clear();
                return (Err(error), Vec::new(), Vec::new());
            }
        };
        let last = Arc::new(Mutex::new(String::new()));
        let tail = Arc::new(Mutex::new(VecDeque::new()));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            let (file, last, stdout) = (file.clone(), last.clone(), stdout.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    let _ = writeln!(file.lock().unwrap(), "{line}");
                    // cargo's JSON messages are not progress worth showing
                    if !line.trim().is_empty() && !line.starts_with('{') {
                        *last.lock().unwrap() = line.clone();
                    }
                    stdout.lock().unwrap().push(line);
                }
            }));
        }
        if let Some(err) = child.stderr.take() {
            let (file, last, tail) = (file.clone(), last.clone(), tail.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(err).lines().map_while(Result::ok) {
                    let _ = writeln!(file.lock().unwrap(), "{line}");
                    if line.trim().is_empty() {
                        continue;
                    }
                    *last.lock().unwrap() = line.clone();
                    let mut tail = tail.lock().unwrap();
                    if tail.len() == TAIL {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
            }));
        }
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) => {}
                Err(error) => break Err(error),
            }
            bar.set_message(last.lock().unwrap().trim().to_string());
            std::thread::sleep(Duration::from_millis(250));
        };
        for reader in readers {
            let _ = reader.join();
        }
        bar.finish_and_clear();
        let tail = tail.lock().unwrap().iter().cloned().collect();
        let stdout = std::mem::take(&mut *stdout.lock().unwrap());
        (status, tail, stdout)
    }
}

/// A spinner with the step and its elapsed time on a terminal; on anything
/// else (a pipe, CI) one plain line when the step starts, and none after.
fn progress(prefix: &str, name: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        eprintln!("{prefix}{name} …");
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{prefix}{spinner} {elapsed:>4} {wide_msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(format!("{prefix}{name} … "));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_bench_executables_in_cargo_messages() {
        let messages = [
            r#"{"reason":"compiler-artifact","target":{"kind":["lib"],"name":"outbox"},"executable":null}"#,
            r#"{"reason":"compiler-artifact","target":{"kind":["bench"],"name":"payload"},"executable":"/t/release/deps/payload-abc"}"#,
            r#"{"reason":"build-finished","success":true}"#,
            "not json",
        ]
        .map(String::from);
        let found = executables(&messages);
        assert_eq!(found.len(), 1);
        assert_eq!(
            found["payload"],
            PathBuf::from("/t/release/deps/payload-abc")
        );
    }

    #[test]
    fn elapsed_reads_like_a_clock() {
        assert_eq!(elapsed(Duration::from_secs(45)), "45s");
        assert_eq!(elapsed(Duration::from_secs(130)), "2m10s");
        assert_eq!(elapsed(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(
            slug("relay enqueue (1 and 8 clients)"),
            "relay-enqueue-1-and-8-clients"
        );
    }

    #[test]
    fn a_step_without_figures_says_why() {
        let mut outcome = Outcome {
            name: "relay drain batch 100".into(),
            command: String::new(),
            status: "exit status: 101".into(),
            success: false,
            secs: 3.0,
            figures: 0,
            stderr_tail: vec!["thread 'main' panicked".into()],
            bad_lines: Vec::new(),
            log: String::new(),
        };
        assert_eq!(
            outcome.missing_reason().unwrap(),
            "it failed (exit status: 101)"
        );
        outcome.success = true;
        assert!(outcome.missing_reason().unwrap().contains("no figures"));
        outcome.figures = 2;
        assert_eq!(outcome.missing_reason(), None);
    }
}
