//! Unread notification counts per (user, room), kept in memory once read.
//!
//! Every /sync that reports a joined room reports its counts; woken by a new
//! message, a hundred receivers would otherwise each run the counting query.
//! The room writer adds each new event's notifications to the counts held here,
//! and a receipt or a redaction drops the counts it changes, so the database is
//! read once per (user, room) and after each of those.
//!
//! Counts read from the database race with the writer. Each slot carries a
//! version that every change to it replaces, and a read is kept only when the
//! version it started under is still current. A read counts the room's events
//! up to a position every one of which the writer has already applied here, so
//! the events after it are exactly those the writer adds later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::storage::{PushActionRow, ThreadCounts};

/// Most (user, room) slots held; beyond it everything is dropped and re-read.
const MAX_SLOTS: usize = 100_000;

#[derive(Default)]
pub struct UnreadCache {
    rooms: Mutex<HashMap<String, Arc<Mutex<RoomCounts>>>>,
    slots: AtomicUsize,
    /// Source of slot versions: unique, so a dropped and re-made slot never
    /// matches a read that started before it was dropped.
    versions: AtomicU64,
}

#[derive(Default)]
struct RoomCounts {
    /// Stream position of the latest event of the room applied here.
    applied: i64,
    users: HashMap<String, Slot>,
}

struct Slot {
    version: u64,
    /// Counts of every event of the room the writer has applied here: a read
    /// is kept only if no applied event changed them while it ran, and every
    /// event applied after it adds to them.
    counts: Option<Vec<ThreadCounts>>,
}

/// A read from the database to make: the counts of the room's events up to
/// `upto`, to be stored under `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    version: u64,
    pub upto: i64,
}

impl UnreadCache {
    fn room(&self, room_id: &str, create: bool) -> Option<Arc<Mutex<RoomCounts>>> {
        let mut rooms = self.rooms.lock().expect("unread cache poisoned");
        if let Some(room) = rooms.get(room_id) {
            return Some(room.clone());
        }
        create.then(|| rooms.entry(room_id.to_owned()).or_default().clone())
    }

