-- A transaction ID is scoped to its device and to the request it came with
-- (the room and event type of a send, the room and target of a redaction):
-- the same ID in two rooms is two events. Existing rows get the scope of
-- the send that made them.
ALTER TABLE event_txns ADD COLUMN scope TEXT NOT NULL DEFAULT '';
UPDATE event_txns AS t SET scope = 'send ' || e.room_id || ' ' || e.event_type
FROM events AS e WHERE e.event_id = t.event_id;
ALTER TABLE event_txns DROP CONSTRAINT event_txns_pkey;
ALTER TABLE event_txns ADD CONSTRAINT event_txns_pkey PRIMARY KEY (user_id, device_id, scope, txn_id);
ALTER TABLE event_txns ALTER COLUMN scope DROP DEFAULT;
