-- Push-rule verdicts: one row per local recipient of an event that
-- notifies or highlights them. thread_id is the thread root's event ID, or
-- 'main' for the main timeline (as threaded receipts name it). Counts in
-- sync are the rows after the user's read receipt; GET /notifications
-- pages through them newest first.
CREATE TABLE event_push_actions (
    user_id          TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    event_id         TEXT NOT NULL,
    thread_id        TEXT NOT NULL,
    actions          TEXT NOT NULL,
    notify           BIGINT NOT NULL,
    highlight        BIGINT NOT NULL,
    ts               BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_ordering)
);
CREATE INDEX event_push_actions_by_user ON event_push_actions (user_id, stream_ordering);
