-- Two of the audit trail's six indexes go, one B-tree insert each for every
-- event (nearly all of them client-credentials tokens):
--
-- * by stream: a stream's events are found through the log's own unique
--   index on (stream_id, stream_version), which every event pays for anyway;
-- * by type: now leaves out AccessTokenIssued, the most common type by far.
--   A filter on it reads the trail in position order and finds its rows
--   densely; every other type keeps its index.
DROP INDEX IF EXISTS audit_by_stream;
DROP INDEX IF EXISTS audit_by_type;
CREATE INDEX audit_by_type ON audit_trail (event_type, position) WHERE event_type <> 'AccessTokenIssued';
