-- A room's forward extremity changes with every event, mostly as one UPDATE of
-- its event_id. With event_id in the primary key, each update left a new index
-- entry (and a dead one) behind until VACUUM: ~165 bytes of index per message.
-- Indexed by room alone, the update changes no indexed column and PostgreSQL
-- keeps it on the same page (a HOT update), which the free space left by the
-- fill factor allows. No two rows name the same event: an event becomes an
-- extremity once, when it is stored.
ALTER TABLE forward_extremities DROP CONSTRAINT forward_extremities_pkey;
CREATE INDEX forward_extremities_room ON forward_extremities (room_id);
ALTER TABLE forward_extremities SET (fillfactor = 50);
