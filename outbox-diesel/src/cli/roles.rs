//! `outbox migrations print [--roles]`: the migration's SQL, or the GRANTs of
//! the least-privilege roles ([`crate::roles`]).

use clap::Args;

use super::Failure;
use crate::roles::{
    DEFAULT_APP_ROLE, DEFAULT_CONSUMER_ROLE, DEFAULT_RELAY_ROLE, DEFAULT_SCHEMA, Roles,
};

#[derive(Debug, Args)]
pub(super) struct PrintArgs {
    /// Print the GRANTs of the application, relay and consumer roles instead
    #[arg(long)]
    roles: bool,
    /// The schema of the outbox tables
    #[arg(long, value_name = "SCHEMA", default_value = DEFAULT_SCHEMA, requires = "roles")]
    schema: String,
    /// The role the application enqueues as
    #[arg(long, value_name = "ROLE", default_value = DEFAULT_APP_ROLE, requires = "roles")]
    app_role: String,
    /// The role the relay runs as
    #[arg(long, value_name = "ROLE", default_value = DEFAULT_RELAY_ROLE, requires = "roles")]
    relay_role: String,
    /// The role the consumer runs as
    #[arg(long, value_name = "ROLE", default_value = DEFAULT_CONSUMER_ROLE, requires = "roles")]
    consumer_role: String,
}

pub(super) fn print(args: PrintArgs) -> Result<String, Failure> {
    if !args.roles {
        return Ok(crate::migrations::sql());
    }
    Roles::new()
        .schema(args.schema)
        .app_role(args.app_role)
        .relay_role(args.relay_role)
        .consumer_role(args.consumer_role)
        .grants()
        .map_err(|e| Failure::usage(e.to_string()))
}
