//! Running `outbox-cli` (the `outbox` command built in this crate) with a
//! deadline, and outbox rows to look at.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::BigInt;
use outbox::{Event, Message, MessageId, Payloads};
use outbox_diesel::Outbox;
use outbox_tests::TestDb;
use serde_json::json;

/// The command under test.
pub(crate) const OUTBOX: &str = env!("CARGO_BIN_EXE_outbox-cli");

/// Time a command that talks to the local services has to finish.
pub(crate) const DEADLINE: Duration = Duration::from_secs(60);

/// `outbox <args>` with none of the environment variables it reads, so only
/// the arguments count.
pub(crate) fn outbox(args: &[&str]) -> Command {
    let mut command = Command::new(OUTBOX);
    command
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .env_remove("RUST_LOG");
    command
}

/// `outbox --database-url <db> <args>`.
pub(crate) fn outbox_on(db: &TestDb, args: &[&str]) -> Command {
    let mut command = outbox(&["--database-url", db.url()]);
    command.args(args);
    command
}

/// What a finished command did.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Finished {
    /// Asserts the exit status and that stderr is empty; returns stdout.
    #[track_caller]
    pub(crate) fn success(&self) -> &str {
        assert_eq!(self.code, Some(0), "expected success: {self:#?}");
        assert_eq!(self.stderr, "", "expected nothing on stderr: {self:#?}");
        &self.stdout
    }

    /// Asserts the exit status; returns the first line of stderr.
    #[track_caller]
    pub(crate) fn failure(&self, code: i32) -> &str {
        assert_eq!(self.code, Some(code), "exit status: {self:#?}");
        self.stderr.lines().next().unwrap_or_default()
    }

    /// Asserts a runtime failure (exit 1) reported on exactly one line; returns it.
    #[track_caller]
    pub(crate) fn one_line_failure(&self) -> &str {
        let line = self.failure(1);
        assert_eq!(
            self.stderr.lines().count(),
            1,
            "a failure is one line: {self:#?}"
        );
        assert!(line.starts_with("error: "), "{self:#?}");
        line
    }
}

/// A started command whose output is being collected.
pub(crate) struct Running {
    child: Child,
    stdout: Option<JoinHandle<String>>,
    stderr: Option<JoinHandle<String>>,
}

impl Running {
    pub(crate) fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits until the command exits, or kills it and fails the test after `timeout`.
    #[track_caller]
    pub(crate) fn wait(mut self, timeout: Duration) -> Finished {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                self.child.kill().ok();
                self.child.wait().ok();
                let (stdout, stderr) = self.output();
                panic!(
                    "`outbox` did not exit within {timeout:?}\nstdout:\n{stdout}\nstderr:\n{stderr}"
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let (stdout, stderr) = self.output();
        Finished {
            code: status.code(),
            stdout,
            stderr,
        }
    }

    /// Kills the command and returns what it printed (for failure messages).
    pub(crate) fn kill(mut self) -> (String, String) {
        self.child.kill().ok();
        self.child.wait().ok();
        self.output()
    }

    fn output(&mut self) -> (String, String) {
        let join = |handle: Option<JoinHandle<String>>| {
            handle
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default()
        };
        (join(self.stdout.take()), join(self.stderr.take()))
    }
}

/// Starts `command` with its output piped.
pub(crate) fn start(command: &mut Command) -> Running {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the outbox-cli binary runs");
    let collect = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).ok();
            text
        })
    };
    let stdout = collect(Box::new(child.stdout.take().expect("piped")));
    let stderr = collect(Box::new(child.stderr.take().expect("piped")));
    Running {
        child,
        stdout: Some(stdout),
        stderr: Some(stderr),
    }
}

/// Runs `command` to its end (at most [`DEADLINE`]).
#[track_caller]
pub(crate) fn run(command: &mut Command) -> Finished {
    start(command).wait(DEADLINE)
}

