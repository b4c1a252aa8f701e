//! End-to-end encryption support: the server stores, relays and tracks keys and
//! never sees plaintext. Device and one-time keys (`keys`), cross-signing and
//! signatures (`cross_signing`, verified in `signatures`), the device-list
//! stream (`device_lists`), to-device messages (`to_device`) and server-side
//! key backup (`backup`).

mod backup;
mod cross_signing;
mod device_lists;
mod keys;
mod signatures;
mod to_device;

use std::sync::Arc;

pub use backup::{BackupKeys, KeyBackup, KeyBackupData};
pub use device_lists::DeviceListDelta;
pub use keys::{KeysQueryResponse, UploadRequest};
pub use to_device::ToDeviceBatch;

use crate::config::Config;
use crate::error::Result;
use crate::service::notifier::Notifier;
use crate::service::stream::Stream;
use crate::service::versioned_cache::VersionedCache;
use crate::storage::Storage;

pub struct E2ee {
    config: Arc<Config>,
    storage: Arc<dyn Storage>,
    notifier: Arc<Notifier>,
    device_lists: Stream,
    to_device: Stream,
    /// Key backup writes read, compare and replace keys: one user at a time.
    backup_write: tokio::sync::Mutex<()>,
    /// Each device's one-time key counts and unused fallback key types (every /sync sends them).
    key_counts: VersionedCache<(String, String), Arc<KeyCounts>>,
    /// Each user's keys as `/keys/query` serves them (changed with the device list).
    served_keys: VersionedCache<String, Arc<keys::ServedUserKeys>>,
    /// The to-device position up to which each device's messages were deleted.
    to_device_acked: moka::sync::Cache<(String, String), i64>,
}

/// What a `/sync` response tells a device about its one-time and fallback keys.
pub struct KeyCounts {
    pub one_time: std::collections::BTreeMap<String, i64>,
    pub unused_fallback: Vec<String>,
}

/// Devices whose key counts and to-device acknowledgements are kept in memory.
const MAX_CACHED_DEVICES: u64 = 100_000;
/// Users whose served keys are kept in memory (~1 KB per device).
const MAX_CACHED_USER_KEYS: u64 = 10_000;

impl E2ee {
    pub async fn new(config: Arc<Config>, storage: Arc<dyn Storage>, notifier: Arc<Notifier>) -> Result<Self> {
        let device_lists = Stream::new(storage.max_device_list_stream().await?);
        let to_device = Stream::new(storage.max_to_device_stream().await?);
        Ok(Self {
            config,
            storage,
            notifier,
            device_lists,
            to_device,
            backup_write: tokio::sync::Mutex::new(()),
            key_counts: VersionedCache::new(MAX_CACHED_DEVICES),
            served_keys: VersionedCache::new(MAX_CACHED_USER_KEYS),
            to_device_acked: moka::sync::Cache::new(MAX_CACHED_DEVICES),
        })
    }

    pub fn device_list_position(&self) -> i64 {
        self.device_lists.position()
    }

    pub fn to_device_position(&self) -> i64 {
        self.to_device.position()
    }

    fn is_local(&self, user_id: &str) -> bool {
        user_id.rsplit_once(':').is_some_and(|(_, server)| server == self.config.server_name)
    }
}
