ALTER TABLE outbox_messages DROP COLUMN value_schema;
DROP TABLE outbox_schemas;
