//! Whether a database has the outbox tables, all migrations applied, in its
//! `search_path`: the start checks of the relay (async) and of the command
//! line (sync) ask it the same way.

use diesel::sql_types::{Bool, Text};

/// The question; a [`OutboxTable`] row is the answer.
pub(crate) const OUTBOX_TABLE_QUERY: &str = "SELECT to_regclass('outbox_messages') IS NOT NULL AS present, \
            to_regclass('outbox_schemas') IS NOT NULL AS current, \
            current_setting('search_path') AS search_path";

/// Whether `outbox_messages` is there, whether the latest migration is
/// (`outbox_schemas`, migration 2), and where the session looked.
#[derive(diesel::QueryableByName)]
pub(crate) struct OutboxTable {
    #[diesel(sql_type = Bool)]
    pub(crate) present: bool,
    #[diesel(sql_type = Bool)]
    pub(crate) current: bool,
    #[diesel(sql_type = Text)]
    pub(crate) search_path: String,
}

impl OutboxTable {
    /// `None` when the table is there; otherwise what to tell the user:
    /// `no <missing> at <database> (search_path: …): run the migrations`.
    pub(crate) fn missing(&self, missing: &str, database: &str) -> Option<String> {
        if !self.present {
            return Some(format!(
                "no {missing} at {database} (search_path: {}): run `outbox migrations run` first",
                self.search_path
            ));
        }
        (!self.current).then(|| {
            format!(
                "the {missing} at {database} (search_path: {}) lack the latest migration \
                 (no outbox_schemas): run `outbox migrations run` first",
                self.search_path
            )
        })
    }
}
