//! The latest stream position per room of a stream (events, receipts), kept in
//! memory so that an incremental `/sync` skips, without a query, every room in
//! which nothing happened since the client's token.
//!
//! A writer records a position before publishing it to readers (before the
//! stream's watermark moves past it), so a reader that sees the position in its
//! token also sees it here. Rooms not seen since start are read from the
//! database once.

use std::collections::HashMap;
use std::sync::Mutex;

pub struct RoomActivity {
    latest: Mutex<HashMap<String, i64>>,
}

impl Default for RoomActivity {
    fn default() -> Self {
        Self { latest: Mutex::new(HashMap::new()) }
    }
}

impl RoomActivity {
    /// Records a write at `position` (call before the position becomes visible).
    pub fn record(&self, room_id: &str, position: i64) {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let entry = latest.entry(room_id.to_owned()).or_insert(position);
        *entry = (*entry).max(position);
    }

    /// The latest position known in memory, if the room was seen since start.
    pub fn get(&self, room_id: &str) -> Option<i64> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).get(room_id).copied()
    }

    /// Remembers a position read from the database (a concurrent `record` of a
    /// later position wins).
    pub fn learn(&self, room_id: &str, position: i64) -> i64 {
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        let entry = latest.entry(room_id.to_owned()).or_insert(position);
        *entry = (*entry).max(position);
        *entry
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest() {
        let activity = RoomActivity::default();
        assert_eq!(activity.get("!a"), None);
        activity.record("!a", 5);
        activity.record("!a", 3);
        assert_eq!(activity.get("!a"), Some(5));
        assert_eq!(activity.learn("!a", 4), 5, "an older database read does not go back");
        assert_eq!(activity.learn("!b", 7), 7);
    }
}
