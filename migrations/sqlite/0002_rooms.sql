-- Rooms as signed event DAGs. See docs/ARCHITECTURE.md ("Storage").

CREATE TABLE rooms (
    room_id       TEXT PRIMARY KEY,
    room_version  TEXT NOT NULL,
    creator       TEXT NOT NULL,
    -- published in the room directory
    is_public     BIGINT NOT NULL DEFAULT 0,
    created_ts    BIGINT NOT NULL
);

-- Every event, stored once: the signed PDU plus indexed columns.
-- stream_ordering is assigned by the server when it accepts the event and
-- increases strictly in commit order; (depth, stream_ordering) is the
-- topological order within a room.
CREATE TABLE events (
    stream_ordering     BIGINT PRIMARY KEY,
    event_id            TEXT NOT NULL UNIQUE,
    room_id             TEXT NOT NULL,
    sender              TEXT NOT NULL,
    event_type          TEXT NOT NULL,
    state_key           TEXT,
    depth               BIGINT NOT NULL,
    origin_server_ts    BIGINT NOT NULL,
    -- the PDU as signed; replaced by its redacted form when redacted
    json                TEXT NOT NULL,
    redacted_by         TEXT,
    rejected            BIGINT NOT NULL DEFAULT 0,
    -- state groups before and after this event (equal for non-state events)
    state_before        BIGINT NOT NULL,
    state_after         BIGINT NOT NULL,
    -- the sending device and its transaction ID, for `unsigned.transaction_id`
    txn_device_id       TEXT,
    txn_id              TEXT
);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
CREATE INDEX events_room_topological ON events (room_id, depth, stream_ordering);

-- The DAG's edges (prev_events), for walking the graph and federation.
CREATE TABLE event_edges (
    event_id       TEXT NOT NULL,
    prev_event_id  TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);

-- Events with no children yet: the next local event's prev_events.
CREATE TABLE forward_extremities (
    room_id   TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State sets: a group is either a full snapshot (parent_id NULL) or a
-- delta on its parent. A new snapshot is written once the deltas since the
-- last one add up to the snapshot's size, so storage per state change is
-- O(1) amortised and resolving a group reads O(room state) rows.
CREATE TABLE state_groups (
    id              BIGINT PRIMARY KEY,
    room_id         TEXT NOT NULL,
    parent_id       BIGINT,
    -- entries stored in the deltas since the last snapshot, this one included
    chain_entries   BIGINT NOT NULL,
    -- entries in the full state this group stands for
    state_entries   BIGINT NOT NULL
);
CREATE TABLE state_group_entries (
    group_id    BIGINT NOT NULL,
    event_type  TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (group_id, event_type, state_key)
);

-- The room's state now, and memberships, as indexed tables so that "state
-- of room", "members of room" and "rooms of user" are single queries.
CREATE TABLE current_state (
    room_id     TEXT NOT NULL,
    event_type  TEXT NOT NULL,
    state_key   TEXT NOT NULL,
    event_id    TEXT NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);
CREATE TABLE room_memberships (
    room_id          TEXT NOT NULL,
    user_id          TEXT NOT NULL,
    membership       TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    stream_ordering  BIGINT NOT NULL,
    -- the user asked to forget the room (after leaving)
    forgotten        BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, membership);

-- PUT /send/{type}/{txnId} idempotency: one event per (device, txn ID).
CREATE TABLE event_txns (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    txn_id     TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

CREATE TABLE room_aliases (
    alias       TEXT PRIMARY KEY,
    room_id     TEXT NOT NULL,
    creator     TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
