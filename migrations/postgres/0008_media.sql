-- The media repository: one row per mxc:// id (pending until its content is uploaded),
-- and the thumbnails made of it. The bytes live in the content store, addressed by sha256.
CREATE TABLE media (
    media_id     TEXT PRIMARY KEY NOT NULL,
    user_id      TEXT NOT NULL,
    created_ts   BIGINT NOT NULL,
    -- Set while an asynchronous upload is pending: when the id lapses unused.
    expires_ts   BIGINT,
    uploaded_ts  BIGINT,
    sha256       TEXT,
    size         BIGINT,
    content_type TEXT,
    filename     TEXT
);
CREATE INDEX media_user ON media (user_id, uploaded_ts);
CREATE INDEX media_sha256 ON media (sha256);

CREATE TABLE media_thumbnails (
    media_id     TEXT NOT NULL REFERENCES media (media_id) ON DELETE CASCADE,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    method       TEXT NOT NULL,
    animated     BOOLEAN NOT NULL,
    sha256       TEXT NOT NULL,
    size         BIGINT NOT NULL,
    content_type TEXT NOT NULL,
    PRIMARY KEY (media_id, width, height, method, animated)
);
CREATE INDEX media_thumbnails_sha256 ON media_thumbnails (sha256);
