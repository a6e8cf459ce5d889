-- Device identity keys as uploaded (`POST /keys/upload`), one row per
-- device; stream_ordering is the position of their last change.
CREATE TABLE device_keys (
    user_id          TEXT NOT NULL,
    device_id        TEXT NOT NULL,
    keys_json        TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);
-- Fallback keys: one per device and algorithm, kept when claimed (marked
-- used) and replaced by the next upload.
CREATE TABLE fallback_keys (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    key_id     TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    used       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, device_id, algorithm)
);
-- A user's device list changed (keys uploaded, a device added or removed)
-- at a stream position: what `device_lists.changed` and `/keys/changes`
-- read.
CREATE TABLE device_list_changes (
    user_id          TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (stream_ordering, user_id)
);
CREATE INDEX device_list_changes_user ON device_list_changes (user_id, stream_ordering);
-- Unclaimed one-time keys; a claim deletes its key. `seq` is the upload
-- order, which claims follow (MSC4225; Complement's TestKeyClaimOrdering).
CREATE TABLE one_time_keys (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    -- the whole key ID, `algorithm:name`
    key_id     TEXT NOT NULL,
    key_json   TEXT NOT NULL,
    UNIQUE (user_id, device_id, key_id)
);
CREATE INDEX one_time_keys_claim ON one_time_keys (user_id, device_id, algorithm, seq);
