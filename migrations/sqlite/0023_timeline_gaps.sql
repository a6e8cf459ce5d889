-- Gaps in a room's timeline here: each row names the stream position of
-- an event appended without its previous events (a join through another
-- server, or a PDU whose missing previous events could not all be
-- fetched). Sync marks a timeline that reaches across one `limited` and
-- starts it at the gap; /messages paging back past one asks another
-- server for what lies behind it (backfill).
CREATE TABLE timeline_gaps (
    room_id          TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    PRIMARY KEY (room_id, stream_ordering)
);
