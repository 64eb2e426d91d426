//! The `outbox` command line built inside outbox-tests, so that the integration
//! tests can run it (`env!("CARGO_BIN_EXE_outbox-cli")`).

use std::process::ExitCode;

fn main() -> ExitCode {
    outbox_diesel::cli::main()
}
