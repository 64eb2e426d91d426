-- outbox 2: Avro values, their schemas registered by the relay.

-- The writer schemas of Avro values, written by enqueue beside the messages
-- (a business transaction never calls the schema registry): the relay registers
-- each under its subject and writes the registry's id into the values' frames.
-- Rows are never updated; one row serves every message of its schema.
CREATE TABLE outbox_schemas (
    schema_key bigint      PRIMARY KEY, -- a hash of subject and schema (see `value_schema`)
    subject    text        NOT NULL,    -- the registry subject (`<topic>-value` by default)
    schema     text        NOT NULL,    -- the Avro schema, JSON text
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The `outbox_schemas` row of an Avro value whose frame still holds schema id 0;
-- NULL for a JSON envelope (sent as stored).
ALTER TABLE outbox_messages ADD COLUMN value_schema bigint;
