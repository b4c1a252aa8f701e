//! Storage: one trait per area, implemented for SQLite and PostgreSQL.
//!
//! The SQL both engines understand is written once (`sql.rs`, instantiated per
//! engine by a macro); engine-specific parts (connecting, pool layout, DDL in
//! `migrations/<engine>/`) live in `sqlite.rs` and `postgres.rs`. Nothing here
//! knows Matrix error codes.

mod e2ee;
mod media;
mod pg_events;
mod pg_search_index;
mod postgres;
mod presence;
mod push;
mod rooms;
mod sql;
mod sql_e2ee;
mod sql_media;
mod sql_push;
mod sql_rooms;
mod sqlite;
#[cfg(test)]
pub(crate) mod tests;
#[cfg(test)]
mod tests_media;

use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "the database has migration {0}, which this version of Kith does not know: it was used by a newer Kith; refusing to start"
    )]
    DatabaseNewer(i64),
    #[error("migration failed: {0}")]
    Migrate(sqlx::migrate::MigrateError),
    #[error("this client transaction id was already used")]
    DuplicateTxn,
}

impl From<sqlx::migrate::MigrateError> for StorageError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        match e {
            sqlx::migrate::MigrateError::VersionMissing(v) => Self::DatabaseNewer(v),
            other => Self::Migrate(other),
        }
    }
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UserRecord {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub deactivated: bool,
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
    pub created_ts: i64,
}

#[derive(Debug, Clone)]
pub struct NewUser<'a> {
    pub user_id: &'a str,
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub displayname: Option<&'a str>,
    pub created_ts: i64,
}

#[derive(Debug, Clone, sqlx::FromRow, Serialize)]
pub struct DeviceRecord {
    pub user_id: String,
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub last_seen_ip: Option<String>,
}

/// What an access token resolves to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TokenOwner {
    pub user_id: String,
    pub device_id: String,
    pub is_guest: bool,
    /// Milliseconds since the epoch; `None` = never expires.
    pub expires_ts: Option<i64>,
}

/// A new session for a device: the hashes of its tokens, never the tokens.
#[derive(Debug, Clone)]
pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub access_token_hash: &'a str,
    pub refresh_token_hash: Option<&'a str>,
    pub expires_ts: Option<i64>,
    pub now: i64,
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Creates the user; `false` if the user id was ever taken (deactivated included).
    async fn create_user(&self, user: &NewUser<'_>) -> Result<bool>;
    async fn get_user(&self, user_id: &str) -> Result<Option<UserRecord>>;
    async fn count_users(&self) -> Result<i64>;
    async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<bool>;
    /// Marks the user deactivated, removes password, profile, devices and tokens.
    /// Returns the hashes of the access tokens that were revoked.
    async fn deactivate_user(&self, user_id: &str) -> Result<Vec<String>>;
    async fn set_displayname(&self, user_id: &str, name: Option<&str>) -> Result<()>;
    async fn set_avatar_url(&self, user_id: &str, url: Option<&str>) -> Result<()>;
}

#[async_trait]
pub trait DeviceStore: Send + Sync {
    /// Creates the device (or keeps it, updating the display name when given)
    /// and makes `session` its only session. Returns the revoked access token hashes.
    async fn start_session(&self, session: &NewSession<'_>, display_name: Option<&str>) -> Result<Vec<String>>;
    async fn lookup_access_token(&self, hash: &str) -> Result<Option<TokenOwner>>;
    /// Consumes a refresh token, returning its user and device.
    async fn take_refresh_token(&self, hash: &str) -> Result<Option<(String, String)>>;
    async fn get_device(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceRecord>>;
    async fn list_devices(&self, user_id: &str) -> Result<Vec<DeviceRecord>>;
    async fn set_device_display_name(&self, user_id: &str, device_id: &str, name: Option<&str>) -> Result<bool>;
    async fn touch_device(&self, user_id: &str, device_id: &str, ts: i64, ip: Option<&str>) -> Result<()>;
    /// Deletes the devices and their tokens; returns the revoked access token hashes.
    async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> Result<Vec<String>>;
    /// Revokes every session of the user but the one on `keep_device`; returns the revoked hashes.
    async fn revoke_sessions_except(&self, user_id: &str, keep_device: Option<&str>) -> Result<Vec<String>>;
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AccountDataRow {
    pub room_id: String,
    pub data_type: String,
    pub content: String,
    pub stream_id: i64,
}

#[async_trait]
pub trait AccountDataStore: Send + Sync {
    /// `room_id` is "" for global account data.
    async fn put_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: &str,
        stream_id: i64,
    ) -> Result<()>;
    /// Account data changed after the stream position `after`, oldest first.
    async fn account_data_since(&self, user_id: &str, after: i64) -> Result<Vec<AccountDataRow>>;
    async fn max_account_data_stream(&self) -> Result<i64>;
    async fn get_account_data(&self, user_id: &str, room_id: &str, data_type: &str) -> Result<Option<String>>;
    async fn create_filter(&self, user_id: &str, filter_json: &str) -> Result<i64>;
    async fn get_filter(&self, user_id: &str, filter_id: i64) -> Result<Option<String>>;
}

#[derive(Debug, Clone)]
pub struct NewRegistrationToken<'a> {
    pub token_hash: &'a str,
    pub uses_allowed: Option<i64>,
    pub expiry_ts: Option<i64>,
    pub grants_admin: bool,
}

#[async_trait]
pub trait RegistrationTokenStore: Send + Sync {
    async fn add_registration_token(&self, token: &NewRegistrationToken<'_>) -> Result<()>;
    /// Removes unused tokens that grant admin (the first-start token) before a new one is made.
    async fn remove_unused_admin_tokens(&self) -> Result<()>;
    /// Whether the token exists, is not expired and has uses left.
    async fn registration_token_valid(&self, token_hash: &str, now: i64) -> Result<bool>;
    /// Uses the token once, atomically. `Some(grants_admin)` when it was valid.
    async fn use_registration_token(&self, token_hash: &str, now: i64) -> Result<Option<bool>>;
}

pub use e2ee::*;
pub use media::*;
pub use presence::*;
pub use push::*;
pub use rooms::*;

/// Tables of per-device rows, emptied when a device is deleted (`devices` last).
pub(crate) const DEVICE_TABLES: &[&str] =
    &["e2e_device_keys", "e2e_one_time_keys", "e2e_fallback_keys", "to_device_messages", "devices"];

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PoolStats {
    pub size: u32,
    pub idle: u32,
}

#[async_trait]
pub trait Storage:
    UserStore
    + DeviceStore
    + AccountDataStore
    + RegistrationTokenStore
    + RoomStore
    + SearchStore
    + E2eeStore
    + PresenceStore
    + MediaStore
    + PushStore
{
    fn engine(&self) -> &'static str;
    fn pool_stats(&self) -> PoolStats;
    async fn close(&self);
}

/// Opens the database named by the URL (`sqlite://PATH` or `postgres://...`) and applies migrations.
pub async fn open(url: &str, max_connections: u32) -> Result<Arc<dyn Storage>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(url, max_connections).await?))
    } else {
        Ok(Arc::new(sqlite::SqliteStore::open(url, max_connections).await?))
    }
}
