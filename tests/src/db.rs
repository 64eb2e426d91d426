//! A PostgreSQL schema of the test's own.

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use diesel_async::{AsyncConnection, AsyncPgConnection};

use crate::{HOW_TO_START, database_url, names};

/// A schema created for one test and dropped (with everything in it) when the
/// value is dropped, even if the test panics.
///
/// Connections made through it have `search_path` set to the schema, so the code
/// under test uses unqualified table names.
///
/// # Examples
///
/// ```no_run
/// use diesel::connection::SimpleConnection;
///
/// let db = outbox_tests::TestDb::new("creates_a_table");
/// let mut conn = db.connect();
/// conn.batch_execute("CREATE TABLE users (id bigint PRIMARY KEY)")?;
/// # Ok::<(), diesel::result::Error>(())
/// ```
pub struct TestDb {
    server_url: String,
    schema: String,
    url: String,
}

impl TestDb {
    /// Creates a fresh schema named after the test.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not reachable, with a message saying how to start it.
    pub fn new(test_name: &str) -> Self {
        Self::on_server(database_url(), test_name)
    }

    /// Like [`TestDb::new`], on the server at `server_url`.
    ///
    /// # Panics
    ///
    /// When that server is not reachable, with a message saying how to start it.
    pub fn on_server(server_url: String, test_name: &str) -> Self {
        let schema = names::unique("t", test_name);
        let mut conn = connect_or_explain(&server_url);
        conn.batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .unwrap_or_else(|e| panic!("could not create schema {schema}: {e}"));
        let url = with_search_path(&server_url, &schema);
        TestDb {
            server_url,
            schema,
            url,
        }
    }

    /// The schema's name.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    /// A connection URL whose sessions use this schema.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A synchronous Diesel connection in this schema.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not reachable.
    pub fn connect(&self) -> PgConnection {
        connect_or_explain(&self.url)
    }

    /// A diesel-async connection in this schema.
    ///
    /// # Panics
    ///
    /// When PostgreSQL is not reachable.
    pub async fn connect_async(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.url)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "PostgreSQL at {} is not reachable: {e}; {HOW_TO_START}",
                    self.server_url
                )
            })
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let dropped = PgConnection::establish(&self.server_url).and_then(|mut conn| {
            conn.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
                self.schema
            ))
            .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))
        });
        if let Err(e) = dropped {
            eprintln!("warning: could not drop test schema {}: {e}", self.schema);
        }
    }
}

fn connect_or_explain(url: &str) -> PgConnection {
    PgConnection::establish(url)
        .unwrap_or_else(|e| panic!("PostgreSQL at {url} is not reachable: {e}; {HOW_TO_START}"))
}

/// Adds `options=-c search_path=<schema>` to a libpq URL (tokio-postgres reads it too).
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn failure_message_says_how_to_start_the_services() {
        let panic = std::panic::catch_unwind(|| {
            super::TestDb::on_server("postgres://postgres@127.0.0.1:1/x".into(), "unreachable")
        });
        let message = *panic.err().unwrap().downcast::<String>().unwrap();
        assert!(message.contains("scripts/services.sh up"), "{message}");
    }

    #[test]
    fn search_path_is_added_to_the_query() {
        assert_eq!(
            super::with_search_path("postgres://h/db", "s1"),
            "postgres://h/db?options=-c%20search_path%3Ds1"
        );
        assert_eq!(
            super::with_search_path("postgres://h/db?sslmode=disable", "s1"),
            "postgres://h/db?sslmode=disable&options=-c%20search_path%3Ds1"
        );
    }
}
