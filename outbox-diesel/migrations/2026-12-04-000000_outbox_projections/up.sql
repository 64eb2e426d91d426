-- outbox 3: projections (positions in the database), skipped records.

-- A projection is a consumer whose position in each partition lives here,
-- written in the transaction of what it applies: exactly once with no inbox
-- row per message. Its consumer registers it at start.
CREATE TABLE outbox_projections (
    name                 text        PRIMARY KEY, -- the projection's name (its consumer group)
    topics               text[]      NOT NULL,    -- the topics it reads, as last registered
    rebuild_requested_at timestamptz,             -- `outbox projections rebuild`: its consumer rebuilds at start
    rebuilt_at           timestamptz,             -- when its last rebuild reset it
    registered_at        timestamptz NOT NULL DEFAULT now()
);

-- Where each partition of a projection stands. An apply moves `next_offset`
-- from the first record it applies to one past its last, only if it is still
-- there (a compare-and-set): a second process holding the partition for a
-- moment during a rebalance finds it moved and applies nothing.
CREATE TABLE outbox_projection_positions (
    projection      text        NOT NULL REFERENCES outbox_projections (name) ON DELETE CASCADE,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    next_offset     bigint      NOT NULL,         -- the first record not applied yet
    replay_until    bigint,                       -- a rebuild re-applies the records below it (no follow-ups)
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, topic, kafka_partition)
);

-- A stop resumed past its record (`outbox partitions skip`): why. The
-- partition reads again from the record after it.
ALTER TABLE outbox_stopped_partitions ADD COLUMN skip_reason text;
