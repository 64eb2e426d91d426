//! The `outbox` command line: migrations, the relay, the operator's view of
//! the outbox (status, parked rows), and of the consumers (stopped partitions,
//! dead-letter topics, consumer groups' offsets, projections).
//!
//! ```text
//! outbox [--database-url URL] migrations run | print | write <DIR>
//! outbox migrations print --roles [--schema S] [--app-role R] [--relay-role R] [--consumer-role R]
//! outbox [--database-url URL] relay [--brokers HOSTS] [--batch-size N] [--poll-interval-ms MS]
//!                                   [--shards N] [--metrics-addr ADDR] [-X KEY=VALUE]...
//! outbox [--database-url URL] status [--json]
//! outbox [--database-url URL] parked list [--limit N] [--json]
//! outbox [--database-url URL] parked retry (<ID>... | --all)
//! outbox [--database-url URL] parked discard (<ID>... | --all)
//! outbox [--database-url URL] partitions list [--group GROUP] [--all] [--json]
//! outbox [--database-url URL] partitions resume --group GROUP --topic TOPIC --partition N
//! outbox [--database-url URL] partitions skip --group GROUP --topic TOPIC --partition N
//!                                             --reason TEXT [--json]
//! outbox [--database-url URL] projections list [--json]
//! outbox [--database-url URL] projections rebuild <NAME> [--wait]
//! outbox dlq replay <DLQ_TOPIC> [--group GROUP] [--brokers HOSTS] [-X KEY=VALUE]...
//! outbox consumer reset --group GROUP --topic TOPIC... --to earliest|latest|TIME|OFFSET
//!                       [--dry-run] [--json] [--brokers HOSTS] [-X KEY=VALUE]...
//! outbox topics create <TOPIC>... [--dlq] --partitions N --replication-factor N
//!                                 [--brokers HOSTS] [-X KEY=VALUE]...
//! outbox schemas export --dir DIR          (a binary made with `main_with`)
//! outbox schemas check --against DIR       (likewise)
//! ```
//!
//! `--database-url` defaults to `DATABASE_URL`, `--brokers` to `KAFKA_BROKERS`;
//! there is no other default. A failure prints one line on stderr, `error: `
//! followed by what failed and where (passwords masked), and exits with 1; a
//! command line clap rejects exits with 2.
//!
//! Enabled by the crate feature `cli` (on by default), which builds the `outbox`
//! binary. The module is public so that other binaries (a service's own
//! `main`, a test crate) can embed the same command line.

mod consumer;
mod db;
mod dlq;
mod kafka_args;
mod output;
mod partitions;
mod projections;
mod relay;
mod roles;
mod schemas;
mod topics;

pub use schemas::Schemas;

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::ops::{self, Applied, Selection};

/// Runs the `outbox` command line on this process's arguments and returns its
/// exit status: 0 on success, 1 when a command fails, 2 when the command line
/// is wrong.
///
/// # Examples
///
/// A binary that is the `outbox` command:
///
/// ```no_run
/// fn main() -> std::process::ExitCode {
///     outbox_diesel::cli::main()
/// }
/// ```
pub fn main() -> ExitCode {
    run(Schemas::new(), std::env::args_os())
}

/// [`main`] in a service's own binary, which knows its models: `outbox schemas`
/// exports the schemas of those it produces and checks those it consumes.
///
/// # Examples
///
/// See [`Schemas`].
pub fn main_with(schemas: Schemas) -> ExitCode {
    run(schemas, std::env::args_os())
}

