-- The event log: the source of truth. Rows are never updated or deleted.
CREATE TABLE events (
    position       BIGINT      PRIMARY KEY,  -- global order, 1, 2, 3 … without gaps, assigned under an advisory lock
    stream_id      TEXT        NOT NULL,
    stream_version BIGINT      NOT NULL,     -- 1 for a stream's first event
    event_type     TEXT        NOT NULL,
    schema_version INTEGER     NOT NULL,
    payload        JSONB       NOT NULL,
    metadata       JSONB       NOT NULL,     -- event id, actor, request id, source address, recorded time
    recorded_at    TIMESTAMPTZ NOT NULL,
    prev_hash      BYTEA       NOT NULL,     -- hash of the event at position - 1 (zeros for the first)
    hash           BYTEA       NOT NULL,     -- SHA-256 over prev_hash and this event's canonical content
    UNIQUE (stream_id, stream_version)
);
CREATE INDEX events_by_type ON events (event_type, position);

CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'events are immutable';
END;
$$;
CREATE TRIGGER events_are_immutable BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
