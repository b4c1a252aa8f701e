//! Which membership events each device was already sent, so that lazy-loading
//! syncs (`lazy_load_members` without `include_redundant_members`) send each
//! member once. A member counts as known only once the device has synced with
//! a token at or after the response that carried it: a client retrying an old
//! token (its response was lost) gets the members again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use moka::sync::Cache;

/// Room → member → (the membership event sent, the position of the response).
type Sent = HashMap<String, HashMap<String, (String, i64)>>;

pub struct LazyMembers {
    devices: Cache<(String, String), Arc<Mutex<Sent>>>,
}

impl Default for LazyMembers {
    fn default() -> Self {
        Self { devices: Cache::builder().max_capacity(20_000).time_to_idle(Duration::from_secs(3600)).build() }
    }
}

/// What one device was sent (looked up once per response).
pub struct DeviceMembers(Arc<Mutex<Sent>>);

impl LazyMembers {
    pub fn device(&self, user_id: &str, device_id: &str) -> DeviceMembers {
        DeviceMembers(self.devices.get_with((user_id.to_owned(), device_id.to_owned()), Default::default))
    }

    pub fn reset(&self, user_id: &str, device_id: &str) {
        self.devices.invalidate(&(user_id.to_owned(), device_id.to_owned()));
    }
}

impl DeviceMembers {
    /// Whether the device has `event_id` as `member`'s membership in the room,
    /// from a response at or before `since`.
    pub fn known(&self, since: i64, room_id: &str, member: &str, event_id: &str) -> bool {
        let sent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        sent.get(room_id).and_then(|room| room.get(member)).is_some_and(|(id, at)| id == event_id && *at <= since)
    }

    /// The response at `position` carries these `(member, event_id)`s.
    pub fn record(&self, position: i64, room_id: &str, members: &[(String, String)]) {
        let mut sent = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let room = match sent.get_mut(room_id) {
            Some(room) => room,
            None => sent.entry(room_id.to_owned()).or_default(),
        };
        for (member, event_id) in members {
            match room.get_mut(member.as_str()) {
                Some(entry) if entry.0 == *event_id => {}
                Some(entry) => *entry = (event_id.clone(), position),
                None => {
                    room.insert(member.clone(), (event_id.clone(), position));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_known_once_acknowledged() {
        let lazy = LazyMembers::default();
        let d = lazy.device("@a:x", "D");
        d.record(10, "!r", &[("@b:x".into(), "$1".into())]);
        // A retry from before the response that carried it: not known.
        assert!(!d.known(5, "!r", "@b:x", "$1"));
        assert!(d.known(10, "!r", "@b:x", "$1"));
        // A new membership event is not known; other rooms and devices know nothing.
        assert!(!d.known(10, "!r", "@b:x", "$2"));
        assert!(!d.known(10, "!other", "@b:x", "$1"));
        assert!(!lazy.device("@a:x", "E").known(10, "!r", "@b:x", "$1"));
        // Sent again later: the first acknowledgement still counts.
        d.record(20, "!r", &[("@b:x".into(), "$1".into())]);
        assert!(lazy.device("@a:x", "D").known(10, "!r", "@b:x", "$1"));
        // A new event for the member counts from the response that carried it.
        d.record(30, "!r", &[("@b:x".into(), "$2".into())]);
        assert!(!d.known(20, "!r", "@b:x", "$2") && d.known(30, "!r", "@b:x", "$2"));
        lazy.reset("@a:x", "D");
        assert!(!lazy.device("@a:x", "D").known(30, "!r", "@b:x", "$2"));
    }
}