    fn next_version(&self) -> u64 {
        self.versions.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// The user's counts in the room, or the read to make for them. `persisted`
    /// is the stream position up to which every event is stored.
    pub fn lookup(&self, user_id: &str, room_id: &str, persisted: i64) -> Result<Vec<ThreadCounts>, Ticket> {
        let room = self.room(room_id, true).expect("created");
        let mut room = room.lock().expect("unread cache poisoned");
        // Every event of the room up to `applied` is applied; those between it
        // and `persisted` belong to other rooms (this room's were applied before
        // their positions were published).
        let upto = room.applied.max(persisted);
        if let Some(slot) = room.users.get(user_id) {
            return match &slot.counts {
                Some(threads) => Ok(threads.clone()),
                None => Err(Ticket { version: slot.version, upto }),
            };
        }
        let version = self.next_version();
        room.users.insert(user_id.to_owned(), Slot { version, counts: None });
        drop(room);
        if self.slots.fetch_add(1, Ordering::Relaxed) + 1 > MAX_SLOTS {
            self.clear();
        }
        Err(Ticket { version, upto })
    }

    /// Keeps counts read from the database for `ticket`, unless they changed meanwhile.
    pub fn store(&self, user_id: &str, room_id: &str, ticket: Ticket, threads: &[ThreadCounts]) {
        let Some(room) = self.room(room_id, false) else { return };
        let mut room = room.lock().expect("unread cache poisoned");
        if let Some(slot) = room.users.get_mut(user_id)
            && slot.version == ticket.version
        {
            slot.counts = Some(threads.to_vec());
        }
    }

    /// A new event at `position` is stored, with its notifications `actions`.
    /// Called before the position is published.
    pub fn event_stored(&self, room_id: &str, position: i64, sender: &str, actions: &[PushActionRow]) {
        let Some(room) = self.room(room_id, false) else { return };
        let mut room = room.lock().expect("unread cache poisoned");
        room.applied = room.applied.max(position);
        for action in actions {
            let Some(slot) = room.users.get_mut(&action.user_id) else { continue };
            slot.version = self.next_version();
            let Some(threads) = slot.counts.as_mut() else { continue };
            let highlight = i64::from(action.highlight);
            match threads.iter_mut().find(|t| t.thread_id == action.thread_id) {
                Some(thread) => {
                    thread.notifications += 1;
                    thread.highlights += highlight;
                }
                None => threads.push(ThreadCounts {
                    thread_id: action.thread_id.clone(),
                    notifications: 1,
                    highlights: highlight,
                }),
            }
        }
        // The sender's own event marks the room (or its thread) read for them.
        self.drop_slot(&mut room, sender);
    }

    /// The user's read receipt in the room moved.
    pub fn read(&self, user_id: &str, room_id: &str) {
        if let Some(room) = self.room(room_id, false) {
            self.drop_slot(&mut room.lock().expect("unread cache poisoned"), user_id);
        }
    }

    /// The room's stored notifications changed otherwise (a redaction removes the target's).
    pub fn room_changed(&self, room_id: &str) {
        if let Some(room) = self.room(room_id, false) {
            let mut room = room.lock().expect("unread cache poisoned");
            for slot in room.users.values_mut() {
                slot.version = self.next_version();
                slot.counts = None;
            }
        }
    }

    fn drop_slot(&self, room: &mut RoomCounts, user_id: &str) {
        if let Some(slot) = room.users.get_mut(user_id) {
            slot.version = self.next_version();
            slot.counts = None;
        }
    }

    fn clear(&self) {
        let mut rooms = self.rooms.lock().expect("unread cache poisoned");
        rooms.clear();
        self.slots.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(thread: &str, n: i64, h: i64) -> ThreadCounts {
        ThreadCounts { thread_id: thread.to_owned(), notifications: n, highlights: h }
    }

    fn action(user: &str, thread: &str, highlight: bool) -> PushActionRow {
        PushActionRow {
            user_id: user.to_owned(),
            thread_id: thread.to_owned(),
            highlight,
            actions: "[\"notify\"]".to_owned(),
        }
    }

    #[test]
    fn a_read_is_kept_and_new_events_add_to_it() {
        let cache = UnreadCache::default();
        let ticket = cache.lookup("@a:x", "!r:x", 10).unwrap_err();
        assert_eq!(ticket.upto, 10);
        cache.store("@a:x", "!r:x", ticket, &[counts("main", 2, 0)]);
        assert_eq!(cache.lookup("@a:x", "!r:x", 10), Ok(vec![counts("main", 2, 0)]));
        cache.event_stored("!r:x", 11, "@b:x", &[action("@a:x", "main", true), action("@c:x", "main", false)]);
        cache.event_stored("!r:x", 12, "@b:x", &[action("@a:x", "$root", false)]);
        assert_eq!(cache.lookup("@a:x", "!r:x", 12), Ok(vec![counts("main", 3, 1), counts("$root", 1, 0)]));
    }

    #[test]
    fn a_read_overtaken_by_a_change_is_not_kept() {
        let cache = UnreadCache::default();
        let ticket = cache.lookup("@a:x", "!r:x", 10).unwrap_err();
        // The event is stored (and perhaps counted by the read) before the read ends.
        cache.event_stored("!r:x", 11, "@b:x", &[action("@a:x", "main", false)]);
        cache.store("@a:x", "!r:x", ticket, &[counts("main", 1, 0)]);
        let again = cache.lookup("@a:x", "!r:x", 11).unwrap_err();
        assert_eq!(again.upto, 11);
        assert_ne!(again, ticket);
    }

    #[test]
    fn receipts_own_events_and_redactions_drop_counts() {
        let cache = UnreadCache::default();
        let fill = |user: &str| {
            let ticket = cache.lookup(user, "!r:x", 5).unwrap_err();
            cache.store(user, "!r:x", ticket, &[counts("main", 1, 0)]);
            assert!(cache.lookup(user, "!r:x", 5).is_ok());
        };
        fill("@a:x");
        cache.read("@a:x", "!r:x");
        assert!(cache.lookup("@a:x", "!r:x", 5).is_err());
        fill("@a:x");
        cache.event_stored("!r:x", 6, "@a:x", &[]);
        assert!(cache.lookup("@a:x", "!r:x", 6).is_err());
        fill("@a:x");
        fill("@b:x");
        cache.room_changed("!r:x");
        assert!(cache.lookup("@a:x", "!r:x", 6).is_err());
        assert!(cache.lookup("@b:x", "!r:x", 6).is_err());
    }

    #[test]
    fn events_of_a_room_nobody_read_are_not_held() {
        let cache = UnreadCache::default();
        cache.event_stored("!quiet:x", 3, "@b:x", &[action("@a:x", "main", false)]);
        assert!(cache.rooms.lock().unwrap().is_empty());
    }
}
