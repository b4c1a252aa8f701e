//! The latest stream position per key (a room, a user) of a stream (events,
//! receipts, account data), kept in memory so that an incremental `/sync` skips,
//! without a query, whatever had nothing new since the client's token.
//!
//! A writer records a position before publishing it to readers (before the
//! stream's watermark moves past it), so a reader that sees the position in its
//! token also sees it here. Keys not seen since start are read from the
//! database once.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct LatestPositions {
    latest: Mutex<HashMap<String, i64>>,
    /// Every key with a position is in `latest` (loaded whole at start).
    complete: bool,
}

impl Default for LatestPositions {
    fn default() -> Self {
        Self { latest: Mutex::new(HashMap::new()), complete: false }
    }
}

impl LatestPositions {
    /// Every key's latest position, read at start: keys not in it have none (0).
    pub fn complete(latest: impl IntoIterator<Item = (String, i64)>) -> Self {
        Self { latest: Mutex::new(latest.into_iter().collect()), complete: true }
    }

    /// Records a write at `position` (call before the position becomes visible).
    pub fn record(&self, key: &str, position: i64) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let entry = latest.entry(key.to_owned()).or_insert(position);
        *entry = (*entry).max(position);
    }

    /// The latest position known in memory, if the key was seen since start.
    pub fn get(&self, key: &str) -> Option<i64> {
        let known = self.latest.lock().unwrap_or_else(|e| e.into_inner()).get(key).copied();
        known.or(self.complete.then_some(0))
    }

    /// Remembers a position read from the database (a concurrent `record` of a
    /// later position wins).
    pub fn learn(&self, key: &str, position: i64) -> i64 {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let entry = latest.entry(key.to_owned()).or_insert(position);
        *entry = (*entry).max(position);
        *entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest() {
        let activity = LatestPositions::default();
        assert_eq!(activity.get("!a"), None);
        activity.record("!a", 5);
        activity.record("!a", 3);
        assert_eq!(activity.get("!a"), Some(5));
        assert_eq!(activity.learn("!a", 4), 5, "an older database read does not go back");
        assert_eq!(activity.learn("!b", 7), 7);

        let loaded = LatestPositions::complete([("!a".to_owned(), 3)]);
        assert_eq!(loaded.get("!a"), Some(3));
        assert_eq!(loaded.get("!b"), Some(0), "loaded whole: no position is none");
        loaded.record("!b", 9);
        assert_eq!(loaded.get("!b"), Some(9));
    }
}
