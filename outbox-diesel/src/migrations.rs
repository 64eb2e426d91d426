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

/// One of outbox's migrations, as a Diesel migration folder holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// The folder name, as Diesel expects it in a `migrations/` folder.
    pub name: &'static str,
    /// The forward SQL.
    pub up: &'static str,
    /// The reverse SQL.
    pub down: &'static str,
}

/// Every migration, oldest first: the tables, Avro values' schemas, then
/// projections' positions and skipped records.
///
/// # Examples
///
/// ```
/// let names: Vec<&str> = outbox_diesel::migrations::ALL.iter().map(|m| m.name).collect();
/// assert_eq!(
///     names,
///     ["2026-11-24-000000_outbox", "2026-12-03-000000_outbox_avro", "2026-12-04-000000_outbox_projections"]
/// );
/// ```
pub const ALL: &[Migration] = &[
    Migration {
        name: "2026-11-24-000000_outbox",
        up: include_str!("../migrations/2026-11-24-000000_outbox/up.sql"),
        down: include_str!("../migrations/2026-11-24-000000_outbox/down.sql"),
    },
    Migration {
        name: "2026-12-03-000000_outbox_avro",
        up: include_str!("../migrations/2026-12-03-000000_outbox_avro/up.sql"),
        down: include_str!("../migrations/2026-12-03-000000_outbox_avro/down.sql"),
    },
    Migration {
        name: "2026-12-04-000000_outbox_projections",
        up: include_str!("../migrations/2026-12-04-000000_outbox_projections/up.sql"),
        down: include_str!("../migrations/2026-12-04-000000_outbox_projections/down.sql"),
    },
];

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

/// The forward SQL of every migration, oldest first, for teams that manage
/// their schema with other tools.
///
/// # Examples
///
/// ```
/// let sql = outbox_diesel::migrations::sql();
/// assert!(sql.contains("CREATE TABLE outbox_messages"));
/// assert!(sql.contains("-- outbox migration 2026-12-03-000000_outbox_avro"));
/// ```
pub fn sql() -> String {
    ALL.iter()
        .map(|m| format!("-- outbox migration {}\n{}", m.name, m.up))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes every migration as a Diesel migration folder (`<dir>/<name>/up.sql`
/// and `down.sql`), so `diesel migration run` applies them with your own
/// migrations. Returns the folders, oldest first.
///
/// # Errors
///
/// [`Error::Io`] when a folder cannot be written; [`Error::AlreadyExists`] when
/// one exists with different content (nothing is written then; up-to-date
/// copies are left as they are).
///
/// # Examples
///
/// ```
/// let dir = std::env::temp_dir().join(format!("outbox-doc-{}", std::process::id()));
/// let written = outbox_diesel::migrations::write_to(&dir)?;
/// assert_eq!(written.len(), outbox_diesel::migrations::ALL.len());
/// assert!(written[0].join("up.sql").exists());
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn write_to(dir: &Path) -> Result<Vec<PathBuf>> {
    let io = |path: &Path, e: std::io::Error| Error::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let files = |m: &Migration| [("up.sql", m.up), ("down.sql", m.down)];
    // Check every folder first, so a refusal writes nothing.
    let mut missing = Vec::new();
    for migration in ALL {
        let folder = dir.join(migration.name);
        if !folder.exists() {
            missing.push((migration, folder));
            continue;
        }
        let same = files(migration)
            .iter()
            .all(|(name, sql)| std::fs::read_to_string(folder.join(name)).is_ok_and(|s| s == *sql));
        if !same {
            return Err(Error::AlreadyExists(folder));
        }
    }
    for (migration, folder) in missing {
        std::fs::create_dir_all(&folder).map_err(|e| io(&folder, e))?;
        for (name, sql) in files(migration) {
            let path = folder.join(name);
            std::fs::write(&path, sql).map_err(|e| io(&path, e))?;
        }
    }
    Ok(ALL.iter().map(|m| dir.join(m.name)).collect())
}
