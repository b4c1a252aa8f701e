//! Per-user account data (global and per room) and stored sync filters.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::activity::LatestPositions;
use crate::service::ignored_users::IgnoredUsers;
use crate::service::notifier::Notifier;
use crate::storage::{AccountDataRow, Storage};

pub struct AccountData {
    storage: Arc<dyn Storage>,
    notifier: Arc<Notifier>,
    /// The account data stream: the position of the latest change.
    stream: AtomicI64,
    /// Writes are serialised so that a position is visible only once its row
    /// is stored (a reader never skips a change still being written).
    write: tokio::sync::Mutex<()>,
    /// Each user's latest change (lets /sync skip the read when nothing changed).
    latest: LatestPositions,
    /// Each user's ignored users (`m.ignored_user_list`), shared with the room reads.
    ignored: Arc<IgnoredUsers>,
    /// Stored filters, which never change (clients name one in every /sync).
    filters: moka::sync::Cache<(String, i64), Arc<Value>>,
}

const MAX_CACHED_USERS: u64 = 100_000;

impl AccountData {
    pub async fn new(storage: Arc<dyn Storage>, notifier: Arc<Notifier>, ignored: Arc<IgnoredUsers>) -> Result<Self> {
        let stream = AtomicI64::new(storage.max_account_data_stream().await?);
        Ok(Self {
            storage,
            notifier,
            stream,
            write: tokio::sync::Mutex::new(()),
            latest: LatestPositions::default(),
            ignored,
            filters: moka::sync::Cache::new(MAX_CACHED_USERS),
        })
    }

    /// The position of the latest account data change.
    pub fn position(&self) -> i64 {
        self.stream.load(Ordering::SeqCst)
    }

    /// `room_id` is `None` for global account data.
    pub async fn put(&self, user_id: &str, room_id: Option<&str>, data_type: &str, content: &Value) -> Result<()> {
        if !content.is_object() {
            return Err(Error::bad_json("Account data content must be a JSON object"));
        }
        let guard = self.write.lock().await;
        let position = self.stream.load(Ordering::SeqCst) + 1;
        self.storage
            .put_account_data(user_id, room_id.unwrap_or(""), data_type, &content.to_string(), position)
            .await?;
        self.latest.record(user_id, position);
        self.ignored.changed(user_id);
        self.stream.store(position, Ordering::SeqCst);
        drop(guard);
        self.notifier.wake_user(user_id);
        Ok(())
    }

    /// The user's account data changed after `after` (global and per room), for /sync.
    pub async fn changes_since(&self, user_id: &str, after: i64) -> Result<Vec<AccountDataRow>> {
        if self.latest.get(user_id).is_some_and(|latest| latest <= after) {
            return Ok(Vec::new());
        }
        let rows = self.storage.account_data_since(user_id, after).await?;
        // Every change after `after` was read: the latest is the last of them, or at most `after`.
        self.latest.learn(user_id, rows.iter().map(|r| r.stream_id).max().unwrap_or(after));
        Ok(rows)
    }

    /// The users this user ignores, from memory while the list has not changed.
    pub async fn ignored_users(&self, user_id: &str) -> Result<Arc<HashSet<String>>> {
        self.ignored.of(user_id).await
    }

    pub async fn get(&self, user_id: &str, room_id: Option<&str>, data_type: &str) -> Result<Value> {
        let Some(text) = self.storage.get_account_data(user_id, room_id.unwrap_or(""), data_type).await? else {
            return Err(Error::not_found("Account data not found"));
        };
        serde_json::from_str(&text).map_err(Error::internal)
    }

    /// Stores a filter after checking it has the shape the spec defines.
    pub async fn create_filter(&self, user_id: &str, filter: &Value) -> Result<String> {
        validate_filter(filter)?;
        let id = self.storage.create_filter(user_id, &filter.to_string()).await?;
        Ok(id.to_string())
    }

    pub async fn get_filter(&self, user_id: &str, filter_id: &str) -> Result<Arc<Value>> {
        let not_found = || Error::not_found("No such filter");
        let id: i64 = filter_id.parse().map_err(|_| not_found())?;
        let key = (user_id.to_owned(), id);
        if let Some(filter) = self.filters.get(&key) {
            return Ok(filter);
        }
        let text = self.storage.get_filter(user_id, id).await?.ok_or_else(not_found)?;
        let filter: Arc<Value> = Arc::new(serde_json::from_str(&text).map_err(Error::internal)?);
        self.filters.insert(key, filter.clone());
        Ok(filter)
    }
}

fn validate_filter(filter: &Value) -> Result<()> {
    if !filter.is_object() {
        return Err(Error::bad_json("A filter must be a JSON object"));
    }
    // ruma accepts any string here; the spec allows these two.
    if let Some(format) = filter.get("event_format")
        && !matches!(format.as_str(), Some("client" | "federation"))
    {
        return Err(Error::bad_json("event_format must be \"client\" or \"federation\""));
    }
    serde_json::from_value::<ruma::api::client::filter::FilterDefinition>(filter.clone())
        .map(|_| ())
        .map_err(|e| Error::bad_json(format!("Invalid filter: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn filter_validation() {
        assert!(validate_filter(&json!({"room": {"timeline": {"limit": 10}}})).is_ok());
        assert!(validate_filter(&json!({"event_format": "client", "presence": {"not_types": ["*"]}})).is_ok());
        assert!(validate_filter(&json!({"room": {"timeline": {"limit": "x"}}})).is_err());
        assert!(validate_filter(&json!({"event_format": "sideways"})).is_err());
        assert!(validate_filter(&json!([1])).is_err());
    }
}
