-- One round trip for the start of every append transaction: take the global
-- append lock, then (each statement of a volatile function taking a fresh
-- snapshot, so after the lock) read the head of the log and the current
-- version of every stream the batch touches.
CREATE FUNCTION grantd_lock_and_read_heads(lock_key BIGINT, streams TEXT[])
RETURNS TABLE (stream_id TEXT, version BIGINT, hash BYTEA)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    RETURN QUERY
        SELECT NULL::TEXT, e.position, e.hash
        FROM (SELECT ev.position, ev.hash FROM events ev ORDER BY ev.position DESC LIMIT 1) e;
    RETURN QUERY
        SELECT s.id, v.stream_version, NULL::BYTEA
        FROM UNNEST(streams) AS s(id)
        CROSS JOIN LATERAL (
            SELECT ev.stream_version FROM events ev
            WHERE ev.stream_id = s.id
            ORDER BY ev.stream_version DESC LIMIT 1
        ) v;
END;
$$;
