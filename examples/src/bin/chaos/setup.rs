//! The run's database: created if missing, its two schemas (producer and
//! consumer) reset and migrated at start; and the connection strings of each
//! part of the run, each with an `application_name` of its own so the fault
//! injector can find its sessions.

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::sql_types::Text;

use super::model::{CONSUMER_SCHEMA, CONSUMER_TABLES, PRODUCER_SCHEMA, PRODUCER_TABLES};

/// What went wrong setting the database up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SetupError {
    #[error("{url} is not a postgres:// URL with a database name")]
    Url { url: String },
    #[error("cannot connect to {url}")]
    Connect {
        url: String,
        source: diesel::ConnectionError,
    },
    #[error("{what}")]
    Query {
        what: String,
        source: diesel::result::Error,
    },
    #[error(
        "the server runs with synchronous_commit = {setting}: a commit may return before it \
         is durable, and a crash (an immediate restart) loses it after the consumer stored \
         its offset; set it to `on` (`bash scripts/services.sh up` does)"
    )]
    NotDurable { setting: String },
    #[error("the outbox migrations failed in schema {schema}")]
    Migrations {
        schema: &'static str,
        source: outbox_diesel::Error,
    },
}

/// `url` (a `postgres://` URL) with its database replaced by `database`.
pub(crate) fn with_database(url: &str, database: &str) -> Result<String, SetupError> {
    let bad = || SetupError::Url {
        url: outbox_diesel::mask_password(url),
    };
    let scheme_end = url.find("://").ok_or_else(bad)? + 3;
    let path_start = url[scheme_end..].find('/').ok_or_else(bad)? + scheme_end;
    let query = url[path_start..].find('?').map(|i| &url[path_start + i..]);
    Ok(format!(
        "{}/{database}{}",
        &url[..path_start],
        query.unwrap_or("")
    ))
}

/// `url` with `key=value` added to its query (`value` percent-encoded for
/// the few characters used here).
pub(crate) fn with_param(url: &str, key: &str, value: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    let value = value
        .replace('%', "%25")
        .replace(' ', "%20")
        .replace('=', "%3D")
        .replace(',', "%2C");
    format!("{url}{separator}{key}={value}")
}

/// `url` with sessions in `schema`, named `application_name`.
pub(crate) fn session_url(url: &str, schema: &str, application_name: &str) -> String {
    let url = with_param(url, "options", &format!("-c search_path={schema}"));
    with_param(&url, "application_name", application_name)
}

fn query(what: &str) -> impl FnOnce(diesel::result::Error) -> SetupError + '_ {
    move |source| SetupError::Query {
        what: what.to_owned(),
        source,
    }
}

fn connect(url: &str) -> Result<PgConnection, SetupError> {
    PgConnection::establish(url).map_err(|source| SetupError::Connect {
        url: outbox_diesel::mask_password(url),
        source,
    })
}

#[derive(QueryableByName)]
struct Found {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    found: bool,
}

/// Creates `database` on the server of `server_url` if missing, then resets
/// the producer and consumer schemas in it: outbox's tables (migrations) and
/// the run's own.
pub(crate) fn reset(server_url: &str, database: &str) -> Result<String, SetupError> {
    let run_url = with_database(server_url, database)?;
    let mut server = connect(server_url)?;
    let exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS found")
            .bind::<Text, _>(database)
            .get_result::<Found>(&mut server)
            .map_err(query("look the run's database up"))?
            .found;
    if !exists {
        server
            .batch_execute(&format!("CREATE DATABASE \"{database}\""))
            .map_err(query("create the run's database"))?;
    }
    #[derive(QueryableByName)]
    struct Setting {
        #[diesel(sql_type = Text)]
        synchronous_commit: String,
    }
    let setting = diesel::sql_query("SHOW synchronous_commit")
        .get_result::<Setting>(&mut server)
        .map_err(query("read synchronous_commit"))?
        .synchronous_commit;
    if setting != "on" {
        return Err(SetupError::NotDurable { setting });
    }
    let mut conn = connect(&run_url)?;
    conn.batch_execute(&format!(
        "DROP SCHEMA IF EXISTS {PRODUCER_SCHEMA} CASCADE; CREATE SCHEMA {PRODUCER_SCHEMA}; \
         DROP SCHEMA IF EXISTS {CONSUMER_SCHEMA} CASCADE; CREATE SCHEMA {CONSUMER_SCHEMA};"
    ))
    .map_err(query("reset the run's schemas"))?;
    for (schema, tables) in [
        (PRODUCER_SCHEMA, PRODUCER_TABLES),
        (CONSUMER_SCHEMA, CONSUMER_TABLES),
    ] {
        let mut conn = connect(&session_url(&run_url, schema, "chaos-setup"))?;
        outbox_diesel::migrations::run(&mut conn)
            .map_err(|source| SetupError::Migrations { schema, source })?;
        conn.batch_execute(tables)
            .map_err(query("create the run's tables"))?;
    }
    Ok(run_url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_replaced_and_the_query_kept() {
        assert_eq!(
            with_database(
                "postgres://postgres@127.0.0.1:54329/outbox_test",
                "outbox_chaos"
            )
            .unwrap(),
            "postgres://postgres@127.0.0.1:54329/outbox_chaos"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "c").unwrap(),
            "postgres://u:p@h/c?sslmode=disable"
        );
        assert!(with_database("host=h dbname=db", "c").is_err());
    }

    #[test]
    fn session_urls_name_the_schema_and_the_application() {
        assert_eq!(
            session_url("postgres://h/db", "s", "chaos-relay-1"),
            "postgres://h/db?options=-c%20search_path%3Ds&application_name=chaos-relay-1"
        );
    }
}
