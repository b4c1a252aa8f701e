-- Smaller indexes for what every message writes (database growth per message).
--
-- Keyed by the room id as text (45 bytes in v12 rooms), each index on `events`
-- cost ~140 bytes a message: besides the width, every room appends at the end
-- of its own key range in the middle of the B-tree, and PostgreSQL splits such
-- a page in the middle, leaving the left half half empty for good. Keyed by
-- hashtext(room_id), an int4, the (hash, stream) and (hash, timestamp) entries
-- are 28 bytes and fixed-width, and PostgreSQL recognises the ascending
-- insertions within a room and splits at the fill factor instead (nbtsplitloc.c
-- applies that only to entries of at most two int8s). The topological order
-- keeps its third column, the stream ordering that breaks ties, so its 36-byte
-- entries still split in the middle (~70 bytes a message): with (hash, depth)
-- alone, a page of /messages needs a sort step, and with statistics from when
-- the room was small the planner sorted the whole room (50-100 ms for 100,000
-- events) instead. A hash names a room only probably: every query also
-- compares the room id itself (see `PgStore::key_eq`). hashtext's values are
-- what hash indexes hold, so they are not expected to change across versions;
-- a dump and restore rebuilds the indexes anyway.
DROP INDEX events_room_topological;
DROP INDEX events_room_stream;
DROP INDEX events_room_ts;
CREATE INDEX events_room_topological ON events (hashtext(room_id), depth, stream_ordering);
CREATE INDEX events_room_stream ON events (hashtext(room_id), stream_ordering);
CREATE INDEX events_room_ts ON events (hashtext(room_id), origin_server_ts);

-- The notification rows by (user, room) the same way: nothing needs the
-- primary key's uniqueness (a row is written once, with its event).
ALTER TABLE event_push_actions DROP CONSTRAINT event_push_actions_pkey;
CREATE INDEX event_push_actions_member
    ON event_push_actions (hashtext(user_id), hashtext(room_id), stream_ordering);

-- Full-text search reads the text from the event itself through an expression
-- index, instead of a row per message holding its tsvector (~250 bytes a
-- message). What is indexed: m.room.message's body, m.room.name's name and
-- m.room.topic's topic, when a string (as SQLite's index, from timeline.rs);
-- a redacted event leaves the index with its content. jsonb refuses the
-- escape \u0000 (PostgreSQL text cannot hold a NUL), which JSON allows
-- anywhere in an event: such an event is stored but not searchable, rather
-- than refused (or, already stored, failing this migration).
CREATE FUNCTION event_search_text(kind TEXT, pdu TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT CASE WHEN jsonb_typeof(v) = 'string' THEN v #>> '{}' END
    FROM (SELECT CASE WHEN strpos(pdu, '\u0000') = 0 THEN (pdu::jsonb -> 'content') -> CASE kind
              WHEN 'm.room.message' THEN 'body' WHEN 'm.room.name' THEN 'name' WHEN 'm.room.topic' THEN 'topic'
          END END AS v) field
$$;
DROP TABLE event_search;
CREATE INDEX events_search ON events USING GIN (to_tsvector('simple', event_search_text(event_type, json)))
    WITH (fastupdate = off)
    WHERE event_type IN ('m.room.message', 'm.room.name', 'm.room.topic') AND redacted_by IS NULL;
