//! What generated code needs, under one hidden path (`::outbox::__private`),
//! so users add no imports and their own names cannot shadow ours.

pub use serde;
pub use serde_json;
pub use serde_json::Value;
#[cfg(feature = "diesel")]
pub use {diesel, diesel_async};

pub use crate::error::Error;
pub use crate::event::Event;
pub use crate::outboxed::Outboxed;
#[cfg(feature = "diesel")]
pub use crate::{BoxFuture, VersionOutcome};

pub use crate::__outbox_diesel_only as diesel_only;
#[cfg(feature = "diesel")]
pub use versions::{
    Gap, Guards, ProbeUnversioned, ProbeVersioned, VersionProbe, VersionedRow, guard_destroy,
    guard_upsert,
};
pub use versions::{VersionField, read_version};

pub use core::default::Default;
pub use core::option::Option::{self, None, Some};
pub use core::result::Result::{self, Err, Ok};
pub use std::format;
pub use std::string::{String, ToString};
pub use std::vec;
pub use std::vec::Vec;

/// What the schemas of `#[outbox(avro)]` are built with.
pub mod avro {
    pub use crate::avro::codec::AvroReader;
    pub use crate::avro::{
        AvroField, Cache, FieldSpec, RecordSpec, field, field_error, finish, parse_avro_type,
        read_bridged, schemas, write_serialized,
    };
    pub use crate::avro::{Step, WriterSchema};
}

/// The payload of a version, serialized by its generated view.
pub fn to_value<T: serde::Serialize>(
    model: &'static str,
    version: u32,
    event: &Event,
    view: &T,
) -> Result<Value, Error> {
    serde_json::to_value(view).map_err(|_| serialize_error(model, version, event, view))
}

/// The same JSON, appended to `out`.
pub fn write<T: serde::Serialize>(
    model: &'static str,
    version: u32,
    event: &Event,
    view: &T,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    serde_json::to_writer(out, view).map_err(|_| serialize_error(model, version, event, view))
}

/// A version's view read from a payload.
pub fn read<'de, T: serde::Deserialize<'de>>(
    model: &'static str,
    version: u32,
    event: &Event,
    payload: &'de Value,
) -> Result<T, Error> {
    let payload_error = |reason: String| Error::Payload {
        model,
        version,
        event: event.to_string(),
        reason: short(reason),
    };
    if !payload.is_object() {
        // serde would read an array by position, and name our view for `null`.
        return Err(payload_error(format!(
            "expected a JSON object, found {}",
            crate::message::json_kind(payload)
        )));
    }
    T::deserialize(payload).map_err(|error| {
        // The fast path knows no field names; on failure only, read again tracking the path.
        match serde_path_to_error::deserialize::<_, T>(payload) {
            Err(traced) if !at_root(traced.path()) => {
                payload_error(format!("field `{}`: {}", traced.path(), traced.inner()))
            }
            _ => payload_error(error.to_string()),
        }
    })
}

fn at_root(path: &serde_path_to_error::Path) -> bool {
    path.iter().next().is_none()
}

/// Error messages quote values from the network: keep them readable.
fn short(mut reason: String) -> String {
    const MAX_CHARS: usize = 300;
    if let Some((cut, _)) = reason.char_indices().nth(MAX_CHARS) {
        let total = reason.len();
        reason.truncate(cut);
        reason.push_str(&format!("… ({total} bytes)"));
    }
    reason
}

/// `version` is not one the model declares.
pub fn unknown_version(model: &'static str, version: u32, supported: &'static [u32]) -> Error {
    Error::UnknownVersion {
        model,
        version,
        supported,
    }
}

/// A version does not carry a field that has no default.
pub fn not_carried(model: &'static str, version: u32, event: &Event, field: &'static str) -> Error {
    Error::Payload {
        model,
        version,
        event: event.to_string(),
        reason: format!(
            "version {version} does not carry field `{field}`, and the field has no `#[outbox(default)]`"
        ),
    }
}

/// A destroyed message carries only the key: the model cannot be read from it.
pub fn keys_only(model: &'static str) -> Error {
    Error::UnsupportedEvent {
        model,
        event: "destroyed".to_owned(),
        reason: "its payload carries only the primary key (read it with `key_from_payload`, \
                 or declare `#[outbox(destroyed = \"full\")]` on both sides)",
    }
}

/// Serializes again, tracking the path, to name the field whose serializer failed.
fn serialize_error<T: serde::Serialize>(
    model: &'static str,
    version: u32,
    event: &Event,
    view: &T,
) -> Error {
    let mut sink = serde_json::Serializer::new(std::io::sink());
    let reason = match serde_path_to_error::serialize(view, &mut sink) {
        Err(traced) if !at_root(traced.path()) => {
            format!("field `{}`: {}", traced.path(), traced.inner())
        }
        Err(traced) => traced.inner().to_string(),
        // Only `to_value` fails here (a number a `Value` cannot hold, e.g. a u128).
        Ok(()) => match serde_json::to_value(view) {
            Err(e) => format!("{e} (a `serde_json::Value` cannot hold it)"),
            Ok(_) => "the serializer failed".to_owned(),
        },
    };
    Error::Serialize {
        model,
        version,
        event: event.to_string(),
        reason: short(reason),
    }
}

