-- grantd_append_if_current, version 2. A writer may now prepare its next
-- batch on the head its previous batch will produce before that batch has
-- committed (two appends in flight); if the previous one then fails, the
-- head position the next one expects can still be reached by another
-- node's events, so the head's hash is checked as well as its position.
-- The announcement names the appending process ("<position> <origin>"), so
-- that a node can tell its own commits, which it publishes directly, from
-- another node's, which it reads from the log. The statements inside use
-- generic plans: their best plan never depends on the values, and planning
-- them anew for every append happened under the append lock.
--
-- Version 1 (fifteen arguments) stays for nodes not yet upgraded: it checks
-- the head's position only, which is enough for a writer that builds on
-- committed heads alone, as those nodes do; their announcements carry no
-- origin and are read as another node's.
CREATE FUNCTION grantd_append_if_current(
    lock_key BIGINT, expected_head BIGINT, expected_hash BYTEA, streams TEXT[], expected_versions BIGINT[],
    positions BIGINT[], stream_ids TEXT[], versions BIGINT[], event_types TEXT[], schema_versions INTEGER[],
    payloads TEXT[], metadata TEXT[], recorded TIMESTAMPTZ, prev_hashes BYTEA[], hashes BYTEA[], channel TEXT, origin TEXT)
RETURNS TABLE (stream_id TEXT, version BIGINT, hash BYTEA)
LANGUAGE plpgsql VOLATILE
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    head_position BIGINT;
    head_hash BYTEA;
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT ev.position, ev.hash INTO head_position, head_hash FROM events ev ORDER BY ev.position DESC LIMIT 1;
    IF COALESCE(head_position, 0) <> expected_head OR head_hash IS DISTINCT FROM expected_hash OR EXISTS (
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
        PERFORM pg_notify(channel, positions[array_length(positions, 1)]::TEXT || ' ' || origin);
    END IF;
END;
$$;
