//! PostgreSQL: a fresh schema with outbox's tables per side or run, all
//! dropped at the end.

use std::sync::Mutex;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;

/// A connection to `url`; panics, saying how to start the services, when it
/// cannot connect.
pub(crate) fn pg(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| {
        panic!(
            "PostgreSQL at {} is not reachable: {e}; start it with `bash scripts/services.sh up`",
            outbox_diesel::mask_password(url)
        )
    })
}

/// Adds `options=-c search_path=<schema>` to a libpq URL (tokio-postgres reads it too).
fn with_search_path(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

/// A schema made by [`Db::schema`]; `url` connects with it as the search path.
pub(crate) struct Schema {
    pub(crate) name: String,
    pub(crate) url: String,
}

/// Schemas made by this run; all dropped by [`Db::drop_all`].
pub(crate) struct Db {
    server_url: String,
    /// Names start with `<prefix>_<pid>_`.
    prefix: &'static str,
    made: Mutex<Vec<String>>,
}

impl Db {
    /// The server at `server_url`, checked reachable.
    pub(crate) fn new(server_url: &str, prefix: &'static str) -> Db {
        pg(server_url);
        Db {
            server_url: server_url.to_owned(),
            prefix,
            made: Mutex::new(Vec::new()),
        }
    }

    /// A fresh schema with outbox's tables, named after `tag`.
    pub(crate) fn schema(&self, tag: &str) -> Schema {
        let mut made = self.made.lock().unwrap();
        let name = format!(
            "{}_{}_{}_{tag}",
            self.prefix,
            std::process::id(),
            made.len()
        );
        pg(&self.server_url)
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .expect("create schema");
        made.push(name.clone());
        let url = with_search_path(&self.server_url, &name);
        outbox_diesel::migrations::run(&mut pg(&url)).expect("outbox migrations");
        Schema { name, url }
    }

    /// Drops `schema` now (rather than at the end).
    pub(crate) fn drop_schema(&self, schema: &Schema) {
        let _ = pg(&self.server_url).batch_execute(&format!(
            "DROP SCHEMA IF EXISTS \"{}\" CASCADE",
            schema.name
        ));
    }

    /// Drops every schema this run made.
    pub(crate) fn drop_all(&self) {
        let made = std::mem::take(&mut *self.made.lock().unwrap());
        if let Ok(mut conn) = PgConnection::establish(&self.server_url) {
            for name in made {
                let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS \"{name}\" CASCADE"));
            }
        }
    }
}
