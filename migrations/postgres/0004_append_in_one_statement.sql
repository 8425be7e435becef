-- An append in one statement (and, run outside a transaction block, one
-- round trip including its commit), for a writer that already knows the
-- head of the log and the versions of the streams it writes — as the only
-- writer usually does, from its previous commit. Under the global append
-- lock it checks both; if they hold it inserts the rows (positions, chain
-- hashes and versions computed by the caller from them) and announces the
-- new head, returning no row. If they do not, it inserts nothing and
-- returns the actual head (first row, stream_id NULL) and the actual
-- version of every given stream, so that the caller can prepare again.
CREATE FUNCTION grantd_append_if_current(
    lock_key BIGINT, expected_head BIGINT, streams TEXT[], expected_versions BIGINT[],
    positions BIGINT[], stream_ids TEXT[], versions BIGINT[], event_types TEXT[], schema_versions INTEGER[],
    payloads TEXT[], metadata TEXT[], recorded TIMESTAMPTZ, prev_hashes BYTEA[], hashes BYTEA[], channel TEXT)
RETURNS TABLE (stream_id TEXT, version BIGINT, hash BYTEA)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    head_position BIGINT;
    head_hash BYTEA;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT ev.position, ev.hash INTO head_position, head_hash FROM events ev ORDER BY ev.position DESC LIMIT 1;
    IF COALESCE(head_position, 0) <> expected_head OR EXISTS (
        SELECT 1 FROM UNNEST(streams, expected_versions) AS x(id, expected)
        WHERE COALESCE((SELECT MAX(ev.stream_version) FROM events ev WHERE ev.stream_id = x.id), 0) <> x.expected
    ) THEN
        RETURN QUERY SELECT NULL::TEXT, COALESCE(head_position, 0), head_hash;
        RETURN QUERY
            SELECT x.id, COALESCE((SELECT MAX(ev.stream_version) FROM events ev WHERE ev.stream_id = x.id), 0), NULL::BYTEA
            FROM UNNEST(streams) AS x(id);
        RETURN;
    END IF;
    IF COALESCE(array_length(positions, 1), 0) > 0 THEN
        INSERT INTO events (position, stream_id, stream_version, event_type, schema_version, payload, metadata, recorded_at, prev_hash, hash)
        SELECT u.p, u.s, u.v, u.t, u.sv, u.pl::jsonb, u.md::jsonb, recorded, u.ph, u.h
        FROM UNNEST(positions, stream_ids, versions, event_types, schema_versions, payloads, metadata, prev_hashes, hashes)
            AS u(p, s, v, t, sv, pl, md, ph, h);
        PERFORM pg_notify(channel, positions[array_length(positions, 1)]::TEXT);
    END IF;
END;
$$;
