-- The DAG edges indexed by the event's stream ordering alone: the primary key
-- (stream_ordering, prev_event_id) held a copy of the 45-byte event id, ~80
-- bytes of index a message. An edge is written once, with its event, and the
-- writer drops a prev event that a PDU names twice (sql_rooms.rs).
ALTER TABLE event_prev_events DROP CONSTRAINT event_prev_events_pkey;
CREATE INDEX event_prev_events_stream ON event_prev_events (stream_ordering);
