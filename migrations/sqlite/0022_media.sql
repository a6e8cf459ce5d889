-- The content repository (spec: "Content repository"). One row per media
-- ID, uploaded here or cached from another server. The bytes live in the
-- blob store under their SHA-256 (content_hash, hex), so a file uploaded
-- many times is stored once. content_hash is NULL while an asynchronous
-- upload (POST /media/v1/create) waits for its bytes; such a row is
-- forgotten after unused_expires_ts. created_ts is when the bytes arrived
-- (for remote media: when they were cached), which decides whether the
-- unauthenticated endpoints may serve them.
CREATE TABLE media (
    server_name        TEXT NOT NULL,
    media_id           TEXT NOT NULL,
    uploader           TEXT,
    content_type       TEXT,
    file_name          TEXT,
    size               BIGINT,
    content_hash       TEXT,
    created_ts         BIGINT NOT NULL,
    unused_expires_ts  BIGINT,
    last_access_ts     BIGINT NOT NULL,
    PRIMARY KEY (server_name, media_id)
);
-- Quotas and pending uploads per user.
CREATE INDEX media_by_uploader ON media (uploader);
-- Whether a blob is still referenced (cleanup).
CREATE INDEX media_by_hash ON media (content_hash);
-- Thumbnails, made on first request and kept: one per media, size and
-- method (and whether animated), their bytes in the same blob store.
CREATE TABLE media_thumbnails (
    server_name   TEXT NOT NULL,
    media_id      TEXT NOT NULL,
    width         BIGINT NOT NULL,
    height        BIGINT NOT NULL,
    method        TEXT NOT NULL,
    animated      BIGINT NOT NULL,
    content_type  TEXT NOT NULL,
    size          BIGINT NOT NULL,
    content_hash  TEXT NOT NULL,
    PRIMARY KEY (server_name, media_id, width, height, method, animated)
);
CREATE INDEX media_thumbnails_by_hash ON media_thumbnails (content_hash);
