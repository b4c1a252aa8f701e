//! A read-through cache for values that writers change in the database while
//! readers cache them: every change bumps the key's version after it is stored
//! (and before it is published), and a value is cached under the version read
//! before the database was. A value that may predate a change is therefore never
//! served after the change, without a lock held across the database read.
//! Concurrent misses of one key and version share one load.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// How long an unused value is kept.
const IDLE: std::time::Duration = std::time::Duration::from_secs(600);

/// A key's version: the cache-wide epoch and the key's own count of changes.
pub type Version = (u64, u64);

pub struct VersionedCache<K, V> {
    /// Bumped by `changed_all`.
    epoch: AtomicU64,
    versions: Mutex<HashMap<K, u64>>,
    values: moka::future::Cache<(K, Version), V>,
}

impl<K, V> VersionedCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// At most `capacity` values are kept (least recently used evicted).
    pub fn new(capacity: u64) -> Self {
        Self {
            epoch: AtomicU64::new(0),
            versions: Mutex::new(HashMap::new()),
            // Values of old versions are never asked for again: they age out.
            values: moka::future::Cache::builder().max_capacity(capacity).time_to_idle(IDLE).build(),
        }
    }

    fn version(&self, key: &K) -> Version {
        let epoch = self.epoch.load(Ordering::SeqCst);
        (epoch, self.versions.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied().unwrap_or(0))
    }

    /// Call after a change of `key`'s value is stored, before readers may learn of it.
    pub fn changed(&self, key: &K) {
        *self.versions.lock().unwrap_or_else(|e| e.into_inner()).entry(key.clone()).or_insert(0) += 1;
    }

    /// Call after a change that may concern any key (rare changes, for which a
    /// version per key would grow without bound).
    pub fn changed_all(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.values.invalidate_all();
    }

    /// The cached value, or `load`'s (then cached).
    pub async fn get_or_load<E, Fut>(&self, key: &K, load: impl FnOnce() -> Fut) -> Result<V, E>
    where
        Fut: Future<Output = Result<V, E>>,
        E: Clone + Send + Sync + 'static,
    {
        let version = self.version(key);
        self.values.try_get_with((key.clone(), version), load()).await.map_err(|e| E::clone(&e))
    }

    /// For loading many keys in one read: the cached values of `keys` by
    /// index, and for each key not cached its index and the version to
    /// `insert` its value under (read now, before the database is).
    pub async fn get_many(&self, keys: &[K]) -> (Vec<(usize, V)>, Vec<(usize, Version)>) {
        let (mut hits, mut misses) = (Vec::new(), Vec::new());
        for (i, key) in keys.iter().enumerate() {
            let version = self.version(key);
            match self.values.get(&(key.clone(), version)).await {
                Some(value) => hits.push((i, value)),
                None => misses.push((i, version)),
            }
        }
        (hits, misses)
    }

    /// Caches a value read after `get_many` gave `version` (a change since
    /// then leaves it unserved).
    pub async fn insert(&self, key: K, version: Version, value: V) {
        self.values.insert((key, version), value).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(cache: &VersionedCache<&'static str, i32>, db: i32) -> i32 {
        read_key(cache, "k", db).await
    }

    async fn read_key(cache: &VersionedCache<&'static str, i32>, key: &'static str, db: i32) -> i32 {
        cache.get_or_load(&key, || async { Ok::<_, ()>(db) }).await.unwrap()
    }

    #[tokio::test]
    async fn a_change_is_never_hidden() {
        let cache = VersionedCache::new(10);
        assert_eq!(read(&cache, 1).await, 1);
        assert_eq!(read(&cache, 2).await, 1, "cached");
        cache.changed(&"k");
        assert_eq!(read(&cache, 2).await, 2, "re-read after a change");

        // A read that started before a change and finished after it: its value
        // is cached under the old version and not served again.
        let before = cache.version(&"k");
        cache.changed(&"k");
        cache.values.insert(("k", before), 2).await;
        assert_eq!(read(&cache, 3).await, 3);

        let before = cache.version(&"k");
        cache.changed_all();
        cache.values.insert(("k", before), 3).await;
        assert_eq!(read(&cache, 4).await, 4, "a change of every key");
    }

    #[tokio::test]
    async fn batch_loads_are_never_served_after_a_change() {
        let cache = VersionedCache::<&'static str, i32>::new(10);
        let (hits, misses) = cache.get_many(&["a", "b"]).await;
        assert!(hits.is_empty());
        assert_eq!(misses.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [0, 1]);
        // "b" changes while the batch is being read: its value may be stale.
        cache.changed(&"b");
        for (i, version) in misses {
            cache.insert(["a", "b"][i], version, 1).await;
        }
        let (hits, misses) = cache.get_many(&["a", "b"]).await;
        assert_eq!(hits, [(0, 1)]);
        assert_eq!(misses.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [1], "b is read again");
        // Shared with get_or_load.
        assert_eq!(read_key(&cache, "a", 5).await, 1);
    }

    #[tokio::test]
    async fn concurrent_misses_share_one_load() {
        let cache = VersionedCache::<&'static str, i32>::new(10);
        let loads = AtomicU64::new(0);
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Ok::<_, ()>(7)
        };
        let (a, b) = tokio::join!(cache.get_or_load(&"k", load), cache.get_or_load(&"k", load));
        assert_eq!((a, b), (Ok(7), Ok(7)));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
