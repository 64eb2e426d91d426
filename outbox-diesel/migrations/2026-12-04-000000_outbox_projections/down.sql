ALTER TABLE outbox_stopped_partitions DROP COLUMN skip_reason;
DROP TABLE outbox_projection_positions;
DROP TABLE outbox_projections;
