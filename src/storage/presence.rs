//! Storage of presence: the latest state of each user and its stream position.

use async_trait::async_trait;

use super::Result;

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PresenceRow {
    pub user_id: String,
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
    pub stream_id: i64,
}

#[async_trait]
pub trait PresenceStore: Send + Sync {
    async fn put_presence(&self, row: &PresenceRow) -> Result<()>;
    async fn get_presence(&self, user_id: &str) -> Result<Option<PresenceRow>>;
    /// Presence changed in `(after, upto]`.
    async fn presence_since(&self, after: i64, upto: i64) -> Result<Vec<PresenceRow>>;
    async fn max_presence_stream(&self) -> Result<i64>;
}
