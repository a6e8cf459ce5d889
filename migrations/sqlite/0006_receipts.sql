-- Read receipts: the latest per (room, user, type, thread). thread_id is ''
-- for unthreaded receipts. stream_ordering comes from the shared counter.
CREATE TABLE receipts (
    room_id          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    receipt_type     TEXT NOT NULL,
    thread_id        TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    ts               BIGINT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_stream ON receipts (room_id, stream_ordering);
