-- A transaction ID is scoped to its device and to the request it came with
-- (the room and event type of a send, the room and target of a redaction):
-- the same ID in two rooms is two events. Existing rows get the scope of
-- the send that made them.
CREATE TABLE event_txns_scoped (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);
INSERT OR IGNORE INTO event_txns_scoped (user_id, device_id, scope, txn_id, event_id)
SELECT t.user_id, t.device_id, 'send ' || COALESCE(e.room_id, '') || ' ' || COALESCE(e.event_type, ''), t.txn_id, t.event_id
FROM event_txns AS t LEFT JOIN events AS e ON e.event_id = t.event_id;
DROP TABLE event_txns;
ALTER TABLE event_txns_scoped RENAME TO event_txns;
