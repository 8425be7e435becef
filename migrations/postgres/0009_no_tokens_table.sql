-- No query ever read the tokens table: the revocation index is the live view
-- in memory (fed by the log), and a grant's tokens are the events of its
-- stream. It cost a row and two index entries for every token issued.
-- (A node still on the previous binary fails to project while this table is
-- missing and retries; upgraded nodes project meanwhile.)
DROP TABLE IF EXISTS tokens;
