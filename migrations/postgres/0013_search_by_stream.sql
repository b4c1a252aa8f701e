-- The search rows keyed by the event's stream ordering instead of copies of its
-- event and room ids (and their two indexes): the room is the event's, joined
-- on the stream ordering. ~300 bytes less a message.
ALTER TABLE event_search DROP CONSTRAINT event_search_pkey;
DROP INDEX event_search_room;
ALTER TABLE event_search DROP COLUMN event_id, DROP COLUMN room_id;
ALTER TABLE event_search ADD PRIMARY KEY (stream_ordering);
