-- The read models are derived from the log and rebuilt from it at will, so
-- they need not be written twice: UNLOGGED tables skip the write-ahead log.
-- Their WAL was most of every batch's WAL (an audit row with six index
-- entries, a grant and a token for each token issued), and each append's
-- commit waited for it to be flushed with its own. The log itself stays
-- logged: every event is durable when its append returns.
--
-- After a crash of PostgreSQL (or on a promoted standby) these tables come
-- back empty, checkpoints included, all together: the projection runner
-- then finds no checkpoint and replays the log into them, as
-- `grantd projections rebuild` does.
ALTER TABLE projection_checkpoints SET UNLOGGED;
ALTER TABLE clients SET UNLOGGED;
ALTER TABLE users SET UNLOGGED;
ALTER TABLE consents SET UNLOGGED;
ALTER TABLE grants SET UNLOGGED;
ALTER TABLE tokens SET UNLOGGED;
ALTER TABLE signing_keys SET UNLOGGED;
ALTER TABLE audit_trail SET UNLOGGED;
