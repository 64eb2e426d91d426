//! The plumbing of the crate's child-process binaries (`relay-process`,
//! `consumer-process`, in `src/bin`), which the crash tests start, kill and
//! restart: their command line, their `main`, and when they stop; and, on the
//! test's side, [`ChildProcess`], one of them running.
//!
//! Each binary exits 2 on a bad command line (printing the mistake and its
//! usage on stderr), 1 when it cannot run (printing why), and 0 after a clean
//! stop, with its one-line report on stdout.
//!
//! # Examples
//!
//! A binary that runs until it is told to stop:
//!
//! ```no_run
//! use std::process::ExitCode;
//! use outbox_tests::process::{self, Arguments};
//!
//! struct Args {
//!     name: String,
//!     stop_on_stdin_close: bool,
//! }
//!
//! fn parse(mut args: Arguments) -> Result<Args, String> {
//!     let (mut name, mut stop_on_stdin_close) = (None, false);
//!     while let Some(flag) = args.flag() {
//!         match flag.as_str() {
//!             "--name" => name = Some(args.value("--name")?),
//!             "--stop-on-stdin-close" => stop_on_stdin_close = true,
//!             other => return Err(format!("unknown argument {other:?}")),
//!         }
//!     }
//!     Ok(Args { name: process::required(name, "--name")?, stop_on_stdin_close })
//! }
//!
//! async fn run(args: Args) -> Result<String, Box<dyn std::error::Error>> {
//!     process::shutdown(args.stop_on_stdin_close)?.await;
//!     Ok(format!("{} stopped", args.name))
//! }
//!
//! #[tokio::main]
//! async fn main() -> ExitCode {
//!     process::main("sleeper", "usage: sleeper --name NAME", parse, run).await
//! }
//! ```

use std::error::Error;
use std::fmt::Display;
use std::io::Read as _;
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use tokio::signal::unix::{SignalKind, signal};

/// A binary's command line, read flag by flag.
///
/// # Examples
///
/// ```
/// use outbox_tests::process::Arguments;
///
/// let mut args = Arguments::new(["--batch-size", "10", "--name"].map(String::from));
/// assert_eq!(args.flag().as_deref(), Some("--batch-size"));
/// assert_eq!(args.number::<usize>("--batch-size"), Ok(10));
/// assert_eq!(args.flag().as_deref(), Some("--name"));
/// assert_eq!(args.value("--name"), Err("--name needs a value".to_owned()));
/// assert_eq!(args.flag(), None);
/// ```
#[derive(Debug)]
pub struct Arguments {
    args: std::vec::IntoIter<String>,
}

impl Arguments {
    /// `args`, in order (without the program's name).
    pub fn new(args: impl IntoIterator<Item = String>) -> Self {
        Arguments {
            args: args.into_iter().collect::<Vec<_>>().into_iter(),
        }
    }

    /// The process's arguments, after the program's name.
    pub fn from_env() -> Self {
        Self::new(std::env::args().skip(1))
    }

    /// The next flag (`None`: there are no more).
    pub fn flag(&mut self) -> Option<String> {
        self.args.next()
    }

    /// The value that follows `flag`.
    ///
    /// # Errors
    ///
    /// "`flag` needs a value" when there is none.
    pub fn value(&mut self, flag: &str) -> Result<String, String> {
        self.args
            .next()
            .ok_or_else(|| format!("{flag} needs a value"))
    }

    /// The value that follows `flag`, as a number.
    ///
    /// # Errors
    ///
    /// When there is none, or it is not a number.
    pub fn number<T: FromStr>(&mut self, flag: &str) -> Result<T, String> {
        let text = self.value(flag)?;
        text.parse()
            .map_err(|_| format!("{flag} {text:?} is not a number"))
    }
}

/// `value`, or the error "`flag` is required".
///
/// # Examples
///
/// ```
/// use outbox_tests::process::required;
///
/// assert_eq!(required(Some(1), "--n"), Ok(1));
/// assert_eq!(required::<u32>(None, "--n"), Err("--n is required".to_owned()));
/// ```
pub fn required<T>(value: Option<T>, flag: &str) -> Result<T, String> {
    value.ok_or_else(|| format!("{flag} is required"))
}

