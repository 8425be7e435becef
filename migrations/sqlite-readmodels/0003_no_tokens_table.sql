-- No query ever read the tokens table: the revocation index is the live view
-- in memory (fed by the log), and a grant's tokens are the events of its
-- stream. It cost a row and two index entries for every token issued.
DROP TABLE IF EXISTS tokens;