#[cfg(feature = "diesel")]
pub use crate::controller::GroupError;
#[cfg(feature = "diesel")]
pub use group::{
    ExcludedColumns, KeyEq, KeyEqFallback, KeyProbe, Signature, Update, at, carried_signature,
    chunks, signature, update,
};

/// What `#[message_controller]`'s upserts need beyond Diesel: in
/// `handle_group`, one multi-row upsert whose effect equals one upsert per
/// row; in both, the update of a row whose message does not carry some of
/// its columns ([`Outboxed::columns_not_carried`]), which leaves them alone.
///
/// Diesel lists neither an `Insertable`'s nor an `AsChangeset`'s columns, and
/// its changeset types cannot be named outside Diesel, so the columns are
/// read from each row's own upsert rendered as SQL (no binds, no database):
/// `INSERT INTO t ("a", "b") VALUES ($1, DEFAULT) ON CONFLICT ("a") DO UPDATE
/// SET "b" = $3` gives the columns `.set(&model)` sets for that row and
/// whether each is inserted with the row's value. Consecutive rows whose
/// upserts set the same columns, each inserted with its value, with no key
/// twice, go in one statement whose SET is `c = excluded.c` for those
/// columns; any other row (a changeset that is not plain assignments of
/// binds, a `None` under `treat_none_as_null`, `skip_insertion`) goes alone
/// with its own upsert.
///
/// A row read from a payload version that does not carry some fields is
/// updated without their columns: its signature is its own upsert's without
/// them ([`carried_signature`]), so it shares a statement only with rows
/// whose updates set the same columns; alone (in `handle` or in a group), it
/// takes the narrower update [`update`] gives, built the same way. A row of
/// a version carrying every field keeps its own upsert, not even rendered.
#[cfg(feature = "diesel")]
mod group {
    use std::marker::PhantomData;
    use std::ops::Range;

    use diesel::pg::{Pg, PgQueryBuilder};
    use diesel::query_builder::{AsChangeset, AstPass, QueryBuilder, QueryFragment, QueryId};
    use diesel::result::QueryResult;

    use crate::outboxed::Outboxed;

