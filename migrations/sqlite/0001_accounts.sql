-- Accounts: users, their devices, access/refresh/login tokens, registration
-- tokens. Booleans are BIGINT 0/1 and times are milliseconds since the epoch,
-- so that both backends decode the same Rust types.

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY,
    -- argon2id PHC string; NULL for accounts that cannot log in with a password
    password_hash  TEXT,
    is_admin       BIGINT NOT NULL DEFAULT 0,
    is_guest       BIGINT NOT NULL DEFAULT 0,
    -- deactivated users keep their row forever so that the ID is never reused
    deactivated    BIGINT NOT NULL DEFAULT 0,
    displayname    TEXT,
    avatar_url     TEXT,
    created_ts     BIGINT NOT NULL
);

CREATE TABLE devices (
    user_id        TEXT NOT NULL,
    device_id      TEXT NOT NULL,
    display_name   TEXT,
    last_seen_ts   BIGINT,
    last_seen_ip   TEXT,
    created_ts     BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One row per live access token. Tokens are stored only as SHA-256 hashes.
CREATE TABLE access_tokens (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    token_hash          BLOB NOT NULL UNIQUE,
    refresh_token_hash  BLOB UNIQUE,
    user_id             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    -- NULL: the token never expires (clients that did not ask for refresh)
    expires_ts          BIGINT,
    -- the row this one was refreshed from; deleted when this token is first used
    replaces_id         BIGINT,
    created_ts          BIGINT NOT NULL
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);
CREATE INDEX access_tokens_replaces ON access_tokens (replaces_id);

-- Single-use tokens for m.login.token (POST /v1/login/get_token).
CREATE TABLE login_tokens (
    token_hash   BLOB PRIMARY KEY,
    user_id      TEXT NOT NULL,
    expires_ts   BIGINT NOT NULL
);

-- Tokens an admin creates for m.login.registration_token.
CREATE TABLE registration_tokens (
    token         TEXT PRIMARY KEY,
    -- NULL: unlimited
    uses_allowed  BIGINT,
    completed     BIGINT NOT NULL DEFAULT 0,
    expiry_ts     BIGINT,
    created_ts    BIGINT NOT NULL
);