/// [`main`] on the arguments `args` (the first one is the program's name).
fn run(schemas: Schemas, args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> ExitCode {
    let cli = match parse(args) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version go to stdout with 0; mistakes to stderr with 2.
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match execute(cli, &schemas).and_then(|output| write_stdout(&output)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// The command line, noting whether `--database-url` was on it (rather than
/// in `DATABASE_URL`): commands printed for the user to run then carry it.
fn parse(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> clap::error::Result<Cli> {
    use clap::{CommandFactory, FromArgMatches};
    let matches = Cli::command().try_get_matches_from(args)?;
    let mut cli = Cli::from_arg_matches(&matches)?;
    cli.url_on_command_line =
        matches.value_source("database_url") == Some(clap::parser::ValueSource::CommandLine);
    Ok(cli)
}

/// Transactional outbox and idempotent inbox on PostgreSQL and Kafka:
/// migrations, the relay and the rows it has not sent yet, the partitions
/// consumers stopped, and dead-letter topics.
#[derive(Debug, Parser)]
#[command(
    name = "outbox",
    version,
    propagate_version = true,
    max_term_width = 100
)]
struct Cli {
    /// PostgreSQL URL of the outbox, e.g. postgres://user:password@host:5432/db; its
    /// search_path (`?options=-c%20search_path%3Dmy_schema`) selects the schema
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        hide_env_values = true,
        value_name = "URL"
    )]
    database_url: Option<String>,

    /// `database_url` came from `--database-url`, not `DATABASE_URL`.
    #[arg(skip)]
    url_on_command_line: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create the outbox tables, or hand their SQL to your own migrations
    #[command(subcommand)]
    Migrations(MigrationsCommand),
    /// Publish committed outbox rows to Kafka until Ctrl-C or SIGTERM
    Relay(relay::RelayArgs),
    /// Rows waiting for the relay, parked and held back, per topic
    Status {
        /// Print the status as JSON
        #[arg(long)]
        json: bool,
    },
    /// Rows the relay can never publish as they are: list, retry or discard them
    #[command(subcommand)]
    Parked(ParkedCommand),
    /// Partitions consumers stopped on a record they could not apply: list,
    /// resume or skip them
    #[command(subcommand)]
    Partitions(partitions::PartitionsCommand),
    /// Projections (consumers whose positions live in the database): list them,
    /// or rebuild one from the earliest records
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Dead-letter topics: send their records back to their topic
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Consumer groups: reset their committed offsets (stop their consumers first)
    #[command(subcommand)]
    Consumer(consumer::ConsumerCommand),
    /// Kafka topics: create those of your models, and their dead-letter topics
    #[command(subcommand)]
    Topics(topics::TopicsCommand),
    /// Avro schemas of the models of a binary made with `main_with`: export them, or
    /// check its consumers against a producer's export
    #[command(subcommand)]
    Schemas(schemas::SchemasCommand),
}

#[derive(Debug, Subcommand)]
enum MigrationsCommand {
    /// Apply the migrations not yet applied (recorded in __diesel_schema_migrations)
    Run,
    /// Print the migration's SQL, or with --roles the GRANTs of least-privilege roles
    Print(roles::PrintArgs),
    /// Write the migration into DIR (a Diesel migrations folder), for `diesel migration run`
    Write {
        /// The migrations folder, e.g. ./migrations
        dir: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum ParkedCommand {
    /// List parked rows, oldest first, with the error that parked them
    List {
        /// Rows to show at most
        #[arg(long, value_name = "ROWS", default_value_t = 100, value_parser = at_least_one)]
        limit: i64,
        /// Print the rows as JSON
        #[arg(long)]
        json: bool,
    },
    /// Make parked rows wait for the relay again (fix the cause first)
    Retry(SelectArgs),
    /// Delete parked rows: they will never be published
    Discard(SelectArgs),
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
struct SelectArgs {
    /// Ids of parked rows (the ID column of `outbox parked list`)
    #[arg(value_name = "ID")]
    ids: Vec<i64>,
    /// Every parked row
    #[arg(long)]
    all: bool,
}

impl SelectArgs {
    fn selection(&self) -> Selection {
        if self.all {
            Selection::All
        } else {
            Selection::Ids(self.ids.clone())
        }
    }
}

fn at_least_one(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(n) if n >= 1 => Ok(n),
        Ok(_) => Err("must be at least 1".to_owned()),
        Err(e) => Err(e.to_string()),
    }
}

/// Why a command failed: one line for stderr, and the exit status.
#[derive(Debug)]
struct Failure {
    message: String,
    code: u8,
    /// What was done before the failure, for stdout.
    output: String,
}

impl Failure {
    /// The command line is wrong or incomplete (exit 2, as clap's own errors).
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 2,
            output: String::new(),
        }
    }

