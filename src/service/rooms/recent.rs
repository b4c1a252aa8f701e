//! The latest events of recently active rooms, kept in memory so that a woken
//! `/sync` reads what was just sent without a database round trip.
//!
//! A room's entry covers every event of the room after its `floor`: the room's
//! single writer pushes each event (in stream order) before the event's position
//! is published, so a reader whose token reaches a position finds the event here.
//! Entries are bounded (events per room, rooms in all); a range the memory does
//! not cover is read from the database, as are rooms never seen since start.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use crate::storage::StoredEvent;

/// Events kept per room: enough for a timeline batch of a woken sync.
const PER_ROOM: usize = 24;
/// Rooms kept (least recently used evicted): bounds the memory to about
/// `PER_ROOM * MAX_ROOMS` events.
const MAX_ROOMS: u64 = 1_000;

struct RoomEvents {
    /// Every event of the room with a stream position above this is in `events`.
    floor: i64,
    /// Ascending stream positions.
    events: VecDeque<Arc<StoredEvent>>,
}

pub struct RecentEvents {
    rooms: moka::sync::Cache<String, Arc<Mutex<RoomEvents>>>,
}

impl Default for RecentEvents {
    fn default() -> Self {
        Self { rooms: moka::sync::Cache::new(MAX_ROOMS) }
    }
}

impl RecentEvents {
    /// Adds an event just stored by its room's writer (before its position is published).
    pub fn push(&self, event: &StoredEvent) {
        let room = self.rooms.get_with_by_ref(event.room_id.as_str(), || {
            Arc::new(Mutex::new(RoomEvents { floor: event.stream_ordering - 1, events: VecDeque::new() }))
        });
        let mut room = room.lock().unwrap_or_else(|e| e.into_inner());
        if room.events.back().is_some_and(|last| last.stream_ordering >= event.stream_ordering) {
            // Out of order (cannot happen with one writer per room): keep nothing.
            drop(room);
            self.rooms.invalidate(event.room_id.as_str());
            return;
        }
        room.events.push_back(Arc::new(event.clone()));
        if room.events.len() > PER_ROOM
            && let Some(oldest) = room.events.pop_front()
        {
            room.floor = oldest.stream_ordering;
        }
    }

    /// Drops what is kept of a room (its stored events are about to change: a redaction).
    pub fn drop_room(&self, room_id: &str) {
        self.rooms.invalidate(room_id);
    }

    /// The room's events in `(after, upto]`, newest first, at most `limit` —
    /// exactly what the database would answer — or `None` when memory cannot
    /// tell (events of the range may be missing from it).
    pub fn range(&self, room_id: &str, after: i64, upto: i64, limit: usize) -> Option<Vec<StoredEvent>> {
        let room = self.rooms.get(room_id)?;
        let room = room.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for event in room.events.iter().rev() {
            if event.stream_ordering > upto {
                continue;
            }
            if event.stream_ordering <= after || out.len() == limit {
                return Some(out);
            }
            out.push(StoredEvent::clone(event));
        }
        // Ran out of kept events: complete only if nothing older is in range.
        (after >= room.floor || out.len() == limit).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(room: &str, stream: i64) -> StoredEvent {
        StoredEvent {
            stream_ordering: stream,
            event_id: format!("${stream}"),
            room_id: room.into(),
            event_type: "m.room.message".into(),
            state_key: None,
            sender: "@a:x".into(),
            depth: stream,
            origin_server_ts: 0,
            state_group: 1,
            replaces_state: None,
            redacted_by: None,
            json: "{}".into(),
            parsed: Default::default(),
        }
    }

    fn ids(events: Option<Vec<StoredEvent>>) -> Option<Vec<i64>> {
        events.map(|e| e.iter().map(|e| e.stream_ordering).collect())
    }

    #[test]
    fn answers_only_what_it_covers() {
        let recent = RecentEvents::default();
        assert_eq!(ids(recent.range("!r", 0, 100, 10)), None, "an unknown room");
        for stream in [10, 12, 15] {
            recent.push(&event("!r", stream));
        }
        assert_eq!(ids(recent.range("!r", 9, 100, 10)), Some(vec![15, 12, 10]));
        assert_eq!(ids(recent.range("!r", 10, 14, 10)), Some(vec![12]), "bounded on both sides");
        assert_eq!(ids(recent.range("!r", 12, 100, 1)), Some(vec![15]));
        assert_eq!(ids(recent.range("!r", 15, 100, 10)), Some(vec![]), "nothing new");
        assert_eq!(ids(recent.range("!r", 5, 100, 10)), None, "events before the first kept one are unknown");
        assert_eq!(ids(recent.range("!r", 5, 100, 2)), Some(vec![15, 12]), "but a full page is exact");
        recent.drop_room("!r");
        assert_eq!(ids(recent.range("!r", 9, 100, 10)), None);
    }

    #[test]
    fn evicts_the_oldest_and_raises_the_floor() {
        let recent = RecentEvents::default();
        for stream in 1..=(PER_ROOM as i64 + 5) {
            recent.push(&event("!r", stream));
        }
        assert_eq!(ids(recent.range("!r", 4, 6, 10)), None, "position 5 was evicted");
        let all = ids(recent.range("!r", 5, i64::MAX, 100)).unwrap();
        assert_eq!(all.len(), PER_ROOM);
        assert_eq!(all.first(), Some(&(PER_ROOM as i64 + 5)));
    }
}
