-- Delivery status (org.tessera.delivered, docs/delivery-status.md): per room
-- and user, the latest event at least one of the user's devices has
-- received; and per user, the position up to which that was recorded.
CREATE TABLE deliveries (
    room_id          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    ts               BIGINT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX deliveries_stream ON deliveries (stream_ordering);
CREATE TABLE delivery_positions (
    user_id        TEXT PRIMARY KEY,
    delivered_upto BIGINT NOT NULL
);
