-- What each local member's push rules said about each event that notifies
-- them: unread counts are the rows after the member's read receipt. thread_id
-- is the thread root's event id, or 'main' for the main timeline.
CREATE TABLE event_push_actions (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    thread_id       TEXT NOT NULL,
    highlight       BOOLEAN NOT NULL,
    actions         TEXT NOT NULL,
    ts              BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, stream_ordering)
);
-- No secondary index: every page an event's transaction touches is written
-- again to the WAL, and a room's messages are the hot path. GET /notifications
-- reads a user's rows through the primary key; a redaction deletes its
-- target's rows member by member.

-- Sending an event marks the sender's notifications up to it as read (in its
-- thread): each user's latest event per room and thread. Kept by a trigger so
-- that sending costs no extra statement.
CREATE TABLE push_own_events (
    user_id         TEXT NOT NULL,
    room_id         TEXT NOT NULL,
    thread_id       TEXT NOT NULL,
    stream_ordering BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, thread_id)
);
-- A thread reply (event_relations, rel_type m.thread) marks its thread; any
-- other event the main timeline. A JSON string "m.thread" in the event is the
-- cheap test for a thread reply (no JSON parsing in the trigger).
CREATE FUNCTION push_own_event() RETURNS trigger AS $$
BEGIN
    INSERT INTO push_own_events (user_id, room_id, thread_id, stream_ordering)
    VALUES (NEW.sender, NEW.room_id, TG_ARGV[0], NEW.stream_ordering)
    ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET stream_ordering = excluded.stream_ordering;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE FUNCTION push_own_thread_event() RETURNS trigger AS $$
BEGIN
    INSERT INTO push_own_events (user_id, room_id, thread_id, stream_ordering)
    VALUES (NEW.sender, NEW.room_id, NEW.relates_to, NEW.stream_ordering)
    ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET stream_ordering = excluded.stream_ordering;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
CREATE TRIGGER events_push_own_event AFTER INSERT ON events
    FOR EACH ROW WHEN (strpos(NEW.json, '"m.thread"') = 0) EXECUTE FUNCTION push_own_event('main');
CREATE TRIGGER event_relations_push_own_event AFTER INSERT ON event_relations
    FOR EACH ROW WHEN (NEW.rel_type = 'm.thread') EXECUTE FUNCTION push_own_thread_event();

-- Pushers (POST /pushers/set): unique per user by (app_id, pushkey).
CREATE TABLE pushers (
    user_id             TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    data                TEXT NOT NULL,
    created_ts          BIGINT NOT NULL,
    PRIMARY KEY (user_id, app_id, pushkey)
);
CREATE INDEX pushers_key ON pushers (app_id, pushkey);
