-- The search index keyed by the event's stream ordering (the FTS5 rowid)
-- instead of copies of its event and room ids: ~75 bytes less a message, and a
-- redaction removes its event's row by rowid instead of scanning the table.
-- The room is the event's (joined on the stream ordering).
CREATE VIRTUAL TABLE event_text USING fts5(content, key UNINDEXED);
INSERT INTO event_text (rowid, content, key) SELECT stream_ordering, content, key FROM event_search;
DROP TABLE event_search;
ALTER TABLE event_text RENAME TO event_search;
