//! Least-privilege roles: the GRANTs each part of outbox needs on the outbox
//! tables of one schema, and nothing more.
//!
//! | role | needs | can run |
//! |---|---|---|
//! | application (`outbox_app`) | `INSERT` on `outbox_messages` and `outbox_schemas`, `USAGE` on the id sequence | `enqueue*`, [`Realtime`](crate::Realtime) messages; no `outbox` command |
//! | relay (`outbox_relay`) | `SELECT, UPDATE, DELETE` on `outbox_messages`, `SELECT` on `outbox_schemas` | [`Relay`](crate::Relay), `outbox relay`, `status`, `parked list/retry/discard` |
//! | consumer (`outbox_consumer`) | `SELECT, INSERT, DELETE` on `outbox_inbox`; `SELECT, INSERT, UPDATE` on `outbox_stopped_partitions` and `USAGE` on its sequence; `SELECT, INSERT, UPDATE` on `outbox_projections` and `SELECT, INSERT, UPDATE, DELETE` on `outbox_projection_positions` (projections); the application's grants for follow-up messages | [`Consumer`](crate::Consumer), `outbox partitions list/resume/skip`, `outbox projections` |
//!
//! Every role also needs `USAGE` on the schema: without it PostgreSQL says the
//! tables do not exist (`to_regclass` is NULL, the relay's `'outbox_messages'::regclass`
//! fails), which reads as "run the migrations". The relay's advisory locks,
//! `LISTEN`, its `pg_locks` count and its lock namespace (the table's OID) need
//! no grant; the `NOTIFY` that wakes it runs in the application's transaction,
//! through a trigger whose function needs no grant either (PostgreSQL checks
//! `EXECUTE` when the trigger is created, not when it fires). `SELECT` is in
//! the consumer's grants because its retention `DELETE` filters on a column and
//! its stops are inserted with `RETURNING`; an inbox claim alone (`INSERT .. ON
//! CONFLICT DO NOTHING`) needs only `INSERT`. The tables a consumer's
//! controllers write and the application's own tables are yours to grant.
//! `outbox migrations run` needs the right to create tables in the schema (its
//! owner); `outbox dlq replay` uses Kafka only.
//!
//! Create the roles first (`CREATE ROLE outbox_relay LOGIN PASSWORD '…'`), then
//! run the GRANTs as the tables' owner, after the migrations.
//!
//! # Examples
//!
//! ```
//! let sql = outbox_diesel::roles::Roles::new().schema("billing").grants()?;
//! assert!(sql.contains(r#"GRANT INSERT ON "billing"."outbox_messages", "billing"."outbox_schemas" TO "outbox_app";"#));
//! # Ok::<(), outbox_diesel::Error>(())
//! ```

use std::fmt::Write as _;

use crate::error::{Error, Result};

/// The application role's default name.
pub const DEFAULT_APP_ROLE: &str = "outbox_app";
/// The relay role's default name.
pub const DEFAULT_RELAY_ROLE: &str = "outbox_relay";
/// The consumer role's default name.
pub const DEFAULT_CONSUMER_ROLE: &str = "outbox_consumer";
/// The default schema of the outbox tables.
pub const DEFAULT_SCHEMA: &str = "public";

/// The role names and schema the GRANTs are written for; see the [module](self) docs.
///
/// # Examples
///
/// ```
/// use outbox_diesel::roles::Roles;
///
/// let sql = Roles::new()
///     .schema("orders")
///     .app_role("orders_api")
///     .relay_role("orders_relay")
///     .consumer_role("orders_consumer")
///     .grants()?;
/// assert!(sql.contains(r#"GRANT SELECT, UPDATE, DELETE ON "orders"."outbox_messages" TO "orders_relay";"#));
/// assert!(!sql.contains("outbox_app"));
/// # Ok::<(), outbox_diesel::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct Roles {
    schema: String,
    app: String,
    relay: String,
    consumer: String,
}

impl Default for Roles {
    fn default() -> Self {
        Self::new()
    }
}

impl Roles {
    /// The default names: `outbox_app`, `outbox_relay`, `outbox_consumer`, in `public`.
    pub fn new() -> Self {
        Roles {
            schema: DEFAULT_SCHEMA.to_owned(),
            app: DEFAULT_APP_ROLE.to_owned(),
            relay: DEFAULT_RELAY_ROLE.to_owned(),
            consumer: DEFAULT_CONSUMER_ROLE.to_owned(),
        }
    }

    /// The schema holding the outbox tables (default `public`).
    pub fn schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// The role the application enqueues as (default `outbox_app`).
    pub fn app_role(mut self, role: impl Into<String>) -> Self {
        self.app = role.into();
        self
    }

    /// The role the relay runs as (default `outbox_relay`).
    pub fn relay_role(mut self, role: impl Into<String>) -> Self {
        self.relay = role.into();
        self
    }

    /// The role the consumer runs as (default `outbox_consumer`).
    pub fn consumer_role(mut self, role: impl Into<String>) -> Self {
        self.consumer = role.into();
        self
    }

