//! Avro values at enqueue: their writer schemas go into `outbox_schemas` in the
//! same statement as the messages, so a business transaction never calls the
//! schema registry (the relay registers them and writes the ids).

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::sql_types::{BigInt, Text};

use crate::registry::SubjectStrategy;

/// An Avro value's writer schema, as `outbox_schemas` holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SchemaRow {
    /// `outbox_messages.value_schema` of the messages written with it.
    pub(crate) key: i64,
    pub(crate) subject: String,
    pub(crate) schema: &'static str,
}

impl SchemaRow {
    /// The row of `schema`, a value schema of `topic`, under `strategy`'s subject.
    pub(crate) fn new(strategy: SubjectStrategy, topic: &str, schema: &'static str) -> Self {
        let subject = match strategy {
            // The common case needs no parse of the schema.
            SubjectStrategy::TopicName => strategy.subject(topic, ""),
            _ => strategy.subject(topic, &outbox::avro::full_name(schema)),
        };
        SchemaRow {
            key: schema_key(&subject, schema),
            subject,
            schema,
        }
    }
}

/// FNV-1a (64 bits) of subject, a newline and schema: stable across processes
/// and releases, so every producer of one schema writes one row.
fn schema_key(subject: &str, schema: &str) -> i64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = subject.bytes().chain([b'\n']).chain(schema.bytes());
    let hash = bytes.fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    });
    i64::from_be_bytes(hash.to_be_bytes())
}

/// The distinct schema rows of `schemas`, by key: transactions that first
/// write the same schemas write them in one order, so they wait for each
/// other instead of deadlocking.
pub(crate) fn distinct<'a>(schemas: impl Iterator<Item = &'a SchemaRow>) -> Vec<&'a SchemaRow> {
    let mut distinct: Vec<&SchemaRow> = schemas.collect();
    distinct.sort_unstable_by_key(|schema| schema.key);
    distinct.dedup_by_key(|schema| schema.key);
    distinct
}

/// `WITH … (INSERT INTO outbox_schemas … ON CONFLICT DO NOTHING) <insert>`:
/// the schema rows written by the messages' own statement (no round trip of
/// their own). A row another transaction wrote first is left as it is; one
/// being written by a transaction still open makes this one wait for it: the
/// first use of a schema can wait for the first transaction that used it.
pub(crate) struct WithSchemas<'a, I> {
    pub(crate) schemas: Vec<&'a SchemaRow>,
    pub(crate) insert: I,
}

impl<I> QueryId for WithSchemas<'_, I> {
    type QueryId = ();
    // The SQL differs with the number of schemas: cache by its text.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<I, Conn> diesel::RunQueryDsl<Conn> for WithSchemas<'_, I> {}

impl<I: QueryFragment<Pg>> QueryFragment<Pg> for WithSchemas<'_, I> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> diesel::QueryResult<()> {
        if !self.schemas.is_empty() {
            out.push_sql(
                "WITH outbox_schemas_written AS (INSERT INTO outbox_schemas \
                 (schema_key, subject, schema) VALUES ",
            );
            for (i, schema) in self.schemas.iter().enumerate() {
                out.push_sql(if i == 0 { "(" } else { ", (" });
                out.push_bind_param::<BigInt, _>(&schema.key)?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&schema.subject)?;
                out.push_sql(", ");
                out.push_bind_param::<Text, _>(&schema.schema)?;
                out.push_sql(")");
            }
            out.push_sql(" ON CONFLICT DO NOTHING) ");
        }
        self.insert.walk_ast(out.reborrow())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: &str = r#"{"type":"record","name":"User","namespace":"acme","fields":[]}"#;

    #[test]
    fn the_subject_follows_the_strategy_and_the_key_both() {
        let topic = SchemaRow::new(SubjectStrategy::TopicName, "users", SCHEMA);
        let record = SchemaRow::new(SubjectStrategy::RecordName, "users", SCHEMA);
        let both = SchemaRow::new(SubjectStrategy::TopicRecordName, "users", SCHEMA);
        assert_eq!(topic.subject, "users-value");
        assert_eq!(record.subject, "acme.User");
        assert_eq!(both.subject, "users-acme.User");
        let keys = [topic.key, record.key, both.key];
        assert!(keys[0] != keys[1] && keys[1] != keys[2] && keys[0] != keys[2]);
    }

    #[test]
    fn keys_are_stable_across_releases() {
        // Rows written by an older release must keep matching: pinned.
        assert_eq!(schema_key("users-value", "{}"), -1_807_438_983_559_447_465);
    }

    #[test]
    fn the_statement_writes_each_schema_once_before_the_messages() {
        let a = SchemaRow::new(SubjectStrategy::TopicName, "users", SCHEMA);
        let b = SchemaRow::new(SubjectStrategy::TopicName, "orders", SCHEMA);
        let schemas = distinct([&a, &b, &a].into_iter());
        assert_eq!(schemas.len(), 2);
        let query = WithSchemas {
            schemas,
            insert: diesel::dsl::sql::<diesel::sql_types::Integer>("INSERT INTO t VALUES (1)"),
        };
        let sql = diesel::debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.starts_with(
                "WITH outbox_schemas_written AS (INSERT INTO outbox_schemas (schema_key, subject, \
                 schema) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT DO NOTHING) INSERT INTO t"
            ),
            "{sql}"
        );
    }
}
