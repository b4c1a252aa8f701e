-- Relations between events (m.relates_to with a rel_type): edits, reactions,
-- threads, references. Indexed by parent for /relations, /threads and the
-- aggregations served in unsigned.m.relations.
CREATE TABLE event_relations (
    event_id        TEXT PRIMARY KEY NOT NULL,
    room_id         TEXT NOT NULL,
    relates_to      TEXT NOT NULL,
    rel_type        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    sender          TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL
);
CREATE INDEX event_relations_parent ON event_relations (relates_to, rel_type, stream_ordering);
CREATE INDEX event_relations_threads ON event_relations (room_id, rel_type, stream_ordering);

-- Reports of events and rooms, for server admins.
CREATE TABLE event_reports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    room_id     TEXT NOT NULL,
    event_id    TEXT,
    reporter    TEXT NOT NULL,
    reason      TEXT,
    score       BIGINT,
    received_ts BIGINT NOT NULL
);

CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
