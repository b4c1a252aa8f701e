-- End-to-end encryption: the server stores and relays keys, never plaintext.

-- Each device's signed identity keys, as uploaded (signatures by others live in e2e_signatures).
CREATE TABLE e2e_device_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id)
);

-- One-time keys: each is handed out once by /keys/claim, then deleted.
CREATE TABLE e2e_one_time_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, algorithm, key_id)
);

-- Fallback keys: one per device and algorithm, handed out when one-time keys run out.
CREATE TABLE e2e_fallback_keys (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    key_id    TEXT NOT NULL,
    key_json  TEXT NOT NULL,
    used      BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, device_id, algorithm)
);

-- Cross-signing keys: master, self_signing, user_signing.
CREATE TABLE e2e_cross_signing_keys (
    user_id  TEXT NOT NULL,
    key_type TEXT NOT NULL,
    key_json TEXT NOT NULL,
    PRIMARY KEY (user_id, key_type)
);

-- Signatures uploaded through /keys/signatures/upload: on a device (target_key_id =
-- device id) or on a cross-signing key (target_key_id = its public key).
CREATE TABLE e2e_signatures (
    target_user_id TEXT NOT NULL,
    target_key_id  TEXT NOT NULL,
    signer_user_id TEXT NOT NULL,
    signer_key_id  TEXT NOT NULL,
    signature      TEXT NOT NULL,
    PRIMARY KEY (target_user_id, target_key_id, signer_user_id, signer_key_id)
);

-- The device-list stream: the latest position at which each user's devices or keys changed.
CREATE TABLE device_list_stream (
    user_id   TEXT PRIMARY KEY NOT NULL,
    stream_id BIGINT NOT NULL
);
CREATE INDEX device_list_stream_position ON device_list_stream (stream_id);

-- To-device messages waiting for their device to acknowledge them with a later sync token.
CREATE TABLE to_device_messages (
    user_id    TEXT NOT NULL,
    device_id  TEXT NOT NULL,
    stream_id  BIGINT NOT NULL,
    sender     TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, stream_id)
);
CREATE TABLE to_device_txns (
    user_id   TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id    TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Stream positions that must survive the deletion of their rows (to-device).
CREATE TABLE stream_positions (
    stream   TEXT PRIMARY KEY NOT NULL,
    position BIGINT NOT NULL
);

-- Server-side key backup (m.megolm_backup.v1.curve25519-aes-sha2 and others: opaque to us).
CREATE TABLE room_key_backup_versions (
    user_id   TEXT NOT NULL,
    version   BIGINT NOT NULL,
    algorithm TEXT NOT NULL,
    auth_data TEXT NOT NULL,
    etag      BIGINT NOT NULL DEFAULT 0,
    deleted   BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);
CREATE TABLE room_key_backups (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        TEXT NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id)
);
