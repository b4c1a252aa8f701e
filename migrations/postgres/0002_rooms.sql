-- Rooms and their event graph.
CREATE TABLE rooms (
    room_id      TEXT PRIMARY KEY NOT NULL,
    room_version TEXT NOT NULL,
    creator      TEXT NOT NULL,
    is_public    BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts   BIGINT NOT NULL
);

-- Every event, as its PDU JSON. stream_ordering is the server-wide order in
-- which this server learned of events (what sync tokens count); (depth,
-- stream_ordering) is the topological order that /messages pages through.
-- state_group names the room state after the event; replaces_state is the
-- state event this one replaced (for unsigned.prev_content).
CREATE TABLE events (
    stream_ordering  BIGINT PRIMARY KEY NOT NULL,
    event_id         TEXT NOT NULL UNIQUE,
    room_id          TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    state_key        TEXT,
    sender           TEXT NOT NULL,
    depth            BIGINT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    state_group      BIGINT NOT NULL,
    replaces_state   TEXT,
    redacted_by      TEXT,
    json             TEXT NOT NULL
);
CREATE INDEX events_room_topological ON events (room_id, depth, stream_ordering);

-- The DAG: each event's prev_events. (auth_events are read from the PDU JSON
-- when an auth chain is needed: a row per auth event would triple the rows per message.)
CREATE TABLE event_edges (
    event_id      TEXT NOT NULL,
    prev_event_id TEXT NOT NULL,
    PRIMARY KEY (event_id, prev_event_id)
);

-- Events of a room that no other event names as a prev_event yet.
CREATE TABLE forward_extremities (
    room_id  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, event_id)
);

-- State snapshots, each stored as its differences from an earlier snapshot
-- (prev_group). position counts the state changes along the room's history;
-- prev_group is the snapshot at position (position & (position - 1)), so a
-- lookup reads at most log2(position) deltas and the deltas add up to
-- O(changes * log changes) rows, never members x events.
CREATE TABLE state_groups (
    id         BIGINT PRIMARY KEY NOT NULL,
    room_id    TEXT NOT NULL,
    prev_group BIGINT,
    position   BIGINT NOT NULL
);
CREATE INDEX state_groups_room_position ON state_groups (room_id, position);
CREATE TABLE state_group_entries (
    group_id   BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (group_id, event_type, state_key)
);

-- The current state of each room, and its memberships indexed by user.
CREATE TABLE current_state (
    room_id    TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key  TEXT NOT NULL,
    event_id   TEXT NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);
CREATE TABLE memberships (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    membership      TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    forgotten       BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, membership);

-- Client transaction ids, so that a retried PUT .../send gives the same event.
-- A retry is the same transaction id on the same path: scope names the path.
CREATE TABLE event_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    scope     TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    event_id  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, scope, txn_id)
);
CREATE INDEX event_txns_event ON event_txns (event_id);

CREATE TABLE room_aliases (
    alias   TEXT PRIMARY KEY NOT NULL,
    room_id TEXT NOT NULL,
    creator TEXT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);