/// Runs `outbox <args>` with `DATABASE_URL` at a server that is not there,
/// whose URL holds a password: one error line names the server with the
/// password masked, and the password shows nowhere.
#[track_caller]
pub(crate) fn assert_unreachable_database_is_masked(args: &[&str]) {
    let finished = run(outbox(args).env("DATABASE_URL", "postgres://u:secret@127.0.0.1:1/x"));
    let line = finished.one_line_failure();
    assert!(
        line.starts_with(
            "error: could not connect to PostgreSQL at postgres://u:***@127.0.0.1:1/x: "
        ),
        "{args:?}: {line}"
    );
    assert!(!finished.stderr.contains("secret"), "{finished:#?}");
    assert_eq!(finished.stdout, "");
}

/// Runs `outbox <args> -X <setting>`.
#[track_caller]
pub(crate) fn run_with_kafka_setting(args: &[&str], setting: &str) -> Finished {
    run(outbox(args).args(["-X", setting]))
}

/// `outbox <args>` takes Kafka settings (`-X KEY=VALUE`, long name
/// `--<option>`) for a librdkafka `client` ("producer", "consumer") and checks
/// them before contacting anything: one that is not `KEY=VALUE` is a
/// command-line mistake (exit 2), one librdkafka does not know fails, named.
#[track_caller]
pub(crate) fn assert_kafka_settings_are_checked(args: &[&str], option: &str, client: &str) {
    assert_eq!(
        run_with_kafka_setting(args, "nonsense").failure(2),
        format!(
            "error: invalid value 'nonsense' for '--{option} <KEY=VALUE>': \
             expected KEY=VALUE, e.g. compression.type=lz4"
        )
    );
    assert_eq!(
        run_with_kafka_setting(args, "no.such.setting=1").one_line_failure(),
        format!(
            "error: invalid Kafka {client} settings: Client config error: \
             No such configuration property: \"no.such.setting\" no.such.setting ***"
        )
    );
}

/// Snapshots of these tests go to `tests/tests/snapshots/`, named `cli__<name>.snap`:
/// `snapshots().bind(|| insta::assert_snapshot!("cli__name", text))`.
pub(crate) fn snapshots() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(false);
    settings
}

/// A fresh schema with the outbox tables.
pub(crate) fn migrated_db(test: &str) -> TestDb {
    let db = TestDb::new(test);
    let mut conn = db.connect();
    outbox_diesel::migrations::run(&mut conn).expect("migrations run");
    db
}

/// Enqueues one message per `(topic, key)`, in order, in one transaction;
/// returns their message ids.
pub(crate) fn enqueue(conn: &mut PgConnection, rows: &[(&str, &str)]) -> Vec<MessageId> {
    let outbox = Outbox::new("cli-tests");
    conn.transaction(|conn| {
        rows.iter()
            .enumerate()
            .map(|(n, (topic, key))| {
                let payloads = Payloads::new(1, json!({"id": key, "n": n})).unwrap();
                let message = Message::new(
                    Event::Created,
                    "cli-tests",
                    "things",
                    *topic,
                    *key,
                    payloads,
                )?;
                outbox.enqueue_message(conn, &message)
            })
            .collect::<Result<Vec<_>, outbox_diesel::Error>>()
    })
    .expect("enqueue")
}

/// Parks the rows `ids` as the relay does, with `error` as their last error.
pub(crate) fn park(conn: &mut PgConnection, ids: &[i64], error: &str) {
    let ids: Vec<String> = ids.iter().map(ToString::to_string).collect();
    conn.batch_execute(&format!(
        "UPDATE outbox_messages SET parked_at = now(), attempts = 3, last_error = '{error}' \
         WHERE id IN ({})",
        ids.join(", ")
    ))
    .expect("park");
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    count: i64,
}

/// Rows in `outbox_messages`, with `condition` as the `WHERE` clause.
pub(crate) fn count(conn: &mut PgConnection, condition: &str) -> i64 {
    diesel::sql_query(format!(
        "SELECT count(*) AS count FROM outbox_messages WHERE {condition}"
    ))
    .get_result::<Count>(conn)
    .expect("count")
    .count
}
