-- Relations between events (m.relates_to): edits, reactions, threads,
-- references. One row per relating event; deleted when it is redacted, so
-- aggregations never count redacted events.
CREATE TABLE event_relations (
    event_id         TEXT PRIMARY KEY,
    relates_to       TEXT NOT NULL,
    rel_type         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    sender           TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    aggregation_key  TEXT
);
CREATE INDEX event_relations_target ON event_relations (relates_to, rel_type, stream_ordering);
CREATE INDEX event_relations_threads ON event_relations (room_id, rel_type, stream_ordering);
