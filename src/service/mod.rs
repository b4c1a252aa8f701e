//! The domain: what the server does, independent of HTTP and of SQL.

pub mod account_data;
pub mod accounts;
pub mod activity;
pub mod auth;
pub mod e2ee;
pub mod ephemeral;
pub mod ignored_users;
pub mod media;
pub mod notifier;
pub mod password;
pub mod presence;
pub mod push;
pub mod rate_limit;
pub mod registration;
pub mod room_versions;
pub mod rooms;
pub mod secrets;
pub mod signing_key;
pub mod stream;
pub mod sync;
pub mod uia;
pub mod versioned_cache;

use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::storage::Storage;

/// Every service, built once at start and shared by the handlers.
pub struct Services {
    pub config: Arc<Config>,
    pub storage: Arc<dyn Storage>,
    pub auth: Arc<Authenticator>,
    pub accounts: accounts::Accounts,
    pub registration: registration::Registration,
    pub account_data: account_data::AccountData,
    pub uia: uia::Uia,
    pub rate_limiter: rate_limit::RateLimiter,
    pub signing_key: Arc<signing_key::SigningKey>,
    pub rooms: rooms::Rooms,
    pub notifier: Arc<notifier::Notifier>,
    pub ephemeral: Arc<ephemeral::Ephemeral>,
    pub e2ee: Arc<e2ee::E2ee>,
    pub presence: Arc<presence::Presence>,
    /// Membership events each device was sent by lazy-loading syncs.
    pub lazy_members: sync::LazyMembers,
    /// Bounds the /sync responses being built at once (see `sync::BuildLimit`).
    pub sync_builds: sync::BuildLimit,
    pub media: media::MediaService,
    pub push: push::Push,
}

use auth::Authenticator;

impl Services {
    pub async fn new(
        config: Arc<Config>,
        storage: Arc<dyn Storage>,
        signing_key: signing_key::SigningKey,
    ) -> crate::error::Result<Self> {
        let auth = Arc::new(Authenticator::new(storage.clone()));
        let signing_key = Arc::new(signing_key);
        let notifier = Arc::new(notifier::Notifier::new(storage.clone()));
        let rulesets = Arc::new(push::Rulesets::new(storage.clone()));
        let unread = Arc::new(push::UnreadCache::default());
        let ignored = Arc::new(ignored_users::IgnoredUsers::new(storage.clone()));
        let rooms = rooms::Rooms::new(
            config.clone(),
            storage.clone(),
            signing_key.clone(),
            notifier.clone(),
            rulesets.clone(),
            unread.clone(),
            ignored.clone(),
        )
        .await?;
        let account_data = account_data::AccountData::new(storage.clone(), notifier.clone(), ignored).await?;
        let ephemeral = ephemeral::Ephemeral::new(storage.clone(), notifier.clone(), unread.clone()).await?;
        let presence = presence::Presence::new(&config, storage.clone(), notifier.clone()).await?;
        let e2ee = Arc::new(e2ee::E2ee::new(config.clone(), storage.clone(), notifier.clone()).await?);
        let media = media::MediaService::new(config.clone(), storage.clone())?;
        Ok(Self {
            media,
            rooms,
            accounts: accounts::Accounts::new(config.clone(), storage.clone(), auth.clone(), e2ee.clone()),
            e2ee,
            presence,
            lazy_members: sync::LazyMembers::default(),
            sync_builds: sync::BuildLimit::new(crate::cores()),
            registration: registration::Registration::new(config.clone(), storage.clone()),
            account_data,
            ephemeral,
            push: push::Push::new(storage.clone(), rulesets, unread),
            notifier,
            uia: uia::Uia::new(Duration::from_secs(config.auth.uia_session_timeout_secs)),
            rate_limiter: rate_limit::RateLimiter::new(config.rate_limits.clone()),
            signing_key,
            auth,
            storage,
            config,
        })
    }
}

/// Milliseconds since the Unix epoch, the unit of every timestamp in Matrix.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
