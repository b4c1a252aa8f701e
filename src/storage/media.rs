//! Media metadata: which mxc:// ids exist, who made them, which content (by
//! sha256) they hold, and their thumbnails. The bytes are not here: they are in
//! the content store of `service::media::store`.

use async_trait::async_trait;

use super::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MediaRecord {
    pub media_id: String,
    pub user_id: String,
    pub created_ts: i64,
    /// While an asynchronous upload is pending: when the id lapses.
    pub expires_ts: Option<i64>,
    /// `None` while pending.
    pub uploaded_ts: Option<i64>,
    pub sha256: Option<String>,
    pub size: Option<i64>,
    pub content_type: Option<String>,
    pub filename: Option<String>,
}

/// The content of an upload, for a new id or a pending one.
#[derive(Debug, Clone)]
pub struct UploadedContent<'a> {
    pub sha256: &'a str,
    pub size: i64,
    pub content_type: Option<&'a str>,
    pub filename: Option<&'a str>,
    pub now: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThumbnailRecord {
    pub media_id: String,
    pub width: i64,
    pub height: i64,
    pub method: String,
    pub animated: bool,
    pub sha256: String,
    pub size: i64,
    pub content_type: String,
}

#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records an uploaded file under a new id.
    async fn insert_media(&self, media_id: &str, user_id: &str, content: &UploadedContent<'_>) -> Result<()>;
    /// Reserves an id for an asynchronous upload.
    async fn create_pending_media(&self, media_id: &str, user_id: &str, now: i64, expires_ts: i64) -> Result<()>;
    /// The user's pending uploads that have not lapsed at `now`.
    async fn count_pending_media(&self, user_id: &str, now: i64) -> Result<i64>;
    /// Fills a pending id; `false` when it was filled already (or is gone).
    async fn complete_pending_media(&self, media_id: &str, content: &UploadedContent<'_>) -> Result<bool>;
    async fn get_media(&self, media_id: &str) -> Result<Option<MediaRecord>>;
    /// Bytes of content the user has uploaded (for the quota).
    async fn media_usage(&self, user_id: &str) -> Result<i64>;
    async fn get_thumbnail(
        &self,
        media_id: &str,
        width: i64,
        height: i64,
        method: &str,
        animated: bool,
    ) -> Result<Option<ThumbnailRecord>>;
    /// Stores a thumbnail; a thumbnail of the same key stored meanwhile is kept.
    async fn put_thumbnail(&self, thumbnail: &ThumbnailRecord) -> Result<()>;
    /// Deletes the id and its thumbnails; returns the content hashes they held.
    async fn delete_media(&self, media_id: &str) -> Result<Vec<String>>;
    /// The ids of the user's media (pending ones included).
    async fn list_user_media(&self, user_id: &str) -> Result<Vec<String>>;
    /// Whether any media or thumbnail still holds this content.
    async fn content_referenced(&self, sha256: &str) -> Result<bool>;
    /// Removes pending ids that lapsed before `now`; returns how many.
    async fn delete_lapsed_pending_media(&self, now: i64) -> Result<u64>;
}
