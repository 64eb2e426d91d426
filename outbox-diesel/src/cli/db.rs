//! Connecting to the outbox's database, with bounded waits and masked passwords.

use diesel::prelude::*;

use super::Failure;
use crate::error::{Error, mask_password};
use crate::pg::tables::{OUTBOX_TABLE_QUERY, OutboxTable};

/// Seconds libpq (and tokio-postgres, for the relay) may spend connecting,
/// unless the URL says otherwise: an unreachable host fails instead of hanging.
pub(super) const CONNECT_TIMEOUT_SECONDS: u32 = 5;

pub(super) fn no_database() -> Failure {
    Failure::usage("no database: pass --database-url or set DATABASE_URL")
}

/// `url` with `connect_timeout` added unless it has one (URL or `key=value` form).
pub(super) fn with_connect_timeout(url: &str) -> String {
    if url.contains("connect_timeout=") {
        return url.to_owned();
    }
    let setting = format!("connect_timeout={CONNECT_TIMEOUT_SECONDS}");
    if url.contains("://") {
        let separator = if url.contains('?') { '&' } else { '?' };
        format!("{url}{separator}{setting}")
    } else {
        format!("{url} {setting}")
    }
}

/// A connection to `url`, or a failure naming it (password masked).
pub(super) fn connect(url: &str) -> Result<PgConnection, Failure> {
    PgConnection::establish(&with_connect_timeout(url)).map_err(|source| {
        let error = Error::Connection {
            url: mask_password(url),
            source,
        };
        Failure::from_error(None, &error)
    })
}

/// A connection to `url` whose `search_path` holds the outbox tables, or a
/// failure that says to run the migrations.
pub(super) fn connect_to_outbox(url: &str) -> Result<PgConnection, Failure> {
    let mut conn = connect(url)?;
    let table: OutboxTable = diesel::sql_query(OUTBOX_TABLE_QUERY)
        .get_result(&mut conn)
        .map_err(|e| failure(url, "checking the outbox tables", &Error::Database(e)))?;
    match table.missing("outbox tables", &mask_password(url)) {
        Some(missing) => Err(Failure::runtime(missing)),
        None => Ok(conn),
    }
}

/// `error` of `what` on the database at `url`.
pub(super) fn failure(url: &str, what: &str, error: &Error) -> Failure {
    Failure::from_error(Some(&format!("{what} at {}", mask_password(url))), error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_a_connect_timeout_unless_there_is_one() {
        assert_eq!(
            with_connect_timeout("postgres://h/d"),
            "postgres://h/d?connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/d?options=-c%20search_path%3Ds"),
            "postgres://h/d?options=-c%20search_path%3Ds&connect_timeout=5"
        );
        assert_eq!(
            with_connect_timeout("postgres://h/d?connect_timeout=1"),
            "postgres://h/d?connect_timeout=1"
        );
        assert_eq!(
            with_connect_timeout("host=h dbname=d"),
            "host=h dbname=d connect_timeout=5"
        );
    }
}
