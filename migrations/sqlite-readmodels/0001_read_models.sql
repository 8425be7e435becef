-- Read models: derived from the events, dropped and rebuilt by
-- `grantd projections rebuild`. Times are RFC 3339 text (UTC, microseconds).
CREATE TABLE projection_checkpoints (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL
);

CREATE TABLE clients (
    id             TEXT    PRIMARY KEY,      -- the aggregate id (client-{id})
    client_id      TEXT    NOT NULL UNIQUE,  -- the OAuth client_id
    name           TEXT    NOT NULL,
    redirect_uris  TEXT    NOT NULL,         -- JSON array
    grant_types    TEXT    NOT NULL,         -- JSON array
    scopes         TEXT    NOT NULL,         -- JSON array
    confidential   BOOLEAN NOT NULL,
    first_party    BOOLEAN NOT NULL,
    id_token_alg   TEXT    NOT NULL,
    disabled       BOOLEAN NOT NULL,
    created_at     TEXT    NOT NULL,
    updated_at     TEXT    NOT NULL,
    version        BIGINT  NOT NULL
);

CREATE TABLE users (
    id         TEXT    PRIMARY KEY,
    username   TEXT    NOT NULL,
    email      TEXT,
    name       TEXT,
    disabled   BOOLEAN NOT NULL,
    created_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    version    BIGINT  NOT NULL
);
CREATE INDEX users_by_username ON users (username);

CREATE TABLE consents (
    user_id    TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    scopes     TEXT    NOT NULL,             -- JSON array in force (empty once revoked)
    active     BOOLEAN NOT NULL,
    granted_at TEXT    NOT NULL,
    updated_at TEXT    NOT NULL,
    revoked_at TEXT,
    PRIMARY KEY (user_id, client_id)
);
CREATE INDEX consents_by_client ON consents (client_id);

CREATE TABLE grants (
    grant_id          TEXT PRIMARY KEY,
    grant_type        TEXT NOT NULL,
    client_id         TEXT NOT NULL,
    subject           TEXT NOT NULL,
    user_id           TEXT,
    scopes            TEXT NOT NULL,         -- JSON array
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    revoked_at        TEXT,
    revocation_reason TEXT
);
CREATE INDEX grants_by_user_client ON grants (user_id, client_id);
CREATE INDEX grants_by_client ON grants (client_id);

-- The revocation index: every token issued, by jti (access) or hash (code, refresh).
CREATE TABLE tokens (
    token_key     TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,             -- code | access | refresh
    grant_id      TEXT NOT NULL,
    issued_at     TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    superseded_at TEXT                       -- code redeemed / refresh token rotated
);
CREATE INDEX tokens_by_grant ON tokens (grant_id);

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    alg          TEXT NOT NULL,
    status       TEXT NOT NULL,              -- generated | active | retired
    public_jwk   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    activated_at TEXT,
    retired_at   TEXT,
    verify_until TEXT
);

-- The audit trail: one row per event, indexed for compliance queries.
CREATE TABLE audit_trail (
    position       BIGINT PRIMARY KEY,
    stream_id      TEXT   NOT NULL,
    aggregate      TEXT   NOT NULL,
    event_type     TEXT   NOT NULL,
    actor_kind     TEXT   NOT NULL,
    actor_id       TEXT   NOT NULL,
    user_id        TEXT,
    client_id      TEXT,
    grant_id       TEXT,
    request_id     TEXT,
    source_address TEXT,
    recorded_at    TEXT   NOT NULL
);
CREATE INDEX audit_by_user ON audit_trail (user_id, position);
CREATE INDEX audit_by_client ON audit_trail (client_id, position);
CREATE INDEX audit_by_actor ON audit_trail (actor_kind, actor_id, position);
CREATE INDEX audit_by_stream ON audit_trail (stream_id, position);
CREATE INDEX audit_by_type ON audit_trail (event_type, position);
CREATE INDEX audit_by_time ON audit_trail (recorded_at);
