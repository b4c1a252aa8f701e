-- Account data changes get stream positions, so that /sync can send what changed.
ALTER TABLE account_data ADD COLUMN stream_id BIGINT NOT NULL DEFAULT 0;
CREATE INDEX account_data_stream ON account_data (user_id, stream_id);
CREATE INDEX memberships_user_stream ON memberships (user_id, stream_ordering);
CREATE INDEX events_room_stream ON events (room_id, stream_ordering);
