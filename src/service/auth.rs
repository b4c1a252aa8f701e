//! Access-token authentication with an in-memory cache in front of the database.

use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;

use crate::error::{Error, Result};
use crate::service::{now_ms, secrets};
use crate::storage::{Storage, TokenOwner};

/// Who made a request.
#[derive(Debug, Clone)]
pub struct Requester {
    pub user_id: String,
    pub device_id: String,
    pub is_guest: bool,
}

pub struct Authenticator {
    storage: Arc<dyn Storage>,
    /// token hash → owner. Entries are removed when this process revokes their
    /// tokens; the short TTL bounds how long a revocation made elsewhere (the
    /// CLI, another process) takes to be seen.
    cache: Cache<String, Arc<TokenOwner>>,
    /// (user, device) pairs whose last-seen time was written recently.
    last_seen_written: Cache<(String, String), ()>,
}

impl Authenticator {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self {
            storage,
            cache: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build(),
            last_seen_written: Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(300)).build(),
        }
    }

    /// Resolves an access token, or fails with M_UNKNOWN_TOKEN (`soft_logout` when it expired).
    pub async fn authenticate(&self, token: &str, ip: Option<&str>) -> Result<Requester> {
        let hash = secrets::hash_token(token);
        let owner = match self.cache.get(&hash).await {
            Some(owner) => owner,
            None => {
                let owner =
                    self.storage.lookup_access_token(&hash).await?.ok_or_else(|| Error::unknown_token(false))?;
                let owner = Arc::new(owner);
                self.cache.insert(hash, owner.clone()).await;
                owner
            }
        };
        if owner.expires_ts.is_some_and(|expires| expires <= now_ms()) {
            return Err(Error::unknown_token(true));
        }
        self.note_last_seen(&owner, ip).await;
        Ok(Requester { user_id: owner.user_id.clone(), device_id: owner.device_id.clone(), is_guest: owner.is_guest })
    }

    /// Forgets revoked tokens at once, so that they stop working on the next request.
    pub async fn forget(&self, token_hashes: &[String]) {
        for hash in token_hashes {
            self.cache.invalidate(hash).await;
        }
    }

    /// Records when and from where a device was last used, at most every five
    /// minutes per device so that token checks do not become database writes.
    async fn note_last_seen(&self, owner: &TokenOwner, ip: Option<&str>) {
        let key = (owner.user_id.clone(), owner.device_id.clone());
        if self.last_seen_written.contains_key(&key) {
            return;
        }
        self.last_seen_written.insert(key, ()).await;
        let storage = self.storage.clone();
        let (user_id, device_id, ip) = (owner.user_id.clone(), owner.device_id.clone(), ip.map(str::to_owned));
        tokio::spawn(async move {
            if let Err(e) = storage.touch_device(&user_id, &device_id, now_ms(), ip.as_deref()).await {
                tracing::warn!(error = %e, "could not record device last-seen time");
            }
        });
    }
}
