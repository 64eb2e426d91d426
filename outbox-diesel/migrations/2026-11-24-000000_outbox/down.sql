DROP TABLE outbox_stopped_partitions;
DROP TABLE outbox_inbox;
DROP TRIGGER outbox_messages_notify ON outbox_messages;
DROP FUNCTION outbox_messages_notify();
DROP TABLE outbox_messages;
