-- Smaller rows for what every message writes (database growth per message).

-- Client transaction ids, keyed by a 16-byte digest of (user, device, request
-- path, transaction id) instead of those strings (the path names the room):
-- ~140 bytes a message instead of ~560. Keyed by the event's stream ordering,
-- which is appended in order; the sender's user id is the event's sender.
CREATE TABLE client_txns (
    stream_ordering BIGINT PRIMARY KEY NOT NULL,
    txn_key         BYTEA NOT NULL UNIQUE,
    device_id       TEXT NOT NULL,
    txn_id          TEXT NOT NULL
);
-- The rows of event_txns are moved by the server when it starts (the digest
-- is computed there), which then drops the old table.

-- The DAG edges keyed by the event's stream ordering instead of its id: rows
-- are appended in order rather than scattered over the B-tree.
CREATE TABLE event_prev_events (
    stream_ordering BIGINT NOT NULL,
    prev_event_id   TEXT NOT NULL,
    PRIMARY KEY (stream_ordering, prev_event_id)
);
INSERT INTO event_prev_events (stream_ordering, prev_event_id)
    SELECT e.stream_ordering, edge.prev_event_id FROM event_edges edge JOIN events e ON e.event_id = edge.event_id;
DROP TABLE event_edges;
