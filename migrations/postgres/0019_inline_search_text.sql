-- event_search_text (0015), which the full-text index computes for every new
-- event, had a FROM clause in its body: PostgreSQL could not inline it, so each
-- INSERT parsed and planned the body anew and ran it through the SQL-function
-- executor, and parsed the event's JSON into jsonb twice. This body is one
-- expression (inlined into the index expression and the search query alike)
-- and parses the JSON once. Not STRICT: a strict function is inlined only if
-- its body is strict throughout, which CASE is not; both arguments come from
-- NOT NULL columns.
--
-- It returns what the old body returned for every input (the content field's
-- text when it is a JSON string, otherwise NULL; no JSON with an escaped NUL
-- is parsed, as jsonb refuses it; of duplicate keys the last one counts), so
-- the index built with the old body stays valid. `strict` mode keeps jsonpath
-- from looking into arrays, which `->` never did; `silent` turns its errors on
-- missing keys into NULL.
CREATE OR REPLACE FUNCTION event_search_text(kind TEXT, pdu TEXT) RETURNS TEXT
    LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN strpos(pdu, '\u0000') = 0 THEN jsonb_path_query_first(pdu::jsonb, CASE kind
        WHEN 'm.room.message' THEN 'strict $.content.body ? (@.type() == "string")'::jsonpath
        WHEN 'm.room.name' THEN 'strict $.content.name ? (@.type() == "string")'::jsonpath
        WHEN 'm.room.topic' THEN 'strict $.content.topic ? (@.type() == "string")'::jsonpath
    END, '{}', true) #>> '{}' END
$$;
-- Each connection caches the index's expression as it was when first read, and
-- replacing the function does not tell them: a connection that read it before
-- this migration would no longer match searches to the index. Altering the
-- index does tell every connection (fastupdate stays as 0018 set it). A later
-- change to this body that changes any result needs a REINDEX.
ALTER INDEX events_search SET (fastupdate = on);
