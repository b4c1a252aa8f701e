//! Each user's push ruleset: stored as the global account data `m.push_rules`
//! (`{"global": ruleset}`, as clients read it there), the spec's server-default
//! rules while the user has changed nothing. Parsed rulesets are cached, since
//! every event in a room is evaluated against each member's rules.

use std::collections::HashMap;
use std::sync::Arc;

use ruma::push::Ruleset;
use ruma::{OwnedUserId, UserId};
use serde_json::{Value, json};

use crate::error::Result;
use crate::service::account_data::AccountData;
use crate::storage::Storage;

/// The account data type the ruleset is stored as.
pub const PUSH_RULES: &str = "m.push_rules";

/// Rulesets kept parsed (a default ruleset is a few KB): enough for the
/// members of the busiest rooms; others reload in one query per event.
const MAX_CACHED: u64 = 20_000;

pub struct Rulesets {
    storage: Arc<dyn Storage>,
    cache: moka::sync::Cache<OwnedUserId, Arc<Ruleset>>,
    /// Held by loads into the cache and by changes, so that a load that read
    /// the old ruleset can never overwrite a newer one in the cache.
    write: tokio::sync::Mutex<()>,
}

impl Rulesets {
    pub fn new(storage: Arc<dyn Storage>) -> Self {
        Self { storage, cache: moka::sync::Cache::new(MAX_CACHED), write: tokio::sync::Mutex::new(()) }
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

    /// Loads into the cache, in one query, the rulesets of those of `users` not cached yet.
    pub async fn preload<'a>(&self, users: impl Iterator<Item = &'a OwnedUserId>) -> Result<()> {
        let missing: Vec<&OwnedUserId> = users.filter(|u| !self.cache.contains_key(*u)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let _guard = self.write.lock().await;
        let missing: Vec<&OwnedUserId> = missing.into_iter().filter(|u| !self.cache.contains_key(*u)).collect();
        let ids: Vec<String> = missing.iter().map(|u| u.to_string()).collect();
        let mut stored: HashMap<String, String> =
            self.storage.global_account_data_of(&ids, PUSH_RULES).await?.into_iter().collect();
        for user_id in missing {
            let ruleset = parse(user_id, stored.remove(user_id.as_str()));
            self.cache.insert(user_id.clone(), Arc::new(ruleset));
        }
        Ok(())
    }

    async fn load(&self, user_id: &UserId) -> Result<Ruleset> {
        Ok(parse(user_id, self.storage.get_account_data(user_id.as_str(), "", PUSH_RULES).await?))
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

/// The ruleset stored as `m.push_rules` (`None`: nothing stored), on top of the
/// current server-default rules: the user's changes to default rules are kept
/// and changes to the defaults themselves are followed.
fn parse(user_id: &UserId, stored: Option<String>) -> Ruleset {
    let defaults = Ruleset::server_default(user_id);
    let Some(text) = stored else { return defaults };
    let global = serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("global").cloned());
    match global.map(serde_json::from_value::<Ruleset>) {
        Some(Ok(mut ruleset)) => {
            ruleset.update_with_server_default(defaults);
            ruleset
        }
        _ => {
            tracing::warn!(%user_id, "stored push rules do not parse; serving the defaults");
            defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use ruma::push::RuleKind;

    use super::*;

    #[test]
    fn stored_rulesets_keep_user_changes_on_the_current_defaults() {
        let user = <&UserId>::try_from("@a:here").unwrap();
        assert_eq!(parse(user, None).override_.len(), Ruleset::server_default(user).override_.len());
        let mut changed = Ruleset::server_default(user);
        changed.set_enabled(RuleKind::Override, ".m.rule.master", true).unwrap();
        // A stored ruleset missing a default rule (an older server's) gets it back.
        changed.underride.shift_remove(".m.rule.call");
        let stored = serde_json::to_string(&serde_json::json!({ "global": changed })).unwrap();
        let parsed = parse(user, Some(stored));
        assert!(parsed.get(RuleKind::Override, ".m.rule.master").unwrap().enabled());
        assert!(parsed.get(RuleKind::Underride, ".m.rule.call").is_some());
        assert!(
            !parse(user, Some("{\"global\": 5}".into())).get(RuleKind::Override, ".m.rule.master").unwrap().enabled()
        );
    }
}