    /// The SET columns of a row that may share a multi-row upsert (rows with
    /// equal signatures may).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Signature {
        columns: Vec<String>,
        /// Binds of the row in the insert.
        binds: usize,
    }

    /// A row's own upsert (`insert_into(t).values(&model).on_conflict(pk)
    /// .do_update().set(&model)`), rendered: the row's signature, or `None`
    /// when the row must go alone.
    pub fn signature<U: QueryFragment<Pg>>(upsert: &U) -> Option<Signature> {
        narrowed_signature(upsert, &[])
    }

    /// The signature of a row read as payload `version` of `M`: that of its
    /// own upsert without the columns the version does not carry
    /// ([`Outboxed::columns_not_carried`]); the same as [`signature`] for a
    /// version that carries every field. `None` when the row must go alone
    /// (and when its update would set nothing).
    pub fn carried_signature<M: Outboxed, U: QueryFragment<Pg>>(
        version: u32,
        upsert: &U,
    ) -> Option<Signature> {
        narrowed_signature(upsert, M::columns_not_carried(version))
    }

    fn narrowed_signature<U: QueryFragment<Pg>>(
        upsert: &U,
        not_carried: &[&str],
    ) -> Option<Signature> {
        let Upsert { inserted, mut set } = Upsert::parse(&render(upsert)?)?;
        set.retain(|column| !not_carried.contains(&column.as_str()));
        let all_bound = set.iter().all(|column| {
            inserted
                .iter()
                .any(|(name, bound)| *bound && name == column)
        });
        let binds = inserted.iter().filter(|(_, bound)| *bound).count();
        (!set.is_empty() && all_bound).then_some(Signature {
            columns: set,
            binds,
        })
    }

    /// A row's own upsert, rendered and parsed: the inserted columns (each
    /// with whether its value is a bind rather than `DEFAULT`) and the SET
    /// columns (each assigned a bind).
    struct Upsert {
        inserted: Vec<(String, bool)>,
        set: Vec<String>,
    }

    impl Upsert {
        fn parse(sql: &str) -> Option<Self> {
            let (inserted, rest) = parse_insert(sql)?;
            let rest = rest.strip_prefix(" ON CONFLICT ")?;
            let rest = parse_list(rest)?.1.strip_prefix(" DO UPDATE SET ")?;
            Some(Upsert {
                inserted,
                set: parse_set(rest)?,
            })
        }
    }

    /// What the update of a row read as some payload version sets, when it
    /// conflicts: see [`update`].
    #[derive(Debug)]
    pub enum Update<T> {
        /// The row's own `.set(&model)`.
        Own,
        /// Nothing: `ON CONFLICT DO NOTHING`.
        Nothing,
        /// These columns, from the row's insert.
        Columns(ExcludedColumns<T>),
    }

    /// The update of a row read as payload `version` of `M`, `upsert` being
    /// its own: [`Update::Own`] when the version carries every field (at
    /// once, nothing rendered), when none of the columns it does not carry
    /// ([`Outboxed::columns_not_carried`]) is set, or when the narrower
    /// update cannot be written (a changeset that is not plain assignments
    /// of binds, a `skip_insertion` column); [`Update::Nothing`] when every
    /// column set is one it does not carry; else [`Update::Columns`]: the
    /// others, `c = excluded.c`, or `c = NULL` for a column the insert
    /// writes as `DEFAULT` (a `None` under `treat_none_as_null`, which the
    /// changeset writes as NULL).
    pub fn update<M: Outboxed, T, U: QueryFragment<Pg>>(version: u32, upsert: &U) -> Update<T> {
        let not_carried = M::columns_not_carried(version);
        if not_carried.is_empty() {
            return Update::Own;
        }
        narrowed_update(upsert, not_carried)
    }

    fn narrowed_update<T, U: QueryFragment<Pg>>(upsert: &U, not_carried: &[&str]) -> Update<T> {
        let Some(Upsert { inserted, set }) = render(upsert).as_deref().and_then(Upsert::parse)
        else {
            return Update::Own;
        };
        let total = set.len();
        let mut columns = Vec::with_capacity(total);
        for column in set {
            if not_carried.contains(&column.as_str()) {
                continue;
            }
            let source = match inserted.iter().find(|(name, _)| *name == column) {
                Some((_, true)) => Source::Excluded,
                Some((_, false)) => Source::Null,
                // Its value is in the changeset only.
                None => return Update::Own,
            };
            columns.push((column, source));
        }
        match columns.len() {
            0 => Update::Nothing,
            kept if kept == total => Update::Own,
            _ => Update::Columns(ExcludedColumns {
                columns,
                table: PhantomData,
            }),
        }
    }

    fn render(fragment: &impl QueryFragment<Pg>) -> Option<String> {
        let mut out = PgQueryBuilder::new();
        fragment.to_sql(&mut out, &Pg).ok()?;
        Some(out.finish())
    }

    /// A `"quoted"` identifier at the start of `sql`: its name and the rest.
    fn identifier(sql: &str) -> Option<(String, &str)> {
        let mut rest = sql.strip_prefix('"')?;
        let mut name = String::new();
        loop {
            let end = rest.find('"')?;
            name.push_str(&rest[..end]);
            rest = &rest[end + 1..];
            match rest.strip_prefix('"') {
                // `""` is a quote inside the name.
                Some(after) => {
                    name.push('"');
                    rest = after;
                }
                None => return Some((name, rest)),
            }
        }
    }

    /// `$n` at the start of `sql`: the rest.
    fn bind(sql: &str) -> Option<&str> {
        let rest = sql.strip_prefix('$')?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        (digits > 0).then(|| &rest[digits..])
    }

    /// `"a" = $1, "b" = $2`: the columns, when every assignment is a bind.
    fn parse_set(mut sql: &str) -> Option<Vec<String>> {
        let mut columns = Vec::new();
        loop {
            let (name, rest) = identifier(sql)?;
            sql = bind(rest.strip_prefix(" = ")?)?;
            columns.push(name);
            if sql.is_empty() {
                return Some(columns);
            }
            sql = sql.strip_prefix(", ")?;
        }
    }

    /// `("a", "b")` at the start of `sql`: the names and the rest.
    fn parse_list(sql: &str) -> Option<(Vec<String>, &str)> {
        let mut sql = sql.strip_prefix('(')?;
        let mut names = Vec::new();
        loop {
            let (name, rest) = identifier(sql)?;
            names.push(name);
            match rest.strip_prefix(", ") {
                Some(rest) => sql = rest,
                None => return Some((names, rest.strip_prefix(')')?)),
            }
        }
    }

    /// `INSERT INTO t ("a", "b") VALUES ($1, DEFAULT)` at the start of `sql`:
    /// each column, whether it is inserted with a bind (not `DEFAULT`), and
    /// the rest.
    fn parse_insert(sql: &str) -> Option<(Vec<(String, bool)>, &str)> {
        let sql = sql.strip_prefix("INSERT INTO ")?;
        // The table: one or two quoted identifiers.
        let (_, mut sql) = identifier(sql)?;
        if let Some(rest) = sql.strip_prefix('.') {
            sql = identifier(rest)?.1;
        }
        let (names, sql) = parse_list(sql.strip_prefix(' ')?)?;
        let mut sql = sql.strip_prefix(" VALUES (")?;
        let mut values = Vec::with_capacity(names.len());
        let rest = loop {
            let (bound, rest) = match sql.strip_prefix("DEFAULT") {
                Some(rest) => (false, rest),
                None => (true, bind(sql)?),
            };
            values.push(bound);
            match rest.strip_prefix(", ") {
                Some(rest) => sql = rest,
                None => break rest.strip_prefix(')')?,
            }
        };
        (names.len() == values.len()).then(|| (names.into_iter().zip(values).collect(), rest))
    }

    /// The most binds PostgreSQL takes in one statement.
    const MAX_BINDS: usize = 65_535;

    /// The statements of a group: runs of consecutive rows with the same
    /// signature and no key twice, within PostgreSQL's bind limit; a row
    /// without a signature is a run of its own. `same_key(i, j)` tells whether rows `i` and `j` have the same key
    /// (`None`: cannot tell, so treated as the same).
    pub fn chunks(
        signatures: &[Option<Signature>],
        same_key: impl Fn(usize, usize) -> Option<bool>,
    ) -> Vec<Range<usize>> {
        let mut chunks = Vec::new();
        let mut start = 0;
        while start < signatures.len() {
            let mut end = start + 1;
            if let Some(signature) = &signatures[start] {
                let most = (MAX_BINDS / signature.binds.max(1)).max(1);
                while end < signatures.len()
                    && end - start < most
                    && signatures[end] == signatures[start]
                    && (start..end).all(|i| same_key(i, end) == Some(false))
                {
                    end += 1;
                }
            }
            chunks.push(start..end);
            start = end;
        }
        chunks
    }

    /// Maps an error of message `index` to [`GroupError::At`](crate::GroupError::At).
    pub fn at<E>(index: usize) -> impl FnOnce(E) -> crate::GroupError
    where
        E: Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    {
        move |error| crate::GroupError::At {
            index,
            error: crate::HandlerError::permanent(error),
        }
    }

    /// `c = excluded.c` for each column of a signature: the SET of a
    /// multi-row upsert of table `T`; or of a row's narrower update
    /// ([`Update::Columns`]), where a column may be `c = NULL`.
    #[derive(Debug)]
    pub struct ExcludedColumns<T> {
        columns: Vec<(String, Source)>,
        table: PhantomData<fn() -> T>,
    }

    /// What a column of [`ExcludedColumns`] is set to.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Source {
        /// `excluded.c`: the row's inserted value.
        Excluded,
        /// `NULL`.
        Null,
    }

    impl<T> ExcludedColumns<T> {
        /// The SET for rows of `signature`.
        pub fn new(signature: &Signature) -> Self {
            ExcludedColumns {
                columns: (signature.columns.iter())
                    .map(|column| (column.clone(), Source::Excluded))
                    .collect(),
                table: PhantomData,
            }
        }
    }

    impl<T: diesel::Table> AsChangeset for ExcludedColumns<T> {
        type Target = T;
        type Changeset = Self;

        fn as_changeset(self) -> Self {
            self
        }
    }

    impl<T> QueryId for ExcludedColumns<T> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<T> QueryFragment<Pg> for ExcludedColumns<T> {
        fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
            for (i, (column, source)) in self.columns.iter().enumerate() {
                if i > 0 {
                    out.push_sql(", ");
                }
                out.push_identifier(column)?;
                match source {
                    Source::Excluded => {
                        out.push_sql(" = excluded.");
                        out.push_identifier(column)?;
                    }
                    Source::Null => out.push_sql(" = NULL"),
                }
            }
            Ok(())
        }
    }

    /// Two keys, compared when their type has `==` (autoref specialization:
    /// call `(&KeyProbe(a, b)).same_key()` with both traits in scope).
    #[derive(Debug)]
    pub struct KeyProbe<'a, K>(pub &'a K, pub &'a K);

    /// Picked when the key type has `==`.
    pub trait KeyEq {
        /// Whether the keys are equal.
        fn same_key(&self) -> Option<bool>;
    }

    impl<K: PartialEq> KeyEq for KeyProbe<'_, K> {
        fn same_key(&self) -> Option<bool> {
            Some(self.0 == self.1)
        }
    }

    /// Picked otherwise: cannot tell.
    pub trait KeyEqFallback {
        /// `None`.
        fn same_key(&self) -> Option<bool>;
    }

    impl<K> KeyEqFallback for &KeyProbe<'_, K> {
        fn same_key(&self) -> Option<bool> {
            None
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parses_sets_and_inserts() {
            assert_eq!(
                parse_set(r#""a" = $1, "b""c" = $22"#),
                Some(vec!["a".to_owned(), "b\"c".to_owned()])
            );
            assert_eq!(parse_set(r#""a" = "a" + $1"#), None);
            assert_eq!(parse_set(""), None);
            assert_eq!(
                parse_insert(r#"INSERT INTO "s"."t" ("id", "a") VALUES ($1, DEFAULT) ON"#),
                Some((
                    vec![("id".to_owned(), true), ("a".to_owned(), false)],
                    " ON"
                ))
            );
            assert_eq!(
                parse_insert(r#"INSERT INTO "t" ("id") VALUES ($1, $2)"#),
                None
            );
        }

        diesel::table! {
            things (id) {
                id -> BigInt,
                label -> Text,
                note -> Nullable<Text>,
                born -> BigInt,
            }
        }

        #[derive(diesel::Insertable, diesel::AsChangeset)]
        #[diesel(table_name = things)]
        struct Thing {
            id: i64,
            #[diesel(column_name = label)]
            name: String,
            note: Option<String>,
            #[diesel(skip_update)]
            born: i64,
        }

        #[derive(diesel::Insertable, diesel::AsChangeset)]
        #[diesel(table_name = things, treat_none_as_null = true)]
        struct NullThing {
            id: i64,
            note: Option<String>,
        }

        /// The signature of `row`'s own upsert, as the generated code takes it.
        macro_rules! signature_of {
            ($row:expr) => {{
                let row = &$row;
                signature(
                    &diesel::insert_into(things::table)
                        .values(row)
                        .on_conflict(diesel::Table::primary_key(&things::table))
                        .do_update()
                        .set(row),
                )
            }};
        }

        #[test]
        fn signatures_of_derived_models() {
            let thing = |note: Option<&str>| Thing {
                id: 1,
                name: "a".into(),
                note: note.map(str::to_owned),
                born: 0,
            };
            let columns = |names: &[&str], binds: usize| {
                Some(Signature {
                    columns: names.iter().map(|n| (*n).to_owned()).collect(),
                    binds,
                })
            };
            // skip_update and the key are not set; a `None` leaves its column.
            assert_eq!(
                signature_of!(thing(Some("n"))),
                columns(&["label", "note"], 4)
            );
            assert_eq!(signature_of!(thing(None)), columns(&["label"], 3));
            // treat_none_as_null: the insert writes DEFAULT, the update NULL.
            assert_eq!(
                signature_of!(NullThing {
                    id: 1,
                    note: Some("n".into())
                }),
                columns(&["note"], 2)
            );
            assert_eq!(signature_of!(NullThing { id: 1, note: None }), None);
            let set =
                ExcludedColumns::<things::table>::new(&columns(&["label", "note"], 4).unwrap());
            assert_eq!(
                render(&set).as_deref(),
                Some(r#""label" = excluded."label", "note" = excluded."note""#)
            );
        }

        #[derive(diesel::Insertable, diesel::AsChangeset)]
        #[diesel(table_name = things, treat_none_as_null = true)]
        struct NullLabelled {
            id: i64,
            label: String,
            note: Option<String>,
        }

        #[derive(diesel::Insertable, diesel::AsChangeset)]
        #[diesel(table_name = things)]
        struct Born {
            id: i64,
            label: String,
            #[diesel(skip_insertion)]
            born: i64,
        }

        /// `$body` with `$upsert` bound to `row`'s own upsert.
        macro_rules! with_upsert {
            ($row:expr, |$upsert:ident| $body:expr) => {{
                let row = &$row;
                let $upsert = diesel::insert_into(things::table)
                    .values(row)
                    .on_conflict(diesel::Table::primary_key(&things::table))
                    .do_update()
                    .set(row);
                $body
            }};
        }

        /// What `narrowed_update` gives: `None` for `Own`, `Some("")` for
        /// `Nothing`, else the SET rendered.
        fn update_sql(update: Update<things::table>) -> Option<String> {
            match update {
                Update::Own => None,
                Update::Nothing => Some(String::new()),
                Update::Columns(set) => render(&set),
            }
        }

        #[test]
        fn narrowed_signatures_and_updates() {
            let thing = || Thing {
                id: 1,
                name: "a".into(),
                note: Some("n".into()),
                born: 0,
            };
            let columns = |names: &[&str], binds: usize| {
                Some(Signature {
                    columns: names.iter().map(|n| (*n).to_owned()).collect(),
                    binds,
                })
            };
            // A column not carried is left out of the update, not the insert.
            with_upsert!(thing(), |upsert| {
                assert_eq!(
                    narrowed_signature(&upsert, &["note"]),
                    columns(&["label"], 4)
                );
                assert_eq!(
                    update_sql(narrowed_update(&upsert, &["note"])).as_deref(),
                    Some(r#""label" = excluded."label""#)
                );
                // Nothing left to set.
                assert_eq!(narrowed_signature(&upsert, &["label", "note"]), None);
                assert_eq!(
                    update_sql(narrowed_update(&upsert, &["note", "label"])).as_deref(),
                    Some("")
                );
                // Columns the update does not set (skip_update, unknown
                // names): the row's own update.
                assert_eq!(
                    narrowed_signature(&upsert, &["born", "nope"]),
                    columns(&["label", "note"], 4)
                );
                assert_eq!(
                    update_sql(narrowed_update(&upsert, &["born", "nope"])),
                    None
                );
            });
            // A `None` under treat_none_as_null: inserted as DEFAULT, set to NULL.
            let labelled = |note: Option<&str>| NullLabelled {
                id: 1,
                label: "a".into(),
                note: note.map(str::to_owned),
            };
            with_upsert!(labelled(None), |upsert| {
                assert_eq!(signature(&upsert), None);
                assert_eq!(narrowed_signature(&upsert, &["label"]), None);
                assert_eq!(
                    update_sql(narrowed_update(&upsert, &["label"])).as_deref(),
                    Some(r#""note" = NULL"#)
                );
                // Without the NULL column, the row may share a statement.
                assert_eq!(
                    narrowed_signature(&upsert, &["note"]),
                    columns(&["label"], 2)
                );
            });
            with_upsert!(labelled(Some("n")), |upsert| {
                assert_eq!(
                    update_sql(narrowed_update(&upsert, &["label"])).as_deref(),
                    Some(r#""note" = excluded."note""#)
                );
            });
            // A column set but not inserted: no narrower update is written.
            let born = Born {
                id: 1,
                label: "a".into(),
                born: 7,
            };
            with_upsert!(born, |upsert| {
                assert_eq!(update_sql(narrowed_update(&upsert, &["label"])), None);
                assert_eq!(narrowed_signature(&upsert, &["label"]), None);
            });
        }

        #[test]
        fn chunks_split_on_signature_and_repeated_keys() {
            let a = Some(Signature {
                columns: vec!["a".into()],
                binds: 2,
            });
            let b = Some(Signature {
                columns: vec!["b".into()],
                binds: 2,
            });
            let keys = [1, 2, 1, 3, 4, 5];
            let signatures = [a.clone(), a.clone(), a.clone(), None, b.clone(), a];
            // The borrow picks the specialization.
            #[allow(clippy::needless_borrow)]
            let same = |i: usize, j: usize| (&KeyProbe(&keys[i], &keys[j])).same_key();
            assert_eq!(
                chunks(&signatures, same),
                vec![0..2, 2..3, 3..4, 4..5, 5..6]
            );
            struct NoEq;
            #[allow(clippy::needless_borrow)]
            let probe = (&KeyProbe(&NoEq, &NoEq)).same_key();
            assert_eq!(probe, None);
        }
    }
}

/// Emits its tokens when `outbox` is built with its `diesel` feature, and
/// nothing without it: what the derive wraps the database side of
/// `#[outbox(version)]` in, since the derive cannot see the features of the
/// `outbox` its output is compiled against.
#[cfg(feature = "diesel")]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_diesel_only {
    ($($tokens:tt)*) => {
        $($tokens)*
    };
}

/// Without the `diesel` feature: nothing.
#[cfg(not(feature = "diesel"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __outbox_diesel_only {
    ($($tokens:tt)*) => {};
}

/// Per-key versions (`#[outbox(version)]`): the field's type, reading it
/// from a payload, and the guard `#[message_controller]` runs before its
/// built-in upsert and delete.
mod versions {
    use serde_json::Value;

    use crate::error::Error;
    use crate::event::Event;

    /// The types a version field may have: the integers PostgreSQL stores
    /// as `smallint`, `integer` and `bigint`.
    #[diagnostic::on_unimplemented(
        message = "`#[outbox(version)]` needs an `i16`, `i32` or `i64` field, not `{Self}`",
        label = "not `i16`, `i32` or `i64`",
        note = "the version counts the row's changes: a `smallint`, `integer` or `bigint` column, never NULL"
    )]
    pub trait VersionField: Copy + Send + Sync + 'static {
        /// The value, widened.
        fn to_i64(&self) -> i64;
    }

    impl VersionField for i16 {
        fn to_i64(&self) -> i64 {
            i64::from(*self)
        }
    }

    impl VersionField for i32 {
        fn to_i64(&self) -> i64 {
            i64::from(*self)
        }
    }

    impl VersionField for i64 {
        fn to_i64(&self) -> i64 {
            *self
        }
    }

    /// The version a JSON `payload` (payload version `version` of `model`)
    /// carries under the wire name `name`; `None` when it carries none (a
    /// keys-only destroyed payload written before the model had a version
    /// field).
    pub fn read_version(
        model: &'static str,
        version: u32,
        event: &Event,
        payload: &Value,
        name: &str,
    ) -> Result<Option<i64>, Error> {
        match payload.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(value) => value.as_i64().map(Some).ok_or_else(|| Error::Payload {
                model,
                version,
                event: event.to_string(),
                reason: super::short(format!(
                    "field `{name}`: expected an integer version, found {}",
                    crate::message::json_kind(value)
                )),
            }),
        }
    }

    #[cfg(feature = "diesel")]
    pub use guard::*;

    #[cfg(feature = "diesel")]
    mod guard {
        use std::marker::PhantomData;

        use diesel::result::QueryResult;
        use diesel_async::AsyncPgConnection;
        use serde_json::Value;

        use crate::error::Error;
        use crate::outboxed::{Format, Outboxed};
        use crate::{BoxFuture, Context, HandlerError, Message, VersionOutcome};

        /// A row's stored version, read.
        type StoredVersion<'a> = BoxFuture<'a, QueryResult<Option<i64>>>;

        /// The database side of a model with `#[outbox(version)]`: its row's
        /// stored version, locked. The derive implements it; a controller
        /// finds it through [`VersionProbe`].
        #[diagnostic::on_unimplemented(
            message = "`{Self}` has no version field, so `gap` has nothing to act on",
            label = "`{Self}` has no `#[outbox(version)]` field",
            note = "mark the field that counts the row's changes `#[outbox(version)]`, or remove `gap`"
        )]
        pub trait VersionedRow: Outboxed<Key: Send + Sync> + Sync {
            /// The version of the row `self` is written to (by primary
            /// key), `SELECT .. FOR UPDATE`: locked until the transaction
            /// ends. `None` when there is no such row.
            fn stored_version<'a>(&'a self, conn: &'a mut AsyncPgConnection) -> StoredVersion<'a>;

            /// The same, for the row of `key`.
            fn stored_version_of<'a>(
                key: &'a Self::Key,
                conn: &'a mut AsyncPgConnection,
            ) -> StoredVersion<'a>;

            /// The version a JSON payload of `version` carries, if any
            /// (see [`read_version`](super::read_version)).
            ///
            /// # Errors
            ///
            /// [`Error::Payload`] when it is there but not an integer.
            fn version_from_payload(version: u32, payload: &Value) -> Result<Option<i64>, Error>;
        }

        /// The check before a built-in upsert.
        type UpsertGuard<M> = for<'a, 'c> fn(
            &'a mut Context<'c>,
            &'a M,
            Gap,
            &'static str,
        ) -> BoxFuture<'a, Result<bool, HandlerError>>;

        /// The check before a built-in delete.
        type DestroyGuard =
            for<'a, 'c> fn(&'a mut Context<'c>) -> BoxFuture<'a, Result<bool, HandlerError>>;

        /// The version checks of a [`VersionedRow`], as plain functions
        /// (their types name no bound of `M`, so the probe's fallback needs
        /// none: a model that is not even `Outboxed` gets no error from it).
        pub struct Guards<M> {
            upsert: UpsertGuard<M>,
            destroy: DestroyGuard,
        }

        /// Whether `M` is a [`VersionedRow`], asked by autoref
        /// specialization: `(&VersionProbe::<M>::new()).guards()` with
        /// [`ProbeVersioned`] and [`ProbeUnversioned`] in scope is `Some` for
        /// a model with a version field, `None` for any other (a controller
        /// is generated without knowing which its model is).
        pub struct VersionProbe<M>(PhantomData<fn() -> M>);

        impl<M> VersionProbe<M> {
            /// The probe.
            pub fn new() -> Self {
                VersionProbe(PhantomData)
            }
        }

        impl<M> Default for VersionProbe<M> {
            fn default() -> Self {
                Self::new()
            }
        }

        /// Picked when `M` is a [`VersionedRow`].
        pub trait ProbeVersioned<M> {
            /// Its checks.
            fn guards(&self) -> Option<Guards<M>>;
        }

        impl<M: VersionedRow> ProbeVersioned<M> for VersionProbe<M> {
            fn guards(&self) -> Option<Guards<M>> {
                Some(Guards {
                    upsert: upsert_guard::<M>,
                    destroy: destroy_guard::<M>,
                })
            }
        }

        /// Picked otherwise.
        pub trait ProbeUnversioned<M> {
            /// `None`.
            fn guards(&self) -> Option<Guards<M>>;
        }

        impl<M> ProbeUnversioned<M> for &VersionProbe<M> {
            fn guards(&self) -> Option<Guards<M>> {
                None
            }
        }

        /// `#[message_controller(gap = "..")]`: what a message more than one
        /// version past its row's does.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Gap {
            /// A retriable error: retried with backoff, then the failure policy.
            Wait,
            /// A permanent error: the failure policy at once.
            Stop,
            /// Applied, the gap recorded on the context.
            Accept,
        }

        /// What a created or updated message of version `received` does to a
        /// row at `stored`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum Verdict {
            Apply,
            Stale,
            Gap,
        }

        pub(crate) fn verdict(stored: Option<i64>, received: i64) -> Verdict {
            match stored {
                // The key's first messages may be gone from the topic, or the
                // row deleted: nothing to compare with.
                None => Verdict::Apply,
                Some(stored) if received <= stored => Verdict::Stale,
                // `received > stored`, so `received - 1` cannot overflow.
                Some(stored) if received - 1 == stored => Verdict::Apply,
                Some(_) => Verdict::Gap,
            }
        }

        /// Before the built-in upsert of `model`: whether to write it (yes at
        /// once without `guards`, for a model without a version field).
        ///
        /// # Errors
        ///
        /// As the model's upsert guard says.
        pub async fn guard_upsert<M>(
            ctx: &mut Context<'_>,
            model: &M,
            guards: Option<Guards<M>>,
            gap: Gap,
            table: &'static str,
        ) -> Result<bool, HandlerError> {
            match guards {
                None => Ok(true),
                Some(guards) => (guards.upsert)(ctx, model, gap, table).await,
            }
        }

        /// Before the built-in delete of the message's row: whether to
        /// delete it (yes at once without `guards`).
        ///
        /// # Errors
        ///
        /// As the model's destroy guard says.
        pub async fn guard_destroy<M>(
            ctx: &mut Context<'_>,
            guards: Option<Guards<M>>,
        ) -> Result<bool, HandlerError> {
            match guards {
                None => Ok(true),
                Some(guards) => (guards.destroy)(ctx).await,
            }
        }

        /// Reads the row's version `FOR UPDATE`; a stale message is recorded
        /// on `ctx` and skipped, a gap handled as `gap` says. Errors: the
        /// database's (retriable); a gap under `Wait` (retriable) or `Stop`
        /// (permanent).
        fn upsert_guard<'a, M: VersionedRow>(
            ctx: &'a mut Context<'_>,
            model: &'a M,
            gap: Gap,
            table: &'static str,
        ) -> BoxFuture<'a, Result<bool, HandlerError>> {
            Box::pin(async move {
                let Some(received) = model.version() else {
                    return Ok(true);
                };
                let stored = model.stored_version(ctx.conn()).await?;
                let Some(stored) = stored else {
                    return Ok(true);
                };
                match verdict(Some(stored), received) {
                    Verdict::Apply => Ok(true),
                    Verdict::Stale => {
                        ctx.set_version_outcome(VersionOutcome::Stale { stored, received });
                        Ok(false)
                    }
                    Verdict::Gap => {
                        let key = &ctx.message().partition_key;
                        let text = |policy| gap_text(table, key, stored, received, policy);
                        match gap {
                            Gap::Wait => Err(HandlerError::retriable(text(
                                "gap = \"wait\": retried in case it is still on its way",
                            ))),
                            Gap::Stop => Err(HandlerError::permanent(text("gap = \"stop\""))),
                            Gap::Accept => {
                                ctx.set_version_outcome(VersionOutcome::Gap { stored, received });
                                Ok(true)
                            }
                        }
                    }
                }
            })
        }

        fn gap_text(table: &str, key: &str, stored: i64, received: i64, policy: &str) -> String {
            // `stored < received - 1`: neither bound overflows.
            let (first, last) = (stored + 1, received - 1);
            let missing = if first == last {
                format!("version {first} is missing")
            } else {
                format!("versions {first} to {last} are missing")
            };
            format!(
                "version gap in `{table}` at partition key `{key}`: the row is at version \
                 {stored}, the message at version {received}, so {missing} ({policy})"
            )
        }

        /// When the destroyed message carries a version and the row's is
        /// newer, the message is stale (recorded on `ctx`, skipped);
        /// otherwise the row goes, whatever versions it missed. Errors: a key
        /// or version that cannot be read (permanent); the database's
        /// (retriable).
        fn destroy_guard<'a, M: VersionedRow>(
            ctx: &'a mut Context<'_>,
        ) -> BoxFuture<'a, Result<bool, HandlerError>> {
            Box::pin(async move {
                let message = ctx.message();
                let received = message_version::<M>(message).map_err(HandlerError::permanent)?;
                let Some(received) = received else {
                    return Ok(true);
                };
                let key = message.read_key::<M>().map_err(HandlerError::permanent)?;
                match M::stored_version_of(&key, ctx.conn()).await? {
                    Some(stored) if stored > received => {
                        ctx.set_version_outcome(VersionOutcome::Stale { stored, received });
                        Ok(false)
                    }
                    _ => Ok(true),
                }
            })
        }

        /// The version `message` carries: from an Avro datum (the whole
        /// model), or from the JSON payload both sides know.
        fn message_version<M: VersionedRow>(message: &Message) -> Result<Option<i64>, Error> {
            match message.payloads.format() {
                Format::Avro => Ok(message.read::<M>()?.version()),
                Format::Json => {
                    let (version, payload) = message.payload_for(M::VERSIONS)?;
                    M::version_from_payload(version, payload)
                }
            }
        }

        #[cfg(test)]
        mod tests {
            use super::*;

            #[test]
            fn verdicts() {
                assert_eq!(verdict(None, 7), Verdict::Apply);
                assert_eq!(verdict(Some(3), 4), Verdict::Apply);
                assert_eq!(verdict(Some(3), 3), Verdict::Stale);
                assert_eq!(verdict(Some(3), 2), Verdict::Stale);
                assert_eq!(verdict(Some(3), 5), Verdict::Gap);
                assert_eq!(verdict(Some(-1), 0), Verdict::Apply);
                assert_eq!(verdict(Some(i64::MIN), i64::MAX), Verdict::Gap);
                assert_eq!(verdict(Some(i64::MAX - 1), i64::MAX), Verdict::Apply);
                assert_eq!(verdict(Some(i64::MAX), i64::MIN), Verdict::Stale);
            }

            #[test]
            fn gap_texts_name_what_is_missing() {
                assert_eq!(
                    gap_text("users", "42", 3, 5, "gap = \"stop\""),
                    "version gap in `users` at partition key `42`: the row is at version 3, \
                     the message at version 5, so version 4 is missing (gap = \"stop\")"
                );
                assert!(gap_text("users", "42", 3, 9, "p").contains("versions 4 to 8 are missing"));
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use serde_json::json;

        use super::*;

        #[test]
        fn versions_are_read_from_payloads() {
            let read = |payload: Value| read_version("User", 1, &Event::Destroyed, &payload, "rev");
            assert_eq!(read(json!({"id": 1, "rev": 7})).unwrap(), Some(7));
            assert_eq!(read(json!({"id": 1})).unwrap(), None);
            assert_eq!(read(json!({"id": 1, "rev": null})).unwrap(), None);
            let error = read(json!({"id": 1, "rev": "7"})).unwrap_err().to_string();
            assert!(
                error.contains("field `rev`: expected an integer version"),
                "{error}"
            );
            assert_eq!(VersionField::to_i64(&-3i16), -3);
            assert_eq!(VersionField::to_i64(&i32::MAX), i64::from(i32::MAX));
        }
    }
}
