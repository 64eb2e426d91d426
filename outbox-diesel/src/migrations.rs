//! The tables outbox needs, as an embedded Diesel migration: run it from code,
//! write it into your own `migrations/` folder, or print its SQL.
//!
//! # Examples
//!
//! ```no_run
//! use diesel::{Connection, PgConnection};
//!
//! let mut conn = PgConnection::establish("postgres://localhost/app")?;
//! let applied = outbox_diesel::migrations::run(&mut conn)?;
//! println!("applied {applied:?}");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use diesel::PgConnection;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Error, Result};

/// The embedded migrations, for [`MigrationHarness`] users who run them with their own.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The migration's folder name, as Diesel expects it in a `migrations/` folder.
pub const NAME: &str = "2026-11-24-000000_outbox";
/// The migration's forward SQL.
pub const UP_SQL: &str = include_str!("../migrations/2026-11-24-000000_outbox/up.sql");
/// The migration's reverse SQL.
pub const DOWN_SQL: &str = include_str!("../migrations/2026-11-24-000000_outbox/down.sql");

/// Applies the migrations not yet applied on `conn`'s database (in the schema of
/// its `search_path`), recording them in `__diesel_schema_migrations` as the
/// Diesel CLI does. Returns the versions applied; empty when all were.
///
/// # Errors
///
/// [`Error::Migration`] when a migration fails; it is rolled back.
pub fn run(conn: &mut PgConnection) -> Result<Vec<String>> {
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| Error::Migration(e.to_string()))?;
    Ok(applied.iter().map(ToString::to_string).collect())
}

/// The forward SQL, for teams that manage their schema with other tools.
///
/// # Examples
///
/// ```
/// assert!(outbox_diesel::migrations::sql().contains("CREATE TABLE outbox_messages"));
/// ```
pub fn sql() -> String {
    format!("-- outbox migration {NAME}\n{UP_SQL}")
}

/// Writes the migration as a Diesel migration folder (`<dir>/<NAME>/up.sql` and
/// `down.sql`), so `diesel migration run` applies it with your own migrations.
/// Returns the folder written.
///
/// # Errors
///
/// [`Error::Io`] when the folder cannot be written; [`Error::AlreadyExists`] when it
/// exists with different content (an up-to-date copy is left as it is).
///
/// # Examples
///
/// ```
/// let dir = std::env::temp_dir().join(format!("outbox-doc-{}", std::process::id()));
/// let written = outbox_diesel::migrations::write_to(&dir)?;
/// assert!(written.join("up.sql").exists());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_to(dir: &Path) -> Result<PathBuf> {
    let folder = dir.join(NAME);
    let io = |path: &Path, e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let files = [("up.sql", UP_SQL), ("down.sql", DOWN_SQL)];
    if folder.exists() {
        let same = files
            .iter()
            .all(|(name, sql)| std::fs::read_to_string(folder.join(name)).is_ok_and(|s| s == *sql));
        return if same {
            Ok(folder)
        } else {
            Err(Error::AlreadyExists(folder))
        };
    }
    std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
    for (name, sql) in files {
        let path = folder.join(name);
        std::fs::write(&path, sql).map_err(|e| io(&path, e))?;
    }
    Ok(folder)
}
