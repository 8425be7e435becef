-- The event log: the source of truth. Rows are never updated or deleted.
CREATE TABLE events (
    position       INTEGER PRIMARY KEY,      -- global order, 1, 2, 3 … without gaps
    stream_id      TEXT    NOT NULL,
    stream_version INTEGER NOT NULL,         -- 1 for a stream's first event
    event_type     TEXT    NOT NULL,
    schema_version INTEGER NOT NULL,
    payload        TEXT    NOT NULL,         -- canonical JSON
    metadata       TEXT    NOT NULL,         -- canonical JSON: event id, actor, request id, source address, recorded time
    recorded_at    TEXT    NOT NULL,         -- RFC 3339, microseconds, UTC
    prev_hash      BLOB    NOT NULL,         -- hash of the event at position - 1 (zeros for the first)
    hash           BLOB    NOT NULL,         -- SHA-256 over prev_hash and this event's content
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_by_type ON events (event_type, position);

CREATE TRIGGER events_are_immutable_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
CREATE TRIGGER events_are_immutable_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'events are immutable'); END;
