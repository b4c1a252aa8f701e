//! Each user's ignored users (`m.ignored_user_list` account data): their
//! messages are hidden on every path that shows events, so the list is read
//! from memory, and account-data writes mark it changed.

use std::collections::HashSet;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::service::versioned_cache::VersionedCache;
use crate::storage::Storage;

const MAX_CACHED_USERS: u64 = 100_000;

pub struct IgnoredUsers {
    storage: Arc<dyn Storage>,
    cache: VersionedCache<String, Arc<HashSet<String>>>,
}

impl IgnoredUsers {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage, cache: VersionedCache::new(MAX_CACHED_USERS) }
    }

    /// The users `user_id` ignores.
    pub async fn of(&self, user_id: &str) -> Result<Arc<HashSet<String>>> {
        let read = || async {
            let text = self.storage.get_account_data(user_id, "", "m.ignored_user_list").await?;
            Ok::<_, Error>(Arc::new(text.as_deref().map(ignored_in).unwrap_or_default()))
        };
        self.cache.get_or_load(&user_id.to_owned(), read).await
    }

    /// The user's account data is being written: the next read goes to storage.
    /// Called after the write is stored and before it is published.
    pub fn changed(&self, user_id: &str) {
        self.cache.changed(&user_id.to_owned());
    }
}

/// The user ids of an `m.ignored_user_list` content (nothing when it is malformed).
pub fn ignored_in(content: &str) -> HashSet<String> {
    serde_json::from_str::<Value>(content)
        .ok()
        .and_then(|v| v.get("ignored_users").and_then(Value::as_object).map(|o| o.keys().cloned().collect()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignored_user_ids_are_the_keys_and_malformed_content_ignores_nobody() {
        let ids = ignored_in(r#"{"ignored_users":{"@a:x":{},"@b:x":{}}}"#);
        assert_eq!(ids, HashSet::from(["@a:x".to_owned(), "@b:x".to_owned()]));
        assert!(ignored_in(r#"{"ignored_users":["@a:x"]}"#).is_empty());
        assert!(ignored_in("not json").is_empty());
    }
}
