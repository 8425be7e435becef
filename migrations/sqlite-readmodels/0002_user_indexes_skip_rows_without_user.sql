-- Client-credentials grants and their tokens have no user, and they are
-- most of the rows: indexes by user now leave them out instead of filing
-- every one of them under NULL. Lookups by user (`user_id = ?`) use the
-- partial indexes as before.
DROP INDEX IF EXISTS grants_by_user_client;
CREATE INDEX grants_by_user_client ON grants (user_id, client_id) WHERE user_id IS NOT NULL;
DROP INDEX IF EXISTS audit_by_user;
CREATE INDEX audit_by_user ON audit_trail (user_id, position) WHERE user_id IS NOT NULL;