/// A binary's `main`: parses the command line with `parse` (a mistake: printed
/// with `usage` on stderr, exit 2), runs `run` on it, then prints what `run`
/// returns on stdout (exit 0) or its error on stderr (exit 1). Messages on
/// stderr start with `name: `.
pub async fn main<A, T, F>(
    name: &str,
    usage: &str,
    parse: impl FnOnce(Arguments) -> Result<A, String>,
    run: impl FnOnce(A) -> F,
) -> ExitCode
where
    F: Future<Output = Result<T, Box<dyn Error>>>,
    T: Display,
{
    let args = match parse(Arguments::from_env()) {
        Ok(args) => args,
        Err(error) => {
            eprintln!("{name}: {error}\n{usage}");
            return ExitCode::from(2);
        }
    };
    match run(args).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("{name}: {error}");
            ExitCode::FAILURE
        }
    }
}

/// What a child process stops on: SIGTERM or Ctrl-C, and, with
/// `stop_on_stdin_close`, the end of its standard input (the test that
/// started it, holding the other end, has gone), so a test that dies does
/// not leave it running. Call it inside the runtime, before the work starts:
/// the signals are caught from then on.
///
/// # Errors
///
/// When the signal handler cannot be installed.
pub fn shutdown(
    stop_on_stdin_close: bool,
) -> std::io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut terminate = signal(SignalKind::terminate())?;
    let (stdin_closed, closed) = tokio::sync::oneshot::channel::<()>();
    if stop_on_stdin_close {
        std::thread::spawn(move || {
            // Reads until end of file (or an error): the parent has gone.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = stdin_closed.send(());
        });
    } else {
        // Never sent: the receiver waits for ever.
        std::mem::forget(stdin_closed);
    }
    Ok(async move {
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            _ = closed => {}
        }
    })
}

/// One of the binaries above, started by a test with its standard input and
/// output piped; killed (SIGKILL) on drop if still running. Pass it
/// `--stop-on-stdin-close` too, so it also stops if the test process dies.
///
/// # Examples
///
/// ```no_run
/// # async fn example() {
/// use std::process::Command;
/// use std::time::Duration;
/// use outbox_tests::process::ChildProcess;
///
/// let mut command = Command::new("target/debug/relay-process");
/// command.args(["--database-url", "postgres://...", "--brokers", "127.0.0.1:59092"]);
/// let mut relay = ChildProcess::start("relay-process", command.arg("--stop-on-stdin-close"));
/// relay.assert_running();
/// let printed = relay.terminate(Duration::from_secs(60)).await; // "published N\n"
/// # }
/// ```
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    name: String,
}

impl ChildProcess {
    /// Starts `command`; `name` names it in failure messages.
    ///
    /// # Panics
    ///
    /// When it cannot be started.
    pub fn start(name: &str, command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        ChildProcess {
            child,
            name: name.to_owned(),
        }
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Fails the test if it has exited (it never should by itself).
    pub fn assert_running(&mut self) {
        if let Some(status) = self.status() {
            panic!("{} exited early: {status}", self.name);
        }
    }

    /// SIGKILL, and waits until it is gone: whatever was in flight is cut
    /// where it stands.
    ///
    /// # Panics
    ///
    /// When it had already exited.
    pub fn kill(mut self) {
        self.assert_running();
        let name = &self.name;
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("SIGKILL {name}: {e}"));
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("reap {name}: {e}"));
    }

    /// SIGTERM; waits until it exits and returns what it printed on stdout.
    ///
    /// # Panics
    ///
    /// When it had already exited, takes longer than `timeout` to stop, or
    /// exits with a failure.
    pub async fn terminate(mut self, timeout: Duration) -> String {
        self.assert_running();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed: {status}");
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.status() {
                break status;
            }
            assert!(
                started.elapsed() < timeout,
                "{} did not stop within {timeout:?} of SIGTERM",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(status.success(), "{} exited with {status}", self.name);
        let mut out = String::new();
        self.child
            .stdout
            .take()
            .expect("piped stdout")
            .read_to_string(&mut out)
            .unwrap_or_else(|e| panic!("read the output of {}: {e}", self.name));
        out
    }

    fn status(&mut self) -> Option<std::process::ExitStatus> {
        let name = &self.name;
        self.child
            .try_wait()
            .unwrap_or_else(|e| panic!("{name} status: {e}"))
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
