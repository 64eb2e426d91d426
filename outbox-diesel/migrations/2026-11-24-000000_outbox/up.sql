-- outbox: the transactional outbox, the idempotent inbox and stopped partitions.

-- Messages waiting for the relay, one row per message, written in the producer's
-- transaction and deleted once Kafka has acknowledged them. A row holds the record
-- as sent (topic, key, headers, value), so the relay does no encoding.
CREATE TABLE outbox_messages (
    id            bigserial   PRIMARY KEY,
    message_id    uuid        NOT NULL,
    topic         text        NOT NULL,
    partition_key text        NOT NULL,
    headers       text[]      NOT NULL, -- name, value, name, value, ...
    payload       bytea       NOT NULL, -- the record's value: the JSON envelope
    created_at    timestamptz NOT NULL DEFAULT now(),
    attempts      integer     NOT NULL DEFAULT 0,
    last_error    text,
    parked_at     timestamptz           -- set when the row can never be published
);

-- A parked row holds back the later rows of its key: the relay looks parked rows
-- up by key. The index holds parked rows only, so it stays empty in normal operation.
CREATE INDEX outbox_messages_parked
    ON outbox_messages (topic, partition_key, id) WHERE parked_at IS NOT NULL;

-- Wake the relay when the inserting transaction commits (never on a rollback).
CREATE FUNCTION outbox_messages_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('outbox_messages', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER outbox_messages_notify
    AFTER INSERT ON outbox_messages
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_messages_notify();

-- Messages a consumer has applied, written in the same transaction as the apply:
-- a second delivery of the same message conflicts and is skipped.
CREATE TABLE outbox_inbox (
    source          text        NOT NULL, -- the producer (`from` header)
    message_id      uuid        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, message_id)
);
CREATE INDEX outbox_inbox_processed_at ON outbox_inbox (processed_at);

-- Partitions a consumer stopped on a record it could not apply, until resumed.
CREATE TABLE outbox_stopped_partitions (
    id              bigserial   PRIMARY KEY,
    consumer_group  text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    message_id      uuid,                 -- null when the record could not be decoded
    error           text        NOT NULL,
    stopped_at      timestamptz NOT NULL DEFAULT now(),
    resumed_at      timestamptz
);
CREATE UNIQUE INDEX outbox_stopped_partitions_active
    ON outbox_stopped_partitions (consumer_group, topic, kafka_partition) WHERE resumed_at IS NULL;
