//! Which membership events each device was already sent, so that lazy-loading
//! syncs (`lazy_load_members` without `include_redundant_members`) send each
//! member once. A member counts as known only once the device has synced with
//! a token at or after the response that carried it: a client retrying an old
//! token (its response was lost) gets the members again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;

/// (room, member) → (membership event id, events position of the response that carried it).
type Sent = HashMap<(String, String), (String, i64)>;

pub struct LazyMembers {
    devices: Cache<(String, String), Arc<Mutex<Sent>>>,
}

impl Default for LazyMembers {
    fn default() -> Self {
        // Forgetting is safe (members are sent again), so the cache is bounded freely.
        Self { devices: Cache::builder().max_capacity(20_000).time_to_idle(Duration::from_secs(3600)).build() }
    }
}

impl LazyMembers {
    fn sent(&self, user_id: &str, device_id: &str) -> Arc<Mutex<Sent>> {
        self.devices.get_with((user_id.to_owned(), device_id.to_owned()), Default::default)
    }

    /// Whether the device has (and has acknowledged, by syncing from `since`)
    /// this membership event of `member`.
    pub fn known(
        &self,
        user_id: &str,
        device_id: &str,
        since: i64,
        room_id: &str,
        member: &str,
        event_id: &str,
    ) -> bool {
        let sent = self.sent(user_id, device_id);
        let sent = sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.get(&(room_id.to_owned(), member.to_owned())).is_some_and(|(id, at)| id == event_id && *at <= since)
    }

    /// Records membership events sent in a response whose token is at `position`.
    pub fn record(&self, user_id: &str, device_id: &str, position: i64, room_id: &str, members: &[(String, String)]) {
        let sent = self.sent(user_id, device_id);
        let mut sent = sent.lock().unwrap_or_else(|e| e.into_inner());
        for (member, event_id) in members {
            let entry =
                sent.entry((room_id.to_owned(), member.clone())).or_insert_with(|| (event_id.clone(), position));
            if entry.0 != *event_id {
                *entry = (event_id.clone(), position);
            }
        }
    }

    /// An initial sync starts the device afresh.
    pub fn reset(&self, user_id: &str, device_id: &str) {
        self.devices.invalidate(&(user_id.to_owned(), device_id.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_known_once_acknowledged() {
        let lazy = LazyMembers::default();
        lazy.record("@a:x", "D", 10, "!r", &[("@b:x".into(), "$1".into())]);
        // A retry from before the response that carried it: not known.
        assert!(!lazy.known("@a:x", "D", 5, "!r", "@b:x", "$1"));
        assert!(lazy.known("@a:x", "D", 10, "!r", "@b:x", "$1"));
        // A new membership event is not known; other devices know nothing.
        assert!(!lazy.known("@a:x", "D", 10, "!r", "@b:x", "$2"));
        assert!(!lazy.known("@a:x", "E", 10, "!r", "@b:x", "$1"));
        // Sent again later: the first acknowledgement still counts.
        lazy.record("@a:x", "D", 20, "!r", &[("@b:x".into(), "$1".into())]);
        assert!(lazy.known("@a:x", "D", 10, "!r", "@b:x", "$1"));
        lazy.reset("@a:x", "D");
        assert!(!lazy.known("@a:x", "D", 10, "!r", "@b:x", "$1"));
    }
}
