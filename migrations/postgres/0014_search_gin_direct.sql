-- New search entries go straight into the GIN index instead of its pending
-- list. The pending list (up to gin_pending_list_limit, 4 MB) is flushed inline
-- by whichever insert fills it, which held that event's transaction (and the
-- batch behind it) for up to ~130 ms; written directly, each message's words
-- cost ~33 bytes of index. Entries already pending are moved now.
ALTER INDEX event_search_vector SET (fastupdate = off);
SELECT gin_clean_pending_list('event_search_vector'::regclass);
