//! Per-user account data (global and per room) and stored sync filters.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::notifier::Notifier;
use crate::storage::Storage;

pub struct AccountData {
    storage: Arc<dyn Storage>,
    notifier: Arc<Notifier>,
    /// The account data stream: the position of the latest change.
    stream: AtomicI64,
    /// Writes are serialised so that a position is visible only once its row
    /// is stored (a reader never skips a change still being written).
    write: tokio::sync::Mutex<()>,
}

impl AccountData {
    pub async fn new(storage: Arc<dyn Storage>, notifier: Arc<Notifier>) -> Result<Self> {
        let stream = AtomicI64::new(storage.max_account_data_stream().await?);
        Ok(Self { storage, notifier, stream, write: tokio::sync::Mutex::new(()) })
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
        self.stream.store(position, Ordering::SeqCst);
        drop(guard);
        self.notifier.wake_user(user_id);
        Ok(())
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

    pub async fn get_filter(&self, user_id: &str, filter_id: &str) -> Result<Value> {
        let not_found = || Error::not_found("No such filter");
        let id: i64 = filter_id.parse().map_err(|_| not_found())?;
        let text = self.storage.get_filter(user_id, id).await?.ok_or_else(not_found)?;
        serde_json::from_str(&text).map_err(Error::internal)
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
