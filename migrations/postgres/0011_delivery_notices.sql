-- Delivery notices (docs/delivery-status.md): a member's delivery that
-- passed one of the viewer's own events, for the viewer's next sync. One row
-- per viewer, room and member, replaced by the member's next such delivery;
-- stream_ordering is the position of the recording.
CREATE TABLE delivery_notices (
    viewer_id        TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    ts               BIGINT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (viewer_id, room_id, user_id)
);
CREATE INDEX delivery_notices_by_viewer ON delivery_notices (viewer_id, stream_ordering);
