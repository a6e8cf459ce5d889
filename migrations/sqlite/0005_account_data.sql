-- Account data, global (room_id '') and per room, including room tags
-- (m.tag). stream_ordering comes from the server-wide stream counter, so a
-- sync token's one position also says which account data a client has.
CREATE TABLE account_data (
    user_id          TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    data_type        TEXT NOT NULL,
    content          TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_ordering);