    /// The GRANT statements, commented, one role after the other. Names are
    /// quoted as written (`"Billing"` stays capitalised).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] when a name is empty or holds a NUL character.
    ///
    /// # Examples
    ///
    /// ```
    /// let sql = outbox_diesel::roles::Roles::new().grants()?;
    /// assert!(sql.contains(r#"GRANT USAGE ON SCHEMA "public" TO "outbox_relay";"#));
    /// # Ok::<(), outbox_diesel::Error>(())
    /// ```
    pub fn grants(&self) -> Result<String> {
        let schema = ident("schema", &self.schema)?;
        let app = ident("app role", &self.app)?;
        let relay = ident("relay role", &self.relay)?;
        let consumer = ident("consumer role", &self.consumer)?;
        let table = |name: &str| format!("{schema}.\"{name}\"");
        let messages = table("outbox_messages");
        let messages_seq = table("outbox_messages_id_seq");
        let schemas = table("outbox_schemas");
        let enqueue = |out: &mut String, role: &str| {
            // Writing to a String cannot fail. An Avro model's schema row is
            // written with `ON CONFLICT DO NOTHING` (no target): INSERT alone.
            let _ = writeln!(out, "GRANT INSERT ON {messages}, {schemas} TO {role};");
            let _ = writeln!(out, "GRANT USAGE ON SEQUENCE {messages_seq} TO {role};");
        };

        let mut out = format!(
            "-- outbox: least-privilege grants on the outbox tables of schema {schema}.\n\
             -- Run as the tables' owner after `outbox migrations run`; create the roles first\n\
             -- (CREATE ROLE {app} LOGIN PASSWORD '...'; and so on). Without USAGE on the\n\
             -- schema, PostgreSQL reports the tables as missing, not as forbidden.\n\n"
        );
        out.push_str(
            "-- The application: enqueue only (INSERT, the id sequence); no SELECT, UPDATE or\n\
             -- DELETE of the outbox. Its own tables are yours to grant.\n",
        );
        let _ = writeln!(out, "GRANT USAGE ON SCHEMA {schema} TO {app};");
        enqueue(&mut out, &app);

        out.push_str(
            "\n-- The relay (`outbox relay`, `status`, `parked list|retry|discard`): reads the\n\
             -- rows, records failed attempts and parks rows (UPDATE), deletes what Kafka\n\
             -- acknowledged, reads Avro values' schemas to register them. Advisory locks,\n\
             -- LISTEN and pg_locks need no grant; nothing of the business tables.\n",
        );
        let _ = writeln!(out, "GRANT USAGE ON SCHEMA {schema} TO {relay};");
        let _ = writeln!(
            out,
            "GRANT SELECT, UPDATE, DELETE ON {messages} TO {relay};"
        );
        let _ = writeln!(out, "GRANT SELECT ON {schemas} TO {relay};");

        out.push_str(
            "\n-- The consumer (`outbox partitions list|resume|skip`): its inbox (INSERT claims;\n\
             -- SELECT and DELETE for retention) and stopped partitions (INSERT .. RETURNING\n\
             -- needs SELECT; UPDATE on resume).\n",
        );
        let _ = writeln!(out, "GRANT USAGE ON SCHEMA {schema} TO {consumer};");
        let _ = writeln!(
            out,
            "GRANT SELECT, INSERT, DELETE ON {} TO {consumer};",
            table("outbox_inbox")
        );
        let _ = writeln!(
            out,
            "GRANT SELECT, INSERT, UPDATE ON {} TO {consumer};",
            table("outbox_stopped_partitions")
        );
        let _ = writeln!(
            out,
            "GRANT USAGE ON SEQUENCE {} TO {consumer};",
            table("outbox_stopped_partitions_id_seq")
        );
        out.push_str(
            "-- Projections (drop if it is none): registered at start (INSERT .. ON CONFLICT\n\
             -- UPDATE), positions moved with each apply and reset by a rebuild.\n",
        );
        let _ = writeln!(
            out,
            "GRANT SELECT, INSERT, UPDATE ON {} TO {consumer};",
            table("outbox_projections")
        );
        let _ = writeln!(
            out,
            "GRANT SELECT, INSERT, UPDATE, DELETE ON {} TO {consumer};",
            table("outbox_projection_positions")
        );
        out.push_str(
            "-- Follow-up messages its controllers enqueue (drop if they enqueue none):\n",
        );
        enqueue(&mut out, &consumer);
        let _ = writeln!(
            out,
            "-- And the tables its controllers write, for example:\n\
             -- GRANT SELECT, INSERT, UPDATE, DELETE ON {schema}.\"accounts\" TO {consumer};"
        );
        Ok(out)
    }
}

/// `name` as a quoted SQL identifier.
fn ident(what: &'static str, name: &str) -> Result<String> {
    if name.is_empty() || name.contains('\0') {
        return Err(Error::Config {
            name: "roles",
            reason: format!("the {what} name must be non-empty and hold no NUL character"),
        });
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted() {
        let sql = Roles::new()
            .schema("My \"Schema\"")
            .relay_role("Relay")
            .grants()
            .unwrap();
        assert!(
            sql.contains(
                r#"GRANT SELECT, UPDATE, DELETE ON "My ""Schema"""."outbox_messages" TO "Relay";"#
            ),
            "{sql}"
        );
    }

    #[test]
    fn the_application_may_only_insert() {
        let sql = Roles::new().grants().unwrap();
        let app: Vec<&str> = sql
            .lines()
            .filter(|l| l.starts_with("GRANT") && l.ends_with("\"outbox_app\";"))
            .collect();
        assert_eq!(
            app,
            [
                r#"GRANT USAGE ON SCHEMA "public" TO "outbox_app";"#,
                r#"GRANT INSERT ON "public"."outbox_messages", "public"."outbox_schemas" TO "outbox_app";"#,
                r#"GRANT USAGE ON SEQUENCE "public"."outbox_messages_id_seq" TO "outbox_app";"#,
            ]
        );
    }

    #[test]
    fn an_empty_name_is_refused() {
        let error = Roles::new().consumer_role("").grants().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid setting `roles`: the consumer role name must be non-empty and hold no NUL \
             character"
        );
    }
}
