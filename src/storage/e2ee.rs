//! Storage for end-to-end encryption: device and cross-signing keys, one-time
//! and fallback keys, signatures, the device-list stream, to-device messages and
//! server-side key backup. The server only stores and relays: every payload is
//! opaque JSON text here.

use async_trait::async_trait;

use super::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceKeysRow {
    pub user_id: String,
    pub device_id: String,
    pub key_json: String,
    /// The device's display name (served as `unsigned.device_display_name`).
    pub display_name: Option<String>,
}

/// A one-time or fallback key about to be stored.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub algorithm: String,
    /// The part after `algorithm:` in the key id.
    pub key_id: String,
    pub key_json: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CrossSigningKeyRow {
    pub user_id: String,
    pub key_type: String,
    pub key_json: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SignatureRow {
    pub target_user_id: String,
    /// A device id, or a cross-signing key's public key.
    pub target_key_id: String,
    pub signer_user_id: String,
    /// `ed25519:<device id or public key>`.
    pub signer_key_id: String,
    pub signature: String,
}

/// One message for one device.
#[derive(Debug, Clone)]
pub struct NewToDevice<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub event_type: &'a str,
    pub content: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ToDeviceRow {
    pub stream_id: i64,
    pub sender: String,
    pub event_type: String,
    pub content: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BackupVersionRow {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: String,
    pub etag: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BackupKeyRow {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: String,
}

#[async_trait]
pub trait E2eeStore: Send + Sync {
    async fn put_device_keys(&self, user_id: &str, device_id: &str, key_json: &str) -> Result<()>;
    /// The device keys of every device of these users that has uploaded keys.
    async fn device_keys_of(&self, user_ids: &[String]) -> Result<Vec<DeviceKeysRow>>;
    /// Stores new one-time keys; a key id already stored keeps its first value.
    async fn add_one_time_keys(&self, user_id: &str, device_id: &str, keys: &[NewKey]) -> Result<()>;
    /// `(algorithm, count)` of the device's unclaimed one-time keys.
    async fn one_time_key_counts(&self, user_id: &str, device_id: &str) -> Result<Vec<(String, i64)>>;
    /// Replaces the device's fallback key for the algorithm (the same key keeps its `used` flag).
    async fn put_fallback_key(&self, user_id: &str, device_id: &str, key: &NewKey) -> Result<()>;
    async fn unused_fallback_key_types(&self, user_id: &str, device_id: &str) -> Result<Vec<String>>;
    /// Takes one key per `(user, device, algorithm)`, all in one transaction: a
    /// one-time key (removed, never handed out twice, even to concurrent claims)
    /// or else the fallback key (marked used). Returns `(full key id, key json)`
    /// for each request, in order. `wanted` comes sorted, so that concurrent
    /// claims mark fallback keys in one order.
    async fn claim_keys(&self, wanted: &[(String, String, String)]) -> Result<Vec<Option<(String, String)>>>;

    async fn put_cross_signing_key(&self, user_id: &str, key_type: &str, key_json: &str) -> Result<()>;
    async fn cross_signing_keys_of(&self, user_ids: &[String]) -> Result<Vec<CrossSigningKeyRow>>;
    async fn add_signatures(&self, signatures: &[SignatureRow]) -> Result<()>;
    /// Signatures uploaded on the keys of these users.
    async fn signatures_on(&self, user_ids: &[String]) -> Result<Vec<SignatureRow>>;

    /// Records that the user's devices or keys changed at `stream_id`.
    async fn mark_device_list_changed(&self, user_id: &str, stream_id: i64) -> Result<()>;
    /// Users whose device list changed in `(after, upto]`.
    async fn device_list_changes(&self, after: i64, upto: i64) -> Result<Vec<String>>;
    async fn max_device_list_stream(&self) -> Result<i64>;
    /// Those of `candidates` who are joined to a room that `user_id` is joined to.
    async fn users_sharing_a_room(&self, user_id: &str, candidates: &[String]) -> Result<Vec<String>>;
    /// Every user joined to a room that `user_id` is joined to (`user_id` included).
    async fn room_mates(&self, user_id: &str) -> Result<Vec<String>>;
    /// `m.room.member` events in `(after, upto]` of every room the user has a membership in.
    async fn member_events_in_rooms_of(&self, user_id: &str, after: i64, upto: i64) -> Result<Vec<super::StoredEvent>>;

    /// Stores the messages at `stream_id`, once per `(sender, sender_device, txn_id)`:
    /// `false` when the transaction was already used (nothing stored).
    async fn add_to_device(
        &self,
        sender: &str,
        sender_device: &str,
        txn_id: &str,
        messages: &[NewToDevice<'_>],
        stream_id: i64,
    ) -> Result<bool>;
    /// The device's messages in `(after, upto]`, oldest first.
    async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        after: i64,
        upto: i64,
        limit: i64,
    ) -> Result<Vec<ToDeviceRow>>;
    /// Deletes the device's messages up to `upto` (acknowledged by a sync token).
    async fn delete_to_device(&self, user_id: &str, device_id: &str, upto: i64) -> Result<()>;
    async fn max_to_device_stream(&self) -> Result<i64>;

    /// Creates a backup version, numbered after every version the user ever had.
    async fn create_backup_version(&self, user_id: &str, algorithm: &str, auth_data: &str) -> Result<i64>;
    /// The version, or the latest one when `None`; deleted versions are not found.
    async fn backup_version(&self, user_id: &str, version: Option<i64>) -> Result<Option<BackupVersionRow>>;
    async fn update_backup_version(&self, user_id: &str, version: i64, auth_data: &str) -> Result<bool>;
    /// Deletes the version and its keys; `false` if it never existed (deleting twice is fine).
    async fn delete_backup_version(&self, user_id: &str, version: i64) -> Result<bool>;
    async fn backup_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<BackupKeyRow>>;
    /// Writes the keys (replacing those with the same room and session) and
    /// moves the version's etag on; returns the new etag.
    async fn put_backup_keys(&self, user_id: &str, version: i64, keys: &[BackupKeyRow]) -> Result<i64>;
    /// Deletes the matching keys and moves the etag on; returns the new etag.
    async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<i64>;
    async fn count_backup_keys(&self, user_id: &str, version: i64) -> Result<i64>;
}
