//! Storage of push: the notifications each event gave each local member, and pushers.

use async_trait::async_trait;

use super::Result;

/// One member's notification for one event, stored with the event.
#[derive(Debug, Clone)]
pub struct PushActionRow {
    pub user_id: String,
    /// The thread root's event id, or "main".
    pub thread_id: String,
    pub highlight: bool,
    /// The actions as JSON (the matching rule's actions).
    pub actions: String,
}

/// Unread notifications of one thread ("main" for the main timeline).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ThreadCounts {
    pub thread_id: String,
    pub notifications: i64,
    pub highlights: i64,
}

/// A stored notification, as `GET /notifications` lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub room_id: String,
    pub stream_ordering: i64,
    pub event_id: String,
    pub thread_id: String,
    pub highlight: bool,
    pub actions: String,
    pub ts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PusherRow {
    pub user_id: String,
    pub app_id: String,
    pub pushkey: String,
    pub kind: String,
    pub app_display_name: String,
    pub device_display_name: String,
    pub profile_tag: Option<String>,
    pub lang: String,
    /// The pusher's `data` object as JSON.
    pub data: String,
    pub created_ts: i64,
}

#[async_trait]
pub trait PushStore: Send + Sync {
    /// The user's unread notifications in a room at stream positions up to
    /// `upto`, per thread: those after the latest m.read / m.read.private
    /// receipt that covers the thread (an unthreaded receipt covers all).
    async fn unread_counts(&self, user_id: &str, room_id: &str, upto: i64) -> Result<Vec<ThreadCounts>>;
    /// The user's notifications, newest first, strictly before stream position `before`.
    async fn notifications(
        &self,
        user_id: &str,
        before: i64,
        only_highlight: bool,
        limit: i64,
    ) -> Result<Vec<NotificationRow>>;
    /// The stream positions of the user's latest read receipts in a room, per
    /// thread id ("" for unthreaded receipts).
    async fn read_positions(&self, user_id: &str, room_id: &str) -> Result<Vec<(String, i64)>>;
    /// The global account data of one type of each of the users who have it: `(user_id, content)`.
    async fn global_account_data_of(&self, user_ids: &[String], data_type: &str) -> Result<Vec<(String, String)>>;
    /// The joined members of a room with their membership event's JSON.
    async fn joined_member_events(&self, room_id: &str) -> Result<Vec<(String, String)>>;

    async fn pushers(&self, user_id: &str) -> Result<Vec<PusherRow>>;
    /// Adds or replaces the user's pusher; unless `append`, removes other users'
    /// pushers with the same app id and pushkey.
    async fn set_pusher(&self, pusher: &PusherRow, append: bool) -> Result<()>;
    /// `false` when the user had no such pusher.
    async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> Result<bool>;
}
