//! `outbox`: the transactional outbox's command line (migrations, relay, status,
//! parked rows). Run `outbox --help`; see `outbox_diesel::cli` for the commands.

use std::process::ExitCode;

fn main() -> ExitCode {
    outbox_diesel::cli::main()
}
