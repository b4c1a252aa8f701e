-- Presence: each user's latest state, with its position in the presence stream.
CREATE TABLE presence (
    user_id        TEXT PRIMARY KEY NOT NULL,
    state          TEXT NOT NULL,
    status_msg     TEXT,
    last_active_ts BIGINT NOT NULL,
    stream_id      BIGINT NOT NULL
);
CREATE INDEX presence_stream ON presence (stream_id);
