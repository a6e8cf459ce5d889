-- Events from other servers. See docs/ARCHITECTURE.md ("Federation").
--
-- An event's place in the room: 0 in the timeline (and the DAG's state),
-- 1 rejected by the authorization rules (kept, never in state or the
-- timeline), 2 an outlier (known, e.g. as another event's auth event or
-- as state received when joining, but not part of the timeline), 3 soft-
-- failed (passed its auth events and the state before it, failed the
-- current state: kept for the DAG, not shown, not a forward extremity).
ALTER TABLE events RENAME COLUMN rejected TO status;

-- Room events (PDUs) waiting to be sent to another server, in order; a row
-- is deleted once the destination accepted the transaction carrying it.
CREATE TABLE outbound_pdus (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    destination  TEXT NOT NULL,
    event_id     TEXT NOT NULL
);
CREATE INDEX outbound_pdus_destination ON outbound_pdus (destination, seq);
