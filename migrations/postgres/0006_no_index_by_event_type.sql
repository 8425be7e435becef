-- No query reads the log by event type (readers go by position, by stream,
-- or to the audit-trail read model, which has its own index by type); the
-- index only cost one more B-tree insert for every event appended.
DROP INDEX IF EXISTS events_by_type;
