-- The full-text index takes new events through its pending list again
-- (fastupdate, turned off in 0014): appending an event's words there costs a
-- fraction of inserting each into the index's trees, and merging many at once
-- is cheaper than one by one. 0014 turned it off because the merge ran inline
-- in whichever insert found the list over its limit (4 MB), holding that batch
-- for up to ~130 ms; the server now merges the list in the background shortly
-- after events are written (src/storage/pg_search_index.rs), so inserts find
-- it far below the limit. Searches read the pending list as well.
ALTER INDEX events_search SET (fastupdate = on);
