//! Stream orderings and state group ids, allocated in this process.
//!
//! Events of different rooms are persisted concurrently, so they can commit out
//! of order. Readers of the stream (sync) must only look up to the highest
//! position below which every allocated id has been persisted: `persisted()`.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::error::Result;
use crate::storage::Storage;

pub struct IdAllocator {
    state_group: AtomicI64,
    stream: Mutex<StreamState>,
}

struct StreamState {
    last: i64,
    in_flight: BTreeSet<i64>,
}

/// An allocated stream position; `finish` it once its event is persisted.
/// Dropping it unfinished (a failed write) also releases it.
pub struct StreamId<'a> {
    id: i64,
    allocator: &'a IdAllocator,
}

impl StreamId<'_> {
    pub fn id(&self) -> i64 {
        self.id
    }
    pub fn finish(self) {}
}

impl Drop for StreamId<'_> {
    fn drop(&mut self) {
        let mut stream = self.allocator.stream.lock().unwrap_or_else(|e| e.into_inner());
        stream.in_flight.remove(&self.id);
    }
}

impl IdAllocator {
    pub async fn load(storage: &dyn Storage) -> Result<Self> {
        let (stream, group) = storage.max_ids().await?;
        Ok(Self {
            state_group: AtomicI64::new(group),
            stream: Mutex::new(StreamState { last: stream, in_flight: BTreeSet::new() }),
        })
    }

    pub fn next_state_group(&self) -> i64 {
        self.state_group.fetch_add(1, Ordering::SeqCst) + 1
    }

    pub fn next_stream(&self) -> StreamId<'_> {
        let mut stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        stream.last += 1;
        let id = stream.last;
        stream.in_flight.insert(id);
        StreamId { id, allocator: self }
    }

    /// Every stream position up to this one is persisted (or abandoned).
    pub fn persisted(&self) -> i64 {
        let stream = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        match stream.in_flight.first() {
            Some(first) => first - 1,
            None => stream.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persisted_waits_for_the_oldest_write() {
        let ids = IdAllocator {
            state_group: AtomicI64::new(0),
            stream: Mutex::new(StreamState { last: 10, in_flight: BTreeSet::new() }),
        };
        let a = ids.next_stream();
        let b = ids.next_stream();
        assert_eq!((a.id(), b.id()), (11, 12));
        assert_eq!(ids.persisted(), 10);
        b.finish();
        assert_eq!(ids.persisted(), 10, "11 is still being written");
        drop(a);
        assert_eq!(ids.persisted(), 12);
        assert_eq!(ids.next_state_group(), 1);
    }
}
