-- Full-text search of message bodies, room names and topics. The 'simple'
-- configuration does no stemming: chats mix languages.
CREATE TABLE event_search (
    event_id        TEXT PRIMARY KEY NOT NULL,
    room_id         TEXT NOT NULL,
    key             TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    vector          TSVECTOR NOT NULL
);
CREATE INDEX event_search_vector ON event_search USING GIN (vector);
CREATE INDEX event_search_room ON event_search (room_id, stream_ordering);