    /// The command failed (exit 1).
    fn runtime(message: impl Into<String>) -> Self {
        Failure {
            message: message.into(),
            code: 1,
            output: String::new(),
        }
    }

    /// `error`'s chain as the failure, after `context` when there is one.
    fn from_error(context: Option<&str>, error: &(dyn std::error::Error + 'static)) -> Self {
        let chain = output::one_line(error);
        Failure::runtime(match context {
            Some(context) => format!("{context}: {chain}"),
            None => chain,
        })
    }

    fn report(self) -> ExitCode {
        let _ = write_stdout(&self.output);
        eprintln!("error: {}", self.message);
        ExitCode::from(self.code)
    }
}

fn execute(cli: Cli, schemas: &Schemas) -> Result<String, Failure> {
    let url = cli.database_url.filter(|url| !url.trim().is_empty());
    let url = || url.as_deref().ok_or_else(db::no_database);
    match cli.command {
        Command::Schemas(command) => schemas::run(schemas, command),
        Command::Migrations(MigrationsCommand::Print(args)) => roles::print(args),
        Command::Migrations(MigrationsCommand::Write { dir }) => {
            let folders = crate::migrations::write_to(&dir)
                .map_err(|e| Failure::from_error(Some("migrations write"), &e))?;
            Ok(folders
                .iter()
                .map(|folder| format!("wrote {} (up.sql, down.sql)\n", folder.display()))
                .collect())
        }
        Command::Migrations(MigrationsCommand::Run) => {
            let url = url()?;
            let mut conn = db::connect(url)?;
            let applied = crate::migrations::run(&mut conn).map_err(|e| {
                Failure::from_error(Some(&format!("at {}", crate::mask_password(url))), &e)
            })?;
            Ok(if applied.is_empty() {
                "up to date: every outbox migration is applied\n".to_owned()
            } else {
                format!("applied migration {}\n", applied.join(", "))
            })
        }
        Command::Relay(args) => relay::run(url()?, args),
        Command::Status { json } => {
            let url = url()?;
            let mut conn = db::connect_to_outbox(url)?;
            let status = ops::status(&mut conn).map_err(|e| db::failure(url, "status", &e))?;
            if json {
                output::json(&status)
            } else {
                Ok(output::status(&status))
            }
        }
        Command::Parked(ParkedCommand::List { limit, json }) => {
            let url = url()?;
            let mut conn = db::connect_to_outbox(url)?;
            // One more than asked, to tell whether there are more.
            let mut rows = ops::parked(&mut conn, limit.saturating_add(1))
                .map_err(|e| db::failure(url, "parked list", &e))?;
            let more = rows.len() as i64 > limit;
            rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
            if json {
                output::json(&rows)
            } else {
                Ok(output::parked(&rows, more))
            }
        }
        Command::Parked(ParkedCommand::Retry(select)) => {
            let url = url()?;
            let mut conn = db::connect_to_outbox(url)?;
            let applied = ops::retry_parked(&mut conn, &select.selection())
                .map_err(|e| db::failure(url, "parked retry", &e))?;
            applied_or_fail(&applied, "retried", "waiting for the relay again")
        }
        Command::Parked(ParkedCommand::Discard(select)) => {
            let url = url()?;
            let mut conn = db::connect_to_outbox(url)?;
            let applied = ops::discard_parked(&mut conn, &select.selection())
                .map_err(|e| db::failure(url, "parked discard", &e))?;
            applied_or_fail(&applied, "discarded", "deleted without publishing")
        }
        Command::Partitions(command) => {
            let shown = cli.url_on_command_line;
            partitions::run(url()?, shown, command)
        }
        Command::Dlq(command) => dlq::run(command),
        Command::Consumer(command) => consumer::run(command),
        Command::Projections(command) => projections::run(url()?, command),
        Command::Topics(command) => topics::run(command),
    }
}

/// What a retry or discard did, or a failure naming the ids that were not
/// parked (after printing what was done with the others).
fn applied_or_fail(applied: &Applied, done: &str, then: &str) -> Result<String, Failure> {
    let rows = |n: usize| if n == 1 { "row" } else { "rows" };
    let summary = match applied.count {
        0 => format!("nothing {done}"),
        n => format!("{done} {n} parked {}", rows(n)),
    };
    if applied.is_complete() {
        return Ok(if applied.count == 0 {
            "no parked rows: nothing to do\n".to_owned()
        } else {
            format!("{summary}: {then}\n")
        });
    }
    let mut reasons: Vec<(i64, &str)> = applied
        .not_parked
        .iter()
        .map(|&id| (id, "waiting for the relay"))
        .chain(applied.missing.iter().map(|&id| (id, "not in the outbox")))
        .collect();
    reasons.sort_unstable();
    let listed: Vec<String> = reasons
        .iter()
        .map(|(id, why)| format!("{id} ({why})"))
        .collect();
    let mut failure = Failure::runtime(format!(
        "not parked, left as they are: {}; {summary}",
        listed.join(", ")
    ));
    if applied.count > 0 {
        failure.output = format!("{summary}: {then}\n");
    }
    Err(failure)
}

/// Writes `text` to stdout; a closed pipe (`outbox status | head -1`) is not
/// an error.
fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::from_error(Some("writing to stdout"), &e))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn retry_takes_ids_or_all_not_both_not_neither() {
        let parse =
            |args: &[&str]| Cli::try_parse_from(["outbox", "parked", "retry"].iter().chain(args));
        assert!(parse(&["1", "2"]).is_ok());
        assert!(parse(&["--all"]).is_ok());
        assert!(parse(&[]).is_err());
        assert!(parse(&["1", "--all"]).is_err());
        assert!(parse(&["x"]).is_err());
    }

    #[test]
    fn resume_takes_a_group_a_topic_and_a_partition() {
        let parse = |args: &[&str]| {
            Cli::try_parse_from(["outbox", "partitions", "resume"].iter().chain(args))
        };
        assert!(parse(&["--group", "g", "--topic", "t", "--partition", "0"]).is_ok());
        assert!(parse(&["--group", "g", "--topic", "t"]).is_err());
        assert!(parse(&["--group", "g", "--topic", "t", "--partition", "x"]).is_err());
        assert!(parse(&["--group", "g", "--topic", "t", "--partition=-1"]).is_err());
    }

    #[test]
    fn replay_has_a_default_group() {
        let cli = Cli::try_parse_from(["outbox", "dlq", "replay", "orders.dlq"]).unwrap();
        let Command::Dlq(command) = cli.command else {
            panic!("{cli:?}");
        };
        assert!(format!("{command:?}").contains("group: \"outbox-dlq-replay\""));
    }

    #[test]
    fn incomplete_retry_names_each_id_with_its_reason() {
        let applied = Applied {
            count: 1,
            not_parked: vec![7],
            missing: vec![3, 9],
        };
        let failure = applied_or_fail(&applied, "retried", "then").unwrap_err();
        assert_eq!(
            failure.message,
            "not parked, left as they are: 3 (not in the outbox), 7 (waiting for the relay), \
             9 (not in the outbox); retried 1 parked row"
        );
        assert_eq!(failure.code, 1);
        assert_eq!(failure.output, "retried 1 parked row: then\n");
    }
}
