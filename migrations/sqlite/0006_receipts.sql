-- Read receipts: the latest per (room, type, user, thread), with a stream position for /sync.
CREATE TABLE receipts (
    room_id      TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    thread_id    TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    ts           BIGINT NOT NULL,
    stream_id    BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX receipts_stream ON receipts (room_id, stream_id);
