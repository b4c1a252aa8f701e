-- Full-text search of message bodies, room names and topics (FTS5).
CREATE VIRTUAL TABLE event_search USING fts5(
    content,
    event_id UNINDEXED,
    room_id UNINDEXED,
    key UNINDEXED,
    stream_ordering UNINDEXED
);
