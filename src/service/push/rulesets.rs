//! Each user's push ruleset: stored as the global account data `m.push_rules`
//! (`{"global": ruleset}`, as clients read it there), the spec's server-default
//! rules while the user has changed nothing. Parsed rulesets are cached, since
//! every event in a room is evaluated against each member's rules.

use std::sync::Arc;

use ruma::push::Ruleset;
use ruma::{OwnedUserId, UserId};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::service::account_data::AccountData;
use crate::storage::Storage;

/// The account data type the ruleset is stored as.
pub const PUSH_RULES: &str = "m.push_rules";

pub struct Rulesets {
    storage: Arc<dyn Storage>,
    cache: moka::sync::Cache<OwnedUserId, Arc<Ruleset>>,
    /// Held by loads into the cache and by changes, so that a load that read
    /// the old ruleset can never overwrite a newer one in the cache.
    write: tokio::sync::Mutex<()>,
}

impl Rulesets {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage, cache: moka::sync::Cache::new(100_000), write: tokio::sync::Mutex::new(()) }
    }

    /// The user's ruleset (cached).
    pub async fn get(&self, user_id: &UserId) -> Result<Arc<Ruleset>> {
        if let Some(ruleset) = self.cache.get(user_id) {
            return Ok(ruleset);
        }
        let _guard = self.write.lock().await;
        if let Some(ruleset) = self.cache.get(user_id) {
            return Ok(ruleset);
        }
        let ruleset = Arc::new(self.load(user_id).await?);
        self.cache.insert(user_id.to_owned(), ruleset.clone());
        Ok(ruleset)
    }

    async fn load(&self, user_id: &UserId) -> Result<Ruleset> {
        let defaults = Ruleset::server_default(user_id);
        let Some(text) = self.storage.get_account_data(user_id.as_str(), "", PUSH_RULES).await? else {
            return Ok(defaults);
        };
        let stored: Value = serde_json::from_str(&text).map_err(Error::internal)?;
        match stored.get("global").cloned().map(serde_json::from_value::<Ruleset>) {
            Some(Ok(mut ruleset)) => {
                // Keeps the user's changes to default rules and follows changes to the defaults.
                ruleset.update_with_server_default(defaults);
                Ok(ruleset)
            }
            _ => {
                tracing::warn!(%user_id, "stored push rules do not parse; serving the defaults");
                Ok(defaults)
            }
        }
    }

    /// Changes the user's ruleset with `change` and stores it through the
    /// account data service (which wakes the user's /sync).
    pub async fn modify<T>(
        &self,
        account_data: &AccountData,
        user_id: &UserId,
        change: impl FnOnce(&mut Ruleset) -> Result<T>,
    ) -> Result<T> {
        let _guard = self.write.lock().await;
        let mut ruleset = match self.cache.get(user_id) {
            Some(cached) => (*cached).clone(),
            None => self.load(user_id).await?,
        };
        let answer = change(&mut ruleset)?;
        let content = json!({ "global": ruleset });
        account_data.put(user_id.as_str(), None, PUSH_RULES, &content).await?;
        self.cache.insert(user_id.to_owned(), Arc::new(ruleset));
        Ok(answer)
    }
}
