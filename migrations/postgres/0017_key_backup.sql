-- Server-side key backups (spec: "Server-side key backups"). A user's
-- backup versions are numbered from 1 per user; a deleted version keeps its
-- row (deleted = 1) so that its number is never handed out again and
-- deleting it twice succeeds, but loses its keys. The current version is
-- the user's highest one not deleted. etag counts the changes to the
-- version's keys and key_count is how many it holds, both kept up to date
-- in the transaction that changes them.
CREATE TABLE backup_versions (
    user_id    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    algorithm  TEXT NOT NULL,
    auth_data  TEXT NOT NULL,
    etag       BIGINT NOT NULL,
    key_count  BIGINT NOT NULL,
    deleted    BIGINT NOT NULL,
    PRIMARY KEY (user_id, version)
);
-- One key per session: an upload replaces a stored key only when it is
-- better (decided by the service). session_data is the client's encrypted
-- JSON object, kept as sent.
CREATE TABLE backup_keys (
    user_id              TEXT NOT NULL,
    version              BIGINT NOT NULL,
    room_id              TEXT NOT NULL,
    session_id           TEXT NOT NULL,
    first_message_index  BIGINT NOT NULL,
    forwarded_count      BIGINT NOT NULL,
    is_verified          BIGINT NOT NULL,
    session_data         TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
