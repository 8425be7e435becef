-- Commits are announced only to other nodes. Each node that follows the log
-- by LISTEN names itself in grantd_listeners once it listens, and again
-- every 10 s; an append announces its batch only while another node's row
-- is fresh (seen in the last minute). A node alone on its database had
-- announced every batch to itself: a signal, a wake-up of its listening
-- backend and of its own listener task per commit, only to be discarded
-- (about 3 µs of PostgreSQL CPU per client-credentials token). A node that
-- is not (or no longer) named here still follows the log by polling, every
-- second, as it always did when a notification was lost; nodes on the
-- previous binary do not name themselves, so until every node runs this
-- one some follow by polling. The function keeps its arguments (version 2);
-- version 1 still announces every batch.
CREATE TABLE grantd_listeners (
    node    TEXT        PRIMARY KEY,  -- the origin a node names in its announcements
    seen_at TIMESTAMPTZ NOT NULL
);

CREATE OR REPLACE FUNCTION grantd_append_if_current(
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
        IF EXISTS (SELECT 1 FROM grantd_listeners l WHERE l.node <> origin AND l.seen_at > now() - interval '1 minute') THEN
            PERFORM pg_notify(channel, positions[array_length(positions, 1)]::TEXT || ' ' || origin);
        END IF;
    END IF;
END;
$$;
