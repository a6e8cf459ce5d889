-- Presence per user. The state shown to others is derived at read time from
-- these timestamps (idle → unavailable, no sync → offline); a sweeper
-- records such transitions with a new position so incremental syncs see them.
CREATE TABLE presence (
    user_id          TEXT PRIMARY KEY,
    state            TEXT NOT NULL,
    status_msg       TEXT,
    last_active_ts   BIGINT NOT NULL,
    last_sync_ts     BIGINT NOT NULL,
    stream_ordering  BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_ordering);
